"""Fully-connected layers: GEMMs through the launcher's array module (cuBLAS through CuPy on a
GPU, NumPy's BLAS in the emulator). x (D, N), w (D, F), y (F, N) = wᵀ·x, as
convnet/backend/reference/fc.py, whose checks of the operands these passes share."""
from convnet.backend.reference.fc import check_operands

from .checks import check_arrays


def fc_forward(launcher, x, w):
    check_operands("fc_forward", x, w)
    check_arrays("fc_forward", x=x, w=w)
    return w.T @ x


def fc_backward_input(launcher, dy, w):
    check_operands("fc_backward_input", dy, w)
    check_arrays("fc_backward_input", dy=dy, w=w)
    return w @ dy


def fc_backward_weights(launcher, dy, x):
    check_operands("fc_backward_weights", dy, x)
    check_arrays("fc_backward_weights", dy=dy, x=x)
    return x @ dy.T
