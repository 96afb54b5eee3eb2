#!/bin/bash
# Convolutional EP on CIFAR-10 (JPEG q75, ../shared/data), issue 14: one-sided against symmetric nudging on the same
# conv energy net, the conv-ep study's medium CIFAR-10 configuration (src/bioplausible/studies/presets.py,
# MEDIUM_CONV_EP) as one run per nudging: 2 convolutions 32-64 of 5x5 with max pooling, hard-sigmoid, 60 free / 15
# nudged steps of the synchronous fixed-point iteration, beta 0.5, SGD lr 0.05 momentum 0.9, batch 64, crop + flip,
# 2 epochs (EPOCHS to change). Laborieux et al. 2021 report one-sided nudging failing (86 % error) where symmetric
# learns (11.7 % with a softmax readout) after 120 epochs of a 128-256-512-512 net: this budget can show whether
# one-sided falls behind early, not their errors.
# NUDGING=one-sided | symmetric (both with the MSE output inside the energy) | one-sided-ce | symmetric-ce (softmax
# readout, cross-entropy). LR (default 0.05), OUT (default results/conv-ep-cifar10) and EXTRA (more train options) to
# change; a changed LR or EXTRA needs its own OUT, since a run resumes only with its own settings. One thread;
# resumable (rerun to continue, or with a larger EPOCHS to extend).
set -u
cd "$(dirname "$0")/../.."
case "${NUDGING:-one-sided}" in
  one-sided) OUTPUT="--readout energy --cost mse --loss mse --nudging one-sided" ;;
  symmetric) OUTPUT="--readout energy --cost mse --loss mse --nudging symmetric" ;;
  one-sided-ce) OUTPUT="--readout linear --cost ce --loss ce --nudging one-sided" ;;
  symmetric-ce) OUTPUT="--readout linear --cost ce --loss ce --nudging symmetric" ;;
  *) echo "NUDGING must be one-sided, symmetric, one-sided-ce or symmetric-ce (got ${NUDGING})" >&2; exit 2 ;;
esac
bioplausible train --rule ep --arch conv-energy-net --conv-channels 32,64 --kernel-sizes 5 --pooling max \
  --activation hard-sigmoid --settle-order synchronous $OUTPUT --beta 0.5 --free-steps 60 --nudged-steps 15 \
  --tolerance 0 --optimizer sgd --lr "${LR:-0.05}" --momentum 0.9 --batch-size 64 --dataset cifar10 \
  --data-dir ../shared/data --augment --epochs "${EPOCHS:-2}" --seed 0 --threads 1 --no-progress --resume ${EXTRA:-} \
  --out "${OUT:-results/conv-ep-cifar10}/${NUDGING:-one-sided}"
