#!/usr/bin/env bash
# `make gpu-train`: the default run on a GPU machine whose Python already has the packages (CuPy,
# h5py, tqdm, pybind11) and which may have no network, as `make train` would run it there
# (configs/fashion-mnist-gpu.json, GPU 0), within one call of BUDGET seconds
# (tools/gpu_steps.sh). The run's folder is $OUT/run, so that a call cut off at its limit still
# brings back its checkpoint: the limit's SIGTERM makes the run write last.h5 at the step it
# stopped. RUN_DIR names such a folder brought back by an earlier call (carried to this machine):
# it is copied into $OUT/run first, and the run goes on from that step (--resume auto), under its
# own recorded settings.
# Where data/fashion-mnist.h5 is missing, Fashion-MNIST is converted from the IDX files in
# $FASHION_MNIST_DIR (default: the Debian package's folder). Arguments go on to convnet.train.
#
# Reports in $OUT, 7 files:
#   steps.txt, gpu.log (install, build and its ptxas report, conversion, the training's
#   printout), and run/: the run's settings.json, epochs.csv, log.jsonl, last.h5, best.h5
set -u
source "$(dirname "$0")/gpu_steps.sh"
check_steps data train
run_dir=$out/run
mkdir -p "$run_dir"
if [ -n "${RUN_DIR:-}" ] && ! { [ -f "$RUN_DIR/last.h5" ] && cp -R "$RUN_DIR/." "$run_dir/"; }; then
  echo "tools/gpu_train.sh: RUN_DIR '$RUN_DIR' is not a run folder to go on from (no last.h5), or cannot be copied" |
    tee -a "$out/steps.txt" >&2
  exit 2
fi

install_and_build
if [ ! -e data/fashion-mnist.h5 ]; then
  step data "$out/gpu.log" 120 "$python" -m convnet.data.fashion_mnist \
    ${FASHION_MNIST_DIR:+--source "$FASHION_MNIST_DIR"} --output data/fashion-mnist.h5
fi
step train "$out/gpu.log" "$budget" "$python" -m convnet.train -c configs/fashion-mnist-gpu.json \
  --output-dir "$run_dir" --resume auto "$@"
exit "$failed"
