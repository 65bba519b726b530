# Every target sets up what it needs (idempotent; a second run is quick).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export LAZARUS_NB_HOME ?= $(HOME)/.cache/lazarus_nb

.PHONY: setup lab demo test bench lint clean

setup: $(STAMP)
	@scripts/install_system_deps.sh
	@$(BIN)/lazarus-nb fetch

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	@touch $@

# JupyterLab refuses to run as root unless told; containers often are root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
LAB_ARGS ?=

lab: setup
	$(BIN)/jupyter lab --notebook-dir=notebooks $(ROOT_FLAG) $(LAB_ARGS)

demo: setup
	$(BIN)/lazarus-nb demo -o runs/demo --force

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python bench/train_step.py

clean:
	rm -rf $(VENV) runs
