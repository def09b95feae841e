"""The training loop: epochs of SGD steps, evaluation, the schedule, logs and checkpoints.

It drives a Network through any data source that provides
  train_batches(epoch, batch_size, colour_noise) → iterable of (images (C,H,W,N), labels (N,))
  eval_batches(batch_size, ten_crop) → iterable of (views, labels), views a list of image batches
and whose batches are a pure function of (its seed, epoch, batch index). Dropout masks are a pure
function of (seed, step). So everything a run does follows from its seed and its step counter,
both saved in each checkpoint, and a resumed run repeats an uninterrupted one exactly.

Files in the output folder:
  log.jsonl     one JSON object per print step (epoch, step, loss, top-1/top-5 error, rates, images/s)
  epochs.csv    one row per epoch: train and validation loss, top-1, top-5, learning rate, seconds
  last.h5       the checkpoint after the latest epoch; best.h5 the one with the lowest validation
                top-1 error so far (both written atomically, see convnet.checkpoint)
"""
import csv
import json
import math
import os
import time
from dataclasses import dataclass

import numpy as np

from convnet import checkpoint
from convnet.schedule import Schedule
from convnet.solver import SGD

EPOCH_FIELDS = ("epoch", "train_loss", "train_top1", "train_top5", "val_loss", "val_top1",
                "val_top5", "weight_lr", "bias_lr", "seconds")


class NonFiniteLoss(RuntimeError):
    pass


@dataclass
class Evaluation:
    loss: float
    top1: float
    top5: float
    images: int


def forward_views(network, views, feature_layers=()):
    """(probs, features): the softmax (classes, n) averaged over the views of a batch (the
    centre crop, or the paper's 10), and the outputs (units, n) of each of `feature_layers`
    averaged likewise; backend arrays."""
    ops = network.ops
    probs, features = None, [None] * len(feature_layers)
    for view in views:
        result = network.forward(view, None, train=False)
        probs = result.probs if probs is None else probs + result.probs
        features = [network.outputs[name] if total is None else total + network.outputs[name]
                    for name, total in zip(feature_layers, features)]
    return ops.scale(probs, 1.0 / len(views)), [ops.scale(f, 1.0 / len(views)) for f in features]


def evaluate(network, data, batch_size, ten_crop) -> Evaluation:
    """Top-1/top-5 error of the softmax averaged over the views (1, or the 10 of the paper)."""
    ops = network.ops
    loss_sum, top1, top5, count = 0.0, 0, 0, 0
    for views, labels in data.eval_batches(batch_size, ten_crop):
        probs, _ = forward_views(network, views)
        top1_batch, top5_batch = ops.topk_errors(probs, labels, (1, 5))
        label_probs = ops.to_host(probs)[labels, np.arange(len(labels))]
        loss_sum -= float(np.log(np.maximum(label_probs, 1e-30)).sum())
        top1, top5, count = top1 + top1_batch, top5 + top5_batch, count + len(labels)
    if count == 0:
        raise ValueError("the validation set is empty")
    return Evaluation(loss_sum / count, top1 / count, top5 / count, count)


