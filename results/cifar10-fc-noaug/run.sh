#!/bin/bash
# Bartunov et al. 2018's CIFAR-10 FC net (3072-1024x3-10 tanh, Adam, batch 100, cosine, 40 epochs, LeCun-normal)
# WITHOUT augmentation: results/cifar10-fc/run.sh's commands with --no-augment (CIFAR-10 augments by default).
# bp overfits from epoch 6 here (stopped at 13); fa underfits WITH augmentation (train ~ test accuracy ~51 %), so
# does it do better without?
# RULE=bp|fa|dfa (default fa). One thread; resumable (rerun to continue).
set -u
cd "$(dirname "$0")/../.."
B="--arch mlp --depth 3 --width 1024 --activation tanh --init lecun --dataset cifar10 --data-dir ../shared/data --no-augment --epochs ${EPOCHS:-40} --batch-size 100 --lr-schedule cosine --seed 0 --threads 1 --no-progress --resume"
R=results/cifar10-fc-noaug
case "${RULE:-fa}" in
  bp) bioplausible train --rule bp --lr 1.52e-4 $B --out $R/bp ;;
  fa) bioplausible train --rule fa --lr 1.68e-4 $B --out $R/fa ;;
  dfa) bioplausible train --rule dfa --lr 1.649e-3 $B --out $R/dfa ;;
  *) echo "RULE must be bp, fa or dfa (got ${RULE})" >&2; exit 2 ;;
esac
