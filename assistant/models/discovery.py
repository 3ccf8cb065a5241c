"""GGUF models other tools already keep on this computer: where they are and what they are.

Runs on a worker thread or the CLI's main thread; reads folders and the first few KB of each
candidate file (:func:`engine.gguf_check.peek_gguf`), never a model's weights, and never
writes anything. Linking a found model is the library's job (:meth:`ModelLibrary.link`),
which runs the full header check.

Each tool's folder comes from its documented default and environment variables:

- Ollama: ``OLLAMA_MODELS`` or ``~/.ollama/models`` (and the Linux service's
  ``/usr/share/ollama/.ollama/models``). Its manifests name the model layer by digest; the
  blob is ``blobs/sha256-<hex>``. Only what a manifest names is listed: blobs have no file
  names, and guessing from sizes would list projectors and adapters as models.
- LM Studio: ``~/.lmstudio/models``, and the older ``~/.cache/lm-studio/models``.
- GPT4All: its Qt data folder, ``<user data dir>/nomic.ai/GPT4All``.
- Jan: ``~/jan/models`` (before 0.5) and ``<user data dir>/Jan/data/models``.
- Hugging Face hub cache: ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else
  ``~/.cache/huggingface/hub``; ``models--*/snapshots/*/`` hold symlinks into the cache's
  own ``blobs/``.
- llama.cpp's download cache: ``LLAMA_CACHE`` or ``<user cache dir>/llama.cpp``.
- Folders the user added (the ``model_folders`` setting).

Every path is resolved before use. A symlink that leaves its tool's folder (other than a
Hugging Face snapshot's link into the same cache's blobs), a loop, an unreadable file or a
file that is not GGUF is skipped with one line saying why, never an exception.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import platformdirs

from engine.gguf_check import MalformedModelError, file_type_name, peek_gguf

OLLAMA = "ollama"
LM_STUDIO = "lmstudio"
GPT4ALL = "gpt4all"
JAN = "jan"
HUGGING_FACE = "huggingface"
LLAMA_CPP = "llama.cpp"
USER_FOLDER = "folder"

#: How each source is named to people.
SOURCE_LABELS = {
    OLLAMA: "Ollama",
    LM_STUDIO: "LM Studio",
    GPT4ALL: "GPT4All",
    JAN: "Jan",
    HUGGING_FACE: "Hugging Face cache",
    LLAMA_CPP: "llama.cpp cache",
    USER_FOLDER: "Your folder",
}

#: Setting (app scope) holding the folders the user added, as a list of paths.
FOLDERS_SETTING = "model_folders"

_OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
# The Modelfile's PARAMETER lines as JSON ({"temperature": 0.6, "stop": [...]}): the sampling
# Ollama runs the model with, read only when the model is linked.
_OLLAMA_PARAMS_LAYER = "application/vnd.ollama.image.params"
_MAX_PARAMS_BYTES = 64 * 1024
# Ollama's parameter names -> SamplingParams names (num_ctx: read_ollama_context; stop: not kept).
_OLLAMA_SAMPLING = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
                    "repeat_penalty": "repeat_penalty", "repeat_last_n": "repeat_last_n"}
_OLLAMA_DIGEST = re.compile(r"sha256[:-]([0-9a-f]{64})")
# A manifest is a few hundred bytes; a larger "manifest" is not one, and is not read whole.
_MAX_MANIFEST_BYTES = 256 * 1024
# llama.cpp's split naming (gguf-split, llama_split_path): NAME-00001-of-00003.gguf.
SPLIT_NAME = re.compile(r"^(?P<prefix>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
# Deeper than any tool's layout (HF: models--x/snapshots/rev/subfolder/file is 4); bounds a
# walk through a user folder that holds a whole disk.
_MAX_DEPTH = 8
# Read to tell two copies of one file apart without reading either whole.
_HEADER_DIGEST_BYTES = 64 * 1024


@dataclass(frozen=True)
class Location:
    source: str  # one of SOURCE_LABELS
    root: Path  # as configured (not resolved): shown to the user


@dataclass
class FoundModel:
    source: str
    name: str  # what the tool calls it: "llama3.2:1b", "bartowski/Qwen2.5-0.5B-GGUF", a file name
    path: str  # the resolved file (the first part of a split model)
    size_bytes: int  # all parts together
    parts: int = 1
    architecture: str | None = None
    quantization: str | None = None
    model_name: str | None = None  # general.name inside the file
    also_in: list[str] = field(default_factory=list)  # "LM Studio: name" where other tools list the same file
    params_path: str | None = None  # Ollama: its manifest's parameters blob (read_ollama_params), checked

    @property
    def source_label(self) -> str:
        return SOURCE_LABELS.get(self.source, self.source)


@dataclass
class Skipped:
    path: str
    reason: str  # one sentence

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class Discovery:
    found: list[FoundModel]
    skipped: list[Skipped]
    searched: list[Location]  # the locations that exist


def _env_path(env: Mapping[str, str], name: str) -> Path | None:
    value = env.get(name, "").strip()
    return Path(value).expanduser() if value else None


def default_locations(env: Mapping[str, str] | None = None, home: Path | None = None,
                      user_folders: Iterable[str] = ()) -> list[Location]:
    """Every place to look, whether it exists or not, in a fixed order (the first source to
    list a file is the one it is shown under)."""
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    data = Path(platformdirs.user_data_dir())
    cache = Path(platformdirs.user_cache_dir())
    locations = [Location(OLLAMA, _env_path(env, "OLLAMA_MODELS") or home / ".ollama" / "models")]
    service = Path("/usr/share/ollama/.ollama/models")  # the Linux install script's service user
    if os.name == "posix" and not env.get("OLLAMA_MODELS"):
        locations.append(Location(OLLAMA, service))
    locations += [
        Location(LM_STUDIO, home / ".lmstudio" / "models"),
        Location(LM_STUDIO, home / ".cache" / "lm-studio" / "models"),
        Location(GPT4ALL, data / "nomic.ai" / "GPT4All"),
        Location(JAN, home / "jan" / "models"),
        Location(JAN, data / "Jan" / "data" / "models"),
    ]
    hf_cache = (_env_path(env, "HF_HUB_CACHE") or _env_path(env, "HUGGINGFACE_HUB_CACHE")
                or ((_env_path(env, "HF_HOME") / "hub") if _env_path(env, "HF_HOME") else None)
                or ((_env_path(env, "XDG_CACHE_HOME") or home / ".cache") / "huggingface" / "hub"))
    locations.append(Location(HUGGING_FACE, hf_cache))
    locations.append(Location(LLAMA_CPP, _env_path(env, "LLAMA_CACHE") or cache / "llama.cpp"))
    locations += [Location(USER_FOLDER, Path(folder).expanduser()) for folder in user_folders if folder]
    return locations


# ----- walking --------------------------------------------------------------------------
def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _resolve(path: Path) -> Path:
    """``path`` with every symlink followed; OSError (ELOOP, ENOENT, EACCES) or RuntimeError
    (a loop, before Python 3.13) when that cannot be done."""
    return path.resolve(strict=True)


class _Scan:
    """One discovery run: what was found, what was skipped, and the files already seen."""

    def __init__(self) -> None:
        self.found: list[FoundModel] = []
        self.skipped: list[Skipped] = []
        self.by_path: dict[str, FoundModel] = {}

    def skip(self, path: Path | str, reason: str) -> None:
        self.skipped.append(Skipped(str(path), reason))

    def checked_file(self, path: Path, allowed: Path) -> Path | None:
        """The resolved regular file ``path`` names, if it stays within ``allowed``."""
        try:
            resolved = _resolve(path)
        except RuntimeError:
            self.skip(path, "a symbolic link loop; skipped.")
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self.skip(path, "a symbolic link loop; skipped.")
            elif isinstance(exc, FileNotFoundError):
                self.skip(path, "a symbolic link to a file that does not exist; skipped.")
            else:
                self.skip(path, f"cannot be read ({exc.strerror or exc}); skipped.")
            return None
        if not _within(resolved, allowed):
            self.skip(path, f"a symbolic link out of {allowed} (to {resolved}); skipped, as links out of a "
                            "tool's folder are not followed.")
            return None
        try:
            info = resolved.stat()
        except OSError as exc:
            self.skip(path, f"cannot be read ({exc.strerror or exc}); skipped.")
            return None
        if not stat.S_ISREG(info.st_mode):
            self.skip(path, "not a regular file; skipped.")
            return None
        if not os.access(resolved, os.R_OK):
            self.skip(path, "cannot be read (permission denied); skipped.")
            return None
        return resolved

    def add(self, source: str, name: str, path: Path, resolved: Path) -> None:
        """Peek at the file and list it, once however many tools point at it."""
        key = str(resolved)
        known = self.by_path.get(key)
        if known is not None:
            if known.source != source or known.name != name:
                known.also_in.append(f"{SOURCE_LABELS.get(source, source)}: {name}")
            return
        split = SPLIT_NAME.match(resolved.name) or SPLIT_NAME.match(path.name)
        if split and int(split["index"]) != 1:
            return  # listed with its first part
        try:
            peek = peek_gguf(resolved)
        except MalformedModelError as exc:
            self.skip(path, f"not a usable GGUF model: {exc}")
            return
        size, parts = peek.file_size, 1
        if split:
            count = int(split["count"])
            siblings = _split_parts(path if SPLIT_NAME.match(path.name) else resolved, count)
            missing = [p.name for p in siblings if not p.is_file()]
            if missing:
                self.skip(path, f"part 1 of a model split in {count} files, but "
                                f"{', '.join(missing[:3])}{' …' if len(missing) > 3 else ''} "
                                f"{'is' if len(missing) == 1 else 'are'} missing; skipped.")
                return
            size = sum(p.stat().st_size for p in siblings)
            parts = count
        # llama.cpp finds the other parts by the first part's name: a Hugging Face blob has none.
        shown = key if not split or SPLIT_NAME.match(resolved.name) else str(path.absolute())
        model = FoundModel(
            source=source, name=name, path=shown, size_bytes=size, parts=parts,
            architecture=_text(peek.metadata.get("general.architecture")),
            quantization=file_type_name(peek.metadata),
            model_name=_text(peek.metadata.get("general.name")),
        )
        self.by_path[key] = model
        self.found.append(model)

    def walk(self, root: Path, allowed: Path, max_depth: int = _MAX_DEPTH) -> Iterable[Path]:
        """``*.gguf`` names under ``root`` (case-insensitive), not following links to folders
        outside ``allowed`` and never entering a folder twice (links can make loops)."""
        seen: set[tuple[int, int]] = set()
        stack = [(root, 0)]
        while stack:
            folder, depth = stack.pop()
            try:
                info = folder.stat()
            except OSError as exc:
                self.skip(folder, f"cannot be read ({exc.strerror or exc}); skipped.")
                continue
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as exc:
                self.skip(folder, f"cannot be read ({exc.strerror or exc}); skipped.")
                continue
            subfolders = []
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if depth + 1 < max_depth:
                            subfolders.append(Path(entry.path))
                        continue
                    if entry.is_symlink() and not entry.name.lower().endswith(".gguf"):
                        target = Path(entry.path)
                        try:
                            resolved = _resolve(target)
                        except (OSError, RuntimeError):
                            continue  # a dangling or looping link that is not named as a model
                        if resolved.is_dir():
                            if not _within(resolved, allowed):
                                self.skip(target, f"a symbolic link out of {allowed} (to {resolved}); "
                                                  "skipped, as links out of a tool's folder are not followed.")
                            elif depth + 1 < max_depth:
                                subfolders.append(target)
                        continue
                except OSError:
                    continue
                if entry.name.lower().endswith(".gguf"):
                    yield Path(entry.path)
            stack.extend((sub, depth + 1) for sub in reversed(subfolders))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _split_parts(first: Path, count: int) -> list[Path]:
    match = SPLIT_NAME.match(first.name)
    assert match is not None
    width = len(match["index"])
    return [first.with_name(f"{match['prefix']}-{i:0{width}d}-of-{match['count']}.gguf") for i in range(1, count + 1)]


def split_parts(first: str | os.PathLike) -> list[Path]:
    """Every part of a split model from its first part's path (``[first]`` for one file)."""
    first = Path(first)
    match = SPLIT_NAME.match(first.name)
    return _split_parts(first, int(match["count"])) if match else [first]


