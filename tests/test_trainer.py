"""The training loop on a synthetic dataset: an epoch is its SGD steps; a run killed mid-epoch
and resumed repeats the uninterrupted run's loss sequence bit for bit; a non-finite loss, in
training or in validation, stops the run with the step named and the checkpoints untouched;
evaluating a checkpoint leaves the run's logs alone. And on real images: a few SGD steps of the
recipe lower the loss."""
import csv
import json
import os
import re
import shutil
import signal
from dataclasses import replace

import h5py
import numpy as np
import pytest

from convnet import alexnet, checkpoint, stopping, trainer as trainer_module
from convnet.backend import get_backend
from convnet.data import dataset, fashion_mnist
from convnet.data.loader import Loader
from convnet.network import Network, parameter_specs
from convnet.replicas.engines import Replicas
from convnet.replicas.shard import WHOLE
from convnet.schedule import Rates, Schedule
from convnet.solver import SGD
from convnet.trainer import Evaluation, NonFiniteLoss, Trainer
from fashion import needs_fashion_mnist
from networks import make_active


class PatternData:
    """Each class is a fixed random image; samples are that image plus fixed noise. Batches are
    a pure function of (seed, epoch, batch index), like the real loader's."""

    def __init__(self, model, seed, train=32, val=32, kill_at=None):
        rng = np.random.default_rng(seed)
        classes = model.geometry.classes
        templates = rng.normal(0, 50, (classes,) + model.image_shape).astype(np.float32)
        self.train_labels = rng.integers(0, classes, train)
        self.val_labels = rng.integers(0, classes, val)
        self.train_images = self._samples(templates, self.train_labels, rng)
        self.val_images = self._samples(templates, self.val_labels, rng)
        self.seed, self.kill_at = seed, kill_at

    @staticmethod
    def _samples(templates, labels, rng):
        noise = rng.normal(0, 25, (len(labels),) + templates.shape[1:]).astype(np.float32)
        return np.ascontiguousarray((templates[labels] + noise).transpose(1, 2, 3, 0))

    def labels(self, split):
        return {"train": self.train_labels, "val": self.val_labels}[split]

    def train_batches(self, epoch, batch_size, colour_noise, shard=WHOLE, start=0):
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.train_labels))
        for index, first in list(enumerate(range(0, len(order), batch_size)))[start:]:
            if self.kill_at == (epoch, index):
                raise KeyboardInterrupt
            chosen = order[first:first + batch_size]
            part = shard.part(len(chosen))
            chosen = chosen[part.start:part.stop]
            yield (np.ascontiguousarray(self.train_images[..., chosen]),
                   self.train_labels[chosen], part)

    def eval_batches(self, batch_size, ten_crop, shard=WHOLE):
        for start in range(0, len(self.val_labels), batch_size):
            part = shard.part(min(batch_size, len(self.val_labels) - start))
            mine = slice(start + part.start, start + part.stop)
            images, labels = self.val_images[..., mine], self.val_labels[mine]
            yield ([images, images[:, :, ::-1].copy()] if ten_crop else [images]), labels


def make_trainer(tmp_path, *, seed=4, lr=0.01, kill_at=None, ten_crop=False, train=32):
    model = alexnet.build_model("2012-small28")
    network = Network(model, get_backend("reference"), seed=seed)
    schedule = Schedule("steps", Rates(lr, 2 * lr), step_epochs=(2,), initial_weight_lr=lr)
    return Trainer(network, PatternData(model, seed, train=train, kill_at=kill_at), schedule,
                   batch_size=16,
                   momentum=0.9, weight_decay=5e-4, output_dir=str(tmp_path), print_freq=1,
                   ten_crop=ten_crop)


def losses(folder):
    with open(folder / "log.jsonl") as handle:
        return [(entry["step"], entry["loss"]) for entry in map(json.loads, handle)]


def test_an_epoch_is_the_sgd_steps_over_its_batches(tmp_path):
    trainer = make_trainer(tmp_path / "run")
    manual = make_trainer(tmp_path / "manual")
    trainer.fit(1)
    for step, (images, labels, _) in enumerate(manual.data.train_batches(0, 16, True)):
        manual.network.forward(images, labels, train=True, step=step)
        manual.solver.step(manual.network, manual.network.backward(), manual.velocity)
    for key, value in manual.network.params.items():
        np.testing.assert_array_equal(trainer.network.params[key], value, err_msg=key)


