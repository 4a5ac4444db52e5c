#!/usr/bin/env bash
# The GPU check (scripts/gpu_check.py): training, inference, I3D and TV-L1 on CUDA against the CPU, one table,
# one JSON (ckpt/gpu_check/gpu_check.json), exit 1 when a parity fails, 3 without a CUDA device.
#   bash scripts/gpu_check.sh [--out DIR] [--overwrite]
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" scripts/gpu_check.py "$@"
