#!/bin/bash
# Sign symmetry vs feedback alignment on CIFAR-10 (JPEG q75, ../shared/data), ResNet-20, BioTorch's SGD recipe
# (benchmark_configs/cifar10/resnet_20/sgd/*.yaml: lr 0.1, dfa 0.001, momentum 0.9, weight decay 1e-4, batch 128,
# Xavier init, crop+flip) at a reduced budget: 30 epochs with cosine decay instead of 250 with steps at 100/150/200.
# Channels-last (1.6x faster on this CPU), one thread per run; each run resumes if killed (rerun this script).
set -u
cd "$(dirname "$0")/../.."
B="--arch resnet20 --dataset cifar10 --data-dir ../shared/data --optimizer sgd --momentum 0.9 --weight-decay 1e-4 --batch-size 128 --init xavier --epochs 30 --lr-schedule cosine --channels-last --seed 0 --threads 1 --no-progress --resume"
R=results/cifar10-resnet20
# RULES (default all): a subset of the lr-0.1 rules (bp usf frsf brsf fa kp); set, it runs only those
for rule in ${RULES:-usf bp fa frsf brsf kp}; do
  case "$rule" in
    bp|usf|frsf|brsf|fa|kp) ;;
    *) echo "RULES must be rules among bp, usf, frsf, brsf, fa and kp (got ${RULES})" >&2; exit 2 ;;
  esac
done
set -e
for rule in ${RULES:-usf bp fa frsf brsf kp}; do
  bioplausible train --rule "$rule" --lr 0.1 $B --out "$R/$rule"
done
if [ -z "${RULES:-}" ]; then
  bioplausible train --rule dfa --lr 0.001 $B --out $R/dfa
  for rule in usf fa; do
    bioplausible train --rule $rule --bp-layers last --lr 0.1 $B --out $R/$rule-last-bp
  done
fi
