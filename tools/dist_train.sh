#!/usr/bin/env bash
# Distributed training with torchrun.
#
#   tools/dist_train.sh CONFIG GPUS [tools/train.py args]
#
# GPUS is the TOTAL number of processes over all nodes: 32 means 4 nodes of 8.
# Run the same command on every node with NODE_RANK=0..NNODES-1 and the same
# MASTER_ADDR / PORT, e.g. for the paper's 4 x 8 V100/A100 setting:
#
#   NODE_RANK=0 MASTER_ADDR=10.0.0.1 tools/dist_train.sh configs/pretrain/dbot_vitb.py 32
#   NODE_RANK=1 MASTER_ADDR=10.0.0.1 tools/dist_train.sh configs/pretrain/dbot_vitb.py 32   # ... 3
#
# Environment: GPUS_PER_NODE (8), NODE_RANK (0), MASTER_ADDR (127.0.0.1),
# PORT (29500), PYTHON (python). Without a CUDA device it starts GPUS CPU
# processes on this machine with the gloo backend (tests, demos).
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG GPUS [train.py args]" >&2
    exit 2
fi
CONFIG=$1
GPUS=$2
shift 2

PYTHON=${PYTHON:-python}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
PORT=${PORT:-29500}
TOOLS_DIR=$(cd "$(dirname "$0")" && pwd)

if ! [[ "$GPUS" =~ ^[1-9][0-9]*$ ]]; then
    echo "$0: GPUS must be a positive integer, got '$GPUS'" >&2
    exit 2
fi
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
    "$TOOLS_DIR/train.py" "$CONFIG" --launcher pytorch "${EXTRA_ARGS[@]}" "$@"