# ----- one scanner per layout -----------------------------------------------------------
def _scan_ollama(scan: _Scan, root: Path) -> None:
    """Models named by Ollama's manifests: manifests/<registry>/<namespace>/<model>/<tag>."""
    manifests, blobs = root / "manifests", root / "blobs"
    if not manifests.is_dir():
        return
    try:
        blobs_resolved = _resolve(blobs)
    except (OSError, RuntimeError):
        scan.skip(blobs, "Ollama's blobs folder is missing or cannot be read; its models are skipped.")
        return
    for dirpath, _dirs, files in os.walk(manifests):  # os.walk does not follow links to folders
        for tag in sorted(files):
            manifest = Path(dirpath) / tag
            relative = manifest.relative_to(manifests).parts
            if len(relative) != 4:
                continue  # not registry/namespace/model/tag
            registry, namespace, model, _tag = relative
            name = (f"{model}:{tag}" if (registry, namespace) == ("registry.ollama.ai", "library")
                    else f"{registry}/{namespace}/{model}:{tag}")
            digests = _ollama_layer_digests(scan, manifest)
            if digests is None:
                continue
            digest, params_digest = digests
            blob = blobs / f"sha256-{digest}"
            if not blob.exists() and not blob.is_symlink():
                scan.skip(manifest, f"its model layer sha256-{digest[:12]}… is not in {blobs} (a download cut short?); "
                                    "skipped.")
                continue
            resolved = scan.checked_file(blob, blobs_resolved)
            if resolved is not None:
                scan.add(OLLAMA, name, blob, resolved)
                found = scan.by_path.get(str(resolved))
                params = blobs / f"sha256-{params_digest}" if params_digest else None
                if found is not None and found.source == OLLAMA and found.params_path is None \
                        and params is not None and params.exists():
                    checked = scan.checked_file(params, blobs_resolved)  # never a link out of the blobs
                    found.params_path = str(checked) if checked is not None else None


