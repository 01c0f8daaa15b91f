#!/usr/bin/env bash
# The main job end to end on CPU: table on the train split, the DP for every budget,
# held-out bits/dim ± SE of DP vs even vs quadratic strides (direct evaluation with fresh
# noise, paired across strides), and samples along the DP path.
# Model: the closed-form Gaussian-data model of CIFAR-10 (until embedded networks ship).
set -euo pipefail
MODEL=${MODEL:-gaussian:cifar10:train}
NOISE=${NOISE:-linear:1000}
OUT=${OUT:-runs/demo}
N_TRAIN=${N_TRAIN:-64}
N_TEST=${N_TEST:-128}
mkdir -p "$OUT"
set -x
ddpmdp table --model "$MODEL" --noise-schedule "$NOISE" --data cifar10:train --n-images "$N_TRAIN" \
  --variance fixed_large --batch-size 64 --out "$OUT/train_table.npz" --resume
ddpmdp solve "$OUT/train_table.npz" --budgets 8,16,32,64,128,256 --json > "$OUT/dp.json"
ddpmdp solve "$OUT/train_table.npz" --budgets 8,16,32,64,128,256
args=()
for K in 8 16 32 64; do args+=(--schedule even:$K --schedule quadratic:$K --schedule "dp:$OUT/dp.json:$K"); done
ddpmdp evaluate --model "$MODEL" --noise-schedule "$NOISE" --data cifar10:test --n-images "$N_TEST" \
  --variance fixed_large --batch-size 64 "${args[@]}" | tee "$OUT/heldout_bpd.txt"
ddpmdp sample --model "$MODEL" --noise-schedule "$NOISE" --schedule "dp:$OUT/dp.json:32" --n 16 \
  --variance fixed_large --out "$OUT/samples_dp32.png"
