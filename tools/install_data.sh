#!/usr/bin/env bash
# Installs the real, offline datasets the demo and tests use (Debian
# package dataset-fashion-mnist: 70k Fashion-MNIST images, idx format under
# /usr/share/datasets/fashion-mnist). Idempotent.
set -euo pipefail
SRC=/usr/share/datasets/fashion-mnist
if [[ -f "$SRC/train-images-idx3-ubyte.gz" ]]; then
  echo "[data] Fashion-MNIST present in $SRC"
  exit 0
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "[data] ERROR: need root to run: apt-get install dataset-fashion-mnist" >&2; exit 1; }
  SUDO=sudo
fi
echo "[data] installing Debian package dataset-fashion-mnist (about 30 MB)"
$SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || {
  $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null
} || { echo "[data] ERROR: 'apt-get install dataset-fashion-mnist' failed" >&2; exit 1; }
test -f "$SRC/train-images-idx3-ubyte.gz" || { echo "[data] ERROR: $SRC/train-images-idx3-ubyte.gz missing after install" >&2; exit 1; }
echo "[data] Fashion-MNIST installed in $SRC"
