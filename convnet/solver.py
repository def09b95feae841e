"""SGD with momentum as in the paper (section 5), over a Network's parameters.

Per parameter array, in place on the backend (ops.sgd_update):
  v ← momentum·v − wd·lr·w − lr·grad ;  w ← w + v
Weights use the weight learning rate and weight decay; biases use the bias learning rate
(bias_lr_multiplier × weight rate: 2 in the released code, 1 in the paper) and no weight decay.
`layer_lr_scale` multiplies both rates of a named layer (the 2012 schedule slows conv1, then
freezes it with 0).
"""
from dataclasses import dataclass, field

import numpy as np


@dataclass
class SGD:
    weight_lr: float
    bias_lr_multiplier: float
    momentum: float
    weight_decay: float
    layer_lr_scale: dict[str, float] = field(default_factory=dict)

    def learning_rate(self, spec) -> float:
        rate = self.weight_lr * (self.bias_lr_multiplier if spec.is_bias else 1.0)
        return rate * self.layer_lr_scale.get(spec.layer, 1.0)

    def momentum_buffers(self, network) -> dict:
        """Zero velocities, each on its parameter's tower."""
        return network.place({spec.key: np.zeros(spec.shape, network.dtype)
                              for spec in network.specs})

    def step(self, network, grads: dict, velocity: dict):
        for spec in network.specs:
            network.backend(spec.tower).sgd_update(
                network.params[spec.key], velocity[spec.key], grads[spec.key],
                lr=self.learning_rate(spec), momentum=self.momentum,
                weight_decay=0.0 if spec.is_bias else self.weight_decay)
