"""What runs the CUDA kernels: a GPU through CuPy, or the emulator on the host. The op modules
beside this file compute grids and check shapes once, for both; only the launcher differs.

A launcher has
  xp                      its array module (cupy on a GPU, numpy in the emulator)
  path                    which code runs: "fatbin sm_90", "nvrtc (why)" or "emulator"
  launch(kernel, dtype, grid, block, args)
                          runs kernel<float> or kernel<double> (by the dtype) on a grid of blocks;
                          args in the kernel's parameter order: arrays, and NumPy scalars of the
                          parameter's exact type (np.int32 for int, np.uint32 for u32, the element
                          type for T): the emulator refuses anything else, as a GPU would misread it
  empty(shape, dtype)     an output array; with poison=True filled with NaN (0xFF bytes for
                          integer arrays), so an element a kernel fails to write shows up
  context()               the device context ops run in (the GPU's; nothing for the emulator)

Kernel sources are kernels/*.cu of the source tree (convnet is installed editable); their build
settings come from kernels/build.py, their launch geometry from kernels/tiles.cuh.
"""
import contextlib
import importlib.util
import json
import os
import re

import numpy as np

KERNELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "kernels")
KERNELS = os.path.normpath(KERNELS)
C_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


def _load_build_settings():
    spec = importlib.util.spec_from_file_location("convnet_kernel_build",
                                                  os.path.join(KERNELS, "build.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build_settings()


def _tile_constants():
    """The `constexpr int kName = value;` lines of kernels/tiles.cuh, products allowed."""
    constants = {}
    with open(os.path.join(KERNELS, "tiles.cuh")) as file:
        for name, expression in re.findall(r"^constexpr int (k\w+) = ([^;]+);", file.read(),
                                           re.MULTILINE):
            constants[name] = int(eval(expression, {"__builtins__": {}}, dict(constants)))
    return constants


TILES = _tile_constants()


def c_type(dtype):
    dtype = np.dtype(dtype)
    if dtype not in C_TYPES:
        raise TypeError(f"the CUDA kernels take float32 or float64 arrays; got {dtype}")
    return C_TYPES[dtype]


def _dim3(value):
    value = (value,) if isinstance(value, int) else tuple(value)
    if not 1 <= len(value) <= 3 or any(int(v) < 1 for v in value):
        raise ValueError(f"a grid or block is 1 to 3 positive sizes; got {value}")
    return tuple(int(v) for v in value) + (1,) * (3 - len(value))


class Launcher:
    xp = np

    def __init__(self, *, poison=False):
        self.poison = poison

    def empty(self, shape, dtype):
        array = self.xp.empty(shape, dtype=dtype)
        if self.poison:
            array.fill(np.nan if np.dtype(dtype).kind == "f" else np.iinfo(dtype).max)
        return array

    def context(self):
        return contextlib.nullcontext()


class Emulated(Launcher):
    """The kernels compiled for the host (convnet._emulator, kernels/emulator.cpp)."""
    path = "emulator"

    def __init__(self, *, poison=False):
        super().__init__(poison=poison)
        from convnet import _emulator
        self._emulator = _emulator

    def launch(self, kernel, dtype, grid, block, args):
        self._emulator.launch(f"{kernel}<{c_type(dtype)}>", _dim3(grid), _dim3(block), tuple(args))


class Gpu(Launcher):
    """The kernels on a CUDA GPU through CuPy: from the fatbin `make kernels` built when it was
    built from the current sources and holds code this GPU runs, otherwise compiled by NVRTC."""

    def __init__(self, device_id=0, *, poison=False):
        super().__init__(poison=poison)
        import cupy
        self.xp = cupy
        self.device = cupy.cuda.Device(device_id)
        with self.device:
            self._module, self._names, self.path = self._load_module(cupy)
        self._functions = {}

    def _load_module(self, cupy):
        capability = int(self.device.compute_capability)
        fatbin = os.path.join(build.DEFAULT_OUTPUT, build.FATBIN)
        manifest_path = os.path.join(build.DEFAULT_OUTPUT, build.MANIFEST)
        reason = "no fatbin: run make kernels"
        if os.path.exists(fatbin) and os.path.exists(manifest_path):
            with open(manifest_path) as file:
                manifest = json.load(file)
            ptx_arch = int(manifest["ptx"].split("_")[1])
            if manifest["source_hash"] != build.source_hash():
                reason = "the fatbin is older than the kernel sources: run make kernels"
            elif f"sm_{capability}" in manifest["archs"]:
                return (cupy.RawModule(path=fatbin), manifest["mangled_names"],
                        f"fatbin sm_{capability}")
            elif capability >= ptx_arch:
                return (cupy.RawModule(path=fatbin), manifest["mangled_names"],
                        f"fatbin PTX {manifest['ptx']} for sm_{capability}")
            else:
                reason = f"the fatbin has no code for sm_{capability}"
        expressions = [f"{name}<{t}>" for name in build.kernel_names() for t in ("float", "double")]
        with open(build.SOURCE) as file:
            source = file.read()
        module = cupy.RawModule(code=source, options=tuple(build.NVRTC_OPTIONS),
                                name_expressions=expressions)
        return module, {name: name for name in expressions}, f"nvrtc ({reason})"

    def context(self):
        return self.device

    def launch(self, kernel, dtype, grid, block, args):
        name = f"{kernel}<{c_type(dtype)}>"
        if name not in self._functions:
            self._functions[name] = self._module.get_function(self._names[name])
        self._functions[name](_dim3(grid), _dim3(block), tuple(args))
