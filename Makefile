# A thin index of the project's commands; each target's recipe is the real command.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
MODEL  ?= 2012

.PHONY: help setup test summary bench-cpu

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test]'
	touch $@

setup: $(VENV)/.installed  ## create .venv and install convnet (editable) with its test tools

test: setup  ## run the test suite (CPU; GPU tests skip with their reason)
	$(PY) -m pytest -q

summary: setup  ## print the layer table of MODEL (default 2012)
	$(PY) -m convnet.summary --model $(MODEL)

bench-cpu: setup  ## time one CPU training step, ours vs PyTorch (installs the CPU PyTorch)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) tools/bench_cpu_step.py --model $(MODEL)
