"""End-to-end run of the whole product with no network: ``python tests/e2e/offline_e2e.py WORK``.

Meant to run inside ``unshare -n`` (a network namespace with only a loopback that is down)
and under ``strace -f -e trace=network`` (see tests/e2e/test_offline.py). Uses the data
folder of ``ASSISTANT_DATA_DIR`` and the scratch folder WORK. Steps: start the engine,
chat (saved in a conversation), translate, classify sentiment, ingest a folder and search
it; then, when the training package is installed, fine-tune a LoRA adapter for a few steps,
chat through it, merge and export the model, quantize it, import it into the library and
chat with it. Two canaries (an AF_UNIX connect here and one in a child process) let the
caller check that the tracer really saw this process tree.

Prints one JSON line per step ({"step", "ok", "seconds", ...}) and a last line
{"summary": {...}}; exits 0 only when every step succeeded. Runs on its main thread.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import assistant  # noqa: E402,F401  (installs the privacy guard first, as every entry point does)
from engine import privacy  # noqa: E402

CANARY = "e2e-canary"
GREEDY = {"max_tokens": 12, "temperature": 0.0, "seed": 7}
DOCS = {
    "harbour.md": "# The harbour\n\nThe lighthouse keeper of Port Ellis counts ships every evening. "
                  "In the winter storms the harbour master closes the north gate.\n",
    "garden.txt": "Tomatoes need six hours of sun. The community garden on Elm Street waters its beds at dawn, "
                  "and the compost heap is turned every second Sunday.\n",
    "notes/recipes.txt": "To bake rye bread, feed the sourdough starter the night before and let the dough rise "
                         "for four hours in a warm kitchen.\n",
}
TRAIN_TEXT = ("The lighthouse keeper of Port Ellis counts ships every evening and writes them in a blue book. "
              "Storms close the north gate; the harbour master opens it at dawn. ") * 30


def emit(record: dict) -> None:
    sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def network_state() -> dict:
    """The interfaces this process can see and whether even loopback answers."""
    names = [name for _index, name in socket.if_nameindex()]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server, \
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
        server.bind(("127.0.0.1", 0))  # binding works even on a loopback that is down...
        server.listen(1)
        try:
            client.connect(server.getsockname())  # ...connecting does not
            loopback = "up"
        except OSError as exc:
            loopback = f"down ({exc.strerror})"
    return {"interfaces": names, "loopback": loopback}


def canary(work: Path) -> None:
    """A Unix-socket connect here and in a child: the tracer must show both (proves -f works)."""
    path = work / f"{CANARY}.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(2)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(str(path))
    code = f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({str(path)!r}); s.close()"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    server.close()
    path.unlink()


class Run:
    def __init__(self, work: Path):
        self.work = work
        self.results: dict[str, dict] = {}

    def step(self, name: str, action) -> object:
        started = time.perf_counter()
        try:
            value, details = action()
            ok = True
        except Exception as exc:  # the summary names the failure; the caller's test fails on it
            value, details, ok = None, {"error": f"{type(exc).__name__}: {exc}",
                                        "trace": traceback.format_exc()[-2000:]}, False
        record = {"step": name, "ok": ok, "seconds": round(time.perf_counter() - started, 2), **details}
        self.results[name] = record
        emit(record)
        return value


def training_available() -> dict[str, bool]:
    return {name: importlib.util.find_spec(name) is not None
            for name in ("training.run", "training.lora.job", "training.export.lora_gguf",
                         "training.export.full_gguf", "training.quantize")}


def main(argv: list[str]) -> int:
    work = Path(argv[1]).resolve()
    work.mkdir(parents=True, exist_ok=True)
    run = Run(work)

    from assistant.app import build_services
    from assistant.config import default_paths
    from assistant.documents.collections import Documents, default_counter, engine_embedder
    from assistant.documents.retrieval import Retriever
    from assistant.tasks.sentiment import SentimentAnalyzer
    from assistant.tasks.translation import Translator

    emit({"step": "network", "ok": True, **network_state()})
    run.step("canary", lambda: (canary(work), {}))
    services = run.step("start", lambda: (build_services(default_paths()), {}))
    if services is None:
        emit({"summary": {"ok": False, "steps": run.results}})
        return 1
    try:
        def start_engine():
            pong = services.engine.ping(timeout=300)
            return pong, {"worker_pid": pong["pid"]}

        run.step("engine", start_engine)
        chat_model = services.library.for_task("chat").path

        def chat():
            conv = services.conversations.create("offline e2e")
            question = "What is the capital of France?"
            services.conversations.add_message(conv.id, "user", question)
            done = services.engine.chat(chat_model, [{"role": "user", "content": question}], GREEDY).result(timeout=600)
            text = done["result"]["text"]
            services.conversations.add_message(conv.id, "assistant", text, model=chat_model)
            assert text.strip(), "empty reply"
            return conv.id, {"text": text, "saved": len(services.conversations.messages(conv.id))}

        run.step("chat", chat)

        def translate():
            finished = Translator.from_services(services).translate("Good morning, my friend.", "fr", source="en")
            assert finished.text.strip() and not finished.cancelled
            return finished, {"text": finished.text}

        run.step("translate", translate)

        def classify():
            analyzer = SentimentAnalyzer.from_services(services)
            good = analyzer.classify_one("I love this, it is wonderful and works perfectly.")
            bad = analyzer.classify_one("This is terrible, it broke on the first day and I hate it.")
            assert (good.label, bad.label) == ("positive", "negative"), (good.label, bad.label)
            return None, {"labels": [good.label, bad.label]}

        run.step("classify", classify)

        def ingest():
            folder = work / "documents"
            for name, text in DOCS.items():
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_text(text, encoding="utf-8")
            embed = engine_embedder(services)
            documents = Documents(services.store, embed, default_counter(services))
            events = list(documents.add_paths([folder]))
            totals = events[-1].totals
            assert totals["indexed"] == len(DOCS) and totals["errors"] == 0, totals
            hits = Retriever(services.store, embed).search("Who counts the ships?", k=1)
            assert hits and "harbour" in hits[0].to_dict().get("path", "") + json.dumps(hits[0].to_dict()), hits
            return None, {"indexed": totals["indexed"], "chunks": totals["chunks"]}

        run.step("ingest", ingest)

        available = training_available()
        emit({"step": "training-modules", "ok": True, "available": available})
        if all(available.values()):
            run_training(run, services, work)
    finally:
        services.close()
    summary = {"ok": all(r["ok"] for r in run.results.values()), "steps": {k: v["ok"] for k, v in run.results.items()},
               "refused": list(privacy.refused_attempts), "training": training_available()}
    emit({"summary": summary})
    return 0 if summary["ok"] and not privacy.refused_attempts else 1


def run_training(run: Run, services, work: Path) -> None:
    """Fine-tune, chat through the adapter, merge, export, quantize, import, chat: all offline."""
    base = Path(services.library.get("smollm2").path)
    out = work / "lora-run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}

    def finetune():
        data = work / "training-notes.txt"
        data.write_text(TRAIN_TEXT, encoding="utf-8")
        job = {"kind": "lora", "base_gguf": str(base), "cache_root": str(services.paths.data_dir / "training" / "base-cache"),
               "output_dir": str(out), "dataset": {"type": "text_files", "paths": [str(data)]}, "preset": "quick",
               "export_gguf": True,
               "settings": {"rank": 4, "alpha": 8, "seq_len": 32, "batch_size": 2, "max_steps": 3, "eval_blocks": 2,
                            "warmup_steps": 0, "checkpoint_every": 2}}
        job_path = work / "lora-job.json"
        job_path.write_text(json.dumps(job), encoding="utf-8")
        proc = subprocess.run([sys.executable, "-m", "training.run", str(job_path)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=1800)
        events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        assert proc.returncode == 0, (proc.returncode, events[-1:] or proc.stderr[-1500:])
        result = events[-1]["result"]
        assert Path(result["adapter_gguf"]).is_file() and Path(result["adapter_dir"]).is_dir()
        return result, {"steps": result.get("steps") or result.get("step"), "adapter": result["adapter_gguf"]}

    result = run.step("finetune", finetune)
    if result is None:
        return

    def chat_with_adapter():
        done = services.engine.chat(str(base), [{"role": "user", "content": "Who counts the ships?"}], GREEDY,
                                    adapters=[{"path": result["adapter_gguf"], "scale": 1.0}]).result(timeout=600)
        assert done["result"]["text"].strip()
        return None, {"text": done["result"]["text"]}

    run.step("chat-with-adapter", chat_with_adapter)
    merged = work / "export" / "smollm2-harbour-f16.gguf"

    def export():
        code = ("import sys; from engine import privacy; privacy.install()\n"
                "from training.export.full_gguf import merge_and_export\n"
                "print(merge_and_export(sys.argv[1], sys.argv[2], sys.argv[3], 'f16', cache_root=sys.argv[4]))\n")
        proc = subprocess.run([sys.executable, "-c", code, str(base), result["adapter_dir"], str(merged),
                               str(services.paths.data_dir / "training" / "base-cache")],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, proc.stderr[-1500:]
        return None, {"bytes": merged.stat().st_size}

    run.step("export", export)
    quantized = services.paths.models_dir / "smollm2-harbour-q8_0.gguf"

    def quantize():
        from training.quantize import quantize_gguf

        quantize_gguf(merged, quantized, "Q8_0")
        return None, {"bytes": quantized.stat().st_size}

    run.step("quantize", quantize)

    def import_and_chat():
        record = services.library.add(quantized)
        done = services.engine.chat(record.path, [{"role": "user", "content": "Who counts the ships?"}],
                                    GREEDY).result(timeout=600)
        assert done["result"]["text"].strip()
        return None, {"model": record.id, "quantization": record.metadata.get("quantization"),
                      "text": done["result"]["text"]}

    run.step("import-and-chat", import_and_chat)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
