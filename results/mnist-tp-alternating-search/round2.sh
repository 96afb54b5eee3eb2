source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
run aosdtp-b1 --rule aosdtp --lr 2.37e-4 --inverse-lr 1.6e-3 --noise 0.258 $L
run aosdtp-b2 --rule aosdtp --lr 3e-4 --inverse-lr 1.6e-3 --noise 0.258 $L
run aosdtp-b3 --rule aosdtp --lr 1.5e-4 --inverse-lr 1.6e-3 --noise 0.258 $L
run aosdtp-b4 --rule aosdtp --lr 2.37e-4 --inverse-lr 3e-3 --noise 0.258 $L
run aosdtp-b5 --rule aosdtp --lr 2.37e-4 --inverse-lr 8e-4 --noise 0.258 $L
run aosdtp-b6 --rule aosdtp --lr 2.37e-4 --inverse-lr 1.6e-3 --noise 0.15 $L
run aosdtp-b7 --rule aosdtp --lr 2.37e-4 --inverse-lr 1.6e-3 --noise 0.258 --aux-outputs 128 $L
run aosdtp-b8 --rule aosdtp --lr 2.37e-4 --inverse-lr 1.6e-3 --noise 0.258 --aux-outputs 256 $L
run aosdtp-b9 --rule aosdtp --lr 3.01e-4 --inverse-lr 9.572e-3 --noise 0.118 $L
run sdtp-b1 --rule sdtp --lr 2.37e-4 --inverse-lr 1.6e-3 --noise 0.258 $L --seed 1
run sdtp-b2 --rule sdtp --lr 3e-4 --inverse-lr 1.6e-3 --noise 0.258 $L
run sdtp-b3 --rule sdtp --lr 3.01e-4 --inverse-lr 9.572e-3 --noise 0.118 $L
run dtp-b1 --rule dtp --lr 3.08e-4 --inverse-lr 4.593e-3 --noise 0.22 --alpha 0.232 $L --seed 1
run dtp-b2 --rule dtp --lr 3.08e-4 --inverse-lr 4.593e-3 --noise 0.22 --alpha 0.232 $L --seed 2
finish tp_search2.tgz
