#!/bin/bash
# Learning-rate probes for Bartunov et al.'s CIFAR-10 FC rows (issue 13): one rule at one learning rate, otherwise
# exactly results/cifar10-fc/run.sh (3072-1024x3-10 tanh, Adam, batch 100, cosine, 40 epochs, LeCun-normal init,
# crop + flip, JPEG q75, seed 0, one thread), into results/cifar10-fc-lr/RULE-lrLR. Their CIFAR-10 learning rates
# are not in the text we have; results/cifar10-fc uses their MNIST ones (fa 1.68e-4, dfa 1.649e-3).
# RULE=fa|dfa|bp (default fa), LR (required), EPOCHS (default 40). Resumable: rerun to continue.
set -u
cd "$(dirname "$0")/../.."
RULE=${RULE:-fa}
case "$RULE" in
  bp|fa|dfa) ;;
  *) echo "RULE must be bp, fa or dfa (got $RULE); the TP rules need their inverse options: see results/cifar10-fc/run.sh" >&2; exit 2 ;;
esac
if [ -z "${LR:-}" ]; then echo "set LR, e.g. LR=5e-5 RULE=$RULE bash $0" >&2; exit 2; fi
bioplausible train --rule "$RULE" --lr "$LR" --arch mlp --depth 3 --width 1024 --activation tanh --init lecun \
  --dataset cifar10 --data-dir ../shared/data --augment --epochs "${EPOCHS:-40}" --batch-size 100 \
  --lr-schedule cosine --seed 0 --threads 1 --no-progress --resume --out "results/cifar10-fc-lr/$RULE-lr$LR"
