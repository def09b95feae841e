"""Fully-connected layers: GEMMs through the launcher's array module (cuBLAS through CuPy on a
GPU, NumPy's BLAS in the emulator). x (D, N), w (D, F), y (F, N) = wᵀ·x, as
convnet/backend/reference/fc.py."""
from .checks import check_arrays, require


def _check(x, w):
    require(x.ndim == 2 and w.ndim == 2 and x.shape[0] == w.shape[0],
            f"fully-connected expects x (D,N) and w (D,F) with the same D; "
            f"got shapes {x.shape} and {w.shape}")
    check_arrays("fully-connected", x, w)


def fc_forward(launcher, x, w):
    _check(x, w)
    return w.T @ x


def fc_backward_input(launcher, dy, w):
    return w @ dy


def fc_backward_weights(launcher, dy, x):
    return x @ dy.T
