# Every target sets up what it needs (idempotent; a second run is quick).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
LOCK   := requirements.lock
STAMP  := $(VENV)/.installed-stamp
export LAZARUS_NB_HOME ?= $(HOME)/.cache/lazarus_nb

.PHONY: setup lab demo test test-fast bench lint lock clean

setup: $(STAMP)
	@scripts/install_system_deps.sh
	@$(BIN)/lazarus-nb fetch >/dev/null

# Exactly the versions in the lock (scripts/setup_python.sh says what it does; details in .venv/setup.log).
$(STAMP): pyproject.toml $(LOCK) scripts/setup_python.sh
	@scripts/setup_python.sh $(PYTHON) $(VENV) $(LOCK)
	@touch $@

# Regenerate the lock on purpose: after changing dependencies in pyproject.toml, or to move to newer
# releases. Then run `make test` and commit pyproject.toml and the lock together.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra test --python $(BIN)/python --generate-hashes --upgrade \
		--quiet -o $(LOCK)
	@echo "lock: $(LOCK) regenerated; run 'make test' before committing it"

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

# The edit-test loop: unit tests only (no notebooks, no browser, no subprocess training), under a minute.
test-fast: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow and not browser" -q

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) runs
