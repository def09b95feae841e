"""Convolution: forward against a direct loop over the definition, gradients by finite
differences, for AlexNet's kinds of geometry (overhang, padding, strides that do not divide)."""
import re

import numpy as np
import pytest

from convnet.backend.reference import (add_bias, bias_backward, conv_backward_filters,
                                       conv_backward_input, conv_forward)
from convnet.shapes import conv_output_size
import draws
from gradcheck import check_gradients, projection_loss

# (channels, size, images, filters, filter_size, stride, pad)
GEOMETRIES = {
    "conv1-overhang": (3, 15, 2, 4, 5, 4, 0),      # 15 → 4 outputs, the last reads 2 zeros
    "padded": (5, 7, 3, 6, 5, 1, 2),               # conv2's kind
    "stride-not-dividing": (2, 10, 2, 3, 3, 3, 1),
    "batch-1": (4, 6, 1, 5, 3, 1, 1),
    "1x1": (3, 5, 2, 2, 1, 1, 0),
}


def direct_conv(x, w, stride, pad):
    channels, height, width, images = x.shape
    filter_size, filters = w.shape[1], w.shape[3]
    out_h = conv_output_size(height, filter_size, stride, pad)
    out_w = conv_output_size(width, filter_size, stride, pad)
    y = np.zeros((filters, out_h, out_w, images))
    for oy in range(out_h):
        for ox in range(out_w):
            for i in range(filter_size):
                for j in range(filter_size):
                    row, col = oy * stride - pad + i, ox * stride - pad + j
                    if 0 <= row < height and 0 <= col < width:
                        y[:, oy, ox, :] += w[:, i, j, :].T @ x[:, row, col, :]
    return y


def make(geometry, rng, dtype=np.float64):
    channels, size, images, filters, filter_size, stride, pad = geometry
    x = rng.standard_normal((channels, size, size, images)).astype(dtype)
    w = rng.standard_normal((channels, filter_size, filter_size, filters)).astype(dtype)
    return x, w, stride, pad


@pytest.mark.parametrize("name", GEOMETRIES)
def test_forward_matches_definition(name, rng):
    x, w, stride, pad = make(GEOMETRIES[name], rng)
    np.testing.assert_allclose(conv_forward(x, w, stride=stride, pad=pad),
                               direct_conv(x, w, stride, pad), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", GEOMETRIES)
def test_gradients(name, rng):
    x, w, stride, pad = make(GEOMETRIES[name], rng)
    b = rng.standard_normal(w.shape[3])
    dy = rng.standard_normal(conv_forward(x, w, stride=stride, pad=pad).shape)
    loss = projection_loss(lambda: add_bias(conv_forward(x, w, stride=stride, pad=pad), b), dy)
    analytic = {
        "x": conv_backward_input(dy, w, input_size=x.shape[1], stride=stride, pad=pad),
        "w": conv_backward_filters(dy, x, filter_size=w.shape[1], stride=stride, pad=pad),
        "b": bias_backward(dy),
    }
    check_gradients(loss, {"x": x, "w": w, "b": b}, analytic, rng).assert_ok()


@pytest.mark.parametrize("height,width", [(9, 10), (10, 9)])
def test_non_square_images_overhanging_one_edge_only(height, width, rng):
    """x is (C, H, W, N): with filter 3, stride 2 and no padding, 9 rows fit whole windows but
    10 columns leave a last window overhanging by one. Each edge is padded for its own overhang."""
    x = rng.standard_normal((2, height, width, 3))
    w = rng.standard_normal((2, 3, 3, 4))
    np.testing.assert_allclose(conv_forward(x, w, stride=2, pad=0), direct_conv(x, w, 2, 0),
                               rtol=1e-12, atol=1e-12)


def random_geometry(rng):
    """(x's shape, filters, filter size, stride, pad) drawn at random: any filter size, stride
    and padding the input allows, a square input half the time (the input gradient's op takes
    its size as one int there) and else rows and columns apart."""
    window = draws.conv_window(rng, side=16, filter_sizes=range(1, 8), square=False)
    height, width, filter_size, stride, pad = window
    channels, images, filters = (int(v) for v in rng.integers(1, 6, 3))
    return (channels, height, width, images), filters, filter_size, stride, pad


def test_random_geometries_against_the_definition_and_the_adjoint_identities(rng):
    """Forward against the loop; the gradients, exactly as the forward map is bilinear, by
    ⟨conv(x, w), dy⟩ = ⟨x, ∂x⟩ = ⟨w, ∂w⟩ (each gradient the adjoint of the map in its operand),
    and the bias gradient likewise as the adjoint of add_bias: ⟨add_bias(0, b), dy⟩ = ⟨b, ∂b⟩."""
    for _ in range(draws.DRAWS):
        geometry = random_geometry(rng)
        x_shape, filters, filter_size, stride, pad = geometry
        x = rng.standard_normal(x_shape)
        w = rng.standard_normal((x_shape[0], filter_size, filter_size, filters))
        y = conv_forward(x, w, stride=stride, pad=pad)
        np.testing.assert_allclose(y, direct_conv(x, w, stride, pad), rtol=1e-12, atol=1e-12,
                                   err_msg=str(geometry))
        dy = rng.standard_normal(y.shape)
        pairing = np.vdot(y, dy)
        dw = conv_backward_filters(dy, x, filter_size=filter_size, stride=stride, pad=pad)
        assert np.vdot(w, dw) == pytest.approx(pairing, rel=1e-10, abs=1e-10), geometry
        sides = x_shape[1] if x_shape[1] == x_shape[2] else x_shape[1:3]
        dx = conv_backward_input(dy, w, input_size=sides, stride=stride, pad=pad)
        assert dx.shape == x_shape, geometry
        assert np.vdot(x, dx) == pytest.approx(pairing, rel=1e-10, abs=1e-10), geometry
        b = rng.standard_normal(filters)
        assert np.vdot(b, bias_backward(dy)) == pytest.approx(
            np.vdot(add_bias(np.zeros_like(y), b), dy), rel=1e-10, abs=1e-10), geometry


def test_float32_agrees_with_float64(rng):
    x, w, stride, pad = make(GEOMETRIES["padded"], rng)
    exact = conv_forward(x, w, stride=stride, pad=pad)
    single = conv_forward(x.astype(np.float32), w.astype(np.float32), stride=stride, pad=pad)
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, exact, rtol=1e-4, atol=1e-4 * np.abs(exact).max())


