#!/bin/bash
# Bartunov et al. 2018, CIFAR-10, fully connected 3072-1024x3-10 tanh, Adam, batch 100, cosine, 40 epochs,
# LeCun-normal init, standard crop+flip augmentation (without it bp overfits: results/cifar10-fc-noaug), on the full CIFAR-10 as JPEG q75 (../shared/data).
# Hyperparameters: their MNIST FC values (their CIFAR ones are not in the text we have); TP: our MNIST search.
# One process, one thread; each run resumes if killed (rerun this script).
set -u
cd "$(dirname "$0")/../.."
B="--arch mlp --depth 3 --width 1024 --activation tanh --init lecun --dataset cifar10 --data-dir ../shared/data --augment --epochs 40 --batch-size 100 --lr-schedule cosine --seed 0 --threads 1 --no-progress --resume"
R=results/cifar10-fc
bioplausible train --rule bp --lr 1.52e-4 $B --out $R/bp
bioplausible train --rule fa --lr 1.68e-4 $B --out $R/fa
bioplausible train --rule dfa --lr 1.649e-3 $B --out $R/dfa
bioplausible train --rule dtp --schedule alternating --lr 3.08e-4 --inverse-lr 4.593e-3 --alpha 0.232 --noise 0.22 $B --out $R/dtp
bioplausible train --rule aosdtp --aux-outputs 64 --schedule alternating --lr 2.37e-4 --inverse-lr 1.6e-3 --noise 0.258 $B --out $R/aosdtp
