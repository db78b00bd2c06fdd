#!/usr/bin/env bash
# Fresh-machine installer: creates .venv/ in the repo root with the pinned
# OpenMMLab stack and dbot_mm in editable mode.
#
#   tools/install.sh            # or: make install
#
# mmcv 2.1.0 has no wheels on PyPI, so its sdist is compiled once (about
# 25-60 minutes on 2 cores) into a wheel cache outside the repo, keyed by
# mmcv version + torch version + CPU/CUDA, and reused afterwards. A second
# run of this script only checks the venv and takes seconds.
#
# Environment knobs:
#   PYTHON=python3.11            interpreter used to create .venv
#   DBOT_MM_WHEEL_CACHE=DIR      wheel cache (default ~/.cache/dbot_mm/wheels)
#   FORCE_CUDA=0|1               override the CUDA-ops decision
#   MAX_JOBS=N                   compiler jobs for the mmcv build (default nproc)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
PYTHON="${PYTHON:-python3}"

TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMCV_VERSION=2.1.0
CACHE_ROOT="${DBOT_MM_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dbot_mm/wheels}"

T0=$(date +%s)
say() { printf '[install %4ds] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
die() { printf '\n[install] ERROR: %s\n' "$*" >&2; exit 1; }
trap 'die "step failed at line $LINENO (command: $BASH_COMMAND). Fix the cause and re-run tools/install.sh; finished steps are skipped."' ERR

# pip's output is kept quiet and shown only when a step fails.
pip_q() {
  local log; log=$(mktemp)
  if ! "$PY" -m pip install --disable-pip-version-check -q "$@" >"$log" 2>&1; then
    grep -v "^WARNING: Location" "$log" | tail -n 30 >&2; rm -f "$log"; return 1
  fi
  rm -f "$log"
}

# A stamp of every input that decides what the venv holds: when it matches
# and the import check passes, there is nothing to do.
STAMP="$VENV/.dbot_mm_install_stamp"
stamp_value() {
  cat "$ROOT/tools/install.sh" "$ROOT/requirements/"*.txt "$ROOT/setup.py" | sha256sum | cut -c1-16
}

check_env() {
  "$PY" - <<'EOF'
import importlib.metadata as md, sys
import torch, mmcv, mmengine, mmpretrain
import pkg_resources  # noqa: F401  (mmengine's mmdet::/mmseg:: configs need it)
from mmcv.ops import nms, RoIAlign  # compiled ops present
import mmcv._ext  # noqa: F401
import mmdet, mmseg, pycocotools  # noqa: F401
import dbot_mm  # noqa: F401
try:
    md.version('transformers')
    sys.exit('transformers is installed in .venv; it breaks mmpretrain')
except md.PackageNotFoundError:
    pass
print(f'torch {torch.__version__}, mmcv {mmcv.__version__} (ops), '
      f'mmengine {mmengine.__version__}, mmpretrain {mmpretrain.__version__}, '
      f'mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, '
      f'dbot_mm {dbot_mm.__version__}')
EOF
}

if [[ -x "$PY" && -f "$STAMP" && "$(cat "$STAMP")" == "$(stamp_value)" ]]; then
  if versions=$(check_env 2>/dev/null); then
    say "environment up to date: $versions"
    exit 0
  fi
  say "stamp matches but the import check failed; repairing"
fi

# ---------------------------------------------------------------- venv
if [[ ! -x "$PY" ]]; then
  command -v "$PYTHON" >/dev/null || die "no '$PYTHON' on PATH; set PYTHON=/path/to/python3.11"
  say "creating virtual environment $VENV with $($PYTHON --version 2>&1)"
  "$PYTHON" -m venv "$VENV" || die "'$PYTHON -m venv' failed (Debian: apt-get install python3-venv)"
fi
"$PY" -c 'import sys; assert sys.version_info >= (3, 8)' || die ".venv python is older than 3.8"
say "upgrading pip; installing setuptools<82 (mmcv's setup.py imports pkg_resources), wheel, ninja"
pip_q --upgrade pip
pip_q 'setuptools<82' wheel ninja

# ---------------------------------------------------------------- torch
have_torch=$("$PY" -c "import torch, torchvision; print(torch.__version__.split('+')[0], torchvision.__version__.split('+')[0])" 2>/dev/null || true)
if [[ "$have_torch" != "$TORCH_VERSION $TORCHVISION_VERSION" ]]; then
  say "installing torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION (a few GB; about a minute from a local mirror)"
  pip_q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" 'setuptools<82'
fi
TORCH_FULL=$("$PY" -c 'import torch; print(torch.__version__)')

# ---------------------------------------------------------------- mmcv
# CUDA ops only where they can be built and used: nvcc and a visible GPU.
if [[ -z "${FORCE_CUDA:-}" ]]; then
  FORCE_CUDA=0
  if command -v nvcc >/dev/null && command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 \
     && "$PY" -c 'import torch, sys; sys.exit(0 if torch.version.cuda else 1)'; then
    FORCE_CUDA=1
  fi
fi
if [[ "$FORCE_CUDA" == 1 ]]; then FLAVOUR="cu$("$PY" -c 'import torch; print(torch.version.cuda.replace(".", ""))')"; else FLAVOUR=cpu; fi
PYTAG=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
KEY="mmcv-${MMCV_VERSION}_torch-${TORCH_FULL//+/-}_${FLAVOUR}_${PYTAG}_$(uname -m)"
WHEEL_DIR="$CACHE_ROOT/$KEY"
mkdir -p "$WHEEL_DIR"

mmcv_ok() { "$PY" -c "import mmcv, mmcv._ext; from mmcv.ops import nms; assert mmcv.__version__ == '$MMCV_VERSION'" 2>/dev/null; }

if ! mmcv_ok; then
  if "$PY" -m pip show mmcv-lite >/dev/null 2>&1; then
    say "removing mmcv-lite (no compiled ops)"
    "$PY" -m pip uninstall -y -q mmcv-lite
  fi
  exec 9>"$WHEEL_DIR/.lock"
  flock 9  # two installs on one machine must not build twice
  wheel=$(ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -1 || true)
  if [[ -z "$wheel" ]]; then
    JOBS="${MAX_JOBS:-$(nproc)}"
    say "no cached mmcv wheel for $KEY"
    say "building mmcv $MMCV_VERSION with compiled ${FLAVOUR} ops from the PyPI sdist: 77 C++ files,"
    say "about 25-60 minutes on 2 cores (MAX_JOBS=$JOBS). Done once; cached in $WHEEL_DIR"
    BUILD=$(mktemp -d)
    LOG="$WHEEL_DIR/build.log"
    "$PY" -m pip download -q --no-deps --no-binary :all: --no-build-isolation \
      "mmcv==$MMCV_VERSION" -d "$BUILD" 2> >(grep -v "^WARNING: Location" >&2) \
      || die "could not download the mmcv $MMCV_VERSION sdist from PyPI"
    tar -xzf "$BUILD/mmcv-$MMCV_VERSION.tar.gz" -C "$BUILD"
    SRC="$BUILD/mmcv-$MMCV_VERSION"
    # torch >= 2.14 headers need C++20; mmcv 2.1.0 hard-codes -std=c++17.
    sed -i 's/c++17/c++20/g' "$SRC/setup.py"
    # --no-build-isolation: in an isolated build env torch is absent and
    # mmcv silently builds without ops.
    if ! (cd "$SRC" && MMCV_WITH_OPS=1 FORCE_CUDA="$FORCE_CUDA" MAX_JOBS="$JOBS" \
          "$PY" -m pip wheel -v --no-deps --no-build-isolation . -w "$BUILD/dist" >"$LOG" 2>&1); then
      tail -n 40 "$LOG" >&2
      die "mmcv build failed; full log: $LOG"
    fi
    built=$(ls "$BUILD"/dist/mmcv-"$MMCV_VERSION"-*.whl)
    cp "$built" "$WHEEL_DIR/"  # copy then rename: never a half-written cached wheel
    wheel="$WHEEL_DIR/$(basename "$built")"
    rm -rf "$BUILD"
    say "mmcv wheel built and cached: $wheel"
  else
    say "using cached mmcv wheel $wheel"
  fi
  pip_q "$wheel" -c "$ROOT/requirements/constraints.txt"
  flock -u 9
fi
mmcv_ok || die "mmcv $MMCV_VERSION is installed but its compiled ops do not import"

# ---------------------------------------------------------------- OpenMMLab + dbot_mm
say "installing the pinned OpenMMLab stack (requirements/pinned.txt)"
pip_q -r "$ROOT/requirements/pinned.txt" -c "$ROOT/requirements/constraints.txt"
pip_q -r "$ROOT/requirements/tests.txt" -c "$ROOT/requirements/constraints.txt"
say "installing dbot_mm in editable mode"
pip_q --no-deps --no-build-isolation -e "$ROOT"
if "$PY" -m pip show transformers >/dev/null 2>&1; then
  say "removing transformers (it breaks 'import mmpretrain.models')"
  "$PY" -m pip uninstall -y -q transformers
fi

versions=$(check_env) || die "the import check failed after installing (see the traceback above)"
stamp_value > "$STAMP"
say "done: $versions"
