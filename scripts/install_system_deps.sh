#!/usr/bin/env bash
# System packages `make setup` needs, on Debian/Ubuntu only (elsewhere: skipped with a note):
#  - libopenblas0-pthread: mlx-cpu ships a reference BLAS (~5 GFLOP/s); lazarus_nb/blas.py preloads this
#    one instead (~150-180 GFLOP/s on 2 cores).
#  - chromium, chromium-driver: the JupyterLab browser test (skipped when they are missing).
# Idempotent: installs only what is missing; never fails the build (the tests say what is absent).
set -u
if [ ! -f /etc/debian_version ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: not Debian/Ubuntu: no system packages installed (set LAZARUS_NB_BLAS=/path/to/libopenblas.so for a fast BLAS)"
  exit 0
fi
need=()
ls /usr/lib/*-linux-gnu/openblas-pthread/libopenblas.so.0 >/dev/null 2>&1 || need+=(libopenblas0-pthread)
if [ "${LAZARUS_NB_SKIP_BROWSER:-0}" != 1 ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
fi
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
export DEBIAN_FRONTEND=noninteractive
echo "setup: installing system packages with apt-get: ${need[*]} (fast BLAS for mlx; Chromium for the browser test)"
$SUDO apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 \
  || { $SUDO apt-get update -qq >/dev/null 2>&1 && $SUDO apt-get install -y -qq "${need[@]}" >/dev/null 2>&1; } \
  || echo "setup: could not install ${need[*]}; training falls back to the slow reference BLAS and the browser test is skipped"
exit 0
