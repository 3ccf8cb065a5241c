"""Search, export/import, backup/restore and the `history` CLI, over real files and SQLite."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant import store as store_module
from assistant.history.conversations import Conversations
from assistant.backups import Backups, latest_backup, list_backups, restore_database_file
from assistant.errors import BackupError
from assistant.history.archive import (
    DEFAULT_MAX_IMPORT_BYTES,
    EXPORT_FORMAT,
    EXPORT_SCHEMA_VERSION,
    HIGHLIGHT_END,
    HIGHLIGHT_START,
    History,
    HistoryError,
    fts_query,
)
from assistant.cli.history import add_history_commands, store_error_message
from assistant.cli.main import handle_error
from assistant.store import CorruptDatabaseError, Store, schema_version
from tests.assistant.test_store import fts_in_sync
from assistant.vault.cipher import dbapi
from tests.keyring_for_tests import TEST_DATABASE_KEY, open_test_db

REPO = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0  # 2023-11-14, a fixed start for the fake clock
DAY = 86_400.0


class FakeClock:
    def __init__(self, start: float = T0):
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(data_dir):
    s = Store(data_dir / "assistant.sqlite3", key=TEST_DATABASE_KEY)
    yield s
    s.close()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def conversations(store, clock):
    return Conversations(store, clock=clock, monotonic=clock)


@pytest.fixture
def history(store):
    return History(store)


@pytest.fixture
def backups(store, data_dir):
    return Backups(store, data_dir / "backups")


def count_rows(store: Store) -> tuple[int, int]:
    with store.reading() as conn:
        return (
            conn.execute("SELECT count(*) FROM conversations").fetchone()[0],
            conn.execute("SELECT count(*) FROM messages").fetchone()[0],
        )


# ===== search ===========================================================================
@pytest.mark.parametrize(
    "typed, query",
    [
        ("hello world", '"hello" "world"'),
        ('"hello world"', '"hello world"'),
        ("transl*", '"transl"*'),
        ('"machine transl"*', '"machine transl"*'),
        ("cats OR dogs", '"cats" "OR" "dogs"'),
        ("NOT x AND y", '"NOT" "x" "AND" "y"'),
        ("title:secret", '"title:secret"'),
        ('say "hi', '"say" "hi"'),
        ('he said "it" ok', '"he" "said" "it" "ok"'),
        ("a*b", '"a b"'),
        ("^start -minus +plus (paren)", '"^start" "-minus" "+plus" "(paren)"'),
        ("  spaced   out  ", '"spaced" "out"'),
        ("nul\x00inside", '"nul" "inside"'),
        ('"a\x00b"', '"a b"'),
        ("- * ( ) 🙂", None),
    ],
)
def test_user_text_becomes_a_quoted_fts_query(typed, query):
    if query is None:
        with pytest.raises(HistoryError, match="at least one word"):
            fts_query(typed)
    else:
        assert fts_query(typed) == query


@pytest.mark.parametrize("typed", ["", "   ", '""', "***", "_"])
def test_empty_search_is_a_clear_error(typed):
    with pytest.raises(HistoryError, match="at least one word"):
        fts_query(typed)


CORPUS = {
    "fr": ("Recettes françaises", ["La crème brûlée est délicieuse.", "Un café au lait, s'il vous plaît."]),
    "de": ("Ausflug", ["Mit der Straßenbahn durch München.", "Die Größe der Übung ist gut."]),
    "ru": ("Путешествие", ["Привет, как дела?", "Москва — столица России."]),
    "el": ("Ταξίδι", ["Καλημέρα κόσμε, τι κάνεις;"]),
    "en": ("Notes", ["The quick brown fox jumps over the lazy dog.", "Translation of documents.", "Transformer models are large."]),
    "ja": ("旅行", ["東京タワー に 行きました"]),
    "ar": ("تحية", ["مرحبا بالعالم"]),
    "es": ("Viaje", ["El niño comió piña en Señor Café."]),
}


@pytest.fixture
def corpus(conversations):
    ids = {}
    for key, (title, texts) in CORPUS.items():
        conv = conversations.create(title)
        for i, text in enumerate(texts):
            conversations.add_message(conv.id, "user" if i % 2 == 0 else "assistant", text)
        ids[key] = conv.id
    return ids


@pytest.mark.parametrize(
    "query, expected",
    [
        # accents and case are folded both ways (remove_diacritics 2)
        ("creme brulee", {"fr"}),
        ("CRÈME", {"fr"}),
        ("delicieuse", {"fr"}),
        ('"café au lait"', {"fr"}),
        ('"lait au café"', set()),  # a phrase keeps its order
        ("munchen", {"de"}),
        ("MÜNCHEN", {"de"}),
        ("ubung", {"de"}),
        ("москва", {"ru"}),
        ("МОСК*", {"ru"}),
        ('"как дела"', {"ru"}),
        ("καλημέρα", {"el"}),
        ("ΚΌΣΜΕ", {"el"}),
        ("東京タワー", {"ja"}),
        ("東京*", {"ja"}),
        ("مرحبا", {"ar"}),
        ("nino pina", {"es"}),
        ("cafe", {"fr", "es"}),
        # prefixes, phrases and several words
        ("trans*", {"en"}),
        ("transl*", {"en"}),
        ('"quick brown"', {"en"}),
        ('"brown quick"', set()),
        ("quick dog", {"en"}),
        ("quick cat", set()),
        ("fox OR nothing", set()),  # OR is a word to find, not an operator
        # titles are searched too
        ("recettes", {"fr"}),
        ("ausflug", {"de"}),
        ("путешествие", {"ru"}),
    ],
)
def test_search_finds_the_right_conversations(history, corpus, query, expected):
    found = {hit.conversation_id for hit in history.search(query)}
    assert found == {corpus[key] for key in expected}


def test_hits_carry_highlighted_snippets_and_details(history, corpus):
    (hit,) = history.search('"quick brown"')
    assert hit.kind == "message" and hit.role == "user" and hit.conversation_title == "Notes"
    assert HIGHLIGHT_START in hit.snippet and HIGHLIGHT_END in hit.snippet
    assert hit.highlighted("<b>", "</b>") == "The <b>quick brown</b> fox jumps over the lazy dog."
    assert ("quick brown", True) in hit.parts() and ("The ", False) in hit.parts()
    title_hits = [h for h in history.search("recettes") if h.kind == "title"]
    assert title_hits[0].highlighted() == "[Recettes] françaises" and title_hits[0].message_id is None


def test_long_messages_get_a_short_snippet_around_the_match(history, conversations):
    conv = conversations.create("long")
    conversations.add_message(conv.id, "user", "filler " * 5000 + "needle " + "filler " * 5000)
    (hit,) = history.search("needle")
    assert "[needle]" in hit.highlighted() and len(hit.snippet) < 200 and "…" in hit.snippet


def test_bm25_ranks_the_better_match_first(history, conversations):
    weak = conversations.create("weak")
    strong = conversations.create("strong")
    conversations.add_message(weak.id, "user", "apple " + "and many other words about nothing in particular " * 10)
    conversations.add_message(strong.id, "user", "apple apple apple pie")
    hits = history.search("apple")
    assert [h.conversation_id for h in hits] == [strong.id, weak.id]
    assert hits[0].score < hits[1].score


def test_common_words_are_ranked_among_the_newest_matches(history, conversations, monkeypatch):
    from assistant.history import archive as history_module
    monkeypatch.setattr(history_module, "RANK_WINDOW", 3)
    conv = conversations.create("window")
    older = [conversations.add_message(conv.id, "user", "common common common common") for _ in range(3)]
    newer = [conversations.add_message(conv.id, "user", f"common and other words {i} here") for i in range(3)]
    found = [h.message_id for h in history.search("common")]
    # Only the newest three are ranked, although the older ones would score better.
    assert sorted(found) == sorted(m.id for m in newer)
    assert not {m.id for m in older} & set(found)


def test_search_filters(history, conversations, clock):
    a = conversations.create("alpha")
    b = conversations.create("beta")
    conversations.add_message(a.id, "user", "shared word on day one", model="m1")
    clock.now += DAY
    conversations.add_message(a.id, "assistant", "shared word reply on day two", model="m2")
    clock.now += DAY
    conversations.add_message(b.id, "user", "shared word in beta on day three", model="m1")

    def texts(**filters):
        return sorted(h.highlighted("", "") for h in history.search("shared", **filters))

    assert len(texts()) == 3
    assert texts(conversation_id=b.id) == ["shared word in beta on day three"]
    assert texts(role="assistant") == ["shared word reply on day two"]
    assert texts(model="m1") == ["shared word in beta on day three", "shared word on day one"]
    assert texts(since=T0 + DAY) == ["shared word in beta on day three", "shared word reply on day two"]
    assert texts(until=T0 + DAY) == ["shared word on day one"]
    assert texts(since=T0 + DAY, until=T0 + 2 * DAY) == ["shared word reply on day two"]
    assert texts(role="user", model="m1", conversation_id=a.id) == ["shared word on day one"]
    # The trash is not searched; the archive is.
    conversations.archive(a.id)
    assert len(texts()) == 3
    conversations.delete(b.id)
    assert len(texts()) == 2
    assert history.search("beta") == []


def test_bad_filters_are_clear_errors(history):
    with pytest.raises(HistoryError, match="Role"):
        history.search("x", role="robot")
    with pytest.raises(HistoryError, match="between 1 and"):
        history.search("x", limit=0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(typed=st.text(max_size=40) | st.lists(st.sampled_from(['"', "*", "OR", "NEAR(", ")", ":", "^", "-", "word", "é"])).map(" ".join))
def test_no_typed_text_makes_search_fail_with_a_syntax_error(history, corpus, typed):
    try:
        history.search(typed)
    except HistoryError as exc:
        assert "at least one word" in str(exc) or "at most" in str(exc)


# ===== export / import ==================================================================
def cli(store: Store, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="assistant")
    add_history_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["history", *argv])
    try:
        return args.handler(args, store)
    except Exception as exc:  # what the command line's one handler does with it
        return handle_error(exc, store.path)


def test_json_export_follows_the_documented_schema(history, conversations, data_dir):
    conv = conversations.create("Schema")
    conversations.add_message(conv.id, "user", "hello", model="m", sampling={"temperature": 0.5}, documents=["d1"])
    conversations.set_setting(conv.id, "SamplingParams", {"temperature": 0.5})
    result = history.export(data_dir / "out.json", "json")
    doc = json.loads(result.path.read_text("utf-8"))
    assert (doc["format"], doc["schema_version"]) == (EXPORT_FORMAT, EXPORT_SCHEMA_VERSION) == (EXPORT_FORMAT, 1)
    assert doc["exported_at"].endswith("Z")
    (c,) = doc["conversations"]
    assert set(c) == {"id", "title", "created_at", "last_activity_at", "pinned", "archived", "deleted_at", "settings", "messages"}
    assert c["settings"] == {"SamplingParams": {"temperature": 0.5}}
    (m,) = c["messages"]
    assert set(m) == {"id", "role", "text", "model", "sampling", "metrics", "status", "created_at", "updated_at", "documents", "adapter",
                      "variant_of", "chosen", "reasoning"}
    assert (m["text"], m["documents"], m["sampling"]) == ("hello", ["d1"], {"temperature": 0.5})
    # The documented schema names every field the export writes.
    documented = (REPO / "docs" / "history-export-schema.md").read_text("utf-8")
    for name in set(c) | set(m) | {"format", "schema_version", "exported_at"}:
        assert f"`{name}`" in documented


def test_markdown_export_is_readable(history, conversations, data_dir):
    conv = conversations.create("Café talk")
    conversations.add_message(conv.id, "user", "Où est le café ?")
    reply = conversations.begin_reply(conv.id, model="smollm2")
    reply.append("Au coin de la rue.")
    reply.finish({"completion_tokens": 6, "ttft_ms": 95.0, "tokens_per_s": 31.5})
    result = history.export(data_dir, "md", conversation_id=conv.id)  # a folder: the file is named for us
    assert result.path.parent == data_dir and result.path.suffix == ".md"
    text = result.path.read_text("utf-8")
    assert text.startswith("# Café talk\n")
    assert "## User ·" in text and "Où est le café ?" in text
    assert "## Assistant (smollm2) ·" in text and "Au coin de la rue." in text
    assert "6 tokens" in text and "31.5 tokens/s" in text


def test_export_all_leaves_out_the_trash_and_one_conversation_by_id(history, conversations):
    keep = conversations.create("keep")
    gone = conversations.create("gone")
    conversations.delete(gone.id)
    assert [c["title"] for c in history.export_document()["conversations"]] == ["keep"]
    assert [c["title"] for c in history.export_document(gone.id)["conversations"]] == ["gone"]
    with pytest.raises(HistoryError, match="No conversation"):
        history.export_document("missing")
    del keep


def fresh_history(folder: Path) -> tuple[Store, History]:
    s = Store(folder / "assistant.sqlite3", key=TEST_DATABASE_KEY)
    return s, History(s)


# Any Unicode (hypothesis leaves out lone surrogates, which are not text), empty, and very long.
any_text = st.one_of(
    st.text(max_size=120),
    st.just(""),
    st.builds(lambda piece, n: piece * n, st.text(min_size=1, max_size=6), st.integers(5_000, 60_000)),
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(st.text(max_size=12), json_values, max_size=4)

message_specs = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["system", "user", "assistant"]),
        "text": any_text,
        "model": st.none() | st.text(max_size=30),
        "sampling": json_objects,
        "metrics": json_objects,
        "status": st.sampled_from(["complete", "interrupted", "streaming"]),
        "documents": st.lists(st.text(max_size=20), max_size=3),
        "adapter": st.none() | st.text(max_size=20),
    }
)
conversation_specs = st.fixed_dictionaries(
    {
        "title": st.text(max_size=60),
        "pinned": st.booleans(),
        "archived": st.booleans(),
        "settings": st.dictionaries(st.text(min_size=1, max_size=12), json_values, max_size=3),
        "messages": st.lists(message_specs, max_size=5),
    }
)


def without_export_time(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "exported_at"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(specs=st.lists(conversation_specs, max_size=4))
def test_export_then_import_round_trips_everything(specs):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "a").mkdir()
        (tmp / "b").mkdir()
        source_store, source = fresh_history(tmp / "a")
        target_store, target = fresh_history(tmp / "b")
        try:
            service = Conversations(source_store)
            for spec in specs:
                conv = service.create(spec["title"])
                for message in spec["messages"]:
                    service.add_message(conv.id, **message)
                service.pin(conv.id, spec["pinned"])
                service.archive(conv.id, spec["archived"])
                for key, value in spec["settings"].items():
                    service.set_setting(conv.id, key, value)
            exported = source.export(tmp / "history.json", "json")
            source.export(tmp / "history.md", "md")  # any text must make it to Markdown too
            report = target.import_file(exported.path)
            assert report.conversations_added == len(specs)
            assert report.messages_added == sum(len(s["messages"]) for s in specs)
            assert without_export_time(target.export_document()) == without_export_time(
                json.loads(exported.path.read_text("utf-8"))
            )
            for spec, conv in zip(specs, sorted(Conversations(target_store).list(include_archived=True), key=lambda c: c.created_at)):
                texts = [m.text for m in Conversations(target_store).messages(conv.id)]
                assert texts == [m["text"] for m in spec["messages"]]
        finally:
            source_store.close()
            target_store.close()


timestamps = st.floats(min_value=0, max_value=4e9, allow_nan=False, allow_infinity=False)


@st.composite
def export_documents(draw):
    conversations = []
    for i, spec in enumerate(draw(st.lists(conversation_specs, max_size=4))):
        created = draw(timestamps)
        messages = []
        for j, message in enumerate(spec["messages"]):
            at = draw(timestamps)
            messages.append({"id": f"m{i}.{j}-{draw(st.text(max_size=8))}", **message, "created_at": at, "updated_at": draw(timestamps),
                             "variant_of": draw(st.none() | st.text(max_size=20)), "chosen": draw(st.booleans()),
                             "reasoning": draw(st.text(max_size=20))})
        messages.sort(key=lambda m: m["created_at"])  # the export lists them by time
        conversations.append(
            {
                "id": f"c{i}-{draw(st.text(max_size=8))}",
                "title": spec["title"],
                "created_at": created,
                "last_activity_at": draw(timestamps),
                "pinned": spec["pinned"],
                "archived": spec["archived"],
                "deleted_at": None,
                "settings": spec["settings"],
                "messages": messages,
            }
        )
    conversations.sort(key=lambda c: c["created_at"])
    return {"format": EXPORT_FORMAT, "schema_version": 1, "exported_at": "2024-01-01T00:00:00Z", "conversations": conversations}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=export_documents())
def test_import_then_export_gives_the_same_document(doc):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = tmp / "in.json"
        path.write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
        store, history = fresh_history(tmp)
        try:
            history.import_file(path)
            assert without_export_time(history.export_document()) == without_export_time(doc)
            # A second import of the same file adds nothing and changes nothing.
            again = history.import_file(path)
            assert (again.conversations_added, again.messages_added) == (0, 0)
            assert again.messages_skipped == sum(len(c["messages"]) for c in doc["conversations"])
            assert without_export_time(history.export_document()) == without_export_time(doc)
        finally:
            store.close()


def valid_doc(n_messages: int = 2, conv_id: str = "c1") -> dict:
    return {
        "format": EXPORT_FORMAT,
        "schema_version": 1,
        "conversations": [
            {
                "id": conv_id,
                "title": "Imported",
                "created_at": T0,
                "messages": [
                    {"id": f"{conv_id}-m{i}", "role": "user", "text": f"message {i}", "created_at": T0 + i}
                    for i in range(n_messages)
                ],
            }
        ],
    }


def test_import_fills_in_optional_fields(history, store):
    report = history.import_document(valid_doc())
    assert (report.conversations_added, report.messages_added) == (1, 2)
    (conv,) = Conversations(store).list()
    assert (conv.title, conv.last_activity_at, conv.pinned) == ("Imported", T0 + 1, False)
    first = Conversations(store).messages("c1")[0]
    assert (first.status, first.sampling, first.documents, first.model) == ("complete", {}, [], None)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"{not json", "is not valid JSON (line 1, column 2"),
        (b"", "is not valid JSON"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"[1, 2, 3]", "not a history export"),
        (json.dumps({"format": "something-else", "schema_version": 1}).encode(), "not a history export"),
        (json.dumps({"format": EXPORT_FORMAT, "schema_version": 99, "conversations": []}).encode(), "newer version"),
        (json.dumps({"format": EXPORT_FORMAT, "schema_version": 0, "conversations": []}).encode(), "Unsupported"),
        (json.dumps({"format": EXPORT_FORMAT, "schema_version": "1", "conversations": []}).encode(), "no valid schema_version"),
        (json.dumps({"format": EXPORT_FORMAT, "schema_version": 1}).encode(), "no \"conversations\" list"),
        (b'{"format": "local-assistant-history", "schema_version": 1, "conversations": [], "x": NaN}', "not valid JSON"),
        (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
        (b'{"format": "local-assistant-history", "schema_version": 1, "conversations": [{"id": "c", "title": "\\ud800", "created_at": 1}]}', "lone surrogate"),
    ],
)
def test_bad_import_files_are_refused_with_nothing_imported(history, conversations, store, data_dir, content, message):
    conversations.add_message(conversations.create("existing").id, "user", "kept")
    before = count_rows(store)
    path = data_dir / "bad.json"
    path.write_bytes(content)
    with pytest.raises(HistoryError) as info:
        history.import_file(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert count_rows(store) == before


@pytest.mark.parametrize(
    "mutate, where",
    [
        (lambda c: c.update(id=""), "conversations[1].id is empty"),
        (lambda c: c.update(created_at="yesterday"), "conversations[1].created_at must be a number"),
        (lambda c: c.update(pinned="yes"), "conversations[1].pinned must be true or false"),
        (lambda c: c["messages"][1].update(role="robot"), "conversations[1].messages[1].role"),
        (lambda c: c["messages"][0].update(text=None), "conversations[1].messages[0].text must be text"),
        (lambda c: c["messages"][0].update(status="done"), "messages[0].status"),
        (lambda c: c["messages"][0].update(documents="d1"), "documents must be a list"),
        (lambda c: c["messages"][0].update(sampling=[1]), "sampling must be an object"),
        (lambda c: c.update(messages={}), "messages must be a list"),
    ],
)
def test_one_bad_record_anywhere_imports_nothing(history, store, data_dir, mutate, where):
    doc = valid_doc(conv_id="good")
    bad = valid_doc(conv_id="bad")["conversations"][0]
    mutate(bad)
    doc["conversations"].append(bad)
    path = data_dir / "partly-bad.json"
    path.write_text(json.dumps(doc), "utf-8")
    with pytest.raises(HistoryError) as info:
        history.import_file(path)
    assert where in str(info.value) and "Nothing was imported" in str(info.value)
    assert count_rows(store) == (0, 0)


def test_a_failure_inside_the_import_transaction_rolls_everything_back(history, store, data_dir):
    doc = valid_doc(n_messages=50)
    doc["conversations"][0]["messages"][40]["text"] = "boom"
    with store.transaction() as conn:  # a fault the validation cannot foresee (think: disk full)
        conn.execute(
            "CREATE TEMP TRIGGER fail_import BEFORE INSERT ON messages WHEN new.text = 'boom' "
            "BEGIN SELECT RAISE(ABORT, 'simulated fault'); END"
        )
    path = data_dir / "in.json"
    path.write_text(json.dumps(doc), "utf-8")
    with pytest.raises(dbapi.DatabaseError, match="simulated fault"):
        history.import_file(path)
    assert count_rows(store) == (0, 0)


def test_huge_import_files_are_refused_before_reading(history, store, data_dir):
    huge = data_dir / "huge.json"
    data_dir.mkdir(parents=True, exist_ok=True)
    with huge.open("wb") as handle:
        handle.truncate(DEFAULT_MAX_IMPORT_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(HistoryError, match="too large to import"):
        history.import_file(huge)
    small_cap = data_dir / "ok.json"
    small_cap.write_text(json.dumps(valid_doc(n_messages=100)), "utf-8")
    with pytest.raises(HistoryError, match="too large"):
        history.import_file(small_cap, max_bytes=1000)
    assert count_rows(store) == (0, 0)


def test_duplicates_are_skipped_and_nothing_is_overwritten(history, conversations, store, data_dir):
    path = data_dir / "one.json"
    path.write_text(json.dumps(valid_doc(n_messages=3)), "utf-8")
    assert history.import_file(path).messages_added == 3
    conversations.rename("c1", "Renamed here")
    local = conversations.add_message("c1", "user", "written after the import")

    grown = valid_doc(n_messages=5)  # the same conversation, continued elsewhere
    grown["conversations"][0]["title"] = "Title from the file"
    grown["conversations"][0]["messages"][0]["text"] = "changed in the file"
    grown["conversations"].append(valid_doc(n_messages=1, conv_id="c2")["conversations"][0])
    path.write_text(json.dumps(grown), "utf-8")
    report = history.import_file(path)
    assert report.conversations_existing == ["c1"]
    assert (report.conversations_added, report.messages_added, report.messages_skipped) == (1, 3, 3)
    assert "already here" in report.summary() and "3 duplicate message(s)" in report.summary()

    assert conversations.get("c1").title == "Renamed here"
    texts = [m.text for m in conversations.messages("c1")]
    assert texts[0] == "message 0" and local.text in texts and len(texts) == 6
    fts_in_sync(store, data_dir)


def test_export_to_a_missing_or_impossible_folder_leaves_nothing(history, conversations, data_dir, tmp_path):
    conversations.add_message(conversations.create("x").id, "user", "text")
    with pytest.raises(HistoryError, match="No such file or directory. Nothing was written"):
        history.export(tmp_path / "missing" / "out.json", "json")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(HistoryError, match="Not a directory"):
        history.export(blocker / "out.md", "md")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "data") == ["a-file"]


def test_export_to_a_read_only_folder_is_a_clear_error(history, conversations, tmp_path):
    conversations.create("x")
    if os.geteuid() == 0:
        # Root ignores file modes; sysfs refuses new files even to root.
        folder, restore = Path("/sys/kernel"), None
    else:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o500)
        restore = folder
    before = sorted(p.name for p in folder.iterdir())
    try:
        with pytest.raises(HistoryError, match="Permission denied"):
            history.export(folder / "out.json", "json")
        assert sorted(p.name for p in folder.iterdir()) == before
    finally:
        if restore is not None:
            restore.chmod(0o700)


DISK_FULL_CHILD = """
import argparse, resource, signal, sys
sys.path.insert(0, sys.argv[1])
from assistant.store import Store
from assistant.cli.history import add_history_commands
from assistant.cli.main import handle_error
from tests.keyring_for_tests import TEST_DATABASE_KEY, open_test_db
store = Store(sys.argv[2], key=TEST_DATABASE_KEY)
# A file-size limit makes writes fail part-way the way a full disk does (EFBIG instead of ENOSPC).
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
parser = argparse.ArgumentParser(prog="assistant")
add_history_commands(parser.add_subparsers(dest="command"))
args = parser.parse_args(["history", "export", "--format", sys.argv[3], "-o", sys.argv[4]])
try:
    code = args.handler(args, store)