def _ollama_params_object(path: str | os.PathLike) -> dict:
    """An Ollama parameters blob's JSON object; {} when it cannot be read or is not one."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_MAX_PARAMS_BYTES + 1)
        data = json.loads(raw) if len(raw) <= _MAX_PARAMS_BYTES else None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_ollama_params(path: str | os.PathLike) -> dict:
    """The sampling an Ollama parameters blob names, by SamplingParams name ({} when none)."""
    data = _ollama_params_object(path)
    return {ours: data[theirs] for theirs, ours in _OLLAMA_SAMPLING.items()
            if isinstance(data.get(theirs), (int, float)) and not isinstance(data.get(theirs), bool)}


def read_ollama_context(path: str | os.PathLike) -> int | None:
    """The context length (``num_ctx``) an Ollama parameters blob sets; None when it sets none."""
    value = _ollama_params_object(path).get("num_ctx")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _ollama_layer_digests(scan: _Scan, manifest: Path) -> tuple[str, str | None] | None:
    """The hex digests of the manifest's model layer and of its parameters layer (None when it
    has none); None (with a line) when there is no model layer."""
    try:
        with open(manifest, "rb") as handle:
            raw = handle.read(_MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        scan.skip(manifest, f"Ollama manifest cannot be read ({exc.strerror or exc}); skipped.")
        return None
    if len(raw) > _MAX_MANIFEST_BYTES:
        scan.skip(manifest, "too large to be an Ollama manifest; skipped.")
        return None
    try:
        data = json.loads(raw)
        layers = [layer for layer in data["layers"] if layer.get("mediaType") == _OLLAMA_MODEL_LAYER]
    except (ValueError, KeyError, TypeError, AttributeError):
        scan.skip(manifest, "not a valid Ollama manifest (JSON with layers); skipped.")
        return None
    if not layers:
        return None  # an embedding-less adapter or a non-GGUF image: nothing to run
    digest = layers[0].get("digest")
    match = _OLLAMA_DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        scan.skip(manifest, f"its model layer digest {str(digest)[:80]!r} does not name a blob in Ollama's blobs "
                            "folder; refused.")
        return None
    params = next((layer.get("digest") for layer in data["layers"]
                   if isinstance(layer, dict) and layer.get("mediaType") == _OLLAMA_PARAMS_LAYER), None)
    params_match = _OLLAMA_DIGEST.fullmatch(params) if isinstance(params, str) else None
    return match[1], params_match[1] if params_match else None


def _scan_huggingface(scan: _Scan, root: Path) -> None:
    """``models--<org>--<name>/snapshots/<revision>/**/*.gguf``: links into the repo's blobs."""
    try:
        repos = sorted(p for p in root.iterdir() if p.name.startswith("models--") and p.is_dir())
    except OSError as exc:
        scan.skip(root, f"cannot be read ({exc.strerror or exc}); skipped.")
        return
    for repo in repos:
        repo_id = repo.name.removeprefix("models--").replace("--", "/")
        snapshots = repo / "snapshots"
        try:
            allowed = _resolve(repo)
        except (OSError, RuntimeError):
            scan.skip(repo, "cannot be opened; skipped.")
            continue
        if not snapshots.is_dir():
            continue
        # Snapshot files are links into the repo's own blobs/; a link anywhere else is refused.
        for path in scan.walk(snapshots, allowed, max_depth=4):
            resolved = scan.checked_file(path, allowed)
            if resolved is not None:
                scan.add(HUGGING_FACE, f"{repo_id}/{path.name}", path, resolved)


