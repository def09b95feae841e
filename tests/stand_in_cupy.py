"""A stand-in for the few CuPy calls the GPU benchmarks make themselves (events, random arrays,
the device's properties), built on NumPy and the wall clock, so that tools/bench_kernels.py and
tools/bench_train.py run end to end through the emulator in CI. Their timings mean nothing."""
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
