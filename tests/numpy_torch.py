"""A stand-in for the few PyTorch calls tools/torch_alexnet.py builds the benchmarks' peer network
from, written in NumPy after PyTorch's documented definition of each op (not after convnet's
reference backend, which the peer is checked against), so that tests/test_torch_peer.py checks
the peer where PyTorch is not installed. Forward only, no autograd, NCHW as in PyTorch. Where
PyTorch is installed, tests/test_torch_peer.py checks each op here against PyTorch's own."""
import contextlib
import math
import types

import numpy as np


class Tensor(np.ndarray):
    """An ndarray with the Tensor methods the peer calls."""

    def chunk(self, chunks, dim=0):
        """torch.chunk: pieces of ceil(n / chunks) along `dim`, the last one possibly smaller."""
        step = math.ceil(self.shape[dim] / chunks)
        return [self[(slice(None),) * dim + (slice(start, start + step),)]
                for start in range(0, self.shape[dim], step)]

    def flatten(self, start_dim=0):
        return self.reshape(self.shape[:start_dim] + (-1,))

    def numpy(self):
        return np.asarray(self)


def _tensor(array):
    return np.asarray(array).view(Tensor)


def tensor(data, device=None, requires_grad=False):
    return _tensor(np.array(data))


def cat(tensors, dim=0):
    return _tensor(np.concatenate(tensors, axis=dim))


def softmax(x, dim):
    shifted = np.exp(x - x.max(axis=dim, keepdims=True))
    return _tensor(shifted / shifted.sum(axis=dim, keepdims=True))


def pad(x, widths):
    """F.pad: (left, right) for the last dimension, then (top, bottom) for the one before, …;
    zeros."""
    pairs = [(0, 0)] * x.ndim
    for index in range(len(widths) // 2):
        pairs[x.ndim - 1 - index] = (widths[2 * index], widths[2 * index + 1])
    return _tensor(np.pad(x, pairs))


def conv2d(x, weight, bias=None, stride=1, groups=1):
    """F.conv2d without padding: out[n, o, y, x] = bias[o] + Σ_{c,i,j} weight[o, c, i, j] ·
    x[n, g·C/groups + c, y·stride + i, x·stride + j], g the group of output channel o; the
    output has floor((H − kh) / stride) + 1 rows."""
    images, channels, height, width = x.shape
    outputs, per_group, kh, kw = weight.shape
    if channels != per_group * groups or outputs % groups:
        raise ValueError(f"conv2d: input of {channels} channels, weight {weight.shape}, "
                         f"groups {groups}")
    out_h, out_w = (height - kh) // stride + 1, (width - kw) // stride + 1
    y = np.zeros((images, outputs, out_h, out_w))
    step = outputs // groups
    for g in range(groups):
        xg = x[:, g * per_group:(g + 1) * per_group]
        for i in range(kh):
            for j in range(kw):
                window = xg[:, :, i:i + (out_h - 1) * stride + 1:stride,
                            j:j + (out_w - 1) * stride + 1:stride]
                y[:, g * step:(g + 1) * step] += np.einsum(
                    "nchw,oc->nohw", window, weight[g * step:(g + 1) * step, :, i, j])
    if bias is not None:
        y += np.asarray(bias).reshape(1, -1, 1, 1)
    return _tensor(y)


def linear(x, weight, bias=None):
    y = np.asarray(x) @ np.asarray(weight).T
    return _tensor(y if bias is None else y + bias)


def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """F.local_response_norm over channels (dimension 1), N of them:
    b_c = a_c · (k + α/n · Σ_{c'} a_{c'}²)^(−β),
    c' from max(0, c − n/2) to min(N − 1, c + n/2)."""
    channels = x.shape[1]
    y = np.empty(x.shape)
    for c in range(channels):
        window = x[:, max(0, c - size // 2):min(channels - 1, c + size // 2) + 1]
        y[:, c] = x[:, c] * (k + alpha / size * (np.asarray(window) ** 2).sum(axis=1)) ** -beta
    return _tensor(y)


def avg_pool2d(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """F.avg_pool2d on windows of the input zero-padded by `padding` on every side: their sum
    divided by kernel_size², or with count_include_pad=False by the input pixels they hold."""
    stride = stride or kernel_size
    ones = np.pad(np.ones(x.shape[2:]), padding)
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    out_h = (x.shape[2] - kernel_size) // stride + 1
    out_w = (x.shape[3] - kernel_size) // stride + 1
    y = np.empty(x.shape[:2] + (out_h, out_w))
    for r in range(out_h):
        for q in range(out_w):
            rows = slice(r * stride, r * stride + kernel_size)
            cols = slice(q * stride, q * stride + kernel_size)
            count = kernel_size ** 2 if count_include_pad else ones[rows, cols].sum()
            y[:, :, r, q] = x[:, :, rows, cols].sum(axis=(2, 3)) / count
    return _tensor(y)


def max_pool2d(x, kernel_size, stride=None, ceil_mode=False):
    """F.max_pool2d without padding: floor((H − k) / stride) + 1 windows, with ceil_mode
    ceil(…) + 1, a last window that starts inside the input taking the maximum of the pixels it
    holds."""
    stride = stride or kernel_size
    rounding = math.ceil if ceil_mode else math.floor

    def count(side):
        windows = rounding((side - kernel_size) / stride) + 1
        return windows - 1 if (windows - 1) * stride >= side else windows
    out_h, out_w = count(x.shape[2]), count(x.shape[3])
    y = np.empty(x.shape[:2] + (out_h, out_w))
    for r in range(out_h):
        for q in range(out_w):
            window = x[:, :, r * stride:r * stride + kernel_size,
                       q * stride:q * stride + kernel_size]
            y[:, :, r, q] = np.asarray(window).max(axis=(2, 3))
    return _tensor(y)


class SGD:
    """torch.optim.SGD's constructor, recorded: its parameter groups and momentum."""

    def __init__(self, groups, momentum=0.0):
        self.param_groups, self.momentum = groups, momentum


functional = types.SimpleNamespace(
    pad=pad, conv2d=conv2d, linear=linear, local_response_norm=local_response_norm,
    avg_pool2d=avg_pool2d, max_pool2d=max_pool2d)

numpy_torch = types.SimpleNamespace(
    tensor=tensor, from_numpy=_tensor, cat=cat, softmax=softmax,
    relu=lambda x: _tensor(np.maximum(x, 0)), tanh=lambda x: _tensor(np.tanh(x)),
    no_grad=contextlib.nullcontext, nn=types.SimpleNamespace(functional=functional),
    optim=types.SimpleNamespace(SGD=SGD))
