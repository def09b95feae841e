"""The CUDA backend: every op of convnet.backend.OPS on the hand-written kernels of kernels/,
launched on a GPU through CuPy (`cuda`) or on the host through the emulator (`emulator`), by the
same launch code (launch.py). Arrays are CuPy arrays on the GPU, NumPy arrays in the emulator.

    backend = CudaBackend(Gpu(device_id))      # or CudaBackend(Emulated())
    y = backend.conv_forward(x, w, stride=1, pad=2)

`conv_algorithm` is the convolutions' preferred algorithm (conv.py: "implicit" or "winograd",
taken where it serves; conv.DEFAULT_ALGORITHM where None).

Two backends hold the two towers of a network placed on two devices, or on one GPU through two
streams (convnet.placement); `send` and `receive` move a tensor between them.
"""
import functools

from convnet.backend import OPS

from . import conv, elementwise, fc, norm, pool, sgd, softmax
from .launch import Emulated, Gpu

OP_MODULES = (conv, elementwise, fc, norm, pool, sgd, softmax)


class CudaBackend:
    def __init__(self, launcher, *, conv_algorithm=None):
        if conv_algorithm is not None:
            conv.check_algorithm(conv_algorithm)
        self.launcher = launcher
        self.xp = launcher.xp
        self.name = f"cuda ({launcher.path})"
        for module in OP_MODULES:
            for op in OPS:
                if hasattr(module, op):
                    function = getattr(module, op)
                    if module is conv:
                        function = functools.partial(function, preference=conv_algorithm)
                    setattr(self, op, self._in_context(function))

    def _in_context(self, function):
        @functools.wraps(getattr(function, "func", function))
        def op(*args, **kwargs):
            with self.launcher.context():
                return function(self.launcher, *args, **kwargs)
        return op

    def to_host(self, array):
        """A NumPy copy of a backend array (a no-op view in the emulator), once the work queued
        for it on this backend's stream is done."""
        if not hasattr(array, "get"):
            return array
        with self.launcher.context():
            return array.get()

    def from_host(self, array):
        with self.launcher.context():
            return self.xp.asarray(array)

    def context(self):
        return self.launcher.context()

    def send(self, array, receiver: "CudaBackend"):
        """A parcel of `array` for backend `receiver`, made where the array is made; see
        Launcher.send for the ordering it keeps."""
        return self.launcher.send(array, receiver.launcher)

    def receive(self, parcel):
        """The parcel's array, copied onto this backend's device where it is read."""
        return self.launcher.receive(parcel)

    def route_from(self, sender: "CudaBackend") -> str:
        return self.launcher.route_from(sender.launcher)


def gpu_backend(device_id=0, *, poison=False, own_stream=False, conv_algorithm=None):
    return CudaBackend(Gpu(device_id, poison=poison, own_stream=own_stream),
                       conv_algorithm=conv_algorithm)


def emulator_backend(*, poison=False, conv_algorithm=None):
    return CudaBackend(Emulated(poison=poison), conv_algorithm=conv_algorithm)
