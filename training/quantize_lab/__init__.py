"""Job kind "quantize_lab": ``training.run`` imports ``training.<kind>.job``; the lab itself
lives in :mod:`training.quantize` (quantizer, lab, job)."""
