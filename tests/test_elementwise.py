"""ReLU, tanh, dropout and scaling."""
import numpy as np
import pytest

from convnet.backend.reference import (add, apply_mask, dropout_mask, relu_backward, relu_forward,
                                       scale, tanh_backward, tanh_forward)
from gradcheck import check_gradients, projection_loss


def test_relu_gradient_away_from_the_kink(rng):
    x = rng.standard_normal((4, 3, 3, 2))
    x[np.abs(x) < 1e-3] = 0.5                  # step around the kink at 0
    dy = rng.standard_normal(x.shape)
    analytic = {"x": relu_backward(dy, relu_forward(x))}
    check_gradients(projection_loss(lambda: relu_forward(x), dy), {"x": x}, analytic, rng,
                    samples=72).assert_ok()


def test_relu_at_zero_passes_no_gradient():
    np.testing.assert_array_equal(relu_backward(np.ones(3), relu_forward(np.array([-1., 0, 2]))),
                                  [0, 0, 1])


def test_tanh_gradient_from_its_output(rng):
    x = rng.standard_normal((4, 3, 3, 2)) * 2   # into both tails, where the slope is small
    dy = rng.standard_normal(x.shape)
    analytic = {"x": tanh_backward(dy, tanh_forward(x))}
    check_gradients(projection_loss(lambda: tanh_forward(x), dy), {"x": x}, analytic, rng,
                    samples=72).assert_ok()


def test_tanh_keeps_the_element_type():
    for dtype in (np.float32, np.float64):
        x = np.linspace(-3, 3, 7, dtype=dtype)
        assert tanh_forward(x).dtype == tanh_backward(x, tanh_forward(x)).dtype == dtype


def test_dropout_mask_is_a_function_of_its_key(rng):
    key = int(rng.integers(2 ** 32))
    mask = dropout_mask((64, 32), 0.5, key)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    np.testing.assert_array_equal(mask, dropout_mask((64, 32), 0.5, key))
    assert (mask != dropout_mask((64, 32), 0.5, (key + 1) % 2 ** 32)).any()


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.1])
def test_dropout_keeps_the_requested_fraction(keep, rng):
    mask = dropout_mask((1000, 200), keep, int(rng.integers(2 ** 32)))
    # 200,000 Bernoulli draws: 6 standard deviations is under 0.7 percentage points.
    assert abs(mask.mean() - keep) < 6 * np.sqrt(keep * (1 - keep) / mask.size)
    rows, columns = mask.mean(axis=1), mask.mean(axis=0)
    assert rows.std() < 3 * np.sqrt(keep * (1 - keep) / 200)       # no structure per unit
    assert columns.std() < 3 * np.sqrt(keep * (1 - keep) / 1000)   # nor per image


def test_dropout_keep_one_keeps_everything():
    assert dropout_mask((10, 10), 1.0, 7).all()


def test_dropout_forward_backward_and_test_scale(rng):
    x = rng.standard_normal((16, 8))
    mask = dropout_mask(x.shape, 0.5, 3)
    y = apply_mask(x, mask)
    np.testing.assert_array_equal(y, np.where(mask == 1, x, 0))
    dy = rng.standard_normal(x.shape)
    analytic = {"x": apply_mask(dy, mask)}
    check_gradients(projection_loss(lambda: apply_mask(x, mask), dy), {"x": x}, analytic, rng
                    ).assert_ok()
    np.testing.assert_array_equal(scale(x, 0.5), x * 0.5)   # non-inverted: test time × keep
    assert scale(x.astype(np.float32), 0.5).dtype == np.float32


def test_dropout_mask_of_another_shape_is_refused():
    """A (F, 1) mask would broadcast: every image would get the first image's mask."""
    with pytest.raises(ValueError, match=r"mask of shape \(4, 1\) does not match \(4, 3\)"):
        apply_mask(np.ones((4, 3)), np.ones((4, 1), np.uint8))


def test_dropout_mask_past_the_32_bit_counter_is_refused():
    """2¹⁶ units of a batch of 2¹⁶ + 1 images number more elements than a 32-bit counter: the
    indices would wrap and repeat masks. Refused before anything is drawn (one image's part)."""
    with pytest.raises(ValueError, match="exceeds the 32-bit counter"):
        dropout_mask((2 ** 16, 1), 0.5, 1, start=0, total=2 ** 16 + 1)


@pytest.mark.parametrize("keep,key,wrong", [(0.0, 1, r"keep probability .* got 0.0"),
                                            (1.5, 1, r"keep probability .* got 1.5"),
                                            (0.5, -1, "key must be a 32-bit unsigned integer"),
                                            (0.5, 2 ** 32, "key must be a 32-bit unsigned")])
def test_dropout_bad_arguments(keep, key, wrong):
    with pytest.raises(ValueError, match=wrong):
        dropout_mask((2, 2), keep, key)


def test_add_refuses_arrays_of_another_shape_or_type():
    """A float64 gradient added to a float32 one would make the network float64 from there."""
    with pytest.raises(ValueError, match=r"one shape and dtype; got \(2,\) float32 and \(2,\) "
                                         r"float64"):
        add(np.zeros(2, np.float32), np.zeros(2))
    with pytest.raises(ValueError, match=r"got \(2, 3\) float32 and \(3, 2\) float32"):
        add(np.zeros((2, 3), np.float32), np.zeros((3, 2), np.float32))
