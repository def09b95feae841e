"""convnet: AlexNet (Krizhevsky, Sutskever & Hinton, 2012) with two-tower model parallelism.

Package metadata and the list of compiled extensions live here; `pip install -e .` builds them.
"""
import importlib.util
import os
import re

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
# The kernels' build settings (kernels/build.py, standard library only): one place for them.
_spec = importlib.util.spec_from_file_location(
    "kernel_build", os.path.join(HERE, "kernels", "build.py"))
kernel_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kernel_build)

# The data loader's augmenter: -O3, std::thread, and no fused multiply-add so that its float32
# results equal NumPy's bit for bit (see kernels/augment.cpp).
augment = Pybind11Extension("convnet._augment", ["kernels/augment.cpp"], cxx_std=17,
                            extra_compile_args=["-O3", "-pthread", "-ffp-contract=off"],
                            extra_link_args=["-pthread"])

# The CUDA kernels compiled for the host against kernels/emulate.h: CI runs every kernel this way,
# and again through the AddressSanitizer build, which is optional: a compiler without the
# sanitizer's runtime skips it (tests/test_emulator_asan.py then says so).
KERNEL_SOURCES = [os.path.relpath(path, HERE) for path in kernel_build.source_files()]
emulator = Pybind11Extension("convnet._emulator", ["kernels/emulator.cpp"], cxx_std=17,
                             include_dirs=["kernels"], depends=KERNEL_SOURCES,
                             extra_compile_args=kernel_build.EMULATOR_FLAGS)
emulator_asan = Pybind11Extension(f"convnet.{kernel_build.EMULATOR_ASAN_MODULE}",
                                  ["kernels/emulator.cpp"], cxx_std=17, include_dirs=["kernels"],
                                  depends=KERNEL_SOURCES,
                                  extra_compile_args=kernel_build.EMULATOR_ASAN_FLAGS,
                                  extra_link_args=kernel_build.EMULATOR_SANITIZERS,
                                  optional=True)


class build_ext_side_by_side(build_ext):
    """Compiles the extensions side by side, a job per core: they are independent, and the two
    emulators (the same kernels, twice) take most of an install's time."""

    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:
            self.parallel = os.cpu_count() or 1


# Data-parallel replicas on the CPU (convnet/replicas): mpi4py with MPICH's PyPI build, which
# brings its own mpiexec, so one machine and CI need nothing else. On a cluster, build mpi4py
# against the site's MPI instead (README, "Several machines").
MPI = ["mpi4py>=4.0", "mpich>=4.1"]

# The version's one place is convnet/__init__.py, read as text: importing the package needs its
# dependencies, which this file installs.
with open(os.path.join(HERE, "convnet", "__init__.py")) as f:
    VERSION = re.search(r'^__version__ = "([^"]+)"', f.read(), re.MULTILINE).group(1)

setup(
    name="convnet",
    version=VERSION,
    description="A faithful reproduction of AlexNet with hand-written CUDA kernels",
    python_requires=">=3.10",
    packages=find_packages(include=["convnet", "convnet.*"]),
    install_requires=["numpy>=1.24", "h5py>=3.8", "pillow>=10.0", "tqdm>=4.60",
                      "matplotlib>=3.7"],   # the figures (python -m convnet.figures)
    extras_require={
        # CuPy with the CUDA libraries it loads (cuBLAS, NVRTC, the runtime: its extra ctk) from
        # PyPI, so that a GPU machine needs only its driver, not a CUDA toolkit installed
        "cuda": ["cupy-cuda13x[ctk]>=14.0"],      # CUDA 13 drivers, as kernels/build.py's nvcc
        "cuda12": ["cupy-cuda12x[ctk]>=14.0"],    # CUDA 12 drivers, Volta (kernels via NVRTC)
        "mpi": MPI,
        # scikit-learn for the two photographs it ships (tests/imagetree.py); MPI for the
        # replicas' tests, which run real mpiexec jobs; NVRTC, CUDA 13's and 12's, for the
        # backend's run-time compile of the kernels (tests/test_build.py), which needs no GPU;
        # cuobjdump and nvdisasm for the kernels' machine code (tools/sass_loops.py), which
        # nvcc's toolkit may lack; the build's own requirements, for tools/mutants.py's
        # rebuilds of mutated kernels
        "test": ["pytest>=7.4", "scikit-learn>=1.3", "nvidia-cuda-nvrtc>=13.0,<14",
                 "nvidia-cuda-nvrtc-cu12>=12.0,<13", "nvidia-cuda-cuobjdump>=13.0,<14",
                 "nvidia-cuda-nvdisasm>=13.0,<14", "setuptools>=64", "pybind11>=2.11"] + MPI,
    },
    ext_modules=[augment, emulator, emulator_asan],
    cmdclass={"build_ext": build_ext_side_by_side},
)
