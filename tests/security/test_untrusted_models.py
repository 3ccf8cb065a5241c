"""Untrusted models: crafted GGUF files go through the real import path (library + engine
worker) and each gets one clear message, the worker survives, the library is unchanged;
hostile chat templates render harmlessly; the worker runs under an address-space limit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from assistant.app import build_services
from assistant.config import default_paths
from assistant.models.library import LibraryError
from engine.chat_template import render_chat
from engine.client import EngineClient, EngineRequestError
from engine.settings import EngineSettings
from tests.engine.gguf_corpus import build_malformed_corpus, write_valid_gguf

from .conftest import REPO

GREEDY = {"max_tokens": 8, "temperature": 0.0, "seed": 1}


@pytest.fixture
def services():
    services = build_services(default_paths())
    yield services
    services.close()


def _library_state(services) -> tuple:
    """Everything an import could change: the model rows and the files of the models folder."""
    with services.store.reading() as conn:
        rows = conn.execute("SELECT * FROM models ORDER BY id").fetchall()
        settings = conn.execute("SELECT * FROM settings ORDER BY scope, key").fetchall()
    files = sorted((str(p.relative_to(services.paths.data_dir)), p.stat().st_size, p.stat().st_mtime_ns)
                   for p in services.paths.data_dir.rglob("*") if p.is_file()
                   and not p.name.startswith("assistant.sqlite3") and p.parent.name != "logs")
    return rows, settings, files


def _clear(message: str) -> None:
    assert message and "\n" not in message, message
    assert "Traceback" not in message and "could not be checked" not in message, message
    assert message.endswith((".", ")")), message


def test_crafted_corpus_through_library_and_worker_leaves_everything_unchanged(services, tmp_path):
    corpus = build_malformed_corpus(tmp_path / "crafted")
    assert len(corpus) >= 30
    before = _library_state(services)
    engine = services.engine
    pid = engine.ping()["pid"]
    for path, expected in corpus:
        with pytest.raises(LibraryError) as from_library:
            services.library.add(path)
        _clear(str(from_library.value))
        assert path.name in str(from_library.value) or "does not exist" in str(from_library.value)
        # The worker, where llama.cpp would open the file, gets the same verdict.
        with pytest.raises(EngineRequestError) as from_worker:
            engine.inspect(str(path), timeout=60)
        assert from_worker.value.kind == "malformed_model", (path.name, from_worker.value.kind)
        assert expected.lower() in str(from_worker.value).lower(), (path.name, str(from_worker.value))
        _clear(str(from_worker.value))
    assert engine.ping()["pid"] == pid and engine.restarts == 0, "no crafted file may crash the worker"
    assert _library_state(services) == before
    assert services.store.integrity_problems() == []


def test_a_crash_inside_the_worker_restarts_it_and_changes_nothing(services, smollm2_path, tmp_path):
    # A header that passes but a body llama.cpp cannot use: refused by llama.cpp, worker alive.
    hollow = write_valid_gguf(tmp_path / "hollow.gguf")
    before = _library_state(services)
    engine = services.engine
    with pytest.raises(EngineRequestError) as info:
        engine.chat(str(hollow), [{"role": "user", "content": "hi"}], GREEDY).result(timeout=120)
    assert info.value.kind == "load_failed"
    _clear(str(info.value))
    # A segfault in llama.cpp (what a file that slips past every check can do) is survived.
    crashed = engine.ping()["pid"]
    handle = engine.chat(smollm2_path, [{"role": "user", "content": "Tell a long story."}],
                         {"max_tokens": 2000, "temperature": 0.7})
    for event in handle.events(timeout=120):
        if event.get("event") == "token":
            os.kill(crashed, signal.SIGSEGV)
            break
    with pytest.raises(EngineRequestError) as died:
        handle.result(timeout=120)
    assert died.value.kind == "engine_died" and "SIGSEGV" in str(died.value) and "restarted" in str(died.value)
    done = engine.chat(smollm2_path, [{"role": "user", "content": "Say hello."}], GREEDY).result(timeout=120)
    assert done["result"]["text"] and engine.ping()["pid"] != crashed
    assert _library_state(services) == before


# Published escapes from Jinja sandboxes, each tried as a model's chat template. The marker
# file would appear if one of them ran a shell command.
MARKER = "/tmp/pwned-by-chat-template"
SSTI_PAYLOADS = {
    # CVE-2024-34359 as published (llama-cpp-python rendered templates without a sandbox).
    "cve_2024_34359": "{% for x in ().__class__.__base__.__subclasses__() %}{% if \"warning\" in x.__name__ %}"
                      "{{x()._module.__builtins__['__import__']('os').popen(\"touch " + MARKER + "\")}}"
                      "{%endif%}{% endfor %}",
    # CVE-2025-27516: |attr reaching str.format.
    "attr_format": "{{ ('{0.__class__.__init__.__globals__}'|attr('format'))(messages) }}{{ messages[-1].content }}",
    # CVE-2024-56326: a stored reference to str.format called later.
    "stored_format": "{% set f = '{0.__class__.__mro__}'.format %}{{ f(messages) }}{{ messages[-1].content }}",
    "format_map": "{{ '{0.__class__}'.format_map({'0': messages}) }}{{ messages[-1].content }}",
    "percent_format": "{{ '%s'|format(messages.__class__) }}{{ messages[-1].content }}",
    "attr_dunder": "{{ (messages|attr('__class__'))|attr('__mro__') }}{{ messages[-1].content }}",
    "lipsum_globals": "{{ lipsum.__globals__['os'].popen('touch " + MARKER + "').read() }}",
    "cycler_globals": "{{ cycler.__init__.__globals__.os.popen('touch " + MARKER + "').read() }}",
    "joiner_globals": "{{ joiner.__init__.__globals__.os.system('touch " + MARKER + "') }}",
    "namespace_globals": "{{ namespace.__init__.__globals__.os.system('touch " + MARKER + "') }}",
    "helper_globals": "{{ raise_exception.__globals__['__builtins__']['__import__']('os').system('touch " + MARKER + "') }}",
    "template_context": "{{ self._TemplateReference__context }}{{ messages[-1].content }}",
    "map_attribute": "{{ messages|map(attribute='__class__')|list }}{{ messages[-1].content }}",
    "mutate_messages": "{{ messages.append({'role': 'system', 'content': 'obey'}) }}{{ messages[-1].content }}",
    # Resource bombs the attribute checks cannot see.
    "string_times": "{{ 'a' * 10**10 }}{{ messages[-1].content }}",
    "huge_power": "{{ 9 ** (9 ** 9) }}{{ messages[-1].content }}",
    "list_times": "{{ ([0] * 10**9)|length }}{{ messages[-1].content }}",
    "huge_range": "{% for i in range(10**9) %}x{% endfor %}{{ messages[-1].content }}",
}
MESSAGES = [{"role": "user", "content": "What is two plus two?"}]


@pytest.fixture
def no_marker():
    if os.path.exists(MARKER):
        os.unlink(MARKER)
    yield
    assert not os.path.exists(MARKER), "a chat template ran a shell command"


@pytest.mark.parametrize("name", sorted(SSTI_PAYLOADS))
def test_hostile_chat_templates_render_harmlessly(name, no_marker):
    rendered = render_chat(MESSAGES, SSTI_PAYLOADS[name], fallback="chatml")
    assert rendered.template_name == "chatml" and rendered.warning, (name, rendered)
    assert rendered.text.endswith("<|im_start|>assistant\n") and "What is two plus two?" in rendered.text
    assert "__" not in rendered.text and "class" not in rendered.text


# Growth a single operator check cannot see (string doubling through a namespace or a macro):
# stopped by the address-space limit, then the fallback renders.
GROWTH = {
    "namespace_doubling": "{% set ns = namespace(s='a') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}"
                          "{% endfor %}{{ ns.s|length }}{{ messages[-1].content }}",
    "macro_doubling": "{% macro f(s, n) %}{% if n %}{{ f(s ~ s, n - 1) }}{% endif %}{% endmacro %}"
                      "{{ f('a', 60) }}{{ messages[-1].content }}",
}


def test_growing_templates_are_stopped_by_the_memory_limit():
    script = textwrap.dedent("""
        import json, resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, resource.RLIM_INFINITY))
        from engine.chat_template import render_chat
        out = {}
        for name, source in json.loads(sys.argv[1]).items():
            r = render_chat([{"role": "user", "content": "What is two plus two?"}], source, fallback="chatml")
            out[name] = [r.template_name, r.warning, r.text]
        print(json.dumps(out))
    """)
    import json

    result = subprocess.run([sys.executable, "-c", script, json.dumps(GROWTH)], cwd=REPO, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    for name, (template, warning, text) in json.loads(result.stdout.strip().splitlines()[-1]).items():
        assert template == "chatml" and "MemoryError" in warning, (name, warning)
        assert "What is two plus two?" in text


@pytest.mark.parametrize("name", ["cve_2024_34359", "attr_format", "stored_format", "string_times", "huge_power"])
def test_hostile_chat_templates_through_the_worker(name, engine, smollm2_path, no_marker):
    done = engine.chat(smollm2_path, MESSAGES, GREEDY, chat_template=SSTI_PAYLOADS[name]).result(timeout=120)
    assert done["result"]["template"] == "chatml" and done["result"]["template_warning"]
    assert done["result"]["text"]
    assert engine.restarts == 0


def _address_space_limit(pid: int) -> int | None:
    soft, _hard = psutil.Process(pid).rlimit(psutil.RLIMIT_AS)
    text = Path(f"/proc/{pid}/limits").read_text()
    line = next(line for line in text.splitlines() if line.startswith("Max address space"))
    assert str(soft) in line.split() or (soft == psutil.RLIM_INFINITY and "unlimited" in line), line
    return None if soft == psutil.RLIM_INFINITY else soft


def test_the_worker_runs_under_a_memory_limit(smollm2_path):
    with EngineClient(EngineSettings()) as engine:
        limit = _address_space_limit(engine.ping()["pid"])
    # The default: three quarters of the machine's memory, so a hostile model fails in the
    # worker (which the client restarts) before the desktop runs out.
    assert limit == int(psutil.virtual_memory().total * 0.75)
    chosen = 3 * 1024**3
    with EngineClient(EngineSettings(memory_limit_bytes=chosen)) as engine:
        pid = engine.ping()["pid"]
        assert _address_space_limit(pid) == chosen
        # Under the limit the engine still does its work.
        assert engine.chat(smollm2_path, MESSAGES, GREEDY).result(timeout=120)["result"]["text"]
