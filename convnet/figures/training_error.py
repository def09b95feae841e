"""Figure 1: training error against epochs for one or more runs, and where each first falls to
a threshold (the paper's: a four-layer net with ReLUs reached 25% training error on CIFAR-10 six
times faster than the same net with tanh units).

A step's training error is its batch's top-1 error as log.jsonl records it (dropout on, the
augmented images), so the curve is the mean over the last --window steps; a run reaches the
threshold at the first step where that mean is at or below it. The runs must log every step
(--print-freq 1) and have finished their first epoch, whose steps give the epoch's length.
Prints a line per run (its rate, the step and epoch it reached the threshold, or its lowest
mean) and, for two or more runs, how many times the first run's epochs each other run took.
"""
import math

import numpy as np
from matplotlib.ticker import PercentFormatter

from convnet import options
from convnet.figures import (add_labels_flag, add_output_flag, check_labels, legend,
                             new_figure, output_path, run_folder, run_labels, save)
from convnet.figures.curves import read_epochs, read_log
from convnet.train import UsageError
from convnet.trainer import LOG

HELP = "Figure 1: training error against epochs per run, and when each reaches a threshold"
INFERENCE = False           # reads the logs only
DEFAULT_THRESHOLD, DEFAULT_WINDOW = 0.25, 50


def add_arguments(p):
    p.add_argument("runs", nargs="+", metavar="RUN", type=options.named_path,
                   help=f"run folders (the training command's --output-dir) whose {LOG} "
                        f"logs every step (--print-freq 1); the first is the others' yardstick")
    add_labels_flag(p)
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"the training error to reach (default {DEFAULT_THRESHOLD})")
    p.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                   help=f"steps the training error is averaged over (default {DEFAULT_WINDOW})")
    add_output_flag(p, "training-error", beside="the first run's files")


def check(p, args):
    check_labels(p, args)
    if not 0 < args.threshold < 1:
        p.error(f"--threshold must lie between 0 and 1; got {args.threshold}")
    if args.window < 1:
        p.error(f"--window must be at least 1; got {args.window}")


def read_run(folder):
    """(the steps' positions in epochs, their top-1 errors, the weight rate of the first step)
    from a run's log.jsonl, every step from 1 on."""
    steps, epochs, errors, rates = read_log(folder, ("step", "epoch", "top1", "weight_lr"))
    if len(steps) == 0 or not np.array_equal(steps, np.arange(1, len(steps) + 1)):
        raise UsageError(f"run {folder}: {LOG} does not log every step from step 1 "
                         f"(train with --print-freq 1)")
    per_epoch = int(np.count_nonzero(epochs == 1))
    if per_epoch == 0 or (per_epoch == len(epochs) and not _finished_an_epoch(folder)):
        raise UsageError(f"run {folder}: has not finished its first epoch, whose steps give an "
                         f"epoch's length")
    return steps / per_epoch, errors, rates[0]


def _finished_an_epoch(folder):
    try:
        return len(read_epochs(folder)["epoch"]) > 0
    except UsageError:   # no epochs.csv, or no row in it yet
        return False


def running_mean(values, window):
    """Mean of the last `window` values at each position (fewer at the start)."""
    window = min(window, len(values))   # a window past them all (past int64, too): all so far
    sums = np.cumsum(np.concatenate([[0.0], values]))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def first_reached(curve, threshold):
    """Index of the first value at or below `threshold`, or None."""
    below = np.flatnonzero(curve <= threshold)
    return int(below[0]) if len(below) else None


def percent(threshold):
    """The threshold as a percentage, as given: 0.005 is 0.5%, not 0% (nor 0.8125 81%)."""
    return f"{100 * threshold:g}%"


def report_lines(labels, runs, curves, threshold):
    """A line per run: its rate and where it reached the threshold (or its lowest mean), then
    the epochs each other run took as a multiple of the first's (where it did not get there,
    its epochs so far: a lower bound)."""
    reached = [first_reached(curve, threshold) for curve in curves]
    width = max(map(len, labels))
    lines = []
    for label, (epochs, _, rate), curve, index in zip(labels, runs, curves, reached):
        where = (f"reached {percent(threshold)} at step {index + 1} (epoch {epochs[index]:.2f})"
                 if index is not None else
                 f"not reached in {len(curve)} steps ({epochs[-1]:.2f} epochs); lowest "
                 f"{curve.min():.2%}")
        lines.append(f"{label:<{width}}  rate {rate:g}  {where}")
    if len(runs) > 1 and reached[0] is None:
        lines.append(f"{labels[0]} did not reach {percent(threshold)}: no ratios")
    elif len(runs) > 1:
        first = runs[0][0][reached[0]]
        for label, (epochs, _, _), index in zip(labels[1:], runs[1:], reached[1:]):
            # a lower bound rounded down, so that it stays one
            ratio = f"{epochs[index] / first:.1f}×" if index is not None else \
                f"more than {math.floor(epochs[-1] / first * 10) / 10:.1f}×"
            lines.append(f"{label} took {ratio} the epochs of {labels[0]}")
    return lines


def draw(labels, runs, curves, threshold, window):
    figure = new_figure(7, 5)
    ax = figure.add_subplot()
    for number, (label, (epochs, _, _), curve) in enumerate(zip(labels, runs, curves)):
        ax.plot(epochs, curve, "-" if number == 0 else "--", lw=1.2, label=label)
    ax.axhline(threshold, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("epochs")
    ax.set_ylabel(f"training error rate (mean of the last {window} batches)")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    highest = max(float(curve.max()) for curve in curves)
    ax.set_ylim(0, min(1.0, highest * 1.05) if highest > 0 else 1.0)   # all 0: no empty range
    ax.set_xlim(0, max(float(epochs[-1]) for epochs, _, _ in runs))
    legend(ax)
    figure.tight_layout()
    return figure


def run(args):
    runs = [read_run(run_folder(run)) for run in args.runs]   # a folder, or its log.jsonl
    path = output_path(args, run_folder(args.runs[0]), "training-error")
    labels = run_labels(args)
    curves = [running_mean(errors, args.window) for _, errors, _ in runs]
    size = save(draw(labels, runs, curves, args.threshold, args.window), path)
    # Printed once the figure is saved: a standard output that fails loses no figure.
    for line in report_lines(labels, runs, curves, args.threshold):
        print(line)
    return path, size, f"{len(runs)} run(s), threshold {percent(args.threshold)}", 0
