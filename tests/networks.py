"""Test helpers for whole networks."""
import numpy as np


def make_active(network, rng):
    """Re-draw a network's parameters so that every layer is in its working range: weights
    N(0, 1/fan-in), biases small and random. (SPEC's initialization, made for 224-pixel inputs,
    leaves a scaled-down network near-constant at first, so that neither finite differences nor
    a few training steps would see much of the deeper layers.)"""
    for spec in network.specs:
        if spec.is_bias:
            network.params[spec.key][:] = rng.normal(0, 0.1, spec.shape)
        else:
            fan_in = np.prod(spec.shape[:-1]) * len(network.model.layer(spec.layer).inputs)
            network.params[spec.key][:] = rng.normal(0, 1 / np.sqrt(fan_in), spec.shape)
    return network
