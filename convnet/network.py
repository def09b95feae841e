"""The network: a Model (convnet.alexnet) with its parameters, its two towers placed on backends.

Parameters are a flat dict keyed "<layer>/<input>" for the weight array a layer keeps per input
and "<layer>/bias" for its one bias, so checkpoints and solvers need no knowledge of layer types.
Each layer, its parameters and its gradients live on its tower's backend (convnet.placement).
Every tensor a layer reads from the other tower, forward, and every gradient it sends back,
backward, passes through the Placement, which moves it and records the bytes: sent where it is
made, received where it is read, so that the towers wait for each other only there. (The
gradient of the images themselves, which only the gradient checks ask for, is summed over the
towers outside it and not recorded.)
"""
import zlib
from dataclasses import dataclass

import numpy as np

from convnet import graph
from convnet.alexnet import DATA, TOWERS, Model
from convnet.layers import IMPLEMENTATIONS, Context, activation_op
from convnet.placement import Crossing, Placement
from convnet.replicas.shard import BatchPart


FLOAT_TYPES = ("float32", "float64")   # a network's element types: training's, the checks'


def weight_key(layer: str, source: str) -> str:
    return f"{layer}/{source}"


def bias_key(layer: str) -> str:
    return f"{layer}/bias"


@dataclass(frozen=True)
class ParameterSpec:
    key: str
    layer: str
    tower: str
    is_bias: bool
    shape: tuple[int, ...]
    init_std: float      # weights: N(0, init_std²); biases: the constant init_value
    init_value: float


def parameter_specs(model: Model) -> list[ParameterSpec]:
    specs = []
    for name, info in graph.analyze(model).items():
        layer = info.layer
        for source, shape in zip(layer.inputs, info.weight_shapes):
            specs.append(ParameterSpec(weight_key(name, source), name, layer.tower, False, shape,
                                       layer.init_std, 0.0))
        if info.bias_shape:
            specs.append(ParameterSpec(bias_key(name), name, layer.tower, True, info.bias_shape,
                                       0.0, layer.bias_init))
    return specs


def initial_parameters(model: Model, seed: int, dtype) -> dict[str, np.ndarray]:
    """The paper's initialization (section 5; conv3-5's std by the preset). Each array draws
    from its own stream, seeded by (seed, key), so one array's values do not depend on the
    others; drawn in float64, so float32 and float64 networks start from the same values."""
    params = {}
    for spec in parameter_specs(model):
        if spec.is_bias:
            params[spec.key] = np.full(spec.shape, spec.init_value, dtype=dtype)
        else:
            rng = np.random.default_rng([seed, zlib.crc32(spec.key.encode())])
            params[spec.key] = rng.normal(0.0, spec.init_std, spec.shape).astype(dtype)
    return params


def dropout_key(seed: int, step: int, layer_index: int) -> int:
    """The 32-bit dropout-mask key of one layer at one step: replayable from (seed, step)."""
    return int(np.random.SeedSequence([seed, step, layer_index]).generate_state(1)[0])


@dataclass
class ForwardResult:
    probs: object                  # (classes, N) softmax output
    loss: float | None             # mean log-loss, when labels were given
    errors: tuple[float, float] | None  # top-1 and top-5 errors (ties split), when labels given


