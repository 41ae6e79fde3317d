# Two entry points (see README): `make artifacts` and `make test`. Both set up .venv first.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# vLLM lives in its own venv: the plugin's CPU tests need it, the build and runtime do not.
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

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

$(VLLM_STAMP): pyproject.toml
	$(PY) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install -q torch==2.13.0 'vllm==0.32.0'
	# vLLM pulls torchvision/torchaudio/torchcodec builds that break `import vllm` on CPU torch
	# (transformers imports them when present); the plugin needs none of them.
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/pip install -q -e '.[test]'
	touch $(VLLM_STAMP)

test: $(STAMP) $(VLLM_STAMP)
	$(VENV)/bin/python -m pytest -q tests
	$(VLLM_VENV)/bin/python -m pytest -q tests/vllm

clean:
	rm -rf artifacts/entries artifacts/tmp artifacts/index.json artifacts/.lock .setuptools-build
