"""Where the CUDA kernels can run in this test session: the emulator always, a GPU when CuPy
finds one. Tests parametrized over KERNEL_TARGETS run on both; the GPU case carries the `gpu`
marker and is skipped with the reason where there is no GPU, or fails where CONVNET_REQUIRE_GPU
is set (make gpu-check sets it: on the GPU machine, a GPU test that does not run is a fault)."""
import functools
import os
import subprocess

import pytest

from convnet.backend import get_backend
from convnet.backend.cuda.devices import NO_CUPY, cuda_devices
from convnet.backend.cuda.launch import build


@functools.cache
def gpu_unavailable_reason():
    """None when a CUDA GPU is usable through CuPy, else why not."""
    reason = cuda_devices()[1]
    return f"{reason} (pip install -e '.[cuda]')" if reason == NO_CUPY else reason


def require_gpu():
    reason = gpu_unavailable_reason()
    if reason and os.environ.get("CONVNET_REQUIRE_GPU"):
        pytest.fail(f"GPU test cannot run: {reason} (CONVNET_REQUIRE_GPU is set)")
    if reason:
        pytest.skip(f"GPU test skipped: {reason}")


KERNEL_TARGETS = ["emulator", pytest.param("gpu", marks=pytest.mark.gpu)]


def skip_large_on_emulator(target):
    """Tests marked `large` (AlexNet's real shapes) take minutes to over an hour each through
    the emulator: the suite runs them on a GPU only. CONVNET_LARGE_ON_EMULATOR=1 runs them on
    the emulator too, a check that needs no GPU before a GPU spends its time on them."""
    if target == "emulator" and os.environ.get("CONVNET_LARGE_ON_EMULATOR") != "1":
        pytest.skip("AlexNet's real shapes run on the GPU only (slow on the emulator: "
                    "CONVNET_LARGE_ON_EMULATOR=1 runs them there)")


# A float32 convolution sums each output's k terms in sequence, one thread's running sum, where
# the reference's BLAS sums in blocks and vector lanes. Its error grows as about 0.7·u·√k of the
# output's scale (u = 2⁻²⁴). Through the emulator at AlexNet's shapes, batch 128: 2 to 9 times the
# reference's own error in the input gradients; 2.6e-6 of the scale at conv2's (k = 3200), 8.6
# times the reference's. This floor, a fraction of the scale, leaves 4 times that. Softmax sums
# each image's classes so too, where NumPy sums pairwise: with 1060 classes, 2.6e-6 of the largest
# probability, 45 times the reference's error, under the emulator's worst-case exp.
SEQUENTIAL_SUM_FLOOR = 1e-5
# Winograd's F(m × m, 3 × 3) rounds its transforms too, by output tile m: F(2 × 2)'s coefficients
# (0, ±1, ±½) add little, F(4 × 4)'s (up to 8 and 1/24) ten to twenty times more. Through the
# emulator at AlexNet's conv3-5 (batch 128), the float32 error came to at most 1.3e-6 of the scale
# with m = 2 and 1.7e-5 with m = 4 (filter gradients), 37 times the reference's own; over 30
# seeds of test_kernels' Winograd cases, 6.9e-7 and 1.4e-5. The floor for m = 4 leaves 3.5 times
# the largest.
WINOGRAD_FLOORS = {2: SEQUENTIAL_SUM_FLOOR, 4: 6e-5}


def kernel_backend(target, **options):
    """The CUDA backend on `target`, outputs poisoned with NaN before every kernel writes them;
    `options` the backend's others (conv_algorithm)."""
    if target == "gpu":
        require_gpu()
        backend = get_backend("cuda", poison=True, **options)
    else:
        backend = get_backend("emulator", poison=True, **options)
    print(f"kernels run on: {backend.name}")
    return backend


def program_on_emulate_h(folder, source, flags):
    """`source`, a C++ program that includes kernels/emulate.h, compiled by g++ with `flags` into
    folder/program: its path."""
    (folder / "program.cpp").write_text(source)
    compiled = subprocess.run(["g++", "-std=c++17", *flags, f"-I{build.KERNELS}", "program.cpp",
                               "-o", "program"], cwd=folder, capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr
    return folder / "program"
