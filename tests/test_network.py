"""The whole scaled-down network end to end: finite differences of the loss w.r.t. every
parameter array and the input, float32 against float64, and test-mode behaviour."""
import sys
import types

import numpy as np
import pytest

from convnet import alexnet
from convnet.alexnet import DATA
from convnet.backend import BACKENDS, OPS, get_backend
from convnet.network import Network
from gradcheck import check_gradients
from networks import make_active, replay_on_reference


def active_network(name, rng, dtype=np.float64):
    """An active network (see networks.make_active) and pixel-scale inputs, so that the
    response normalizations are far from the identity."""
    model = alexnet.build_model(name)
    network = make_active(Network(model, get_backend("reference"), dtype=dtype, seed=3), rng)
    images = rng.normal(0, 50, model.image_shape + (2,)).astype(dtype)
    labels = rng.integers(0, model.geometry.classes, 2)
    return network, images, labels


@pytest.mark.parametrize("name", ["2012-small28", "paper-small28",
                                  "paper-small64+no-norm+no-overlap+one-tower+no-dropout",
                                  "2012-small28+tanh"])
def test_loss_gradient_wrt_every_parameter_and_the_input(name, rng):
    network, images, labels = active_network(name, rng)
    step = int(rng.integers(1000))               # a fixed dropout mask for every evaluation
    network.forward(images, labels, train=True, step=step)
    analytic = network.backward(input_grad=True)
    arrays = dict(network.params, **{DATA: images})
    assert set(analytic) == set(arrays)

    def loss():
        return network.forward(images, labels, train=True, step=step).loss

    report = check_gradients(loss, arrays, analytic, rng, samples=6, h=1e-5, tolerance=1e-5,
                             step_around_kinks=True)
    report.assert_ok(max_kink_fraction=0.05)


def test_float32_network_agrees_with_float64(rng):
    network64, images, labels = active_network("2012-small28", rng)
    params32 = {k: v.astype(np.float32) for k, v in network64.params.items()}
    network32 = Network(network64.model, get_backend("reference"), dtype=np.float32, seed=3,
                        params=params32)
    exact = network64.forward(images, labels, train=True, step=1)
    single = network32.forward(images.astype(np.float32), labels, train=True, step=1)
    assert single.loss == pytest.approx(exact.loss, rel=1e-4)
    # The float64 gradients on the float32 pass's side of every kink (see replay_on_reference).
    grads64 = replay_on_reference(network32).backward()
    grads32 = network32.backward()
    for key, grad in grads64.items():
        scale = np.abs(grad).max()
        np.testing.assert_allclose(grads32[key], grad, atol=1e-4 * scale, err_msg=key)


def test_dropout_masks_depend_on_step_and_not_on_the_test_pass(rng):
    network, images, labels = active_network("2012-small28", rng)
    first = network.forward(images, labels, train=True, step=1).loss
    assert network.forward(images, labels, train=True, step=1).loss == first
    assert network.forward(images, labels, train=True, step=2).loss != first
    evaluation = network.forward(images, labels, train=False)
    assert evaluation.loss == network.forward(images, labels, train=False, step=9).loss
    drop, fc = network.outputs["drop6a"], network.outputs["fc6a"]
    np.testing.assert_allclose(drop, fc * 0.5)              # non-inverted: × keep at test time


def test_each_dropout_layer_draws_its_own_mask(rng):
    """drop6a, drop6b, drop7a and drop7b have one shape: drawn from the step alone, their masks
    would be one mask, and the towers would drop the same units."""
    network, images, labels = active_network("2012-small28", rng)
    network.forward(images, labels, train=True, step=5)
    masks = {layer.name: saved for layer, _, _, _, _, saved in network._trace
             if isinstance(layer, alexnet.Dropout)}
    assert sorted(masks) == ["drop6a", "drop6b", "drop7a", "drop7b"]
    flat = [mask.ravel() for mask in masks.values()]
    for i in range(len(flat)):
        for j in range(i):
            assert not np.array_equal(flat[i], flat[j])


def test_each_parameter_array_starts_from_its_own_draw():
    """The towers' arrays of one shape start from different values: drawn from the seed alone,
    they would start equal and the towers would stay mirror images."""
    network = Network(alexnet.build_model("2012-small28"), get_backend("reference"), seed=3)
    weights = [(key, value) for key, value in network.params.items()
               if not key.endswith("/bias")]
    pairs = [(first, second) for i, first in enumerate(weights) for second in weights[:i]
             if first[1].shape == second[1].shape]
    assert len(pairs) >= 8    # conv1-5's and fc6-8's of the two towers, and conv3's inputs
    for (key, value), (other, other_value) in pairs:
        assert not np.array_equal(value, other_value), (key, other)


def test_prediction_without_labels(rng):
    network, images, _ = active_network("paper-small28", rng)
    result = network.forward(images, None, train=False)
    assert result.loss is None and result.errors is None
    np.testing.assert_allclose(result.probs.sum(axis=0), 1.0)
    with pytest.raises(RuntimeError, match="labels"):
        network.backward()


