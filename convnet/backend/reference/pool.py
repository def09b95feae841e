"""Overlapping max pooling, the reference.

Layout: x (C, H, W, N) → y (C, OH, OW, N), OH = ceil((H − size)/stride) + 1 (convnet.shapes);
a last window that overhangs the bottom/right edge takes the maximum of the pixels that exist.
  y[c, oy, ox, n] = max_{i,j < size} x[c, oy·stride + i, ox·stride + j, n]
Backward is cuda-convnet's tie-inclusive rule: every input equal to its window's maximum
receives that window's whole gradient, summed over the windows it belongs to.
Both passes loop over the size² window offsets, each a strided slice of the whole tensor.
"""
import numpy as np

from convnet.shapes import pool_output_size


def _geometry(x, size, stride):
    if x.ndim != 4:
        raise ValueError(f"max pooling expects x (C,H,W,N); got shape {x.shape}")
    out_h = pool_output_size(x.shape[1], size, stride)
    out_w = pool_output_size(x.shape[2], size, stride)
    padded_h = (out_h - 1) * stride + size
    padded_w = (out_w - 1) * stride + size
    return out_h, out_w, padded_h, padded_w


def _padded_with_lowest(x, padded_h, padded_w):
    """x extended on the bottom/right with −inf, which no window maximum can take."""
    extra_h, extra_w = padded_h - x.shape[1], padded_w - x.shape[2]
    if not (extra_h or extra_w):
        return x
    return np.pad(x, ((0, 0), (0, extra_h), (0, extra_w), (0, 0)), constant_values=-np.inf)


def _window_offsets(size, stride, out_h, out_w):
    for i in range(size):
        for j in range(size):
            yield (slice(None), slice(i, i + (out_h - 1) * stride + 1, stride),
                   slice(j, j + (out_w - 1) * stride + 1, stride), slice(None))


def maxpool_forward(x, *, size, stride):
    out_h, out_w, padded_h, padded_w = _geometry(x, size, stride)
    xp = _padded_with_lowest(x, padded_h, padded_w)
    offsets = _window_offsets(size, stride, out_h, out_w)
    y = xp[next(offsets)].copy()
    for window in offsets:
        np.maximum(y, xp[window], out=y)
    return y


def maxpool_backward(dy, x, y, *, size, stride):
    out_h, out_w, padded_h, padded_w = _geometry(x, size, stride)
    if dy.shape != y.shape or y.shape != (x.shape[0], out_h, out_w, x.shape[3]):
        raise ValueError(f"max pooling gradient {dy.shape} / output {y.shape} do not match "
                         f"input {x.shape} with size {size}, stride {stride}")
    xp = _padded_with_lowest(x, padded_h, padded_w)
    dxp = np.zeros(xp.shape, dtype=dy.dtype)
    for window in _window_offsets(size, stride, out_h, out_w):
        dxp[window] += np.where(xp[window] == y, dy, 0)
    return np.ascontiguousarray(dxp[:, :x.shape[1], :x.shape[2], :])
