"""Bounded GGUF header check: reject malformed or hostile model files before llama.cpp sees them.

llama.cpp parses a GGUF header in C++ and trusts much of what it reads; a model file is
untrusted input (downloaded, shared, half-written). :func:`check_gguf` reads the header with
a small streaming parser over a buffered file: every count and length is compared with
:class:`GGUFLimits` and with the bytes actually left in the file *before* anything is read
or allocated, it never reads past the end of the file and never touches the tensor data.
Anything wrong raises :class:`MalformedModelError` whose message is one sentence a user can
act on.

The module is pure: no global mutable state, no threads, no Qt, torch or llama_cpp (only the
standard library, and the ``gguf`` package for its format constants). It is safe to call on
any thread of any process: the GUI's model import, the engine worker right before it loads a
model, the CLI. ``gguf.GGUFReader`` is deliberately not used for the validation: it
memory-maps the file and follows counts without bounding them.

Why one module of ~700 lines: the whole header format and its limits in one bounded parser.
"""

from __future__ import annotations

import math
import os
import stat
import struct
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, Iterator

import gguf

from engine.errors import UserError
from engine.file_kinds import looks_like, reads_as_text
from engine.units import human_size

__all__ = [
    "ArraySummary",
    "GGUFHeader",
    "GGUFLimits",
    "MalformedModelError",
    "TensorInfo",
    "GGUFPeek",
    "check_gguf",
    "file_type_name",
    "peek_gguf",
    "summarize",
]

_KiB = 1024
_MiB = 1024 * _KiB
_GiB = 1024 * _MiB


class MalformedModelError(UserError, ValueError):
    """The file is not a GGUF model llama.cpp can safely open.

    ``str(e)`` is one clear sentence for the user naming the problem, e.g.
    ``Not a GGUF model: the file does not start with "GGUF" (it looks like a ZIP archive).``
    """


@dataclass(frozen=True)
class GGUFLimits:
    """Upper bounds the header of a model file must respect; each is far above real models.

    They bound the memory and time the check may spend, so a hostile header cannot make it
    allocate gigabytes or loop for hours.
    """

    # Real models carry 30 to 100 keys (SmolLM2 has 33); 16k is ample headroom while keeping
    # the parsed dictionary small.
    max_kv_count: int = 16_384
    # The largest dense models have ~1,200 tensors, old per-expert MoE files a few thousand;
    # 64k is ample and keeps the tensor table to a few MB.
    max_tensor_count: int = 65_536
    # Chat templates reach ~50 KB and single tokens are tiny; 4 MiB accepts anything real
    # and caps the largest single read.
    max_string_bytes: int = 4 * _MiB
    # Vocabularies reach ~260k tokens (plus as many merges and scores); 8M leaves room for
    # byte-level vocabularies without letting a claimed length run unchecked.
    max_array_length: int = 8 * 1024 * 1024
    # The GGUF spec allows arrays of arrays and gguf-py writes them (llama.cpp itself refuses
    # them when loading); 2 levels covers that and bounds the parser's recursion.
    max_array_nesting: int = 2
    # GGML_MAX_DIMS in ggml.h: ggml tensors have at most 4 dimensions.
    max_dims: int = 4
    # Dimensions are uint64 on disk; the largest real one is a ~260k vocabulary, so anything
    # past 2**32 is corruption or an attempt to overflow size arithmetic in the loader.
    max_dim_size: int = 2**32
    # Layer count ({arch}.block_count): the deepest real models have ~130 layers; 1024 keeps
    # the per-layer arrays llama.cpp sizes from it bounded.
    max_block_count: int = 1024
    # The largest models one could run on a desktop are far below this; a larger size is a
    # wrong file (a disk image, an archive) rather than a model.
    max_file_bytes: int = 256 * _GiB
    # Everything before the tensor data (metadata plus tensor table): the biggest
    # vocabularies need ~20 MiB; this caps the total bytes the check reads.
    max_header_bytes: int = 256 * _MiB