def test_logs_schedule_and_checkpoints(tmp_path, capsys):
    trainer = make_trainer(tmp_path, ten_crop=True)
    trainer.fit(3)
    printed = capsys.readouterr().out.splitlines()   # a line per epoch, terminal or not
    assert [line.split(":")[0] for line in printed] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert [step for step, _ in losses(tmp_path)] == list(range(1, 7))
    with open(tmp_path / "epochs.csv", newline="") as handle:   # lines as written
        lines = handle.readlines()
    assert not any("\r" in line for line in lines)   # Unix ends of line, as awk and cut read
    rows = list(csv.DictReader(lines))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [float(r["weight_lr"]) for r in rows] == pytest.approx([0.01, 0.01, 0.001])
    assert [float(r["bias_lr"]) for r in rows] == pytest.approx([0.02, 0.02, 0.002])
    assert all(float(r["val_top5"]) <= float(r["val_top1"]) for r in rows)
    assert (tmp_path / "last.h5").exists() and (tmp_path / "best.h5").exists()
    # The validation after each epoch is over the run's views (here a second, mirrored one).
    views = trainer_module.evaluate(trainer.network, trainer.data, 16, True)
    assert float(rows[-1]["val_loss"]) == pytest.approx(views.loss, rel=1e-12)
    assert trainer_module.evaluate(trainer.network, trainer.data, 16, False).loss != \
        pytest.approx(views.loss, rel=1e-6)


def validation_errors(monkeypatch, top1_errors):
    """Each epoch's validation gives the next of these top-1 errors (loss 1, top-5 0.1)."""
    errors = iter(top1_errors)
    monkeypatch.setattr(trainer_module, "evaluate",
                        lambda *args: Evaluation(1.0, next(errors), 0.1, 32))


def test_best_checkpoint_holds_the_epoch_of_lowest_validation_error(tmp_path, monkeypatch):
    """best.h5: the epoch of the lowest validation top-1 error so far (the first of a tie), also
    across a resume, which remembers the error to beat; last.h5: the latest epoch."""
    validation_errors(monkeypatch, [0.5, 0.3, 0.4, 0.3, 0.35, 0.2])
    network = make_trainer(tmp_path / "reader").network

    def saved_epochs():
        return [checkpoint.load(str(tmp_path / name), network)[2]["epoch"]
                for name in (checkpoint.BEST, checkpoint.LAST)]

    make_trainer(tmp_path).fit(4)
    assert saved_epochs() == [2, 4]
    resumed = make_trainer(tmp_path)
    resumed.resume(str(tmp_path / checkpoint.LAST))
    resumed.fit(5)
    assert saved_epochs() == [2, 5]
    resumed.fit(6)
    assert saved_epochs() == [6, 6]


def test_a_run_stopped_between_its_checkpoints_writes_best_again(tmp_path, monkeypatch):
    """An improving epoch's checkpoints, best.h5 and last.h5, written one after the other: a
    run stopped between the two (here, a full disk at the second) goes on from the last.h5
    before, repeats the epoch and ends with the best.h5 of an uninterrupted run."""
    validation_errors(monkeypatch, [0.5, 0.3, 0.3])
    network = make_trainer(tmp_path / "reader").network
    trainer = make_trainer(tmp_path)
    trainer.fit(1)
    save, copy, written = checkpoint.save, checkpoint.copy, []

    def second_write_fails(write, target_at):   # the target: save's first argument, copy's second
        def failing(*args):
            written.append(args[target_at])
            if len(written) > 1:
                raise checkpoint.CheckpointError(f"checkpoint {args[target_at]}: no space left")
            write(*args)
        return failing
    monkeypatch.setattr(checkpoint, "save", second_write_fails(save, 0))
    monkeypatch.setattr(checkpoint, "copy", second_write_fails(copy, 1))
    with pytest.raises(checkpoint.CheckpointError):
        trainer.fit(2)
    monkeypatch.setattr(checkpoint, "save", save)
    monkeypatch.setattr(checkpoint, "copy", copy)
    resumed = make_trainer(tmp_path)
    resumed.resume(str(tmp_path / checkpoint.LAST))
    resumed.fit(2)
    assert [checkpoint.load(str(tmp_path / name), network)[2]["epoch"]
            for name in (checkpoint.BEST, checkpoint.LAST)] == [2, 2]


def test_the_views_average_their_softmax_and_their_features(rng):
    """forward_views: the softmax and the feature layers' outputs (the neighbours figure's
    vectors), each the mean over the views, not their sum."""
    model = alexnet.build_model("2012-small28")
    network = make_active(Network(model, get_backend("reference"), seed=3), rng)
    images = rng.normal(0, 50, model.image_shape + (3,)).astype(np.float32)
    views = [images, np.ascontiguousarray(images[:, :, ::-1])]
    probs, (hidden,) = trainer_module.forward_views(network, views, ("fc7a",))
    each = []
    for view in views:
        result = network.forward(view, None, train=False)
        each.append((result.probs, network.outputs["fc7a"].copy()))
    np.testing.assert_allclose(probs, (each[0][0] + each[1][0]) / 2, rtol=1e-6)
    np.testing.assert_allclose(hidden, (each[0][1] + each[1][1]) / 2, rtol=1e-6)
    assert not np.allclose(each[0][1], each[1][1])


