"""The network as data: the default model's published figures, the presets' differences, the
scaled-down variants' features, and a real forward pass through the full default network."""
from dataclasses import replace

import numpy as np
import pytest

from convnet import alexnet, graph, inference, options
from convnet.backend import get_backend
from convnet.network import Network, initial_parameters, parameter_specs
from convnet.norm_params import NormParams

# Counted by hand from the paper's architecture (per layer, both towers), not by the model's code.
HAND_COUNTED_PARAMETERS = {"conv1": 34_944, "conv2": 307_456, "conv3": 885_120,
                           "conv4": 663_936, "conv5": 442_624, "fc6": 37_752_832,
                           "fc7": 16_781_312, "fc8": 4_097_000}
HAND_COUNTED_MULTIPLY_ADDS_M = {"conv1": 105.4, "conv2": 223.9, "conv3": 149.5,
                                "conv4": 112.1, "conv5": 74.8, "fc6": 37.7, "fc7": 16.8,
                                "fc8": 4.1}


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
    assert {k: params[k] for k in HAND_COUNTED_PARAMETERS} == HAND_COUNTED_PARAMETERS
    assert sum(params.values()) == 60_965_224
    macs = per_paper_layer(infos, lambda i: i.multiply_adds)
    assert {k: round(macs[k] / 1e6, 1) for k in HAND_COUNTED_MULTIPLY_ADDS_M} == \
        HAND_COUNTED_MULTIPLY_ADDS_M
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


def published_layers(preset):
    """The published network, written out layer by layer for both towers: the 2012 preset (the
    released code's layers-145.cfg and layer-params-145.cfg) or the paper's prose, which puts a
    ReLU after every convolution (§3.1), so conv5's before pool3 too. Every value is the released
    code's or the paper's, not the model's."""
    code = preset == "2012"
    cross = NormParams(size=5, k=2.0, alpha=1e-4, beta=0.75,
                       alpha_convention="per-term" if code else "paper")
    same = NormParams(size=5, k=1.0, alpha=1e-3, beta=0.75, alpha_convention="per-term")
    std345 = 0.03 if code else 0.01
    # code: conv1 → LRN → pool → ReLU (and conv5 → pool → ReLU); paper: ReLU before both
    before, after = (None, "relu") if code else ("relu", None)
    def both(stem):
        return f"{stem}a", f"{stem}b"

    layers = []
    for t in "ab":
        layers += [
            alexnet.Conv(name=f"conv1{t}", inputs=("data",), tower=t, activation=before,
                         channels=48, filter_size=11, stride=4, pad=0, init_std=0.01,
                         bias_init=0.0),
            alexnet.CrossMapNorm(name=f"rnorm1{t}", inputs=(f"conv1{t}",), tower=t, params=cross),
            alexnet.MaxPool(name=f"pool1{t}", inputs=(f"rnorm1{t}",), tower=t, activation=after,
                            size=3, stride=2),
            alexnet.Conv(name=f"conv2{t}", inputs=(f"pool1{t}",), tower=t, activation="relu",
                         channels=128, filter_size=5, stride=1, pad=2, init_std=0.01,
                         bias_init=1.0),
            alexnet.CrossMapNorm(name=f"rnorm2{t}", inputs=(f"conv2{t}",), tower=t, params=cross),
            *([alexnet.SameMapNorm(name=f"cnorm2{t}", inputs=(f"rnorm2{t}",), tower=t,
                                   params=same)] if code else []),
            alexnet.MaxPool(name=f"pool2{t}", inputs=(f"cnorm2{t}" if code else f"rnorm2{t}",),
                            tower=t, size=3, stride=2),
            alexnet.Conv(name=f"conv3{t}", inputs=both("pool2"), tower=t, activation="relu",
                         channels=192, filter_size=3, stride=1, pad=1, init_std=std345,
                         bias_init=0.0),
            alexnet.Conv(name=f"conv4{t}", inputs=(f"conv3{t}",), tower=t, activation="relu",
                         channels=192, filter_size=3, stride=1, pad=1, init_std=std345,
                         bias_init=1.0),
            alexnet.Conv(name=f"conv5{t}", inputs=(f"conv4{t}",), tower=t, activation=before,
                         channels=128, filter_size=3, stride=1, pad=1, init_std=std345,
                         bias_init=1.0),
            alexnet.MaxPool(name=f"pool3{t}", inputs=(f"conv5{t}",), tower=t, activation=after,
                            size=3, stride=2),
            alexnet.FullyConnected(name=f"fc6{t}", inputs=both("pool3"), tower=t,
                                   activation="relu", units=2048, init_std=0.01, bias_init=1.0),
            alexnet.Dropout(name=f"drop6{t}", inputs=(f"fc6{t}",), tower=t, keep=0.5),
            alexnet.FullyConnected(name=f"fc7{t}", inputs=both("drop6"), tower=t,
                                   activation="relu", units=2048, init_std=0.01, bias_init=1.0),
            alexnet.Dropout(name=f"drop7{t}", inputs=(f"fc7{t}",), tower=t, keep=0.5)]
    return layers + [
        alexnet.FullyConnected(name="fc8", inputs=both("drop7"), tower="a", units=1000,
                               init_std=0.01, bias_init=0.0),
        alexnet.SoftmaxLoss(name="loss", inputs=("fc8",), tower="a")]


