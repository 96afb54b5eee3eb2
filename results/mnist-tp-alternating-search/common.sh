# Shared by round1-3.sh: run from the repository root on the GPU machine, with MNIST in .gpudata/.
# That machine's Python lacks Optuna, which `train` never uses: a stub module stands in for it.
export PYTHONPATH=src:/tmp/stub PYTHONUNBUFFERED=1 BIOPLAUSIBLE_OFFLINE=1
mkdir -p /tmp/stub
for d in optuna optuna/samplers optuna/trial optuna/storages; do mkdir -p /tmp/stub/$d; printf 'def __getattr__(name):\n    return object\n' > /tmp/stub/$d/__init__.py; done
python3 -m bioplausible.cli list rules | head -2 || exit 1
FC="--arch mlp --depth 5 --width 256 --activation tanh --dataset mnist --data-dir .gpudata --batch-size 100 --lr-schedule cosine --device cuda --no-progress --epochs ${E:-100} --schedule alternating"
T=${T:-540}
run() { out=$1; shift; timeout $T python3 -m bioplausible.cli train $FC "$@" --out runs/$out > log-$out.txt 2>&1 & }
L="--init lecun --adam-eps 1e-08 --adam-beta2 0.999"
finish() {  # wait for every run, print their last lines, pack the run folders into $OUT/$1
  wait
  tail -qn1 log-*.txt
  tar czf "$OUT/$1" --exclude=checkpoint.pt runs log-*.txt
}
