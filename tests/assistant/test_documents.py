"""Documents: adding files and folders, per-file errors, removal, sync, re-index, consistency."""

from __future__ import annotations

import os
import re
import threading
import time

import pytest

from assistant.documents.collections import Documents, DocumentsError, default_counter
from assistant.store import Store
from tests.assistant import test_ingest as docfiles
from tests.keyring_for_tests import TEST_DATABASE_KEY


@pytest.fixture()
def store(tmp_path):
    s = Store(tmp_path / "db.sqlite3", key=TEST_DATABASE_KEY)
    yield s
    s.close()


@pytest.fixture()
def documents(store, embed):  # noqa: F811
    return Documents(store, embed, default_counter())


def consistent(store) -> None:
    with store.reading() as conn:
        chunks = conn.execute("SELECT COUNT(*) FROM doc_chunks").fetchone()[0]
        fts = conn.execute("SELECT COUNT(*) FROM doc_chunks_fts").fetchone()[0]
        counted = conn.execute("SELECT COALESCE(SUM(chunk_count), 0) FROM doc_files").fetchone()[0]
        orphans = conn.execute("SELECT COUNT(*) FROM doc_chunks WHERE file_n NOT IN (SELECT n FROM doc_files)").fetchone()[0]
        errored = conn.execute("SELECT COUNT(*) FROM doc_chunks c JOIN doc_files f ON f.n = c.file_n "
                               "WHERE f.status != 'indexed'").fetchone()[0]
        # FTS5 external content: the index must agree with its table.
        conn.execute("INSERT INTO doc_chunks_fts (doc_chunks_fts) VALUES ('integrity-check')")
    assert chunks == fts == counted and orphans == 0 and errored == 0


def test_add_a_folder_of_good_and_bad_files(tmp_path, documents, store):
    folder = tmp_path / "docs"
    good = docfiles.write_all_good(folder)
    (folder / "empty.txt").write_bytes(b"")
    (folder / "latin.txt").write_bytes("café".encode("latin-1"))
    (folder / "ignored.xyz").write_text("not a document type: folders skip it")
    base = docfiles.write_docx(tmp_path / "base.docx", "T", [("H", ["x"])])
    docfiles.rewrite_docx_member(base, folder / "laughs.docx", "word/document.xml", docfiles.BILLION_LAUGHS)
    docfiles.write_pdf(folder / "scan.pdf", [""])

    events = list(documents.add_paths([folder, tmp_path / "missing.txt"]))
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    total = events[0].total
    assert total == len(good) + 4 + 1  # six good, four bad in the folder, one missing path
    files = [e for e in events if e.kind == "file"]
    assert [e.index for e in files] == sorted(e.index for e in files) and all(e.total == total for e in files)
    errors = {os.path.basename(e.path): e.message for e in events if e.kind == "error"}
    assert set(errors) == {"empty.txt", "latin.txt", "laughs.docx", "scan.pdf", "missing.txt"}
    assert "empty" in errors["empty.txt"] and "UTF-8" in errors["latin.txt"] and "no text layer" in errors["scan.pdf"]
    indexed = {os.path.basename(e.path) for e in events if e.kind == "indexed"}
    assert indexed == {p.name for p in good.values()}
    assert events[-1].totals["indexed"] == 6 and events[-1].totals["errors"] == 5

    listing = {os.path.basename(f["path"]): f for f in documents.list()}
    assert listing["report.pdf"]["status"] == "indexed" and listing["report.pdf"]["chunks"] >= 2
    assert listing["laughs.docx"]["status"] == "error" and "entities" in listing["laughs.docx"]["error"]
    assert documents.watched() == [("default", str(folder.resolve()))]
    consistent(store)

    # Adding again changes nothing.
    again = list(documents.add_paths([folder]))
    assert again[-1].totals["unchanged"] == 6 and again[-1].totals["indexed"] == 0
    consistent(store)


def test_pdf_pages_and_headings_are_kept(tmp_path, documents, store):
    files = docfiles.write_all_good(tmp_path / "d")
    list(documents.add_paths([files["pdf"], files["md"]]))
    with store.reading() as conn:
        rows = conn.execute("SELECT c.page, c.heading, c.text, c.title FROM doc_chunks c").fetchall()
    assert any(page == 2 and "4812 crates" in text for page, _h, text, _t in rows)
    assert any(heading == "Espresso Guide > Grinding" and title == "Espresso Guide" for _p, heading, _x, title in rows)


def test_remove_removes_every_chunk(tmp_path, documents, store):
    folder = tmp_path / "docs"
    files = docfiles.write_all_good(folder)
    list(documents.add_paths([folder]))
    before = documents.stats()["chunks"]
    assert documents.remove(str(files["pdf"])) == 1
    assert documents.stats()["chunks"] < before
    consistent(store)
    assert documents.remove(str(folder)) == 5
    assert documents.stats() == {"files": 0, "chunks": 0, "fts_rows": 0}
    assert documents.watched() == []
    with pytest.raises(DocumentsError, match="Nothing indexed"):
        documents.remove(str(folder))


def test_remove_a_collection(tmp_path, documents):
    files = docfiles.write_all_good(tmp_path / "d")
    list(documents.add_paths([files["txt"]], collection="garden"))
    assert documents.remove("garden") == 1
    assert [c["name"] for c in documents.collections()] == []


def _touch(path, text):
    path.write_text(text, encoding="utf-8")
    stamp = time.time() + 5  # mtime resolution: make the change visible to polling
    os.utime(path, (stamp, stamp))


