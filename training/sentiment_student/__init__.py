"""The sentiment student's fine-tuning (kind "sentiment_student"): ``config.py`` (settings),
``trainer.py`` (the encoder and head, the GGUF), ``job.py`` (the job kind)."""
