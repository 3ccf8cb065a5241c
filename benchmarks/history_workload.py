"""The generated history the history benchmarks measure, built once here for all of them:
``history_search.py`` (search and insert speed) and ``encryption_overhead.py`` (the same
workload encrypted and in plaintext, side by side).

Messages are Zipf-distributed words (s = 1.07, like real text: a few very common words, a long
tail of rare ones) over a vocabulary of made-up words, spread over conversations whose clock
covers a year, so that date filters have work to do. Searches mix every kind the search box
and the CLI offer: rare, mid-frequency and common words, two words, phrases, prefixes, and the
filters (conversation, role, model, date range). Everything is drawn from seeded generators, so
two runs (or two databases in one run) get the very same texts and queries.

Runs on the benchmark's main thread; the store is used the way the app's worker thread uses it.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from itertools import accumulate

from assistant.history.archive import History

CONVERSATIONS = 10_000
MESSAGES = 200_000
VOCABULARY = 30_000
SEED = 1234
MODELS = ("smollm2-135m-instruct-q4_1", "gemma-3-270m-q4_k_m", "my-finetune")
#: Words per message, drawn uniformly: short replies to long explanations.
MESSAGE_LENGTHS = (3, 8, 15, 25, 40, 60, 120)
#: The fake clock's start and span (a year), so that date filters select a part of the history.
START = 1_700_000_000.0
YEAR_S = 365 * 86_400

SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]


def make_vocabulary(rng: random.Random, size: int = VOCABULARY) -> list[str]:
    """``size`` made-up words; the list's order is the frequency rank (0 = most common)."""
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))))
    ordered = sorted(words)
    rng.shuffle(ordered)
    return ordered


def zipf_texts(rng: random.Random, vocab: list[str], lengths: list[int]) -> list[str]:
    """One text per entry of ``lengths`` (words), Zipf-distributed over ``vocab``: the most
    common word is in most long texts, as "the" would be."""
    cum_weights = list(accumulate(1.0 / (rank + 1) ** 1.07 for rank in range(len(vocab))))
    words = rng.choices(vocab, cum_weights=cum_weights, k=sum(lengths))
    texts, at = [], 0
    for n in lengths:
        texts.append(" ".join(words[at: at + n]))
        at += n
    return texts


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Workload:
    """The texts and titles of one generated history (see the module docstring)."""

    vocab: list[str]  # index = frequency rank
    texts: list[str]  # every message, in the order they are added
    titles: list[str]  # one per conversation

    @property
    def per_conversation(self) -> int:
        return len(self.texts) // len(self.titles)

    def batch(self, i: int) -> list[dict]:
        """The messages of conversation ``i``, turns alternating, models taking turns."""
        n = self.per_conversation
        return [{"role": "user" if j % 2 == 0 else "assistant", "text": text, "model": MODELS[(i + j) % len(MODELS)]}
                for j, text in enumerate(self.texts[i * n: (i + 1) * n])]


def generate(conversations: int = CONVERSATIONS, messages: int = MESSAGES, vocabulary: int = VOCABULARY,
             seed: int = SEED) -> Workload:
    rng = random.Random(seed)
    vocab = make_vocabulary(rng, vocabulary)
    texts = zipf_texts(rng, vocab, [rng.choice(MESSAGE_LENGTHS) for _ in range(messages)])
    common = (min(50, vocabulary - 1), min(5000, vocabulary))
    titles = [f"{vocab[rng.randrange(*common)]} {vocab[rng.randrange(*common)]} {i}" for i in range(conversations)]
    return Workload(vocab, texts, titles)


class YearClock:
    """The conversations' clock: :meth:`tick` once per conversation moves it through a year."""

    def __init__(self, conversations: int):
        self.now = START
        self.step = YEAR_S / max(1, conversations)

    def __call__(self) -> float:
        return self.now

    def tick(self) -> None:
        self.now += self.step


@dataclass
class Query:
    kind: str
    text: str
    filters: dict


def make_queries(workload: Workload, conversation_ids: list[str], count: int, seed: int = SEED) -> list[Query]:
    """``count`` searches, an equal share of each kind, shuffled (see the module docstring)."""
    rng = random.Random(seed + 1)
    vocab, size = workload.vocab, len(workload.vocab)

    def rank(low: int, high: int) -> str:
        return vocab[rng.randrange(min(low, size - 1), min(high, size))]

    def adjacent_pair() -> str:
        parts = workload.texts[rng.randrange(len(workload.texts))].split()
        k = rng.randrange(max(1, len(parts) - 1))
        return " ".join(parts[k: k + 2])

    def filters() -> dict:
        return rng.choice([{"role": "assistant"}, {"model": MODELS[1]}, {"conversation_id": rng.choice(conversation_ids)},
                           {"since": START + 86_400 * 30, "until": START + 86_400 * 120}])

    kinds = {
        "rare word": lambda: (rank(10_000, size), {}),
        "mid word": lambda: (rank(300, 10_000), {}),
        "common word": lambda: (rank(10, 300), {}),
        "two words": lambda: (f"{rank(100, 5000)} {rank(100, 5000)}", {}),
        "phrase": lambda: (f'"{adjacent_pair()}"', {}),
        "prefix": lambda: (rank(300, size)[:4] + "*", {}),
        "filtered": lambda: (rank(100, 10_000), filters()),
    }
    queries = [Query(kind, *make()) for kind, make in kinds.items() for _ in range(max(1, count // len(kinds)))]
    rng.shuffle(queries)
    return queries


def seconds(call, *args, **kwargs) -> float:
    """Wall-clock seconds of one call."""
    started = time.perf_counter()
    call(*args, **kwargs)
    return time.perf_counter() - started


def timed_search(history: History, query: Query) -> tuple[float, int]:
    """(milliseconds, results) of one search through ``History.search`` (ranking, snippets and
    result objects included: what the search box waits for)."""
    started = time.perf_counter()
    found = history.search(query.text, **query.filters)
    return (time.perf_counter() - started) * 1000, len(found)
