#!/usr/bin/env bash
# Distributed testing with torchrun: tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args]
# GPUS is the total process count; see dist_train.sh for the environment.
set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT GPUS [test.py args]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
shift 3

PYTHON=${PYTHON:-python}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
PORT=${PORT:-29500}
TOOLS_DIR=$(cd "$(dirname "$0")" && pwd)

EXTRA_ARGS=()
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "$0: no CUDA device; starting $GPUS CPU processes with the gloo backend" >&2
    GPUS_PER_NODE=$GPUS
    EXTRA_ARGS=(--cfg-options env_cfg.dist_cfg.backend=gloo)
fi
if [ "$GPUS" -lt "$GPUS_PER_NODE" ]; then
    GPUS_PER_NODE=$GPUS
fi
if [ $((GPUS % GPUS_PER_NODE)) -ne 0 ]; then
    echo "$0: GPUS=$GPUS is not a multiple of GPUS_PER_NODE=$GPUS_PER_NODE" >&2
    exit 2
fi
NNODES=$((GPUS / GPUS_PER_NODE))

PYTHONPATH="$TOOLS_DIR/..${PYTHONPATH:+:$PYTHONPATH}" \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --nproc_per_node="$GPUS_PER_NODE" \
    --master_addr="$MASTER_ADDR" \
    --master_port="$PORT" \
    "$TOOLS_DIR/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${EXTRA_ARGS[@]}" "$@"
