"""The models of a distillation: their sizes read from the GGUF header, and the student --
an installed smaller model (``student_gguf``) or one cut out of the teacher by pruning
(``prune`` settings, :mod:`training.prune`): its checks, making it, saving and exporting it.

Runs in the training process, main thread (the header reads also in the app's worker thread,
before a job starts). Torch is imported only by the functions that need it (the pruning code
is torch's), so the checks stay cheap.

Shared by the two job kinds that teach a student: "distill" (:mod:`training.distill.job`,
which runs the distillation) and "prune" (:mod:`training.prune.job`, a distillation whose
student is always cut from the teacher). The distillation reaches pruning only through this
module, and the prune job uses the distillation job, so the methods import each other one way.
"""

from __future__ import annotations

import functools
import hashlib
import json
import struct
from pathlib import Path

from gguf import GGUFValueType as _VT

from engine.atomic import atomic_dir, write_json_atomic
from training.base_model import SUPPORTED_ARCHITECTURES, BaseModelError, load_base
from training.distill.config import DistillConfig
from training.prune.config import PruneConfig

__all__ = [
    "DistillError",
    "architecture",
    "check_student",
    "cut_student",
    "export_student",
    "gguf_shape",
    "load_installed_student",
    "save_student",
    "tokenizer_signature",
]


class DistillError(ValueError):
    """The distillation asked for cannot run; str() says why and what to do instead."""


# ----- sizes from the GGUF header ---------------------------------------------------------------
def tokenizer_signature(gguf_path: Path) -> str:
    """A hash of the GGUF's vocabulary (the token strings in order): equal means the two models
    number their words the same way, so their logits can be compared position by position."""
    return _header(Path(gguf_path))["tokenizer"]


#: Bytes of each fixed-size GGUF metadata value type.
_SCALAR_SIZES: dict[int, int] = {int(t): struct.calcsize(f) for t, f in (
    (_VT.UINT8, "<B"), (_VT.INT8, "<b"), (_VT.UINT16, "<H"), (_VT.INT16, "<h"), (_VT.UINT32, "<I"),
    (_VT.INT32, "<i"), (_VT.FLOAT32, "<f"), (_VT.BOOL, "<B"), (_VT.UINT64, "<Q"), (_VT.INT64, "<q"),
    (_VT.FLOAT64, "<d"))}
_U64 = struct.Struct("<Q")


def _skip_value(m, pos: int, vtype: int) -> int:
    """Offset just past one metadata value of type ``vtype`` at ``pos`` (the file is already
    validated by engine.gguf_check, so counts and lengths are within the file)."""
    if vtype == _VT.STRING:
        return pos + 8 + _U64.unpack_from(m, pos)[0]
    if vtype == _VT.ARRAY:
        element, count = struct.unpack_from("<IQ", m, pos)
        pos += 12
        if element in _SCALAR_SIZES:
            return pos + count * _SCALAR_SIZES[element]
        if element == _VT.STRING:
            for _ in range(count):
                pos += 8 + _U64.unpack_from(m, pos)[0]
            return pos
        for _ in range(count):
            pos = _skip_value(m, pos, element)
        return pos
    return pos + _SCALAR_SIZES[vtype]


def _vocabulary_digest(path: str) -> str:
    """sha256 of the raw ``tokenizer.ggml.model`` and ``tokenizer.ggml.tokens`` values (lengths
    and bytes of every token, in order); "" when the file has no vocabulary.

    Hashes the array's bytes in one go from a memory map instead of building a Python object
    per token: ``gguf.GGUFReader`` needs minutes for Gemma's 262k tokens on a busy laptop,
    this needs well under a second."""
    import mmap

    wanted = (b"tokenizer.ggml.model", b"tokenizer.ggml.tokens")
    found: dict[bytes, bytes] = {}
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as m:
        (n_kv,) = struct.unpack_from("<Q", m, 16)
        pos = 24  # magic, version, tensor count, metadata count
        for _ in range(n_kv):
            (key_len,) = struct.unpack_from("<Q", m, pos)
            key = m[pos + 8:pos + 8 + key_len]
            (vtype,) = struct.unpack_from("<I", m, pos + 8 + key_len)
            start = pos + 12 + key_len
            pos = _skip_value(m, start, vtype)
            if key in wanted:
                found[key] = m[start:pos]
                if len(found) == len(wanted):
                    break
    if b"tokenizer.ggml.tokens" not in found:
        return ""
    digest = hashlib.sha256()
    for key in wanted:
        digest.update(key + b"\0" + found.get(key, b"") + b"\0")
    return digest.hexdigest()


