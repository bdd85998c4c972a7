# Decodex: `make app` sets up .venv and starts the dashboard; `make demo` runs an estimate;
# `make test` sets up and runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install app demo test lint bench clean

PORT ?= 8501

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

app: $(STAMP)
	$(VENV)/bin/decodex app --port $(PORT)

demo: $(STAMP)
	$(VENV)/bin/decodex estimate --model llama3-70b --system h100-sxm --tp 8 --batch 64 --context 2048

lint: $(STAMP)
	$(PY) -m ruff check .

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/estimate.py
	$(PY) benchmarks/simulate.py
	$(PY) benchmarks/serve.py

clean:
	rm -rf $(VENV) build *.egg-info
