"""Test helpers for whole networks."""
import numpy as np

from convnet.backend import get_backend
from convnet.network import Network


def make_active(network, rng):
    """Re-draw a network's parameters so that every layer is in its working range: weights
    N(0, 1/fan-in), biases small and random. (The paper's initialization, made for 224-pixel inputs,
    leaves a scaled-down network near-constant at first, so that neither finite differences nor
    a few training steps would see much of the deeper layers.)"""
    for spec in network.specs:
        if spec.is_bias:
            network.params[spec.key][:] = rng.normal(0, 0.1, spec.shape)
        else:
            fan_in = np.prod(spec.shape[:-1]) * len(network.model.layer(spec.layer).inputs)
            network.params[spec.key][:] = rng.normal(0, 1 / np.sqrt(fan_in), spec.shape)
    return network


def replay_on_reference(network, dtype=np.float64):
    """A reference-backend network holding `network`'s last forward pass, copied to the host in
    `dtype` and ready for backward(): the reference's gradients at the very activations, ReLU
    sides and pooling winners `network` had.

    Two float32 computations of a deep network put a few units on opposite sides of a kink (a
    ReLU input within rounding of zero, a near-tie in a pooling window), and there whole slices
    of the gradients differ by design: about one draw in a hundred for the scaled-down network,
    five units in one draw of the full one at batch 16. Replayed, the reference takes the same
    sides, so the gradients differ by rounding alone. (The pass is read from the network's private trace:
    a test needs what no user does.)"""
    def on_host(ops, value):
        if isinstance(value, tuple):
            return tuple(on_host(ops, part) for part in value)
        if value is None or np.isscalar(value):
            return value
        value = np.asarray(ops.to_host(value))
        return value.astype(dtype) if np.issubdtype(value.dtype, np.floating) else value

    replay = Network(network.model, get_backend("reference"), dtype=dtype, seed=network.seed,
                     params={key: value.astype(dtype)
                             for key, value in network.to_host(network.params).items()})
    replay._trace = []
    for layer, implementation, inputs, output, activated, saved in network._trace:
        ops = network.backend(layer.tower)
        replay._trace.append((layer, implementation, [on_host(ops, x) for x in inputs],
                              *(on_host(ops, value) for value in (output, activated, saved))))
    return replay
