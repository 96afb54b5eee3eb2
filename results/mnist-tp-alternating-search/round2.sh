export PYTHONPATH=src:/tmp/stub PYTHONUNBUFFERED=1 BIOPLAUSIBLE_OFFLINE=1
mkdir -p /tmp/stub
for d in optuna optuna/samplers optuna/trial optuna/storages; do mkdir -p /tmp/stub/$d; printf 'def __getattr__(name):\n    return object\n' > /tmp/stub/$d/__init__.py; done
python3 -m bioplausible.cli list rules | head -2 || exit 1
FC="--arch mlp --depth 5 --width 256 --activation tanh --dataset mnist --data-dir .gpudata --batch-size 100 --lr-schedule cosine --device cuda --no-progress --epochs ${E:-100} --schedule alternating"
T=${T:-540}
run() { out=$1; shift; timeout $T python3 -m bioplausible.cli train $FC "$@" --out runs/$out > log-$out.txt 2>&1 & }
L="--init lecun --adam-eps 1e-08 --adam-beta2 0.999"
run aosdtp-b1 --rule aosdtp --lr 2.37e-4 --inverse-lr 1.6e-3 --noise 0.258 $L
run aosdtp-b2 --rule aosdtp --lr 3e-4 --inverse-lr 1.6e-3 --noise 0.258 $L
run aosdtp-b3 --rule aosdtp --lr 1.5e-4 --inverse-lr 1.6e-3 --noise 0.258 $L
run aosdtp-b4 --rule aosdtp --lr 2.37e-4 --inverse-lr 3e-3 --noise 0.258 $L
run aosdtp-b5 --rule aosdtp --lr 2.37e-4 --inverse-lr 8e-4 --noise 0.258 $L
run aosdtp-b6 --rule aosdtp --lr 2.37e-4 --inverse-lr 1.6e-3 --noise 0.15 $L
run aosdtp-b7 --rule aosdtp --lr 2.37e-4 --inverse-lr 1.6e-3 --noise 0.258 --aux-outputs 128 $L
run aosdtp-b8 --rule aosdtp --lr 2.37e-4 --inverse-lr 1.6e-3 --noise 0.258 --aux-outputs 256 $L
run aosdtp-b9 --rule aosdtp --lr 3.01e-4 --inverse-lr 9.572e-3 --noise 0.118 $L
run sdtp-b1 --rule sdtp --lr 2.37e-4 --inverse-lr 1.6e-3 --noise 0.258 $L --seed 1
run sdtp-b2 --rule sdtp --lr 3e-4 --inverse-lr 1.6e-3 --noise 0.258 $L
run sdtp-b3 --rule sdtp --lr 3.01e-4 --inverse-lr 9.572e-3 --noise 0.118 $L
run dtp-b1 --rule dtp --lr 3.08e-4 --inverse-lr 4.593e-3 --noise 0.22 --alpha 0.232 $L --seed 1
run dtp-b2 --rule dtp --lr 3.08e-4 --inverse-lr 4.593e-3 --noise 0.22 --alpha 0.232 $L --seed 2
wait
tail -qn1 log-*.txt
tar czf $OUT/tp_search2.tgz --exclude=checkpoint.pt runs log-*.txt
