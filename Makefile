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

.PHONY: help install book test lint pytest nbval html lab bench clean

help:
	@echo "make book   create $(VENV), install, compile, execute every notebook, render _build/html"
	@echo "make test   everything CI checks: ruff, pytest, nbval, a warning-free book build"
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

nbval: $(STAMP)
ifeq ($(strip $(NOTEBOOKS)),)
	@echo "==> nbval: no notebooks in book/ yet, nothing to execute"
else
	@echo "==> nbval (strict): executing every notebook in book/ and comparing with the committed outputs"
	$(BIN)/python -m pytest --nbval -p no:randomly book/
endif

html: book

test: lint pytest nbval html
	@echo "==> make test: all checks passed"

lab: $(STAMP)
	@echo "==> installing JupyterLab and starting it on the repository"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[book,test,lab]'
	$(BIN)/jupyter lab --notebook-dir=.

clean:
	@echo "==> removing $(VENV), _build and caches"
	rm -rf $(VENV) _build build lib/*.egg-info .pytest_cache .hypothesis .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -f lib/softmax_grad/*.so
