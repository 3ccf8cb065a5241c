"""Draft tokens for speculative decoding without a draft model (prompt lookup).

Runs inside the engine worker process, on its request thread, one instance per reply.

A small model's reply often repeats what its prompt holds: a grounded answer quotes its
passages, a translation with a memory reuses the memory's phrases, an edited question gets
much of the earlier reply again. :class:`PromptLookup` finds the reply's last few tokens
earlier in the prompt (or in extra texts the request names, such as the reply being
replaced) and proposes the tokens that followed there as a draft. The model verifies the
whole draft in one batch (:meth:`engine.llama_runtime.LoadedModel.generate`): a drafted
token is kept only where the model itself samples that very token, so the reply is the one
plain decoding would give.

A batch of several tokens costs more than one token, so a rejected draft is time lost.
:class:`DraftBudget` decides how long a draft is worth verifying from what it observes
during the reply: how often drafted tokens were accepted, and how much an extra token in a
batch costs next to a one-token step on this machine now. Where drafts keep failing (free
chat that quotes nothing) the budget falls to zero and decoding is plain again, with only
a rare one-token probe to notice when the reply starts to quote.
"""

from __future__ import annotations

#: Between two sources: no n-gram spans it and no draft runs over it.
_BOUNDARY = -1


class PromptLookup:
    """An index of the n-grams of the prompt, the extra sources and the reply so far.

    ``find`` looks for the newest earlier occurrence of the last ``max_ngram`` tokens (then
    shorter n-grams down to ``min_ngram``) and returns the tokens that followed it.
    """

    def __init__(self, sources: list[list[int]], max_ngram: int = 3, min_ngram: int = 2):
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError("min_ngram must be between 1 and max_ngram")
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram
        self.tokens: list[int] = []
        #: n-gram -> index of the token that followed its newest occurrence.
        self._next: dict[tuple[int, ...], int] = {}
        for source in sources:
            if source:
                self.extend(source)
                self.tokens.append(_BOUNDARY)

    def extend(self, tokens: list[int]) -> None:
        for token in tokens:
            self.append(token)

    def append(self, token: int) -> None:
        """Add one token; the n-grams ending just before it now have a continuation."""
        tokens = self.tokens
        end = len(tokens)
        for n in range(self.min_ngram, self.max_ngram + 1):
            if end < n:
                break
            gram = tuple(tokens[end - n:end])
            if _BOUNDARY in gram:
                break
            self._next[gram] = end
        tokens.append(token)

    #: How far back a match is followed to measure its length.
    LONGEST_MATCH = 32

    def find(self, limit: int) -> tuple[list[int], int]:
        """Up to ``limit`` tokens that followed the newest earlier occurrence of the longest
        matching n-gram at the end, and how many tokens at the end match there (at most
        :attr:`LONGEST_MATCH`; 0 and [] when nothing matches). A long match is a reply that
        is copying its source, whose next tokens are likely the source's next tokens too."""
        tokens = self.tokens
        if limit <= 0:
            return [], 0
        for n in range(self.max_ngram, self.min_ngram - 1, -1):
            if len(tokens) < n:
                continue
            start = self._next.get(tuple(tokens[-n:]))
            if start is None:
                continue
            draft = []
            for token in tokens[start:start + limit]:
                if token == _BOUNDARY:
                    break
                draft.append(token)
            if not draft:
                continue
            matched = n
            end = len(tokens)
            while (matched < self.LONGEST_MATCH and start - matched - 1 >= 0
                   and tokens[start - matched - 1] == tokens[end - matched - 1] != _BOUNDARY):
                matched += 1
            return draft, matched
        return [], 0


