# hpclab: `make lab` starts the workbench, `make test` runs every test and notebook.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8888
# Jupyter refuses to run as root unless told; containers and teaching VMs often are root.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: help install lab test test-lib test-notebooks bench clean

help:
	@echo "make lab    - set up .venv and start JupyterLab on notebooks/ (127.0.0.1, with a token)"
	@echo "make test   - set up .venv, run pytest on tests/ and nbval on every notebook"
	@echo "make bench  - run the benchmarks in benchmarks/ and print figures and target ratios"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab --ip=127.0.0.1 --port=$(PORT) --notebook-dir=notebooks --ServerApp.open_browser=False \
		--LabApp.default_url=/lab/tree/00_tour.ipynb $(ALLOW_ROOT)

test: $(STAMP)
	$(BIN)/python -m pytest tests
	$(BIN)/python -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider notebooks

test-lib: $(STAMP)
	$(BIN)/python -m pytest tests

test-notebooks: $(STAMP)
	$(BIN)/python -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider notebooks

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache build dist *.egg-info
