"""Overlapping max pooling: forward against the definition (overhanging last windows included,
or whole windows only), gradients by finite differences on tie-free inputs, and cuda-convnet's
tie-inclusive backward."""
import numpy as np
import pytest

from convnet.backend.reference import maxpool_backward, maxpool_forward
from convnet.shapes import pool_output_size
import draws
from gradcheck import check_gradients, projection_loss


def direct_pool(x, size, stride, overhang):
    out_h = pool_output_size(x.shape[1], size, stride, overhang=overhang)
    out_w = pool_output_size(x.shape[2], size, stride, overhang=overhang)
    y = np.empty((x.shape[0], out_h, out_w, x.shape[3]))
    for oy in range(out_h):
        for ox in range(out_w):
            window = x[:, oy * stride:oy * stride + size, ox * stride:ox * stride + size]
            y[:, oy, ox] = window.max(axis=(1, 2))
    return y


def tie_free(shape, rng):
    """Distinct values at least 1/size apart, so a ±h step never changes a window's maximum."""
    return rng.permutation(np.arange(np.prod(shape), dtype=np.float64)).reshape(shape) \
        / np.prod(shape) - 0.5


@pytest.mark.parametrize("size,stride,pixels,overhang", [
    (3, 2, 13, True), (3, 2, 8, True), (3, 2, 3, True), (2, 2, 7, True), (3, 1, 5, True),
    (3, 3, 10, True), (2, 2, 7, False), (3, 2, 8, False), (2, 2, 8, False)])
def test_forward_matches_definition(size, stride, pixels, overhang, rng):
    x = rng.standard_normal((3, pixels, pixels, 2))
    np.testing.assert_array_equal(maxpool_forward(x, size=size, stride=stride, overhang=overhang),
                                  direct_pool(x, size, stride, overhang))


@pytest.mark.parametrize("size,stride,pixels,overhang", [
    (3, 2, 13, True), (3, 2, 8, True), (2, 2, 7, True), (3, 3, 10, True), (2, 2, 7, False),
    (3, 2, 8, False)])
def test_gradients(size, stride, pixels, overhang, rng):
    x = tie_free((2, pixels, pixels, 3), rng)
    y = maxpool_forward(x, size=size, stride=stride, overhang=overhang)
    dy = rng.standard_normal(y.shape)
    analytic = {"x": maxpool_backward(dy, x, y, size=size, stride=stride, overhang=overhang)}
    loss = projection_loss(lambda: maxpool_forward(x, size=size, stride=stride,
                                                   overhang=overhang), dy)
    check_gradients(loss, {"x": x}, analytic, rng, samples=60).assert_ok()


def direct_pool_backward(dy, x, y, size, stride):
    """cuda-convnet's rule as a loop: each window's gradient to every input equal to its
    maximum."""
    dx = np.zeros_like(x)
    for oy in range(y.shape[1]):
        for ox in range(y.shape[2]):
            rows = slice(oy * stride, oy * stride + size)
            cols = slice(ox * stride, ox * stride + size)
            dx[:, rows, cols] += np.where(x[:, rows, cols] == y[:, oy:oy + 1, ox:ox + 1],
                                          dy[:, oy:oy + 1, ox:ox + 1], 0)
    return dx


def test_random_geometries_against_the_definition(rng):
    """Any shape, window, stride up to the window and either edge rule, on inputs with and
    without ties: forward and the tie-inclusive backward against the loops."""
    for _ in range(draws.DRAWS):
        shape = draws.activation_shape(rng, channels=4, side=14, images=(1, 2, 3))
        size, stride, overhang = draws.pool_window(rng, shape)
        x, ties = draws.pool_input(rng, shape)
        what = f"shape {shape}, size {size}, stride {stride}, overhang {overhang}, ties {ties}"
        y = maxpool_forward(x, size=size, stride=stride, overhang=overhang)
        np.testing.assert_array_equal(y, direct_pool(x, size, stride, overhang), err_msg=what)
        dy = rng.standard_normal(y.shape)
        np.testing.assert_allclose(maxpool_backward(dy, x, y, size=size, stride=stride,
                                                    overhang=overhang),
                                   direct_pool_backward(dy, x, y, size, stride), rtol=1e-12,
                                   atol=1e-12, err_msg=what)


def test_pixels_past_the_last_whole_window_get_no_gradient(rng):
    x = rng.standard_normal((2, 7, 7, 3))
    y = maxpool_forward(x, size=2, stride=2, overhang=False)
    assert y.shape == (2, 3, 3, 3)
    dx = maxpool_backward(np.ones_like(y), x, y, size=2, stride=2, overhang=False)
    assert (dx[:, 6] == 0).all() and (dx[:, :, 6] == 0).all()
    assert dx[:, :6, :6].sum() == y.size       # one maximum per tie-free window


def test_ties_each_receive_the_whole_gradient():
    """cuda-convnet sends a window's gradient to every input equal to its maximum."""
    x = np.zeros((1, 3, 5, 1))
    x[0, 1, 2, 0] = x[0, 0, 0, 0] = 1.0        # two maxima shared by windows 0 and 1
    x[0, 2, 4, 0] = 1.0                        # the only maximum of window 1's right part
    y = maxpool_forward(x, size=3, stride=2)   # 3x5 → 1x2 windows: columns 0-2 and 2-4
    assert y.shape == (1, 1, 2, 1) and (y == 1).all()
    dx = maxpool_backward(np.array([10.0, 100.0]).reshape(1, 1, 2, 1), x, y, size=3, stride=2)
    expected = np.zeros_like(x)
    expected[0, 0, 0, 0] = 10                  # window 0 only
    expected[0, 1, 2, 0] = 110                 # in both windows, a maximum of each
    expected[0, 2, 4, 0] = 100                 # window 1 only
    np.testing.assert_array_equal(dx, expected)


def test_all_equal_window_sends_gradient_to_every_input():
    x = np.full((1, 3, 3, 1), -2.0)
    y = maxpool_forward(x, size=3, stride=2)
    dx = maxpool_backward(np.ones_like(y), x, y, size=3, stride=2)
    np.testing.assert_array_equal(dx, np.ones_like(x))


def test_overhanging_window_ignores_missing_pixels():
    x = -np.ones((1, 4, 4, 1))                 # 4 with window 3, stride 2 → 2 outputs, last
    y = maxpool_forward(x, size=3, stride=2)   # window covers rows 2-4 of which row 4 is absent
    np.testing.assert_array_equal(y, -np.ones((1, 2, 2, 1)))