def test_outputs_all_equal_err_as_a_random_guess_in_a_step_and_in_validation(tmp_path):
    """fc8 all zero, every class as probable as the next (a network diverged to a constant):
    top-1 error 9/10 and top-5 error 5/10 of the images, fractions of an image summed as
    such, where counting ties in its favour gave no error at all."""
    trainer = make_trainer(tmp_path)
    for key, value in trainer.network.params.items():
        if key.startswith("fc8/"):
            value[...] = 0
    validation = trainer_module.evaluate(trainer.network, trainer.data, 16, ten_crop=False)
    assert (validation.top1, validation.top5) == pytest.approx((0.9, 0.5))
    images, labels, part = next(trainer.data.train_batches(0, 16, colour_noise=True))
    _, top1, top5 = trainer.train_step(images, labels, part)
    assert (top1, top5) == pytest.approx((16 * 0.9, 16 * 0.5))


def test_log_loss_counts_a_confident_mistake_large_and_finite():
    assert trainer_module.summed_log_loss(np.array([0.5, 0.25])) == pytest.approx(np.log(8))
    # p floored at 1e-30: 69 nats each, where −log 0 would be infinite
    assert trainer_module.summed_log_loss(np.array([0.0, 1e-40])) == \
        pytest.approx(2 * 30 * np.log(10))


def test_the_schedule_hears_each_epochs_validation_error_and_the_solver_takes_its_rates(
        tmp_path, monkeypatch):
    """The 2012 schedule squeezed into 2 epochs (scale 0.02: after epoch 1 the rate is 1e-4,
    conv1 frozen and the colour noise off): the solver runs epoch 2, and a resumed run, at
    those rates, and the loader draws epoch 2 without colour noise."""
    validation_errors(monkeypatch, [0.7, 0.6])
    trainer = make_trainer(tmp_path)
    trainer.schedule = Schedule("2012", Rates(0.01, 0.02), scale=0.02)
    heard, colour_noise = [], []
    finished = trainer.schedule.epoch_finished
    trainer.schedule.epoch_finished = lambda epoch, error: heard.append(error) or finished(
        epoch, error)
    batches = trainer.data.train_batches
    trainer.data.train_batches = lambda epoch, size, noise, shard, start: colour_noise.append(
        noise) or batches(epoch, size, noise, shard, start)
    trainer.fit(1)
    assert heard == [0.7] and colour_noise == [True]
    resumed = make_trainer(tmp_path)
    resumed.resume(str(tmp_path / checkpoint.LAST))
    for solver in (trainer.solver, resumed.solver):
        rates = {spec.key: solver.learning_rate(spec) for spec in trainer.network.specs}
        assert rates["conv1a/data"] == rates["conv1b/bias"] == 0.0
        assert rates["conv2a/pool1a"] == pytest.approx(1e-4)
        assert rates["conv2a/bias"] == pytest.approx(0.02)   # the bias rate "mostly left"
    trainer.fit(2)
    assert heard == [0.7, 0.6] and colour_noise == [True, False]


def test_an_epochs_training_figures_are_its_steps_weighted_by_their_images(tmp_path):
    """epochs.csv's training loss and errors: over the epoch's images, so a last batch of 8
    counts half as much as the batches of 16 before it."""
    make_trainer(tmp_path, train=40).fit(1)
    with open(tmp_path / "log.jsonl") as handle:
        steps = [json.loads(line) for line in handle]
    with open(tmp_path / "epochs.csv") as handle:
        (row,) = csv.DictReader(handle)
    sizes = np.array([16, 16, 8])
    assert len(steps) == len(sizes)
    for field, logged in (("train_loss", "loss"), ("train_top1", "top1"), ("train_top5", "top5")):
        expected = (sizes * [step[logged] for step in steps]).sum() / sizes.sum()
        assert float(row[field]) == pytest.approx(expected, rel=1e-12), field


