# A thin index of the project's commands; each target's recipe is the real command.
SHELL  := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
MODEL  ?= 2012
IMAGENET ?=
RANKS  ?= 2
# On a GPU machine: the Python that has CuPy (and PyTorch for the peer), and where make gpu-check
# and make gpu-train write their reports.
GPU_PYTHON ?= python3
OUT ?= bench/out

FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
# Where nvidia-smi lists a GPU, the set-up adds the CuPy of its driver's CUDA (12, or 13 and later:
# the extras cuda12 and cuda of setup.py), so that training runs on it; an older driver gets none.
# CUDA 13 compiles for no GPU older than compute capability 7.5 (Volta), which a CUDA 13 driver
# still runs: there, CUDA 12's CuPy.
CUDA_EXTRA := $(shell nvidia-smi -L >/dev/null 2>&1 && { nvidia-smi | \
  sed -n 's/.*CUDA Version: *\([0-9][0-9]*\).*/\1/p' | head -n 1; \
  nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null; } | \
  awk 'NR == 1 {cuda = $$1; next} $$1 < 7.5 {volta = 1} \
       END {if (cuda == 12 || (cuda >= 13 && volta)) print ",cuda12"; \
            else if (cuda >= 13) print ",cuda"}')

.PHONY: help setup test train train-mpi figures summary bench-cpu imagenet bench-data kernels kernels-asan kernels-large mutants gpu-check gpu-train scaling

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(VENV)/.installed: setup.py pyproject.toml $(wildcard kernels/*.cpp kernels/*.cu kernels/*.cuh kernels/*.h)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[test$(CUDA_EXTRA)]'
	touch $@

setup: $(VENV)/.installed  ## create .venv and install convnet (editable) with its test tools

$(FASHION_MNIST):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y dataset-fashion-mnist || { apt-get update && apt-get install -y dataset-fashion-mnist; }; \
	else \
	  echo "Fashion-MNIST is missing: install the Debian package dataset-fashion-mnist (as root: apt-get install dataset-fashion-mnist), or pass --source DIR of its IDX files to python -m convnet.data.fashion_mnist"; exit 1; \
	fi

data/fashion-mnist.h5: $(FASHION_MNIST) | $(VENV)/.installed
	$(PY) -m convnet.data.fashion_mnist --output $@

# IMAGENET checked before anything runs: the set-up, minutes on a fresh clone, came first.
ifneq ($(filter imagenet,$(MAKECMDGOALS)),)
  ifeq ($(strip $(IMAGENET)),)
    $(error IMAGENET is not set: make imagenet IMAGENET=/path/to/ILSVRC2012, the folder holding train/ and val/)
  endif
endif

# The folder reaches the recipes through the environment (make puts a variable given on its
# command line there), so that no quote or backquote in it is the shell's to read.
IMAGENET_FLAGS = "$$IMAGENET" --output data/imagenet.h5 $(ARGS)
imagenet: imagenet-flags setup  ## prepare data/imagenet.h5 from IMAGENET=/path/to/ILSVRC2012 (train/<wnid>/, val/)
	$(PY) -m convnet.data.prepare $(IMAGENET_FLAGS)

# The default run's settings: on the CPU, 6 epochs (13.4 minutes on 2 cores in the run README
# reports); where a GPU trains, 30 (÷10 after 20 and 26; 91.8% when run on the CPU).
TRAIN_CONFIG := configs/fashion-mnist$(if $(CUDA_EXTRA),-gpu).json
TRAIN_FLAGS = -c $(TRAIN_CONFIG) $(ARGS)
MPI_TRAIN_FLAGS = -c configs/fashion-mnist.json --gpus cpu --output-dir runs/fashion-mnist-mpi$(RANKS) $(ARGS)

# A target's flags, checked first by module $(1) with the standard library alone
# (convnet/options.py, convnet/data/ilsvrc.py): a typo or a wrong folder is refused at once, not
# after the set-up's minutes. Its --help is the run's to print.
check-flags = $(PYTHON) -m $(1) $(2) >/dev/null
.PHONY: train-flags train-mpi-flags imagenet-flags   # steps of targets, which help does not list
train-flags:
	$(call check-flags,convnet.options,$(TRAIN_FLAGS))
train-mpi-flags:
	$(call check-flags,convnet.options,$(MPI_TRAIN_FLAGS))
imagenet-flags:
	$(call check-flags,convnet.data.ilsvrc,$(IMAGENET_FLAGS))

train: train-flags setup data/fashion-mnist.h5  ## the default run: scaled-down 2012 model on Fashion-MNIST (configs/fashion-mnist.json, -gpu.json on a GPU)
	$(PY) -m convnet.train $(TRAIN_FLAGS)

# RANKS checked before anything runs: a bad one would reach the shell's arithmetic, or mpirun.
ifneq ($(filter train-mpi,$(MAKECMDGOALS)),)
  ifeq ($(shell [[ '$(RANKS)' =~ ^[1-9][0-9]*$$ ]] && echo whole),)
    $(error RANKS must be a whole number of ranks, 1 or more; got '$(RANKS)')
  endif
endif

# One BLAS thread per core share, so that the ranks do not crowd each other's cores.
train-mpi: train-mpi-flags setup data/fashion-mnist.h5  ## the default run as RANKS data-parallel MPI ranks on this machine (default 2)
	threads=$$(( $$(nproc) / $(RANKS) )); [ $$threads -ge 1 ] || threads=1; \
	OMP_NUM_THREADS=$$threads OPENBLAS_NUM_THREADS=$$threads \
	$(VENV)/bin/mpirun -n $(RANKS) $(PY) -m convnet.train $(MPI_TRAIN_FLAGS)

figures: setup  ## the paper's figures and the curves of the default run, into runs/fashion-mnist/figures/
	$(PY) -m convnet.figures filters
	$(PY) -m convnet.figures predictions
	$(PY) -m convnet.figures neighbours
	$(PY) -m convnet.figures curves

test: setup $(FASHION_MNIST)  ## run the test suite: on the CPU, and the GPU tests on a GPU where there is one (else skipped with their reason)
	$(PY) -m pytest -q

summary: setup  ## print the layer table of MODEL (default 2012)
	$(PY) -m convnet.summary --model $(MODEL)

bench-cpu: setup  ## time one CPU training step, ours vs PyTorch (installs PyTorch 2.13, which it runs on the CPU)
	$(PY) -m convnet.summary --model $(MODEL) >/dev/null   # a bad MODEL, before the download
	$(PY) -m pip install -q torch==2.13.0
	$(PY) tools/bench_cpu_step.py --model $(MODEL) $(ARGS)

bench-data: setup  ## loader and prepare throughput, images/s per core, beside the GPU rate to sustain
	$(PY) tools/bench_data.py $(ARGS)

kernels: setup  ## nvcc: kernels/build/convnet.fatbin (sm_70..sm_90 as this nvcc supports, + PTX) and its ptxas report; the emulator
	$(PY) kernels/build.py

kernels-asan: setup  ## the kernel tests again on the emulator's AddressSanitizer build, and planted faults (tests/test_emulator_asan.py)
	$(PY) -m pytest -q tests/test_emulator_asan.py

# conv1's test_conv is left out: its input gradient, which training never asks for, fills a tile
# of 48 with 3 channels and idles 15 of its 16 taps at stride 4, so it took 57 minutes alone on the
# emulator at batch 128 (it passed: bench/results/kernels-large-emulator-conv1a-8675c96.txt).
kernels-large: setup  ## AlexNet's real shapes (the GPU tests marked large) through the emulator, before a GPU spends its time on them (about 10 minutes on 2 cores)
	CONVNET_LARGE_ON_EMULATOR=1 $(PY) -m pytest -v -rs --durations=0 -m large \
	  -k "emulator and not (test_conv and conv1a)" tests/test_kernels.py tests/test_kernels_network.py

# Earlier reports: each mutant's tests start with the file that killed it there.
MUTANT_REPORTS = $(wildcard bench/results/mutants*.json)
mutants: setup  ## mutation testing: each mistake of tools/mutants.py's catalogue, do the tests fail? (hours: README gives the last full run's time); report in bench/results/mutants.json
	$(PY) tools/mutants.py $(if $(MUTANT_REPORTS),--killers-first $(MUTANT_REPORTS)) \
	  --json bench/results/mutants.json

gpu-check:  ## on a GPU machine: build, GPU tests, benchmarks, compute-sanitizer, ncu; 8 reports in OUT (default bench/out; tools/gpu_check.sh)
	GPU_PYTHON=$(GPU_PYTHON) OUT=$(OUT) tools/gpu_check.sh

gpu-train:  ## on a GPU machine with the packages, network or none: the default run (resumes), its reports in OUT (default bench/out; tools/gpu_train.sh)
	GPU_PYTHON=$(GPU_PYTHON) OUT=$(OUT) tools/gpu_train.sh $(ARGS)

scaling: setup  ## data-parallel scaling on paper: bytes per replica, efficiency on 2-64 machines
	$(PY) tools/scaling.py $(ARGS)
