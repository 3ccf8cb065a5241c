"""Batched label scoring and batched greedy continuation in the engine worker (real models)."""

from __future__ import annotations

import math

import pytest

from engine.client import EngineRequestError

PREFIX = ("Classify the sentiment of each review as positive or negative.\n\n"
          "Review: I loved it.\nSentiment: positive\n\nReview: A waste of money.\nSentiment: negative\n\n")
TEMPLATE = "Review: {text}\nSentiment:"
LABELS = [" positive", " negative"]


def test_label_scores_for_clear_texts(engine, gemma_path):
    texts = ["An absolutely wonderful film, I loved every minute.", "Terrible food and a rude waiter."]
    handle = engine.classify(gemma_path, texts, LABELS, prefix=PREFIX, template=TEMPLATE)
    events = list(handle.events(timeout=300))
    assert events[-1]["event"] == "done", events[-1]
    scores = events[-1]["result"]["scores"]
    assert len(scores) == 2 and all(len(row) == 2 for row in scores)
    assert all(value <= 0.0 for row in scores for value in row), "log-probabilities over the vocabulary"
    assert scores[0][0] > scores[0][1] and scores[1][1] > scores[1][0]
    streamed = [row for e in events if e["event"] == "scores" for row in e["scores"]]
    assert streamed == scores, "each batch's rows arrive as they are decoded"
    label_tokens = events[-1]["result"]["label_tokens"]
    assert len(set(label_tokens)) == 2


def test_batching_does_not_change_scores(engine, smollm2_path):
    texts = [f"Review number {i}: the product was {'great' if i % 2 else 'awful'}." for i in range(40)]
    together = engine.classify(smollm2_path, texts, LABELS, prefix=PREFIX, template=TEMPLATE).result(300)
    alone = engine.classify(smollm2_path, texts[7:8], LABELS, prefix=PREFIX, template=TEMPLATE).result(300)
    for a, b in zip(together["result"]["scores"][7], alone["result"]["scores"][0]):
        assert math.isclose(a, b, abs_tol=0.05)
    assert together["metrics"]["items"] == 40
    # The prefix is kept between requests: the second one evaluated none of it.
    assert alone["metrics"]["prefix_tokens_evaluated"] == 0


def test_labels_with_the_same_first_token_are_refused(engine, smollm2_path):
    with pytest.raises(EngineRequestError, match="same token"):
        engine.classify(smollm2_path, ["fine"], [" positive", " positive!"], prefix=PREFIX,
                        template=TEMPLATE).result(120)


def test_template_without_text_is_refused(engine, smollm2_path):
    with pytest.raises(EngineRequestError, match="exactly once"):
        engine.classify(smollm2_path, ["fine"], LABELS, prefix=PREFIX, template="Review:").result(120)


def test_cancelled_batch_keeps_finished_scores_and_engine_goes_on(engine, smollm2_path):
    texts = [f"This is review {i}, and it is rather long so that the batch takes a while to score." for i in range(600)]
    handle = engine.classify(smollm2_path, texts, LABELS, prefix=PREFIX, template=TEMPLATE)
    kept = []
    final = None
    for event in handle.events(timeout=300):
        if event["event"] == "scores":
            kept.extend(event["scores"])
            handle.cancel()
        elif event["event"] in ("done", "error"):
            final = event
    assert final["event"] == "error" and final["kind"] == "cancelled"
    assert 0 < len(kept) < len(texts)
    again = engine.classify(smollm2_path, ["Great!"], LABELS, prefix=PREFIX, template=TEMPLATE).result(120)
    assert len(again["result"]["scores"]) == 1


def test_chat_cache_is_untouched_by_classification(engine, smollm2_path):
    messages = [{"role": "user", "content": "Name a colour."}]
    engine.chat(smollm2_path, messages, {"temperature": 0, "max_tokens": 4}).result(120)
    engine.classify(smollm2_path, ["Nice."], LABELS, prefix=PREFIX, template=TEMPLATE).result(120)
    second = engine.chat(smollm2_path, messages, {"temperature": 0, "max_tokens": 4}).result(120)
    assert second["metrics"]["prompt_tokens_cached"] >= second["metrics"]["prompt_tokens"] - 1


def test_generate_batch_streams_items_and_matches_single_greedy(engine, smollm2_path):
    items = ["1, 2, 3, 4,", "Monday, Tuesday, Wednesday,", "a, b, c, d,"]
    handle = engine.generate_batch(smollm2_path, items, prefix="", max_tokens=4, stop=["\n"])
    events = list(handle.events(timeout=300))
    assert events[-1]["event"] == "done"
    texts = events[-1]["result"]["texts"]
    assert texts[0].strip().startswith("5")
    assert "Thursday" in texts[1]
    streamed = {}
    for e in events:
        if e["event"] == "token":
            streamed[e["index"]] = streamed.get(e["index"], "") + e["text"]
    assert [streamed.get(i, "") for i in range(3)] == texts
    assert sorted(e["index"] for e in events if e["event"] == "item") == [0, 1, 2]
    single = engine.complete(smollm2_path, items[1], {"temperature": 0, "max_tokens": 4, "stop": ["\n"],
                                                      "repeat_penalty": 1.0}).result(120)
    assert single["result"]["text"] == texts[1]


def test_generate_batch_cancel_keeps_finished_items(engine, smollm2_path):
    items = ["Count: 1"] + [f"Write a very long story number {i}:" for i in range(20)]
    max_tokens = [2] + [300] * 20
    handle = engine.generate_batch(smollm2_path, items, max_tokens=max_tokens)
    finished = []
    final = None
    for event in handle.events(timeout=300):
        if event["event"] == "item":
            finished.append(event["index"])
            handle.cancel()
        elif event["event"] in ("done", "error"):
            final = event
    assert final["event"] == "error" and final["kind"] == "cancelled"
    assert 0 in finished and len(finished) < len(items)


def test_bad_batch_parameters_are_clear_errors(engine, smollm2_path):
    with pytest.raises(EngineRequestError, match="list of strings"):
        engine.request("generate_batch", {"model": smollm2_path, "items": "not a list"}).result(60)
    with pytest.raises(EngineRequestError, match="max_tokens"):
        engine.generate_batch(smollm2_path, ["a", "b"], max_tokens=[1]).result(60)
