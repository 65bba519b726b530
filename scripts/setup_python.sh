#!/usr/bin/env bash
# Create .venv and install exactly the versions in requirements.lock (the ones the test suite last ran
# with), then this package in editable mode. Pip's and uv's own output goes to .venv/setup.log; the
# terminal gets a few lines saying what happens, and the log's tail only when something fails.
#
# The lock is for CPython 3.11 on Linux x86_64 (these machines and CI). Elsewhere (macOS, another Python)
# the package is installed from pyproject.toml's ranges instead, and this script says so.
# Usage: scripts/setup_python.sh PYTHON VENV LOCK
set -euo pipefail
python=${1:-python3}; venv=${2:-.venv}; lock=${3:-requirements.lock}
log="$venv/setup.log"
bin="$venv/bin"

fail() {
  echo "setup: $1; the end of $log:" >&2
  tail -n 25 "$log" >&2
  exit 1
}

if [ ! -x "$bin/python" ]; then
  echo "setup: creating the Python environment $venv ($("$python" --version 2>&1))"
  "$python" -m venv "$venv" || { echo "setup: '$python -m venv' failed; install Python >= 3.10 with venv" >&2; exit 1; }
fi
: > "$log"
# Keep pip quiet: no version nag, no warnings about index locations this machine's pip.conf names.
export PIP_DISABLE_PIP_VERSION_CHECK=1
target=$("$bin/python" -c 'import platform, sys; print(f"{sys.implementation.name}-{sys.version_info[0]}.{sys.version_info[1]}-{platform.system()}-{platform.machine()}")')
if [ "$target" = "cpython-3.11-Linux-x86_64" ]; then
  uv_pin=$(grep -E '^uv==' "$lock" | cut -d' ' -f1)
  echo "setup: installing the pinned Python packages from $lock (log: $log)"
  "$bin/python" -m pip install --quiet "$uv_pin" >>"$log" 2>&1 || fail "could not install $uv_pin from PyPI"
  # uv pip sync: exactly the lock (removes what the lock does not list, e.g. after a lock update)
  "$bin/uv" pip sync --python "$bin/python" --require-hashes "$lock" >>"$log" 2>&1 \
    || fail "could not install the packages in $lock"
  "$bin/uv" pip install --python "$bin/python" --no-deps -e . >>"$log" 2>&1 || fail "could not install lazarus_nb"
else
  echo "setup: $lock is for CPython 3.11 on Linux x86_64, this is $target: installing from pyproject.toml's"
  echo "       version ranges instead (log: $log); versions may differ from the tested ones"
  "$bin/python" -m pip install --quiet -e ".[test]" >>"$log" 2>&1 || fail "could not install lazarus_nb"
fi
