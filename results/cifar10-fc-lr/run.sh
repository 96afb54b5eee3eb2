#!/bin/bash
# Learning-rate probes for Bartunov et al.'s CIFAR-10 FC rows (issue 13): one rule at one learning rate, otherwise
# exactly results/cifar10-fc/run.sh (3072-1024x3-10 tanh, Adam, batch 100, cosine, 40 epochs, LeCun-normal init,
# crop + flip, JPEG q75, seed 0, one thread), into results/cifar10-fc-lr/RULE-lrLR. Their CIFAR-10 learning rates
# are not in the text we have; results/cifar10-fc uses their MNIST ones (fa 1.68e-4, dfa 1.649e-3).
# RULE=fa|dfa|bp|dtp|aosdtp (default fa), LR (required; the forward rate), EPOCHS (default 40), SCHEDULE
# (alternating, the default, or parallel: the TP rules' inverse training; parallel adds "-parallel"), AUX (aosdtp's
# auxiliary outputs, default 64; another count adds "-auxAUX"). The TP rules keep
# their other options as results/cifar10-fc/run.sh sets them (inverse rate, noise, alternating schedule). A run of
# other than 40 epochs gets "-eEPOCHS" in its folder name (the cosine schedule depends on it). Resumable: rerun to
# continue.
set -u
cd "$(dirname "$0")/../.."
RULE=${RULE:-fa}
case "$RULE" in
  bp|fa|dfa) TP="" ;;
  dtp) TP="--schedule ${SCHEDULE:-alternating} --inverse-lr 4.593e-3 --alpha 0.232 --noise 0.22" ;;
  aosdtp) TP="--aux-outputs ${AUX:-64} --schedule ${SCHEDULE:-alternating} --inverse-lr 1.6e-3 --noise 0.258" ;;
  *) echo "RULE must be bp, fa, dfa, dtp or aosdtp (got $RULE)" >&2; exit 2 ;;
esac
if [ -z "${LR:-}" ]; then echo "set LR, e.g. LR=5e-5 RULE=$RULE bash $0" >&2; exit 2; fi
EPOCHS=${EPOCHS:-40}
SUFFIX=""; [ "$EPOCHS" != 40 ] && SUFFIX="-e$EPOCHS"
case "${SCHEDULE:-alternating}" in
  alternating) ;;
  parallel) SUFFIX="$SUFFIX-parallel" ;;
  *) echo "SCHEDULE must be alternating or parallel (got $SCHEDULE)" >&2; exit 2 ;;
esac
if [ -n "${SCHEDULE:-}" ] && [ -z "$TP" ]; then echo "SCHEDULE is for dtp and aosdtp, not $RULE: unset it" >&2; exit 2; fi
if [ -n "${AUX:-}" ] && [ "$RULE" != aosdtp ]; then echo "AUX is for aosdtp, not $RULE: unset it" >&2; exit 2; fi
[ "$RULE" = aosdtp ] && [ "${AUX:-64}" != 64 ] && SUFFIX="$SUFFIX-aux$AUX"
bioplausible train --rule "$RULE" --lr "$LR" $TP --arch mlp --depth 3 --width 1024 --activation tanh --init lecun \
  --dataset cifar10 --data-dir ../shared/data --augment --epochs "$EPOCHS" --batch-size 100 \
  --lr-schedule cosine --seed 0 --threads 1 --no-progress --resume --out "results/cifar10-fc-lr/$RULE-lr$LR$SUFFIX"
