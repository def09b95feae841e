import numpy as np
import pytest

from convnet.backend.reference import (softmax, softmax_logloss, softmax_logloss_backward,
                                       topk_errors)
from gradcheck import check_gradients


def test_loss_is_mean_negative_log_probability(rng):
    logits = rng.normal(0, 3, (10, 6))
    labels = rng.integers(0, 10, 6)
    probs, loss = softmax_logloss(logits, labels)
    direct = np.exp(logits) / np.exp(logits).sum(axis=0)
    np.testing.assert_allclose(probs, direct, rtol=1e-12)
    np.testing.assert_allclose(softmax(logits), direct, rtol=1e-12)
    assert loss == pytest.approx(-np.log(direct[labels, np.arange(6)]).mean(), rel=1e-12)


def test_confident_mistake_gives_finite_loss():
    logits = np.array([[0.0], [500.0]], dtype=np.float32)
    _, loss = softmax_logloss(logits, np.array([0]))
    assert loss == pytest.approx(500.0)


def test_gradient(rng):
    logits = rng.normal(0, 2, (7, 5))
    labels = rng.integers(0, 7, 5)
    probs, _ = softmax_logloss(logits, labels)
    analytic = {"logits": softmax_logloss_backward(probs, labels)}
    check_gradients(lambda: softmax_logloss(logits, labels)[1], {"logits": logits}, analytic,
                    rng).assert_ok()


def test_topk_counts_and_ties():
    probs = np.array([[0.5, 0.1, 0.2],
                      [0.3, 0.1, 0.2],
                      [0.2, 0.8, 0.2],
                      [0.0, 0.0, 0.4]])
    labels = np.array([0, 0, 1])
    # image 0: label best → no error; image 1: 0.1 ties class 1, below class 2 → top-1 error,
    # top-2 correct; image 2: label 0.2 ties classes 0 and 2, below class 3 → top-1 error only.
    assert topk_errors(probs, labels, (1, 2, 5)) == (2, 0, 0)


def test_labels_out_of_range_are_refused():
    """Above the classes, and below: NumPy would read label −1 as the last class."""
    with pytest.raises(ValueError, match="labels"):
        softmax_logloss(np.zeros((3, 2)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\); got -1\.\.0"):
        softmax_logloss(np.zeros((3, 2)), np.array([0, -1]))
