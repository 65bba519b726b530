#!/usr/bin/env bash
# Install Debian's pthread OpenBLAS if no optimized BLAS is present (mlx-cpu ships a reference BLAS:
# ~5 GFLOP/s vs ~180 GFLOP/s; lazarus_nb/blas.py preloads it). Elsewhere: do nothing.
set -u
if ls /usr/lib/*-linux-gnu/openblas-pthread/libopenblas.so.0 >/dev/null 2>&1; then exit 0; fi
if [ ! -f /etc/debian_version ] || ! command -v apt-get >/dev/null; then
  echo "install_blas: not Debian/Ubuntu; skipping (set LAZARUS_NB_BLAS=/path/to/libopenblas.so to use one)"
  exit 0
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -qq libopenblas0-pthread >/dev/null 2>&1 \
  || { $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq libopenblas0-pthread >/dev/null; } \
  || echo "install_blas: could not install libopenblas0-pthread; training will be slow (reference BLAS)"
exit 0
