"""The checker itself can fail: a backward pass with a deliberate mistake is caught."""
import numpy as np

from convnet.backend.reference import crossmap_norm_backward, crossmap_norm_forward
from convnet.norm_params import NormParams
from gradcheck import check_gradients, projection_loss

PARAMS = NormParams(size=3, k=1.0, alpha=0.3, beta=0.75, alpha_convention="paper")


def test_a_broken_backward_is_caught(rng):
    x = rng.standard_normal((4, 3, 3, 2))
    y, denoms = crossmap_norm_forward(x, PARAMS)
    dy = rng.standard_normal(x.shape)
    loss = projection_loss(lambda: crossmap_norm_forward(x, PARAMS)[0], dy)
    right = crossmap_norm_backward(dy, x, y, denoms, PARAMS)
    check_gradients(loss, {"x": x}, {"x": right}, rng).assert_ok()
    # The mistake: forget the neighbours' term, keep only g·d^(−β).
    wrong = dy * denoms ** -PARAMS.beta
    report = check_gradients(loss, {"x": x}, {"x": wrong}, rng)
    assert len(report.failures) > report.checked // 2


def test_a_slightly_wrong_gradient_is_caught(rng):
    w = rng.standard_normal(5)
    report = check_gradients(lambda: float(np.sum(np.sin(w))), {"w": w},
                             {"w": np.cos(w) * (1 + 1e-4)}, rng)
    assert len(report.failures) == 5
