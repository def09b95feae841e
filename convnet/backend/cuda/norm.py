"""Response normalization on the CUDA kernels of kernels/norm.cu; the formulas of
convnet/backend/reference/norm.py, which also define the coefficient's convention."""
from convnet.norm_params import NormParams

from .checks import check_arrays, i32, launch_elementwise, require
from .launch import TILES


def _check(op, x, params: NormParams, **arrays):
    require(x.ndim == 4, f"response normalization expects x (C,H,W,N); got shape {x.shape}")
    require(params.size <= TILES["kMaxNormSize"],
            f"{op}: the kernels take windows of at most {TILES['kMaxNormSize']}; "
            f"got size {params.size}")
    for array in arrays.values():
        require(array.shape == x.shape, f"{op}: shapes {array.shape} and {x.shape} differ")
    return check_arrays(op, x=x, **arrays)


# The axis each kind's kernels walk, a thread per line along it (kernels/norm.cu): a pixel's
# channels (cross-map), a column's rows (same-map).
WALKED_AXIS = {"crossmap": 0, "samemap": 1}


def _lines(kernel, x):
    walked = x.shape[WALKED_AXIS[kernel.split("_")[0]]]
    return x.size // walked if walked else 0


def _forward(launcher, kernel, x, params, terms):
    dtype = _check(kernel, x, params)
    y, denoms = launcher.empty(x.shape, dtype), launcher.empty(x.shape, dtype)
    t = dtype.type
    launch_elementwise(launcher, kernel, dtype, _lines(kernel, x),
                       (x, y, denoms, *map(i32, x.shape), i32(params.size), t(params.k),
                        t(params.coefficient(terms)), t(params.beta)))
    return y, denoms


def _backward(launcher, kernel, dy, x, y, denoms, params, terms):
    dtype = _check(kernel, x, params, dy=dy, y=y, denoms=denoms)
    dx = launcher.empty(x.shape, dtype)
    t = dtype.type
    launch_elementwise(launcher, kernel, dtype, _lines(kernel, x),
                       (dy, x, y, denoms, dx, *map(i32, x.shape), i32(params.size),
                        t(params.coefficient(terms)), t(params.beta)))
    return dx


def crossmap_norm_forward(launcher, x, params: NormParams):
    return _forward(launcher, "crossmap_norm_forward", x, params, params.size)


def crossmap_norm_backward(launcher, dy, x, y, denoms, params: NormParams):
    return _backward(launcher, "crossmap_norm_backward", dy, x, y, denoms, params, params.size)


def samemap_norm_forward(launcher, x, params: NormParams):
    return _forward(launcher, "samemap_norm_forward", x, params, params.size ** 2)


def samemap_norm_backward(launcher, dy, x, y, denoms, params: NormParams):
    return _backward(launcher, "samemap_norm_backward", dy, x, y, denoms, params,
                     params.size ** 2)
