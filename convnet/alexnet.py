"""AlexNet as data: named layers, their inputs, their tower and their hyper-parameters.

Like cuda-convnet2's layers-imagenet-2gpu-model.cfg (`gpu=0/1`, `inputs=pool2a,pool2b`), without a
parser. A model is one Geometry (image size, channel counts, filter sizes) crossed with one
Preset (the differences between the paper's text and the released 2012 code, README):

  model            geometry   preset   what it is
  2012  (default)  full       2012     the released code that produced the paper's numbers
  paper            full       paper    the paper's prose
  2012-small28     small28    2012     every feature, scaled for 28-pixel crops (Fashion-MNIST)
  paper-small28    small28    paper
  2012-small64     small64    2012     every feature, scaled for 64-pixel crops
  paper-small64    small64    paper

Tower "a" holds fc8 and the loss; the data layer feeds the same batch to each tower.

The paper's ablations (its sections 3.2-3.4, reproduced in the 2012 logs, section 4's ways of
reducing overfitting: augmentation and dropout, and section 3.1's tanh units) are suffixes of a
model's name, in any combination: `2012+no-norm`, `paper-small28+one-tower+no-overlap` (the name
a model records puts them in ABLATIONS' order).
"""
from dataclasses import dataclass, replace

from convnet.norm_params import NormParams

TOWERS = ("a", "b")
# A layer's activation names the backend ops that apply it: relu_forward, relu_backward, ...
ACTIVATIONS = ("relu", "tanh")


@dataclass(frozen=True, kw_only=True)
class Layer:
    name: str
    inputs: tuple[str, ...]
    tower: str
    activation: str | None = None  # ACTIVATIONS: on the layer's output, as cuda-convnet's neuron=

    def __post_init__(self):
        if self.tower not in TOWERS:
            raise ValueError(f"layer {self.name}: tower must be one of {TOWERS}, got {self.tower!r}")
        if self.activation not in (None, *ACTIVATIONS):
            raise ValueError(f"layer {self.name}: unknown activation {self.activation!r}; "
                             f"choose one of {', '.join(ACTIVATIONS)} or none")


@dataclass(frozen=True, kw_only=True)
class Conv(Layer):
    channels: int          # output channels on this tower
    filter_size: int
    stride: int
    pad: int
    init_std: float
    bias_init: float


@dataclass(frozen=True, kw_only=True)
class CrossMapNorm(Layer):
    params: NormParams


@dataclass(frozen=True, kw_only=True)
class SameMapNorm(Layer):
    params: NormParams


@dataclass(frozen=True, kw_only=True)
class MaxPool(Layer):
    size: int
    stride: int
    overhang: bool = True  # cuda-convnet's last window past the edge; False: whole windows only


@dataclass(frozen=True, kw_only=True)
class Dropout(Layer):
    keep: float


@dataclass(frozen=True, kw_only=True)
class FullyConnected(Layer):
    units: int             # output features on this tower
    init_std: float
    bias_init: float


@dataclass(frozen=True, kw_only=True)
class SoftmaxLoss(Layer):
    """Softmax with multinomial log-loss over its single input; no parameters."""


@dataclass(frozen=True)
class ConvShape:
    channels: int          # per tower
    filter_size: int
    stride: int
    pad: int


@dataclass(frozen=True)
class Geometry:
    image_size: int        # the crop the network sees
    image_channels: int
    classes: int
    convs: tuple[ConvShape, ConvShape, ConvShape, ConvShape, ConvShape]
    fc_units: int          # fc6 and fc7, per tower
    pool_size: int = 3
    pool_stride: int = 2


GEOMETRIES = {
    "full": Geometry(224, 3, 1000, (ConvShape(48, 11, 4, 0), ConvShape(128, 5, 1, 2),
                                    ConvShape(192, 3, 1, 1), ConvShape(192, 3, 1, 1),
                                    ConvShape(128, 3, 1, 1)), fc_units=2048),
    # 28 → conv 24 → pool 12 → 12 → pool 6 → 6 → 6 → 6 → pool 3 (both small pools overhang).
    "small28": Geometry(28, 3, 10, (ConvShape(16, 5, 1, 0), ConvShape(32, 5, 1, 2),
                                    ConvShape(48, 3, 1, 1), ConvShape(48, 3, 1, 1),
                                    ConvShape(32, 3, 1, 1)), fc_units=256),
    # 64 → conv 30 (a 1-pixel overhang, like conv1's) → pool 15 → 15 → pool 7 → 7 → pool 3.
    "small64": Geometry(64, 3, 200, (ConvShape(32, 7, 2, 0), ConvShape(64, 5, 1, 2),
                                     ConvShape(96, 3, 1, 1), ConvShape(96, 3, 1, 1),
                                     ConvShape(64, 3, 1, 1)), fc_units=512),
}


