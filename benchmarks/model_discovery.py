"""Discovery of the models other tools keep, over a home with 10,000 files in their folders.

    .venv/bin/python benchmarks/model_discovery.py

Builds a temporary home holding Ollama (manifests and blobs), LM Studio, GPT4All, Jan, the
Hugging Face hub cache (snapshot links into blobs) and llama.cpp's cache, 10,000 files in all:
300 GGUF models (small distinct ones written with the gguf package, plus hard links of the
default pack's SmolLM2, which also exercise the copy detection) among the manifests,
READMEs, JSON, tokenizer files and safetensors shards those tools keep beside them.

Measured: the wall time of :func:`assistant.models.discovery.discover` (first run and the
median of three; the page cache is warm after building the tree, as it is for a home in use),
and the bytes it reads (``rchar`` of /proc/self/io: every read() of any file). Baseline, side
by side: the same walk with the full header check (:func:`engine.gguf_check.check_gguf`) on
every ``*.gguf`` instead of the peek. Targets (issue 20): under 2 s; no file read beyond a
header (at most 1.5 MiB per model file, where the smallest default model is 94 MiB).
"""

from __future__ import annotations

import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gguf  # noqa: E402
import numpy as np  # noqa: E402

from engine import model_pack  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "model_discovery.json"
TOTAL_FILES = 10_000
TARGET_SECONDS = 2.0
HEADER_BYTES_PER_MODEL = int(1.5 * 1024 * 1024)


def _rchar() -> int:
    with open("/proc/self/io") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("rchar:"))


