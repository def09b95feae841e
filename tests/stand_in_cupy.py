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


class Inert:
    """Whatever is asked of it (an attribute, a call, an index, arithmetic) gives itself: the
    stand-in for every PyTorch op and tensor, which do nothing here."""

    def __getattr__(self, name):
        return self

    def __call__(self, *args, **kwargs):
        return self

    def __getitem__(self, key):
        return self

    def __setitem__(self, key, value):
        pass


for _operator in ("add", "sub", "mul", "truediv", "pow"):
    setattr(Inert, f"__{_operator}__", Inert.__call__)
    setattr(Inert, f"__r{_operator}__", Inert.__call__)


def stand_in_torch(elapsed_ms):
    """A stand-in for the PyTorch peer of tools/bench_kernels.py: its ops do nothing, the inputs
    it draws are zeros on the host (of the peer's shapes), and every pair of its events times
    elapsed_ms."""
    class TorchEvent(Event):
        def __init__(self, enable_timing=False):
            pass

        def elapsed_time(self, stop):
            return elapsed_ms

    torch = Inert()
    torch.__version__ = "stand-in"
    torch.backends = types.SimpleNamespace(
        cudnn=types.SimpleNamespace(version=lambda: 0, allow_tf32=False, benchmark=True),
        cuda=types.SimpleNamespace(matmul=types.SimpleNamespace(allow_tf32=False)))
    torch.cuda = types.SimpleNamespace(Event=TorchEvent)
    torch.randn = lambda *shape, device: np.zeros(shape, np.float32)
    return torch
