"""ReLU, tanh, dropout and scaling, the reference.

Dropout is cuda-convnet's non-inverted kind: training multiplies by a 0/1 mask with P(1) = keep,
testing multiplies by keep. The mask is a pure function of (key, element index) through a
counter-based hash, so every backend draws the same mask for the same key, and a step can be
replayed exactly from its key alone:
  h = mix(index ⊕ mix(key)),  u = (h >> 8) · 2⁻²⁴,  mask = u < keep
where mix is a 32-bit avalanche hash (xor-shift-multiply, constants 0x7feb352d, 0x846ca68b).
Elements are indexed in the array's row-major order. The mask of images [start, start + n) of
a batch of `total` images (the last axis, images innermost) is the whole batch's mask at those
images: element (f, i) has index f·total + start + i, so parts of a batch split over replicas
get exactly the mask the whole batch gets.
"""
import numpy as np

from convnet.shapes import dropout_mask_extent


def relu_forward(x):
    return np.maximum(x, 0)


def relu_backward(dy, y):
    """dL/dx from dL/dy and the ReLU's output y: the gradient passes where y > 0."""
    return np.where(y > 0, dy, 0).astype(dy.dtype, copy=False)


def tanh_forward(x):
    return np.tanh(x)


def tanh_backward(dy, y):
    """dL/dx from dL/dy and the tanh's output y: tanh' = 1 − tanh²."""
    return (dy * (1 - y * y)).astype(dy.dtype, copy=False)


def _mix32(h):
    """32-bit avalanche hash of uint32 values; the multiplications wrap modulo 2³² on purpose."""
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint32(16))
        h = h * np.uint32(0x7FEB352D)
        h = h ^ (h >> np.uint32(15))
        h = h * np.uint32(0x846CA68B)
        return h ^ (h >> np.uint32(16))


def dropout_mask(shape, keep, key, start=0, total=None):
    """A uint8 mask of `shape`, 1 with probability `keep`, determined by the 32-bit `key`: images
    [start, start + shape[-1]) of a `total`-image batch's mask (default: the whole batch)."""
    features, images, total = dropout_mask_extent(shape, keep, key, start, total)
    if features * total >= 2 ** 32:
        raise ValueError(f"dropout mask of {features * total} elements exceeds the 32-bit counter")
    index = (np.arange(features, dtype=np.uint32)[:, None] * np.uint32(total)
             + np.arange(start, start + images, dtype=np.uint32)).ravel()
    hashed = _mix32(index ^ _mix32(np.uint32(key)))
    threshold = np.uint32(min(round(keep * 2 ** 24), 2 ** 24))
    return ((hashed >> np.uint32(8)) < threshold).astype(np.uint8).reshape(shape)


def apply_mask(x, mask):
    """x · mask: dropout's forward pass, and (on the output gradient) its backward pass."""
    if mask.shape != x.shape:
        raise ValueError(f"dropout mask of shape {mask.shape} does not match {x.shape}")
    return x * mask


def scale(x, factor):
    return x * x.dtype.type(factor)


def add(x, y):
    """x + y: the sum of a tensor's gradients from two readers, or of two views' outputs."""
    if x.shape != y.shape or x.dtype != y.dtype:
        raise ValueError(f"add expects arrays of one shape and dtype; got {x.shape} {x.dtype} "
                         f"and {y.shape} {y.dtype}")
    return x + y
