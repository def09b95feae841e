"""Shared fixtures. Every test that draws random numbers takes `rng`: a fresh seed per run,
printed so that a failure shows it (pytest prints captured output of failed tests); set
CONVNET_TEST_SEED to replay one."""
import os
import secrets
import subprocess
import sys

import numpy as np
import pytest

from convnet.backend.cuda.launch import DETERMINISTIC_CUBLAS_WORKSPACE

# One GPU's two towers (--gpus 0,0) run cuBLAS products on two streams through one handle: as
# convnet/train.py does for training, before the first product of this process's tests.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", DETERMINISTIC_CUBLAS_WORKSPACE)
# The commands the tests start buffer their output as they do for a user, who seldom sets
# PYTHONUNBUFFERED: a shell (or image) that sets it would hide what a buffer holds back.
os.environ.pop("PYTHONUNBUFFERED", None)


@pytest.fixture
def rng():
    seed = int(os.environ.get("CONVNET_TEST_SEED", secrets.randbits(32)))
    print(f"random seed: {seed} (replay with CONVNET_TEST_SEED={seed})")
    return np.random.default_rng(seed)


@pytest.fixture
def not_utf8():
    """The environment of a user whose locale's encoding is not UTF-8 (EUC-JP, cp1252; here
    ASCII, the strictest: LC_ALL=C with the UTF-8 mode that C would switch on, off), where a file
    read without its encoding named fails at the first byte outside that encoding."""
    environment = dict(os.environ, LC_ALL="C", PYTHONUTF8="0")
    environment.pop("PYTHONIOENCODING", None)
    return environment


@pytest.fixture
def pipe():
    """make(path) → path, a named pipe there. Inputs that are pipes must be refused unopened: an
    open would wait for a writer for ever. Where one is opened all the same, a writer (another
    process: h5py waits holding the interpreter's lock) opens and closes it within seconds, and
    the reader sees an empty file, so the test fails, not hangs."""
    made, writers = [], []

    def make(path):
        os.mkfifo(path)
        made.append(path)
        writers.append(subprocess.Popen([sys.executable, "-c", LET_READERS_GO, str(path)]))
        return path

    yield make
    for writer in writers:
        writer.kill()
        writer.wait()


LET_READERS_GO = """
import os, sys, time
while True:
    time.sleep(2)
    try:   # succeeds only while a reader waits
        os.close(os.open(sys.argv[1], os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass
"""


def pytest_configure(config):
    # Under compute-sanitizer (make gpu-check sets CONVNET_SANITIZER): every array its own
    # cudaMalloc, since an access past an array's end that lands inside CuPy's memory pool is
    # valid memory to memcheck.
    if os.environ.get("CONVNET_SANITIZER"):
        import cupy
        cupy.cuda.set_allocator(None)


def pytest_report_header(config):
    from targets import gpu_unavailable_reason
    reason = gpu_unavailable_reason()
    from convnet.backend.cuda.launch import load_emulator
    try:    # the build that loads, not the variable that asks for it
        module, emulator = load_emulator(os.environ.get("CONVNET_EMULATOR", ""))
        flushes = "flushed" if module.flushes_float_denormals else "kept"
        emulator += f" (fibers by {module.fiber_switch}; float32 denormals {flushes})"
    except Exception as error:
        emulator = f"emulator unavailable ({error})"
    return (f"CUDA kernels: {emulator} always; "
            f"GPU {'available' if reason is None else 'skipped: ' + reason}")