@pytest.mark.parametrize("preset", ["2012", "paper"])
def test_full_models_are_the_published_ones_layer_by_layer(preset):
    """Every layer's kind, inputs, tower, activation and hyper-parameters, and the recipe, as
    the released code and the paper give them: the figures above check shapes and counts, which
    a normalization constant, an initial scale or a learning rate leaves alone."""
    model = alexnet.build_model(preset)
    expected = {layer.name: layer for layer in published_layers(preset)}
    assert set(layers_by_name(model)) == set(expected)
    for name, layer in layers_by_name(model).items():
        assert layer == expected[name], name
    assert model.recipe == alexnet.Recipe(batch_size=128, weight_lr=0.01, momentum=0.9,
                                          weight_decay=0.0005)
    assert model.preset.bias_lr_multiplier == (2.0 if preset == "2012" else 1.0)


def test_train_defaults_are_the_recipe():
    defaults = options.parser().parse_args([])
    recipe = alexnet.build_model().recipe
    assert (defaults.batch_size, defaults.lr, defaults.momentum, defaults.wd) == (
        recipe.batch_size, recipe.weight_lr, recipe.momentum, recipe.weight_decay)


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


def test_ablations_are_name_suffixes_recorded_in_one_order():
    model = alexnet.build_model("2012+one-tower+no-norm")
    assert model.name == "2012+no-norm+one-tower"
    assert model.ablations == ("no-norm", "one-tower")
    assert alexnet.build_model(model.name).layers == model.layers
    assert alexnet.model_name("paper-small28", ["one-tower", "no-overlap"]) == \
        "paper-small28+no-overlap+one-tower"
    with pytest.raises(ValueError, match="unknown ablation 'no-relu'; choose from no-norm"):
        alexnet.build_model("2012+no-relu")
    with pytest.raises(ValueError, match="ablation 'no-norm' named twice"):
        alexnet.build_model("2012+no-norm+no-norm")
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        alexnet.build_model("vgg+no-norm")


def layers_by_name(model):
    return {layer.name: layer for layer in model.layers}


@pytest.mark.parametrize("preset", ["2012", "paper"])
def test_no_norm_takes_out_the_normalizations_and_nothing_else(preset):
    base, ablated = alexnet.build_model(preset), alexnet.build_model(f"{preset}+no-norm")
    norms = {name for name, layer in layers_by_name(base).items()
             if isinstance(layer, (alexnet.CrossMapNorm, alexnet.SameMapNorm))}
    assert norms and not norms & set(layers_by_name(ablated))
    assert set(layers_by_name(ablated)) == set(layers_by_name(base)) - norms
    # Each pooling layer reads the convolution the normalizations read, activations kept.
    for tower in alexnet.TOWERS:
        for pool, conv in ((f"pool1{tower}", f"conv1{tower}"), (f"pool2{tower}", f"conv2{tower}")):
            assert ablated.layer(pool).inputs == (conv,)
            assert ablated.layer(pool).activation == base.layer(pool).activation
            assert ablated.layer(conv) == base.layer(conv)
    infos = graph.analyze(ablated)
    assert sum(info.parameters for info in infos.values()) == 60_965_224


@pytest.mark.parametrize("name", alexnet.MODELS)
def test_no_overlap_pools_two_by_two_at_stride_two_to_the_same_sizes(name):
    """Whole 2 × 2 windows at stride 2: "output of equivalent dimensions" (§3.4), so every
    later layer has the shapes and parameters of the model without the ablation."""
    model = alexnet.build_model(f"{name}+no-overlap")
    pools = [layer for layer in model.layers if isinstance(layer, alexnet.MaxPool)]
    assert len(pools) == 6 and all((p.size, p.stride, p.overhang) == (2, 2, False)
                                   for p in pools)
    ablated, base = graph.analyze(model), graph.analyze(alexnet.build_model(name))
    assert ablated.keys() == base.keys()
    for layer, info in base.items():
        assert (ablated[layer].output_shape, ablated[layer].weight_shapes) == \
            (info.output_shape, info.weight_shapes), layer


