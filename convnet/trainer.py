"""The training loop: epochs of SGD steps, evaluation, the schedule, logs and checkpoints.

It drives a Network through any data source that provides
  train_batches(epoch, batch_size, colour_noise, shard, start) → iterable of (images (C,H,W,n),
      labels (n,), part): the shard's part (convnet.replicas.BatchPart) of each global batch
      from batch `start` on
  labels(split) → the split's labels
  eval_batches(batch_size, ten_crop, shard=...) → iterable of (views, labels), views a list of
      image batches, the shard's part of each
and whose batches are a pure function of (its seed, epoch, batch index). Dropout masks are a pure
function of (seed, step). So everything a run does follows from its seed and its step counter,
both saved in each checkpoint, and a resumed run repeats an uninterrupted one exactly; a stop
signal (convnet.stopping) saves the run at its step, with the epoch's batches done and their
sums, so that it goes on from the next batch.

With replicas (convnet.replicas), every rank runs this loop on its shard of each batch: the
step's loss and error counts and the evaluation totals are summed over the ranks, so every
rank sees the global figures and takes the same decisions (non-finite loss, schedule, best
checkpoint); the gradients are summed during the backward pass; only rank 0 writes files. The
weights are compared across the ranks (checksums) after every epoch.

Files in the output folder:
  log.jsonl     one JSON object per print step (epoch, step, loss, top-1/top-5 error, the weight
                rate, images/s, the share of time spent waiting for data)
  epochs.csv    one row per epoch: train and validation loss, top-1, top-5, the weight and bias
                rates, seconds
  settings.json the resolved settings (convnet.train)
  last.h5       the checkpoint after the latest epoch, or at the step a stop signal stopped the
                run; best.h5 the one with the lowest validation top-1 error so far (both
                written atomically, see convnet.checkpoint)
"""
import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np

from convnet import checkpoint, stopping
from convnet.atomic import atomic_path, refuse_unless_regular
from convnet.errors import counted, failed_writes, one_line
from convnet.replicas.engines import Replicas
from convnet.schedule import Schedule
from convnet.solver import SGD

# A run's logs and resolved settings, beside its checkpoints
LOG, EPOCHS_CSV, SETTINGS = "log.jsonl", "epochs.csv", "settings.json"
EPOCH_FIELDS = ("epoch", "train_loss", "train_top1", "train_top5", "val_loss", "val_top1",
                "val_top5", "weight_lr", "bias_lr", "seconds")


ALONE = Replicas()   # one process: no communication


class NonFiniteLoss(RuntimeError):
    pass


class RunFolderError(RuntimeError):
    """The run's folder cannot be used: a file of it (a log, the settings) cannot be written,
    or another run training there holds it."""


def writing(path):
    """A failed write of the run's file `path` (a full disk, a folder in its place) is one
    RunFolderError naming it."""
    return failed_writes(RunFolderError, lambda error: f"{path}: cannot write "
                                                       f"({error.strerror or one_line(error)})")


class _Appending:
    """The run's file `path` open for appending; every failure is writing()'s error naming
    `named` (the file's name where `path` is the null device of a rank that writes nothing).
    Closed, what it wrote is on the disk (fsync): the checkpoint that follows, which the logs
    are cut back to on a resume, must not reach the disk before the lines it covers, which a
    power cut would then lose for good."""

    def __init__(self, path, named):
        self.named, self._synced = named, path != os.devnull   # which takes no fsync
        with writing(named):
            self._file = open(path, "a", newline="")

    def empty(self):
        """Whether the file holds nothing yet: opened for appending, it stands at its end."""
        return self._file.tell() == 0

    def write(self, text):
        with writing(self.named):
            return self._file.write(text)

    def flush(self):
        with writing(self.named):
            self._file.flush()

    def __enter__(self):
        return self

    def __exit__(self, *raised):
        with writing(self.named):
            try:
                if self._synced:
                    self._file.flush()
                    os.fsync(self._file.fileno())
            finally:
                self._file.close()


