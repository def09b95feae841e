"""Static analysis of a model: every layer's output shape, parameter shapes, multiply-adds, and
the cross-tower edges. The network, the summary and the tests all read these from here.
"""
from dataclasses import dataclass
from math import prod

from convnet import alexnet
from convnet.alexnet import DATA, Model
from convnet.shapes import conv_output_size, pool_output_size


@dataclass(frozen=True)
class LayerInfo:
    layer: alexnet.Layer
    output_shape: tuple[int, ...]             # per image: (C, H, W) or (features,)
    weight_shapes: tuple[tuple[int, ...], ...]  # one per input; empty for parameter-free layers
    bias_shape: tuple[int, ...] | None
    multiply_adds: int                        # forward, per image

    @property
    def parameters(self) -> int:
        count = sum(prod(shape) for shape in self.weight_shapes)
        return count + (prod(self.bias_shape) if self.bias_shape else 0)


@dataclass(frozen=True)
class CrossTowerEdge:
    """A layer on one tower reading the output of a layer on the other tower."""
    layer: str
    tensor: str
    source: str   # tower the tensor lives on
    dest: str     # tower of the reading layer
    elements_per_image: int


def _conv(layer: alexnet.Conv, input_shapes):
    sizes = {shape[1:] for shape in input_shapes}
    if len(sizes) != 1 or len(next(iter(sizes))) != 2:
        raise ValueError(f"layer {layer.name}: conv inputs must be images of one size; "
                         f"got {input_shapes}")
    height, width = next(iter(sizes))
    out_h = conv_output_size(height, layer.filter_size, layer.stride, layer.pad)
    out_w = conv_output_size(width, layer.filter_size, layer.stride, layer.pad)
    weights = tuple((shape[0], layer.filter_size, layer.filter_size, layer.channels)
                    for shape in input_shapes)
    taps = sum(prod(w[:3]) for w in weights)
    return ((layer.channels, out_h, out_w), weights, (layer.channels,),
            out_h * out_w * layer.channels * taps)


def _fully_connected(layer: alexnet.FullyConnected, input_shapes):
    weights = tuple((prod(shape), layer.units) for shape in input_shapes)
    return (layer.units,), weights, (layer.units,), sum(w[0] for w in weights) * layer.units


def _single_input(layer, input_shapes):
    if len(input_shapes) != 1:
        raise ValueError(f"layer {layer.name} takes one input; got {len(input_shapes)}")
    return input_shapes[0]


def _pool(layer: alexnet.MaxPool, input_shapes):
    channels, height, width = _single_input(layer, input_shapes)
    out = (channels,) + tuple(
        pool_output_size(side, layer.size, layer.stride, overhang=layer.overhang)
        for side in (height, width))
    return out, (), None, 0


def _same_shape(layer, input_shapes):
    return _single_input(layer, input_shapes), (), None, 0


_SHAPE_RULES = {
    alexnet.Conv: _conv,
    alexnet.FullyConnected: _fully_connected,
    alexnet.MaxPool: _pool,
    alexnet.CrossMapNorm: _same_shape,
    alexnet.SameMapNorm: _same_shape,
    alexnet.Dropout: _same_shape,
    alexnet.SoftmaxLoss: _same_shape,
}


def analyze(model: Model) -> dict[str, LayerInfo]:
    """LayerInfo for every layer, keyed by name, in the model's order."""
    shapes = {DATA: model.image_shape}
    infos = {}
    for layer in model.layers:
        rule = _SHAPE_RULES[type(layer)]
        output, weights, bias, macs = rule(layer, [shapes[name] for name in layer.inputs])
        shapes[layer.name] = output
        infos[layer.name] = LayerInfo(layer, output, weights, bias, macs)
    return infos


def input_shapes(model: Model) -> dict[str, list[tuple[int, ...]]]:
    """Per layer, the per-image shape of each of its inputs, in the order of layer.inputs."""
    shapes = {DATA: model.image_shape}
    shapes.update((name, info.output_shape) for name, info in analyze(model).items())
    return {layer.name: [shapes[tensor] for tensor in layer.inputs] for layer in model.layers}


def tower_of(model: Model, tensor: str) -> str | None:
    """The tower a tensor lives on; None for the input batch, which every tower gets from host."""
    return None if tensor == DATA else model.layer(tensor).tower


def cross_tower_edges(model: Model) -> list[CrossTowerEdge]:
    infos = analyze(model)
    edges = []
    for layer in model.layers:
        for tensor in layer.inputs:
            source = tower_of(model, tensor)
            if source is not None and source != layer.tower:
                edges.append(CrossTowerEdge(layer.name, tensor, source, layer.tower,
                                            prod(infos[tensor].output_shape)))
    return edges
