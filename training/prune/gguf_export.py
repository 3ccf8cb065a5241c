"""Write a pruned student (fewer layers, narrower FFN) as a GGUF llama.cpp runs.

Runs in the training process or a benchmark, calling thread.

The writing itself is :func:`training.export.full_gguf.write_full_gguf`: it takes the
teacher's first ``n`` blocks as the template of a student with ``n`` blocks, uses the
student's own FFN width, and writes the teacher's metadata with ``block_count`` and
``feed_forward_length`` set from the student's config (llama.cpp checks every tensor's shape
against them). Tokenizer keys come from the teacher's GGUF unchanged, so the student
tokenizes exactly as the teacher does. This module adds the checks a pruned student needs
before anything is written.
"""

from __future__ import annotations

from pathlib import Path

from training.export.common import ExportError
from training.export.full_gguf import DTYPES, write_full_gguf
from training.prune.trainer import positional_layer_types


def write_student_gguf(student, teacher_gguf: str | Path, out_path: str | Path, layer_map: list[int],
                       dtype: str = "f16", name: str | None = None) -> Path:
    """Write ``student`` (a model pruned from the model in ``teacher_gguf``) as a GGUF.

    ``layer_map[s]`` is the teacher block student block ``s`` was copied from; it is checked
    against the student's config (every weight written is the student's). Raises
    :class:`ExportError` before writing anything.
    """
    if dtype not in DTYPES:
        raise ExportError(f"A student can be written as {', '.join(DTYPES)}, not {dtype!r}.")
    config = student.config
    if int(config.num_hidden_layers) != len(layer_map):
        raise ExportError(f"The student has {config.num_hidden_layers} layers but the layer map names {len(layer_map)}.")
    # llama.cpp derives Gemma 3's sliding-window pattern from the block index (every 6th block
    # global); a student whose kept blocks break that pattern would run wrongly.
    wanted = positional_layer_types(getattr(config, "model_type", None), len(layer_map))
    if wanted is not None and getattr(config, "layer_types", None) and list(config.layer_types) != wanted:
        raise ExportError("llama.cpp fixes Gemma 3's local/global attention pattern by block position; this "
                          "student's kept layers break it, so its GGUF would not run as trained. Keep layers "
                          "in groups of six, or distill into a student that has the standard pattern.")
    return write_full_gguf(student, Path(teacher_gguf), Path(out_path), dtype=dtype, name=name)
