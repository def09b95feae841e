"""Training on the GPU (`--gpus 0`: both towers on one GPU): one SGD step of the full default
network on the CUDA backend against the same step on the reference backend, and the bytes
crossing towers against the analytic figure. Skipped, with the reason, without a GPU."""
import numpy as np
import pytest

from convnet import alexnet
from convnet.backend import get_backend
from convnet.network import Network
from convnet.placement import Placement
from convnet.solver import SGD
from targets import require_gpu
from test_placement import analytic_exchange

pytestmark = [pytest.mark.gpu, pytest.mark.large]


def one_step(backend, model, params, images, labels):
    placement = Placement()
    network = Network(model, backend, placement=placement, seed=4,
                      params={key: value.copy() for key, value in params.items()})
    solver = SGD(0.01, 2.0, 0.9, 5e-4)
    velocity = solver.momentum_buffers(network)
    loss = network.forward(images, labels, train=True, step=3).loss
    solver.step(network, network.backward(), velocity)
    return loss, {key: np.asarray(backend.to_host(value)) for key, value in network.params.items()}, \
        placement


def test_one_training_step_on_the_gpu_matches_the_reference(rng):
    require_gpu()
    model = alexnet.build_model("2012")
    params = Network(model, get_backend("reference"), seed=4).params
    images = rng.normal(0, 50, model.image_shape + (32,)).astype(np.float32)
    labels = rng.integers(0, model.geometry.classes, 32)
    want_loss, want, _ = one_step(get_backend("reference"), model, params, images, labels)
    got_loss, got, placement = one_step(get_backend("cuda", device_id=0), model, params, images,
                                        labels)
    assert got_loss == pytest.approx(want_loss, rel=1e-4)
    for key, value in want.items():
        change = np.abs(value - params[key]).max()     # the step's own size sets the tolerance
        np.testing.assert_allclose(got[key], value, rtol=0, atol=1e-6 + 1e-3 * change,
                                   err_msg=key)
    expected = analytic_exchange(model.geometry, 32, 4)
    assert placement.bytes_moved() == 2 * sum(expected.values())
