"""Parsers and chunking: every supported type from real files, every kind of bad input."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from assistant.documents import ingest
from assistant.documents.ingest import IngestError, WordPiece, chunk_document, parse_file
from engine import model_pack

# ----- real files of every type, written by the tests (no binary fixtures in the repo) -----


def _pdf_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def write_pdf(path: Path, pages: list[str], compress: bool = False, raw_streams: list[bytes] | None = None) -> Path:
    """A minimal, valid PDF with one Helvetica text line per page line (correct xref)."""
    objects: list[bytes] = []
    n_pages = len(raw_streams) if raw_streams is not None else len(pages)
    font_id = 3
    first_page = 4
    kids = " ".join(f"{first_page + 2 * i} 0 R" for i in range(n_pages))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i in range(n_pages):
        if raw_streams is not None:
            stream, extra = raw_streams[i], b" /Filter /FlateDecode"
        else:
            lines = pages[i].split("\n")
            ops = ["BT /F1 11 Tf 14 TL 72 760 Td"] + [f"({_pdf_escape(line)}) Tj T*" for line in lines] + ["ET"]
            stream = "\n".join(ops).encode("latin-1")
            extra = b""
            if compress:
                stream, extra = zlib.compress(stream), b" /Filter /FlateDecode"
        page = (f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 {font_id} 0 R >> >> "
                f"/Contents {first_page + 2 * i + 1} 0 R >>").encode()
        objects.append(page)
        objects.append(b"<< /Length " + str(len(stream)).encode() + extra + b" >>\nstream\n" + stream + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(bytes(out))
    return path


def write_encrypted_pdf(path: Path, plain: Path, password: str = "secret") -> Path:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(str(plain)))
    writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="RC4-128")
    with open(path, "wb") as handle:
        writer.write(handle)
    return path


def write_pdf_bomb(path: Path, inflated_mb: int = 200) -> Path:
    """One page whose content stream inflates to ``inflated_mb`` MB of spaces."""
    compressor = zlib.compressobj(9)
    block = b" " * (1024 * 1024)
    data = b"".join(compressor.compress(block) for _ in range(inflated_mb)) + compressor.flush()
    return write_pdf(path, [], raw_streams=[data])


def write_docx(path: Path, title: str, sections: list[tuple[str, list[str]]]) -> Path:
    import docx

    document = docx.Document()
    document.core_properties.title = title
    document.add_heading(title, level=0)
    for heading, paragraphs in sections:
        document.add_heading(heading, level=1)
        for paragraph in paragraphs:
            document.add_paragraph(paragraph)
    document.save(str(path))
    return path


def rewrite_docx_member(source: Path, target: Path, member: str, data: bytes, compress_level: int = 6) -> Path:
    import zipfile

    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=compress_level) as zout:
        for item in zin.infolist():
            zout.writestr(item.filename, data if item.filename == member else zin.read(item.filename))
    return target


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>&lol9;</w:t></w:r></w:p></w:body></w:document>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE foo [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>&xxe;</w:t></w:r></w:p></w:body></w:document>"""