def test_kill_and_resume_repeats_the_uninterrupted_run_exactly(tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    make_trainer(whole).fit(3)
    with pytest.raises(KeyboardInterrupt):
        make_trainer(broken, kill_at=(2, 1)).fit(3)              # dies inside epoch 3
    resumed = make_trainer(broken)
    resumed.resume(str(broken / "last.h5"))
    resumed.go_on_from(str(broken / "last.h5"))
    assert (resumed.epoch, resumed.step) == (2, 4)
    resumed.fit(3)
    assert losses(broken) == losses(whole)                        # bitwise: floats compared ==
    with open(broken / "epochs.csv") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2", "3"]


def epoch_rows(folder):
    """epochs.csv's rows but their times."""
    with open(folder / "epochs.csv") as handle:
        return [{key: value for key, value in row.items() if key != "seconds"}
                for row in csv.DictReader(handle)]


@pytest.mark.parametrize("stop_at, where, saved", [
    (4, "after step 4", (4, 1, 3, 2, True, 0)),         # a batch into epoch 2 of 3 batches
    (6, "in epoch 2's validation", (6, 3, 3, 2, True, 0))],  # its batches done, not its checkpoint
    ids=["between steps", "in a validation"])
def test_a_stop_saves_the_run_where_it_stopped_and_a_resume_goes_on_exactly(
        tmp_path, monkeypatch, stop_at, where, saved):
    """Ctrl-C or a scheduler's SIGTERM (stopping.check raising Stopped) mid-epoch: last.h5
    holds the run at that step, the epoch's batches done and their sums, and the run going on
    from it repeats the uninterrupted run bit for bit: its losses, its epochs' figures, its
    weights. A stop where nothing is new since the last checkpoint writes nothing."""
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    uninterrupted = make_trainer(whole, train=48)
    uninterrupted.fit(3)
    first = make_trainer(stopped, train=48)
    check, evaluate, validating = stopping.check, trainer_module.evaluate, []

    def stop_there(asked):
        check(asked)
        if first.step == stop_at and bool(validating) == (where != "after step 4"):
            raise stopping.Stopped(signal.SIGTERM)

    def validation(*args):
        validating.append(True)
        try:
            return evaluate(*args)
        finally:
            validating.clear()
    monkeypatch.setattr(stopping, "check", stop_there)
    monkeypatch.setattr(trainer_module, "evaluate", validation)
    with pytest.raises(stopping.Stopped) as stop:
        first.fit(3)
    assert stop.value.saved == saved
    assert checkpoint.record(str(stopped / "last.h5"))[1]["step"] == stop_at
    assert first.save_stopped() == (*saved[:4], False, 0)   # nothing new: nothing written
    monkeypatch.setattr(stopping, "check", check)
    monkeypatch.setattr(trainer_module, "evaluate", evaluate)
    going_on = make_trainer(stopped, train=48)
    going_on.resume(str(stopped / "last.h5"))
    going_on.go_on_from(str(stopped / "last.h5"))
    assert (going_on.epoch, going_on.step, going_on.so_far.batches) == (1, stop_at, saved[1])
    going_on.fit(3)
    assert losses(stopped) == losses(whole)               # bitwise: floats compared ==
    assert epoch_rows(stopped) == epoch_rows(whole)
    for key, value in uninterrupted.network.params.items():
        np.testing.assert_array_equal(going_on.network.params[key], value, err_msg=key)


def test_a_stop_before_a_step_since_the_last_checkpoint_writes_nothing(tmp_path, monkeypatch):
    """Stopped as epoch 2 starts, its first step not taken: last.h5 stays epoch 1's, and the
    stop says so (the line: where last.h5 has the run)."""
    first = make_trainer(tmp_path, train=48)
    check = stopping.check

    def stop_as_epoch_2_starts(asked):
        check(asked)
        if first.epoch == 1:
            raise stopping.Stopped(signal.SIGINT)
    monkeypatch.setattr(stopping, "check", stop_as_epoch_2_starts)
    with pytest.raises(stopping.Stopped) as stop:
        first.fit(3)
    assert stop.value.saved == (3, 0, 3, 2, False, 0)
    assert checkpoint.record(str(tmp_path / "last.h5"))[1]["step"] == 3


def test_a_new_run_stopped_before_its_first_step_has_no_checkpoint_to_name(tmp_path,
                                                                          monkeypatch):
    first = make_trainer(tmp_path, train=48)
    monkeypatch.setattr(stopping, "requests", lambda: [1.0, 0.0, 0.0])
    with pytest.raises(stopping.Stopped) as stop:
        first.fit(3)
    assert stop.value.saved is None
    assert not (tmp_path / "last.h5").exists()


@pytest.mark.parametrize("broken_by, ended, kept", [
    (4, r"loss became nan at step 5 \(epoch 2\)", 3),    # seen in step 5's sum
    (3, r"the weights of step 3 \(epoch 1\) are not finite, so the stop did not save them; "
        r"no checkpoint was written before it", None)],    # seen in the validation after
    ids=["in a step", "in a validation"])
def test_a_stop_asked_as_an_update_breaks_the_weights_saves_none_of_them(tmp_path, monkeypatch,
                                                                         broken_by, ended, kept):
    """Step `broken_by`'s update breaks the weights and asks for a stop, which comes at the next
    step's sum or, after an epoch's last step, at its validation's first batch: the run ends on
    the broken weights, and last.h5 stays the checkpoint before (none in epoch 1)."""
    first = make_trainer(tmp_path, train=48)   # 3 steps an epoch
    update = first.solver.step

    def breaking(network, grads, velocity):
        update(network, grads, velocity)
        if first.step == broken_by - 1:
            next(iter(network.params.values()))[...] = np.nan
            monkeypatch.setattr(stopping, "requests", lambda: [0.0, 1.0, 0.0])
    monkeypatch.setattr(first.solver, "step", breaking)
    # a stop let through would end pytest's session (a KeyboardInterrupt), not fail this test
    with pytest.raises((NonFiniteLoss, stopping.Stopped)) as stop, \
            np.errstate(invalid="ignore", over="ignore"):
        first.fit(3)
    assert stop.type is NonFiniteLoss and re.search(ended, str(stop.value)), str(stop.value)
    last = tmp_path / "last.h5"
    assert (checkpoint.record(str(last))[1]["step"] if last.exists() else None) == kept


def test_the_logs_reach_the_disk_before_the_checkpoint_that_covers_them(tmp_path, monkeypatch):
    """A resume cuts the logs back to its checkpoint and never writes their lines again: after
    a power cut, a checkpoint on the disk without the lines before it would lose them."""
    events = []
    fsync, save = os.fsync, checkpoint.save

    def synced(descriptor):
        events.append(os.path.basename(os.readlink(f"/proc/self/fd/{descriptor}")))
        fsync(descriptor)
    monkeypatch.setattr(os, "fsync", synced)
    monkeypatch.setattr(checkpoint, "save", lambda *args: (events.append("save"), save(*args)))
    make_trainer(tmp_path).fit(1)
    ours = [event for event in events if event in ("log.jsonl", "epochs.csv", "save")]
    assert ours == ["log.jsonl", "epochs.csv", "save"]


class Recorded(Replicas):
    """One rank of two, whose sums (the identity) are recorded, in order, in `events`."""
    world = 2

    def __init__(self, rank, events):
        self.rank, self.events = rank, events

    def sum(self, values):
        self.events.append("sum")
        return super().sum(values)

    def check_same(self, arrays, what):   # the other rank's checksums are not here
        pass


@pytest.mark.parametrize("rank", [0, 1])
def test_every_rank_waits_for_rank_0s_save_of_a_stopped_run(tmp_path, monkeypatch, rank):
    """A rank leaving first ends the job: after a stop, every rank meets the others in a sum
    once rank 0 has saved the run, before any leaves."""
    events = []
    first = make_trainer(tmp_path, train=48)
    first.replicas, first.writes = Recorded(rank, events), rank == 0
    save = checkpoint.save
    monkeypatch.setattr(checkpoint, "save", lambda *args: (events.append("save"), save(*args)))
    monkeypatch.setattr(stopping, "requests",
                        lambda: [float(first.step == 4), 0.0, 0.0])   # in step 5
    with pytest.raises(stopping.Stopped) as stop:
        first.fit(3)
    assert stop.value.saved == (4, 1, 3, 2, True, 0)
    assert events[-2:] == (["save", "sum"] if rank == 0 else ["sum", "sum"])  # step 5's, then
    assert events.count("save") == (2 if rank == 0 else 0)                   # the one after


def test_a_non_finite_loss_after_a_stop_names_the_checkpoint_it_left(tmp_path, monkeypatch):
    first = make_trainer(tmp_path, train=48)
    check = stopping.check

    def stop_at_step_4(asked):
        if first.step == 4:
            raise stopping.Stopped(signal.SIGINT)
    monkeypatch.setattr(stopping, "check", stop_at_step_4)
    with pytest.raises(stopping.Stopped):
        first.fit(3)
    monkeypatch.setattr(stopping, "check", check)
    going_on = make_trainer(tmp_path, train=48)
    going_on.resume(str(tmp_path / "last.h5"))
    weights = next(iter(going_on.network.params.values()))
    weights[...] = np.inf
    with pytest.raises(NonFiniteLoss, match=r"at step 5 \(epoch 2\); the checkpoint of step 4 "
                                            r"\(1 batch into epoch 2\), last.h5, is untouched"), \
            np.errstate(invalid="ignore"):
        going_on.fit(3)


def test_a_checkpoint_without_the_training_state_is_refused(tmp_path):
    trainer = make_trainer(tmp_path)
    state = trainer.state()
    del state["seed"]
    checkpoint.save(str(tmp_path / "partial.h5"), trainer.network, trainer.velocity, state)
    with pytest.raises(checkpoint.CheckpointError, match="training state lacks seed"):
        make_trainer(tmp_path).resume(str(tmp_path / "partial.h5"))


def test_resume_with_another_seed_is_refused(tmp_path):
    make_trainer(tmp_path).fit(1)
    other = make_trainer(tmp_path, seed=5)
    with pytest.raises(Exception, match="--seed 4"):
        other.resume(str(tmp_path / "last.h5"))


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid:RuntimeWarning")
def test_non_finite_loss_stops_with_the_step_and_keeps_the_checkpoint(tmp_path):
    """A learning rate of 1e12 sends the weights, and so the loss, to infinity within steps."""
    trainer = make_trainer(tmp_path)
    trainer.fit(1)
    before = (tmp_path / "last.h5").read_bytes()
    trainer.solver.weight_lr = 1e12
    with pytest.raises(NonFiniteLoss, match=r"at step \d+ \(epoch 2\); the checkpoint of "
                                            r"epoch 1, last.h5, is untouched$") as stopped:
        trainer.fit(2)
    assert (tmp_path / "last.h5").read_bytes() == before
    failed = int(re.search(r"at step (\d+)", str(stopped.value)).group(1))
    assert failed == losses(tmp_path)[-1][0] + 1   # numbered as log.jsonl numbers the steps


@pytest.mark.parametrize("loss", [float("inf"), float("nan")])
def test_an_infinite_or_nan_loss_stops_the_run_before_its_update(tmp_path, loss):
    trainer = make_trainer(tmp_path)
    forward = trainer.network.forward
    trainer.network.forward = lambda *args, **kwargs: replace(forward(*args, **kwargs), loss=loss)
    before = {key: value.copy() for key, value in trainer.network.params.items()}
    with pytest.raises(NonFiniteLoss, match=rf"loss became {loss} at step 1 \(epoch 1\); no "
                                            rf"checkpoint was written before it$"):
        trainer.fit(1)
    assert all(np.array_equal(trainer.network.params[key], value)
               for key, value in before.items())
    assert not (tmp_path / "last.h5").exists()


def test_non_finite_validation_loss_stops_the_run_before_any_checkpoint(tmp_path, monkeypatch):
    """An epoch's last step can break the weights with a finite loss; validation sees it first,
    and its error figures say nothing (here none at all), so it must not be saved, least of all
    as best."""
    trainer = make_trainer(tmp_path)
    trainer.fit(1)
    saved = {name: (tmp_path / name).read_bytes() for name in ("last.h5", "best.h5")}
    monkeypatch.setattr(trainer_module, "evaluate",
                        lambda *args: Evaluation(float("nan"), 0.0, 0.0, 32))
    with pytest.raises(NonFiniteLoss, match=r"validation loss became nan after step \d+ "
                                            r"\(epoch 2\)"):
        trainer.fit(2)
    assert {name: (tmp_path / name).read_bytes() for name in saved} == saved


def test_evaluating_a_checkpoint_keeps_the_logs_and_continuing_from_it_drops_later_lines(
        tmp_path):
    first = make_trainer(tmp_path)
    first.fit(1)
    shutil.copy(tmp_path / "last.h5", tmp_path / "epoch1.h5")
    first.fit(2)
    logs = {name: (tmp_path / name).read_text() for name in ("log.jsonl", "epochs.csv")}
    make_trainer(tmp_path).resume(str(tmp_path / "epoch1.h5"))
    assert {name: (tmp_path / name).read_text() for name in logs} == logs
    continuing = make_trainer(tmp_path)
    continuing.resume(str(tmp_path / "epoch1.h5"))
    continuing.go_on_from(str(tmp_path / "epoch1.h5"))
    with open(tmp_path / "epochs.csv") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1"]
    # last.h5 agrees with the logs: a stop before the next checkpoint goes on from epoch 1
    assert (tmp_path / "last.h5").read_bytes() == (tmp_path / "epoch1.h5").read_bytes()


def test_a_run_going_on_in_another_folder_takes_its_best_so_far(tmp_path):
    """Resumed from another folder's last.h5 or best.h5, the new folder gets that run's best.h5
    (so that --weights FOLDER finds one). A best.h5 beside it that differs from the run in any
    one of what decides a run (model, seed, starting weights, recipe, schedule, best error), or
    none, is not taken: a note says best.h5 waits for an epoch that beats the recorded error."""
    source = tmp_path / "source"
    make_trainer(source).fit(2)
    best = (source / "best.h5").read_bytes()
    for name in ("last.h5", "best.h5"):
        folder = tmp_path / f"from-{name}"
        going_on = make_trainer(folder)
        going_on.resume(str(source / name))
        assert going_on.go_on_from(str(source / name)) is None
        assert (folder / "best.h5").read_bytes() == best

    def state(change):
        return lambda file: {**json.loads(file.attrs["state"]), **change}

    def schedule(change):
        return lambda file: (lambda old: {**old, "schedule": {**old["schedule"], **change}})(
            json.loads(file.attrs["state"]))
    others = {"model": lambda file: file.attrs.__setitem__("model", "paper-small28"),
              "seed": state({"seed": 5}), "started_from": state({"started_from": "/w.h5"}),
              "batch_size": state({"batch_size": 8}), "kind": schedule({"kind": "plateau"}),
              "initial_weight_lr": schedule({"initial_weight_lr": 0.02}),
              "best_error": schedule({"best_error": 0.5}), "none": None, "unreadable": None}
    for differs, change in others.items():
        (source / "best.h5").write_bytes(best)
        why = "the best.h5 beside it is not this run's best so far"
        if differs == "none":
            (source / "best.h5").unlink()
            why = "no best.h5 is beside it"
        elif differs == "unreadable":
            (source / "best.h5").write_bytes(b"junk")
            why = f"checkpoint {source / 'best.h5'}: not a readable HDF5 file"
        else:
            with h5py.File(source / "best.h5", "r+") as file:
                changed = change(file)
                if changed is not None:   # a new state: written without its digest
                    file.attrs["state"] = json.dumps(changed)
                    del file.attrs["state_sha256"]
        folder = tmp_path / f"beside-{differs}"
        going_on = make_trainer(folder)
        going_on.resume(str(source / "last.h5"))
        error = going_on.schedule.best_error
        assert going_on.go_on_from(str(source / "last.h5")).startswith(
            f"note: {folder} gets no best.h5 until an epoch beats the validation top-1 error of "
            f"{error:.2%} that {source / 'last.h5'} records ({why}"), differs
        assert not (folder / "best.h5").exists()


def test_a_best_h5_that_cannot_be_copied_stops_the_run(tmp_path, monkeypatch):
    """A full disk as the run's best.h5 is copied into the new folder: the checkpoint's error,
    which the training command reports in one line, not a note that there is no best.h5; the
    copies made before it go again, so that the same command may be run again there."""
    source = tmp_path / "source"
    make_trainer(source).fit(1)
    copy = checkpoint.copy

    def copy_on_a_full_disk(source_path, target_path):
        if target_path.endswith("best.h5"):
            raise checkpoint.CheckpointError(f"checkpoint {target_path}: cannot write it (No "
                                             f"space left on device)")
        copy(source_path, target_path)
    monkeypatch.setattr(checkpoint, "copy", copy_on_a_full_disk)
    going_on = make_trainer(tmp_path / "new")
    going_on.resume(str(source / "last.h5"))
    with pytest.raises(checkpoint.CheckpointError, match="best.h5: cannot write it"):
        going_on.go_on_from(str(source / "last.h5"))
    # the last.h5 it copied first goes again: the folder holds no run that refuses a retry
    assert not (tmp_path / "new" / "last.h5").exists()


def test_a_best_h5_beside_whose_state_is_not_a_runs_is_not_taken(tmp_path):
    """A best.h5 whose training state has no schedule (not one this code wrote) is not the
    run's best: a note, not a traceback."""
    source = tmp_path / "source"
    make_trainer(source).fit(1)
    with h5py.File(source / "best.h5", "r+") as file:
        state = json.loads(file.attrs["state"])
        del state["schedule"], file.attrs["state_sha256"]
        file.attrs["state"] = json.dumps(state)
    going_on = make_trainer(tmp_path / "new")
    going_on.resume(str(source / "last.h5"))
    assert "(the best.h5 beside it is not this run's best so far)" in going_on.go_on_from(
        str(source / "last.h5"))
    assert not (tmp_path / "new" / "best.h5").exists()


@pytest.mark.parametrize("lines", [{"log.jsonl": b'{"step": 1, "note": "\xff"}\n',
                                     "epochs.csv": b"1,\xff\n"},   # kept, were they text
                                    {"log.jsonl": b'{"step": 1}', "epochs.csv": b"1"}],
                         ids=["not text", "cut short before its end of line"])
def test_a_log_line_that_a_resume_cannot_trust_is_dropped(tmp_path, lines):
    """Bytes that are not UTF-8, and a line cut short just before its end of line, which reads
    as a whole entry but would run into the next one appended."""
    first = make_trainer(tmp_path)
    first.fit(1)
    logs = {name: (tmp_path / name).read_bytes() for name in ("log.jsonl", "epochs.csv")}
    for name in logs:
        with open(tmp_path / name, "ab") as handle:
            handle.write(lines[name])
    continuing = make_trainer(tmp_path)
    continuing.resume(str(tmp_path / "last.h5"))
    continuing.go_on_from(str(tmp_path / "last.h5"))
    assert {name: (tmp_path / name).read_bytes() for name in logs} == logs


@pytest.mark.parametrize("left", [b"", b"epoch,train_lo"], ids=["empty", "header cut short"])
def test_a_restart_over_an_epochs_csv_without_its_header_writes_the_header(tmp_path, left):
    """A run stopped in its first epoch's write of epochs.csv (a full disk: the file made, its
    header not or half written) and started again over its logs: the header that the restart
    drops, or that was never written, is written with the first row."""
    (tmp_path / "log.jsonl").write_text('{"epoch": 1, "step": 1, "loss": 2.3}\n')
    (tmp_path / "epochs.csv").write_bytes(left)
    restarted = make_trainer(tmp_path)
    restarted.go_on_from(None)
    restarted.fit(1)
    with open(tmp_path / "epochs.csv") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1"]


@needs_fashion_mnist
def test_a_few_steps_on_real_images_lower_the_loss(tmp_path, rng):
    """Ten SGD steps of the default run's recipe (rate 0.02, momentum 0.9, weight decay 5e-4,
    dropout) on a batch of 64 Fashion-MNIST images, as the loader delivers it, lower that
    batch's loss measured without dropout: from about ln 10 by 0.04 to 0.05 in the runs seen
    (the paper's initialization starts on a plateau, so more is not to be asked of ten steps)."""
    images, labels = fashion_mnist.load_split(fashion_mnist.DEBIAN_SOURCE, "train")
    path = tmp_path / "real.h5"
    dataset.write(path, name="fashion-mnist-subset", train_images=images[:64],
                  train_labels=labels[:64], val_images=images[64:128], val_labels=labels[64:128],
                  class_ids=[str(i) for i in range(10)],
                  class_names=list(fashion_mnist.CLASS_NAMES))
    model = alexnet.build_model("2012-small28")
    loader = Loader(str(path), crop=28, seed=0, colour_noise_convention=model.preset.colour_noise,
                    crop_draw=model.preset.crop_draw)
    ((batch,), batch_labels), = loader.eval_batches(64, ten_crop=False, split="train")
    network = Network(model, get_backend("reference"), seed=int(rng.integers(1000)))
    solver = SGD(0.02, 2.0, 0.9, 5e-4)
    velocity = solver.momentum_buffers(network)
    before = network.forward(batch, batch_labels, train=False).loss
    for step in range(10):
        network.forward(batch, batch_labels, train=True, step=step)
        solver.step(network, network.backward(), velocity)
    after = network.forward(batch, batch_labels, train=False).loss
    assert after < before - 0.02, (before, after)


def test_progress_bar_shows_rate_and_data_wait_and_logs_the_wait(tmp_path):
    """The bar gets the epoch's batches (with their count, for the ETA) and, per step, the
    images/s and the share of time spent waiting for data; log.jsonl records that share."""
    shown = []

    class Bar:
        def __init__(self, batches, description, done):
            self.batches = batches

        def __iter__(self):
            return iter(self.batches)

        def set_postfix_str(self, text, refresh):
            shown.append(text)

    trainer = make_trainer(tmp_path)
    trainer.progress = Bar
    trainer.fit(1)
    assert len(shown) == 2 and all("images/s, waiting for data" in text for text in shown)
    with open(tmp_path / "log.jsonl") as handle:
        waits = [json.loads(line)["data_wait_fraction"] for line in handle]
    assert len(waits) == 2 and all(0 <= wait <= 1 for wait in waits)


def test_loader_batches_know_their_count():
    from convnet.data.loader import prefetch
    batches = prefetch(lambda k: k * k, 5)
    assert len(batches) == 5 and list(batches) == [0, 1, 4, 9, 16]


def saved_network(path, rng, name="2012-small28", classes=10):
    """A checkpoint of a network of model `name` with random parameters and momentum; the
    network."""
    model = alexnet.build_model(name, classes=classes)
    network = Network(model, get_backend("reference"),
                      params={spec.key: rng.normal(0, 0.1, spec.shape).astype(np.float32)
                              for spec in parameter_specs(model)})
    checkpoint.save(path, network, {key: rng.normal(0, 0.1, value.shape).astype(np.float32)
                                    for key, value in network.params.items()},
                    {"epoch": 1, "step": 1})
    return network


# The one-tower model's arrays whose shapes tower a of the two-tower one shares: conv1-4 are
# halves in both, conv5 and fc6-7 whole there, and fc8 reads one fc7 of twice the units.
ONE_TOWER_SHARED = {"conv1a/data", "conv1a/bias", "conv2a/pool1a", "conv2a/bias", "conv3a/pool2a",
                    "conv3a/bias", "conv4a/conv3a", "conv4a/bias", "fc8/bias"}


@pytest.mark.parametrize("source, shared", [
    ("2012-small28", lambda keys: set(keys)),
    ("2012-small28:7", lambda keys: set(keys) - {"fc8/drop7a", "fc8/drop7b", "fc8/bias"}),
    ("2012-small28+one-tower", lambda keys: ONE_TOWER_SHARED),
], ids=["same model", "7 classes", "one tower"])
def test_a_new_run_starts_from_the_parameters_a_checkpoint_shares(tmp_path, rng, source, shared):
    name, _, classes = source.partition(":")
    saved = saved_network(tmp_path / "source.h5", rng, name, int(classes or 10))
    trainer, fresh = make_trainer(tmp_path / "run"), make_trainer(tmp_path / "fresh")
    keys = [spec.key for spec in trainer.network.specs]
    copied = shared(keys)
    kept = trainer.start_from_weights(tmp_path / "source.h5")
    assert kept == [key for key in keys if key not in copied]
    for key in keys:
        source_params = saved.params if key in copied else fresh.network.params
        np.testing.assert_array_equal(trainer.network.params[key], source_params[key])
    assert trainer.step == 0 and not any(np.any(v) for v in trainer.velocity.values())
    assert trainer.state()["started_from"] == str(tmp_path / "source.h5")


def test_weights_of_a_model_that_shares_nothing_are_refused(tmp_path, rng):
    saved_network(tmp_path / "other.h5", rng, "2012-small64", classes=7)
    with pytest.raises(checkpoint.CheckpointError, match="shares no parameter .* with model "
                                                         "2012-small28$"):
        make_trainer(tmp_path / "run").start_from_weights(tmp_path / "other.h5")


def test_a_checkpoint_from_before_fine_tuning_resumes_with_no_start_recorded(tmp_path):
    """Checkpoints written before runs recorded the weights they started from lack the field."""
    old = make_trainer(tmp_path / "old")
    state = old.state()
    del state["started_from"]
    checkpoint.save(tmp_path / "old.h5", old.network, old.velocity, state)
    resumed = make_trainer(tmp_path / "run")
    resumed.started_from = "set before the resume"
    resumed.resume(tmp_path / "old.h5")
    assert resumed.started_from is None
