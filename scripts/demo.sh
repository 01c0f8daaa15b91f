#!/usr/bin/env bash
# The main job end to end on CPU: table on the train split, the DP for every budget,
# held-out bits/dim ± SE of DP vs even vs quadratic strides (direct evaluation with fresh
# noise, paired across strides), and samples along the DP path.
# Default model: the embedded cifar10-hybrid network (L_hybrid, learned range, T = 1000).
# The closed-form Gaussian-data model needs no weights:
#   MODEL=gaussian:cifar10-lossless:train NOISE=linear:1000 VARIANCE=fixed_large make demo
# Data: the lossless CIFAR-10 pair (4,000 train / 100 test images with their exact pixels);
# TRAIN=cifar10:train TEST=cifar10:test uses the larger JPEG-decoded copy instead.
# Re-runnable: the table resumes (--resume), the other outputs are replaced (--overwrite).
# Every command ends with a JSON summary line on stdout.
set -euo pipefail
MODEL=${MODEL:-cifar10-hybrid}
NOISE=${NOISE:-}
VARIANCE=${VARIANCE:-}
OUT=${OUT:-runs/demo}
TRAIN=${TRAIN:-cifar10-lossless:train}
TEST=${TEST:-cifar10-lossless:test}
N_TRAIN=${N_TRAIN:-64}
N_TEST=${N_TEST:-64}
GRID=${GRID:-log:200}
BUDGETS=${BUDGETS:-8,16,32,64}
mkdir -p "$OUT"
common=(--model "$MODEL")
[ -n "$NOISE" ] && common+=(--noise-schedule "$NOISE")
[ -n "$VARIANCE" ] && common+=(--variance "$VARIANCE")
set -x
ddpmdp table "${common[@]}" --data "$TRAIN" --n-images "$N_TRAIN" --grid "$GRID" --batch-size 64 \
  --out "$OUT/train_table.npz" --resume --quiet
ddpmdp solve "$OUT/train_table.npz" --budgets "$BUDGETS" --out "$OUT/dp.json" --overwrite
: > "$OUT/heldout_bpd.txt"
for K in ${BUDGETS//,/ }; do  # DP first: the other strides get paired differences against it
  ddpmdp evaluate "${common[@]}" --data "$TEST" --n-images "$N_TEST" --batch-size 64 --quiet \
    --schedule "dp:$OUT/dp.json:$K" --schedule even:$K --schedule quadratic:$K | tee -a "$OUT/heldout_bpd.txt"
done
ddpmdp sample "${common[@]}" --schedule "dp:$OUT/dp.json:32" --n 16 --out "$OUT/samples_dp32.png" --quiet \
  --overwrite
