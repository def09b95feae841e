"""Softmax, log-loss and top-k errors on the CUDA kernels of kernels/softmax.cu; the formulas of
convnet/backend/reference/softmax.py. The batch's mean loss is the fixed-order sum of the
per-image losses (bias_backward's reduction), so it has the same bits every run."""
import numpy as np

from convnet.backend.reference.softmax import check_labels, topk_errors_of_ranks
from convnet.shapes import ceil_div

from .checks import check_arrays, elementwise_grid, i32, require
from .elementwise import bias_backward
from .launch import TILES


def _per_image_grid(images):
    return max(1, ceil_div(images, TILES["kThreads"]))


def _matrix(op, scores):
    """Check (K, N) class scores; their dtype and the sizes as kernel arguments."""
    require(scores.ndim == 2, f"{op} expects (classes, images) scores; got shape {scores.shape}")
    # The kernels start each image's maximum at its first class.
    require(scores.shape[0] >= 1, f"{op} expects at least one class; got shape {scores.shape}")
    dtype = check_arrays(op, scores=scores)
    return dtype, scores.shape[1], (i32(scores.shape[0]), i32(scores.shape[1]))


def _labels(launcher, logits, labels):
    """labels as the kernels' int32 on the launcher's device, checked against the classes."""
    check_labels(logits, labels)   # where they are: the loader's are on the host, costing no sync
    # In C order: a kernel reads the labels from their first element on, whatever the strides
    # (asarray, not ascontiguousarray, which CuPy gives only its own arrays: the loader's are
    # NumPy's).
    return launcher.xp.asarray(labels, dtype=np.int32, order="C")


def softmax(launcher, logits):
    dtype, images, sizes = _matrix("softmax", logits)
    probs = launcher.empty(logits.shape, dtype)
    launcher.launch("softmax", dtype, _per_image_grid(images), TILES["kThreads"],
                    (logits, probs, *sizes))
    return probs


def softmax_logloss(launcher, logits, labels):
    """(probabilities (K, N), mean log-loss as a Python float)."""
    dtype, images, sizes = _matrix("softmax_logloss", logits)
    require(images >= 1, f"softmax_logloss needs at least one image for a mean loss; got shape "
                         f"{logits.shape}")
    labels = _labels(launcher, logits, labels)
    probs, losses = launcher.empty(logits.shape, dtype), launcher.empty((1, images), dtype)
    launcher.launch("softmax_logloss", dtype, _per_image_grid(images), TILES["kThreads"],
                    (logits, labels, probs, losses, *sizes))
    total = bias_backward(launcher, losses)
    return probs, float(total[0]) / images


def softmax_logloss_backward(launcher, probs, labels):
    dtype, images, sizes = _matrix("softmax_logloss_backward", probs)
    labels = _labels(launcher, probs, labels)
    grad = launcher.empty(probs.shape, dtype)
    launcher.launch("softmax_backward", dtype, elementwise_grid(probs.size), TILES["kThreads"],
                    (probs, labels, grad, *sizes))
    return grad


def topk_errors(launcher, probs, labels, ks=(1, 5)):
    """Expected number of top-k errors in the batch (a float), one per k."""
    dtype, images, sizes = _matrix("topk_errors", probs)
    labels = _labels(launcher, probs, labels)
    ranks = launcher.empty((2, images), np.int32)
    launcher.launch("softmax_ranks", dtype, _per_image_grid(images), TILES["kThreads"],
                    (probs, labels, ranks, *sizes))
    # One copy to the host (one wait), then the reference's formula of the ranks.
    greater, equal = np.array(ranks.tolist(), np.int32)
    return topk_errors_of_ranks(greater, equal, ks)
