"""Structured pruning: a smaller student cut out of the teacher (fewer layers, a narrower
feed-forward), which distillation (:mod:`training.distill`) then heals.

``config.py`` holds the settings, ``trainer.py`` the importance measurements and the surgery,
``job.py`` the ``"prune"`` job kind; ``gguf_export.py`` writes the student for llama.cpp.
"""
