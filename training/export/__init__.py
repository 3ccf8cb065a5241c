"""The project's own GGUF writers: LoRA adapters for llama.cpp and whole merged models.

Runs in the training process; see :mod:`training.export.lora_gguf` and
:mod:`training.export.full_gguf`. Supported architectures: :data:`SUPPORTED`.
"""

from training.export.common import SUPPORTED, ExportError, UnsupportedArchitectureError
from training.export.full_gguf import merge_and_export, write_full_gguf
from training.export.lora_gguf import export_lora_adapter, read_peft_adapter

__all__ = [
    "SUPPORTED",
    "ExportError",
    "UnsupportedArchitectureError",
    "export_lora_adapter",
    "merge_and_export",
    "read_peft_adapter",
    "write_full_gguf",
]
