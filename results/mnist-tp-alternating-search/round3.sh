export PYTHONPATH=src:/tmp/stub PYTHONUNBUFFERED=1 BIOPLAUSIBLE_OFFLINE=1
mkdir -p /tmp/stub
for d in optuna optuna/samplers optuna/trial optuna/storages; do mkdir -p /tmp/stub/$d; printf 'def __getattr__(name):\n    return object\n' > /tmp/stub/$d/__init__.py; done
python3 -m bioplausible.cli list rules | head -2 || exit 1
FC="--arch mlp --depth 5 --width 256 --activation tanh --dataset mnist --data-dir .gpudata --batch-size 100 --lr-schedule cosine --device cuda --no-progress --epochs ${E:-100} --schedule alternating"
T=${T:-540}
run() { out=$1; shift; timeout $T python3 -m bioplausible.cli train $FC "$@" --out runs/$out > log-$out.txt 2>&1 & }
L="--init lecun --adam-eps 1e-08 --adam-beta2 0.999"
run aosdtp-c1 --rule aosdtp --lr 2.37e-4 --inverse-lr 1.6e-3 --noise 0.258 $L --seed 1
run aosdtp-c2 --rule aosdtp --lr 2.37e-4 --inverse-lr 1.6e-3 --noise 0.258 $L --seed 2
run aosdtp-c3 --rule aosdtp --lr 2.37e-4 --inverse-lr 8e-4 --noise 0.15 $L
run aosdtp-c4 --rule aosdtp --lr 2.37e-4 --inverse-lr 1.6e-3 --noise 0.258 --aux-outputs 16 $L
run aosdtp-c5 --rule aosdtp --lr 2.37e-4 --inverse-lr 1.6e-3 --noise 0.258 --aux-outputs 64 $L
run aosdtp-c6 --rule aosdtp --lr 2e-4 --inverse-lr 1.2e-3 --noise 0.2 $L
run aosdtp-c7 --rule aosdtp --lr 2.37e-4 --inverse-lr 8e-4 --noise 0.258 $L --seed 1
run aosdtp-c8 --rule aosdtp --lr 2.37e-4 --inverse-lr 1.6e-3 --noise 0.258 --init lecun --adam-eps 1e-08 --adam-beta2 0.99
run aosdtp-c9 --rule aosdtp --lr 2.37e-4 --inverse-lr 1.2e-3 --noise 0.2 $L
run sdtp-c1 --rule sdtp --lr 2.37e-4 --inverse-lr 1.6e-3 --noise 0.258 $L --seed 2
wait
tail -qn1 log-*.txt
tar czf $OUT/tp_search3.tgz --exclude=checkpoint.pt runs log-*.txt
