"""Fully-connected layers, the reference. x (D, N), w (D, F), y (F, N) = wᵀ·x."""

# Each pass's two operands as its messages name them, the size they share and its axis in each.
OPERANDS = {"fc_forward": ("x (D,N)", "w (D,F)", "D", 0, 0),
            "fc_backward_input": ("dy (F,N)", "w (D,F)", "F", 0, 1),
            "fc_backward_weights": ("dy (F,N)", "x (D,N)", "N", 1, 1)}


def check_operands(op, a, b):
    """A ValueError unless `op`'s operands, a and b, are matrices of one type that share their
    size (OPERANDS); the CUDA backend's passes check theirs here too."""
    first, second, shared, i, j = OPERANDS[op]
    if a.ndim != 2 or b.ndim != 2 or a.shape[i] != b.shape[j]:
        raise ValueError(f"{op} expects {first} and {second} with the same {shared}; got shapes "
                         f"{a.shape} and {b.shape}")
    if a.dtype != b.dtype:
        raise ValueError(f"{op}: {second.split()[0]} is {b.dtype} but {first.split()[0]} is "
                         f"{a.dtype}")


def fc_forward(x, w):
    check_operands("fc_forward", x, w)
    return w.T @ x


def fc_backward_input(dy, w):
    check_operands("fc_backward_input", dy, w)
    return w @ dy


def fc_backward_weights(dy, x):
    check_operands("fc_backward_weights", dy, x)
    return x @ dy.T
