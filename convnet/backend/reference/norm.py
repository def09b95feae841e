"""Response normalization, the reference: cross-map (over channels) and same-map (over a window
of pixels in one map).

Both compute, with a the layer input and W(p) the window around position p, clipped at the
edges of the tower's channels (cross-map) or of the map (same-map):
  d_p = k + c · Σ_{q∈W(p)} a_q²,    b_p = a_p · d_p^(−β)
  ∂L/∂a_q = g_q · d_q^(−β) − 2cβ · a_q · Σ_{p: q∈W(p)} g_p · b_p / d_p
The window is centred and has odd size, so q ∈ W(p) exactly when p ∈ W(q): the backward sum is
the same clipped window sum as the forward one. c comes from NormParams, which records the
coefficient convention (the paper's α, or the released code's α divided by the window's terms).
Forward returns the denominators d for the backward pass.
"""

from convnet.norm_params import NormParams


def _check(x):
    if x.ndim != 4:
        raise ValueError(f"response normalization expects x (C,H,W,N); got shape {x.shape}")


def _window_sum(values, size, axis):
    """Σ over a centred window of `size` along `axis`, clipped at the ends: one add per offset."""
    total = values.copy()
    length = values.shape[axis]
    for offset in range(1, size // 2 + 1):
        if offset >= length:
            break
        lower = [slice(None)] * values.ndim
        upper = [slice(None)] * values.ndim
        lower[axis] = slice(0, length - offset)
        upper[axis] = slice(offset, length)
        total[tuple(lower)] += values[tuple(upper)]
        total[tuple(upper)] += values[tuple(lower)]
    return total


def _crossmap_sum(values, size):
    return _window_sum(values, size, axis=0)


def _samemap_sum(values, size):
    return _window_sum(_window_sum(values, size, axis=1), size, axis=2)


def _forward(x, params, coefficient, window_sum):
    denoms = window_sum(x * x, params.size)
    denoms *= coefficient
    denoms += params.k
    return x * denoms ** -params.beta, denoms


def _backward(dy, x, y, denoms, params, coefficient, window_sum):
    spread = window_sum(dy * y / denoms, params.size)
    return dy * denoms ** -params.beta - (2 * coefficient * params.beta) * x * spread


def crossmap_norm_forward(x, params: NormParams):
    _check(x)
    return _forward(x, params, params.coefficient(params.size), _crossmap_sum)


def crossmap_norm_backward(dy, x, y, denoms, params: NormParams):
    _check(x)
    return _backward(dy, x, y, denoms, params, params.coefficient(params.size), _crossmap_sum)


def samemap_norm_forward(x, params: NormParams):
    _check(x)
    return _forward(x, params, params.coefficient(params.size ** 2), _samemap_sum)


def samemap_norm_backward(dy, x, y, denoms, params: NormParams):
    _check(x)
    return _backward(dy, x, y, denoms, params, params.coefficient(params.size ** 2), _samemap_sum)