@dataclass
class TensorInfo:
    """One entry of the tensor table; ``shape`` is in GGUF/ggml order (innermost dimension first)."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    type_name: str
    offset: int  # relative to GGUFHeader.data_offset, as stored in the file
    n_bytes: int
    n_elements: int


@dataclass
class ArraySummary:
    """Stands in for a metadata array too long to keep (vocabularies, merges, scores)."""

    element_type: str  # lower-case GGUFValueType name: "string", "int32", "array", ...
    length: int


@dataclass
class GGUFHeader:
    """What :func:`check_gguf` read from a file that passed every check."""

    path: str
    version: int
    file_size: int
    alignment: int
    data_offset: int
    # Scalars and strings as Python values; arrays of <= 64 elements as lists; larger arrays
    # as ArraySummary.
    metadata: dict[str, object]
    tensors: list[TensorInfo]


# Arrays up to this length are kept as lists (languages, small per-layer tables); longer ones
# would make the metadata as large as the vocabulary, so only their type and length are kept.
_INLINE_ARRAY_MAX = 64

# The fixed part of every GGUF file: magic, version, tensor count, metadata count.
_FIXED_HEADER = 4 + 4 + 8 + 8
_MAGIC_BYTES = struct.pack("<I", gguf.GGUF_MAGIC)
# The layout parsed below is that of versions 2 and 3; version 1 used 32-bit counts and
# lengths and llama.cpp dropped it, and a future version may change the layout.
_SUPPORTED_VERSIONS = (2, 3)
# Smallest possible encodings, to reject counts the file cannot possibly hold before looping:
# a metadata entry is a key length (8), a value type (4) and at least one value byte; a
# tensor entry is a name length (8), n_dims (4), at least one dimension (8), a type (4) and
# an offset (8).
_MIN_KV_BYTES = 8 + 4 + 1
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 8 + 4 + 8
# GGML_MAX_NAME in ggml.h counts the terminating NUL; llama.cpp refuses longer tensor names.
_GGML_MAX_NAME = 64
# ggml stores element counts as int64_t.
_INT64_MAX = 2**63 - 1
# Large enough to make the many small reads of a vocabulary cheap, small enough not to matter.
_READ_BUFFER = 256 * _KiB

_VT = gguf.GGUFValueType
# Byte layout of each scalar value type; GGUF is little-endian (big-endian files are refused).
_SCALAR_STRUCTS: dict[int, struct.Struct] = {
    _VT.UINT8: struct.Struct("<B"),
    _VT.INT8: struct.Struct("<b"),
    _VT.UINT16: struct.Struct("<H"),
    _VT.INT16: struct.Struct("<h"),
    _VT.UINT32: struct.Struct("<I"),
    _VT.INT32: struct.Struct("<i"),
    _VT.FLOAT32: struct.Struct("<f"),
    _VT.BOOL: struct.Struct("<B"),
    _VT.UINT64: struct.Struct("<Q"),
    _VT.INT64: struct.Struct("<q"),
    _VT.FLOAT64: struct.Struct("<d"),
}
# Only the types this parser knows how to skip; a type added to gguf later is still "unknown"
# here because its size would be a guess.
_TYPE_NAMES: dict[int, str] = {
    int(t): t.name.lower() for t in _VT if int(t) in _SCALAR_STRUCTS or t in (_VT.STRING, _VT.ARRAY)
}
_INTEGER_TYPES = frozenset(
    int(t) for t in (_VT.UINT8, _VT.INT8, _VT.UINT16, _VT.INT16, _VT.UINT32, _VT.INT32, _VT.UINT64, _VT.INT64)
)
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
# GGML_MAX_DIMS is 4; larger custom limits fall back to building the Struct per tensor.
_DIMS_STRUCTS = {n: struct.Struct(f"<{n}Q") for n in range(1, 5)}

# Recognisable starts of files people mistake for models, to say what the file probably is.
#: Text files picked by mistake (binary kinds are named by engine.file_kinds).
_TEXT_LOOKALIKES: tuple[tuple[bytes, str], ...] = (
    (b"<", "an HTML or XML page, perhaps an error page saved instead of the download"),
    (b"{", "a JSON file"),
)


def _show(text: str) -> str:
    """A name as it can appear in a one-line message: bounded and with control characters escaped."""
    if len(text) > 80:
        text = text[:77] + "..."
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _type_name(vtype: int) -> str:
    return _TYPE_NAMES.get(vtype, f"type {vtype}")




class _Cursor:
    """Position in the file; refuses any read that the file's size or the header limit forbids."""

    __slots__ = ("_file", "pos", "size", "_header_limit")

    def __init__(self, file: BinaryIO, size: int, header_limit: int) -> None:
        self._file = file
        self.pos = 0
        self.size = size
        self._header_limit = header_limit

    @property
    def remaining(self) -> int:
        return self.size - self.pos

    def _need(self, n: int, what: str) -> None:
        # Checked before reading, so a claimed length never turns into an allocation.
        if n > self.size - self.pos:
            raise MalformedModelError(
                f"The file is truncated: {what} at byte {self.pos} needs {n} bytes, "
                f"but only {self.size - self.pos} remain."
            )
        if self.pos + n > self._header_limit:
            raise MalformedModelError(
                f"The GGUF header is larger than the {human_size(self._header_limit)} limit "
                f"(reading {what} at byte {self.pos})."
            )

    def read(self, n: int, what: str) -> bytes:
        self._need(n, what)
        data = self._file.read(n)
        if len(data) != n:
            # The size came from fstat; a file still being written or replaced can shrink.
            raise MalformedModelError(
                f"The file is truncated: it ended while reading {what} at byte {self.pos} "
                "(is it still being written?)."
            )
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        self._need(n, what)
        if n:
            self._file.seek(n, os.SEEK_CUR)
            self.pos += n

    def u32(self, what: str) -> int:
        return _U32.unpack(self.read(4, what))[0]

    def u64(self, what: str) -> int:
        return _U64.unpack(self.read(8, what))[0]


