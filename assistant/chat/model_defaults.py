"""The chat defaults of each default model: sampling, system prompt and a few worked examples,
used where the user has chosen nothing of their own (the bottom layer under the app's settings
and the model's own settings, see :mod:`assistant.models.model_settings`).

Chosen on the development half of ``benchmarks/chat_quality.py`` (its table of candidates), for
the default chat model (SmolLM2 135M Instruct); other models keep the engine's defaults. The
worked examples are earlier turns put before the conversation, never shown or stored: a model
of this size follows "in one word", "yes or no" and "a number" far more often once it has seen
each answered that way. They go only into plain chats with no persona and no documents (a
persona or a grounded answer has instructions of its own). Any thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from engine.settings import SamplingParams

#: Answer first, in the form asked for (a candidate of the benchmark; see its table).
ANSWER_FIRST_PROMPT = ("You are a helpful assistant. Answer the question directly in your first sentence. "
                       "When the user asks for a format (one word, a number, yes or no, a list of a "
                       "number of items), give exactly that.")

#: Worked examples: none of them is a prompt of the benchmark (tests/assistant/test_model_defaults.py).
WORKED_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("What is the capital of Norway?", "The capital of Norway is Oslo."),
    ("What is 4 + 9?", "4 + 9 = 13."),
    ("Is snow cold? Answer yes or no.", "Yes."),
    ("Answer in one word: what color is coal?", "Black."),
    ("Name two birds.", "1. Robin\n2. Eagle"),
)


@dataclass(frozen=True)
class ChatDefaults:
    system_prompt: str = ""
    sampling: SamplingParams = field(default_factory=SamplingParams)
    examples: tuple[tuple[str, str], ...] = ()

    def example_turns(self) -> list[dict]:
        turns: list[dict] = []
        for question, answer in self.examples:
            turns += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        return turns


#: The default chat model's defaults: the best candidate of the development half of the benchmark
#: (greedy with the worked examples; a regenerated reply samples, see ChatSession.regenerate).
SMOLLM2_DEFAULTS = ChatDefaults(sampling=replace(SamplingParams(), temperature=0.0), examples=WORKED_EXAMPLES)


def for_model(model) -> ChatDefaults:
    """The defaults for ``model`` (a library record); the engine's defaults for any other model."""
    if getattr(model, "source", None) == "pack" and str(getattr(model, "id", "")).startswith("smollm2"):
        return SMOLLM2_DEFAULTS
    return ChatDefaults()


def under(app_sampling: SamplingParams, defaults: ChatDefaults) -> SamplingParams:
    """The app's sampling with the model's default wherever the app's value is still the
    engine's own default (a value the user never changed)."""
    engine = SamplingParams()
    chosen = {f.name: getattr(defaults.sampling, f.name) for f in fields(SamplingParams)
              if getattr(app_sampling, f.name) == getattr(engine, f.name)}
    return replace(app_sampling, **chosen)
