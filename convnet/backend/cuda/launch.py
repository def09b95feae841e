"""What runs the CUDA kernels: a GPU through CuPy, or the emulator on the host. The op modules
beside this file compute grids and check shapes once, for both; only the launcher differs.

A launcher has
  xp                      its array module (cupy on a GPU, numpy in the emulator)
  path                    which code runs: "fatbin sm_90, built by nvcc 13.0.88", "nvrtc (why)"
                          or "emulator"
  launch(kernel, dtype, grid, block, args)
                          runs kernel<float> or kernel<double> (by the dtype) on a grid of blocks;
                          args in the kernel's parameter order: arrays, and NumPy scalars of the
                          parameter's exact type (np.int32 for int, np.uint32 for u32, the element
                          type for T): the emulator refuses anything else, as a GPU would misread it
  empty(shape, dtype)     an output array; with poison=True filled with NaN (for integer
                          arrays, their type's largest value: 0xFF in a dropout mask), so an
                          element a kernel fails to write shows up
  context()               the device context ops run in: the GPU's, and its own stream where it
                          has one; nothing for the emulator
  event(), wait(event)    a marker of the work queued so far, and later work waiting for one
                          (of any launcher): the order of two streams; no-ops in the emulator
  send(array, receiver)   a Parcel of an array for another launcher (a tensor crossing towers,
                          convnet.placement), made where the array is made
  receive(parcel)         its copy on this launcher's device, made where it is read;
                          route_from(sender) names the way

Kernel sources are kernels/*.cu of the source tree (convnet is installed editable); their build
settings come from kernels/build.py, their launch geometry from kernels/tiles.cuh.
"""
import contextlib
import ctypes
import dataclasses
import importlib
import importlib.util
import json
import os
import re
import subprocess

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
    with open(os.path.join(KERNELS, "tiles.cuh"), encoding="utf-8") as file:
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


# cuBLAS's workspace configuration under which products on concurrent streams of one GPU through
# one handle (CuPy's, per GPU) have the same bits run to run (cuBLAS's notes on reproducibility):
# set as CUBLAS_WORKSPACE_CONFIG before the handle is made, at a process's first product.
DETERMINISTIC_CUBLAS_WORKSPACE = ":4096:8"
MAX_GRID = (2 ** 31 - 1, 65535, 65535)   # CUDA's limits on every GPU this project builds for
MAX_BLOCK, MAX_BLOCK_THREADS = (1024, 1024, 64), 1024


def launch_geometry(kernel, grid, block):
    """(grid, block) as dim3 tuples, refused where a GPU would refuse them: the emulator
    enforces the same limits, so that a shape that outgrows them fails in CI too."""
    grid, block = _dim3(grid), _dim3(block)
    if any(g > limit for g, limit in zip(grid, MAX_GRID)):
        raise ValueError(f"{kernel}: grid {grid} exceeds CUDA's {MAX_GRID}")
    if any(b > limit for b, limit in zip(block, MAX_BLOCK)) or \
            block[0] * block[1] * block[2] > MAX_BLOCK_THREADS:
        raise ValueError(f"{kernel}: block {block} exceeds CUDA's {MAX_BLOCK} and "
                         f"{MAX_BLOCK_THREADS} threads")
    return grid, block


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

    def event(self):
        """A marker of the work queued so far (Gpu); none is needed where launches run one
        after another, in the order they are made."""
        return None

    def wait(self, event):
        """Later work waits for `event` (Gpu); nothing to do where launches run in order."""

    def route_from(self, sender):
        raise NotImplementedError

    def send(self, array, receiver):
        """A Parcel of `array` for `receiver`, made when the array's work has been queued: it
        marks that point (an event), so that the copy, queued later where the receiver reads the
        array, waits for nothing this launcher queues in between (the other tower's half of the
        same layer, say): the towers' work stays concurrent between the crossings."""
        route = receiver.route_from(self)
        if not array.flags.c_contiguous:
            raise ValueError("a crossing copies C-contiguous arrays only")
        payload = self._pack(array, route)
        return Parcel(payload, self.event(), route, self)

    def receive(self, parcel):
        """The parcel's array, copied onto this launcher's device, after the sender's work up
        to the parcel's making (and before this launcher's later work)."""
        self.wait(parcel.ready)
        return self._unpack(parcel)

    def _pack(self, array, route):
        """What travels: the array, or where the way needs one, a copy on its way (queued
        here)."""
        return array

    def _unpack(self, parcel):
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Parcel:
    """An array on its way from one launcher to another."""
    payload: object      # the sender's array, or its copy in host memory (STAGED)
    ready: object        # the sender's event once the payload is complete (None: in order)
    route: str
    sender: Launcher


