"""Fully-connected layers, the reference. x (D, N), w (D, F), y (F, N) = wᵀ·x."""


def _check(x, w):
    if x.ndim != 2 or w.ndim != 2 or x.shape[0] != w.shape[0]:
        raise ValueError(f"fully-connected expects x (D,N) and w (D,F) with the same D; "
                         f"got shapes {x.shape} and {w.shape}")


def fc_forward(x, w):
    _check(x, w)
    return w.T @ x


def fc_backward_input(dy, w):
    return w @ dy


def fc_backward_weights(dy, x):
    return x @ dy.T