def _kept(keep, line: bytes) -> bool:
    """keep(the line as text), false for a line it cannot read (one a stopped run left
    half-written, bytes that are not UTF-8)."""
    try:
        return keep(line.decode())
    except (ValueError, KeyError, TypeError, IndexError):   # UnicodeDecodeError is a ValueError
        return False


@dataclass
class EpochSoFar:
    """The epoch under way: its batches done and their sums, which a checkpoint written at a
    stop records, so that the run goes on from the next batch as if never stopped."""
    batches: int = 0
    loss_sum: float = 0.0
    top1: float = 0.0
    top5: float = 0.0
    images: int = 0
    seconds: float = 0.0   # the epoch's time before the stop, for epochs.csv


def batches_into(batches, epochs_done) -> str:
    """Where a stop saved a run: "N batches into epoch E"."""
    return f"{counted(batches, 'batch', 'batches')} into epoch {epochs_done + 1}"


class Saved(NamedTuple):
    """Where a stopped run's last.h5 has it: at `step`, `done` of the `batches` of `epoch`
    (from 1); `written` by the stop, or before it; `lost`: the steps taken since, which a
    stop at once (a second Ctrl-C) did not save."""
    step: int
    done: int
    batches: int
    epoch: int
    written: bool
    lost: int


@dataclass
class Evaluation:
    loss: float
    top1: float
    top5: float
    images: int

    def __str__(self):
        return (f"loss {self.loss:.4f}, top-1 error {self.top1:.2%}, top-5 error "
                f"{self.top5:.2%} over {counted(self.images, 'image')}")


def views_name(ten_crop) -> str:
    return "10 views" if ten_crop else "centre crop"


def forward_views(network, views, feature_layers=()):
    """(probs, features): the softmax (classes, n) averaged over the views of a batch (the
    centre crop, or the paper's 10), and the outputs (units, n) of each of `feature_layers`
    averaged likewise; backend arrays."""
    def accumulate(total, value, ops):
        return value if total is None else ops.add(total, value)

    ops = network.output_backend
    feature_ops = [network.layer_backend(name) for name in feature_layers]
    probs, features = None, [None] * len(feature_layers)
    for view in views:
        # the loader's float32 views, for a network of any type (a float64 checkpoint's)
        result = network.forward(view.astype(network.dtype, copy=False), None, train=False)
        probs = accumulate(probs, result.probs, ops)
        features = [accumulate(total, network.outputs[name], layer_ops) for name, total, layer_ops
                    in zip(feature_layers, features, feature_ops)]
    return (ops.scale(probs, 1.0 / len(views)),
            [layer_ops.scale(f, 1.0 / len(views)) for f, layer_ops in zip(features, feature_ops)])


def summed_log_loss(label_probs) -> float:
    """The log-loss of averaged softmax outputs, summed over images: −Σ log p[label], with p
    floored at 1e-30 so that a confident mistake counts large, not infinite."""
    return -float(np.log(np.maximum(label_probs, 1e-30)).sum())


def evaluate(network, data, batch_size, ten_crop, replicas=ALONE) -> Evaluation:
    """Top-1/top-5 error of the softmax averaged over the views (1, or the 10 of the paper),
    each rank evaluating its part of each batch."""
    ops = network.output_backend
    loss_sum, top1, top5, count = 0.0, 0.0, 0.0, 0
    for views, labels in data.eval_batches(batch_size, ten_crop, shard=replicas.shard):
        # on every rank, its part empty or not: a stop asked of any stops all at this batch
        stopping.check_ranks(replicas)
        if len(labels) == 0:
            continue
        probs, _ = forward_views(network, views)
        top1_batch, top5_batch = ops.topk_errors(probs, labels, (1, 5))
        loss_sum += summed_log_loss(ops.to_host(probs)[labels, np.arange(len(labels))])
        top1, top5, count = top1 + top1_batch, top5 + top5_batch, count + len(labels)
    loss_sum, top1, top5, count = replicas.sum([loss_sum, top1, top5, count])
    if count == 0:
        raise ValueError("the validation set is empty")
    return Evaluation(loss_sum / count, top1 / count, top5 / count, int(count))


