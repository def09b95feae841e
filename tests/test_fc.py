import numpy as np
import pytest

from convnet.backend.reference import (add_bias, bias_backward, fc_backward_input,
                                       fc_backward_weights, fc_forward)
from gradcheck import check_gradients, projection_loss


def test_forward_is_the_product(rng):
    x, w = rng.standard_normal((7, 3)), rng.standard_normal((7, 5))
    np.testing.assert_allclose(fc_forward(x, w), np.einsum("dn,df->fn", x, w), rtol=1e-12)


def test_gradients(rng):
    x, w, b = rng.standard_normal((9, 4)), rng.standard_normal((9, 6)), rng.standard_normal(6)
    dy = rng.standard_normal((6, 4))
    analytic = {"x": fc_backward_input(dy, w), "w": fc_backward_weights(dy, x),
                "b": bias_backward(dy)}
    loss = projection_loss(lambda: add_bias(fc_forward(x, w), b), dy)
    check_gradients(loss, {"x": x, "w": w, "b": b}, analytic, rng).assert_ok()


def test_inputs_of_another_depth_than_the_weights_are_refused_naming_both_shapes(rng):
    with pytest.raises(ValueError, match=r"fully-connected expects x \(D,N\) and w \(D,F\) with "
                                         r"the same D; got shapes \(7, 3\) and \(6, 5\)"):
        fc_forward(rng.standard_normal((7, 3)), rng.standard_normal((6, 5)))
