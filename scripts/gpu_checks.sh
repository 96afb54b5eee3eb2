#!/bin/bash
# What one call of a device session (15 minutes of device time in all, start included) runs for issues 13 and 14:
#  1. the settling benchmark's part g (issue 14: free-phase sweeps/s, eager against CUDA graphs), the GPU alone,
#     while the CPU decodes CIFAR-10 into the cache;
#  2. the ResNet-20 sign-symmetry table of issue 13 (results/cifar10-resnet20/run.sh, all nine runs at once, one
#     process each: a ResNet-20 step at batch 128 leaves most of an H200 idle; with FEEDBACK_INIT=xavier or SCALE
#     set, the seven layer-wise feedback runs they change), TF32 allowed, stopped BUDGET
#     seconds after the start (each run keeps its last finished epoch; rerun to continue where the checkpoints
#     came back);
#  3. the CUDA test file (rules on CUDA match the CPU; graph-captured settling matches the eager sweeps) beside (2).
# Writes to $OUT (the device tool's output folder; /tmp/gpu-checks elsewhere): gpu_checks.txt, the run folders
# without checkpoints (resnet20-runs.tar.gz) and their checkpoints (resnet20-checkpoints.tar.NN, 15 MB parts).
#
# The device image has PyTorch, pytest, pytest-xdist, matplotlib, Pillow, filelock and PyYAML but not Optuna, which
# training does not import: the package runs from src/. The tracked tree (about 40 MB, mostly results/), CIFAR-10's JPEG release as
# files and MNIST exceed the 64 MiB a call carries: the JPEG folder travels as one archive (20 MB: its files share
# their headers) and the call is made from a temporary branch without the other results/ folders. Here, in the
# repository root:
#   mkdir -p .gpu-data && cp -r ../shared/data/mnist .gpu-data/ && echo /.gpu-data/ >> .git/info/exclude
#   tar czf .gpu-data/cifar10-jpeg.tar.gz -C ../shared/data cifar10-jpeg
#   git switch -c gpu-call && git rm -r -q $(ls -d results/*/ | grep -v -e cifar10-resnet20 -e gammell-500x3) \
#     && git commit -q -m "gpu call: tree without the other results"
# then the device tool's run with command "bash scripts/gpu_checks.sh", carry [".gpu-data"], timeout_s 600 (BUDGET
# must end some 40 s before the call's limit, or the tool kills the script before it packs: with less device time
# left, set BUDGET=<timeout_s - 40> in the command); afterwards `git switch main && git branch -D gpu-call` (the
# folders come back). To continue the runs later, put the checkpoints back into their folders from the repository
# root: `cat resnet20-checkpoints.tar.* | tar xf -` (they do not fit beside the data in another call's 64 MiB:
# continue on a machine that has the data, or carry them in a call of their own to a warm machine).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-checks}
DATA=${DATA:-.gpu-data}
DEVICE=${DEVICE:-cuda}  # cpu: a smoke test of this script elsewhere
BUDGET=${BUDGET:-560}  # seconds from the start until the runs are stopped; packing takes a few more
LOG=$OUT/gpu_checks.txt
rm -rf /tmp/gpu-logs  # a warm machine keeps an earlier call's logs: pack only this call's
mkdir -p "$OUT" /tmp/gpu-logs /tmp/gpu-bin
if [ -f "$DATA/cifar10-jpeg.tar.gz" ] && [ ! -d "$DATA/cifar10-jpeg" ]; then tar xzf "$DATA/cifar10-jpeg.tar.gz" -C "$DATA"; fi
if ! command -v bioplausible > /dev/null; then  # not installed there: the CLI from src/
  printf '#!/bin/sh\nexec python3 -m bioplausible "$@"\n' > /tmp/gpu-bin/bioplausible
  chmod +x /tmp/gpu-bin/bioplausible
  export PATH=/tmp/gpu-bin:$PATH
fi
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc
  python3 -c "import torch; print('torch', torch.__version__, torch.version.cuda)"; } 2>&1 | tee "$LOG"

python3 -c "from bioplausible.data import load_dataset; d = load_dataset('cifar10', '$DATA', download=False); \
print('decoded', d.name, d.num_train, d.num_test)" > /tmp/gpu-logs/decode.txt 2>&1 &
decode=$!
echo "== ep_settling part g ($SECONDS s)" | tee -a "$LOG"
timeout 100 python3 benchmarks/ep_settling.py --parts g --device "$DEVICE" --rounds 5 --batches 20 --data-dir "$DATA" \
  2>&1 | tee -a "$LOG"
timeout 120 tail --pid=$decode -f /dev/null  # the decode waits at most 2 minutes (it took 12 s on an H200)
cat /tmp/gpu-logs/decode.txt | tee -a "$LOG"

left=$((BUDGET - SECONDS))
runs=()
if [ "$left" -lt 30 ]; then
  echo "== no ResNet-20 runs: $left s left of BUDGET=$BUDGET ($SECONDS s)" | tee -a "$LOG"
else
  echo "== ResNet-20 runs, stopped after $left s ($SECONDS s)" | tee -a "$LOG"
  default_runs="bp usf frsf brsf fa kp dfa usf-last-bp fa-last-bp"
  # SCALE or FEEDBACK_INIT (passed on to run.sh) change only the layer-wise feedback rules
  [ -n "${SCALE:-}${FEEDBACK_INIT:-}" ] && default_runs="usf frsf brsf fa kp usf-last-bp fa-last-bp"
  for run in ${RUNS:-$default_runs}; do
    RUNS=$run DEVICE=$DEVICE DATA=$DATA TF32=1 timeout $left bash results/cifar10-resnet20/run.sh \
      > /tmp/gpu-logs/$run.txt 2>&1 &
    runs+=($!)
  done
fi
[ ${#runs[@]} -gt 0 ] || echo "== RUNS named no run: none started" | tee -a "$LOG"
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader -l 30 > /tmp/gpu-logs/utilisation.txt 2>&1 &
monitor=$!
echo "== tests/test_cuda.py ($SECONDS s)" | tee -a "$LOG"
timeout 240 python3 -m pytest tests/test_cuda.py -q -n 0 -p no:cacheprovider 2>&1 | tee -a "$LOG"
for pid in "${runs[@]}"; do wait "$pid"; done  # never a bare wait: it would wait for the monitor too
kill $monitor 2> /dev/null
echo "== packing ($SECONDS s)" | tee -a "$LOG"
for f in /tmp/gpu-logs/*.txt; do echo "-- $f"; tail -n 4 "$f"; done >> "$LOG"
tar czf "$OUT/resnet20-runs.tar.gz" --exclude='checkpoint*' --exclude='*.tmp' results/cifar10-resnet20 /tmp/gpu-logs \
  2> /dev/null
find results/cifar10-resnet20 -name 'checkpoint*.pt' | tar cf - -T - | split -b 15M -d - "$OUT/resnet20-checkpoints.tar."
ls -l "$OUT" | tee -a "$LOG"
echo "done ($SECONDS s)" | tee -a "$LOG"
