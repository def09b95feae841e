"""Response normalization: cross-map and same-map, forward against the formula written as
loops, gradients by finite differences, both coefficient conventions."""
import numpy as np
import pytest

from convnet.backend.reference import (crossmap_norm_backward, crossmap_norm_forward,
                                       samemap_norm_backward, samemap_norm_forward)
from convnet.norm_params import NormParams
import draws
from gradcheck import check_gradients, projection_loss

CODE = NormParams(size=5, k=2.0, alpha=1e-4, beta=0.75, alpha_convention="per-term")
PAPER = NormParams(size=5, k=2.0, alpha=1e-4, beta=0.75, alpha_convention="paper")
SAMEMAP = NormParams(size=5, k=1.0, alpha=1e-3, beta=0.75, alpha_convention="per-term")
# Large inputs and a large coefficient, so that the normalization matters for the check.
STRONG = NormParams(size=3, k=1.0, alpha=0.3, beta=0.75, alpha_convention="paper")


def test_coefficient_conventions():
    assert CODE.coefficient(5) == pytest.approx(2e-5)          # released code: α/n
    assert PAPER.coefficient(5) == pytest.approx(1e-4)         # paper text: α
    assert SAMEMAP.coefficient(25) == pytest.approx(4e-5)      # cnorm2: s/size²
    with pytest.raises(ValueError, match="needs an odd window; got size 4"):
        NormParams(size=4, k=2.0, alpha=1e-4, beta=0.75, alpha_convention="paper")
    with pytest.raises(ValueError, match="unknown alpha convention 'alpha/n'"):
        NormParams(size=5, k=2.0, alpha=1e-4, beta=0.75, alpha_convention="alpha/n")


def test_a_window_of_one_map_is_a_valid_normalization():
    """Size 1 is odd: each activity normalized by itself alone, c·a² (its one term)."""
    single = NormParams(size=1, k=2.0, alpha=1e-4, beta=0.75, alpha_convention="per-term")
    assert single.coefficient(1) == pytest.approx(1e-4)
    x = np.linspace(-3, 3, 24).reshape(2, 3, 2, 2)
    np.testing.assert_allclose(crossmap_norm_forward(x, single)[0],
                               x * (2.0 + 1e-4 * x ** 2) ** -0.75, rtol=1e-12)


def direct_crossmap(x, p):
    c = p.coefficient(p.size)
    y = np.empty_like(x)
    half = p.size // 2
    for i in range(x.shape[0]):
        window = x[max(0, i - half):i + half + 1]
        y[i] = x[i] * (p.k + c * (window ** 2).sum(axis=0)) ** -p.beta
    return y


def direct_samemap(x, p):
    c = p.coefficient(p.size ** 2)
    y = np.empty_like(x)
    half = p.size // 2
    for r in range(x.shape[1]):
        for q in range(x.shape[2]):
            window = x[:, max(0, r - half):r + half + 1, max(0, q - half):q + half + 1]
            y[:, r, q] = x[:, r, q] * (p.k + c * (window ** 2).sum(axis=(1, 2))) ** -p.beta
    return y


@pytest.mark.parametrize("params", [CODE, PAPER, STRONG], ids=["code", "paper", "strong"])
@pytest.mark.parametrize("channels", [1, 3, 7])   # fewer channels than the window, and more
def test_crossmap_forward_matches_formula(params, channels, rng):
    x = rng.normal(0, 30, (channels, 4, 3, 2))
    y, denoms = crossmap_norm_forward(x, params)
    np.testing.assert_allclose(y, direct_crossmap(x, params), rtol=1e-12)
    np.testing.assert_allclose(y, x * denoms ** -params.beta, rtol=1e-12)


@pytest.mark.parametrize("params", [SAMEMAP, STRONG], ids=["cnorm2", "strong"])
@pytest.mark.parametrize("size", [2, 6])          # maps smaller and larger than the window
def test_samemap_forward_matches_formula(params, size, rng):
    x = rng.normal(0, 30, (3, size, size, 2))
    y, _ = samemap_norm_forward(x, params)
    np.testing.assert_allclose(y, direct_samemap(x, params), rtol=1e-12)


def test_a_window_past_both_ends_is_clipped(rng):
    """A window of 7 over 2 channels, or over 2×2 maps, reaches past both ends at once: each
    activity is normalized by every term that exists, once."""
    wide = NormParams(size=7, k=1.0, alpha=0.3, beta=0.75, alpha_convention="paper")
    x = rng.normal(0, 1, (2, 2, 2, 3))
    np.testing.assert_allclose(crossmap_norm_forward(x, wide)[0], direct_crossmap(x, wide),
                               rtol=1e-12)
    np.testing.assert_allclose(samemap_norm_forward(x, wide)[0], direct_samemap(x, wide),
                               rtol=1e-12)


@pytest.mark.parametrize("kind", ["crossmap", "samemap"])
@pytest.mark.parametrize("params", [CODE, STRONG], ids=["code", "strong"])
@pytest.mark.parametrize("shape", [(3, 5, 5, 2), (8, 4, 4, 1)])
def test_gradients(kind, params, shape, rng):
    forward, backward = {"crossmap": (crossmap_norm_forward, crossmap_norm_backward),
                         "samemap": (samemap_norm_forward, samemap_norm_backward)}[kind]
    x = rng.normal(0, 30 if params is CODE else 1, shape)
    y, denoms = forward(x, params)
    dy = rng.standard_normal(shape)
    analytic = {"x": backward(dy, x, y, denoms, params)}
    loss = projection_loss(lambda: forward(x, params)[0], dy)
    check_gradients(loss, {"x": x}, analytic, rng, samples=40).assert_ok()


def test_random_shapes_and_parameters_against_the_formula_and_finite_differences(rng):
    """Any shape, any odd window up to the kernels' widest, either convention of alpha: forward
    against the loops, backward by finite differences."""
    for _ in range(draws.DRAWS):
        shape = draws.activation_shape(rng, channels=12, side=7, images=(1, 2, 3))
        params = draws.norm_params(rng)
        kind = str(rng.choice(["crossmap", "samemap"]))
        forward, backward, direct = {
            "crossmap": (crossmap_norm_forward, crossmap_norm_backward, direct_crossmap),
            "samemap": (samemap_norm_forward, samemap_norm_backward, direct_samemap)}[kind]
        x = rng.normal(0, float(rng.choice([1, 3, 30])), shape)
        y, denoms = forward(x, params)
        np.testing.assert_allclose(y, direct(x, params), rtol=1e-12, atol=1e-300,
                                   err_msg=f"{kind} {shape} {params}")
        dy = rng.standard_normal(shape)
        analytic = {"x": backward(dy, x, y, denoms, params)}
        loss = projection_loss(lambda: forward(x, params)[0], dy)
        check_gradients(loss, {"x": x}, analytic, rng, samples=12).assert_ok()


def test_float32_agrees_with_float64(rng):
    x = rng.normal(0, 30, (16, 6, 6, 4))
    exact, _ = crossmap_norm_forward(x, CODE)
    single, _ = crossmap_norm_forward(x.astype(np.float32), CODE)
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, exact, rtol=1e-5, atol=1e-5)
