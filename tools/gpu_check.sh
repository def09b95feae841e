#!/usr/bin/env bash
# `make gpu-check`: every check that needs a GPU, in one command, for a device call of at most
# 10 minutes (tools/gpu_steps.sh: each step under the time still left, each run even where an
# earlier one failed), in order of what they tell. The exit status is 1 if any step failed or
# ran out of time.
#
# Reports in $OUT, 8 files (the device tool brings back 8):
#   steps.txt                          each step's exit status, seconds and limit
#   gpu.log                            the install, the build's output, pytest -m gpu
#   ptxas-report.txt                   registers, shared memory and spills per kernel
#   bench-kernels.json, bench-train.json, bench.txt (both benchmarks' printout)
#   sanitizer.log                      compute-sanitizer memcheck, then racecheck
#   ncu.txt                            Nsight Compute's counters of each convolution pass
set -u
source "$(dirname "$0")/gpu_steps.sh"

install_and_build
step gpu-tests "$out/gpu.log" "$python" -m pytest -q -rs -m gpu tests
step bench-kernels "$out/bench.txt" "$python" tools/bench_kernels.py --plans \
  --json "$out/bench-kernels.json"
step bench-train "$out/bench.txt" "$python" tools/bench_train.py --json "$out/bench-train.json"
for tool in memcheck racecheck; do
  CONVNET_SANITIZER=1 step "$tool" "$out/sanitizer.log" compute-sanitizer --tool "$tool" \
    --error-exitcode 1 "$python" -m pytest -q -m "gpu and not large" tests/test_kernels.py
done
# The counters of every convolution pass at batch 128 with the launcher's plans, each run once
# by the benchmark's output check: occupancy, issue and stall reasons, memory traffic. The clocks
# are left as they are (--clock-control none), as for the benchmark.
step ncu "$out/ncu.txt" ncu --clock-control none --kernel-name 'regex:conv_(forward|backward)' \
  --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
  --section SchedulerStats --section MemoryWorkloadAnalysis \
  "$python" tools/bench_kernels.py conv --check-only
exit "$failed"