def test_a_training_pass_counts_top1_then_top5_and_backward_uses_its_pass_once(rng):
    """The errors a training step reports are (top-1, top-5), as the trainer logs them; a
    second backward of one forward pass is refused, not a repeat of the gradients (the pass's
    saved tensors are let go)."""
    network, _, _ = active_network("2012-small28", rng, np.float32)
    images = rng.normal(0, 50, network.model.image_shape + (40,)).astype(np.float32)
    labels = rng.integers(0, network.model.geometry.classes, 40)
    result = network.forward(images, labels, train=True, step=1)
    top1, top5 = get_backend("reference").topk_errors(result.probs, labels, (1, 5))
    assert top1 > top5 and result.errors == (top1, top5)
    network.forward(images, labels, train=True, step=1)
    network.backward()
    with pytest.raises(RuntimeError, match="backward needs a preceding forward pass"):
        network.backward()


def test_training_computes_no_gradient_of_the_images(rng, monkeypatch):
    """conv1's input gradient, which only the gradient checks ask for (input_grad), is not
    computed in a training step: a pass as costly as conv1's forward, thrown away."""
    from convnet.backend import reference
    network, images, labels = active_network("2012-small28", rng, np.float32)
    sizes = []
    gradient = reference.conv_backward_input
    monkeypatch.setattr(reference, "conv_backward_input", lambda dy, w, *, input_size, **kw:
                        sizes.append(input_size) or gradient(dy, w, input_size=input_size, **kw))
    network.forward(images, labels, train=True, step=1)
    network.backward()
    image_sides = (network.model.geometry.image_size,) * 2
    assert sizes and image_sides not in sizes
    network.forward(images, labels, train=True, step=1)
    network.backward(input_grad=True)
    assert sizes.count(image_sides) == 2   # conv1a's and conv1b's


def test_wrong_images_are_refused(rng):
    network, images, labels = active_network("2012-small28", rng)
    with pytest.raises(ValueError, match="shape"):
        network.forward(images[:, :20], labels, train=True)
    with pytest.raises(ValueError, match="float32"):
        network.forward(images.astype(np.float32), labels, train=True)


def test_a_backend_is_refused_by_name_or_for_an_op_it_lacks(monkeypatch):
    with pytest.raises(ValueError, match=r"unknown backend 'tpu'; choose one of \['cuda', "
                                         r"'emulator', 'reference'\]"):
        get_backend("tpu")
    # a backend with every op but one: refused as it loads, not at the op's first use in training
    module = types.ModuleType("partial_backend")
    module.make = lambda: types.SimpleNamespace(**{op: None for op in OPS if op != "sgd_update"})
    monkeypatch.setitem(sys.modules, "partial_backend", module)
    monkeypatch.setitem(BACKENDS, "partial", ("partial_backend", "make"))
    with pytest.raises(ImportError, match=r"backend 'partial' lacks ops \['sgd_update'\]"):
        get_backend("partial")


def test_a_network_refuses_parameters_not_its_models(rng):
    """Each key of params is a parameter of the model, of its shape and the network's dtype, and
    none is missing; the dtype is a float type the kernels have, the seed an integer ≥ 0."""
    model = alexnet.build_model("2012-small28")
    reference = get_backend("reference")
    params = Network(model, reference).params
    conv = "conv1a/data"
    for changed, message in (
            ({**params, "conv1a/dta": params[conv]}, "Network params: conv1a/dta not the model's"),
            ({key: value for key, value in params.items() if key != conv},
             f"Network params: {conv} missing"),
            ({**params, conv: params[conv][:, 1:4, 1:4]},
             f"Network params {conv}: shape (3, 3, 3, 16), the model's is (3, 5, 5, 16)"),
            ({**params, conv: params[conv].astype(np.float64)},
             f"Network params {conv}: float64, the network's dtype is float32")):
        with pytest.raises(ValueError) as refused:
            Network(model, reference, params=changed)
        assert str(refused.value) == message
    for options, message in (({"dtype": np.float16}, "Network dtype float16: must be float32 or "
                                                      "float64"),
                             ({"seed": -1}, "Network seed -1: must be an integer ≥ 0"),
                             ({"seed": None}, "Network seed None: must be an integer ≥ 0")):
        with pytest.raises(ValueError, match=message):
            Network(model, reference, **options)


def test_forward_refuses_no_images_and_labels_that_are_no_classes(rng):
    """An empty batch before any layer; labels at the loss, by the backend's own check."""
    network, images, labels = active_network("2012-small28", rng)
    with pytest.raises(ValueError, match="images: a batch of no images"):
        network.forward(images[..., :0], labels[:0], train=True)
    as_list = network.forward(images, list(labels), train=True).loss   # a list, as an array
    assert as_list == network.forward(images, labels, train=True).loss
    for wrong, message in ((labels + 0.5, "labels must be integers; got float64"),
                           (labels.astype(bool), "labels must be integers; got bool"),
                           (labels[:1], r"softmax expects logits \(K,N\) and labels \(N,\)")):
        with pytest.raises(ValueError, match=message):
            network.forward(images, wrong, train=True)
