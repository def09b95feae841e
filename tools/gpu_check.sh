#!/usr/bin/env bash
# `make gpu-check`: every check that needs a GPU, in one command, for a device call of at most
# 10 minutes. The steps run in order of what they tell, each under the time still left of
# BUDGET seconds, and each runs even where an earlier one failed, so that one call brings back
# all it can. The exit status is 1 if any step failed or ran out of time.
#
# Reports in $OUT, 8 files (the device tool brings back 8):
#   steps.txt                          each step's exit status, seconds and limit
#   gpu.log                            the install, the build's output, pytest -m gpu
#   ptxas-report.txt                   registers, shared memory and spills per kernel
#   bench-kernels.json, bench-train.json, bench.txt (both benchmarks' printout)
#   sanitizer.log                      compute-sanitizer memcheck, then racecheck
#   ncu.txt                            Nsight Compute's counters of each convolution pass
set -u
python=${GPU_PYTHON:-python3}
out=${OUT:?OUT names the folder for the reports}
budget=${BUDGET:-560}
mkdir -p "$out"
: >"$out/steps.txt"
failed=0

step() {   # step NAME LOG COMMAND...: run COMMAND, its output appended to LOG
  local name=$1 log=$2
  shift 2
  local left=$((budget - SECONDS))
  if [ "$left" -lt 15 ]; then
    printf '%-14s skipped: no time left of %ss\n' "$name" "$budget" | tee -a "$out/steps.txt"
    failed=1
    return
  fi
  echo "== $name: $*" >>"$log"
  local start=$SECONDS
  PYTHONUNBUFFERED=1 timeout --kill-after=10 "$left" "$@" >>"$log" 2>&1
  local status=$?
  printf '%-14s exit %3d  %4ds  (%ss were left)\n' "$name" "$status" $((SECONDS - start)) \
    "$left" | tee -a "$out/steps.txt"
  [ "$status" -eq 0 ] || failed=1
}

step install "$out/gpu.log" "$python" -m pip install -q --no-build-isolation --no-deps -e .
step build "$out/gpu.log" "$python" kernels/build.py
cp kernels/build/ptxas-report.txt "$out/" 2>/dev/null
step gpu-tests "$out/gpu.log" "$python" -m pytest -q -rs -m gpu tests
step bench-kernels "$out/bench.txt" "$python" tools/bench_kernels.py --plans \
  --json "$out/bench-kernels.json"
step bench-train "$out/bench.txt" "$python" tools/bench_train.py --json "$out/bench-train.json"
for tool in memcheck racecheck; do
  step "$tool" "$out/sanitizer.log" compute-sanitizer --tool "$tool" --error-exitcode 1 \
    "$python" -m pytest -q -m "gpu and not large" tests/test_kernels.py
done
# The counters of every convolution pass at batch 128 with the launcher's plans, each run once
# by the benchmark's output check: occupancy, issue and stall reasons, memory traffic. The clocks
# are left as they are (--clock-control none), as for the benchmark.
step ncu "$out/ncu.txt" ncu --clock-control none --kernel-name 'regex:conv_(forward|backward)' \
  --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
  --section SchedulerStats --section MemoryWorkloadAnalysis \
  "$python" tools/bench_kernels.py conv --check-only
exit "$failed"