def _tiny_gguf(path: Path, name: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name(name)
    writer.add_context_length(256)
    writer.add_block_count(1)
    writer.add_embedding_length(32)
    writer.add_file_type(int(gguf.LlamaFileType.MOSTLY_F16))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([f"t{i}" for i in range(64)])
    writer.add_tensor("token_embd.weight", np.full((8, 32), hash(name) % 97, dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        os.symlink(source, target)  # another file system: a link out, which discovery refuses (one line)


class _Home:
    def __init__(self, home: Path, big: list[Path]):
        self.home, self.big, self.files, self.models = home, big, 0, 0

    def file(self, path: Path, text: str = "{}") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.files += 1

    def model(self, path: Path) -> None:
        if self.big and self.models % 25 == 0:
            _link(self.big[(self.models // 25) % len(self.big)], path)
        else:
            _tiny_gguf(path, f"bench-model-{self.models}")
        self.models += 1
        self.files += 1


def build(home: Path) -> _Home:
    big = [p for p in (model_pack.locate(model_pack.SMOLLM2, home),) if p]
    tree = _Home(home, big)
    ollama = home / ".ollama" / "models"
    for i in range(60):  # a manifest and four blobs per model, as `ollama pull` leaves them
        digest = f"{i:064x}"
        tree.model(ollama / "blobs" / f"sha256-{digest}")
        for kind in ("template", "params", "license"):
            tree.file(ollama / "blobs" / f"sha256-{kind[:1] * 56}{i:08x}", kind)
        tree.file(ollama / "manifests" / "registry.ollama.ai" / "library" / f"model{i}" / "latest", json.dumps(
            {"layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}"}]}))
    for i in range(80):
        folder = home / ".lmstudio" / "models" / f"publisher{i % 9}" / f"repo{i}-GGUF"
        tree.model(folder / f"repo{i}.Q4_K_M.gguf")
        tree.file(folder / "README.md", "# model card")
    for i in range(20):
        tree.model(home / ".local" / "share" / "nomic.ai" / "GPT4All" / f"gpt4all-{i}.gguf")
    for i in range(60):
        tree.model(home / "jan" / "models" / f"model-{i}" / "model.gguf")
        tree.file(home / "jan" / "models" / f"model-{i}" / "model.json")
    hub = home / ".cache" / "huggingface" / "hub"
    for i in range(50):
        repo = hub / f"models--org{i}--repo{i}-GGUF"
        tree.file(repo / "refs" / "main", "rev")
        blob = repo / "blobs" / f"{i:040x}"
        tree.model(blob)
        (repo / "snapshots" / "rev").mkdir(parents=True, exist_ok=True)
        (repo / "snapshots" / "rev" / f"repo{i}.Q4_0.gguf").symlink_to(Path("..") / ".." / "blobs" / blob.name)
        tree.files += 1
    for i in range(30):
        tree.model(home / ".cache" / "llama.cpp" / f"org_repo{i}_model.gguf")
        tree.file(home / ".cache" / "llama.cpp" / f"org_repo{i}_model.gguf.json")
    # The rest: safetensors repositories in the hub cache (config, tokenizer, shards), no GGUF.
    i = 0
    while tree.files < TOTAL_FILES:
        repo = hub / f"models--st{i // 40}--repo" / "snapshots" / "rev"
        tree.file(repo / f"model-{i % 40:05d}-of-00040.safetensors", "x")
        i += 1
    return tree


def _baseline(home: Path) -> tuple[float, int]:
    """The same trees walked with the full header check on every *.gguf file found."""
    from engine.gguf_check import MalformedModelError, check_gguf

    started, checked = time.perf_counter(), 0
    for dirpath, _dirs, files in os.walk(home):
        for name in files:
            if name.endswith(".gguf") or "/blobs" in dirpath:
                try:
                    check_gguf(os.path.join(dirpath, name))
                    checked += 1
                except MalformedModelError:
                    pass
    return time.perf_counter() - started, checked


def main() -> int:
    from assistant.models import discovery

    with tempfile.TemporaryDirectory(prefix="discovery-bench-") as tmp:
        home = Path(tmp) / "home"
        tree = build(home)
        env = {"HOME": str(home)}
        # platformdirs' data and cache folders (GPT4All, Jan, llama.cpp) inside the temporary home.
        os.environ["XDG_DATA_HOME"] = str(home / ".local" / "share")
        os.environ["XDG_CACHE_HOME"] = str(home / ".cache")
        locations = discovery.default_locations(env=env, home=home)
        times, read = [], []
        for _ in range(3):
            before, started = _rchar(), time.perf_counter()
            result = discovery.discover(locations)
            times.append(time.perf_counter() - started)
            read.append(_rchar() - before)
        base_s, base_checked = _baseline(home)
        base_read_start = _rchar()
        _baseline(home)
        base_read = _rchar() - base_read_start
    big_copies = sum(1 for m in result.found if m.size_bytes > 50 * 1024 * 1024)
    figures = {
        "files_in_trees": tree.files,
        "gguf_files": tree.models,
        "models_listed": len(result.found),
        "default_model_copies_folded_to": big_copies,
        "lines_skipped": len(result.skipped),
        "discovery_s_first": round(times[0], 3),
        "discovery_s_median": round(statistics.median(times), 3),
        "bytes_read_per_gguf_file": int(read[0] / max(1, tree.models)),
        "bytes_read_total": read[0],
        "baseline_full_check_s": round(base_s, 3),
        "baseline_bytes_read_total": base_read,
        "baseline_files_checked": base_checked,
        "speedup_vs_full_check": round(base_s / max(1e-9, statistics.median(times)), 1),
    }
    targets = {"discovery_s_first": f"< {TARGET_SECONDS}",
               "bytes_read_per_gguf_file": f"<= {HEADER_BYTES_PER_MODEL} (a header, not the weights)"}
    met = times[0] < TARGET_SECONDS and max(read) <= HEADER_BYTES_PER_MODEL * tree.models
    print(f"{'figure':34} value")
    for key, value in figures.items():
        print(f"{key:34} {value}")
    load = round(os.getloadavg()[0], 2)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    record = {"benchmark": "model_discovery", "figures": figures, "targets": targets, "met": met,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "commit": commit,
              "load_average_1m": load, "cpus": os.cpu_count()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    print(f"load average (1 min): {load}")
    print(json.dumps({"benchmark": "model_discovery", "figures": figures, "targets": targets, "met": met}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
