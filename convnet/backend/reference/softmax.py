"""Softmax with multinomial log-loss and top-k error, the reference.

logits (K, N), labels (N,) integers in [0, K).
  p = softmax over classes; loss = mean over images of −log p[label]
  ∂loss/∂logits = (p − onehot(label)) / N
An image is a top-k error when at least k classes have a probability strictly greater than its
label's (ties count in the image's favour).
"""
import numpy as np


def _check(logits, labels):
    if logits.ndim != 2 or labels.shape != (logits.shape[1],):
        raise ValueError(f"softmax expects logits (K,N) and labels (N,); "
                         f"got shapes {logits.shape} and {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[0]):
        raise ValueError(f"labels must lie in [0, {logits.shape[0]}); "
                         f"got {labels.min()}..{labels.max()}")


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
    _check(logits, labels)
    log_probs = _log_softmax(logits)
    loss = -log_probs[labels, np.arange(labels.size)].mean()
    return np.exp(log_probs), float(loss)


def softmax_logloss_backward(probs, labels):
    _check(probs, labels)
    grad = probs.copy()
    grad[labels, np.arange(labels.size)] -= 1
    grad /= labels.size
    return grad


def topk_errors(probs, labels, ks=(1, 5)):
    """Number of top-k errors in the batch, one count per k."""
    _check(probs, labels)
    label_probs = probs[labels, np.arange(labels.size)]
    better = (probs > label_probs).sum(axis=0)
    return tuple(int((better >= k).sum()) for k in ks)
