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


def test_topk_errors_split_ties_as_a_random_choice_would():
    probs = np.array([[0.5, 0.1, 0.2],
                      [0.3, 0.1, 0.2],
                      [0.2, 0.8, 0.2],
                      [0.0, 0.0, 0.4]])
    labels = np.array([0, 0, 1])
    # image 0: label best → no error; image 1: 0.1 ties class 1, below class 2 → top-1 error,
    # top-2 error 1/2; image 2: label 0.2 ties classes 0 and 2, below class 3 → top-1 error,
    # top-2 error 2/3 (one of the three tied takes the second place). None at top 4.
    assert topk_errors(probs, labels, (1, 2, 4)) == pytest.approx((2, 1 / 2 + 2 / 3, 0))


@pytest.mark.parametrize("classes", [5, 10, 1000])
def test_outputs_all_equal_err_as_a_random_guess(classes):
    """A network diverged to a constant output is wrong, not right, on every image: top-k
    error (K − k)/K, cuda-convnet's 1/K credit for a tie at the top generalized to k."""
    images = 6
    probs = np.full((classes, images), 1 / classes, np.float32)
    labels = np.arange(images) % classes
    top1, top5 = topk_errors(probs, labels, (1, 5))
    assert top1 / images == pytest.approx((classes - 1) / classes)
    assert top5 / images == pytest.approx((classes - 5) / classes)


def test_a_label_underflowing_to_zero_shares_its_place_with_the_other_zeros():
    """float32 probabilities of classes far below the best underflow to exactly 0: the label
    among 8 zeros below 2 classes is in the top 5 with chance 3/8, not for certain."""
    logits = np.zeros((10, 1), np.float32)
    logits[:2] = [[200], [199]]
    probs, _ = softmax_logloss(logits, np.array([5]))
    assert (probs[2:] == 0).all() and (probs[:2] > 0).all()
    assert topk_errors(probs, np.array([5]), (1, 5, 10)) == pytest.approx((1, 5 / 8, 0))


def test_a_nan_label_probability_is_an_error_at_every_k():
    """NaN equals nothing, not even itself: no chance of the top k, and no division by e = 0."""
    probs = np.full((3, 2), 1 / 3)
    probs[1, 0] = np.nan
    with np.errstate(all="raise"):
        assert topk_errors(probs, np.array([1, 0]), (1, 3)) == pytest.approx((1 + 2 / 3, 1))


def test_labels_out_of_range_are_refused():
    """Above the classes, and below: NumPy would read label −1 as the last class."""
    with pytest.raises(ValueError, match="labels"):
        softmax_logloss(np.zeros((3, 2)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\); got -1\.\.0"):
        softmax_logloss(np.zeros((3, 2)), np.array([0, -1]))


def test_labels_that_are_not_integers_are_refused():
    """0.7 or True would be read as a class (cut to 0, or 1) where a kernel takes int32."""
    for labels in (np.array([0.7, 1.0]), np.array([True, False])):
        with pytest.raises(ValueError, match=f"labels must be integers; got {labels.dtype}"):
            softmax_logloss(np.zeros((3, 2)), labels)