# The libraries a Python must load first to run the emulator's AddressSanitizer build: the
# sanitizer's runtime, and the C++ runtime, whose exceptions it intercepts only where that was
# loaded when it started. The build also links the undefined-behaviour sanitizer's runtime (its
# alignment check: kernels/build.py), which loads with it.
ASAN_RUNTIMES = ("libasan.so", "libstdc++.so")
LINKED_RUNTIMES = ("libubsan.so",)
# Python's own allocations, never freed at exit, are not leaks to report.
ASAN_OPTIONS = "detect_leaks=0"


def asan_environment():
    """The variables that run a Python on the AddressSanitizer build of the emulator, or None
    where gcc lacks one of the sanitizers' runtimes that build needs."""
    found = {}
    for name in ASAN_RUNTIMES + LINKED_RUNTIMES:
        try:
            found[name] = subprocess.run(["gcc", f"-print-file-name={name}"],
                                         capture_output=True, text=True).stdout.strip()
        except FileNotFoundError:
            return None
        if not os.path.isabs(found[name]):      # gcc echoes a name it cannot find
            return None
    preload = [found[name] for name in ASAN_RUNTIMES]
    return {"CONVNET_EMULATOR": "asan", "LD_PRELOAD": " ".join(preload),
            "ASAN_OPTIONS": ASAN_OPTIONS}


def load_emulator(build_name):
    """(module, path) of the emulator build named by CONVNET_EMULATOR: "" the plain one,
    "asan" the AddressSanitizer one (kernels/emulator.cpp), whose runtime must be loaded."""
    if build_name == "":
        from convnet import _emulator
        return _emulator, "emulator"
    if build_name != "asan":
        raise ValueError(f"CONVNET_EMULATOR={build_name!r}: the emulator's builds are '' "
                         f"(plain) and 'asan' (AddressSanitizer)")
    # Importing the module without the runtime would end the process, not raise.
    if not hasattr(ctypes.CDLL(None), "__asan_init"):
        preload = " ".join(f"$(gcc -print-file-name={name})" for name in ASAN_RUNTIMES)
        raise RuntimeError(f'CONVNET_EMULATOR=asan needs AddressSanitizer\'s runtime loaded '
                           f'first: run Python with LD_PRELOAD="{preload}" '
                           f'ASAN_OPTIONS={ASAN_OPTIONS}')
    try:
        module = importlib.import_module(f"convnet.{build.EMULATOR_ASAN_MODULE}")
    except ImportError as error:
        raise RuntimeError(f"CONVNET_EMULATOR=asan: convnet.{build.EMULATOR_ASAN_MODULE} is not "
                           f"built ({error}); its build is optional and needs the compiler's "
                           f"AddressSanitizer: reinstall (pip install -e .) and read its "
                           f"output") from None
    return module, "emulator (AddressSanitizer)"


