# Sourced by tools/gpu_check.sh and tools/gpu_train.sh: the GPU machine's Python, the reports
# folder, and `step`, which runs each step under the time still left of BUDGET seconds (one
# 10-minute device call by default) and at most the step's own limit, so that a slow step cannot
# take the time of the steps after it, and goes on where a step failed, so that one call brings
# back all it can. `failed` is 1 once any step failed, ran out of time or was skipped for want of
# it; an `extra` step (data for tuning, not a check) leaves it alone. In a copy of the tree
# without .git, CONVNET_COMMIT names its commit for the reports (convnet/provenance.py).
# STEPS, where set, names the only steps to run besides the set-up (preflight, install, build),
# so that a later call on a warm machine runs what an earlier one left out (make gpu-check
# STEPS="memcheck racecheck"); the others are listed as not asked for and leave `failed` alone.
# An `on_request` step runs only where STEPS names it (a check for which one call has no room).
python=${GPU_PYTHON:-python3}
only=${STEPS:-}
out=${OUT:?OUT names the folder for the reports}
budget=${BUDGET:-560}
if ! [[ $budget =~ ^[0-9]+$ ]]; then
  echo "tools/gpu_steps.sh: BUDGET must be whole seconds; got '$budget'" >&2
  exit 2
fi
# On this machine a GPU test that skips for want of a GPU is a fault (tests/targets.py).
export CONVNET_REQUIRE_GPU=1
# The tools (python tools/X.py puts tools/ first on the path, not the tree) find convnet in the
# tree even where its install failed.
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$out"
: >"$out/steps.txt"
failed=0

listed() {   # listed NAME WORD...: whether NAME is one of the WORDs
  local name=$1
  shift
  [[ " $* " == *" $name "* ]]
}

check_steps() {   # check_steps NAME...: the steps a script has; exit 2 if STEPS names another
  local name
  for name in $only; do
    if ! listed "$name" "$@"; then
      echo "$0: STEPS names '$name', which is none of its steps: $*" >&2
      exit 2
    fi
  done
}

step() {   # step NAME LOG MOST COMMAND...: run COMMAND for at most MOST seconds, output to LOG
  local name=$1 log=$2 most=$3
  shift 3
  if [ -n "$only" ] && ! listed "$name" preflight install build $only; then
    printf '%-14s not asked for (STEPS=%s)\n' "$name" "$only" | tee -a "$out/steps.txt"
    return 0
  fi
  local left=$((budget - SECONDS))
  if [ "$left" -lt 15 ]; then
    printf '%-14s skipped: no time left of %ss\n' "$name" "$budget" | tee -a "$out/steps.txt"
    failed=1
    return 1
  fi
  local limit=$((most < left ? most : left))
  echo "== $name: $*" >>"$log"
  local start=$SECONDS
  PYTHONUNBUFFERED=1 timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1
  local status=$?
  printf '%-14s exit %3d  %4ds  (limit %ss, %ss were left)\n' "$name" "$status" \
    $((SECONDS - start)) "$limit" "$left" | tee -a "$out/steps.txt"
  [ "$status" -eq 0 ] || failed=1
  return "$status"
}

on_request() {   # on_request NAME LOG MOST COMMAND...: a step run only where STEPS names it
  if ! listed "$1" $only; then
    printf '%-14s only on request (STEPS="%s")\n' "$1" "$1" | tee -a "$out/steps.txt"
    return 0
  fi
  step "$@"
}

extra() {   # extra NAME LOG MOST COMMAND...: a step whose outcome does not change `failed`
  local failed_before=$failed
  step "$@"
  local status=$?
  failed=$failed_before
  return "$status"
}