@dataclass(frozen=True)
class Preset:
    """What differs between the released 2012 code and the paper's text."""
    name: str
    lrn_alpha_convention: str      # "per-term": c = α/n (code); "paper": c = α
    layer1_relu_after_pool: bool   # code: conv → LRN → pool → ReLU; paper: conv → ReLU → LRN → pool
    samemap_norm: bool             # code has a same-map LRN after conv2's cross-map LRN
    conv345_init_std: float
    bias_lr_multiplier: float      # bias learning rate / weight learning rate
    colour_noise: str              # "sqrt-eigenvalue-div-1.1" (code) or "eigenvalue" (paper)
    crop_draw: str                 # "per-chunk-32" (code) or "per-image" (paper)


PRESETS = {
    "2012": Preset("2012", "per-term", True, True, 0.03, 2.0, "sqrt-eigenvalue-div-1.1",
                   "per-chunk-32"),
    "paper": Preset("paper", "paper", False, False, 0.01, 1.0, "eigenvalue", "per-image"),
}


@dataclass(frozen=True)
class Recipe:
    """SGD settings shared by both presets (the paper, section 5)."""
    batch_size: int = 128
    weight_lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0005


@dataclass(frozen=True)
class Model:
    name: str
    geometry: Geometry
    preset: Preset
    recipe: Recipe
    layers: tuple[Layer, ...]      # in an order where every input precedes its consumer

    @property
    def ablations(self) -> tuple[str, ...]:
        """Keys of ABLATIONS, in its order: the suffixes of the model's name."""
        return split_model_name(self.name)[1]

    @property
    def image_shape(self):
        """(channels, rows, columns) of one input image."""
        size = self.geometry.image_size
        return (self.geometry.image_channels, size, size)

    @property
    def output_layer(self) -> Layer:
        return self.layers[-1]

    @property
    def crop_draw(self) -> str:
        """How training draws its crops and reflections (convnet.data.loader.CROP_DRAWS)."""
        return "centre" if "no-crop-flip" in self.ablations else self.preset.crop_draw

    @property
    def colour_noise(self) -> str | None:
        """The training images' colour-noise convention; None: no colour noise."""
        return None if "no-colour-noise" in self.ablations else self.preset.colour_noise

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"model {self.name} has no layer {name!r}")


DATA = "data"   # the name layers use for the input batch

# What each ablation changes, and what the paper reports it costs (top-1, top-5 error on
# ILSVRC-2012 validation, where it gives figures). New ones go last: the order is that of the
# names that settings and checkpoints record.
ABLATIONS = {
    "no-norm": "no response normalization layers (§3.3: +1.4%, +1.2%)",
    # Whole 2 × 2 windows only, so that the maps keep the 3 × 3 pools' sizes ("output of
    # equivalent dimensions", §3.4): cuda-convnet's overhanging last window would make them 28,
    # 14 and 7 instead of 27, 13 and 6 in the full model, and fc6 a third larger.
    "no-overlap": "pooling 2 × 2 at stride 2 instead of 3 × 3 at stride 2 (§3.4: +0.4%, +0.3%)",
    "one-tower": "one tower with half the kernels of conv1-4 and the whole conv5, fc6 and fc7, "
                 "as the paper's one-GPU net (§3.2: +1.7%, +1.2%)",
    # §4's ways of reducing overfitting. The first two change what training reads, not the
    # layers: Model.crop_draw and Model.colour_noise, which the data loader takes.
    "no-crop-flip": "training reads every image's centre crop, unmirrored: no translations or "
                    "reflections (§4.1: without them, \"substantial overfitting\")",
    "no-colour-noise": "no PCA colour noise on the training images (§4.1: it reduces top-1 "
                       "error by over 1%)",
    "no-dropout": "no dropout after fc6 and fc7 (§4.2: without it, \"substantial overfitting\")",
    # §3.1's saturating units. The biases that start at 1 start at 0: the paper's reason for 1
    # (§5: "providing the ReLUs with positive inputs") is the ReLU's, and tanh(1) is 0.76, its
    # slope there 0.42, so the tanh net would start part saturated by a choice made for ReLUs.
    "tanh": "tanh units in place of every ReLU, their biases starting at 0 (§3.1, Figure 1: "
            "ReLUs reached 25% training error on CIFAR-10 six times faster than tanh units)",
}