@functools.lru_cache(maxsize=8)
def _header_cached(path: str, size: int, mtime_ns: int) -> dict:
    # One parse per file, with engine.gguf_check's bounded header reader (seconds, where
    # gguf.GGUFReader takes minutes for a 262k-word vocabulary).
    from engine.gguf_check import ArraySummary, MalformedModelError, check_gguf

    try:
        header = check_gguf(path)
    except MalformedModelError as exc:
        raise DistillError(f"{Path(path).name} cannot be used: {exc}") from exc
    meta = header.metadata
    arch = meta.get("general.architecture") if isinstance(meta.get("general.architecture"), str) else ""

    def integer(key: str, default: int) -> int:
        value = meta.get(key)
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else default

    tokens = meta.get("tokenizer.ggml.tokens")
    vocab = tokens.length if isinstance(tokens, ArraySummary) else len(tokens) if isinstance(tokens, list) else 50_000
    return {"architecture": arch, "params": sum(t.n_elements for t in header.tensors),
            "hidden": integer(f"{arch}.embedding_length", 1024), "layers": integer(f"{arch}.block_count", 32),
            "ffn": integer(f"{arch}.feed_forward_length", 4096), "vocab": vocab,
            "tokenizer": _vocabulary_digest(path) if tokens is not None else ""}


def _header(gguf_path: Path) -> dict:
    stat = gguf_path.stat()
    return dict(_header_cached(str(gguf_path.resolve()), stat.st_size, stat.st_mtime_ns))


def architecture(gguf_path: Path) -> str:
    """The GGUF's architecture, refused (as training.base_model.check_architecture does) when
    training cannot load it; from the one cached header parse."""
    arch = _header(gguf_path)["architecture"]
    if arch not in SUPPORTED_ARCHITECTURES:
        raise BaseModelError(f"{gguf_path.name} is a {arch!r} model; training supports "
                             f"{', '.join(SUPPORTED_ARCHITECTURES)} models (SmolLM2, Gemma 3).")
    return arch


def gguf_shape(gguf_path: Path) -> dict:
    """architecture, params, hidden, layers, ffn, vocab and tokenizer (signature) of a GGUF,
    from its header alone (parsed once per file)."""
    return _header(Path(gguf_path))


# ----- the student ------------------------------------------------------------------------------
def check_student(job: dict, config: DistillConfig, teacher_gguf: Path, arch: str,
                  teacher: dict) -> tuple[str, int, dict]:
    """The preflight checks of the job's student against its teacher (``arch`` and ``teacher``:
    the teacher's architecture and :func:`gguf_shape`), with no model loaded. Returns the
    distillation mode, the student's parameter count, and what to record about the student."""
    info: dict = {}
    student_gguf = job.get("student_gguf")
    if student_gguf:
        student_gguf = Path(student_gguf)
        if not student_gguf.is_file():
            raise DistillError(f"The student model {student_gguf} does not exist.")
        info["student_architecture"] = architecture(student_gguf)
        student = gguf_shape(student_gguf)
        if student["params"] >= teacher["params"]:
            raise DistillError(
                f"The student ({student_gguf.name}, {student['params'] / 1e6:.0f}M parameters) is not smaller than "
                f"its teacher ({teacher_gguf.name}, {teacher['params'] / 1e6:.0f}M). Distillation teaches a smaller "
                "model; swap them, or prune the teacher to make a student.")
        same_tokens = tokenizer_signature(student_gguf) == tokenizer_signature(teacher_gguf)
        if config.mode == "logits" and not same_tokens:
            raise DistillError(
                f"Logit distillation needs teacher and student to share a tokenizer, and {teacher_gguf.name} and "
                f"{student_gguf.name} do not (different vocabularies, so their word probabilities cannot be "
                "compared). Use sequence-level distillation (mode 'sequence'): the teacher writes text and the "
                "student learns it.")
        mode = config.mode if config.mode != "auto" else ("logits" if same_tokens else "sequence")
        student_params = student["params"]
    else:
        prune = job.get("prune")
        if prune is None:
            raise DistillError("The job names no student: give student_gguf (an installed smaller model) or "
                               "prune settings to cut one out of the teacher.")
        pcfg = PruneConfig.from_dict(prune)
        keep = pcfg.n_keep(teacher["layers"])
        if keep > teacher["layers"] or (pcfg.strategy == "explicit" and max(pcfg.layers) >= teacher["layers"]):
            raise DistillError(f"The student cannot have more layers than its teacher ({teacher['layers']}); "
                               f"asked to keep {keep}{' up to layer ' + str(max(pcfg.layers)) if pcfg.layers else ''}.")
        if keep == teacher["layers"] and pcfg.ffn_keep_ratio >= 1.0:
            raise DistillError("The pruned student would be as large as its teacher; keep fewer layers or narrow the FFN.")
        from training.prune.trainer import fit_layer_pattern, positional_layer_types

        required = positional_layer_types(arch, keep)
        if required is not None:
            # Checked here, before hours of distillation, not when the student is exported.
            kinds = positional_layer_types(arch, teacher["layers"])
            if pcfg.strategy == "explicit":
                fits = [kinds[i] for i in sorted(pcfg.layers)] == required
            else:
                fits = fit_layer_pattern(kinds, required, lambda s, i: 0.0) is not None
            if not fits:
                raise DistillError(
                    "llama.cpp gives Gemma 3's blocks local or global attention by their position (every sixth "
                    "global), so a pruned student's layers must follow that pattern; "
                    + (f"layers {sorted(pcfg.layers)} do not." if pcfg.strategy == "explicit" else
                       f"no {keep} of the teacher's {teacher['layers']} layers do.")
                    + " Choose the every-other or importance strategy, or another number of layers.")
        if config.mode == "sequence":
            raise DistillError("A student pruned from its teacher shares its tokenizer; use logit distillation.")
        mode = "logits"
        student_params = int(teacher["params"] * keep / max(1, teacher["layers"]))
    return mode, student_params, info


