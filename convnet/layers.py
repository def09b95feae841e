"""How each layer type of convnet.alexnet runs on a backend: forward and backward, through the
backend's ops. A layer's activation (ReLU, or tanh) is applied by the network around these,
through activation_op.

forward(ops, layer, inputs, weights, bias, context) → (output, saved)
backward(ops, layer, dy, inputs, output, saved, weights, need_input_grads)
    → (input gradients, one per input or None where not needed; weight gradients; bias gradient)
`weights` is the list of weight arrays, one per input, in the order of layer.inputs.
"""
from dataclasses import dataclass

from convnet import alexnet
from convnet.replicas.shard import BatchPart


@dataclass(frozen=True)
class Context:
    train: bool
    part: BatchPart                # where this batch's N images sit in the global batch
    labels: object = None          # (N,) integer labels, for the loss
    dropout_key: int | None = None  # this layer's 32-bit mask key for this step


def activation_op(ops, activation, direction):
    """The op of `activation` (alexnet.ACTIVATIONS) in `direction`: "forward" maps a layer's
    output, "backward" maps (dy, the activated output) to the gradient before it."""
    return getattr(ops, f"{activation}_{direction}")


class Conv:
    @staticmethod
    def forward(ops, layer, inputs, weights, bias, context):
        output = None
        for x, w in zip(inputs, weights):
            part = ops.conv_forward(x, w, stride=layer.stride, pad=layer.pad)
            output = part if output is None else ops.add(output, part)
        return ops.add_bias(output, bias), None

    @staticmethod
    def backward(ops, layer, dy, inputs, output, saved, weights, need_input_grads):
        input_grads = [
            ops.conv_backward_input(dy, w, input_size=x.shape[1:3], stride=layer.stride,
                                    pad=layer.pad) if needed else None
            for x, w, needed in zip(inputs, weights, need_input_grads)]
        weight_grads = [ops.conv_backward_filters(dy, x, filter_size=layer.filter_size,
                                                  stride=layer.stride, pad=layer.pad)
                        for x in inputs]
        return input_grads, weight_grads, ops.bias_backward(dy)


class FullyConnected:
    @staticmethod
    def _flat(x):
        return x.reshape(-1, x.shape[-1])   # (C, H, W, N) → (C·H·W, N); images stay innermost

    @staticmethod
    def forward(ops, layer, inputs, weights, bias, context):
        output = None
        for x, w in zip(inputs, weights):
            part = ops.fc_forward(FullyConnected._flat(x), w)
            output = part if output is None else ops.add(output, part)
        return ops.add_bias(output, bias), None

    @staticmethod
    def backward(ops, layer, dy, inputs, output, saved, weights, need_input_grads):
        input_grads = [ops.fc_backward_input(dy, w).reshape(x.shape) if needed else None
                       for x, w, needed in zip(inputs, weights, need_input_grads)]
        weight_grads = [ops.fc_backward_weights(dy, FullyConnected._flat(x)) for x in inputs]
        return input_grads, weight_grads, ops.bias_backward(dy)


class ResponseNorm:
    """Cross-map or same-map, by the pair of ops a subclass names."""
    forward_op = backward_op = None

    @classmethod
    def forward(cls, ops, layer, inputs, weights, bias, context):
        return getattr(ops, cls.forward_op)(inputs[0], layer.params)

    @classmethod
    def backward(cls, ops, layer, dy, inputs, output, saved, weights, need_input_grads):
        return [getattr(ops, cls.backward_op)(dy, inputs[0], output, saved, layer.params)], [], None


class CrossMapNorm(ResponseNorm):
    forward_op, backward_op = "crossmap_norm_forward", "crossmap_norm_backward"


class SameMapNorm(ResponseNorm):
    forward_op, backward_op = "samemap_norm_forward", "samemap_norm_backward"


class MaxPool:
    @staticmethod
    def forward(ops, layer, inputs, weights, bias, context):
        return ops.maxpool_forward(inputs[0], size=layer.size, stride=layer.stride,
                                   overhang=layer.overhang), None

    @staticmethod
    def backward(ops, layer, dy, inputs, output, saved, weights, need_input_grads):
        dx = ops.maxpool_backward(dy, inputs[0], output, size=layer.size, stride=layer.stride,
                                  overhang=layer.overhang)
        return [dx], [], None


class Dropout:
    """Non-inverted: training multiplies by the mask, testing by the keep probability. The mask
    is the global batch's, at this part's images, so the parts of a batch split over replicas
    draw what one process drawing the whole batch would."""

    @staticmethod
    def forward(ops, layer, inputs, weights, bias, context):
        x = inputs[0]
        if not context.train:
            return ops.scale(x, layer.keep), None
        mask = ops.dropout_mask(x.shape, layer.keep, context.dropout_key,
                                start=context.part.start, total=context.part.total)
        return ops.apply_mask(x, mask), mask

    @staticmethod
    def backward(ops, layer, dy, inputs, output, saved, weights, need_input_grads):
        return [ops.apply_mask(dy, saved)], [], None


class SoftmaxLoss:
    """Output: class probabilities (K, N). Saved: (mean log-loss over the N images, labels,
    share), None without labels. The gradient is that of the global batch's mean loss: this
    part's mean-loss gradient times its share N / total of the batch (1 for a whole batch), so
    that the parts' gradients sum to the whole batch's."""

    @staticmethod
    def forward(ops, layer, inputs, weights, bias, context):
        logits = inputs[0]
        if context.labels is None:
            return ops.softmax(logits), None
        probs, loss = ops.softmax_logloss(logits, context.labels)
        return probs, (loss, context.labels, context.part.count / context.part.total)

    @staticmethod
    def backward(ops, layer, dy, inputs, output, saved, weights, need_input_grads):
        _, labels, share = saved
        grad = ops.softmax_logloss_backward(output, labels)
        return [grad if share == 1 else ops.scale(grad, share)], [], None


IMPLEMENTATIONS = {
    alexnet.Conv: Conv,
    alexnet.FullyConnected: FullyConnected,
    alexnet.CrossMapNorm: CrossMapNorm,
    alexnet.SameMapNorm: SameMapNorm,
    alexnet.MaxPool: MaxPool,
    alexnet.Dropout: Dropout,
    alexnet.SoftmaxLoss: SoftmaxLoss,
}