def _scan_files(scan: _Scan, source: str, root: Path) -> None:
    """Plain folders of .gguf files (LM Studio, GPT4All, Jan, llama.cpp's cache, the user's)."""
    try:
        allowed = _resolve(root)
    except (OSError, RuntimeError):
        scan.skip(root, "cannot be opened; skipped.")
        return
    for path in scan.walk(root, allowed):
        resolved = scan.checked_file(path, allowed)
        if resolved is not None:
            relative = path.relative_to(root)
            # LM Studio and Jan keep publisher/repo/file.gguf or model-id/file.gguf: the folders say which model.
            name = str(relative.parent / relative.name) if source in (LM_STUDIO, JAN) else relative.name
            scan.add(source, name, path, resolved)


def discover(locations: Iterable[Location] | None = None) -> Discovery:
    """Every GGUF model in ``locations`` (default: :func:`default_locations`), each listed once.

    A file two tools point at (a link, or a hard link to the same inode) is listed under the
    first and names the others in ``also_in``; two copies of one file (same size, same first
    64 KiB) likewise. Any thread but the GUI's.
    """
    locations = default_locations() if locations is None else list(locations)
    scan = _Scan()
    searched = []
    for location in locations:
        root = location.root
        if not root.is_dir():
            continue
        searched.append(location)
        if location.source == OLLAMA:
            _scan_ollama(scan, root)
        elif location.source == HUGGING_FACE:
            _scan_huggingface(scan, root)
        else:
            _scan_files(scan, location.source, root)
    return Discovery(_merge_copies(scan.found), scan.skipped, searched)


def _merge_copies(found: list[FoundModel]) -> list[FoundModel]:
    """Fold copies of one file kept by two tools into one entry: same size and the same first
    64 KiB (the header, which names the model and its tensors). Cheap: only files whose sizes
    collide are read at all."""
    by_size: dict[int, list[FoundModel]] = {}
    for model in found:
        by_size.setdefault(model.size_bytes, []).append(model)
    dropped: set[int] = set()
    for group in by_size.values():
        if len(group) < 2:
            continue
        first_by_digest: dict[str, FoundModel] = {}
        for model in group:
            try:
                with open(model.path, "rb") as handle:
                    digest = hashlib.sha256(handle.read(_HEADER_DIGEST_BYTES)).hexdigest()
            except OSError:
                continue
            first = first_by_digest.setdefault(digest, model)
            if first is not model:
                first.also_in.append(f"{model.source_label}: {model.name} ({model.path})")
                dropped.add(id(model))
    return [m for m in found if id(m) not in dropped]
