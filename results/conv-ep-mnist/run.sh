#!/bin/bash
# Convolutional EP on MNIST (issue 14's bar: <= 1.5 % test error): the conv-ep study's medium MNIST configuration
# (src/bioplausible/studies/presets.py, MEDIUM_CONV_EP) as one run: 2 convolutions 32-64 of 5x5 with max pooling,
# hard-sigmoid, softmax readout with cross-entropy, symmetric nudging beta 0.5, 60 free / 15 nudged steps of the
# synchronous fixed-point iteration, SGD lr 0.05 momentum 0.9, batch 64, 3 epochs. One thread; resumable.
# DECAY=k: the learning rate x0.1 from epoch k+1 on (--lr-schedule step --lr-milestones k); a resume may add it when
# the epochs done are k or fewer (they trained at the same constant rate), e.g. EPOCHS=7 DECAY=5.
set -u
cd "$(dirname "$0")/../.."
bioplausible train --rule ep --arch conv-energy-net --conv-channels 32,64 --kernel-sizes 5 --pooling max \
  --activation hard-sigmoid --settle-order synchronous --readout linear --cost ce --loss ce --nudging symmetric \
  --beta 0.5 --free-steps 60 --nudged-steps 15 --tolerance 0 --optimizer sgd --lr 0.05 --momentum 0.9 \
  --batch-size 64 --dataset mnist --data-dir ../shared/data --epochs ${EPOCHS:-3} ${DECAY:+--lr-schedule step --lr-milestones $DECAY} --seed 0 --threads 1 \
  --no-progress --resume --out results/conv-ep-mnist/symmetric-ce
