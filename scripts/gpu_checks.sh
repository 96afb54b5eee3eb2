#!/bin/bash
# The GPU checks of issues 13 and 14 that fit one call of a device session (15 minutes of device time in all,
# start included): the CUDA test file (rules on CUDA match the CPU; the free phase's CUDA-graph settling matches
# the eager sweeps) and the settling benchmark's part g (sweeps/s, eager against CUDA graphs). Writes its logs to
# $OUT (the device tool's output folder; /tmp/gpu-checks elsewhere).
#
# The device image has PyTorch, pytest, pytest-xdist, matplotlib, Pillow, filelock and PyYAML but not Optuna, which
# training does not import: the package runs from src/ without installing. Prepare here, in the repository root:
#   mkdir -p .gpu-data && cp -r ../shared/data/mnist .gpu-data/ && echo /.gpu-data/ >> .git/info/exclude
# then call the device tool's run with command "bash scripts/gpu_checks.sh", carry [".gpu-data"], timeout_s 420.
# (Full CIFAR-10 does not fit one call: the JPEG release is 57 MB and the tracked tree 37 MB, against 64 MiB a
# call; carry its train classes in two calls and its test split in a third, to a warm machine, each its own path
# under .gpu-data/cifar10-jpeg.)
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-checks}
mkdir -p "$OUT"
DATA=${DATA:-.gpu-data}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda)"; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
timeout 240 python3 -m pytest tests/test_cuda.py -q -n 0 -p no:cacheprovider 2>&1 | tee "$OUT/test_cuda.txt"
timeout 120 python3 benchmarks/ep_settling.py --parts g --device "${DEVICE:-cuda}" --rounds 5 --batches 20 --data-dir "$DATA" \
  2>&1 | tee "$OUT/ep_settling_kept_cuda.txt"
