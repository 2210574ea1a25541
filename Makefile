# Two commands do everything: `make book` and `make test` (see README.md).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Anything that changes what gets installed or compiled triggers a reinstall.
INSTALL_INPUTS := pyproject.toml constraints.txt $(wildcard setup.py csrc/*.c csrc/*.h lib/softmax_grad/_native_build.py)
NOTEBOOKS := $(wildcard book/*.ipynb)
JB_FLAGS := -W -n --keep-going

.PHONY: help install book test lint pytest sanitize nbval html browser lab bench clean

help:
	@echo "make book   create $(VENV), install, compile, execute every notebook, render _build/html"
	@echo "make test   everything CI checks: ruff, pytest, nbval, a warning-free book build,"
	@echo "           then headless Chromium reads every page (screenshots in _build/screenshots/)"
	@echo "make lab    JupyterLab on the repository with softmax_grad importable"
	@echo "make bench  benchmarks, JSON into bench/results/"
	@echo "make clean  remove $(VENV), _build and caches"

$(BIN)/python:
	@echo "==> creating virtual environment $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python $(INSTALL_INPUTS)
	@echo "==> installing softmax_grad[book,test] (editable, compiles the C extension)"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[book,test]'
	@touch $@

install: $(STAMP)

book: $(STAMP)
	@echo "==> executing every notebook and building the HTML book into _build/html"
	$(BIN)/jupyter-book build . $(JB_FLAGS)
	@echo "==> open _build/html/index.html"

lint: $(STAMP)
	@echo "==> ruff check"
	$(BIN)/ruff check .
	@echo "==> ruff format --check"
	$(BIN)/ruff format --check .

pytest: $(STAMP)
	@echo "==> pytest tests/"
	$(BIN)/python -m pytest tests

# The native tests again, against the same C sources built with AddressSanitizer and
# UndefinedBehaviorSanitizer (tests/native_sanitized.py); the interpreter is not instrumented, so
# the ASan runtime is preloaded. --capture=sys leaves fd 2 alone, so a sanitizer report is shown.
SANITIZE_DIR := build/sanitize
$(SANITIZE_DIR)/.built: $(STAMP) tests/native_sanitized.py
	@echo "==> compiling csrc/ with -fsanitize=address,undefined into $(SANITIZE_DIR)"
	$(BIN)/python tests/native_sanitized.py $(SANITIZE_DIR)
	@touch $@

sanitize: $(SANITIZE_DIR)/.built
	@echo "==> native tests under AddressSanitizer + UndefinedBehaviorSanitizer"
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0 \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 SG_SANITIZED_DIR=$(SANITIZE_DIR) \
	  $(BIN)/python -m pytest -q --capture=sys -p tests.native_sanitized tests/test_native.py

nbval: $(STAMP)
ifeq ($(strip $(NOTEBOOKS)),)
	@echo "==> nbval: no notebooks in book/ yet, nothing to execute"
else
	@echo "==> nbval (strict): executing every notebook in book/ and comparing with the committed outputs"
	$(BIN)/python -m pytest --nbval -p no:randomly book/
endif

html: book

# Headless Chromium (Debian package, driven by Playwright) opens every page of the built book:
# math typeset, images load, links and anchors resolve, no console errors, no request leaves
# localhost, search finds results; one screenshot per page goes to _build/screenshots/.
CHROMIUM ?= /usr/bin/chromium
browser: $(STAMP)
	@test -x $(CHROMIUM) || { echo "error: the browser test needs Chromium at $(CHROMIUM)." \
	  "Install it with: sudo apt-get install chromium (Debian), or pass CHROMIUM=/path/to/chromium" >&2; \
	  exit 1; }
	@echo "==> headless Chromium reads every page of _build/html"
	CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest browser_tests

test: lint pytest sanitize nbval html browser
	@echo "==> make test: all checks passed"

# --allow-root only when make runs as root (containers), where Jupyter refuses to start without it.
lab: $(STAMP)
	@echo "==> installing JupyterLab and starting it on the repository"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[book,test,lab]'
	$(BIN)/jupyter lab --notebook-dir=. $(if $(filter 0,$(shell id -u)),--allow-root)

# PyTorch (the bench extra, CPU build) is only needed here; BENCH_ARGS=--quick for a smoke run.
BENCH_STAMP := $(VENV)/.installed-bench
BENCH_ARGS ?=

$(BENCH_STAMP): $(STAMP)
	@echo "==> installing softmax_grad[bench] (torch, CPU build)"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[book,test,bench]'
	@touch $@

bench: $(BENCH_STAMP)
	@echo "==> benchmarks (a few minutes; keep the machine otherwise idle), JSON into bench/results/"
	$(BIN)/python -m bench.run --control $(BENCH_ARGS)

clean:
	@echo "==> removing $(VENV), _build and caches"
	rm -rf $(VENV) _build build lib/*.egg-info .pytest_cache .hypothesis .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -f lib/softmax_grad/*.so
