"""The communication pattern: over one training step, the towers exchange exactly the analytic
number of bytes, and only at conv3, fc6, fc7 and fc8, forward and backward."""
import numpy as np
import pytest

from convnet import alexnet
from convnet.backend import get_backend
from convnet.network import Network
from convnet.placement import Placement
from convnet.solver import SGD


def analytic_exchange(geometry, images, itemsize):
    """Bytes per direction per cross-tower read, from the geometry by hand: conv3 reads the
    other tower's pool2 (C2 × S2 × S2), fc6 its pool3 (C5 × S3 × S3), fc7 and fc8 its dropout
    output (fc_units)."""
    def conv(size, shape):
        return 1 + -(-(2 * shape.pad + size - shape.filter_size) // shape.stride)

    def pool(size):
        return -(-(size - geometry.pool_size) // geometry.pool_stride) + 1

    c1, c2, c3, c4, c5 = geometry.convs
    pool2 = pool(conv(pool(conv(geometry.image_size, c1)), c2))
    pool3 = pool(conv(conv(conv(pool2, c3), c4), c5))
    per_image = {"conv3a": c2.channels * pool2 ** 2, "conv3b": c2.channels * pool2 ** 2,
                 "fc6a": c5.channels * pool3 ** 2, "fc6b": c5.channels * pool3 ** 2,
                 "fc7a": geometry.fc_units, "fc7b": geometry.fc_units, "fc8": geometry.fc_units}
    return {layer: n * images * itemsize for layer, n in per_image.items()}


@pytest.mark.parametrize("name", ["2012-small28", "paper-small64"])
def test_one_training_step_moves_the_analytic_bytes_at_four_points(name, rng):
    model = alexnet.build_model(name)
    placement = Placement()
    network = Network(model, get_backend("reference"), placement=placement, seed=2)
    images = rng.normal(0, 50, model.image_shape + (3,)).astype(np.float32)
    labels = rng.integers(0, model.geometry.classes, 3)
    solver = SGD(0.01, 2.0, 0.9, 5e-4)
    network.forward(images, labels, train=True, step=0)
    solver.step(network, network.backward(), solver.momentum_buffers(network))

    expected = analytic_exchange(model.geometry, 3, 4)
    for direction in ("forward", "backward"):
        moved = {}
        for transfer in placement.log:
            if transfer.direction == direction:
                assert transfer.layer not in moved, f"{transfer.layer} crossed twice"
                moved[transfer.layer] = transfer.nbytes
                assert transfer.source != transfer.dest
        assert moved == expected, direction
    assert placement.bytes_moved() == 2 * sum(expected.values())
    fc8 = [t for t in placement.log if t.layer == "fc8"]
    assert [(t.tensor, t.source, t.dest, t.direction) for t in fc8] == \
        [("drop7b", "b", "a", "forward"), ("drop7b", "a", "b", "backward")]


def test_default_model_exchange_per_image():
    """The full network's figure, per image in float32: 2 × (86,528 + 18,432 + 8,192) + 8,192
    bytes each way."""
    expected = analytic_exchange(alexnet.build_model().geometry, 1, 4)
    assert sum(expected.values()) == 234_496


def test_placement_rejects_a_same_tower_transfer():
    with pytest.raises(ValueError, match="not a cross-tower"):
        Placement().transfer(np.zeros(2), layer="conv2a", tensor="pool1a", source="a", dest="a",
                             direction="forward")
