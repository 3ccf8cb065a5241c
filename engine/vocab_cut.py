"""A copy of a model's F16 weights whose vocabulary keeps only what Latin-script text can use
(issue 21: batched translation between English, French, German and Spanish).

Runs inside the engine worker process, on its request thread (it writes one file).

Why: a batch of translations is bound by the output head — every generated token multiplies
the hidden state by the whole token-embedding table, 262,144 rows for Gemma 3 — and most of
those rows are words of other scripts that a Latin-script translation never produces. The cut
copy keeps every control, byte and user-defined token and every ordinary token made only of
:func:`latin_char` characters, drops the rest (their embedding rows with them) and renumbers.

Why the output does not change: the default translation model's tokenizer is SentencePiece
("llama" in GGUF): it starts from the text's own characters and merges neighbours into longer
tokens of the vocabulary, so a text made only of kept characters can only ever form kept tokens
— its tokens are the same pieces under new numbers. The head then scores only kept tokens; a
greedy step that would have chosen a dropped token (a word in another script) is the one place
the outputs could part, which is why a request must opt in (a translation into a Latin-script
language) and why the worker uses the cut copy only when the prefix and every item are made of
kept characters. Other tokenizers (byte-level BPE merges by rank, and a dropped merge result
would change the pieces) are not cut.

The kept count is padded up to a multiple of :data:`PAD_TO` with the first dropped tokens:
measured, a vocabulary of another size falls off llama.cpp's fast matrix path and the head
gets no faster. ``benchmarks/batch_translation.py`` measures the result against the full copy.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.llama_context import EngineError

#: Vocabulary sizes the fast matrix kernels take whole.
PAD_TO = 256
#: SentencePiece's word-start mark, part of many tokens' text.
_WORD_START = "\u2581"
#: GGUF token types kept whatever their text (1 is an ordinary token).
_NORMAL = 1
#: Tokenizer keys holding token ids, renumbered in the copy.
_ID_SUFFIX = "_token_id"


def latin_char(ch: str) -> bool:
    """Latin letters with their accents (Latin-1, Extended-A and -B), ASCII, general punctuation
    (dashes, typographic quotes, ellipsis) and currency signs."""
    o = ord(ch)
    return o < 0x250 or 0x2000 <= o <= 0x206F or 0x20A0 <= o <= 0x20CF or ch == _WORD_START


def latin_text(text: str) -> bool:
    return all(latin_char(ch) for ch in text)


def kept_tokens(pieces: list[bytes], types: list[int]) -> list[int]:
    """Old ids of the tokens the cut keeps, in order, padded to a multiple of PAD_TO."""
    keep = [i for i, (piece, kind) in enumerate(zip(pieces, types))
            if kind != _NORMAL or latin_text(piece.decode("utf-8", "replace"))]
    kept = set(keep)
    padding = [i for i in range(len(pieces)) if i not in kept][: (-len(keep)) % PAD_TO]
    return sorted(keep + padding)


def cut_to_latin(source: str | os.PathLike, target: str | os.PathLike) -> int:
    """Write the cut copy of the F16 file ``source`` to ``target`` (atomically). Returns the
    vocabulary size kept. EngineError when the model's tokenizer is not SentencePiece."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(source))
    fields = reader.fields

    def text(key: str) -> str:
        return bytes(fields[key].parts[-1]).decode("utf-8")

    if "tokenizer.ggml.model" not in fields or text("tokenizer.ggml.model") != "llama":
        raise EngineError(f"{Path(source).name}: only SentencePiece vocabularies can be cut.")
    tokens = fields["tokenizer.ggml.tokens"]
    pieces = [bytes(tokens.parts[i]) for i in tokens.data]
    types = [int(fields["tokenizer.ggml.token_type"].parts[i][0]) for i in fields["tokenizer.ggml.token_type"].data]
    scores = [float(fields["tokenizer.ggml.scores"].parts[i][0]) for i in fields["tokenizer.ggml.scores"].data]
    keep = kept_tokens(pieces, types)
    new_id = {old: new for new, old in enumerate(keep)}

    target = Path(target)
    partial = target.with_name(target.name + ".partial")
    writer = gguf.GGUFWriter(str(partial), text("general.architecture"))
    replaced = {"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"}
    for key, field in fields.items():
        if key in replaced or key.startswith("GGUF.") or key == "general.architecture":
            continue
        kind = field.types[0]
        if kind == gguf.GGUFValueType.ARRAY:
            item = field.types[-1]
            values = ([bytes(field.parts[i]).decode("utf-8") for i in field.data] if item == gguf.GGUFValueType.STRING
                      else [field.parts[i].tolist()[0] for i in field.data])
            writer.add_key_value(key, values, kind, sub_type=item)
        elif kind == gguf.GGUFValueType.STRING:
            writer.add_key_value(key, text(key), kind)
        else:
            value = field.parts[-1].tolist()[0]
            if key.startswith("tokenizer.") and key.endswith(_ID_SUFFIX):
                if value not in new_id:
                    raise EngineError(f"{Path(source).name}: its {key} would be cut.")
                value = new_id[value]
            writer.add_key_value(key, value, kind)
    writer.add_token_list([pieces[i] for i in keep])
    writer.add_token_scores([scores[i] for i in keep])
    writer.add_token_types([types[i] for i in keep])
    rows = np.asarray(keep)
    for tensor in reader.tensors:
        data = np.asarray(tensor.data)
        if tensor.name in ("token_embd.weight", "output.weight"):
            data = data[rows]
        writer.add_tensor(tensor.name, data, raw_dtype=tensor.tensor_type)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)
    return len(keep)
