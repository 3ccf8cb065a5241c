"""Whether this installation can run training jobs, asked without importing the training package.

The self-contained bundle leaves out ``training`` with torch, transformers and peft. No module
of the window or the core imports ``training`` (it runs only as its own process: the job, and
the check before one), but those processes need it installed; so the window's pages that offer
training (Train, Compress, the sentiment student's fine-tuning) ask here at start-up and say so
at once, before the user has chosen anything.
"""

from __future__ import annotations

import importlib.util
import sys


def training_unavailable() -> str | None:
    """None when this installation can run training jobs; otherwise why not, in one sentence
    for the user. Cheap (no import of torch): any thread, also the GUI's at start-up."""
    if getattr(sys, "frozen", False) or any(importlib.util.find_spec(name) is None
                                            for name in ("torch", "transformers", "peft", "training")):
        return ("Training needs PyTorch, which this installation does not include (the self-contained bundle "
                "leaves it out); install from source (`make run`) to teach models.")
    return None


def lab_unavailable() -> str | None:
    """None when this installation can run the quantization lab (a job of the training package
    that needs llama.cpp, not PyTorch); otherwise why not, in one sentence for the user. Cheap
    (nothing is imported): any thread, also the GUI's at start-up."""
    if getattr(sys, "frozen", False) or importlib.util.find_spec("training") is None:
        return ("Compressing runs as a job of the training package, which this installation does not include "
                "(the self-contained bundle leaves it out); install from source (`make run`) to compress models.")
    return None