except Exception as exc:  # what the command line's one handler does with it
    code = handle_error(exc)
store.close()
sys.exit(code)
"""


@pytest.mark.parametrize("fmt", ["json", "md"])
def test_export_to_a_full_disk_is_a_clear_error_with_no_partial_file(store, conversations, data_dir, tmp_path, fmt):
    conv = conversations.create("big")
    conversations.add_message(conv.id, "user", "lorem ipsum " * 40_000)  # ~480 kB, over the 64 kB limit
    out_dir = tmp_path / "exports"
    out_dir.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", DISK_FULL_CHILD, str(REPO), str(store.path), fmt, str(out_dir / f"big.{fmt}")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("assistant: ") and result.stderr.count("\n") == 1
    assert "File too large" in result.stderr and "Nothing was written" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(out_dir.iterdir()) == []


# ===== backup / restore =================================================================
def test_backup_is_a_consistent_sqlite_copy_and_old_ones_are_pruned(backups, conversations, data_dir):
    conversations.add_message(conversations.create("saved").id, "user", "in the backup")
    made = [backups.backup(keep=3) for _ in range(5)]
    assert list_backups(backups.backups_dir) == made[-3:] == backups.list_backups()
    assert latest_backup(backups.backups_dir) == made[-1] == backups.latest_backup()
    assert sorted(p.name for p in backups.backups_dir.iterdir()) == [p.name for p in made[-3:]]  # no temp files
    copy = open_test_db(made[-1])
    try:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert copy.execute("SELECT text FROM messages").fetchone()[0] == "in the backup"
    finally:
        copy.close()


def test_backup_into_an_impossible_folder_is_a_clear_error(store, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(BackupError, match="Cannot"):
        Backups(store, blocker).backup()


def test_restore_brings_back_the_backup_and_keeps_the_replaced_database(backups, history, conversations, store, data_dir):
    before = conversations.create("before backup")
    conversations.add_message(before.id, "user", "old message")
    backup = backups.backup()
    after = conversations.create("after backup")
    conversations.add_message(after.id, "user", "new message")
    conversations.delete(before.id)

    result = backups.restore()
    assert result.backup == backup
    assert [c.title for c in conversations.list()] == ["before backup"]
    assert [h.conversation_id for h in history.search("old")] == [before.id]
    # The store was reopened on the restored file and carries on working.
    conversations.add_message(before.id, "assistant", "after restore")
    with store.reading() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.integrity_problems() == []
    fts_in_sync(store, data_dir)
    # Nothing is thrown away: the replaced database is kept, with what came after the backup.
    kept = open_test_db(result.previous_kept_as)
    try:
        assert {r[0] for r in kept.execute("SELECT title FROM conversations")} == {"before backup", "after backup"}
    finally:
        kept.close()
    assert not [p for p in data_dir.iterdir() if p.name.startswith(".restore")]


def test_restore_refuses_bad_backups_and_changes_nothing(backups, conversations, store, data_dir, tmp_path, monkeypatch):
    conversations.add_message(conversations.create("live").id, "user", "live data")
    good = backups.backup()

    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"definitely not sqlite" * 500)
    damaged = tmp_path / "damaged.sqlite3"
    raw = bytearray(good.read_bytes())
    raw[4096 + 8 :] = b"\xee" * (len(raw) - 4096 - 8)  # every page after the first scribbled over
    damaged.write_bytes(bytes(raw))
    foreign = tmp_path / "foreign.sqlite3"
    other = open_test_db(foreign)
    other.execute("CREATE TABLE t (x)")
    other.commit()
    other.close()
    newer = tmp_path / "newer.sqlite3"
    other = open_test_db(newer)
    other.execute("CREATE TABLE settings (scope, key, value)")
    other.execute(f"PRAGMA user_version = {schema_version() + 1}")
    other.commit()
    other.close()

    for path, message in [
        (garbage, "cannot be read as a database"),
        (damaged, "damaged|cannot be read"),
        (foreign, "not a backup of this app"),
        (newer, "newer version"),
        (tmp_path / "missing.sqlite3", "No such backup"),
    ]:
        with pytest.raises(BackupError, match=message):
            backups.restore(path)
        assert [c.title for c in conversations.list()] == ["live"]
    assert sorted(p.name for p in data_dir.iterdir() if not p.is_dir()) == ["assistant.sqlite3", "assistant.sqlite3-shm", "assistant.sqlite3-wal"]
    assert not list(backups.backups_dir.glob("replaced-*"))


def test_restore_without_any_backup_says_how_to_make_one(backups):
    with pytest.raises(BackupError, match="no backup .* assistant history backup"):
        backups.restore()


def test_an_older_schema_backup_is_migrated_on_restore(backups, store, data_dir, monkeypatch):
    old_path = data_dir / "v1.sqlite3"
    with monkeypatch.context() as m:
        m.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:1])
        old = Store(old_path, key=TEST_DATABASE_KEY)
        old.set_setting("app", "theme", "dark")
        backups.backups_dir.mkdir(parents=True, exist_ok=True)
        old.backup_to(backups.backups_dir / "assistant-20000101-000000-000000.sqlite3")
        old.close()
    backups.restore()
    assert store.get_setting("app", "theme") == "dark"
    with store.reading() as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema_version()
    Conversations(store).create("works after migration")


def test_a_damaged_database_is_kept_and_replaced_by_the_last_backup(data_dir):
    paths_db = data_dir / "assistant.sqlite3"
    backups = data_dir / "backups"
    store = Store(paths_db, key=TEST_DATABASE_KEY)
    Conversations(store).add_message(Conversations(store).create("precious").id, "user", "keep me")
    Backups(store, backups).backup()
    store.close()
    damage = b"\x00garbage over the header\x00" * 300
    paths_db.write_bytes(damage)

    with pytest.raises(CorruptDatabaseError) as info:
        Store(paths_db, key=TEST_DATABASE_KEY)
    advice = store_error_message(info.value, backups)
    assert "damaged" in advice and str(latest_backup(backups)) in advice and "assistant history restore" in advice

    result = restore_database_file(paths_db, None, backups, TEST_DATABASE_KEY)
    assert result.previous_kept_as.read_bytes() == damage  # the damaged file is kept, untouched
    store = Store(paths_db, key=TEST_DATABASE_KEY)
    try:
        assert [c.title for c in Conversations(store).list()] == ["precious"]
    finally:
        store.close()


# ===== the CLI ==========================================================================
def test_cli_search_list_export_import_backup_restore(store, conversations, data_dir, capsys):
    conv = conversations.create("Paris trip")
    conversations.add_message(conv.id, "user", "Where is a good café near the Louvre?", model="smollm2")
    conversations.pin(conv.id)

    assert cli(store, "search", "cafe louvre") == 0
    out = capsys.readouterr().out
    assert "Paris trip" in out and "[café]" in out and "[Louvre]" in out and "1 result(s)." in out
    assert cli(store, "search", "nothing-like-this") == 0
    assert "No messages or titles match" in capsys.readouterr().out
    assert cli(store, "search", "cafe", "--role", "assistant") == 0
    assert "No messages" in capsys.readouterr().out
    assert cli(store, "search", "cafe", "--since", "2000-01-01", "--until", "2999-12-31", "--model", "smollm2") == 0
    assert "1 result(s)." in capsys.readouterr().out

    assert cli(store, "list") == 0
    out = capsys.readouterr().out
    assert conv.id in out and "Paris trip" in out and "*" in out

    target = data_dir / "all.json"
    assert cli(store, "export", "--format", "json", "-o", str(target)) == 0
    captured = capsys.readouterr()
    assert "Exported 1 conversation(s), 1 message(s)" in captured.out
    assert "not encrypted" in captured.err  # the plaintext copy is an explicit act, and it says so
    assert cli(store, "export", "--conversation", conv.id, "--format", "md", "-o", str(data_dir / "one.md")) == 0
    assert (data_dir / "one.md").read_text("utf-8").startswith("# Paris trip")
    capsys.readouterr()
    assert cli(store, "import", str(target)) == 0
    assert "Imported 0 conversation(s)" in capsys.readouterr().out

    assert cli(store, "backup") == 0
    assert "Backup written to" in capsys.readouterr().out
    conversations.delete(conv.id)
    assert cli(store, "restore") == 0
    assert "Restored from" in capsys.readouterr().out
    assert [c.title for c in conversations.list()] == ["Paris trip"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["search", "***"], "at least one word"),
        (["search", "x", "--since", "last tuesday"], "is not a date"),
        (["search", "x", "--limit", "0"], "between 1 and"),
        (["export", "--format", "json", "-o", "/nonexistent-folder/x.json"], "Nothing was written"),
        (["export", "--conversation", "nope", "--format", "md", "-o", "/tmp"], "No conversation with id nope"),
        (["import", "/nonexistent-folder/x.json"], "No such file"),
        (["restore"], "no backup"),
        (["restore", "/nonexistent-folder/b.sqlite3"], "No such backup"),
    ],
)
def test_cli_user_errors_are_one_line_and_exit_2(store, capsys, argv, message):
    assert cli(store, *argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("assistant: ") and captured.err.count("\n") == 1
    assert message in captured.err and "Traceback" not in captured.err


def test_cli_restore_works_when_the_database_cannot_be_opened(data_dir, capsys):
    from assistant.config import default_paths

    paths = default_paths()
    store = Store(paths.database, key=TEST_DATABASE_KEY)
    Conversations(store).create("from backup")
    Backups(store, paths.backups_dir).backup()
    store.close()
    paths.database.write_bytes(b"broken" * 1000)
    parser = argparse.ArgumentParser(prog="assistant")
    add_history_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["history", "restore"])
    assert args.needs_store is False
    args.database_key = TEST_DATABASE_KEY  # what _run_history hands over from the unlock
    assert args.handler(args, None) == 0
    assert "was kept as" in capsys.readouterr().out
    store = Store(paths.database, key=TEST_DATABASE_KEY)
    try:
        assert [c.title for c in Conversations(store).list()] == ["from backup"]
    finally:
        store.close()