def test_multi_input_layer_equals_one_conv_over_concatenated_channels(rng):
    """conv3 over [pool2a; pool2b] with one weight array per input."""
    xa, wa, stride, pad = make((3, 6, 2, 4, 3, 1, 1), rng)
    xb, wb, _, _ = make((2, 6, 2, 4, 3, 1, 1), rng)
    summed = conv_forward(xa, wa, stride=1, pad=1) + conv_forward(xb, wb, stride=1, pad=1)
    joined = conv_forward(np.concatenate([xa, xb]), np.concatenate([wa, wb]), stride=1, pad=1)
    np.testing.assert_allclose(summed, joined, rtol=1e-12, atol=1e-12)


def test_bad_shapes_are_refused(rng):
    x, w, _, _ = make(GEOMETRIES["padded"], rng)
    with pytest.raises(ValueError, match="channels"):
        conv_forward(x[:2], w, stride=1, pad=2)
    with pytest.raises(ValueError, match="float32"):
        conv_forward(x.astype(np.float32), w, stride=1, pad=2)
    with pytest.raises(ValueError, match="bias"):
        add_bias(np.zeros((3, 2, 2, 1)), np.zeros(4))
    # 7 padded by 2 under 5×5 filters gives 7 rows: a gradient of 8 is another convolution's
    with pytest.raises(ValueError, match=r"conv gradient has shape \(6, 8, 8, 3\); an input of "
                                         r"7 × 7 with filter 5, stride 1, pad 2 gives "
                                         r"\(6, 7, 7, 3\)"):
        conv_backward_input(np.zeros((6, 8, 8, 3)), w, input_size=7, stride=1, pad=2)
    # a gradient of other columns, or filters, than the input's: not read as if it were
    for wrong in (np.zeros((6, 7, 5, 3)), np.zeros((4, 7, 7, 3))):
        with pytest.raises(ValueError, match=re.escape(f"conv gradient has shape {wrong.shape}")):
            conv_backward_input(wrong, w, input_size=7, stride=1, pad=2)
    with pytest.raises(ValueError, match="conv gradient is float32 but filters are float64"):
        conv_backward_input(np.zeros((6, 7, 7, 3), np.float32), w, input_size=7, stride=1, pad=2)
    # a gradient of as many elements in another shape would be read in the wrong order
    with pytest.raises(ValueError, match=r"conv gradient has shape \(6, 49, 1, 3\); the input "
                                         r"\(5, 7, 7, 3\) gives \(6, 7, 7, 3\)"):
        conv_backward_filters(np.zeros((6, 49, 1, 3)), x, filter_size=5, stride=1, pad=2)
