"""The SGD update on the CUDA kernel of kernels/sgd.cu, in place; the formula of
convnet/backend/reference/sgd.py."""
from .checks import check_arrays, launch_elementwise, require, u32


def sgd_update(launcher, w, v, grad, *, lr, momentum, weight_decay):
    dtype = check_arrays("sgd_update", w=w, v=v, grad=grad)
    require(w.shape == v.shape == grad.shape,
            f"SGD update needs weights, momentum and gradient of one shape; "
            f"got {w.shape}, {v.shape}, {grad.shape}")
    t = dtype.type
    launch_elementwise(launcher, "sgd_update", dtype, w.size,
                       (w, v, grad, u32(w.size), t(lr), t(momentum), t(weight_decay * lr)))