class DraftBudget:
    """How many drafted tokens are worth verifying in the next step.

    Verifying ``k`` drafted tokens costs ``1 + k * r`` one-token steps, where ``r`` is the
    measured cost of an extra token in a batch relative to a one-token step, and yields
    ``1 + a + a**2 + ... + a**k`` tokens on average for a per-token acceptance ``a`` (a drafted
    token counts only when all before it were accepted). The draft length is the ``k`` with
    the best yield per cost, and no draft at all unless that beats plain decoding by
    :attr:`MIN_GAIN`: where a batch costs nearly as much per token as one-token steps (a small
    model whose weights lack fast batch kernels), drafting gains nothing, and it would only
    change which of two near-tied tokens wins (a batch rounds differently from a single token).

    ``a`` is observed separately for short, medium and long matches (:meth:`PromptLookup.find`):
    a reply that has followed its source for many tokens keeps following it far more often
    than one that shares two tokens with it by chance, and one kind must not switch the other off.
    """

    #: Match lengths from which a match counts as medium, and as long.
    MEDIUM_MATCH = 4
    LONG_MATCH = 8
    #: Before any observation (short, medium, long matches), and an extra token at half a step.
    PRIOR_ACCEPTANCE = (0.4, 0.6, 0.85)
    PRIOR_COST_RATIO = 0.5
    #: Weight of the newest observation in the running averages.
    SMOOTHING = 0.3
    #: Expected tokens per unit of cost a draft must reach to be worth verifying.
    MIN_GAIN = 1.1
    #: One-token steps between probes (one drafted token after a medium or long match) once
    #: drafting has switched itself off: a probe measures the batch cost and the acceptance again.
    PROBE_EVERY = 64

    def __init__(self, max_draft: int = 8, single_ms: float | None = None, extra_ms_per_token: float | None = None):
        """``single_ms`` and ``extra_ms_per_token``: the step costs an earlier reply of the same
        model measured (they belong to the model and the machine; acceptance belongs to a reply)."""
        self.max_draft = max(0, int(max_draft))
        self.acceptance = list(self.PRIOR_ACCEPTANCE)
        self.single_ms = single_ms
        self.extra_ms_per_token = extra_ms_per_token
        self._since_draft = 0
        self.drafted = 0
        self.accepted = 0
        self.steps = 0

    @property
    def cost_ratio(self) -> float:
        if self.single_ms is None or self.extra_ms_per_token is None or self.single_ms <= 0:
            return self.PRIOR_COST_RATIO
        return min(1.0, max(0.02, self.extra_ms_per_token / self.single_ms))

    def kind(self, matched: int) -> int:
        """0, 1 or 2: a short, medium or long match."""
        return 2 if matched >= self.LONG_MATCH else 1 if matched >= self.MEDIUM_MATCH else 0

    def length(self, available: int, matched: int = 0) -> int:
        """Tokens to draft now, given that ``available`` were found after a match of ``matched``."""
        limit = min(self.max_draft, available)
        ratio = self.cost_ratio
        acceptance = self.acceptance[self.kind(matched)]
        best, best_gain = 0, 1.0
        expected, chance = 1.0, 1.0
        for length in range(1, limit + 1):
            chance *= acceptance
            expected += chance
            gain = expected / (1.0 + length * ratio)
            if gain > best_gain:
                best, best_gain = length, gain
        if best_gain >= self.MIN_GAIN:
            return best
        if limit > 0 and matched >= self.MEDIUM_MATCH and self._since_draft >= self.PROBE_EVERY:
            return 1  # drafting has switched itself off: look again now and then
        return 0

    def plain_step(self, elapsed_ms: float) -> None:
        """A one-token decode step took ``elapsed_ms``."""
        self._since_draft += 1
        self.single_ms = self._average(self.single_ms, elapsed_ms)

    def verified(self, drafted: int, accepted: int, elapsed_ms: float, matched: int = 0) -> None:
        """A batch of 1 + ``drafted`` tokens took ``elapsed_ms``; ``accepted`` drafts were kept;
        the draft came after a match of ``matched`` tokens."""
        self._since_draft = 0
        self.steps += 1
        self.drafted += drafted
        self.accepted += accepted
        kind = self.kind(matched)
        # Each accepted token is a success; the first rejected one (if any) a failure.
        for success in [1.0] * accepted + ([0.0] if accepted < drafted else []):
            self.acceptance[kind] = self._average(self.acceptance[kind], success)
        if self.single_ms is not None and drafted > 0:
            extra = max(0.0, elapsed_ms - self.single_ms) / drafted
            self.extra_ms_per_token = self._average(self.extra_ms_per_token, extra)

    def _average(self, current: float | None, new: float) -> float:
        return new if current is None else current + self.SMOOTHING * (new - current)