# What the machine's Python holds (versions, the GPU, a CuPy kernel compiled through NVRTC, the
# packages the install and the tests import), then the package (its C++ extensions) and the
# kernels, from the packages already there: a GPU machine may have no network (pip may install
# into its system Python). The install is left out where the last one on this machine (build/ is
# kept between calls on a warm machine) built the same extension sources and they import; the
# build likewise (kernels/build.py). The build's ptxas report (registers, shared memory, spills
# per kernel) goes to the log.
preflight='import os, shutil, sys, sysconfig, time, numpy, cupy
print("python", sys.version.split()[0], "numpy", numpy.__version__, "cupy", cupy.__version__)
# What the install (the headers to build the extensions) and the later steps need, and how fast
# the reference side of the GPU tests will be (NumPy'"'"'s BLAS, one 2000² float64 product).
headers = os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))
print("Python.h", "found" if headers else "MISSING: the install cannot build the extensions")
for tool in ("nvcc", "compute-sanitizer", "ncu"):
    print(tool, shutil.which(tool) or "MISSING")
from convnet.provenance import blas   # the checkout'"'"'s, imported before the install
square = numpy.ones((2000, 2000))
begun = time.perf_counter()
square @ square
print("BLAS", blas(), "2000² float64 product in", f"{time.perf_counter() - begun:.3f} s")
import h5py, PIL, pybind11, pytest
print("h5py", h5py.__version__, "pillow", PIL.__version__, "pybind11", pybind11.__version__,
      "pytest", pytest.__version__)
print(cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(), "driver",
      cupy.cuda.runtime.driverGetVersion(), "runtime", cupy.cuda.runtime.runtimeGetVersion())
probe = cupy.zeros(4, dtype=cupy.float32)
probe.fill(1)
assert float(probe.sum()) == 4, "a CuPy kernel gave a wrong sum"
# The CUDA libraries CuPy loads only when first used (a CuPy wheel without its "ctk" extra takes
# them from the system): cuBLAS for the fully-connected products, cuRAND for the benchmarks.
ones = cupy.ones((2, 2), dtype=cupy.float32)
assert float((ones @ ones).sum()) == 8, "cuBLAS gave a wrong product"
assert cupy.random.standard_normal(4, dtype=cupy.float32).shape == (4,)
from cupy.cuda import nccl
print("cuBLAS and cuRAND load; NCCL", "loads" if nccl.available else
      "MISSING: the NCCL tests will skip")'
install_stamp=build/gpu-install.sha256

extension_sources_hash() {
  cat setup.py pyproject.toml kernels/*.cpp kernels/*.h kernels/*.cu kernels/*.cuh | sha256sum
}

# Without CuPy, or a GPU it sees (not a GPU machine, or GPU_PYTHON not the Python meant), every
# step would fail, each with its tracebacks in the logs and the install meant for the GPU
# machine's Python tried on this one: one line says why instead, before any step.
stop_without_a_gpu() {
  local why status=0
  # Bounded as every step is: a driver that hangs must not take the call's time.
  # The project's one answer (cuda_devices): it needs only NumPy, not the install below.
  why=$(timeout --kill-after=10 60 "$python" -c \
    'import sys; from convnet.backend.cuda.devices import cuda_devices; sys.exit(cuda_devices()[1])' \
    2>&1) || status=$?
  [ "$status" -eq 0 ] && return
  case $status in
    124 | 137) why="no answer within 60 s" ;;
    *) why=${why##*$'\n'} why=${why:-exit status $status} ;;   # the error's last line
  esac
  echo "$0: $python sees no GPU ($why): run it on a GPU machine, GPU_PYTHON naming its" \
    "Python with CuPy" | tee -a "$out/steps.txt" >&2
  exit 2
}

install_and_build() {
  stop_without_a_gpu
  step preflight "$out/gpu.log" 60 "$python" -c "$preflight"
  local sources
  sources=$(extension_sources_hash)
  if [ "$(cat "$install_stamp" 2>/dev/null)" = "$sources" ] &&
      "$python" -c "import convnet._augment, convnet._emulator" 2>/dev/null; then
    printf '%-14s up to date: the last install here built these sources\n' install |
      tee -a "$out/steps.txt"
  else
    PIP_BREAK_SYSTEM_PACKAGES=1 step install "$out/gpu.log" 120 "$python" -m pip install -q \
      --no-index --no-build-isolation --no-deps -e . &&
      mkdir -p "$(dirname "$install_stamp")" && echo "$sources" >"$install_stamp"
  fi
  step build "$out/gpu.log" 120 "$python" kernels/build.py &&
    cat kernels/build/ptxas-report.txt >>"$out/gpu.log"
}
