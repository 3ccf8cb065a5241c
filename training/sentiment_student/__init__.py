"""The sentiment student's fine-tuning (kind "sentiment_student"); see :mod:`.job`."""
