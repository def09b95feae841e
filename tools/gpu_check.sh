#!/usr/bin/env bash
# `make gpu-check`: every check that needs a GPU, in one command, for a device call of at most
# 10 minutes (tools/gpu_steps.sh: each step under its own limit and the time still left of
# BUDGET, each run even where an earlier one failed), in order of what they tell: correctness,
# then the benchmarks' figures, then the sanitizer, then what tuning needs (ncu and the
# other plans' timings: extra steps, whose outcome leaves the exit status alone). With a smaller
# BUDGET the last steps are the ones left out; STEPS="memcheck racecheck" (say) runs only those
# after the set-up, in a later call. Two sanitizer checks run only where STEPS names them, for want
# of room in one call: STEPS="synccheck initcheck". The exit status is 1 if a check failed, ran out
# of time or was left out (not one that STEPS leaves out).
#
# Reports in $OUT, 8 files (the GPU machine returns at most 8):
#   steps.txt           each step's exit status, seconds and limit
#   gpu.log             the install, the build's output and ptxas report, pytest -m gpu
#   bench-kernels.json  every kernel pass against cuDNN and the copy bandwidth
#   bench-train.json    a training step against PyTorch, and its breakdown per layer
#   bench.txt           the printout of the three benchmark runs
#   sanitizer.log       compute-sanitizer memcheck, then racecheck (synccheck, initcheck)
#   ncu.txt             Nsight Compute's counters of each convolution pass
#   bench-plans.json    each convolution pass under the other tile sides and numbers of slices
set -u
source "$(dirname "$0")/gpu_steps.sh"
check_steps gpu-tests bench-kernels bench-train memcheck racecheck synccheck initcheck ncu \
  bench-plans

install_and_build
# -v: a step cut off at its limit still shows, test by test, how far it came. The files that hold
# GPU tests (tests/test_gpu_steps.py checks the list), the kernels' first: named, so that no other
# test file's imports can stop the run, and in the order of what they tell; a file that cannot be
# imported (training's, where the install failed to build the data loader's extension) is an
# error in the log, and the others still run.
step gpu-tests "$out/gpu.log" 210 "$python" -m pytest -v -rs --durations=15 -m gpu \
  --continue-on-collection-errors \
  tests/test_kernels.py tests/test_train_gpu.py tests/test_kernels_network.py tests/test_replicas.py
step bench-kernels "$out/bench.txt" 90 "$python" tools/bench_kernels.py \
  --json "$out/bench-kernels.json"
step bench-train "$out/bench.txt" 90 "$python" tools/bench_train.py --json "$out/bench-train.json"
# The kernel tests at small shapes, both element types; not the finite-difference checks, which
# run no kernel the others leave out and would take over half of the launches, nor the shapes
# drawn at random (a quarter of the rest): the emulator's AddressSanitizer build runs those in
# CI, which finds accesses out of bounds but not races. On request: synccheck (a barrier that not
# every thread of a block reaches, shown by the emulator only where a thread returns before it)
# and initcheck (a read of device memory that nothing wrote).
sanitize() {   # sanitize RUNNER TOOL: the kernel tests under compute-sanitizer's TOOL, a step
  CONVNET_SANITIZER=1 "$1" "$2" "$out/sanitizer.log" 120 compute-sanitizer --tool "$2" \
    --error-exitcode 1 "$python" -m pytest -v -m "gpu and not large" \
    -k "not finite_differences and not random_shapes" tests/test_kernels.py
}
for tool in memcheck racecheck; do sanitize step "$tool"; done
for tool in synccheck initcheck; do sanitize on_request "$tool"; done
# The counters of every convolution pass at batch 128 with the launcher's plans and, for conv3-5,
# Winograd's products, each run once by the benchmark's output check: occupancy, issue and stall
# reasons, memory traffic. The clocks are left as they are (--clock-control none), as for the
# benchmark.
extra ncu "$out/ncu.txt" 90 ncu --clock-control none \
  --kernel-name 'regex:conv_(forward|backward)|winograd_(filter_)?product' \
  --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
  --section SchedulerStats --section MemoryWorkloadAnalysis \
  "$python" tools/bench_kernels.py conv --check-only
extra bench-plans "$out/bench.txt" 600 "$python" tools/bench_kernels.py conv --plans \
  --json "$out/bench-plans.json"
exit "$failed"
