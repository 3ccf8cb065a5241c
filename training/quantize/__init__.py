"""Quantization: ``config.py`` (the lab's settings), ``worker.py`` (llama.cpp's quantizer),
``lab.py`` (every type measured side by side), ``job.py`` (the ``quantize_lab`` job kind)."""

from training.quantize.config import QUANT_TYPES
from training.quantize.worker import QuantizeError, quantize_gguf, source_type

__all__ = ["QUANT_TYPES", "QuantizeError", "quantize_gguf", "source_type"]
