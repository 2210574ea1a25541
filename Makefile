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

.PHONY: help install html pdf book test lint pytest aarch64-tools sanitize nbval test-html test-pdf browser \
  pdf-test package-test book-checks lab bench clean

help:
	@echo "make book   create $(VENV), install, compile, execute the notebooks (jupyter-cache:"
	@echo "           only those that changed), render _build/html and the PDF (make pdf)"
	@echo "make test   everything CI checks: ruff, pytest, sanitizers, nbval, a warning-free book"
	@echo "           build and its PDF, headless Chromium reading every page (screenshots in"
	@echo "           _build/screenshots/), the PDF read back, the sdist and wheel installed"
	@echo "make pdf    the whole book as one PDF: _build/pdf/$(PDF_NAME)"
	@echo "make lab    JupyterLab on the repository with softmax_grad importable"
	@echo "make bench  benchmarks, JSON into bench/results/"
	@echo "make clean  remove $(VENV), _build and caches"

$(BIN)/python:
	@echo "==> creating virtual environment $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# PyTorch (the tests' and the losses chapter's oracle) is installed first, on its own, as the CPU build:
# on Linux PyPI's default torch wheel is the CUDA build (several GB), so pip also asks PyTorch's CPU
# index for torch and its dependencies only (constraints.txt pins them). TORCH_INDEX= (empty) skips
# that index: pip's configured indexes or a local wheel cache then decide. So does a machine whose
# name lookup cannot find the index's host (an offline mirror): pip would otherwise retry it, with
# back-off, for every package.
TORCH_INDEX ?= $(if $(filter Linux,$(shell uname -s)),https://download.pytorch.org/whl/cpu)
HOST_RESOLVES := import socket, sys, urllib.parse; \
  socket.getaddrinfo(urllib.parse.urlsplit(sys.argv[1]).hostname, 443)

# The C extension compiles (softmax_grad installed editable, without its dependencies) while pip
# installs torch and then the dependencies of softmax_grad[book,test], listed from pyproject.toml:
# the two together are what pip install -e '.[book,test]' does, the compile no longer last.
REQUIREMENTS_OF := import sys, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
  print("\n".join(p["dependencies"] + [r for x in sys.argv[1:] for r in p["optional-dependencies"][x]]))

$(STAMP): $(BIN)/python $(INSTALL_INPUTS)
	@echo "==> compiling the C extension: softmax_grad installed editable, its output in $(VENV)/editable.log"
	@$(BIN)/python -m pip install --quiet --no-deps -e . > $(VENV)/editable.log 2>&1 & editable=$$!; \
	index="$(TORCH_INDEX)"; \
	if [ -n "$$index" ] && ! $(BIN)/python -c "$(HOST_RESOLVES)" "$$index" 2>/dev/null; then \
	  echo "==> $$index cannot be resolved here: torch comes from pip's configured indexes"; \
	  index=; \
	fi; \
	echo "==> installing torch (CPU build$${index:+, from $$index or a local cache})"; \
	( set -x; $(BIN)/python -m pip install --quiet -c constraints.txt \
	  $${index:+--extra-index-url $$index} torch ) || { kill $$editable; exit 1; }; \
	echo "==> installing the dependencies of softmax_grad[book,test]"; \
	$(BIN)/python -c '$(REQUIREMENTS_OF)' book test > $(VENV)/requirements.txt; \
	( set -x; $(BIN)/python -m pip install --quiet -c constraints.txt -r $(VENV)/requirements.txt ) \
	  || { kill $$editable; exit 1; }; \
	echo "==> waiting for the C extension"; \
	wait $$editable || { cat $(VENV)/editable.log; echo "error: pip install -e . failed"; exit 1; }
	@touch $@

install: $(STAMP)

# --- the book -------------------------------------------------------------------------------
# make book executes the notebooks through jupyter-cache (_config.yml: execute_notebooks: cache):
# a notebook whose code cells are unchanged is not executed again, so a second build only renders.
# jupyter-cache knows only the notebook's code, not what it imports or reads, so whenever one of
# EXEC_INPUTS changes (the library, the kernels, the benchmark JSON chapters read, the installed
# versions) the cache and Sphinx's environment are dropped and every notebook runs again.
EXEC_INPUTS := $(STAMP) $(shell find lib/softmax_grad -name '*.py' 2>/dev/null) \
  $(wildcard csrc/*.c csrc/*.h) $(shell find bench/results -type f 2>/dev/null)
EXEC_STAMP := _build/.exec-inputs
# Everything the rendered book (HTML and PDF) is made from.
BOOK_SOURCES := _config.yml _toc.yml $(NOTEBOOKS) $(wildcard book/*.md book/*.bib _ext/*.py) \
  $(EXEC_STAMP)
PDF_NAME := softmax-grad-book.pdf

$(EXEC_STAMP): $(EXEC_INPUTS)
	@echo "==> library, kernels, benchmark data or environment changed: notebooks will re-execute"
	rm -rf _build/.jupyter_cache _build/.doctrees
	@mkdir -p $(@D) && touch $@

# Always runs; Sphinx re-reads only changed pages and jupyter-cache executes only changed notebooks.
html: $(STAMP) $(EXEC_STAMP)
	@echo "==> building the HTML book into _build/html (notebooks executed through jupyter-cache)"
	$(BIN)/jupyter-book build . $(JB_FLAGS)

# The whole book as one PDF: the single-page HTML build (same doctrees, so nothing is read or
# executed again) printed by headless Chromium (tools/book_pdf.py), then copied into the site,
# whose pages link to it from their download menu. $(call book_pdf,BUILD_DIR,JUPYTER_BOOK_ARGS)
define book_pdf
	@echo "==> the whole book as one page ($(1)/singlehtml), printed to $(1)/pdf/$(PDF_NAME)"
	$(BIN)/jupyter-book build . --builder singlehtml $(2) $(JB_FLAGS)
	@chromium="$$(tools/ensure-tool chromium)"; set -x; \
	  $(BIN)/python tools/book_pdf.py $(1)/singlehtml $(1)/pdf/$(PDF_NAME) --chromium "$$chromium"
endef

_build/pdf/$(PDF_NAME): $(STAMP) $(BOOK_SOURCES) tools/book_pdf.py
	$(call book_pdf,_build)

pdf: html _build/pdf/$(PDF_NAME)
	cp _build/pdf/$(PDF_NAME) _build/html/$(PDF_NAME)
	@echo "==> $(CURDIR)/_build/pdf/$(PDF_NAME) (also in the site: _build/html/$(PDF_NAME))"

book: html pdf
	@echo "==> open _build/html/index.html"

lint: $(STAMP)
	@echo "==> ruff check"
	$(BIN)/ruff check .
	@echo "==> ruff format --check"
	$(BIN)/ruff format --check .

# Two pytest workers (pytest-xdist), each taking whole test files (--dist loadfile), so a module's
# fixtures are set up once. PYTEST_WORKERS=0 runs everything in one process.
PYTEST_WORKERS ?= 2
XDIST = $(if $(filter-out 0,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadfile)

pytest: $(STAMP) aarch64-tools
	@echo "==> pytest tests/"
	$(BIN)/python -m pytest $(XDIST) tests

# tests/test_native_aarch64.py cross-compiles the kernels for AArch64 and runs them under qemu
# user-mode emulation; tools/ensure-tool finds the tools or installs them (as root, or with sudo,
# on Debian/Ubuntu). Without them that test skips, and this says so plainly; it never fails.
aarch64-tools:
	@if tools/ensure-tool aarch64 >/dev/null; then \
		echo "==> AArch64 cross compiler and qemu-aarch64 found: the NEON step runs in pytest"; \
	else \
		echo "==> SKIPPED: the AArch64 (NEON) step under qemu (no cross compiler or qemu-aarch64)"; \
	fi

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
	  $(BIN)/python -m pytest $(XDIST) -q --capture=sys -p tests.native_sanitized tests/test_native.py \
	    tests/test_native_online.py

nbval: $(STAMP)
ifeq ($(strip $(NOTEBOOKS)),)
	@echo "==> nbval: no notebooks in book/ yet, nothing to execute"
else
	@echo "==> nbval (strict): executing every notebook in book/ and comparing with the committed outputs"
	$(BIN)/python -m pytest $(XDIST) --nbval -p no:randomly book/
endif

# --- what make test builds and checks ---------------------------------------------------------
# nbval executes every notebook and checks its outputs against the committed ones, so the test
# build renders those committed outputs (execute_notebooks: off) instead of executing every
# notebook a second time (make test runs the two side by side, and passes only if both pass); it is
# otherwise the reader's build (-W -n: any warning fails it). It goes to its own tree,
# $(TEST_BUILD), so the reader's _build/html and its jupyter-cache stay as they are.
TEST_BUILD := _build/test
TEST_CONFIG := $(TEST_BUILD)/_config.yml
TEST_HTML := $(TEST_BUILD)/_build/html

test-html: $(STAMP)
	@echo "==> building the book from the committed outputs (no execution) into $(TEST_HTML)"
	@mkdir -p $(TEST_BUILD)
	$(BIN)/python tools/committed_config.py _config.yml $(TEST_CONFIG)
	$(BIN)/jupyter-book build . --config $(TEST_CONFIG) --path-output $(TEST_BUILD) $(JB_FLAGS)

test-pdf: test-html
	$(call book_pdf,$(TEST_BUILD)/_build,--config $(TEST_CONFIG) --path-output $(TEST_BUILD))
	cp $(TEST_BUILD)/_build/pdf/$(PDF_NAME) $(TEST_HTML)/$(PDF_NAME)

# The PDF read back by poppler (pdftotext, pdfimages; tools/ensure-tool finds or installs them):
# page count, chapter titles, contents, no raw TeX, every notebook figure, internal links.
pdf-test: test-pdf
	@poppler="$$(tools/ensure-tool poppler)"; set -x; \
	  PATH="$$poppler:$$PATH" BOOK_PDF=$(TEST_BUILD)/_build/pdf/$(PDF_NAME) \
	    $(BIN)/python -m pytest -p no:randomly release_tests/test_book_pdf.py

# python -m build makes the sdist; pip builds the wheel from it (compiled from scratch) and installs
# it in a fresh venv, and the wheel alone goes into a second one; softmax_grad.native is checked in
# each, outside the repository (release_tests/test_package.py).
package-test: $(STAMP)
	@echo "==> building the sdist and the wheel, installing each into a fresh venv"
	$(BIN)/python -m pytest -p no:randomly release_tests/test_package.py

# Headless Chromium, driven by Playwright, opens every page of the built book: math typeset,
# images load, links, anchors and download links resolve, no console errors, no request leaves
# localhost, search finds results; one screenshot per page goes to _build/screenshots/.
# tools/ensure-tool finds a browser or installs one (CHROMIUM=/path chooses it).
browser: $(STAMP) test-pdf
	@chromium="$$(tools/ensure-tool chromium)"; \
	  echo "==> headless Chromium ($$chromium) reads every page of $(TEST_HTML)"; set -x; \
	  CHROMIUM="$$chromium" BOOK_HTML_DIR=$(TEST_HTML) BOOK_SCREENSHOT_DIR=_build/screenshots \
	    $(BIN)/python -m pytest browser_tests

# make test runs these checks TEST_JOBS at a time (GNU make -j), the longest first; each check's
# output is printed whole when it ends (--output-sync, GNU make 4 and newer), and every check runs
# even after one fails (-k). The book's checks are one job, in their own make: with the HTML,
# PDF and browser steps as jobs of this one, make would give the slot the HTML build frees to the
# next check in the list (it waits for a slot on that one), and the longest chain would wait.
TEST_CHECKS := package-test book-checks nbval sanitize pytest lint
TEST_JOBS ?= 2
OUTPUT_SYNC := $(if $(filter 3.%,$(MAKE_VERSION)),,--output-sync=target)

book-checks: $(STAMP)
	$(MAKE) --no-print-directory pdf-test browser

test: $(STAMP)
	@echo "==> make test: $(TEST_CHECKS), $(TEST_JOBS) at a time"
	$(MAKE) --no-print-directory -k -j$(TEST_JOBS) $(OUTPUT_SYNC) $(TEST_CHECKS)
	@echo "==> make test: all checks passed"

# --allow-root only when make runs as root (containers), where Jupyter refuses to start without it.
lab: $(STAMP)
	@echo "==> installing JupyterLab and starting it on the repository"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[book,test,lab]'
	$(BIN)/jupyter lab --notebook-dir=. $(if $(filter 0,$(shell id -u)),--allow-root)

# PyTorch (CPU build) comes with make install; BENCH_ARGS=--quick for a smoke run.
BENCH_STAMP := $(VENV)/.installed-bench
BENCH_ARGS ?=

$(BENCH_STAMP): $(STAMP)
	@echo "==> installing softmax_grad[bench]"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[book,test,bench]'
	@touch $@

bench: $(BENCH_STAMP)
	@echo "==> benchmarks (a few minutes; keep the machine otherwise idle), JSON into bench/results/"
	$(BIN)/python -m bench.run --control $(BENCH_ARGS)
	@echo "==> the at-scale kernels (online forward, log-sum-exp, fused cross-entropy) against their floor and PyTorch"
	$(BIN)/python -m bench.at_scale

clean:
	@echo "==> removing $(VENV), _build and caches"
	rm -rf $(VENV) _build build lib/*.egg-info .pytest_cache .hypothesis .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -f lib/softmax_grad/*.so
