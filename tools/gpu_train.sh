#!/usr/bin/env bash
# `make gpu-train`: the default run on a GPU machine whose Python already has the packages (CuPy,
# h5py, tqdm, pybind11) and which may have no network, as `make train` would run it there
# (configs/fashion-mnist-gpu.json, GPU 0), within one call of BUDGET seconds
# (tools/gpu_steps.sh). The run resumes from $RUN_DIR/last.h5 where there is one, so a run cut off
# by the budget goes on in the next call from its last finished epoch, given that folder back;
# RUN_DIR is a folder of its own by default, since --resume auto would go on with a CPU run of
# runs/fashion-mnist under that run's recipe.
# Where data/fashion-mnist.h5 is missing, Fashion-MNIST is converted from the IDX files in
# $FASHION_MNIST_DIR (default: the Debian package's folder). Arguments go on to convnet.train.
#
# Reports in $OUT, 7 files:
#   steps.txt, gpu.log (install, build and its ptxas report, conversion, the training's
#   printout), and the run's settings.json, epochs.csv, log.jsonl, last.h5, best.h5
set -u
source "$(dirname "$0")/gpu_steps.sh"
run_dir=${RUN_DIR:-runs/fashion-mnist-gpu}

install_and_build
if [ ! -e data/fashion-mnist.h5 ]; then
  step data "$out/gpu.log" 120 "$python" -m convnet.data.fashion_mnist \
    ${FASHION_MNIST_DIR:+--source "$FASHION_MNIST_DIR"} --output data/fashion-mnist.h5
fi
step train "$out/gpu.log" "$budget" "$python" -m convnet.train -c configs/fashion-mnist-gpu.json \
  --output-dir "$run_dir" --resume auto "$@"
for report in settings.json epochs.csv log.jsonl last.h5 best.h5; do
  cp "$run_dir/$report" "$out/" 2>/dev/null
done
exit "$failed"
