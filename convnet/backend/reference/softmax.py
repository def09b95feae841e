"""Softmax with multinomial log-loss and top-k error, the reference.

logits (K, N), labels (N,) integers in [0, K).
  p = softmax over classes; loss = mean over images of −log p[label]
  ∂loss/∂logits = (p − onehot(label)) / N
Top-k error, ties broken uniformly at random and the expectation taken (cuda-convnet's rule):
with g = #{j : p_j > p_label} and e = #{j : p_j = p_label} (the label among them), the label is in
the top k with probability clamp((k − g) / e, 0, 1), and the image's error is 1 minus that, so an
error count is a fraction. cuda-convnet's logistic-regression cost gives a label tied at the
maximum 1/e of a correct answer, "a safety measure to prevent over-estimating your accuracy": all
classes equal is an error of (K − 1)/K, not none. A NaN label probability (e = 0) is an error.
"""
import numpy as np


def check_labels(logits, labels):
    """Class scores (K, N) and their labels, (N,) integers in [0, K), of either backend's array
    module: a ValueError saying what is wrong (a fractional label would be cut to a class)."""
    if logits.ndim != 2 or labels.shape != (logits.shape[1],):
        raise ValueError(f"softmax expects logits (K,N) and labels (N,); "
                         f"got shapes {logits.shape} and {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers; got {labels.dtype}")
    if labels.size:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= logits.shape[0]:
            raise ValueError(f"labels must lie in [0, {logits.shape[0]}); got {low}..{high}")


def _log_softmax(logits):
    shifted = logits - logits.max(axis=0, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=0, keepdims=True))


def softmax(logits):
    if logits.ndim != 2:
        raise ValueError(f"softmax expects logits (K,N); got shape {logits.shape}")
    return np.exp(_log_softmax(logits))


def softmax_logloss(logits, labels):
    """(probabilities (K, N), mean log-loss as a Python float), the loss from log-probabilities
    so that a confident mistake gives a large finite loss, not −log(0)."""
    check_labels(logits, labels)
    log_probs = _log_softmax(logits)
    loss = -log_probs[labels, np.arange(labels.size)].mean()
    return np.exp(log_probs), float(loss)


def softmax_logloss_backward(probs, labels):
    check_labels(probs, labels)
    grad = probs.copy()
    grad[labels, np.arange(labels.size)] -= 1
    grad /= labels.size
    return grad


def topk_errors(probs, labels, ks=(1, 5)):
    """Expected number of top-k errors in the batch (a float), one per k."""
    check_labels(probs, labels)
    label_probs = probs[labels, np.arange(labels.size)]
    return topk_errors_of_ranks((probs > label_probs).sum(axis=0),
                                (probs == label_probs).sum(axis=0), ks)


def topk_errors_of_ranks(greater, equal, ks):
    """The batch's expected top-k errors from each image's g (`greater`) and e (`equal`),
    host arrays (N,); the CUDA backend counts g and e on the device and ends here too."""
    # clamp((k − g) / e, 0, 1) as clamp(k − g, 0, e) / e: no division by e = 0 (NaN, no chance)
    return tuple(float((1 - np.clip(k - greater, 0, equal) / np.maximum(equal, 1)).sum())
                 for k in ks)
