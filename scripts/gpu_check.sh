#!/usr/bin/env bash
# The prepared GPU check (at most 8 minutes on one GPU), one summary at the end:
#   1. the gpu-marked tests (pytest -m gpu);
#   2. the table benchmark on the public CIFAR-10 architecture in bf16: table throughput ÷ bare
#      forward throughput (target >= 0.9);
#   3. the DP benchmark;
#   4. CUDA against CPU on one small table (scripts/gpu_agreement.py; tolerances stated there).
# Without a GPU it says so and exits 0 within seconds, claiming no measurement.
#
#   bash scripts/gpu_check.sh                 # uses .venv (created by `make venv` when missing)
#   PYTHON=/path/to/python bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export DDPMDP_DATA="${DDPMDP_DATA:-$(cd .. && pwd)/shared/data}"

if [ -z "${PYTHON:-}" ]; then
  if [ ! -x .venv/bin/python ]; then
    if ! command -v nvidia-smi >/dev/null 2>&1; then
      echo "gpu_check: no GPU here (no nvidia-smi): nothing measured"
      exit 0
    fi
    make venv || { echo "gpu_check: make venv failed"; exit 1; }
  fi
  PYTHON=.venv/bin/python
fi

if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)'; then
  echo "gpu_check: no GPU here (torch.cuda.is_available() is false for $PYTHON): nothing measured"
  exit 0
fi

log=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
start=$(date +%s)
gpu=$("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name(0))')
torchv=$("$PYTHON" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)')
echo "gpu_check: $gpu, torch $torchv; logs in $log"

step() {  # step NAME LIMIT_S CMD...: run with a time limit, keep the log, record status and seconds
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  echo "=== $name: $*"
  timeout "$limit" "$@" 2>&1 | tee "$log/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "$rc $(( $(date +%s) - t0 ))" > "$log/$name.status"
}

step gpu_tests 150 "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu tests
step bench_table 120 "$PYTHON" benchmarks/bench_table.py --model iddpm:cifar10-hybrid --device cuda \
  --batch-size 256 --grid-stride 10 --bf16
step bench_dp 90 "$PYTHON" benchmarks/bench_dp.py
step agreement 90 "$PYTHON" scripts/gpu_agreement.py

status() { read -r rc secs < "$log/$1.status"; if [ "$rc" = 0 ]; then echo "ok (${secs} s)"; \
  elif [ "$rc" = 124 ]; then echo "TIMED OUT (${secs} s)"; else echo "FAILED rc=$rc (${secs} s)"; fi; }

tests_line=$(grep -E "passed|failed|skipped|no tests ran" "$log/gpu_tests.log" | tail -1)
ratio=$(grep -o "throughput table/bare [0-9.]*" "$log/bench_table.log" | tail -1 | awk '{print $3}')
ratio_ok=$(awk -v r="${ratio:-0}" 'BEGIN { print (r >= 0.9) ? "meets >= 0.9" : "MISSES >= 0.9" }')
dp_lines=$(grep -E "G=[0-9]+, k_max=" "$log/bench_dp.log" | sed 's/^/    /')
agree_lines=$(grep -E "max relative cell difference|nothing measured" "$log/agreement.log" | sed 's/^/    /')
case "$tests_line" in *passed*) ;; *) tests_line="$tests_line  <- NOTHING RAN ON THE GPU"; failed_tests=1 ;; esac

failed=${failed_tests:-0}
for s in gpu_tests bench_table bench_dp agreement; do
  read -r rc _ < "$log/$s.status"; [ "$rc" = 0 ] || failed=1
done

cat <<EOF

================ gpu_check summary ================
date:        $(date -u +%Y-%m-%dT%H:%MZ)
device:      $gpu (torch $torchv)
gpu tests:   $(status gpu_tests): ${tests_line:-no result line}
table bench: $(status bench_table): iddpm:cifar10-hybrid, bf16, batch 256, grid stride 10:
             table/bare throughput ${ratio:-n/a} (${ratio_ok})
DP bench:    $(status bench_dp)
$dp_lines
agreement:   $(status agreement)
$agree_lines
total:       $(( $(date +%s) - start )) s; logs in $log
EOF
exit $failed