def _towers(geometry: Geometry, preset: Preset, ablations: tuple[str, ...]):
    crossmap = NormParams(size=5, k=2.0, alpha=1e-4, beta=0.75,
                          alpha_convention=preset.lrn_alpha_convention)
    samemap = NormParams(size=5, k=1.0, alpha=1e-3, beta=0.75, alpha_convention="per-term")
    normalize = "no-norm" not in ablations
    c1, c2, c3, c4, c5 = geometry.convs
    fc_units = geometry.fc_units
    towers = TOWERS
    if "one-tower" in ablations:
        # The paper's one-GPU net halves conv1-4 (one tower's share) but keeps conv5 and the
        # fully-connected layers whole, so that it has about as many parameters as the two-tower
        # net (most of them in fc6, which reads conv5).
        towers = TOWERS[:1]
        c5 = replace(c5, channels=c5.channels * len(TOWERS))
        fc_units *= len(TOWERS)
    pool = dict(size=geometry.pool_size, stride=geometry.pool_stride)
    if "no-overlap" in ablations:
        pool = dict(size=geometry.pool_stride, stride=geometry.pool_stride, overhang=False)
    conv345_std = preset.conv345_init_std
    # The units' activation, and the initial bias of the layers whose biases §5 starts at 1.
    unit, unit_bias = ("tanh", 0.0) if "tanh" in ablations else ("relu", 1.0)
    unit_after_pool = unit if preset.layer1_relu_after_pool else None
    unit_before_norm = None if preset.layer1_relu_after_pool else unit

    def every_tower(stem):
        return tuple(f"{stem}{t}" for t in towers)

    for t in towers:
        yield Conv(name=f"conv1{t}", inputs=(DATA,), tower=t, activation=unit_before_norm,
                   channels=c1.channels, filter_size=c1.filter_size, stride=c1.stride, pad=c1.pad,
                   init_std=0.01, bias_init=0.0)
        pool1_input = f"conv1{t}"
        if normalize:
            yield CrossMapNorm(name=f"rnorm1{t}", inputs=(f"conv1{t}",), tower=t,
                               params=crossmap)
            pool1_input = f"rnorm1{t}"
        yield MaxPool(name=f"pool1{t}", inputs=(pool1_input,), tower=t,
                      activation=unit_after_pool, **pool)
        yield Conv(name=f"conv2{t}", inputs=(f"pool1{t}",), tower=t, activation=unit,
                   channels=c2.channels, filter_size=c2.filter_size, stride=c2.stride, pad=c2.pad,
                   init_std=0.01, bias_init=unit_bias)
        pool2_input = f"conv2{t}"
        if normalize:
            yield CrossMapNorm(name=f"rnorm2{t}", inputs=(f"conv2{t}",), tower=t,
                               params=crossmap)
            pool2_input = f"rnorm2{t}"
            if preset.samemap_norm:
                yield SameMapNorm(name=f"cnorm2{t}", inputs=(f"rnorm2{t}",), tower=t,
                                  params=samemap)
                pool2_input = f"cnorm2{t}"
        yield MaxPool(name=f"pool2{t}", inputs=(pool2_input,), tower=t, **pool)
    # Layer 3 onwards reads both towers at conv3 and at every FC layer, nowhere else.
    for t in towers:
        yield Conv(name=f"conv3{t}", inputs=every_tower("pool2"), tower=t, activation=unit,
                   channels=c3.channels, filter_size=c3.filter_size, stride=c3.stride, pad=c3.pad,
                   init_std=conv345_std, bias_init=0.0)
        yield Conv(name=f"conv4{t}", inputs=(f"conv3{t}",), tower=t, activation=unit,
                   channels=c4.channels, filter_size=c4.filter_size, stride=c4.stride, pad=c4.pad,
                   init_std=conv345_std, bias_init=unit_bias)
        yield Conv(name=f"conv5{t}", inputs=(f"conv4{t}",), tower=t, activation=unit_before_norm,
                   channels=c5.channels, filter_size=c5.filter_size, stride=c5.stride, pad=c5.pad,
                   init_std=conv345_std, bias_init=unit_bias)
        yield MaxPool(name=f"pool3{t}", inputs=(f"conv5{t}",), tower=t,
                      activation=unit_after_pool, **pool)
    dropout = "no-dropout" not in ablations
    for t in towers:
        yield FullyConnected(name=f"fc6{t}", inputs=every_tower("pool3"), tower=t,
                             activation=unit, units=fc_units, init_std=0.01, bias_init=unit_bias)
        if dropout:
            yield Dropout(name=f"drop6{t}", inputs=(f"fc6{t}",), tower=t, keep=0.5)
    for t in towers:
        yield FullyConnected(name=f"fc7{t}", inputs=every_tower("drop6" if dropout else "fc6"),
                             tower=t, activation=unit, units=fc_units, init_std=0.01,
                             bias_init=unit_bias)
        if dropout:
            yield Dropout(name=f"drop7{t}", inputs=(f"fc7{t}",), tower=t, keep=0.5)
    yield FullyConnected(name="fc8", inputs=every_tower("drop7" if dropout else "fc7"),
                         tower="a", units=geometry.classes, init_std=0.01, bias_init=0.0)
    yield SoftmaxLoss(name="loss", inputs=("fc8",), tower="a")


