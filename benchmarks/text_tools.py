"""Sentence segmentation and language identification: the app's code against maintained libraries.

    .venv/bin/python benchmarks/text_tools.py --part development   # choose
    .venv/bin/python benchmarks/text_tools.py --part scored        # report once

No model, CPU only, single thread. The parts are fixed here, before the first run:

- Language identification: short lines (Tatoeba: the first LID_ROWS rows of each
  ``translation/parallel/eng-{fra,deu,spa}.tsv``, both columns) and long lines (WMT
  newstest2013: both columns of ``translation/news/newstest2013-eng-{fra,deu,spa}.tsv``; the
  English column is the same text in the three files, so it is read from the French one).
  Even rows of each file are the development part, odd rows the scored part. Accuracy per
  language of the stop-word profiles the app used before issue 23 (frozen below), the app's
  detector as it is now, py3langid and lingua (when installed), each limited to what the app
  serves (English, French, German, Spanish); py3langid also with the other languages the app
  names to refuse them (``langdetect.OTHER_NAMES``), as the app runs it. Time per 1,000 lines,
  after one call that loads what the detector loads lazily.
- Segmentation: paragraphs made by joining consecutive news lines of one language with one
  space, PARAGRAPH_SIZES lines at a time in turn; even paragraphs are the development part,
  odd ones the scored part. A line is a sentence when it ends in . ! ? or … (closing quotes
  allowed) and holds no clear sentence end inside (a lower-case word of four letters or more,
  then . ! ?, then a capital): headlines and two-sentence lines would make the boundaries
  ambiguous. The French lines are also written in French typography (« », a space before ! ? ; :).
  Segmenters: the app's sentence rule before issue 23 (frozen below), the app's ``segment`` as it
  is now, and pysbd. Each is scored on the boundaries between the lines (precision, recall),
  the share of paragraphs cut exactly at them, and whether its segments give back the
  paragraph's characters (whitespace aside).

Prints one JSON line and keeps it in benchmarks/results/text_tools[_development].json.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import time
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import privacy  # noqa: E402

privacy.install()

from assistant.tasks import langdetect  # noqa: E402
from assistant.tasks import translation  # noqa: E402
from benchmarks.record import report  # noqa: E402

DATA = Path(os.environ.get("ASSISTANT_SHARED_DATA", ROOT / ".." / "shared" / "data")).resolve() / "translation"
LANGUAGES = ("en", "fr", "de", "es")
COLUMN = {"fr": "fra", "de": "deu", "es": "spa"}
LID_ROWS = 3000
PARAGRAPH_SIZES = (3, 4, 5, 6)
_SENTENCE_LINE = re.compile(r"[.!?…](?:\s?[\"'»”’)])*$")
_INNER_END = re.compile(r"\b[a-zà-ÿß]{4,}\s?[.!?…](?:\s?[\"'»”’)])*\s+[\"'«“¿¡(]*[A-ZÀ-ÖØ-Þ]")
#: Segmentation sets: the four languages, and the French lines in French typography.
SEGMENTATION_SETS = ("en", "fr", "fr_typography", "de", "es")


def read_tsv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def in_part(rows: list, part: str) -> list:
    return rows[0::2] if part == "development" else rows[1::2]


# ----- language identification ------------------------------------------------------------------------
def lid_lines(part: str) -> dict[str, dict[str, list[str]]]:
    """{"short"|"long": {language: lines}} of the part."""
    sets: dict[str, dict[str, list[str]]] = {"short": {lang: [] for lang in LANGUAGES},
                                             "long": {lang: [] for lang in LANGUAGES}}
    for lang, column in COLUMN.items():
        short = in_part(read_tsv(DATA / "parallel" / f"eng-{column}.tsv")[:LID_ROWS], part)
        sets["short"]["en"] += [row["eng"] for row in short]
        sets["short"][lang] += [row[column] for row in short]
        long = in_part(read_tsv(DATA / "news" / f"newstest2013-eng-{column}.tsv"), part)
        if lang == "fr":
            sets["long"]["en"] += [row["eng"] for row in long]
        sets["long"][lang] += [row[column] for row in long]
    return sets


def app_detector():
    return lambda text: langdetect.detect(text).language


# The hand-written detector the app used before issue 23 (assistant/tasks/langdetect.py at
# commit 9e620c5), kept here as the baseline: stop words, typical letters and letter sequences.
# Its non-Latin script check is left out: it answers nothing for Latin-script lines.
_LETTERS = {"de": "äöüß", "fr": "çàèêëîïôûùœ", "es": "ñ¿¡áíóú", "pt": "ãõâ", "it": "ìò"}
_NGRAMS = {
    "en": ("th", "wh", "ing", "ght", "ly", "ou", "ee", "oo", "w"),
    "fr": ("eau", "eux", "oi", "ou", "ait", "ez", "qu'", "tion", "ille", "ç"),
    "de": ("sch", "ch", "ung", "ei", "ie", "tz", "cht", "k", "w", "z"),
    "es": ("ll", "ción", "os", "as", "ar", "ue", "ie", "ñ", "qu"),
    "it": ("zione", "gli", "cch", "zz", "tt"),
}
_PROFILE_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)


def stopword_profile_language(text: str) -> str | None:
    lowered = unicodedata.normalize("NFC", text.lower().replace("’", "'"))
    words = _PROFILE_WORD.findall(lowered)
    scores = {lang: 0.0 for lang in langdetect.STOPWORDS}
    for word in words:
        for lang, stop in langdetect.STOPWORDS.items():
            if word in stop:
                scores[lang] += 1.0
    for word in words:
        for lang, grams in _NGRAMS.items():
            scores[lang] += 0.15 * sum(1 for g in grams if g in word)
    for lang, letters in _LETTERS.items():
        scores[lang] += 1.5 * sum(lowered.count(ch) for ch in letters)
    if sum(scores.values()) <= 0:
        return "en" if words and all(ch.isascii() for ch in lowered) else None
    return max(scores.items(), key=lambda kv: kv[1])[0]


def py3langid_detector(languages):
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(list(languages))
    return lambda text: identifier.classify(text)[0]


def lingua_detector():
    from lingua import Language, LanguageDetectorBuilder

    detector = LanguageDetectorBuilder.from_languages(
        Language.ENGLISH, Language.FRENCH, Language.GERMAN, Language.SPANISH).with_preloaded_language_models().build()

    def detect(text: str) -> str | None:
        found = detector.detect_language_of(text)
        return found.iso_code_639_1.name.lower() if found is not None else None
    return detect


def lid_detectors() -> dict:
    detectors = {"stopword_profiles_before": stopword_profile_language,
                 "app": app_detector(),
                 "py3langid_4": py3langid_detector(LANGUAGES),
                 "py3langid_app_languages": py3langid_detector(list(LANGUAGES) + list(langdetect.OTHER_NAMES))}
    try:
        detectors["lingua_4"] = lingua_detector()
    except ImportError:
        print("lingua is not installed: skipped", file=sys.stderr)
    return detectors


def score_lid(detect, sets: dict) -> dict:
    out: dict = {}
    for length, by_language in sets.items():
        per_language = {}
        right = total = 0
        elapsed = 0.0
        confusions: dict[str, int] = {}
        detect("A first call loads what the detector loads lazily.")
        for lang, lines in by_language.items():
            start = time.perf_counter()
            found = [detect(line) for line in lines]
            elapsed += time.perf_counter() - start
            hits = sum(f == lang for f in found)
            per_language[lang] = round(hits / len(lines), 4)
            right += hits
            total += len(lines)
            for f in found:
                if f != lang:
                    confusions[f"{lang}->{f}"] = confusions.get(f"{lang}->{f}", 0) + 1
        out[length] = {"accuracy": round(right / total, 4), "per_language": per_language,
                       "macro_accuracy": round(sum(per_language.values()) / len(per_language), 4),
                       "ms_per_1000": round(1000 * elapsed / total * 1000, 1), "lines": total,
                       "confusions": dict(sorted(confusions.items(), key=lambda kv: -kv[1])[:6])}
    return out


# ----- segmentation -------------------------------------------------------------------------------------
def french_typography(line: str) -> str:
    """The line as French is often typed: « » for straight double quotes, a space before ! ? ; :
    (the news file uses straight quotes and no such spaces, so the app's users' quotes and
    attributions, « … ! » a-t-il ajouté, would otherwise not be measured)."""
    line = re.sub(r'"([^"]+)"', lambda m: f"« {m.group(1).strip()} »", line)
    return re.sub(r"(?<=\S)([!?;:])(?=\s|$|[»])", r" \1", line)


def news_sentences(name: str) -> list[str]:
    lang = name[:2]
    column = "eng" if lang == "en" else COLUMN[lang]
    rows = read_tsv(DATA / "news" / f"newstest2013-eng-{COLUMN.get(lang, 'fra')}.tsv")
    lines = [" ".join(row[column].split()) for row in rows]
    if name == "fr_typography":
        lines = [french_typography(line) for line in lines]
    return [line for line in lines if _SENTENCE_LINE.search(line) and not _INNER_END.search(line)]


def paragraphs(name: str, part: str) -> list[list[str]]:
    sentences = news_sentences(name)
    groups, start, turn = [], 0, 0
    while start < len(sentences):
        size = PARAGRAPH_SIZES[turn % len(PARAGRAPH_SIZES)]
        if len(sentences) - start >= 2:
            groups.append(sentences[start:start + size])
        start += size
        turn += 1
    return in_part(groups, part)


def app_segmenter(lang: str):
    def cut(text: str) -> list[tuple[str, int]]:
        spans, offset = [], 0
        for piece in translation.segment(text):
            if piece.text.strip():
                spans.append((piece.text, offset))
            offset += len(piece.text)
        return spans
    return cut


# The sentence rule the app used before issue 23 (assistant/tasks/translation.py at commit
# 9e620c5), kept here as the baseline; long sentences are cut as the app cuts them.
_SENTENCE_END_BEFORE = re.compile(r"(?<=[.!?…])[\"'»”’)\]]*\s+(?=\S)")


def rules_before_segmenter(lang: str):
    def cut(text: str) -> list[tuple[str, int]]:
        starts, start = [], 0
        for match in _SENTENCE_END_BEFORE.finditer(text):
            candidate = text[start:match.start() + len(match.group(0).rstrip())]
            last_word = candidate.rstrip(".!?…\"'»”’)]").split()[-1:] if candidate else []
            if last_word and last_word[0].lower().rstrip(".") in translation._ABBREVIATIONS:
                continue
            starts.append(start)
            start = match.end()
        starts.append(start)
        spans = []
        for begin, end in zip(starts, starts[1:] + [len(text)]):
            offset = begin
            for chunk in translation._split_long(text[begin:end]):
                spans.append((chunk, offset))
                offset += len(chunk)
        return spans
    return cut


def pysbd_segmenter(lang: str):
    import pysbd

    segmenter = pysbd.Segmenter(language=lang, clean=False, char_span=True)
    return lambda text: [(span.sent, span.start) for span in segmenter.segment(text)]


def _starts(sentences: list[str]) -> set[int]:
    starts, offset = set(), 0
    for sentence in sentences:
        starts.add(offset)
        offset += len(sentence) + 1
    return starts - {0}


def _found_starts(text: str, spans: list[tuple[str, int]]) -> set[int]:
    """Where each found segment's first non-space character is (by its own offset)."""
    starts = set()
    for segment, offset in spans:
        lead = len(segment) - len(segment.lstrip())
        starts.add(offset + lead)
    return starts - {0}