class Network:
    def __init__(self, model: Model, backend, *, dtype=np.float32, seed: int = 0,
                 params: dict | None = None):
        """backend: one backend for both towers, or a Placement giving each tower its own.
        params: host arrays keyed like `params`, one for every parameter of the model, of its
        shape and of `dtype` (default: initial_parameters)."""
        self.model = model
        self.placement = Placement.of(backend)
        self.dtype = np.dtype(dtype)
        if self.dtype.name not in FLOAT_TYPES:
            raise ValueError(f"Network dtype {self.dtype}: must be {' or '.join(FLOAT_TYPES)}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"Network seed {seed!r}: must be an integer ≥ 0")
        self.seed = seed
        self.specs = parameter_specs(model)
        self._spec_towers = {spec.key: spec.tower for spec in self.specs}
        self._implementations = [IMPLEMENTATIONS[type(layer)] for layer in model.layers]
        self._towers = {layer.name: layer.tower for layer in model.layers}
        # Each tensor's readers on the other tower: it is sent to them as soon as it is made.
        self._remote_readers = {}
        for layer in model.layers:
            for tensor in layer.inputs:
                if tensor != DATA and self._towers[tensor] != layer.tower:
                    self._remote_readers.setdefault(tensor, []).append(layer)
        # The backends that get a copy of each batch: those of the towers that read it.
        readers = {layer.tower for layer in model.layers if DATA in layer.inputs}
        self._data_backends = [backend for backend in self.placement.distinct_backends()
                               if any(backend is self.backend(t) for t in readers)]
        if params is None:
            params = initial_parameters(model, seed, self.dtype)
        self._check_params(params)
        self.params = self.place(params)
        self._trace = None
        self.outputs = {}   # layer name → its (activated) output from the last forward pass

    def _check_params(self, params):
        """A ValueError naming the first key of `params` that is not the model's parameter of
        its shape and the network's dtype, or a parameter it lacks."""
        shapes = {spec.key: spec.shape for spec in self.specs}
        unknown = [key for key in params if key not in shapes]
        missing = [key for key in shapes if key not in params]
        if unknown or missing:
            raise ValueError("Network params: " + "; ".join(
                [f"{', '.join(unknown)} not the model's"] * bool(unknown) +
                [f"{', '.join(missing)} missing"] * bool(missing)))
        for key, value in params.items():
            if tuple(value.shape) != shapes[key]:
                raise ValueError(f"Network params {key}: shape {tuple(value.shape)}, the model's "
                                 f"is {shapes[key]}")
            if value.dtype != self.dtype:
                raise ValueError(f"Network params {key}: {value.dtype}, the network's dtype is "
                                 f"{self.dtype}")

    # -- where things live ---------------------------------------------------------------------
    def backend(self, tower):
        return self.placement.backends[tower]

    def layer_backend(self, name):
        """The backend holding layer `name`'s output."""
        return self.backend(self._towers[name])

    @property
    def output_backend(self):
        """The backend holding the softmax output (forward's probs)."""
        return self.layer_backend(self.model.layers[-1].name)

    def place(self, host_arrays: dict) -> dict:
        """Host arrays keyed like `params` (parameters, momentum) onto their towers' backends."""
        return {key: self.backend(self._spec_towers[key]).from_host(value)
                for key, value in host_arrays.items()}

    def to_host(self, arrays: dict) -> dict:
        """NumPy copies of backend arrays keyed like `params`."""
        return {key: np.asarray(self.backend(self._spec_towers[key]).to_host(value))
                for key, value in arrays.items()}

    def _weights(self, layer):
        """The layer's weight arrays, one per input; empty for a parameter-free layer."""
        keys = [weight_key(layer.name, source) for source in layer.inputs]
        return [self.params[key] for key in keys if key in self.params]

    def forward(self, images, labels=None, *, train: bool, step: int = 0,
                part: BatchPart | None = None) -> ForwardResult:
        """images (C, H, W, N) in host memory, in the network's dtype; labels (N,) integers or
        None. `part` places the N images in a global batch split over replicas
        (convnet.replicas): dropout draws the global batch's masks at them, and the loss's
        gradient is scaled by their share of it. None: the images are the whole batch."""
        expected = self.model.image_shape
        if images.ndim != 4 or images.shape[:3] != expected:
            raise ValueError(f"images must have shape {expected + ('N',)} (channels, rows, "
                             f"columns, images); got {images.shape}")
        if images.dtype != self.dtype:
            raise ValueError(f"images are {images.dtype} but the network is {self.dtype}")
        if images.shape[-1] == 0:
            raise ValueError("images: a batch of no images")
        if labels is not None and not hasattr(labels, "dtype"):   # a list: the loss checks it
            labels = np.asarray(labels)
        part = BatchPart.of_whole(images.shape[-1]) if part is None else part
        if part.count != images.shape[-1]:
            raise ValueError(f"a batch part of {part.count} images, but {images.shape[-1]} given")
        # The loader's host batch onto each tower's device: the towers' own copies of the input,
        # C-contiguous as the kernels take them.
        images = np.ascontiguousarray(images)
        placed = {id(ops): ops.from_host(images) for ops in self._data_backends}
        outputs = {}
        sent = {}   # (tensor, reading layer) → its Crossing
        trace = []
        for index, (layer, implementation) in enumerate(zip(self.model.layers,
                                                            self._implementations)):
            ops = self.backend(layer.tower)
            inputs = [placed[id(ops)] if tensor == DATA else
                      self._read(tensor, layer, outputs, sent) for tensor in layer.inputs]
            context = Context(train=train, labels=labels,
                              dropout_key=dropout_key(self.seed, step, index), part=part)
            bias = self.params.get(bias_key(layer.name))
            output, saved = implementation.forward(ops, layer, inputs, self._weights(layer), bias,
                                                   context)
            activated = output
            if layer.activation:
                activated = activation_op(ops, layer.activation, "forward")(output)
            outputs[layer.name] = activated
            for reader in self._remote_readers.get(layer.name, ()):
                sent[layer.name, reader.name] = self.placement.send(
                    activated, layer=reader.name, tensor=layer.name, source=layer.tower,
                    dest=reader.tower, direction="forward")
            trace.append((layer, implementation, inputs, output, activated, saved))
        self._trace = trace
        self.outputs = outputs
        _, _, _, probs, _, saved = trace[-1]
        if labels is None:
            return ForwardResult(probs, None, None)
        return ForwardResult(probs, saved[0],
                             self.output_backend.topk_errors(probs, labels, (1, 5)))

    def _read(self, tensor, layer, outputs, sent):
        if self._towers[tensor] == layer.tower:
            return outputs[tensor]
        return self.placement.receive(sent.pop((tensor, layer.name)))

    def backward(self, *, input_grad: bool = False, gradients_ready=None) -> dict:
        """Gradients of the last forward pass's mean loss: a dict keyed like `params`, plus
        "data" (C, H, W, N) when input_grad is set. Needs a forward pass with labels.
        gradients_ready(tower, {key: gradient}), when given, receives each layer's parameter
        gradients as soon as they are complete, layers in reverse order (a replicas engine
        starts summing them there), and returns the arrays to keep for them."""
        if self._trace is None or self._trace[-1][5] is None:
            raise RuntimeError("backward needs a preceding forward pass with labels")
        # tensor → the parts of its gradient so far, in the order they came: arrays on its tower,
        # Crossings from the other
        tensor_grads = {}
        data_grads = []   # (tower, gradient) of the input, from each tower's first layer
        grads = {}
        for layer, implementation, inputs, output, activated, saved in reversed(self._trace):
            ops = self.backend(layer.tower)
            parts = tensor_grads.pop(layer.name, None)
            dy = None if parts is None else self._gradient(ops, parts)
            if layer.activation:
                dy = activation_op(ops, layer.activation, "backward")(dy, activated)
            needed = [tensor != DATA or input_grad for tensor in layer.inputs]
            input_grads, weight_grads, bias_grad = implementation.backward(
                ops, layer, dy, inputs, output, saved, self._weights(layer), needed)
            layer_grads = {weight_key(layer.name, source): grad
                           for source, grad in zip(layer.inputs, weight_grads)}
            if bias_grad is not None:
                layer_grads[bias_key(layer.name)] = bias_grad
            grads.update(self._hand_over(layer, layer_grads, gradients_ready))
            for tensor, grad in zip(layer.inputs, input_grads):
                if grad is None:
                    continue
                if tensor == DATA:
                    data_grads.append((layer.tower, grad))
                    continue
                source = self._towers[tensor]
                if source != layer.tower:
                    grad = self.placement.send(grad, layer=layer.name, tensor=tensor,
                                               source=layer.tower, dest=source,
                                               direction="backward")
                tensor_grads.setdefault(tensor, []).append(grad)
        self._trace = None
        if input_grad:
            grads[DATA] = self._sum_data_grads(data_grads)
        return grads

    def _gradient(self, ops, parts):
        """A tensor's gradient from its parts, each added to the sum of those before it
        (add(part, sum)); a part from the other tower is received here, where it is needed, so
        that its copy waits for none of the other tower's work queued after it was sent."""
        total = None
        for part in parts:
            if isinstance(part, Crossing):
                part = self.placement.receive(part)
            total = part if total is None else ops.add(part, total)
        return total

    def _sum_data_grads(self, data_grads):
        """The input's gradient, on the first tower's backend: the sum over the towers' first
        layers (each tower reads its own copy of the images)."""
        # in the towers' order: backward met their first layers last to first
        data_grads = sorted(data_grads, key=lambda part: TOWERS.index(part[0]))
        home, total = data_grads[0]
        ops = self.backend(home)
        for tower, grad in data_grads[1:]:
            if not self.placement.shared:
                grad = ops.receive(self.backend(tower).send(grad, ops))
            total = ops.add(total, grad)
        return total

    def zero_gradients(self, *, gradients_ready=None) -> dict:
        """The parameter gradients of a part with no images (a replica's empty share of an
        epoch's short last batch): zeros, handed to gradients_ready in backward()'s order."""
        grads = {}
        for layer in reversed(self.model.layers):
            layer_grads = self.place({spec.key: np.zeros(spec.shape, self.dtype)
                                      for spec in self.specs if spec.layer == layer.name})
            grads.update(self._hand_over(layer, layer_grads, gradients_ready))
        return grads

    def _hand_over(self, layer, layer_grads, gradients_ready):
        """gradients_ready runs in the tower's device context: the engine orders its sums after
        the work queued there."""
        if not layer_grads or gradients_ready is None:
            return layer_grads
        with self.backend(layer.tower).context():
            return gradients_ready(layer.tower, layer_grads)
