#!/usr/bin/env bash
# The first check on a machine with a CUDA GPU, in under 8 minutes: the GPU tests, a few minutes of
# bf16 training (tokens/s, MFU), beam-5 decoding speed, and DDP over NCCL with more than one GPU.
# Figures go to benchmarks/results/gpu_check.{json,md}. Without a GPU it says so and exits.
#   bash benchmarks/gpu_check.sh [MINUTES_OF_TRAINING]
set -uo pipefail
cd "$(dirname "$0")/.."
if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA GPU on this machine (torch.cuda.is_available() is False); nothing to check"
    exit 0
fi
mkdir -p benchmarks/results
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
timeout 150 python -m pytest -q -m "" tests/test_gpu.py 2>&1 | tail -n 20 | tee benchmarks/results/gpu_tests.txt
timeout 330 python benchmarks/gpu_check.py --minutes "${1:-3}"
