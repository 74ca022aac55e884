#!/usr/bin/env bash
# The distillation benchmark (benchmarks/train_distill.py) at 128 px on one large GPU, in about
# 10 minutes, with no network. The dataset is rendered beforehand, on any machine (CPU):
#
#   python benchmarks/train_distill.py data --work distill-128 --size 128
#   python benchmarks/train_distill.py pack --work distill-128 --archive distill-128.tar.gz
#
# and carried to the GPU machine, where this script unpacks it, trains (the VAE, stage 1,
# stage 2: bf16 autocast on CUDA), evaluates and prints the table:
#
#   benchmarks/train_distill_gpu.sh distill-128.tar.gz WORK [extra train_distill.py options]
#
# Every minute it rewrites WORK/report.json (and prints the table so far), so a run cut short
# still reports what it measured. Phase budgets (minutes) come from the environment:
# VAE_MINUTES (1.5), STAGE1_MINUTES (2.5), STAGE2_MINUTES (3.0). The plumbing on a CPU, in a few
# minutes:  benchmarks/train_distill_gpu.sh ARCHIVE WORK --device cpu --smoke
set -euo pipefail

archive=${1:?usage: train_distill_gpu.sh ARCHIVE WORK [options]}
work=${2:?usage: train_distill_gpu.sh ARCHIVE WORK [options]}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python}
script="$here/train_distill.py"
options=(--work "$work" --size "${SIZE:-128}" --device cuda --threads "${THREADS:-8}"
         --vae-minutes "${VAE_MINUTES:-1.5}" --stage1-minutes "${STAGE1_MINUTES:-2.5}"
         --stage2-minutes "${STAGE2_MINUTES:-3.0}" "$@")

start=$(date +%s)
"$python" "$script" unpack --work "$work" --archive "$archive"
"$python" "$script" all "${options[@]}" > "$work/all.log" 2>&1 &
run=$!
trap 'kill -TERM "$run" 2>/dev/null || true' INT TERM  # a background job ignores SIGINT
while kill -0 "$run" 2>/dev/null; do
    for _ in $(seq 60); do kill -0 "$run" 2>/dev/null || break; sleep 1; done
    echo "--- $(( $(date +%s) - start )) s"
    "$python" "$script" report "${options[@]}" | tail -n +2 || true
done
status=0
wait "$run" || status=$?
tail -n 5 "$work/all.log"
"$python" "$script" report "${options[@]}"
echo "total wall time: $(( $(date +%s) - start )) s (exit $status)"
exit "$status"