def load_installed_student(job: dict, teacher, cache_root: Path):
    """(model, tokenizer) of the job's ``student_gguf``; refused when its vocabulary cannot be
    compared with the loaded ``teacher``'s (None for sequence-level distillation)."""
    student, tokenizer = load_base(Path(job["student_gguf"]), cache_root)
    if teacher is not None and student.config.vocab_size != teacher.config.vocab_size:
        raise DistillError("Teacher and student have different vocabulary sizes; use sequence-level distillation.")
    return student, tokenizer


def cut_student(job: dict, teacher, calibration_ids, out_dir: Path, resuming: bool, reporter):
    """(student, record) cut out of ``teacher`` as the job's ``prune`` settings say, measured on
    the first blocks of ``calibration_ids``; the record (``prune.json``) holds the layer map.
    A resumed job cuts the same layers again: its checkpoint's weights fit only that shape."""
    from training.prune.trainer import build_student, prune

    pcfg = PruneConfig.from_dict(job.get("prune"))
    record_file = Path(out_dir) / "prune.json"
    calibration = calibration_ids[: pcfg.calibration_blocks]
    if resuming and record_file.is_file():
        record = json.loads(record_file.read_text(encoding="utf-8"))
        student, _ = build_student(teacher, record["layer_map"], pcfg.ffn_keep_ratio, calibration)
    else:
        reporter.message("Cutting the student out of the teacher...")
        student, record = prune(teacher, pcfg, calibration, reporter)
        write_json_atomic(record_file, record)
    reporter.emit("pruned", layer_map=record["layer_map"], student_params=record["student_params"],
                  teacher_params=record["teacher_params"])
    return student, record


def save_student(student, tokenizer, folder: Path, record: dict) -> Path:
    """The student as an HF folder (config, safetensors, tokenizer, distill.json), atomically."""
    with atomic_dir(folder) as tmp:
        student.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json_atomic(tmp / "distill.json", record)
    return folder


def export_student(student, source_gguf: Path, out_path: Path, layer_map: list[int] | None, dtype: str = "f16") -> Path:
    """GGUF of the student: H2's writer for a student of its source's shape, the pruned-student
    template for one cut from the teacher."""
    if layer_map is not None:
        from training.prune.gguf_export import write_student_gguf

        return write_student_gguf(student, source_gguf, out_path, layer_map, dtype=dtype)
    from training.export.full_gguf import write_full_gguf

    return write_full_gguf(student, source_gguf, out_path, dtype=dtype)
