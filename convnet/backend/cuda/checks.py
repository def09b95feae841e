"""Argument checks and launch sizes shared by the CUDA ops' launchers."""
import numpy as np

from convnet.shapes import ceil_div

from .launch import TILES, c_type

MAX_ELEMENTS = 2 ** 31 - 1        # the kernels index with 32-bit integers
# The grid-stride loops cover any count; this fills an H100 (about two waves of the elementwise
# kernels, and a little more than one of normalization's and pooling's, at 5 or 6 blocks a
# multiprocessor).
MAX_ELEMENTWISE_BLOCKS = 1024


def require(condition, message):
    if not condition:
        raise ValueError(message)


def check_arrays(op, **arrays):
    """Every array, named as the op's argument, C-contiguous, of the first one's float type,
    small enough for 32-bit indices; returns the element type."""
    (first, array), *_ = arrays.items()
    dtype = np.dtype(array.dtype)
    try:
        c_type(dtype)
    except TypeError as error:
        raise TypeError(f"{op}: {first}: {error}") from None
    for name, array in arrays.items():
        # Messages are formatted only on failure: these checks run before every launch.
        if array.dtype != dtype:
            raise ValueError(f"{op}: {name} is {array.dtype} but {first} is {dtype}")
        if not array.flags.c_contiguous:
            raise ValueError(f"{op}: {name} must be C-contiguous")
        if array.size > MAX_ELEMENTS:
            raise ValueError(f"{op}: {name} has {array.size} elements, past 2³¹ − 1")
    return dtype


def elementwise_grid(count):
    return max(1, min(ceil_div(count, TILES["kThreads"]), MAX_ELEMENTWISE_BLOCKS))


def launch_elementwise(launcher, kernel, dtype, count, args):
    """A grid-stride kernel over `count` elements; none at all for an empty array (whose sizes,
    some 0, the kernels' coordinates could not be split by)."""
    if count:
        launcher.launch(kernel, dtype, elementwise_grid(count), TILES["kThreads"], args)


def i32(value):
    return np.int32(value)


def u32(value):
    return np.uint32(value)