class Trainer:
    def __init__(self, network, data, schedule: Schedule, *, batch_size, momentum, weight_decay,
                 output_dir, print_freq=50, progress=None, ten_crop=False):
        self.network, self.data, self.schedule = network, data, schedule
        self.batch_size, self.output_dir = batch_size, output_dir
        self.print_freq, self.progress, self.ten_crop = print_freq, progress, ten_crop
        rates = schedule.rates
        self.solver = SGD(rates.weight_lr, rates.bias_lr / rates.weight_lr, momentum,
                          weight_decay, dict(rates.layer_lr_scale))
        self.velocity = self.solver.momentum_buffers(network)
        self.epoch, self.step, self.best_error = 0, 0, None
        os.makedirs(output_dir, exist_ok=True)

    # -- state -------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "best_error": self.best_error,
                "seed": self.network.seed, "schedule": self.schedule.state()}

    def resume(self, path):
        params, velocity, state = checkpoint.load(path, self.network)
        for key, value in params.items():
            self.network.params[key][...] = value
            self.velocity[key][...] = velocity[key]
        if state["seed"] != self.network.seed:
            raise checkpoint.CheckpointError(
                f"checkpoint {path}: written with seed {state['seed']}, this run has seed "
                f"{self.network.seed}; pass --seed {state['seed']} to continue it")
        self.epoch, self.step, self.best_error = state["epoch"], state["step"], state["best_error"]
        self.schedule = Schedule.from_state(state["schedule"])
        self._apply_rates()
        self._truncate_logs()

    def _truncate_logs(self):
        """Drop log lines written after the checkpoint: the resumed run writes them again."""
        self._keep_lines("log.jsonl", lambda line: json.loads(line)["step"] <= self.step)
        self._keep_lines("epochs.csv", lambda line: line.startswith("epoch,")
                         or int(line.split(",")[0]) <= self.epoch)

    def _keep_lines(self, name, keep):
        path = os.path.join(self.output_dir, name)
        if os.path.exists(path):
            with open(path) as handle:
                lines = [line for line in handle if keep(line)]
            with open(path, "w") as handle:
                handle.writelines(lines)

    def _apply_rates(self):
        rates = self.schedule.rates
        self.solver.weight_lr = rates.weight_lr
        self.solver.bias_lr_multiplier = rates.bias_lr / rates.weight_lr
        self.solver.layer_lr_scale = dict(rates.layer_lr_scale)

    # -- one step, one epoch, the run ---------------------------------------------------------
    def train_step(self, images, labels):
        result = self.network.forward(images, labels, train=True, step=self.step)
        if not math.isfinite(result.loss):
            raise NonFiniteLoss(f"loss became {result.loss} at step {self.step} (epoch "
                                f"{self.epoch + 1}); the last good checkpoint is untouched")
        self.solver.step(self.network, self.network.backward(), self.velocity)
        self.step += 1
        return result

    def train_epoch(self):
        loss_sum, top1, top5, count = 0.0, 0, 0, 0
        window_start, window_images = time.perf_counter(), 0
        batches = self.data.train_batches(self.epoch, self.batch_size,
                                          self.schedule.rates.colour_noise)
        if self.progress is not None:
            batches = self.progress(batches, f"epoch {self.epoch + 1}")
        with open(os.path.join(self.output_dir, "log.jsonl"), "a") as log:
            for images, labels in batches:
                result = self.train_step(images, labels)
                n = len(labels)
                loss_sum += result.loss * n
                top1, top5, count = top1 + result.errors[0], top5 + result.errors[1], count + n
                window_images += n
                if self.step % self.print_freq == 0:
                    elapsed = time.perf_counter() - window_start
                    log.write(json.dumps({
                        "epoch": self.epoch + 1, "step": self.step, "loss": result.loss,
                        "top1": result.errors[0] / n, "top5": result.errors[1] / n,
                        "weight_lr": self.solver.weight_lr,
                        "images_per_second": window_images / elapsed}) + "\n")
                    log.flush()
                    window_start, window_images = time.perf_counter(), 0
        return Evaluation(loss_sum / count, top1 / count, top5 / count, count)

    def fit(self, epochs):
        """Train until `epochs` epochs are done; returns the last epoch's validation result."""
        validation = None
        csv_path = os.path.join(self.output_dir, "epochs.csv")
        while self.epoch < epochs:
            start = time.perf_counter()
            training = self.train_epoch()
            validation = evaluate(self.network, self.data, self.batch_size, self.ten_crop)
            row = {"epoch": self.epoch + 1, "train_loss": training.loss,
                   "train_top1": training.top1, "train_top5": training.top5,
                   "val_loss": validation.loss, "val_top1": validation.top1,
                   "val_top5": validation.top5, "weight_lr": self.solver.weight_lr,
                   "bias_lr": self.solver.weight_lr * self.solver.bias_lr_multiplier,
                   "seconds": round(time.perf_counter() - start, 3)}
            new_file = not os.path.exists(csv_path)
            with open(csv_path, "a", newline="") as handle:
                writer = csv.DictWriter(handle, EPOCH_FIELDS)
                if new_file:
                    writer.writeheader()
                writer.writerow(row)
            self.schedule.epoch_finished(self.epoch, validation.top1)
            self._apply_rates()
            self.epoch += 1
            improved = self.best_error is None or validation.top1 < self.best_error
            if improved:
                self.best_error = validation.top1
            checkpoint.save(os.path.join(self.output_dir, "last.h5"), self.network,
                            self.velocity, self.state())
            if improved:
                checkpoint.save(os.path.join(self.output_dir, "best.h5"), self.network,
                                self.velocity, self.state())
        return validation
