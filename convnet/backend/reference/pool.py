"""Overlapping max pooling, the reference.

Layout: x (C, H, W, N) → y (C, OH, OW, N), OH = ceil((H − size)/stride) + 1 (convnet.shapes);
a last window that overhangs the bottom/right edge takes the maximum of the pixels that exist.
With overhang=False, OH = floor((H − size)/stride) + 1: whole windows only, and the pixels past
the last one get no gradient.
  y[c, oy, ox, n] = max_{i,j < size} x[c, oy·stride + i, ox·stride + j, n]
Backward is cuda-convnet's tie-inclusive rule: every input equal to its window's maximum
receives that window's whole gradient, summed over the windows it belongs to.
Both passes loop over the size² window offsets, each a strided slice of the whole tensor.
"""
import numpy as np

from convnet.shapes import pool_output_size


def _geometry(x, size, stride, overhang):
    if x.ndim != 4:
        raise ValueError(f"max pooling expects x (C,H,W,N); got shape {x.shape}")
    out_h = pool_output_size(x.shape[1], size, stride, overhang=overhang)
    out_w = pool_output_size(x.shape[2], size, stride, overhang=overhang)
    covered_h = (out_h - 1) * stride + size
    covered_w = (out_w - 1) * stride + size
    return out_h, out_w, covered_h, covered_w


def _windowed(x, covered_h, covered_w):
    """x cut or extended on the bottom/right to the rows and columns the windows cover: cut
    where no window reaches, extended with −inf, which no window maximum can take."""
    x = x[:, :covered_h, :covered_w, :]
    extra_h, extra_w = covered_h - x.shape[1], covered_w - x.shape[2]
    if not (extra_h or extra_w):
        return x
    return np.pad(x, ((0, 0), (0, extra_h), (0, extra_w), (0, 0)), constant_values=-np.inf)


def _window_offsets(size, stride, out_h, out_w):
    for i in range(size):
        for j in range(size):
            yield (slice(None), slice(i, i + (out_h - 1) * stride + 1, stride),
                   slice(j, j + (out_w - 1) * stride + 1, stride), slice(None))


def maxpool_forward(x, *, size, stride, overhang=True):
    out_h, out_w, covered_h, covered_w = _geometry(x, size, stride, overhang)
    xp = _windowed(x, covered_h, covered_w)
    offsets = _window_offsets(size, stride, out_h, out_w)
    y = xp[next(offsets)].copy()
    for window in offsets:
        np.maximum(y, xp[window], out=y)
    return y


def maxpool_backward(dy, x, y, *, size, stride, overhang=True):
    out_h, out_w, covered_h, covered_w = _geometry(x, size, stride, overhang)
    if dy.shape != y.shape or y.shape != (x.shape[0], out_h, out_w, x.shape[3]):
        raise ValueError(f"max pooling gradient {dy.shape} / output {y.shape} do not match "
                         f"input {x.shape} with size {size}, stride {stride}")
    xp = _windowed(x, covered_h, covered_w)
    dxp = np.zeros((x.shape[0], max(covered_h, x.shape[1]), max(covered_w, x.shape[2]),
                    x.shape[3]), dtype=dy.dtype)
    for window in _window_offsets(size, stride, out_h, out_w):
        dxp[window] += np.where(xp[window] == y, dy, 0)
    return np.ascontiguousarray(dxp[:, :x.shape[1], :x.shape[2], :])