def test_one_tower_is_the_papers_one_gpu_net():
    model = alexnet.build_model("2012+one-tower")
    assert {layer.tower for layer in model.layers} == {"a"}
    assert not graph.cross_tower_edges(model)
    convs = [model.layer(f"conv{i}a").channels for i in range(1, 6)]
    # Half of the two-tower net's kernels in conv1-4; conv5, fc6 and fc7 whole (§3.2).
    assert convs == [48, 128, 192, 192, 256]
    assert [model.layer(name).units for name in ("fc6a", "fc7a", "fc8")] == [4096, 4096, 1000]
    assert model.layer("conv3a").inputs == ("pool2a",)
    assert model.layer("fc8").inputs == ("drop7a",)
    # "About the same number of parameters" as the two-tower net: within 2% of its 61.0 M.
    parameters = sum(info.parameters for info in graph.analyze(model).values())
    assert abs(parameters / 60_965_224 - 1) < 0.02


@pytest.mark.parametrize("name", ["2012", "paper-small28+one-tower"])
def test_no_dropout_takes_out_the_dropout_layers_and_nothing_else(name):
    base, ablated = alexnet.build_model(name), alexnet.build_model(f"{name}+no-dropout")
    dropouts = {name for name, layer in layers_by_name(base).items()
                if isinstance(layer, alexnet.Dropout)}
    assert dropouts and set(layers_by_name(ablated)) == set(layers_by_name(base)) - dropouts
    towers = sorted({layer.tower for layer in base.layers})
    for t in towers:
        assert ablated.layer(f"fc7{t}").inputs == tuple(f"fc6{u}" for u in towers)
        assert ablated.layer(f"fc6{t}") == base.layer(f"fc6{t}")
    assert ablated.layer("fc8").inputs == tuple(f"fc7{t}" for t in towers)
    assert inference.last_hidden_layers(ablated) == inference.last_hidden_layers(base)
    ablated_infos, base_infos = graph.analyze(ablated), graph.analyze(base)
    assert sum(i.parameters for i in ablated_infos.values()) == \
        sum(i.parameters for i in base_infos.values())


@pytest.mark.parametrize("name", ["2012", "paper", "paper-small28+one-tower+no-dropout"])
def test_tanh_swaps_every_relu_and_the_biases_of_one_and_nothing_else(name):
    """§3.1's saturating units where the model has ReLUs, layer by layer; the biases §5 starts
    at 1 for the ReLUs' sake start at 0; the other biases, the layers' order and every other
    setting as without the ablation."""
    base, ablated = alexnet.build_model(name), alexnet.build_model(f"{name}+tanh")
    assert [layer.name for layer in ablated.layers] == [layer.name for layer in base.layers]
    relus = raised = 0
    for old, new in zip(base.layers, ablated.layers):
        relus += old.activation == "relu"
        assert new.activation == ("tanh" if old.activation == "relu" else old.activation)
        changes = {"activation": new.activation}
        if getattr(old, "bias_init", 0.0) == 1.0:
            raised += 1
            assert new.bias_init == 0.0
            changes["bias_init"] = 0.0
        assert replace(old, **changes) == new
    # Per tower: ReLUs after layers 1-7 (the 2012 preset's at pool1 and pool3, the paper's at
    # conv1 and conv5); biases of 1 in conv2, conv4, conv5, fc6 and fc7.
    towers = len({layer.tower for layer in base.layers})
    assert (relus, raised) == (7 * towers, 5 * towers)
    assert replace(ablated, name=base.name, layers=base.layers) == base


@pytest.mark.parametrize("preset", ["2012", "paper"])
def test_augmentation_ablations_change_what_training_reads_not_the_layers(preset):
    base = alexnet.build_model(preset)
    assert (base.crop_draw, base.colour_noise) == (base.preset.crop_draw,
                                                   base.preset.colour_noise)
    no_crop_flip = alexnet.build_model(f"{preset}+no-crop-flip")
    no_colour_noise = alexnet.build_model(f"{preset}+no-colour-noise")
    assert no_crop_flip.layers == no_colour_noise.layers == base.layers
    assert (no_crop_flip.crop_draw, no_crop_flip.colour_noise) == ("centre", base.colour_noise)
    assert (no_colour_noise.crop_draw, no_colour_noise.colour_noise) == (base.crop_draw, None)


def test_every_ablation_combines_with_every_model():
    for base in alexnet.MODELS:
        model = alexnet.build_model("+".join((base, *alexnet.ABLATIONS)))
        infos = graph.analyze(model)
        assert infos["loss"].output_shape == (model.geometry.classes,)


@pytest.mark.parametrize("layer,inputs,message", [
    ("pool1a", ("rnorm1a", "rnorm1b"), "layer pool1a takes one input; got 2"),
    ("conv3a", ("pool2a", "pool1b"), "layer conv3a: conv inputs must be images of one size")])
def test_a_graph_whose_shapes_do_not_fit_is_refused(layer, inputs, message):
    """A pooling layer given two inputs, a convolution reading maps of two sizes: refused by
    the shape analysis, not computed from whichever input comes first."""
    model = alexnet.build_model("2012-small28")
    layers = tuple(replace(each, inputs=inputs) if each.name == layer else each
                   for each in model.layers)
    with pytest.raises(ValueError, match=message):
        graph.analyze(replace(model, layers=layers))
