#!/bin/bash
# Sign symmetry vs feedback alignment on CIFAR-10 (JPEG q75), ResNet-20, BioTorch's SGD recipe
# (benchmark_configs/cifar10/resnet_20/sgd/*.yaml: lr 0.1, dfa 0.001, momentum 0.9, weight decay 1e-4, batch 128,
# Xavier init, crop+flip) at a reduced budget: 30 epochs with cosine decay instead of 250 with steps at 100/150/200.
# Channels-last (1.6x faster on this CPU), one thread per run; each run resumes if killed (rerun this script).
# RUNS (default all nine, one after another): a subset of bp usf frsf brsf fa kp dfa usf-last-bp fa-last-bp
# (*-last-bp: the last layer trained by backprop, Xiao et al.'s switch). On a GPU, start one process per run at
# once (scripts/gpu_checks.sh does). DATA (default ../shared/data), DEVICE (default auto), EPOCHS (default 30),
# TF32=1 to allow TF32 convolutions on a GPU (PyTorch's own default for cuDNN; ours is full fp32), recorded in config.json.
# SCALE: --feedback-scale for the rules with layer-wise feedback (fa, usf, frsf, brsf, kp; not bp or dfa), into
# <run>-scale<SCALE> folders;
# BioTorch draws B and the sign magnitudes with Xavier's bound, sqrt(3) times ours on a square layer: SCALE=1.7320508.
# FEEDBACK_INIT=xavier draws them exactly as BioTorch does, layer by layer (--feedback-init, since 0.2.1), into
# <run>-feedback-<FEEDBACK_INIT> folders. With either, RUNS defaults to (and may name only) the layer-wise feedback
# runs: usf fa frsf brsf kp usf-last-bp fa-last-bp.
set -u
cd "$(dirname "$0")/../.."
B="--arch resnet20 --dataset cifar10 --data-dir ${DATA:-../shared/data} --optimizer sgd --momentum 0.9 --weight-decay 1e-4 --batch-size 128 --init xavier --epochs ${EPOCHS:-30} --lr-schedule cosine --channels-last --seed 0 --threads 1 --device ${DEVICE:-auto} $([ "${TF32:-0}" = 1 ] && echo --tf32) --no-progress --resume"
R=results/cifar10-resnet20
ALL="usf bp fa frsf brsf kp dfa usf-last-bp fa-last-bp"
case "${FEEDBACK_INIT:-default}" in
  default|lecun|xavier|orthogonal) ;;
  *) echo "FEEDBACK_INIT must be default, lecun, xavier or orthogonal (got '${FEEDBACK_INIT}')" >&2; exit 2 ;;
esac
if [ -n "${SCALE:-}${FEEDBACK_INIT:-}" ]; then  # they change the layer-wise feedback rules only
  ALL="usf fa frsf brsf kp usf-last-bp fa-last-bp"
  case " ${RUNS:-} " in *" bp "*|*" dfa "*)
    echo "RUNS must leave out bp and dfa with SCALE or FEEDBACK_INIT, which change neither (got ${RUNS})" >&2; exit 2 ;;
  esac
fi
if [ -n "${RUNS:-}" ] && [ -z "$(echo $RUNS)" ]; then echo "RUNS must name at least one of $ALL (got '$RUNS')" >&2; exit 2; fi
for run in ${RUNS:-$ALL}; do
  case " $ALL " in
    *" $run "*) ;;
    *) echo "RUNS must be runs among $ALL (got ${RUNS})" >&2; exit 2 ;;
  esac
done
set -e
S=""
[ -n "${SCALE:-}" ] && S="--feedback-scale $SCALE"
[ -n "${FEEDBACK_INIT:-}" ] && S="$S --feedback-init $FEEDBACK_INIT"
X="${SCALE:+-scale$SCALE}${FEEDBACK_INIT:+-feedback-$FEEDBACK_INIT}"
for run in ${RUNS:-$ALL}; do
  case "$run" in
    bp) bioplausible train --rule bp --lr 0.1 $B --out "$R/bp" ;;
    dfa) bioplausible train --rule dfa --lr 0.001 $B --out "$R/dfa" ;;
    *-last-bp) bioplausible train --rule "${run%-last-bp}" --bp-layers last --lr 0.1 $B $S --out "$R/$run$X" ;;
    *) bioplausible train --rule "$run" --lr 0.1 $B $S --out "$R/$run$X" ;;
  esac
done
