"""The SGD update, against numbers worked out by hand, and the solver's per-parameter rates."""
import numpy as np
import pytest

from convnet import alexnet
from convnet.backend import get_backend
from convnet.backend.reference import sgd_update
from convnet.network import Network
from convnet.solver import SGD


def test_one_step_by_hand():
    w = np.array([1.0, -2.0])
    v = np.array([0.5, 0.0])
    grad = np.array([4.0, -1.0])
    sgd_update(w, v, grad, lr=0.1, momentum=0.9, weight_decay=0.01)
    # v = 0.9·v − 0.01·0.1·w − 0.1·grad = [0.45 − 0.001 − 0.4, 0 + 0.002 + 0.1]
    np.testing.assert_allclose(v, [0.049, 0.102], rtol=1e-12)
    np.testing.assert_allclose(w, [1.049, -1.898], rtol=1e-12)


def test_float32_stays_float32():
    w, v, g = (np.ones(3, np.float32) for _ in range(3))
    sgd_update(w, v, g, lr=0.01, momentum=0.9, weight_decay=5e-4)
    assert w.dtype == v.dtype == np.float32


def test_solver_rates_per_parameter(rng):
    model = alexnet.build_model("2012-small28")
    network = Network(model, get_backend("reference"), dtype=np.float64, seed=1)
    before = {k: v.copy() for k, v in network.params.items()}
    grads = {k: rng.standard_normal(v.shape) for k, v in network.params.items()}
    solver = SGD(weight_lr=0.01, bias_lr_multiplier=2.0, momentum=0.9, weight_decay=5e-4,
                 layer_lr_scale={"conv1b": 0.1}, frozen_layers=("conv1a",))
    velocity = solver.momentum_buffers(network)
    for key in velocity:   # a frozen layer keeps the momentum it had: no update moves it
        if key.startswith("conv1a/"):
            velocity[key] = rng.standard_normal(velocity[key].shape)
    kept_velocity = {key: value.copy() for key, value in velocity.items()}
    solver.step(network, grads, velocity)
    for key, value in network.params.items():
        layer = key.split("/")[0]
        if layer == "conv1a":
            np.testing.assert_array_equal(value, before[key])          # frozen
            np.testing.assert_array_equal(velocity[key], kept_velocity[key])
        elif key.endswith("/bias"):                     # 2× rate, no decay, conv1b's too
            np.testing.assert_allclose(value, before[key] - 0.02 * grads[key], rtol=1e-12)
        else:
            lr = 0.001 if layer == "conv1b" else 0.01   # the scale is the weights' alone
            expected = before[key] - lr * 5e-4 * before[key] - lr * grads[key]
            np.testing.assert_allclose(value, expected, rtol=1e-12)


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match=r"one shape; got \(2,\), \(3,\), \(2,\)"):
        sgd_update(np.ones(2), np.ones(3), np.ones(2), lr=1, momentum=0, weight_decay=0)
