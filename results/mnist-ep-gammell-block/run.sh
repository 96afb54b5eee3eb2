#!/bin/bash
# Gammell et al. 2020 on MNIST with block settling: 784-100x5-10, global lr 0.015, beta 1 random sign, batch 20,
# SGD, persistent states, 100 epochs. Free phase: block sweeps (omega 1.7) to a tolerance of 1e-4 (cap 500);
# nudged phases: Gammell's 12 Euler steps (settling them to the tolerance wrecks learning at beta = 1 random sign:
# with MSE there is no nudged equilibrium at -beta <= -1). Euler runs of the same protocol: results/mnist-ep-gammell.
# One process per topology (run it twice: TOPOLOGY=layered and TOPOLOGY=skip), one thread; resumable.
# NUDGE=after: the nudged Euler steps as Gammell et al.'s code takes them (--nudge-after-step: the output moved by
# 2 eps F after each projected step), into results/mnist-ep-gammell-block-nudge-after. EVAL=persistent: the test set
# evaluated as their code does, from each example's free state of the previous evaluation (--persistent-eval), into
# a folder named with -persistent-eval.
set -u
cd "$(dirname "$0")/../.."
B="--rule ep --arch energy-net --hidden-sizes 100,100,100,100,100 --settle block --omega 1.7 --nudged-settle euler --epsilon 0.5 --free-steps 500 --nudged-steps 12 --tolerance 1e-4 --beta 1 --nudging random-sign --persistent --optimizer sgd --lr 0.015 --loss mse --batch-size 20 --dataset mnist --data-dir ../shared/data --epochs ${EPOCHS:-100} --seed 0 --threads 1 --no-progress --resume"
R=results/mnist-ep-gammell-block
case "${NUDGE:-inside}" in
  inside) ;;
  after) B="$B --nudge-after-step"; R=results/mnist-ep-gammell-block-nudge-after ;;
  *) echo "NUDGE must be inside or after (got ${NUDGE})" >&2; exit 2 ;;
esac
case "${EVAL:-zeros}" in
  zeros) ;;
  persistent) B="$B --persistent-eval"; R=$R-persistent-eval ;;
  *) echo "EVAL must be zeros or persistent (got ${EVAL})" >&2; exit 2 ;;
esac
case "${TOPOLOGY:-layered}" in
  layered) bioplausible train $B --topology layered --out $R/layered ;;
  skip) bioplausible train $B --topology skip --p 0.1 --a 0.168 --out $R/skip-p0.1 ;;
  *) echo "TOPOLOGY must be layered or skip (got ${TOPOLOGY})" >&2; exit 2 ;;
esac
