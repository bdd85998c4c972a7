# Decodex: `make app` sets up .venv with what the dashboard needs and starts it; `make demo`
# runs an estimate; `make test` adds the test tools and runs the suite; `make wheel` builds the
# wheel into dist/; `make smoke` installs that wheel into a fresh venv and runs the smoke script.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
APP_STAMP := $(VENV)/.installed-app
DEV_STAMP := $(VENV)/.installed-dev
PIP := $(PY) -m pip install --disable-pip-version-check --progress-bar on

.PHONY: install install-dev app demo test lint bench wheel smoke clean

PORT ?= 8501

$(PY):
	$(PYTHON) -m venv $(VENV)

# the package and its run-time dependencies only (no test tools, no CUDA, no Dask)
$(APP_STAMP): pyproject.toml | $(PY)
	@echo "Installing Decodex into $(VENV) (first time: a few minutes) ..."
	$(PIP) -e .
	touch $(APP_STAMP)

# plus the test, GPU-validation and cluster extras
$(DEV_STAMP): $(APP_STAMP)
	@echo "Installing the test tools into $(VENV) ..."
	$(PIP) -e '.[dev]'
	touch $(DEV_STAMP)

install: $(APP_STAMP)

install-dev: $(DEV_STAMP)

app: $(APP_STAMP)
	$(VENV)/bin/decodex app --port $(PORT)

demo: $(APP_STAMP)
	$(VENV)/bin/decodex estimate --model llama3-70b --system h100-sxm --tp 8 --batch 64 --context 2048

lint: $(DEV_STAMP)
	$(PY) -m ruff check .

# the suite runs on up to TEST_WORKERS processes (pytest-xdist; 2 on CI's 2 cores)
TEST_WORKERS ?= 4
test: $(DEV_STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n auto --maxprocesses $(TEST_WORKERS)

bench: $(APP_STAMP)
	$(PY) benchmarks/estimate.py
	$(PY) benchmarks/simulate.py
	$(PY) benchmarks/serve.py
	$(PY) benchmarks/serve_trace.py
	$(PY) benchmarks/cli_start.py
	$(PY) benchmarks/large_systems.py
	$(PY) benchmarks/peers.py

wheel: $(DEV_STAMP)
	rm -rf dist
	$(PY) -m pip wheel --no-deps --disable-pip-version-check --quiet -w dist .

smoke: wheel
	.ci/package-smoke dist

clean:
	rm -rf $(VENV) build dist *.egg-info
