"""Overlapping max pooling on the CUDA kernels of kernels/pool.cu; the formulas of
convnet/backend/reference/pool.py (cuda-convnet's output size, or whole windows only without
overhang, and the tie-inclusive gradient)."""
from convnet.shapes import pool_output_size

from .checks import check_arrays, i32, launch_elementwise, require


def _geometry(x, size, stride, overhang):
    require(x.ndim == 4, f"max pooling expects x (C,H,W,N); got shape {x.shape}")
    require(1 <= stride <= size, f"max pooling needs 1 ≤ stride ≤ size; got stride {stride}, "
                                 f"size {size}")
    return tuple(pool_output_size(x.shape[axis], size, stride, overhang=overhang)
                 for axis in (1, 2))


def maxpool_forward(launcher, x, *, size, stride, overhang=True):
    out_h, out_w = _geometry(x, size, stride, overhang)
    dtype = check_arrays("maxpool_forward", x=x)
    channels, _, _, images = x.shape
    y = launcher.empty((channels, out_h, out_w, images), dtype)
    launch_elementwise(launcher, "maxpool_forward", dtype, y.size,
                       (x, y, *map(i32, x.shape), i32(out_h), i32(out_w), i32(size), i32(stride)))
    return y


def maxpool_backward(launcher, dy, x, y, *, size, stride, overhang=True):
    out_h, out_w = _geometry(x, size, stride, overhang)
    require(dy.shape == y.shape == (x.shape[0], out_h, out_w, x.shape[3]),
            f"max pooling gradient {dy.shape} / output {y.shape} do not match input {x.shape} "
            f"with size {size}, stride {stride}")
    dtype = check_arrays("maxpool_backward", dy=dy, x=x, y=y)
    dx = launcher.empty(x.shape, dtype)
    launch_elementwise(launcher, "maxpool_backward", dtype, x.size,
                       (dy, x, y, dx, *map(i32, x.shape), i32(out_h), i32(out_w), i32(size),
                        i32(stride)))
    return dx
