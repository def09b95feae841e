"""The network as data: the default model's figures from SPEC.md, the presets' differences, the
scaled-down variants' features, and a real forward pass through the full default network."""
import numpy as np
import pytest

from convnet import alexnet, graph
from convnet.backend import get_backend
from convnet.network import Network, initial_parameters, parameter_specs

SPEC_PARAMETERS = {"conv1": 34_944, "conv2": 307_456, "conv3": 885_120, "conv4": 663_936,
                   "conv5": 442_624, "fc6": 37_752_832, "fc7": 16_781_312, "fc8": 4_097_000}
SPEC_MULTIPLY_ADDS_M = {"conv1": 105.4, "conv2": 223.9, "conv3": 149.5, "conv4": 112.1,
                        "conv5": 74.8, "fc6": 37.7, "fc7": 16.8, "fc8": 4.1}


def per_paper_layer(infos, attribute):
    """Sum a per-layer figure over both towers: conv3a + conv3b → conv3."""
    totals = {}
    for name, info in infos.items():
        totals[name.rstrip("ab")] = totals.get(name.rstrip("ab"), 0) + attribute(info)
    return totals


@pytest.mark.parametrize("name", ["2012", "paper"])
def test_default_figures(name):
    infos = graph.analyze(alexnet.build_model(name))
    params = per_paper_layer(infos, lambda i: i.parameters)
    assert {k: params[k] for k in SPEC_PARAMETERS} == SPEC_PARAMETERS
    assert sum(params.values()) == 60_965_224
    macs = per_paper_layer(infos, lambda i: i.multiply_adds)
    assert {k: round(macs[k] / 1e6, 1) for k in SPEC_MULTIPLY_ADDS_M} == SPEC_MULTIPLY_ADDS_M
    assert round(sum(macs.values()) / 1e6, 1) == 724.4


def test_default_neurons():
    infos = graph.analyze(alexnet.build_model())
    neurons = per_paper_layer(infos, lambda i: int(np.prod(i.output_shape)))
    # The paper's 253,440 for layer 1 does not match its own 55×55×96; the rest do.
    assert [neurons[k] for k in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7",
                                 "fc8")] == [290_400, 186_624, 64_896, 64_896, 43_264, 4096, 4096,
                                             1000]
    assert infos["pool3a"].output_shape == (128, 6, 6)
    assert infos["fc6a"].weight_shapes == ((4608, 2048), (4608, 2048))   # 9216 = 2 × 6·6·128


def test_presets_differ_where_spec_says():
    code, paper = alexnet.build_model("2012"), alexnet.build_model("paper")
    assert code.layer("rnorm1a").params.coefficient(5) == pytest.approx(2e-5)
    assert paper.layer("rnorm1a").params.coefficient(5) == pytest.approx(1e-4)
    # layer 1: code conv → LRN → pool → ReLU; paper conv → ReLU → LRN → pool
    assert (code.layer("conv1a").activation, code.layer("pool1a").activation) == (None, "relu")
    assert (paper.layer("conv1a").activation, paper.layer("pool1a").activation) == ("relu", None)
    assert code.layer("pool2a").inputs == ("cnorm2a",)
    assert paper.layer("pool2a").inputs == ("rnorm2a",)
    assert "cnorm2a" not in {layer.name for layer in paper.layers}
    assert code.layer("conv4b").init_std == 0.03 and paper.layer("conv4b").init_std == 0.01
    assert (code.preset.bias_lr_multiplier, paper.preset.bias_lr_multiplier) == (2.0, 1.0)
    assert code.preset.colour_noise != paper.preset.colour_noise
    assert code.preset.crop_draw != paper.preset.crop_draw


def test_cross_tower_inputs_only_at_conv3_and_fc_layers():
    for name in alexnet.MODELS:
        edges = graph.cross_tower_edges(alexnet.build_model(name))
        assert sorted(e.layer for e in edges) == \
            ["conv3a", "conv3b", "fc6a", "fc6b", "fc7a", "fc7b", "fc8"], name


@pytest.mark.parametrize("name", [n for n in alexnet.MODELS if "small" in n])
def test_scaled_down_variants_keep_every_feature(name):
    model = alexnet.build_model(name)
    kinds = {type(layer) for layer in model.layers}
    assert {layer.tower for layer in model.layers} == {"a", "b"}
    assert {alexnet.Conv, alexnet.CrossMapNorm, alexnet.MaxPool, alexnet.Dropout,
            alexnet.FullyConnected} <= kinds
    assert (alexnet.SameMapNorm in kinds) == model.preset.samemap_norm
    pools = [layer for layer in model.layers if isinstance(layer, alexnet.MaxPool)]
    assert all(p.size > p.stride for p in pools)                      # overlapping
    assert model.image_shape[1] in range(28, 65)


def test_initialization_is_seeded_and_follows_spec():
    model = alexnet.build_model("2012")
    first = initial_parameters(model, seed=5, dtype=np.float32)
    assert all(np.array_equal(first[k], v)
               for k, v in initial_parameters(model, seed=5, dtype=np.float32).items())
    other = initial_parameters(model, seed=6, dtype=np.float32)
    assert not np.array_equal(first["conv2a/pool1a"], other["conv2a/pool1a"])
    for spec in parameter_specs(model):
        values = first[spec.key]
        if spec.is_bias:
            assert (values == spec.init_value).all()
        else:
            assert abs(values.std() - spec.init_std) < 0.05 * spec.init_std, spec.key
    assert (first["conv2a/bias"] == 1).all() and (first["conv3b/bias"] == 0).all()
    assert first["conv4a/conv3a"].std() == pytest.approx(0.03, rel=0.01)


def test_full_default_network_forward_shapes():
    model = alexnet.build_model()
    network = Network(model, get_backend("reference"), seed=0)
    images = np.random.default_rng(0).normal(0, 50, model.image_shape + (1,)).astype(np.float32)
    result = network.forward(images, np.array([3]), train=True)
    infos = graph.analyze(model)
    for name, output in network.outputs.items():
        if name != alexnet.DATA:
            assert output.shape == infos[name].output_shape + (1,), name
            assert output.dtype == np.float32
    assert result.probs.shape == (1000, 1)
    assert result.probs.sum() == pytest.approx(1.0, rel=1e-5)
    assert np.isfinite(result.loss)


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="unknown model"):
        alexnet.build_model("vgg")