def _ordered(layers):
    """Layers sorted so that each follows its inputs (tower a's and b's blocks interleave)."""
    pending, done, ordered = list(layers), {DATA}, []
    while pending:
        ready = [layer for layer in pending if all(i in done for i in layer.inputs)]
        if not ready:
            raise ValueError(f"layers {[l.name for l in pending]} have inputs that never appear")
        for layer in ready:
            pending.remove(layer)
            done.add(layer.name)
            ordered.append(layer)
    return tuple(ordered)


MODELS = {"2012": ("full", "2012"), "paper": ("full", "paper")}
for _size in ("small28", "small64"):
    for _preset in PRESETS:
        MODELS[f"{_preset}-{_size}"] = (_size, _preset)
DEFAULT_MODEL = "2012"


def split_model_name(name: str) -> tuple[str, tuple[str, ...]]:
    """(base model, ablations in ABLATIONS' order) of a name like `2012-small28+no-norm`;
    ValueError naming what is wrong."""
    base, *ablations = name.split("+")
    if base not in MODELS:
        raise ValueError(f"unknown model {base!r}; choose one of {', '.join(MODELS)}, "
                         f"optionally followed by +ablation ({', '.join(ABLATIONS)})")
    for ablation in ablations:
        if ablation not in ABLATIONS:
            raise ValueError(f"model {name!r}: unknown ablation {ablation!r}; choose from "
                             f"{', '.join(ABLATIONS)}")
        if ablations.count(ablation) > 1:
            raise ValueError(f"model {name!r}: ablation {ablation!r} named twice")
    return base, tuple(a for a in ABLATIONS if a in ablations)


def model_name(base: str, ablations=()) -> str:
    """The name a model records: its base and its ablations, in ABLATIONS' order."""
    chosen = set(ablations)
    return "+".join((base, *(a for a in ABLATIONS if a in chosen)))


def build_model(name: str = DEFAULT_MODEL, *, classes: int | None = None) -> Model:
    """The model `name` (see MODELS and ABLATIONS); `classes` overrides the geometry's class
    count."""
    base, ablations = split_model_name(name)
    geometry_name, preset_name = MODELS[base]
    geometry = GEOMETRIES[geometry_name]
    if classes is not None:
        if classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes; got {classes}")
        geometry = replace(geometry, classes=classes)
    preset = PRESETS[preset_name]
    return Model(model_name(base, ablations), geometry, preset, Recipe(),
                 _ordered(_towers(geometry, preset, ablations)))
