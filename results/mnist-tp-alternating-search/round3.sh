source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run aosdtp-c1 --rule aosdtp --lr 2.37e-4 --inverse-lr 1.6e-3 --noise 0.258 $L --seed 1
run aosdtp-c2 --rule aosdtp --lr 2.37e-4 --inverse-lr 1.6e-3 --noise 0.258 $L --seed 2
run aosdtp-c3 --rule aosdtp --lr 2.37e-4 --inverse-lr 8e-4 --noise 0.15 $L
run aosdtp-c4 --rule aosdtp --lr 2.37e-4 --inverse-lr 1.6e-3 --noise 0.258 --aux-outputs 16 $L
run aosdtp-c5 --rule aosdtp --lr 2.37e-4 --inverse-lr 1.6e-3 --noise 0.258 --aux-outputs 64 $L
run aosdtp-c6 --rule aosdtp --lr 2e-4 --inverse-lr 1.2e-3 --noise 0.2 $L
run aosdtp-c7 --rule aosdtp --lr 2.37e-4 --inverse-lr 8e-4 --noise 0.258 $L --seed 1
run aosdtp-c8 --rule aosdtp --lr 2.37e-4 --inverse-lr 1.6e-3 --noise 0.258 --init lecun --adam-eps 1e-08 --adam-beta2 0.99
run aosdtp-c9 --rule aosdtp --lr 2.37e-4 --inverse-lr 1.2e-3 --noise 0.2 $L
run sdtp-c1 --rule sdtp --lr 2.37e-4 --inverse-lr 1.6e-3 --noise 0.258 $L --seed 2
finish tp_search3.tgz
