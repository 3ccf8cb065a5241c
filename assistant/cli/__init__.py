"""The `assistant` command line: main.py parses and dispatches; one file per command group."""