class Emulated(Launcher):
    """The kernels compiled for the host (convnet._emulator, kernels/emulator.cpp), or its
    AddressSanitizer build where the environment says CONVNET_EMULATOR=asan."""

    def __init__(self, *, poison=False):
        super().__init__(poison=poison)
        self.module, self.path = load_emulator(os.environ.get("CONVNET_EMULATOR", ""))

    def launch(self, kernel, dtype, grid, block, args):
        name = f"{kernel}<{c_type(dtype)}>"
        self.module.launch(name, *launch_geometry(name, grid, block), tuple(args))

    def route_from(self, sender):
        if not isinstance(sender, Emulated):
            raise TypeError(f"the emulator cannot receive arrays from {sender.path}")
        return "host copy"

    def _unpack(self, parcel):
        """A copy in host memory, made when the receiver reads it: two emulators stand in for
        two devices, so a crossing copies as it would between GPUs, each tower owns its arrays,
        and a sender that changed an array after sending it would show in the copy."""
        return np.array(parcel.payload, copy=True)


SAME_DEVICE, PEER, STAGED = ("between streams of one GPU", "peer-to-peer",
                              "staged through pinned host memory")


class Gpu(Launcher):
    """The kernels on a CUDA GPU through CuPy: from the fatbin `make kernels` built when it was
    built from the current sources and holds code this GPU runs, otherwise compiled by NVRTC.
    With own_stream, its work goes to a stream of its own (non-blocking), so that two launchers
    on one GPU run concurrently and order their shared tensors by events, as two GPUs would."""

    def __init__(self, device_id=0, *, poison=False, own_stream=False):
        super().__init__(poison=poison)
        import cupy
        import cupyx
        self.xp, self._cupyx = cupy, cupyx
        self.device = cupy.cuda.Device(device_id)
        with self.device:
            self._module, self._names, self.path = self._load_module(cupy)
            self.stream = cupy.cuda.Stream(non_blocking=True) if own_stream else None
        self._functions = {}
        self._routes = {}
        self._held = []   # (event, array): arrays a copy reads or writes, kept until it is done

    def _load_module(self, cupy):
        capability = int(self.device.compute_capability)
        fatbin = os.path.join(build.DEFAULT_OUTPUT, build.FATBIN)
        manifest_path = os.path.join(build.DEFAULT_OUTPUT, build.MANIFEST)
        reason = "no fatbin: run make kernels"
        if os.path.exists(fatbin) and os.path.exists(manifest_path):
            with open(manifest_path) as file:
                manifest = json.load(file)
            ptx_arch = int(manifest["ptx"].split("_")[1])
            built_by = int(re.match(r"nvcc (\d+)\.", manifest["nvcc"]).group(1))
            driver = cupy.cuda.runtime.driverGetVersion() // 1000
            native = f"sm_{capability}" in manifest["archs"]
            if manifest["source_hash"] != build.source_hash():
                reason = "the fatbin is older than the kernel sources: run make kernels"
            elif built_by > driver:
                reason = f"the fatbin needs a CUDA {built_by} driver; this one is CUDA {driver}"
            elif native or capability >= ptx_arch:
                code = f"sm_{capability}" if native else \
                    f"PTX {manifest['ptx']} for sm_{capability}"
                module = cupy.RawModule(path=fatbin)
                try:   # the module loads at its first function: load it here, or fall back
                    module.get_function(next(iter(manifest["mangled_names"].values())))
                    return (module, manifest["mangled_names"],
                            f"fatbin {code}, built by {manifest['nvcc']}")
                except cupy.cuda.driver.CUDADriverError as error:
                    reason = f"the fatbin did not load ({error})"
            else:
                reason = f"the fatbin has no code for sm_{capability}"
        expressions = build.kernel_instances()
        with open(build.SOURCE) as file:
            source = file.read()
        module = cupy.RawModule(code=source, options=tuple(build.nvrtc_options()),
                                name_expressions=expressions)
        return module, {name: name for name in expressions}, f"nvrtc ({reason})"

    @contextlib.contextmanager
    def context(self):
        with self.device, (self.stream or contextlib.nullcontext()):
            yield

    def launch(self, kernel, dtype, grid, block, args):
        name = f"{kernel}<{c_type(dtype)}>"
        if name not in self._functions:
            self._functions[name] = self._module.get_function(self._names[name])
        self._functions[name](*launch_geometry(name, grid, block), tuple(args))

    def route_from(self, sender):
        """How arrays come from `sender`: SAME_DEVICE, PEER where this GPU can reach the
        sender's memory (access is enabled both ways on first use), else STAGED."""
        if not isinstance(sender, Gpu) or self.stream is None or sender.stream is None:
            raise TypeError("a crossing between GPU launchers needs both on streams of their "
                            "own (gpu_backend(own_stream=True))")
        key = sender.device.id
        if key not in self._routes:
            runtime = self.xp.cuda.runtime
            if sender.device.id == self.device.id:
                self._routes[key] = SAME_DEVICE
            elif runtime.deviceCanAccessPeer(self.device.id, sender.device.id) and \
                    runtime.deviceCanAccessPeer(sender.device.id, self.device.id):
                # Through CuPy's own call for it, which takes access already enabled (by the
                # other tower's launcher, or by CuPy) and clears the error that the second
                # enable leaves as CUDA's last error, which the next library to check it
                # (PyTorch after its launches) would report as its own failure.
                for device, peer in ((self.device, sender.device.id),
                                     (sender.device, self.device.id)):
                    with device:
                        runtime._deviceEnsurePeerAccess(peer)
                self._routes[key] = PEER
            else:
                self._routes[key] = STAGED
        return self._routes[key]

    def _pack(self, array, route):
        """Staged: the copy into pinned host memory, queued on this stream now, after the
        array's work and before anything queued later."""
        if route != STAGED:
            return array
        buffer = self._cupyx.empty_pinned(array.shape, array.dtype)
        runtime = self.xp.cuda.runtime
        with self.device:
            runtime.memcpyAsync(buffer.ctypes.data, array.data.ptr, array.nbytes,
                                runtime.memcpyDeviceToHost, self.stream.ptr)
        self._hold(buffer)   # written by the copy until then
        return buffer

    def _unpack(self, parcel):
        """The copy on this launcher's stream (it already waits for the parcel's event): from
        host memory, from the peer GPU, or from the other stream of this one. This stream's
        memory pool holds the copy; the source is held (_hold) until the copy has read it, so
        that its own stream's pool cannot give its memory to later work meanwhile."""
        runtime = self.xp.cuda.runtime
        with self.context():
            out = self.xp.empty(parcel.payload.shape, parcel.payload.dtype)
        nbytes = out.nbytes
        with self.device:
            if parcel.route == STAGED:
                runtime.memcpyAsync(out.data.ptr, parcel.payload.ctypes.data, nbytes,
                                    runtime.memcpyHostToDevice, self.stream.ptr)
            elif parcel.route == PEER:
                runtime.memcpyPeerAsync(out.data.ptr, self.device.id, parcel.payload.data.ptr,
                                        parcel.sender.device.id, nbytes, self.stream.ptr)
            else:
                runtime.memcpyAsync(out.data.ptr, parcel.payload.data.ptr, nbytes,
                                    runtime.memcpyDeviceToDevice, self.stream.ptr)
        self._hold(parcel.payload)
        return out

    def _hold(self, array):
        """Keeps `array` alive until the work queued so far on this stream is done; lets go of
        those whose work is."""
        self._held = [(done, kept) for done, kept in self._held if not done.done]
        self._held.append((self.event(), array))

    def event(self):
        """An event marking the work queued so far on this launcher's stream."""
        with self.device:
            event = self.xp.cuda.Event(disable_timing=True)
            event.record(self.stream)
        return event

    def wait(self, event):
        """This launcher's stream (or without one, the device's current one) waits for `event`
        (of any device) before its later work."""
        with self.device:
            (self.stream or self.xp.cuda.get_current_stream()).wait_event(event)
