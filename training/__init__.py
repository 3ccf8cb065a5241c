"""Training on the user's own data (torch, transformers, peft), run as its own process:
``python -m training.run JOB.json``. Never imported by ``ui`` or ``engine``."""