class _Parser:
    def __init__(self, file: BinaryIO, size: int, path: str, limits: GGUFLimits, split_part: bool = False) -> None:
        self.cur = _Cursor(file, size, limits.max_header_bytes)
        self.split_part = split_part
        self.path = path
        self.limits = limits
        # Top-level type of each key, and element type of top-level arrays: the semantic
        # checks need them and an empty or summarised array does not show them.
        self.value_types: dict[str, int] = {}
        self.element_types: dict[str, int] = {}

    # -- strings and values -------------------------------------------------------------

    def _string_length(self, what: str) -> int:
        n = self.cur.u64(f"the length of {what}")
        if n > self.limits.max_string_bytes:
            raise MalformedModelError(
                f"{what[0].upper()}{what[1:]} claims to be {n} bytes long; "
                f"the limit is {self.limits.max_string_bytes}."
            )
        return n

    def _read_string(self, what: str) -> bytes:
        return self.cur.read(self._string_length(what), what)

    def _skip_string(self, what: str) -> None:
        self.cur.skip(self._string_length(what), what)

    def _read_value(self, vtype: int, key: str, depth: int, keep: bool) -> object:
        """One value of a known type; with ``keep`` False it is only validated and skipped."""
        if vtype == _VT.STRING:
            what = f"a string in metadata key '{_show(key)}'"
            if not keep:
                self._skip_string(what)
                return None
            # Values are display text (names, templates); a stray byte must not reject a model.
            return self._read_string(what).decode("utf-8", errors="replace")
        if vtype == _VT.ARRAY:
            return self._read_array(key, depth + 1, keep)[0]
        packer = _SCALAR_STRUCTS[vtype]
        raw = self.cur.read(packer.size, f"a {_type_name(vtype)} in metadata key '{_show(key)}'")
        (value,) = packer.unpack(raw)
        return bool(value) if vtype == _VT.BOOL else value

    def _read_array(self, key: str, depth: int, keep: bool) -> tuple[object, int]:
        cur, limits, shown = self.cur, self.limits, _show(key)
        element_type = cur.u32(f"the element type of array '{shown}'")
        if element_type not in _TYPE_NAMES:
            raise MalformedModelError(
                f"Metadata key '{shown}' is an array with an invalid element type {element_type}."
            )
        if element_type == _VT.ARRAY and depth >= limits.max_array_nesting:
            raise MalformedModelError(
                f"Metadata key '{shown}' has arrays nested {depth + 1} deep; "
                f"the limit is {limits.max_array_nesting}."
            )
        length = cur.u64(f"the length of array '{shown}'")
        if length > limits.max_array_length:
            raise MalformedModelError(
                f"Metadata key '{shown}' claims an array of {length} elements; "
                f"the limit is {limits.max_array_length}."
            )
        packer = _SCALAR_STRUCTS.get(element_type)
        # Strings carry an 8-byte length, nested arrays a 4-byte type and an 8-byte length.
        min_element = packer.size if packer else (8 if element_type == _VT.STRING else 12)
        if length * min_element > cur.remaining:
            raise MalformedModelError(
                f"Metadata key '{shown}' claims an array of {length} {_type_name(element_type)} "
                f"elements, more than the remaining {cur.remaining} bytes of the file can hold."
            )
        store = keep and length <= _INLINE_ARRAY_MAX
        what = f"the elements of array '{shown}'"
        if packer is not None:
            if not store:
                cur.skip(length * packer.size, what)
                return ArraySummary(_type_name(element_type), length), element_type
            values = [v for (v,) in packer.iter_unpack(cur.read(length * packer.size, what))]
            if element_type == _VT.BOOL:
                values = [bool(v) for v in values]
            return values, element_type
        items = [self._read_value(element_type, key, depth, store) for _ in range(length)]
        if store:
            return items, element_type
        return ArraySummary(_type_name(element_type), length), element_type

    # -- sections -----------------------------------------------------------------------

    def _fixed_header(self) -> tuple[int, int, int]:
        cur, limits = self.cur, self.limits
        start = cur.read(min(cur.size, _FIXED_HEADER), "the fixed header")
        if not _MAGIC_BYTES.startswith(start[:4]):
            # In words: the bytes themselves (b'\xe0\x1a2\x04') tell a person nothing.
            what = looks_like(start) or next((kind for prefix, kind in _TEXT_LOOKALIKES if start.startswith(prefix)),
                                             None)
            if what is None:
                what = "a text file" if reads_as_text(start) else "some other binary file"
            raise MalformedModelError(
                f'Not a GGUF model: the file does not start with "GGUF" (it looks like {what}).'
            )
        if len(start) < _FIXED_HEADER:
            raise MalformedModelError(
                f"The file is truncated: it is only {len(start)} bytes long, "
                f"shorter than the {_FIXED_HEADER}-byte GGUF header."
            )
        version, tensor_count, kv_count = struct.unpack("<IQQ", start[4:])
        if version not in _SUPPORTED_VERSIONS:
            if version & 0xFFFF == 0 and version != 0:
                detail = " (the file looks big-endian; llama.cpp here reads little-endian files only)"
            elif version == 1:
                detail = " (version 1 is obsolete; convert the model again with a current llama.cpp)"
            else:
                detail = ""
            raise MalformedModelError(
                f"Unsupported GGUF version {version}; only versions 2 and 3 can be read{detail}."
            )
        if kv_count > limits.max_kv_count:
            raise MalformedModelError(
                f"The header claims {kv_count} metadata entries; the limit is {limits.max_kv_count}."
            )
        if tensor_count > limits.max_tensor_count:
            raise MalformedModelError(
                f"The header claims {tensor_count} tensors; the limit is {limits.max_tensor_count}."
            )
        room = cur.remaining
        if kv_count * _MIN_KV_BYTES > room:
            raise MalformedModelError(
                f"The header claims {kv_count} metadata entries, but the remaining {room} bytes "
                f"can hold at most {room // _MIN_KV_BYTES}; the file is truncated or damaged."
            )
        room -= kv_count * _MIN_KV_BYTES
        if tensor_count * _MIN_TENSOR_INFO_BYTES > room:
            raise MalformedModelError(
                f"The header claims {tensor_count} tensors, but the bytes left after the metadata "
                f"can hold at most {room // _MIN_TENSOR_INFO_BYTES}; the file is truncated or damaged."
            )
        return version, tensor_count, kv_count

    def _metadata(self, kv_count: int) -> dict[str, object]:
        cur = self.cur
        metadata: dict[str, object] = {}
        for index in range(kv_count):
            key_at = cur.pos
            raw_key = self._read_string(f"the name of metadata key #{index}")
            try:
                key = raw_key.decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedModelError(
                    f"The name of metadata key #{index} (at byte {key_at}) is not valid UTF-8."
                ) from None
            if key in metadata:
                raise MalformedModelError(f"Metadata key '{_show(key)}' appears twice.")
            vtype = cur.u32(f"the value type of metadata key '{_show(key)}'")
            if vtype not in _TYPE_NAMES:
                raise MalformedModelError(f"Metadata key '{_show(key)}' has an unknown value type {vtype}.")
            self.value_types[key] = vtype
            if vtype == _VT.ARRAY:
                metadata[key], self.element_types[key] = self._read_array(key, 1, keep=True)
            else:
                metadata[key] = self._read_value(vtype, key, 0, keep=True)
        return metadata

    def _check_metadata(self, metadata: dict[str, object]) -> tuple[str, int]:
        limits, types = self.limits, self.value_types
        split_no = metadata.get("split.no")
        if self.split_part and "general.architecture" not in metadata:
            # Parts after the first of a split model carry only split.* keys and their tensors;
            # llama.cpp reads the model's description from the first part alone.
            if not isinstance(split_no, int) or isinstance(split_no, bool) or split_no < 1:
                raise MalformedModelError("The file is neither a model nor a later part of a split model "
                                          "(it has no general.architecture and no split.no).")
            metadata = {**metadata, "general.architecture": "split-part"}
            types = {**types, "general.architecture": _VT.STRING}
        if "general.architecture" not in metadata:
            raise MalformedModelError(
                "The model has no general.architecture key, so llama.cpp cannot tell what kind of model it is."
            )
        arch = metadata["general.architecture"]
        if types["general.architecture"] != _VT.STRING:
            raise MalformedModelError(
                f"general.architecture must be a string, not a {_type_name(types['general.architecture'])}."
            )
        assert isinstance(arch, str)
        if not arch:
            raise MalformedModelError("general.architecture is empty.")

        alignment = gguf.GGUF_DEFAULT_ALIGNMENT
        if "general.alignment" in metadata:
            # llama.cpp reads it as uint32 only and rejects any other type.
            if types["general.alignment"] != _VT.UINT32:
                raise MalformedModelError(
                    f"general.alignment must be a uint32, not a {_type_name(types['general.alignment'])}."
                )
            alignment = metadata["general.alignment"]
            assert isinstance(alignment, int)
            if alignment <= 0 or alignment & (alignment - 1):
                raise MalformedModelError(f"general.alignment is {alignment}, which is not a power of two.")

        if "tokenizer.ggml.tokens" in metadata:
            vtype = types["tokenizer.ggml.tokens"]
            if vtype != _VT.ARRAY or self.element_types["tokenizer.ggml.tokens"] != _VT.STRING:
                found = (
                    f"an array of {_type_name(self.element_types['tokenizer.ggml.tokens'])}"
                    if vtype == _VT.ARRAY
                    else f"a {_type_name(vtype)}"
                )
                raise MalformedModelError(
                    f"tokenizer.ggml.tokens (the vocabulary) must be an array of strings, not {found}."
                )

        block_key = f"{arch}.block_count"
        if block_key in metadata:
            shown = _show(block_key)
            if types[block_key] not in _INTEGER_TYPES:
                raise MalformedModelError(
                    f"{shown} (the layer count) must be an integer, not a {_type_name(types[block_key])}."
                )
            blocks = metadata[block_key]
            assert isinstance(blocks, int)
            if blocks < 0 or blocks > limits.max_block_count:
                raise MalformedModelError(
                    f"{shown} is {blocks} layers; the limit is {limits.max_block_count}."
                )
        return arch, alignment

    def _tensor_infos(self, tensor_count: int, alignment: int) -> list[TensorInfo]:
        cur, limits = self.cur, self.limits
        tensors: list[TensorInfo] = []
        names: set[str] = set()
        for index in range(tensor_count):
            name_length = cur.u64(f"the name length of tensor #{index}")
            if name_length >= _GGML_MAX_NAME:
                raise MalformedModelError(
                    f"The name of tensor #{index} claims to be {name_length} bytes long; "
                    f"llama.cpp allows at most {_GGML_MAX_NAME - 1}."
                )
            raw_name = cur.read(name_length, f"the name of tensor #{index}")
            try:
                name = raw_name.decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedModelError(f"The name of tensor #{index} is not valid UTF-8.") from None
            shown = _show(name)
            if name in names:
                raise MalformedModelError(f"Tensor '{shown}' appears twice in the tensor table.")
            names.add(name)

            n_dims = cur.u32(f"the dimension count of tensor '{shown}'")
            if n_dims == 0 or n_dims > limits.max_dims:
                raise MalformedModelError(
                    f"Tensor '{shown}' has {n_dims} dimensions; tensors have 1 to {limits.max_dims}."
                )
            dims_struct = _DIMS_STRUCTS.get(n_dims) or struct.Struct(f"<{n_dims}Q")
            shape = tuple(dims_struct.unpack(cur.read(dims_struct.size, f"the shape of tensor '{shown}'")))
            for dim in shape:
                if dim == 0:
                    raise MalformedModelError(f"Tensor '{shown}' has a zero dimension (shape {list(shape)}).")
                if dim > limits.max_dim_size:
                    raise MalformedModelError(
                        f"Tensor '{shown}' has a dimension of {dim} elements; the limit is {limits.max_dim_size}."
                    )
            n_elements = math.prod(shape)
            if n_elements > _INT64_MAX:
                raise MalformedModelError(
                    f"Tensor '{shown}' has shape {list(shape)}, whose element count overflows 64 bits."
                )

            ggml_type = cur.u32(f"the type of tensor '{shown}'")
            if ggml_type not in gguf.GGML_QUANT_SIZES:
                raise MalformedModelError(f"Tensor '{shown}' has an unknown ggml type {ggml_type}.")
            type_name = gguf.GGMLQuantizationType(ggml_type).name
            block_size, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ggml_type)]
            # ggml quantises row by row, so the row (innermost dimension) must hold whole blocks.
            if shape[0] % block_size:
                raise MalformedModelError(
                    f"Tensor '{shown}' has rows of {shape[0]} elements, "
                    f"not a multiple of the {type_name} block size {block_size}."
                )
            offset = cur.u64(f"the data offset of tensor '{shown}'")
            if offset % alignment:
                raise MalformedModelError(
                    f"Tensor '{shown}' starts at data offset {offset}, "
                    f"which is not a multiple of the alignment {alignment}."
                )
            tensors.append(
                TensorInfo(
                    name=name,
                    shape=shape,
                    ggml_type=ggml_type,
                    type_name=type_name,
                    offset=offset,
                    n_bytes=n_elements // block_size * type_size,
                    n_elements=n_elements,
                )
            )
        return tensors

    def _check_tensor_data(self, tensors: list[TensorInfo], data_offset: int) -> None:
        size = self.cur.size
        for tensor in tensors:
            end = data_offset + tensor.offset + tensor.n_bytes
            if end > size:
                raise MalformedModelError(
                    f"Tensor '{_show(tensor.name)}' ends at byte {end}, past the end of the file "
                    f"({size} bytes); the file is truncated or damaged."
                )
        previous: TensorInfo | None = None
        for tensor in sorted(tensors, key=lambda t: (t.offset, t.n_bytes)):
            if previous is not None and tensor.offset < previous.offset + previous.n_bytes:
                raise MalformedModelError(
                    f"Tensors '{_show(previous.name)}' and '{_show(tensor.name)}' overlap in the file "
                    f"(data offsets {previous.offset} and {tensor.offset})."
                )
            previous = tensor

    def parse(self) -> GGUFHeader:
        version, tensor_count, kv_count = self._fixed_header()
        metadata = self._metadata(kv_count)
        _arch, alignment = self._check_metadata(metadata)
        tensors = self._tensor_infos(tensor_count, alignment)
        data_offset = -(-self.cur.pos // alignment) * alignment
        self._check_tensor_data(tensors, data_offset)
        return GGUFHeader(
            path=self.path,
            version=version,
            file_size=self.cur.size,
            alignment=alignment,
            data_offset=data_offset,
            metadata=metadata,
            tensors=tensors,
        )


def check_gguf(path: str | os.PathLike[str], limits: GGUFLimits = GGUFLimits(), split_part: bool = False) -> GGUFHeader:
    """Read and validate the header of the GGUF file at ``path``.

    ``split_part`` accepts a later part of a split model (``NAME-00002-of-00003.gguf``),
    which names no architecture; the first part (or a whole model) is checked without it.

    Returns the parsed header when every check passes; raises :class:`MalformedModelError`
    (and no other exception) for anything else, including a missing, unreadable or empty
    file and a folder. Reads only the header, bounded by ``limits``, never the tensor data.
    Pure and thread-safe: call it from any thread of any process.
    """
    with _opened_model(path, limits) as (file, size, shown):
        return _Parser(file, size, shown, limits, split_part).parse()


@dataclass
class GGUFPeek:
    """What :func:`peek_gguf` read: the fixed header and the metadata before the vocabulary."""

    path: str
    version: int
    file_size: int
    tensor_count: int
    # The entries before the first ``tokenizer.`` array (or all of them in a file without one):
    # writers put the general.* and architecture keys first; the vocabulary itself is only an
    # ArraySummary under ``tokenizer.ggml.tokens`` (its size), when it is that first array.
    metadata: dict[str, object]


_VOCABULARY_KEY = "tokenizer.ggml.tokens"

# Discovery lists hundreds of files: the keys it shows come in the first few KB, so a peek
# stops at the vocabulary (megabytes of strings for a 262k-token model) or after this much.
_PEEK_BYTES = 1 * _MiB


def peek_gguf(path: str | os.PathLike[str], limits: GGUFLimits = GGUFLimits()) -> GGUFPeek:
    """The start of a GGUF file: magic, version, counts, the metadata before the vocabulary and
    the vocabulary's size.

    For listing files found on disk cheaply (a few KB read per file); it proves the file is a
    GGUF model of a known version, not that llama.cpp can load it: :func:`check_gguf` decides
    that before a model is added. Raises :class:`MalformedModelError` only. Any thread.
    """
    with _opened_model(path, limits) as (file, size, shown):
        parser = _Parser(file, size, shown, limits)
        version, tensor_count, kv_count = parser._fixed_header()
        metadata: dict[str, object] = {}
        cur = parser.cur
        for index in range(kv_count):
            if cur.pos > _PEEK_BYTES:
                break
            key = parser._read_string(f"the name of metadata key #{index}").decode("utf-8", errors="replace")
            vtype = cur.u32(f"the value type of metadata key '{_show(key)}'")
            if vtype not in _TYPE_NAMES:
                raise MalformedModelError(f"Metadata key '{_show(key)}' has an unknown value type {vtype}.")
            if key.startswith("tokenizer.") and vtype == _VT.ARRAY:
                if key == _VOCABULARY_KEY:
                    # The vocabulary's size (which sets the logits buffer, engine.library) is
                    # its array's length, stored before the strings: read it, not them.
                    element_type = cur.u32(f"the element type of array '{key}'")
                    length = cur.u64(f"the length of array '{key}'")
                    if length <= limits.max_array_length:
                        metadata[key] = ArraySummary(_TYPE_NAMES.get(element_type, "unknown"), length)
                break  # the vocabulary, merges and scores: megabytes, and not needed here
            if vtype == _VT.ARRAY:
                metadata[key] = parser._read_array(key, 1, keep=True)[0]
            else:
                metadata[key] = parser._read_value(vtype, key, 0, keep=True)
        return GGUFPeek(path=shown, version=version, file_size=size, tensor_count=tensor_count, metadata=metadata)


@contextmanager
def _opened_model(path: str | os.PathLike[str], limits: GGUFLimits) -> Iterator[tuple[BinaryIO, int, str]]:
    """The model file opened for reading, with its size and printable name, after the checks
    every reader needs (exists, a regular file, not empty, not too large); MalformedModelError
    for anything else, including OS errors while the caller reads."""
    try:
        fspath = os.fspath(path)
    except TypeError:
        raise MalformedModelError(f"Not a model file path: {path!r}.") from None
    shown = os.fsdecode(fspath)
    try:
        # O_NONBLOCK: a FIFO named like a model must not hang the check in open(); the
        # fstat below then refuses it. The descriptor is checked, not the name, so the file
        # cannot be swapped between the check and the read.
        fd = os.open(fspath, os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise MalformedModelError(f"The model file does not exist: {shown}.") from None
    except (IsADirectoryError, PermissionError) as error:
        if os.path.isdir(fspath):
            raise MalformedModelError(f"{shown} is a folder, not a model file.") from None
        raise MalformedModelError(f"The model file cannot be read: {error.strerror or error}.") from None
    except (OSError, ValueError) as error:  # ValueError: a NUL byte in the path
        reason = getattr(error, "strerror", None) or error
        raise MalformedModelError(f"The model file cannot be opened: {reason}.") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise MalformedModelError(f"{shown} is a folder, not a model file.")
        if not stat.S_ISREG(info.st_mode):
            raise MalformedModelError(f"{shown} is not a regular file, so it cannot be a model.")
        size = info.st_size
        if size == 0:
            raise MalformedModelError("The model file is empty (0 bytes).")
        if size > limits.max_file_bytes:
            raise MalformedModelError(
                f"The file is {human_size(size)}, larger than the {human_size(limits.max_file_bytes)} "
                "a model may be."
            )
        with os.fdopen(fd, "rb", buffering=_READ_BUFFER) as file:
            fd = -1  # the file object owns and closes it now
            yield file, size, shown
    except MalformedModelError:
        raise
    except OSError as error:
        raise MalformedModelError(f"The model file cannot be read: {error.strerror or error}.") from error
    except Exception as error:
        # The contract is a single exception type for callers; the wording marks a bug here.
        raise MalformedModelError(
            f"The model file could not be checked ({type(error).__name__}: {error})."
        ) from error
    finally:
        if fd >= 0:
            os.close(fd)


def file_type_name(metadata: dict[str, object]) -> str | None:
    """The quantization ``general.file_type`` names ("Q4_K_M", "F16"), None when absent or unknown."""
    file_type = metadata.get("general.file_type")
    file_types = getattr(gguf, "LlamaFileType", None)
    if file_types is not None and isinstance(file_type, int) and not isinstance(file_type, bool):
        try:
            name = file_types(file_type).name
        except ValueError:
            return None  # a newer type than this gguf knows
        if name != "GUESSED":
            return "F32" if name == "ALL_F32" else name.removeprefix("MOSTLY_")
    return None


def _quantization(header: GGUFHeader) -> str | None:
    name = file_type_name(header.metadata)
    if name is not None:
        return name
    # Without a file type, the type holding most parameters is what the user would call it.
    weights: Counter[str] = Counter()
    for tensor in header.tensors:
        weights[tensor.type_name] += tensor.n_elements
    return weights.most_common(1)[0][0] if weights else None


def summarize(header: GGUFHeader) -> dict:
    """Plain JSON-able dict describing the model for the model library.

    Keys: path, architecture, name, parameter_count, quantization, context_length,
    block_count, embedding_length, licence, licence_name, licence_link, chat_template,
    vocab_size, file_size, gguf_version, tensor_count, recommended_sampling (the file's own
    ``general.sampling.*`` values by SamplingParams name; {} when it has none). Missing values are None.
    """
    meta = header.metadata
    arch = meta.get("general.architecture")

    def integer(key: str) -> int | None:
        value = meta.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def text(key: str) -> str | None:
        value = meta.get(key)
        return value if isinstance(value, str) else None

    tokens = meta.get("tokenizer.ggml.tokens")
    if isinstance(tokens, ArraySummary):
        vocab_size: int | None = tokens.length
    elif isinstance(tokens, list):
        vocab_size = len(tokens)
    else:
        vocab_size = None
    return {
        "path": header.path,
        "architecture": arch if isinstance(arch, str) else None,
        "name": text("general.name"),
        "parameter_count": sum(t.n_elements for t in header.tensors),
        "quantization": _quantization(header),
        "context_length": integer(f"{arch}.context_length"),
        "block_count": integer(f"{arch}.block_count"),
        "embedding_length": integer(f"{arch}.embedding_length"),
        "licence": text("general.license"),
        "licence_name": text("general.license.name"),
        "licence_link": text("general.license.link"),
        "chat_template": text("tokenizer.chat_template"),
        "vocab_size": vocab_size,
        "file_size": header.file_size,
        "gguf_version": header.version,
        "tensor_count": len(header.tensors),
        "recommended_sampling": recommended_sampling(meta),
    }


#: llama.cpp's recommended-sampling keys (``general.sampling.*``, written by convert_hf_to_gguf
#: from a model's generation_config.json) and the SamplingParams field each sets.
SAMPLING_KEYS = {
    "general.sampling.temp": "temperature",
    "general.sampling.top_p": "top_p",
    "general.sampling.top_k": "top_k",
    "general.sampling.min_p": "min_p",
    "general.sampling.penalty_repeat": "repeat_penalty",
    "general.sampling.penalty_last_n": "repeat_last_n",
}


def recommended_sampling(meta: dict) -> dict:
    """The sampling a file recommends, by SamplingParams name; values of the wrong type are left out."""
    found = {}
    for key, name in SAMPLING_KEYS.items():
        value = meta.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            found[name] = int(value) if name in ("top_k", "repeat_last_n") else float(value)
    return found
