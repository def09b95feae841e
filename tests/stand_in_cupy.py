"""A stand-in for the few CuPy calls the GPU benchmarks make themselves (events, random arrays,
the device's properties), built on NumPy and the wall clock, so that tools/bench_kernels.py and
tools/bench_train.py run end to end through the emulator in CI. Their timings mean nothing.
stand_in_torch stands in for tools/bench_kernels.py's PyTorch peer the same way."""
import time
import types

import numpy as np


class Event:
    def record(self, stream=None):
        self.time = time.perf_counter()

    def synchronize(self):
        pass


def stand_in_cupy(elapsed_ms=None):
    """elapsed_ms: what every pair of events times, so that a report's figures can be checked
    against their formulas; else the wall clock's (meaningless) times."""
    rng = np.random.default_rng()
    device = types.SimpleNamespace(id=0, compute_capability="90")
    attributes = {"ClockRate": 1_980_000, "MultiProcessorCount": 132, "L2CacheSize": 1 << 14}
    runtime = types.SimpleNamespace(getDeviceProperties=lambda index: {"name": b"emulator"},
                                    deviceGetAttribute=lambda attribute, index:
                                    attributes[attribute],
                                    driverGetVersion=lambda: 13000,
                                    runtimeGetVersion=lambda: 13000,
                                    **{f"cudaDevAttr{name}": name for name in attributes})
    cuda = types.SimpleNamespace(Event=Event, Device=lambda index=0: device, runtime=runtime,
                                 get_elapsed_time=lambda start, stop: elapsed_ms or
                                 (stop.time - start.time) * 1e3)
    random = types.SimpleNamespace(
        standard_normal=lambda shape, dtype: rng.standard_normal(shape, dtype=dtype),
        random=lambda size, dtype: rng.random(size, dtype=dtype))
    return types.SimpleNamespace(cuda=cuda, random=random, maximum=np.maximum, empty=np.empty,
                                 empty_like=np.empty_like, __version__="stand-in")


def stand_in_torch(elapsed_ms):
    """A stand-in for the PyTorch peer of tools/bench_kernels.py: its ops do nothing, its inputs
    are zeros on the host, and every pair of its events times elapsed_ms."""
    class TorchEvent(Event):
        def __init__(self, enable_timing=False):
            pass

        def elapsed_time(self, stop):
            return elapsed_ms

    nothing = lambda *args, **kwargs: None   # noqa: E731
    functional = types.SimpleNamespace(conv2d=nothing, local_response_norm=nothing,
                                       max_pool2d=nothing)
    backends = types.SimpleNamespace(
        cudnn=types.SimpleNamespace(version=lambda: 0, allow_tf32=False, benchmark=True),
        cuda=types.SimpleNamespace(matmul=types.SimpleNamespace(allow_tf32=False)))
    return types.SimpleNamespace(
        __version__="stand-in", backends=backends, cuda=types.SimpleNamespace(Event=TorchEvent),
        randn=lambda *shape, device: np.zeros(shape, np.float32), relu=nothing,
        nn=types.SimpleNamespace(functional=functional),
        ops=types.SimpleNamespace(aten=types.SimpleNamespace(convolution_backward=nothing)))
