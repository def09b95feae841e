"""ReLU, tanh, dropout, scaling, sums and biases on the CUDA kernels of kernels/elementwise.cu;
formulas as in convnet/backend/reference/elementwise.py and conv.py (add_bias, bias_backward)."""
import math

import numpy as np

from convnet.shapes import ceil_div, dropout_mask_extent

from .checks import check_arrays, launch_elementwise, require, u32
from .launch import TILES

BIAS_TARGET_BLOCKS = 1024   # bias_backward slices long rows until about this many blocks ...
BIAS_MIN_SLICE = 4096       # ... each summing at least this many values


def add_bias(launcher, y, b):
    dtype = check_arrays("add_bias", y=y, b=b)
    require(b.shape == (y.shape[0],),
            f"bias of shape {b.shape} does not match {y.shape[0]} output channels")
    out = launcher.empty(y.shape, dtype)
    launch_elementwise(launcher, "add_bias", dtype, y.size,
                       (y, b, out, u32(y.size), u32(math.prod(y.shape[1:]))))
    return out


def bias_gradient_slices(channels, inner):
    """How many slices bias_backward sums each row of `inner` values in: ceil(inner / slices)
    values each, the last perhaps fewer, none empty; one for a row of none (its sum, 0)."""
    if inner == 0:
        return 1
    wanted = max(1, min(ceil_div(BIAS_TARGET_BLOCKS, channels), inner // BIAS_MIN_SLICE))
    return ceil_div(inner, ceil_div(inner, wanted))


def bias_backward(launcher, dy):
    """Σ of each channel's row of dy: long rows in slices (enough blocks to fill the GPU, conv1
    has 48 rows of 387,200), then each row's slices in order by a second launch."""
    dtype = check_arrays("bias_backward", dy=dy)
    # No channels would be a grid of no blocks, which a GPU refuses (the reference refuses too).
    require(dy.ndim >= 1 and dy.shape[0] >= 1,
            f"bias_backward expects at least one channel; got shape {dy.shape}")
    channels, inner = dy.shape[0], math.prod(dy.shape[1:])
    slices = bias_gradient_slices(channels, inner)
    slice_ = ceil_div(inner, slices)
    out = launcher.empty((channels,), dtype)
    partial = out if slices == 1 else launcher.empty((channels, slices), dtype)
    launcher.launch("bias_backward", dtype, (channels, slices), TILES["kThreads"],
                    (dy, partial, u32(inner), u32(slice_)))
    if slices > 1:
        launcher.launch("bias_backward", dtype, (channels, 1), TILES["kThreads"],
                        (partial, out, u32(slices), u32(slices)))
    return out


def _of_one(launcher, kernel, x):
    """out[i] from x[i] by `kernel`."""
    dtype = check_arrays(kernel, x=x)
    out = launcher.empty(x.shape, dtype)
    launch_elementwise(launcher, kernel, dtype, x.size, (x, out, u32(x.size)))
    return out


def _of_two(launcher, kernel, x, y, names=("x", "y")):
    """out[i] from x[i] and y[i], two arrays of one shape and type (named as the op names
    them), by `kernel`."""
    dtype = check_arrays(kernel, **dict(zip(names, (x, y))))
    require(x.shape == y.shape, f"{kernel}: arrays of shapes {x.shape} and {y.shape} differ")
    out = launcher.empty(x.shape, dtype)
    launch_elementwise(launcher, kernel, dtype, x.size, (x, y, out, u32(x.size)))
    return out


def relu_forward(launcher, x):
    return _of_one(launcher, "relu_forward", x)


def relu_backward(launcher, dy, y):
    return _of_two(launcher, "relu_backward", dy, y, ("dy", "y"))


def tanh_forward(launcher, x):
    return _of_one(launcher, "tanh_forward", x)


def tanh_backward(launcher, dy, y):
    return _of_two(launcher, "tanh_backward", dy, y, ("dy", "y"))


def dropout_mask(launcher, shape, keep, key, start=0, total=None):
    """Images [start, start + shape[-1]) of a `total`-image batch's mask (default: the whole)."""
    units, images, total = dropout_mask_extent(shape, keep, key, start, total)
    count, whole = units * images, units * total   # images ≤ total: the whole batch's is larger
    require(whole < 2 ** 31, f"dropout mask of {whole} elements exceeds 2³¹ − 1")
    mask = launcher.empty(shape, np.uint8)
    threshold = min(round(keep * 2 ** 24), 2 ** 24)
    # The kernel's element type does not enter the mask; its float instantiation is used.
    launch_elementwise(launcher, "dropout_mask", np.float32, count,
                       (mask, u32(count), u32(max(images, 1)), u32(start), u32(total), u32(key),
                        u32(threshold)))
    return mask


def apply_mask(launcher, x, mask):
    dtype = check_arrays("apply_mask", x=x)
    require(mask.dtype == np.uint8 and mask.flags.c_contiguous,
            "apply_mask: the mask must be a C-contiguous uint8 array")
    require(mask.shape == x.shape, f"dropout mask of shape {mask.shape} does not match {x.shape}")
    out = launcher.empty(x.shape, dtype)
    launch_elementwise(launcher, "apply_mask", dtype, x.size, (x, mask, out, u32(x.size)))
    return out


def scale(launcher, x, factor):
    dtype = check_arrays("scale", x=x)
    out = launcher.empty(x.shape, dtype)
    launch_elementwise(launcher, "scale", dtype, x.size, (x, dtype.type(factor), out, u32(x.size)))
    return out


def add(launcher, x, y):
    return _of_two(launcher, "add", x, y)
