#!/bin/bash
# Bartunov et al. 2018, CIFAR-10, locally connected net (lc-net, cifar variant: LC 5x5/64/s2 -> LC 5x5/128/s2 ->
# LC 3x3/256 -> FC 1024 -> 10, tanh; their Table 3), Adam, batch 100, cosine over EPOCHS (default 10: the medium
# budget, against their 500), LeCun-normal init, crop + flip, full CIFAR-10 as JPEG q75 (../shared/data), seed 0, one
# thread. Learning rates: their MNIST fully connected values, as the bartunov2018 preset uses (their LC and CIFAR-10
# values are not in the text we have). Theirs (best test error within 500 epochs): bp 32.41 %, fa 37.44 %.
# RULE=bp|fa|dfa (default bp). Resumable: rerun to continue (with the same EPOCHS: the cosine schedule spans them).
set -u
cd "$(dirname "$0")/../.."
case "${RULE:-bp}" in
  bp) LR=1.52e-4 ;;
  fa) LR=1.68e-4 ;;
  dfa) LR=1.649e-3 ;;
  *) echo "RULE must be bp, fa or dfa (got ${RULE})" >&2; exit 2 ;;
esac
bioplausible train --rule "${RULE:-bp}" --lr "$LR" --arch lc-net --init lecun --dataset cifar10 --data-dir ../shared/data \
  --augment --epochs "${EPOCHS:-10}" --batch-size 100 --lr-schedule cosine --seed 0 --threads 1 --no-progress --resume \
  --out "results/cifar10-lc/${RULE:-bp}"