def write_all_good(folder: Path) -> dict[str, Path]:
    """One file of each supported type, each with a distinctive fact to find again."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    files["txt"] = folder / "notes.txt"
    files["txt"].write_text("Garden notes\n\nThe blue heron nests by the willow pond every April.\n", encoding="utf-8")
    files["md"] = folder / "guide.md"
    files["md"].write_text("# Espresso Guide\n\nIntro text.\n\n## Grinding\n\nGrind the beans to the fineness of table salt "
                           "for a 25 second extraction.\n\n## Milk\n\nSteam the milk to 65 degrees Celsius.\n", encoding="utf-8")
    files["rst"] = folder / "manual.rst"
    files["rst"].write_text("Bicycle Manual\n==============\n\nIntro.\n\nBrakes\n------\n\nAdjust the brake cable tension with "
                            "the barrel adjuster until the pads sit two millimetres from the rim.\n", encoding="utf-8")
    files["html"] = folder / "page.html"
    files["html"].write_text("<html><head><title>Volcano Facts</title><style>p{}</style></head><body><h1>Volcanoes</h1>"
                             "<h2>Etna</h2><p>Mount Etna in Sicily is the most active volcano in Europe.</p>"
                             "<script>var secret = 'do not index';</script></body></html>", encoding="utf-8")
    files["pdf"] = write_pdf(folder / "report.pdf", [
        "Quarterly Report\nSales grew in the northern region.",
        "Warehouse section\nThe warehouse in Tromso stores exactly 4812 crates of cloudberry jam.",
    ])
    files["docx"] = write_docx(folder / "recipe.docx", "Grandma Recipes", [
        ("Pancakes", ["Whisk two eggs with 300 ml of buttermilk and a pinch of cardamom."]),
        ("Soup", ["Simmer the lentils for forty minutes."]),
    ])
    return files


PEPS = Path(__file__).resolve().parents[3] / "shared/data/documents/typing-peps"


@pytest.fixture(scope="module")
def counter() -> WordPiece:
    return WordPiece.from_folder(model_pack.locate(model_pack.MINILM, Path("/nonexistent")))


@pytest.fixture()
def good(tmp_path):
    return write_all_good(tmp_path / "good")


def test_every_supported_type(good):
    txt = parse_file(good["txt"])
    assert "blue heron" in txt.sections[0].text and txt.title == "Garden notes"
    md = parse_file(good["md"])
    assert md.title == "Espresso Guide"
    assert any(s.headings == ["Espresso Guide", "Grinding"] and "table salt" in s.text for s in md.sections)
    rst = parse_file(good["rst"])
    assert rst.title == "Bicycle Manual"
    assert any(s.headings == ["Bicycle Manual", "Brakes"] and "barrel adjuster" in s.text for s in rst.sections)
    html = parse_file(good["html"])
    assert html.title == "Volcano Facts"
    assert any(s.headings == ["Volcanoes", "Etna"] and "Etna in Sicily" in s.text for s in html.sections)
    assert not any("do not index" in s.text for s in html.sections)
    pdf = parse_file(good["pdf"])  # in the limited child process
    assert [s.page for s in pdf.sections] == [1, 2]
    assert "4812 crates" in pdf.sections[1].text
    docx = parse_file(good["docx"])
    assert docx.title == "Grandma Recipes"
    assert any(s.headings[-1:] == ["Pancakes"] and "cardamom" in s.text for s in docx.sections)


def test_pep_headings_and_title():
    assert PEPS.is_dir(), f"the shared corpus is missing at {PEPS} (it sits beside the repository)"
    doc = parse_file(PEPS / "pep-0589.rst")
    assert doc.title.startswith("PEP 589")
    assert any(s.headings == ["Specification", "Totality"] for s in doc.sections)


def test_chunks_are_token_bounded_with_overlap_and_context(counter):
    paragraphs = [f"Paragraph {i} talks about topic number {i} with several plain words to count." for i in range(60)]
    doc = ingest.ParsedDocument("/x/doc.md", "markdown", "Doc", [ingest.Section("\n\n".join(paragraphs), ["Doc", "Part"])])
    chunks = chunk_document(doc, counter, target=100, overlap=30)
    assert len(chunks) > 5
    for chunk in chunks:
        assert chunk.tokens <= 100 and counter.count(chunk.text) <= 100
        assert chunk.heading() == "Doc > Part"
    for first, second in zip(chunks, chunks[1:]):  # the tail of one passage opens the next
        assert first.text.split("\n\n")[-1] in second.text
    assert "Paragraph 59" in chunks[-1].text


def test_wordpiece_counts_match_the_engine_tokenizer(counter):
    from transformers import BertTokenizerFast

    reference = BertTokenizerFast.from_pretrained(str(model_pack.locate(model_pack.MINILM, Path("/nonexistent"))))
    for text in ["Protocols support structural subtyping.", "Ünïcödé café, naïve résumé!", "x: list[int] = []"]:
        assert counter.count(text) == len(reference(text, add_special_tokens=False)["input_ids"])


def test_long_pdf_pages_keep_page_numbers(tmp_path, counter):
    text = "\n".join(f"Line {i} of the long page with some words." for i in range(50))
    pdf = parse_file(write_pdf(tmp_path / "long.pdf", ["short first page", text], compress=True))
    chunks = chunk_document(pdf, counter, target=80, overlap=10)
    assert {c.page for c in chunks} == {1, 2}


# ----- bad input: one clear message each -------------------------------------------------------
def _error(path) -> str:
    with pytest.raises(IngestError) as info:
        parse_file(path)
    message = str(info.value)
    assert Path(path).name in message and "Traceback" not in message
    return message


def test_unsupported_type(tmp_path):
    path = tmp_path / "data.xyz"
    path.write_text("hello")
    assert "unsupported file type" in _error(path)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    assert "empty" in _error(path)


def test_invalid_encoding(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("café crème".encode("latin-1"))
    message = _error(path)
    assert "is not UTF-8 text (it seems to use an older encoding such as Windows-1252" in message
    assert "\\x" not in message and "0xe9" not in message and "offset" not in message


def test_binary_disguised_as_text(tmp_path):
    path = tmp_path / "blob.md"
    path.write_bytes(b"\x00\x01\x02binary" * 10)
    assert _error(path) == "blob.md is not UTF-8 text (it looks like a binary file)."
    noise = tmp_path / "noise.txt"  # no NUL byte: invalid UTF-8 that is not text in any 8-bit encoding either
    noise.write_bytes(b"\xe0\x1a2\x04" + bytes(range(1, 32)) * 40 + bytes(range(128, 256)) * 20)
    assert _error(noise) == "noise.txt is not UTF-8 text (it looks like a binary file)."
    image = tmp_path / "photo.txt"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    assert _error(image) == "photo.txt is not UTF-8 text (it looks like a PNG image)."


def test_a_file_that_is_not_a_pdf_is_named_in_words(tmp_path):
    path = tmp_path / "scan.pdf"
    path.write_bytes(b"\xe0\x1a2\x04" + bytes(range(256)) * 8)
    message = _error(path)
    assert message == "scan.pdf is not a PDF document (it looks like some other binary file).", message
    zipped = tmp_path / "report.pdf"
    zipped.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 8)
    assert "is not a PDF document (it looks like a ZIP archive" in _error(zipped)


def test_huge_file_refused_without_reading(tmp_path):
    path = tmp_path / "huge.pdf"
    with open(path, "wb") as handle:  # sparse: 500 MB on paper, nothing on disk
        handle.truncate(500 * 1024 * 1024)
    assert "too large" in _error(path)
    text = tmp_path / "huge.txt"
    with open(text, "wb") as handle:
        handle.truncate(500 * 1024 * 1024)
    assert "too large" in _error(text)


def test_encrypted_pdf(tmp_path):
    plain = write_pdf(tmp_path / "plain.pdf", ["secret text"])
    message = _error(write_encrypted_pdf(tmp_path / "locked.pdf", plain))
    assert "encrypted" in message


def test_scanned_pdf_without_text(tmp_path):
    path = write_pdf(tmp_path / "scan.pdf", ["", ""])
    assert "no text layer" in _error(path)


def test_damaged_pdf(tmp_path):
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.4\n this is not a pdf at all")
    _error(path)


def test_pdf_decompression_bomb(tmp_path):
    path = write_pdf_bomb(tmp_path / "bomb.pdf", inflated_mb=200)
    message = _error(path)
    assert "bomb" in message or "memory" in message or "limit" in message


def test_docx_billion_laughs_and_xxe(tmp_path):
    base = write_docx(tmp_path / "base.docx", "T", [("H", ["text"])])
    laughs = rewrite_docx_member(base, tmp_path / "laughs.docx", "word/document.xml", BILLION_LAUGHS)
    assert "entities" in _error(laughs)
    xxe = rewrite_docx_member(base, tmp_path / "xxe.docx", "word/document.xml", XXE)
    message = _error(xxe)
    assert "entities" in message and "root:" not in message


def test_docx_zip_bomb(tmp_path):
    base = write_docx(tmp_path / "base.docx", "T", [("H", ["text"])])
    bomb = rewrite_docx_member(base, tmp_path / "zipbomb.docx", "word/document.xml",
                                        b" " * (100 * 1024 * 1024), compress_level=9)
    assert "zip bomb" in _error(bomb)


def test_not_a_docx(tmp_path):
    path = tmp_path / "fake.docx"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    assert "not a valid DOCX" in _error(path)
