"""Convolution, the reference: im2col as a strided view, then one GEMM over the whole batch.

Layout (see convnet.backend): x (C, H, W, N), filters (C, kh, kw, F), y (F, OH, OW, N).
  y[f, oy, ox, n] = Σ_{c,i,j} w[c, i, j, f] · x[c, oy·stride − pad + i, ox·stride − pad + j, n]
with x read as zero outside the image. The output size follows cuda-convnet's rule
(convnet.shapes), so the last window may overhang the bottom/right edge (conv1's 3 pixels).
Because images are innermost, the column matrix is (C·kh·kw, OH·OW·N) and the GEMM's result is
already the output layout: no transposes anywhere.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

from convnet.shapes import (check_conv_operands, check_input_gradient, conv_output_size,
                            conv_overhang)


def _check(x, w):
    check_conv_operands(x.shape, w.shape)
    if x.dtype != w.dtype:
        raise ValueError(f"conv input is {x.dtype} but filters are {w.dtype}")


def _padded(x, filter_size, stride, pad):
    """x with `pad` zeros before and whatever the overhang needs after, on rows and columns."""
    _, height, width, _ = x.shape
    out_h = conv_output_size(height, filter_size, stride, pad)
    out_w = conv_output_size(width, filter_size, stride, pad)
    end_h = conv_overhang(height, filter_size, stride, pad)
    end_w = conv_overhang(width, filter_size, stride, pad)
    if pad or end_h or end_w:
        x = np.pad(x, ((0, 0), (pad, end_h), (pad, end_w), (0, 0)))
    return x, out_h, out_w


def _columns(x, filter_size, stride, pad):
    """The (C·kh·kw, OH·OW·N) column matrix of x, and the output size."""
    channels, _, _, images = x.shape
    xp, out_h, out_w = _padded(x, filter_size, stride, pad)
    s_c, s_h, s_w, s_n = xp.strides
    windows = as_strided(
        xp, shape=(channels, filter_size, filter_size, out_h, out_w, images),
        strides=(s_c, s_h, s_w, s_h * stride, s_w * stride, s_n), writeable=False)
    return windows.reshape(channels * filter_size * filter_size, out_h * out_w * images), out_h, out_w


def conv_forward(x, w, *, stride, pad):
    _check(x, w)
    filter_size, filters = w.shape[1], w.shape[3]
    cols, out_h, out_w = _columns(x, filter_size, stride, pad)
    y = w.reshape(-1, filters).T @ cols
    return y.reshape(filters, out_h, out_w, x.shape[3])


def conv_backward_filters(dy, x, *, filter_size, stride, pad):
    """dL/dw (C, kh, kw, F) from dL/dy (F, OH, OW, N) and the layer's input x."""
    filters = dy.shape[0]
    cols, out_h, out_w = _columns(x, filter_size, stride, pad)
    if dy.shape[1:] != (out_h, out_w, x.shape[3]):
        raise ValueError(f"conv gradient has shape {dy.shape}; the input {x.shape} gives "
                         f"({filters}, {out_h}, {out_w}, {x.shape[3]})")
    dw = cols @ dy.reshape(filters, -1).T
    return dw.reshape(x.shape[0], filter_size, filter_size, filters)


def conv_backward_input(dy, w, *, input_size, stride, pad):
    """dL/dx (C, H, W, N), (H, W) = input_size (one int: H = W), from dL/dy and the filters.

    The transpose of im2col: each filter tap (i, j) adds its slice of w·dy into a strided window
    of the padded input gradient, a loop over the kh·kw taps, not over pixels.
    """
    (channels, height, width, images), out_h, out_w = check_input_gradient(
        dy.shape, w.shape, input_size, stride, pad)
    if dy.dtype != w.dtype:
        raise ValueError(f"conv gradient is {dy.dtype} but filters are {w.dtype}")
    filter_size, filters = w.shape[1], w.shape[3]
    dcols = (w.reshape(-1, filters) @ dy.reshape(filters, -1)).reshape(
        channels, filter_size, filter_size, out_h, out_w, images)
    padded_h = max(height + pad, (out_h - 1) * stride + filter_size)
    padded_w = max(width + pad, (out_w - 1) * stride + filter_size)
    dxp = np.zeros((channels, padded_h, padded_w, images), dtype=dy.dtype)
    row_span, col_span = (out_h - 1) * stride + 1, (out_w - 1) * stride + 1
    for i in range(filter_size):
        for j in range(filter_size):
            dxp[:, i:i + row_span:stride, j:j + col_span:stride, :] += dcols[:, i, j]
    return np.ascontiguousarray(dxp[:, pad:pad + height, pad:pad + width, :])


def add_bias(y, b):
    """y + b along the channel/feature axis (axis 0), for conv (4-D) and FC (2-D) outputs."""
    if b.shape != (y.shape[0],):
        raise ValueError(f"bias of shape {b.shape} does not match {y.shape[0]} output channels")
    return y + b.reshape((-1,) + (1,) * (y.ndim - 1))


def bias_backward(dy):
    return dy.reshape(dy.shape[0], -1).sum(axis=1)
