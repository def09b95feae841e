"""SGD with momentum as in the paper (section 5), over a Network's parameters.

Per parameter array, in place on the backend (ops.sgd_update):
  v ← momentum·v − wd·lr·w − lr·grad ;  w ← w + v
Weights use the weight learning rate and weight decay; biases use the bias learning rate
(bias_lr_multiplier × weight rate: 2 in the released code, 1 in the paper) and no weight decay.
`layer_lr_scale` multiplies the weight rate of a named layer, and `frozen_layers` are not
updated at all: weights, biases and momentum stay as they are, as the released code skipped the
update of a rate of 0 (the 2012 schedule slows conv1's weights, then freezes conv1).
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
    frozen_layers: tuple[str, ...] = ()

    def learning_rate(self, spec) -> float:
        if spec.layer in self.frozen_layers:
            return 0.0
        if spec.is_bias:
            return self.weight_lr * self.bias_lr_multiplier
        return self.weight_lr * self.layer_lr_scale.get(spec.layer, 1.0)

    @classmethod
    def of_recipe(cls, model) -> "SGD":
        """The solver of `model`'s recipe at its first rates: the benchmarks' step."""
        recipe = model.recipe
        return cls(recipe.weight_lr, model.preset.bias_lr_multiplier, recipe.momentum,
                   recipe.weight_decay)

    @classmethod
    def following(cls, rates, momentum, weight_decay) -> "SGD":
        """A solver at a schedule's rates (convnet.schedule.Rates); take_rates follows them."""
        solver = cls(0.0, 0.0, momentum, weight_decay)   # take_rates sets every rate
        solver.take_rates(rates)
        return solver

    def take_rates(self, rates):
        """The rates a schedule gives for the epochs to come."""
        self.weight_lr = rates.weight_lr
        self.bias_lr_multiplier = rates.bias_lr / rates.weight_lr
        self.layer_lr_scale = dict(rates.layer_lr_scale)
        self.frozen_layers = tuple(rates.frozen_layers)

    def momentum_buffers(self, network) -> dict:
        """Zero velocities, each on its parameter's tower."""
        return network.place({spec.key: np.zeros(spec.shape, network.dtype)
                              for spec in network.specs})

    def step(self, network, grads: dict, velocity: dict):
        for spec in network.specs:
            if spec.layer in self.frozen_layers:
                continue
            network.backend(spec.tower).sgd_update(
                network.params[spec.key], velocity[spec.key], grads[spec.key],
                lr=self.learning_rate(spec), momentum=self.momentum,
                weight_decay=0.0 if spec.is_bias else self.weight_decay)
