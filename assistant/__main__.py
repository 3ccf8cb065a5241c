"""`python -m assistant ...`: the command line (the window starts from `assistant` with no arguments)."""

import sys

from assistant.cli.main import main

raise SystemExit(main(sys.argv[1:] or ["chat"]))