def score_segmenter(make, part: str) -> dict:
    out: dict = {}
    total_tp = total_fp = total_fn = total_exact = total_paragraphs = total_lossy = 0
    for lang in SEGMENTATION_SETS:
        cut = make(lang[:2])
        tp = fp = fn = exact = lossy = 0
        examples = []
        groups = paragraphs(lang, part)
        for sentences in groups:
            text = " ".join(sentences)
            spans = cut(text)
            if "".join("".join(s.split()) for s, _ in spans) != "".join(text.split()):
                lossy += 1
            gold, found = _starts(sentences), _found_starts(text, spans)
            tp += len(gold & found)
            fp += len(found - gold)
            fn += len(gold - found)
            if gold == found:
                exact += 1
            elif len(examples) < 3:
                wrong = sorted((found - gold) | (gold - found))[0]
                examples.append(text[max(0, wrong - 40):wrong + 20])
        out[lang] = {"paragraphs": len(groups), "precision": round(tp / max(1, tp + fp), 4),
                     "recall": round(tp / max(1, tp + fn), 4), "exact_paragraphs": round(exact / len(groups), 4),
                     "paragraphs_losing_characters": lossy, "errors_seen": examples}
        total_tp, total_fp, total_fn = total_tp + tp, total_fp + fp, total_fn + fn
        total_exact, total_paragraphs, total_lossy = total_exact + exact, total_paragraphs + len(groups), total_lossy + lossy
    out["all"] = {"paragraphs": total_paragraphs, "precision": round(total_tp / max(1, total_tp + total_fp), 4),
                  "recall": round(total_tp / max(1, total_tp + total_fn), 4),
                  "exact_paragraphs": round(total_exact / total_paragraphs, 4),
                  "paragraphs_losing_characters": total_lossy}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("development", "scored"), default="scored")
    args = parser.parse_args(argv)
    sets = lid_lines(args.part)
    figures: dict = {"language_identification": {}, "segmentation": {}}
    for name, detect in lid_detectors().items():
        figures["language_identification"][name] = score_lid(detect, sets)
    for name, make in (("rules_before", rules_before_segmenter), ("app", app_segmenter), ("pysbd", pysbd_segmenter)):
        figures["segmentation"][name] = score_segmenter(make, args.part)
    for name, result in figures["language_identification"].items():
        print(f"{name:26s} short {result['short']['accuracy']:.4f} {result['short']['ms_per_1000']:8.1f} ms/1000  "
              f"long {result['long']['accuracy']:.4f} {result['long']['ms_per_1000']:8.1f} ms/1000", file=sys.stderr)
    for name, result in figures["segmentation"].items():
        print(f"{name:12s} " + "  ".join(f"{lang} P{r['precision']:.3f} R{r['recall']:.3f} E{r['exact_paragraphs']:.3f} "
                                         f"lossy {r['paragraphs_losing_characters']}" for lang, r in result.items()),
              file=sys.stderr)
    report("text_tools", figures, targets={}, met=True, part=args.part,
           name="text_tools" if args.part == "scored" else "text_tools_development")
    return 0


if __name__ == "__main__":
    sys.exit(main())
