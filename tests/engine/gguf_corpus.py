"""Valid and deliberately malformed GGUF files for the header check's tests.

``write_valid_gguf`` uses gguf's own writer. The malformed files are written byte by byte
with ``struct`` from a small valid raw layout (``raw_valid_bytes``), changing one thing
each, because GGUFWriter refuses to write most of them.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path
from typing import Any

import gguf
import numpy as np

VT = gguf.GGUFValueType
QT = gguf.GGMLQuantizationType

_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_TOKENS = ["<unk>", "<|im_start|>", "<|im_end|>", "a", "b", "c", "ab", "bc"]
_UNSET: Any = object()


def write_valid_gguf(path: Path | str, **overrides: Any) -> Path:
    """A small valid GGUF written with gguf.GGUFWriter; keyword arguments replace the defaults.

    Overridable: arch, name, context_length, block_count, embedding_length, file_type,
    license, chat_template, tokens, tensors (name -> float32/float16 array), floats (more
    float32 keys, e.g. ``{"general.sampling.temp": 0.6}``). Passing None leaves that key (or the
    tensors) out.
    """
    settings: dict[str, Any] = {
        "arch": "llama",
        "name": "tiny-test",
        "context_length": 256,
        "block_count": 1,
        "embedding_length": 32,
        "file_type": int(gguf.LlamaFileType.MOSTLY_F16),
        "license": "apache-2.0",
        "chat_template": _TEMPLATE,
        "tokens": _TOKENS,
        "floats": None,
        "tensors": {
            "token_embd.weight": np.linspace(-1, 1, 8 * 32, dtype=np.float32).astype(np.float16).reshape(8, 32),
            "blk.0.attn_norm.weight": np.ones(32, dtype=np.float32),
            "output_norm.weight": np.ones(32, dtype=np.float32),
        },
    }
    unknown = set(overrides) - set(settings)
    if unknown:
        raise TypeError(f"unknown overrides: {sorted(unknown)}")
    settings.update(overrides)
    path = Path(path)
    arch = settings["arch"]
    writer = gguf.GGUFWriter(path, arch)
    if settings["name"] is not None:
        writer.add_name(settings["name"])
    if settings["context_length"] is not None:
        writer.add_context_length(settings["context_length"])
    if settings["block_count"] is not None:
        writer.add_block_count(settings["block_count"])
    if settings["embedding_length"] is not None:
        writer.add_embedding_length(settings["embedding_length"])
    if settings["file_type"] is not None:
        writer.add_file_type(settings["file_type"])
    if settings["license"] is not None:
        writer.add_license(settings["license"])
    if settings["chat_template"] is not None:
        writer.add_chat_template(settings["chat_template"])
    for key, value in (settings["floats"] or {}).items():
        writer.add_float32(key, value)
    if settings["tokens"] is not None:
        writer.add_tokenizer_model("gpt2")
        writer.add_token_list(settings["tokens"])
    for name, array in (settings["tensors"] or {}).items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# -- raw byte layout ---------------------------------------------------------------------


def u32(value: int) -> bytes:
    return struct.pack("<I", value)


def u64(value: int) -> bytes:
    return struct.pack("<Q", value)


def gstr(text: str | bytes) -> bytes:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return u64(len(data)) + data


def kv(key: str | bytes, vtype: int, payload: bytes) -> bytes:
    return gstr(key) + u32(vtype) + payload


def kv_str(key: str, value: str) -> bytes:
    return kv(key, VT.STRING, gstr(value))


def kv_u32(key: str, value: int) -> bytes:
    return kv(key, VT.UINT32, u32(value))


def array(element_type: int, elements: list[bytes], length: int | None = None) -> bytes:
    """An array payload (element type, length, elements); ``length`` may lie."""
    return u32(element_type) + u64(len(elements) if length is None else length) + b"".join(elements)


def tensor_info(name: str | bytes, dims: list[int], ggml_type: int = QT.F32, offset: int = 0) -> bytes:
    return gstr(name) + u32(len(dims)) + b"".join(u64(d) for d in dims) + u32(ggml_type) + u64(offset)


def base_kvs() -> list[bytes]:
    return [
        kv_str("general.architecture", "llama"),
        kv_str("general.name", "raw"),
        kv_u32("llama.block_count", 1),
        kv("tokenizer.ggml.tokens", VT.ARRAY, array(VT.STRING, [gstr(t) for t in ("a", "b", "c")])),
    ]


def base_tensors() -> list[bytes]:
    # Two 8-element F32 tensors: 32 bytes each, back to back at the default alignment.
    return [tensor_info("a.weight", [8], QT.F32, 0), tensor_info("b.weight", [8], QT.F32, 32)]


def build(
    kvs: list[bytes] | None = None,
    tensors: list[bytes] | None = None,
    data: bytes | None = None,
    *,
    magic: bytes = b"GGUF",
    version: int = 3,
    tensor_count: int | None = None,
    kv_count: int | None = None,
    alignment: int = 32,
) -> bytes:
    kvs = base_kvs() if kvs is None else kvs
    tensors = base_tensors() if tensors is None else tensors
    data = bytes(range(64)) if data is None else data
    head = (
        magic
        + u32(version)
        + u64(len(tensors) if tensor_count is None else tensor_count)
        + u64(len(kvs) if kv_count is None else kv_count)
        + b"".join(kvs)
        + b"".join(tensors)
    )
    head += b"\0" * (-len(head) % alignment)
    return head + data


def raw_valid_bytes() -> bytes:
    """The valid layout every malformed case departs from (the tests check it passes)."""
    return build()


def _truncations() -> dict[str, bytes]:
    """Files cut in the middle of each section.

    The cuts leave enough bytes that the counts still look possible, so the parser really
    runs into the end of the file inside the section named rather than rejecting the counts.
    """
    arch, name, blocks, tokens = base_kvs()
    long_key = build([kv(b"k" * 300, VT.UINT8, b"\1"), arch, name, blocks])
    long_value = build([kv_str("general.name", "x" * 300), arch, blocks, tokens])
    long_tokens = kv("tokenizer.ggml.tokens", VT.ARRAY, array(VT.STRING, [gstr(t * 100) for t in "abc"]))
    long_array = build([arch, name, blocks, long_tokens])
    first_element = 24 + len(arch) + len(name) + len(blocks) + 8 + len("tokenizer.ggml.tokens") + 4 + 4 + 8
    valid = raw_valid_bytes()
    first_tensor = 24 + len(arch) + len(name) + len(blocks) + len(tokens)
    return {
        "trunc_key.gguf": long_key[: 24 + 8 + 150],
        "trunc_value.gguf": long_value[: 24 + 8 + len("general.name") + 4 + 8 + 150],
        "trunc_array.gguf": long_array[: first_element + 108 + 8 + 50],
        "trunc_tensor_info.gguf": valid[: first_tensor + 8 + 3],
        "trunc_tensor_shape.gguf": valid[: first_tensor + 8 + len("a.weight") + 4 + 3],
    }


def build_malformed_corpus(directory: Path | str) -> list[tuple[Path, str]]:
    """Write the malformed files into ``directory``; return (path, substring its error must contain)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    valid = raw_valid_bytes()
    arch, name, blocks, tokens = base_kvs()
    cases: dict[str, tuple[bytes, str]] = {
        # -- not GGUF at all
        "empty.gguf": (b"", "empty"),
        "text.gguf": (b"Hello, this is a text file and not a model.\n", "Not a GGUF model"),
        "html.gguf": (b"<!DOCTYPE html><html><body>Sign in</body></html>", "HTML"),
        "lfs_pointer.gguf": (b"version https://git-lfs.github.com/spec/v1\noid sha256:00\n", "Git LFS"),
        "bad_magic.gguf": (b"GGML" + valid[4:], "Not a GGUF model"),
        # -- truncated in every section
        "trunc_magic.gguf": (valid[:2], "shorter than the 24-byte GGUF header"),
        "trunc_version.gguf": (valid[:6], "shorter than the 24-byte GGUF header"),
        "trunc_counts.gguf": (valid[:20], "shorter than the 24-byte GGUF header"),
        **{filename: (content, "The file is truncated: ") for filename, content in _truncations().items()},
        "trunc_data.gguf": (valid[:-16], "past the end of the file"),
        # -- fixed header
        "version_1.gguf": (build(version=1), "version 1"),
        "version_99.gguf": (build(version=99), "version 99"),
        "big_endian.gguf": (build(version=3 << 24), "big-endian"),
        "huge_kv_count.gguf": (build(kv_count=2**60), "1152921504606846976 metadata entries"),
        "huge_tensor_count.gguf": (build(tensor_count=2**60), "1152921504606846976 tensors"),
        "kv_count_vs_size.gguf": (build(kv_count=10_000), "can hold at most"),
        "tensor_count_vs_size.gguf": (build(tensor_count=60_000), "can hold at most"),
        # -- metadata
        "huge_string.gguf": (
            build([arch, kv("general.name", VT.STRING, u64(2**63) + b"x" * 16), blocks, tokens]),
            "9223372036854775808 bytes",
        ),
        "huge_key_length.gguf": (build([u64(2**63) + b"general.name"] + [arch]), "9223372036854775808 bytes"),
        "string_past_eof.gguf": (
            build([arch, kv("general.name", VT.STRING, u64(1_000_000) + b"x" * 16), blocks, tokens]),
            "truncated",
        ),
        "huge_array.gguf": (
            build([arch, name, blocks, kv("tokenizer.ggml.scores", VT.ARRAY, array(VT.FLOAT32, [], 2**62))]),
            "4611686018427387904 elements",
        ),
        "array_past_eof.gguf": (
            build([arch, name, blocks, kv("tokenizer.ggml.scores", VT.ARRAY, array(VT.FLOAT32, [], 1_000_000))]),
            "more than the remaining",
        ),
        "nested_arrays.gguf": (
            build([arch, kv("deep", VT.ARRAY, array(VT.ARRAY, [array(VT.ARRAY, [array(VT.UINT8, [b"\1"])])]))]),
            "nested 3 deep",
        ),
        "unknown_value_type.gguf": (build([arch, kv("general.name", 13, u32(0))]), "unknown value type 13"),
        "bad_array_element_type.gguf": (
            build([arch, kv("general.tags", VT.ARRAY, array(42, [], 1))]),
            "invalid element type 42",
        ),
        "invalid_utf8_key.gguf": (build([arch, kv(b"general.\xff\xfe", VT.UINT32, u32(1))]), "UTF-8"),
        "duplicate_key.gguf": (build([arch, name, kv_str("general.name", "again")]), "'general.name' appears twice"),
        "missing_architecture.gguf": (build([name, blocks, tokens]), "general.architecture"),
        "architecture_not_string.gguf": (build([kv_u32("general.architecture", 7), name]), "must be a string"),
        "alignment_not_power_of_two.gguf": (
            build([arch, name, kv_u32("general.alignment", 48)], alignment=48),
            "not a power of two",
        ),
        "alignment_zero.gguf": (build([arch, name, kv_u32("general.alignment", 0)]), "not a power of two"),
        "alignment_wrong_type.gguf": (build([arch, name, kv_str("general.alignment", "32")]), "general.alignment"),
        "block_count_over_limit.gguf": (build([arch, name, kv_u32("llama.block_count", 5000)]), "llama.block_count is 5000"),
        "vocab_of_ints.gguf": (
            build([arch, name, kv("tokenizer.ggml.tokens", VT.ARRAY, array(VT.INT32, [struct.pack("<i", 1)] * 3))]),
            "tokenizer.ggml.tokens",
        ),
        "vocab_scalar.gguf": (build([arch, name, kv_str("tokenizer.ggml.tokens", "abc")]), "must be an array of strings"),
        # -- tensor table
        "five_dims.gguf": (build(tensors=[tensor_info("a.weight", [8, 1, 1, 1, 1])]), "5 dimensions"),
        "zero_dims.gguf": (build(tensors=[tensor_info("a.weight", [])]), "0 dimensions"),
        "zero_dimension.gguf": (build(tensors=[tensor_info("a.weight", [8, 0])]), "zero dimension"),
        "absurd_dimension.gguf": (build(tensors=[tensor_info("a.weight", [8, 2**62])]), "dimension of 4611686018427387904"),
        "dims_overflow.gguf": (build(tensors=[tensor_info("a.weight", [2**32] * 4)]), "overflows"),
        "unknown_ggml_type.gguf": (build(tensors=[tensor_info("a.weight", [8], 99)]), "unknown ggml type 99"),
        "removed_ggml_type.gguf": (build(tensors=[tensor_info("a.weight", [32], 4)]), "unknown ggml type 4"),
        "block_size_mismatch.gguf": (build(tensors=[tensor_info("a.weight", [33], QT.Q4_0)]), "block size 32"),
        "offset_past_eof.gguf": (build(tensors=[tensor_info("a.weight", [8], QT.F32, 4096)]), "past the end of the file"),
        "huge_offset.gguf": (build(tensors=[tensor_info("a.weight", [8], QT.F32, 2**63)]), "past the end of the file"),
        "misaligned_offset.gguf": (
            build(tensors=[tensor_info("a.weight", [8], QT.F32, 4)]),
            "not a multiple of the alignment 32",
        ),
        "overlapping_tensors.gguf": (
            build(tensors=[tensor_info("a.weight", [16], QT.F32, 0), tensor_info("b.weight", [8], QT.F32, 32)]),
            "overlap",
        ),
        "duplicate_tensor.gguf": (
            build(tensors=[tensor_info("a.weight", [8], QT.F32, 0), tensor_info("a.weight", [8], QT.F32, 32)]),
            "'a.weight' appears twice",
        ),
        "tensor_name_too_long.gguf": (build(tensors=[tensor_info("t" * 64, [8])]), "at most 63"),
        "tensor_name_huge.gguf": (build(tensors=[u64(2**63) + b"abc"]), "9223372036854775808 bytes"),
    }
    corpus: list[tuple[Path, str]] = []
    for filename, (content, expected) in cases.items():
        path = directory / filename
        path.write_bytes(content)
        corpus.append((path, expected))

    archive = directory / "archive.gguf"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("model.gguf", valid)
    corpus.append((archive, "ZIP archive"))

    folder = directory / "folder.gguf"
    folder.mkdir(exist_ok=True)
    corpus.append((folder, "is a folder"))

    missing = directory / "missing.gguf"
    corpus.append((missing, "does not exist"))
    return corpus
