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
    with pytest.raises(ValueError, match=r"fc_forward expects x \(D,N\) and w \(D,F\) with "
                                         r"the same D; got shapes \(7, 3\) and \(6, 5\)"):
        fc_forward(rng.standard_normal((7, 3)), rng.standard_normal((6, 5)))


def test_each_backward_pass_refuses_operands_that_do_not_go_together(rng):
    """dy (F, N) against w (D, F) and x (D, N): another F, another N, a vector for a batch of
    one, or another float type, each named, not broadcast nor widened."""
    dy, w, x = (rng.standard_normal(shape) for shape in ((6, 4), (9, 6), (9, 4)))
    for call, message in (
            (lambda: fc_backward_input(dy[:5], w), r"fc_backward_input expects dy \(F,N\) and "
                                                    r"w \(D,F\) with the same F; got shapes "
                                                    r"\(5, 4\) and \(9, 6\)"),
            (lambda: fc_backward_input(dy[:, 0], w), r"got shapes \(6,\) and \(9, 6\)"),
            (lambda: fc_backward_weights(dy, x[:, :3]), r"fc_backward_weights expects dy \(F,N\) "
                                                         r"and x \(D,N\) with the same N"),
            (lambda: fc_backward_weights(dy.astype(np.float32), x),
             "fc_backward_weights: x is float64 but dy is float32")):
        with pytest.raises(ValueError, match=message):
            call()