# What a checkpoint records of how its run trains beside its state, for a resumed run to check
# that it goes on the same way: Trainer.trains_with; older checkpoints record none of it.
TRAINS_WITH = ("batch_size", "momentum", "weight_decay", "ten_crop", "dataset")


def same_run_best(best, last) -> bool:
    """Whether checkpoint record `best` (checkpoint.record's (model, state)) is the best so far
    of the run that wrote `last`: the same model, seed, starting weights, recipe and data,
    with the best validation error that `last` records. A run is a function of these (a
    later epoch's best.h5 records a lower error), so another with the same has the same best."""
    (best_model, best_state), (model, state) = best, last
    if not all(isinstance(each, dict) and isinstance(each.get("schedule"), dict)
               for each in (best_state, state)):   # not a training state this code wrote
        return False
    recipe = ("seed", "started_from", *TRAINS_WITH)
    schedule = ("kind", "initial_weight_lr", "best_error")
    return (best_model == model
            and all(best_state.get(key) == state.get(key) for key in recipe)
            and all(best_state["schedule"].get(key) == state["schedule"].get(key)
                    for key in schedule))


class Trainer:
    def __init__(self, network, data, schedule: Schedule, *, batch_size, momentum, weight_decay,
                 output_dir, print_freq=50, progress=None, ten_crop=False, replicas=ALONE,
                 dataset=None):
        """dataset: what identifies the data trained on (train.dataset_identity), recorded."""
        self.network, self.data, self.schedule, self.dataset = network, data, schedule, dataset
        self.batch_size, self.output_dir = batch_size, output_dir
        self.print_freq, self.progress, self.ten_crop = print_freq, progress, ten_crop
        self.replicas = replicas
        self.writes = replicas.rank == 0   # only rank 0 writes logs and checkpoints
        self.solver = SGD.following(schedule.rates, momentum, weight_decay)
        self.velocity = self.solver.momentum_buffers(network)
        self.epoch, self.step = 0, 0
        self.so_far = EpochSoFar()
        # (step, epochs done, batches of the next done) that the run's last.h5 holds; None
        # before its first checkpoint
        self.checkpoint_at = None
        # when fit's epoch under way began, and its training ended (None: not yet)
        self._epoch_start = self._training_end = None
        self.target_epochs = None   # the epochs the run trains to (fit's), which it records
        self.started_from = None    # the checkpoint whose weights a fine-tuning run started from
        self.trained_with = {}      # a resumed checkpoint's record of TRAINS_WITH

    # -- state -------------------------------------------------------------------------------
    def trains_with(self) -> dict:
        return {"batch_size": self.batch_size, "momentum": self.solver.momentum,
                "weight_decay": self.solver.weight_decay, "ten_crop": self.ten_crop,
                "dataset": self.dataset}

    def state(self) -> dict:
        return {"epoch": self.epoch, "epochs": self.target_epochs, "step": self.step,
                "in_epoch": asdict(self.so_far), "seed": self.network.seed,
                "schedule": self.schedule.state(), "started_from": self.started_from,
                **self.trains_with()}

    def resume(self, path):
        """The state of checkpoint `path`; the logs are left as they are (a run going on from it
        drops their later lines with go_on_from, evaluating it keeps them)."""
        params, velocity, state = checkpoint.load(path, self.network)
        # the fields save() writes; older checkpoints lack started_from (no fine-tuning then),
        # epochs and TRAINS_WITH
        missing = sorted(set(self.state()) - set(state) - {"started_from", "epochs", "in_epoch",
                                                           *TRAINS_WITH})
        if missing:
            raise checkpoint.CheckpointError(f"checkpoint {path}: its training state lacks "
                                             f"{', '.join(missing)}")
        self.network.params = self.network.place(params)
        self.velocity = self.network.place(velocity)
        if state["seed"] != self.network.seed:
            raise checkpoint.CheckpointError(
                f"checkpoint {path}: written with seed {state['seed']}, this run has seed "
                f"{self.network.seed}; pass --seed {state['seed']} to continue it")
        self.epoch, self.step = state["epoch"], state["step"]
        self.so_far = EpochSoFar(**state.get("in_epoch", {}))   # older ones: at an epoch's end
        self.checkpoint_at = (self.step, self.epoch, self.so_far.batches)
        self.schedule = Schedule.from_state(state["schedule"])
        self.started_from = state.get("started_from")
        self.target_epochs = state.get("epochs")
        self.trained_with = {key: state[key] for key in TRAINS_WITH if key in state}
        self.solver.take_rates(self.schedule.rates)

    def start_from_weights(self, path) -> list[str]:
        """Before a new run's first step: the parameters checkpoint `path` shares with this
        model (checkpoint.load_shared) replace their initialization; the keys of those that
        keep it, in the model's order. Momentum, schedule and step stay a new run's."""
        shared = checkpoint.load_shared(path, self.network)
        if not shared:
            raise checkpoint.CheckpointError(f"checkpoint {path}: shares no parameter (tower, "
                                             f"layer, input and shape) with model "
                                             f"{self.network.model.name}")
        self.network.params = {**self.network.params, **self.network.place(shared)}
        self.started_from = os.path.abspath(path)   # meaningful from any folder
        return [spec.key for spec in self.network.specs if spec.key not in shared]

    def check_replicas_agree(self, when):
        """ReplicasDiverged on every rank unless every rank holds the same weights and momentum."""
        if self.replicas.world == 1:
            return
        params, velocity = self.network.to_host(self.network.params), \
            self.network.to_host(self.velocity)
        self.replicas.check_same([params[spec.key] for spec in self.network.specs]
                                 + [velocity[spec.key] for spec in self.network.specs],
                                 f"weights and momentum {when}")

    def go_on_from(self, path, kept=None, epochs=None) -> str | None:
        """Before a resumed run's first step, its folder made to agree with checkpoint `path`
        (None: a run starting again over logs alone): last.h5 becomes a copy of it where it is
        another file (an earlier best.h5, say), so that a run stopped before its next
        checkpoint goes on from there with --resume auto, and is written anew where the run
        now trains to other `epochs` than `path` records (a typed --epochs), which such a run
        goes on to; a folder without best.h5 takes the run's best so far (best_to_take); and
        the logs lose their lines after its step, which the run writes again. Rank 0's to do,
        as it writes them. Returns best_to_take's note, if any.
        kept: kept_log_lines(), read by a caller before it wrote anything (else read here,
        first), so that a log that cannot be read refuses the run before anything changes."""
        if not self.writes:
            return None
        kept = self.kept_log_lines() if kept is None else kept
        last = os.path.join(self.output_dir, checkpoint.LAST)
        note = None
        if path is not None:
            best, note = self.best_to_take(path)   # read before the folder changes
            copies = [(best, os.path.join(self.output_dir, checkpoint.BEST))] if best else []
            retarget = epochs is not None and epochs != self.target_epochs
            if not retarget and not (os.path.exists(last) and os.path.samefile(path, last)):
                copies.insert(0, (path, last))
            made = []   # those new to the folder: a failed copy takes them away again, so
            try:        # that the same command may run again in a folder it began (a full disk)
                for source, target in copies:
                    new = not os.path.lexists(target)
                    checkpoint.copy(source, target)
                    made += [target] if new else []
                if retarget:   # the state resumed from `path`, but the epochs to train to
                    self.target_epochs = epochs
                    checkpoint.save(last, self.network, self.velocity, self.state())
            except BaseException:
                for target in made:
                    os.unlink(target)
                raise
        for name, lines in kept.items():
            log = os.path.join(self.output_dir, name)
            with writing(log), atomic_path(log) as temporary, open(temporary, "wb") as handle:
                handle.writelines(lines)
        return note

    def best_to_take(self, path) -> tuple[str | None, str | None]:
        """(the best.h5 beside checkpoint `path` to copy into the run's folder, or None; a note,
        or None). Where the folder has no best.h5 (a run going on from another folder's
        checkpoint), it takes that best.h5 if it is the best so far of the run `path` belongs to
        (same_run_best; `path` itself, where that is a best.h5); else a note says the folder
        gets best.h5 only from an epoch that beats the error `path` records, and why."""
        if os.path.lexists(os.path.join(self.output_dir, checkpoint.BEST)) or \
                self.schedule.best_error is None:
            return None, None
        source = os.path.join(os.path.dirname(path), checkpoint.BEST)
        if not os.path.exists(source):
            why = f"no {checkpoint.BEST} is beside it"
        else:
            try:
                if same_run_best(checkpoint.record(source), checkpoint.record(path)):
                    return source, None
                why = f"the {checkpoint.BEST} beside it is not this run's best so far"
            except checkpoint.CheckpointError as error:
                why = str(error)
        return None, (f"note: {self.output_dir} gets no {checkpoint.BEST} until an epoch beats "
                      f"the validation top-1 error of {self.schedule.best_error:.2%} that {path} "
                      f"records ({why})")

    def kept_log_lines(self) -> dict:
        """{log's name: its lines to keep} for each log the folder holds: those written up to
        the checkpoint (all but epochs.csv's header before the first), which the run going on
        from it does not write again (go_on_from). A line cut short where a run was stopped is
        dropped. Rank 0's to read, as it writes them: {} elsewhere."""
        if not self.writes:
            return {}
        keeps = {LOG: lambda line: json.loads(line)["step"] <= self.step,
                 EPOCHS_CSV: lambda line: line.startswith("epoch,")
                 or int(line.split(",")[0]) <= self.epoch}
        kept = {}
        for name, keep in keeps.items():
            path = os.path.join(self.output_dir, name)
            if os.path.exists(path):
                with writing(path):   # reading too: a folder or a pipe in the file's place
                    refuse_unless_regular(path)
                    with open(path, "rb") as handle:
                        kept[name] = [line for line in handle
                                      if line.endswith(b"\n") and _kept(keep, line)]
        return kept

    # -- one step, one epoch, the run ---------------------------------------------------------
    def train_step(self, images, labels, part):
        """One SGD step on the global batch, of which this rank holds `part` (images, labels).
        Returns the global batch's (mean loss, top-1 errors, top-5 errors), the errors
        fractional where ties split them (convnet/backend/reference/softmax.py)."""
        replicas = self.replicas
        if part.count:
            result = self.network.forward(images, labels, train=True, step=self.step, part=part)
            share = part.count / part.total
            totals = [result.loss * share, *result.errors]
        else:
            totals = [0.0, 0.0, 0.0]
        # the ranks' requests to stop summed with the figures: every rank learns of them here
        loss, top1, top5, *asked = replicas.sum(totals + stopping.requests())
        if not math.isfinite(loss):   # before a stop, which would save the broken weights
            raise NonFiniteLoss(f"loss became {loss} at step {self.step + 1} (epoch "
                                f"{self.epoch + 1}); {self._checkpoints_kept()}")
        # A stop saves the run before this step changes anything; the run going on from it
        # draws this batch again.
        stopping.check(asked)
        if part.count:
            grads = self.network.backward(gradients_ready=replicas.gradients_ready)
        else:
            grads = self.network.zero_gradients(gradients_ready=replicas.gradients_ready)
        replicas.wait_gradients()
        self.solver.step(self.network, grads, self.velocity)
        self.step += 1
        return float(loss), float(top1), float(top5)

    def _checkpoints_kept(self):
        """What a run stopped by a non-finite loss leaves: each epoch ends in a checkpoint, and
        a stop writes one where it stopped."""
        if self.checkpoint_at is None:
            return "no checkpoint was written before it"
        step, epoch, batches = self.checkpoint_at
        where = f"epoch {epoch}" if not batches else \
            f"step {step} ({batches_into(batches, epoch)})"
        return f"the checkpoint of {where}, {checkpoint.LAST}, is untouched"

    def train_epoch(self):
        """The epoch's batches from the first not done (so_far's), each step recorded in
        so_far; returns the epoch's training figures."""
        so_far = self.so_far
        loss_sum, top1, top5, count = so_far.loss_sum, so_far.top1, so_far.top5, so_far.images
        window_start, window_images = time.perf_counter(), 0
        batches = self.data.train_batches(self.epoch, self.batch_size,
                                          self.schedule.rates.colour_noise, self.replicas.shard,
                                          start=so_far.batches)
        bar = None
        if self.progress is not None and self.writes:
            batches = bar = self.progress(batches, f"epoch {self.epoch + 1}", so_far.batches)
        batches = iter(batches)
        epoch_start, epoch_wait, window_wait = time.perf_counter(), 0.0, 0.0
        with self._log(LOG) as log:
            while True:
                wait_start = time.perf_counter()   # the trainer idles until the loader delivers
                batch = next(batches, None)
                waited = time.perf_counter() - wait_start
                if batch is None:
                    break
                epoch_wait, window_wait = epoch_wait + waited, window_wait + waited
                images, labels, part = batch
                loss, errors1, errors5 = self.train_step(images, labels, part)
                n = part.total
                loss_sum += loss * n
                top1, top5, count = top1 + errors1, top5 + errors5, count + n
                window_images += n
                if bar is not None:
                    elapsed = time.perf_counter() - epoch_start   # this process's part
                    bar.set_postfix_str(f"{(count - so_far.images) / elapsed:.0f} images/s, "
                                        f"waiting for data {epoch_wait / elapsed:.0%}, loss "
                                        f"{loss:.3f}", refresh=False)
                if self.step % self.print_freq == 0:
                    elapsed = time.perf_counter() - window_start
                    log.write(json.dumps({
                        "epoch": self.epoch + 1, "step": self.step, "loss": loss,
                        "top1": errors1 / n, "top5": errors5 / n,
                        "weight_lr": self.solver.weight_lr,
                        "images_per_second": window_images / elapsed,
                        "data_wait_fraction": window_wait / elapsed}) + "\n")
                    log.flush()
                    window_start, window_images, window_wait = time.perf_counter(), 0, 0.0
                self.so_far = EpochSoFar(self.so_far.batches + 1, loss_sum, top1, top5, count,
                                         self.so_far.seconds)
        return Evaluation(loss_sum / count, top1 / count, top5 / count, count)

    def _log(self, name):
        """The output folder's file `name` for appending, on rank 0; elsewhere a sink."""
        path = os.path.join(self.output_dir, name)
        return _Appending(path if self.writes else os.devnull, path)

    def fit(self, epochs):
        """Train until `epochs` epochs are done; returns the last epoch's validation result.
        Rank 0 makes the output folder where it is missing (the training command has made
        and locked it already): evaluating writes nothing."""
        if self.writes:
            os.makedirs(self.output_dir, exist_ok=True)
        self.target_epochs = epochs
        try:
            return self._epochs(epochs)
        except stopping.Stopped as stop:
            stop.saved = self.save_stopped()
            raise

    def save_stopped(self):
        """At a stop in a step or an evaluation, the same on every rank: last.h5 written at this
        step by rank 0, where it is past the run's last checkpoint, the other ranks waiting for
        it. Returns saved()'s Saved, or None where the run has no checkpoint (a new run
        stopped before its first step)."""
        if self.step == (self.checkpoint_at or (0,))[0]:
            # nothing new since last.h5: a resumed run (its folder rewound to the checkpoint it
            # goes on from, perhaps), an epoch's end, or no checkpoint and no step
            return self.saved()
        # A stop in the validation after an epoch's last update comes before its loss shows
        # what that update did: weights it broke must not replace the last checkpoint.
        if not all(np.isfinite(array).all()
                   for array in self.network.to_host(self.network.params).values()):
            raise NonFiniteLoss(f"the weights of step {self.step} (epoch {self.epoch + 1}) are "
                                f"not finite, so the stop did not save them; "
                                f"{self._checkpoints_kept()}")
        # the epoch's training time: a validation stopped is done again in full
        self.so_far.seconds += (self._training_end or time.perf_counter()) - self._epoch_start
        if self.writes:
            checkpoint.save(os.path.join(self.output_dir, checkpoint.LAST), self.network,
                            self.velocity, self.state())
        # A barrier: a launcher may end every rank as the first leaves, which must not be before
        # the save.
        self.replicas.sum([0.0])
        self.checkpoint_at = (self.step, self.epoch, self.so_far.batches)
        return self.saved(written=True)

    def saved(self, written=False):
        """Where the run's last.h5 has it (Saved), for a stop's line; None before its first
        checkpoint."""
        if self.checkpoint_at is None:
            return None
        step, epochs_done, done = self.checkpoint_at
        batches = -(-len(self.data.labels("train")) // self.batch_size)
        return Saved(step, done, batches, epochs_done + 1, written, lost=self.step - step)

    def _epochs(self, epochs):
        validation = None
        while self.epoch < epochs:
            start = self._epoch_start = time.perf_counter()
            self._training_end = None
            training = self.train_epoch()
            self._training_end = time.perf_counter()
            validation = evaluate(self.network, self.data, self.batch_size, self.ten_crop,
                                  self.replicas)
            if not math.isfinite(validation.loss):   # the last step's update broke the weights
                raise NonFiniteLoss(f"validation loss became {validation.loss} after step "
                                    f"{self.step} (epoch {self.epoch + 1}); "
                                    f"{self._checkpoints_kept()}")
            row = {"epoch": self.epoch + 1, "train_loss": training.loss,
                   "train_top1": training.top1, "train_top5": training.top5,
                   "val_loss": validation.loss, "val_top1": validation.top1,
                   "val_top5": validation.top5, "weight_lr": self.solver.weight_lr,
                   "bias_lr": self.solver.weight_lr * self.solver.bias_lr_multiplier,
                   "seconds": round(self.so_far.seconds + time.perf_counter() - start, 3)}
            with self._log(EPOCHS_CSV) as handle:
                writer = csv.DictWriter(handle, EPOCH_FIELDS, lineterminator="\n")
                # no header yet: a new file, or an empty one (a header cut short, which a resume
                # drops; a disk that filled at the first write)
                if handle.empty():
                    writer.writeheader()
                writer.writerow(row)
            improved = self.schedule.improves(validation.top1)   # best.h5's test
            self.schedule.epoch_finished(self.epoch, validation.top1)
            self.solver.take_rates(self.schedule.rates)
            self.epoch += 1
            self.so_far = EpochSoFar()
            self.check_replicas_agree(f"after epoch {self.epoch}")
            if self.writes:
                # An improving epoch's checkpoint is built once, as best.h5, and last.h5 is its
                # copy: a run stopped between the two goes on from the last.h5 before, repeats
                # the epoch and writes best.h5 again.
                best, last = (os.path.join(self.output_dir, name)
                              for name in (checkpoint.BEST, checkpoint.LAST))
                checkpoint.save(best if improved else last, self.network, self.velocity,
                                self.state())
                if improved:
                    checkpoint.copy(best, last)
            self.checkpoint_at = (self.step, self.epoch, 0)
            # Told once kept: a standard output that fails here stops the run, not the epoch.
            print(f"epoch {self.epoch}/{epochs}: train loss {training.loss:.4f}, top-1 "
                  f"error {training.top1:.2%}; validation {validation}; "
                  f"{row['seconds']:.0f} s", flush=True)
        return validation