def test_sync_reindexes_changed_new_and_deleted_files(tmp_path, documents, store):
    folder = tmp_path / "watched"
    files = docfiles.write_all_good(folder)
    list(documents.add_paths([folder]))
    assert list(documents.sync()) == []  # nothing changed: nothing to do

    _touch(files["txt"], "Garden notes\n\nThe red fox visits the orchard at dusk.\n")
    (folder / "new.md").write_text("# New\n\nA new note about the lighthouse keeper.\n", encoding="utf-8")
    files["html"].unlink()
    events = list(documents.sync())
    indexed = {os.path.basename(e.path) for e in events if e.kind == "indexed"}
    removed = {os.path.basename(e.path) for e in events if e.kind == "removed"}
    assert indexed == {"notes.txt", "new.md"} and removed == {"page.html"}
    with store.reading() as conn:
        texts = [r[0] for r in conn.execute("SELECT text FROM doc_chunks")]
    assert any("red fox" in t for t in texts) and not any("blue heron" in t for t in texts)
    assert not any("Etna" in t for t in texts)
    consistent(store)


def test_touched_but_unchanged_file_is_not_reembedded(tmp_path, store, embed):  # noqa: F811
    calls = []

    def counting(texts):
        calls.append(len(texts))
        return embed(texts)

    documents = Documents(store, counting, default_counter())
    path = tmp_path / "a.txt"
    path.write_text("Some stable text about tides.", encoding="utf-8")
    list(documents.add_paths([path]))
    stamp = time.time() + 5
    os.utime(path, (stamp, stamp))
    calls.clear()
    events = list(documents.add_paths([path]))
    assert events[-1].totals["unchanged"] == 1 and calls == []


def test_reindex_and_cancel(tmp_path, documents, store):
    folder = tmp_path / "docs"
    docfiles.write_all_good(folder)
    list(documents.add_paths([folder]))
    chunks = documents.stats()["chunks"]
    events = list(documents.reindex())
    assert events[-1].totals["indexed"] == 6 and documents.stats()["chunks"] == chunks
    cancel = threading.Event()
    seen = []
    for event in documents.reindex(cancel=cancel):
        seen.append(event.kind)
        if event.kind == "indexed":
            cancel.set()
    assert seen[-1] == "cancelled" and seen.count("indexed") == 1
    consistent(store)


def test_embedding_failure_is_per_file(tmp_path, store, embed):  # noqa: F811
    def flaky(texts):
        if any("poison" in t for t in texts):
            raise RuntimeError("the engine stopped unexpectedly")
        return embed(texts)

    documents = Documents(store, flaky, default_counter())
    (tmp_path / "a.txt").write_text("A harmless note.", encoding="utf-8")
    (tmp_path / "b.txt").write_text("A poison note.", encoding="utf-8")
    events = list(documents.add_paths([tmp_path / "a.txt", tmp_path / "b.txt"]))
    assert events[-1].totals == {"indexed": 1, "unchanged": 0, "errors": 1, "chunks": 1, "removed": 0}
    consistent(store)


def test_attachments(tmp_path, documents):
    files = docfiles.write_all_good(tmp_path / "d")
    list(documents.add_paths([files["txt"], files["md"]]))
    ids = [f["id"] for f in documents.list()]
    documents.attach("conv-1", ids[:1])
    assert documents.attached("conv-1") == ids[:1]
    documents.detach("conv-1")
    assert documents.attached("conv-1") == []


def test_cli_commands(tmp_path, capsys):
    """`docs add|list|search|remove` and `ask --only-documents` through the real services."""
    import argparse

    from assistant.app import build_services
    from assistant.cli.documents import add_documents_commands

    parser = argparse.ArgumentParser(prog="assistant")
    add_documents_commands(parser.add_subparsers(dest="command"))
    folder = tmp_path / "docs"
    docfiles.write_all_good(folder)
    (folder / "empty.txt").write_bytes(b"")
    services = build_services()
    try:
        def run(*argv):
            args = parser.parse_args(list(argv))
            return args.handler(args, services)

        assert run("docs", "add", str(folder), "--collection", "home") == 1  # one file failed, the rest indexed
        out, err = capsys.readouterr()
        assert "6 indexed" in out and "1 failed" in out and "empty.txt: the file is empty" in err
        # Each file's line counts its passages in words: "1 passage", never "1 passages".
        assert "passages added" in out and ": 1 passage\n" in err
        assert not re.search(r"\b1 passages", err)
        assert run("docs", "list") == 0
        out, _ = capsys.readouterr()
        assert "report.pdf" in out and "error" in out and "Watched folders" in out
        assert run("docs", "search", "cloudberry jam crates", "-k", "1") == 0
        out, _ = capsys.readouterr()
        assert "report.pdf — page 2" in out
        assert run("ask", "What is the airspeed velocity of an unladen swallow?", "--only-documents") == 0
        out, err = capsys.readouterr()
        assert "I don't know from your documents." in out and "model was not asked" in err
        assert run("ask", "How many crates of cloudberry jam are in the warehouse?", "--collection", "home") == 0
        out, _ = capsys.readouterr()
        quote_line = next(line for line in out.splitlines() if line.startswith("From your documents [1]"))
        assert "report.pdf, page 2" in quote_line and "4812" in quote_line
        assert out.index("From your documents") < out.index("Sources:")
        with pytest.raises(DocumentsError):
            run("ask", "anything", "--collection", "nope")
        assert run("docs", "remove", "home") == 0
        assert "Removed 7 files" in capsys.readouterr().out
    finally:
        services.close()
