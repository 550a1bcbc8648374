# Two commands: `make demo` and `make test` (each creates .venv when missing).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-cache-dir --upgrade pip
	$(BIN)/python -m pip install --quiet --no-cache-dir -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m dmenet_geo.cli.main demo

test: $(STAMP)
	$(BIN)/python -m pytest -q
