# Sourced by tools/gpu_check.sh and tools/gpu_train.sh: the GPU machine's Python, the reports
# folder, and `step`, which runs each step under the time still left of BUDGET seconds (one
# 10-minute device call by default) and goes on where a step failed, so that one call brings back
# all it can. `failed` is 1 once any step failed or ran out of time. In a copy of the tree without
# .git, CONVNET_COMMIT names its commit for the reports (convnet/provenance.py).
python=${GPU_PYTHON:-python3}
out=${OUT:?OUT names the folder for the reports}
budget=${BUDGET:-560}
# On this machine a GPU test that skips for want of a GPU is a fault (tests/targets.py).
export CONVNET_REQUIRE_GPU=1
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

# The package (its C++ extensions) and the kernels, from the packages already there: a GPU
# machine may have no network.
install_and_build() {
  step install "$out/gpu.log" "$python" -m pip install -q --no-build-isolation --no-deps -e .
  step build "$out/gpu.log" "$python" kernels/build.py
  cp kernels/build/ptxas-report.txt "$out/" 2>/dev/null
}
