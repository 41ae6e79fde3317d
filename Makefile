# Two entry points (see README): `make artifacts` and `make test`. Both set up .venv first.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: artifacts test gpu-stage clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	# torch 2.13 CPU is the build box's torch; the runtime only needs >= 2.11.
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e '.[build,test]'
	touch $(STAMP)

artifacts: $(STAMP)
	$(VENV)/bin/nvfp4-build compile -j $$(nproc) -o artifacts
	$(VENV)/bin/nvfp4-build verify artifacts

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q tests

clean:
	rm -rf artifacts/entries artifacts/tmp artifacts/index.json artifacts/.lock .setuptools-build
