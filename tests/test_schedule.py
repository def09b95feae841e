"""Learning-rate schedules: the paper's plateau rule, fixed steps, the released 2012 run, and a
state round trip for resuming."""
import json
from typing import NamedTuple

import pytest

from convnet.schedule import RELEASED_2012_EPOCHS, Rates, Schedule
from convnet.solver import SGD


class Spec(NamedTuple):   # what the solver reads of a parameter's spec
    layer: str
    is_bias: bool


def run(schedule, errors, start=0):
    history = []
    for epoch, error in enumerate(errors, start):
        rates = schedule.epoch_finished(epoch, error)
        history.append((rates.weight_lr, rates.bias_lr))
    return history


def test_plateau_divides_by_ten_after_patience_at_most_max_drops():
    schedule = Schedule("plateau", Rates(0.01, 0.02), patience=2, max_drops=1)
    history = run(schedule, [0.5, 0.4, 0.4, 0.41, 0.3, 0.3, 0.3, 0.3])
    assert [h[0] for h in history] == pytest.approx(
        [0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 0.001, 0.001])
    assert history[3][1] == pytest.approx(0.002)


def test_plateau_waits_its_patience_again_after_each_drop():
    """The count of epochs without improvement starts again at a drop: three flat epochs after
    the first drop are not three more drops."""
    schedule = Schedule("plateau", Rates(0.01, 0.02), patience=2, max_drops=3)
    history = run(schedule, [0.5] * 8)
    assert [h[0] for h in history] == pytest.approx(
        [0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001, 1e-5, 1e-5])


def test_fixed_steps():
    schedule = Schedule("steps", Rates(0.1, 0.1), step_epochs=(2, 4))
    assert [h[0] for h in run(schedule, [1.0] * 5)] == pytest.approx(
        [0.1, 0.01, 0.01, 0.001, 0.001])


@pytest.mark.parametrize("first_rate", [0.01, 0.02])
def test_released_2012_run(first_rate):
    """Every epoch's rates against the released 2012 run's log, which started at 0.01 and
    numbers epochs from 1, as cuda-convnet counted them: from epoch 25 → 0.001, 51 → 0.0001,
    67 conv1's weights → 1e-5 and colour noise off, 72 conv1 frozen (weights and bias), 79 all
    but the frozen conv1 → 1e-5; the bias rate left at 0.02. Another first rate scales them
    alike."""
    ratio = first_rate / 0.01
    schedule = Schedule("2012", Rates(first_rate, 2 * first_rate), initial_weight_lr=first_rate)
    for epoch in range(2, 91):   # the log's numbers
        rates = schedule.epoch_finished(epoch - 2, 0.5)   # 0-based, as the trainer counts
        solver = SGD.following(rates, momentum=0.9, weight_decay=5e-4)
        weight = 0.01 if epoch < 25 else 0.001 if epoch < 51 else 0.0001 if epoch < 79 else 1e-5
        conv1 = weight if epoch < 67 else 1e-5 if epoch < 72 else 0.0
        conv1_bias = 0.02 if epoch < 72 else 0.0
        got = tuple(solver.learning_rate(Spec(layer, is_bias)) for layer, is_bias in (
            ("conv2a", False), ("conv2b", True), ("conv1a", False), ("conv1b", False),
            ("conv1a", True), ("conv1b", True))) + (rates.colour_noise,)
        assert got == (pytest.approx(weight * ratio), pytest.approx(0.02 * ratio),
                       pytest.approx(conv1 * ratio), pytest.approx(conv1 * ratio),
                       conv1_bias * ratio, conv1_bias * ratio, epoch < 67), epoch


def test_scaled_2012_run_and_state_round_trip():
    schedule = Schedule("2012", Rates(0.01, 0.02), scale=0.1)   # a 9-epoch rehearsal
    run(schedule, [0.5, 0.4])
    resumed = Schedule.from_state(schedule.state())
    assert resumed == schedule
    # events after round(epochs before the log's marks × 0.1): 24 → 2, 50 → 5, 66 and 71 → 7,
    # 78 → 8
    assert [h[0] for h in run(resumed, [0.4] * 6, start=2)] == pytest.approx(
        [0.001, 0.001, 0.0001, 0.0001, 0.0001, 1e-5])
    assert resumed.rates.layer_lr_scale["conv1b"] == 0.0 and not resumed.rates.colour_noise
    assert resumed.rates.frozen_layers == ("conv1a", "conv1b")
    assert Schedule.from_state(json.loads(json.dumps(resumed.state()))) == resumed


def test_a_state_from_before_frozen_layers_keeps_a_layer_scaled_to_0_frozen_whole():
    """Checkpoints written when layer_lr_scale applied to biases too: conv1 at 0 was frozen."""
    schedule = Schedule("2012", Rates(0.01, 0.02), scale=0.1, initial_weight_lr=0.01)
    run(schedule, [0.5] * 8)
    state = json.loads(json.dumps(schedule.state()))
    del state["rates"]["frozen_layers"]
    assert Schedule.from_state(state) == schedule


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="unknown schedule"):
        Schedule("cosine", Rates(0.1, 0.1))


@pytest.mark.parametrize("epochs", [13, 29, 58, 61, 90, 91, 99])
def test_a_2012_schedule_scaled_to_a_run_knows_that_runs_length(epochs):
    """scale = epochs / 90 is a float: the run's length comes back rounded, not truncated (13 /
    90 × 90 is 12.999…), so a resumed run goes on to the same epoch, with no note of a
    change."""
    schedule = Schedule("2012", Rates(0.01, 0.02), scale=epochs / RELEASED_2012_EPOCHS)
    assert schedule.scaled_epochs == epochs
    assert Schedule.from_state(json.loads(json.dumps(schedule.state()))).scaled_epochs == epochs
