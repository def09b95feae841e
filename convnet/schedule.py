"""Learning-rate schedules: the paper's ÷10 on a validation plateau, and the 2012 run's.

A schedule is asked once per finished epoch, with that epoch's validation top-1 error, and
returns the rates for the next one. Its whole state is a JSON-serializable dict, saved in every
checkpoint, so a resumed run continues the schedule exactly.

  plateau  the paper: divide every rate by 10 when the validation error has not improved for
           `patience` epochs, at most `max_drops` times.
  steps    fixed epochs: divide every rate by 10 at each listed epoch.
  2012     the released run's hand schedule (layer-params-145.cfg's log): from epoch 25 →
           weights 0.001, 51 → 0.0001, 67 → conv1's weights 1e-5 and colour noise off,
           72 → conv1 frozen, 79 → all weights 1e-5, for a first rate of 0.01 as there (other
           first rates scale them alike); the bias rate stays at 2 × the first weight rate
           ("mostly left at 0.02"). The log numbers epochs as cuda-convnet counted them, from
           1: its epoch 25 is the one that follows 24 finished, and "epoch 91: killed" ends a
           run of 90 (the paper's "roughly 90 cycles"). `scale` stretches the epochs for runs
           shorter or longer than those 90.
"""
from dataclasses import asdict, dataclass, field

# The released run's log, its rates as it set them from its first weight rate of
# RELEASED_2012_LR: (the log's epoch, counted from 1, from which they apply; every layer's
# weight rate or None, conv1's weight rate or None, colour noise on). At 72 the log sets
# conv1's weight rate to 0; its bias rate, which the log does not mention, is 0 in the file's
# final settings: conv1 is frozen whole from there.
_RELEASED_2012 = ((25, 0.001, None, True), (51, 0.0001, None, True), (67, None, 1e-5, False),
                  (72, None, 0.0, False), (79, 1e-5, None, False))
RELEASED_2012_LR = 0.01
RELEASED_2012_EPOCHS = 90   # finished when the log's epoch 91 began
SMALL_MODEL_EPOCHS = 6   # a scaled-down model's default length (the Fashion-MNIST default run's)
CONV1_LAYERS = ("conv1a", "conv1b")
KINDS = ("plateau", "steps", "2012")


@dataclass
class Rates:
    weight_lr: float
    bias_lr: float
    layer_lr_scale: dict = field(default_factory=dict)   # layer → factor on its weights' rate
    frozen_layers: tuple = ()   # layers whose weights and biases do not move
    colour_noise: bool = True


@dataclass
class Schedule:
    kind: str                       # one of KINDS
    rates: Rates
    patience: int = 3
    max_drops: int = 3
    step_epochs: tuple = ()
    scale: float = 1.0
    best_error: float | None = None
    epochs_without_improvement: int = 0
    drops: int = 0
    # The run's first weight rate (its --lr), which a resumed run's settings record; None in
    # checkpoints written before the schedule kept it.
    initial_weight_lr: float | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown schedule {self.kind!r}; choose one of {', '.join(KINDS)}")
        self.step_epochs = tuple(self.step_epochs)
        if isinstance(self.rates, dict):   # from a checkpoint's state
            rates = dict(self.rates)
            if "frozen_layers" not in rates:
                # written when a layer's scale applied to its weights and biases alike: a scale
                # of 0 froze the layer whole
                rates["frozen_layers"] = [layer for layer, factor
                                          in rates.get("layer_lr_scale", {}).items() if factor == 0]
            self.rates = Rates(**rates)
        self.rates.frozen_layers = tuple(self.rates.frozen_layers)   # a list, from JSON

    @property
    def scaled_epochs(self) -> int:
        """The run's length the 2012 schedule's events were scaled to."""
        return round(self.scale * RELEASED_2012_EPOCHS)

    def improves(self, validation_error: float) -> bool:
        """Whether an epoch's validation error beats every earlier epoch's."""
        return self.best_error is None or validation_error < self.best_error

    def epoch_finished(self, epoch: int, validation_error: float) -> Rates:
        """Update after `epoch` (0-based) and return the rates for epoch + 1."""
        if self.improves(validation_error):
            self.best_error = validation_error
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        next_epoch = epoch + 1
        if self.kind == "plateau":
            if self.epochs_without_improvement >= self.patience and self.drops < self.max_drops:
                self._divide_all()
                self.drops += 1
                self.epochs_without_improvement = 0
        elif self.kind == "steps":
            if next_epoch in self.step_epochs:
                self._divide_all()
        else:
            for at, weight_lr, conv1_lr, colour_noise in _RELEASED_2012:
                if next_epoch == round((at - 1) * self.scale):   # epochs finished before it
                    self._apply_2012_event(weight_lr, conv1_lr, colour_noise)
        return self.rates

    def _divide_all(self):
        self.rates.weight_lr /= 10
        self.rates.bias_lr /= 10

    def _apply_2012_event(self, weight_lr, conv1_lr, colour_noise):
        # The released rates, in proportion to this run's first rate (None: a checkpoint
        # written before the schedule kept it, whose rates are the released ones).
        ratio = 1.0 if self.initial_weight_lr is None else \
            self.initial_weight_lr / RELEASED_2012_LR
        conv1_rate = None
        if conv1_lr is not None:
            conv1_rate = conv1_lr * ratio
        elif CONV1_LAYERS[0] in self.rates.layer_lr_scale:
            conv1_rate = self.rates.layer_lr_scale[CONV1_LAYERS[0]] * self.rates.weight_lr
        if weight_lr is not None:
            self.rates.weight_lr = weight_lr * ratio
        if conv1_rate is not None:
            # conv1's weights keep their own rate whatever the others' do.
            factor = conv1_rate / self.rates.weight_lr
            self.rates.layer_lr_scale = {layer: factor for layer in CONV1_LAYERS}
        if conv1_lr == 0.0:
            self.rates.frozen_layers = CONV1_LAYERS
        self.rates.colour_noise = colour_noise

    def state(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> "Schedule":
        return cls(**state)
