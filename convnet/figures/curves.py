"""Training curves of one or more runs, from the logs the trainer writes (convnet.trainer):

  loss, top-1 error, top-5 error   per epoch from epochs.csv: train (dashed, the average over
                                   the epoch's steps, dropout on) and validation (solid, the
                                   evaluation views), plotted at the epoch's end
  training loss per logged step    from log.jsonl (one point per --print-freq steps)
Each run has one colour; a change of the weight learning rate (epochs.csv's weight_lr, the rate
an epoch trained with) is a dotted vertical line at the epoch boundary where it took effect,
labelled with the new rate.
"""
import csv
import json
import os

import numpy as np
from matplotlib.ticker import MaxNLocator, PercentFormatter

from convnet import options
from convnet.figures import (add_labels_flag, add_output_flag, check_labels, legend,
                             new_figure, output_path, run_folder, run_labels, save)
from convnet.errors import open_regular
from convnet.inference import DEFAULT_RUN
from convnet.train import UsageError
from convnet.trainer import EPOCH_FIELDS, EPOCHS_CSV, LOG

HELP = "training curves: loss, top-1 and top-5 error against epochs, for one or more runs"
INFERENCE = False           # reads the logs only
PANELS = (("loss", "loss"), ("top1", "top-1 error"), ("top5", "top-5 error"))


def add_arguments(p):
    p.add_argument("runs", nargs="*", default=[DEFAULT_RUN], metavar="RUN",
                   type=options.named_path,
                   help=f"run folders (the training command's --output-dir) holding "
                        f"{EPOCHS_CSV} and {LOG} (default: {DEFAULT_RUN})")
    add_labels_flag(p)
    add_output_flag(p, "curves", beside="the first run's files")


def check(p, args):
    check_labels(p, args)


def read_epochs(folder):
    """{field: array over epochs} of a run's epochs.csv (EPOCH_FIELDS): the one in `folder`,
    or the file `folder` names (a name ending in epochs.csv)."""
    if not os.path.exists(folder):
        raise UsageError(f"run {folder}: no such "
                         f"{'file' if str(folder).endswith(EPOCHS_CSV) else 'folder'}")
    path = os.path.join(folder, EPOCHS_CSV) if os.path.isdir(folder) else folder
    try:
        with open_regular(path, newline="") as handle:
            rows = list(csv.DictReader(finished_lines(handle.readlines())))
    except OSError as error:
        raise UsageError(f"run {folder}: cannot read {os.path.basename(path)} "
                         f"({error.strerror})") from None
    except UnicodeDecodeError:
        raise UsageError(f"run {path}: not the trainer's epochs.csv (bytes that are not "
                         f"UTF-8 text)") from None
    if not rows:
        raise UsageError(f"run {folder}: {os.path.basename(path)} has no finished epoch yet")
    try:
        epochs = {field: np.array([float(row[field]) for row in rows]) for field in EPOCH_FIELDS}
    except (KeyError, TypeError, ValueError):
        raise UsageError(f"run {path}: not the trainer's epochs.csv (columns "
                         f"{', '.join(EPOCH_FIELDS)})") from None
    check_values(path, epochs, "row")
    return epochs


def finished_lines(lines):
    """`lines` (text or bytes) but a last one without its newline: a run stopped mid-line left
    it, and the trainer drops it too when the run goes on (convnet.trainer's kept_log_lines)."""
    if lines and not lines[-1].endswith(b"\n" if isinstance(lines[-1], bytes) else "\n"):
        return lines[:-1]
    return lines


COUNTS = ("epoch", "step")   # the logs' fields that count: whole numbers from 1
# The largest count taken: float64, as the logs are read, holds every whole number up to it.
MAX_COUNT = 2 ** 53


def value_range(field):
    """(what the trainer writes in `field` of its logs, a test of an array's values for it)."""
    if field in COUNTS:
        return (f"a whole number from 1 to {MAX_COUNT}",
                lambda values: (values >= 1) & (values <= MAX_COUNT)
                & (values == np.floor(values)))
    if field.endswith(("top1", "top5")):
        return "an error rate from 0 to 1", lambda values: (values >= 0) & (values <= 1)
    return "a finite number of 0 or more", lambda values: (values >= 0) & np.isfinite(values)


def check_values(path, columns, place):
    """A UsageError naming the first `place` (row, line) of a field that holds a value the
    trainer never writes (value_range: a NaN, an infinity, an error rate past 1, step 0): the
    file is damaged."""
    for field, values in columns.items():
        meaning, holds = value_range(field)
        damaged = np.flatnonzero(~holds(values))
        if damaged.size:
            raise UsageError(f"run {path}: {place} {damaged[0] + 1} holds {field} "
                             f"{values[damaged[0]]}, not {meaning} (a damaged file)")


def read_log(folder, fields):
    """[array over log lines] of each field named in `fields` (epoch and step as int64, the
    others float64), from a run's log.jsonl."""
    path = os.path.join(folder, LOG)
    try:
        with open_regular(path, "rb") as handle:   # a line not UTF-8 is one that is not an entry
            lines = finished_lines(handle.readlines())
    except OSError as error:
        raise UsageError(f"run {folder}: cannot read {LOG} ({error.strerror})") from None
    columns = {field: [] for field in fields}
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
            for field, column in columns.items():
                column.append(float(entry[field]))
        except (ValueError, KeyError, TypeError, OverflowError):   # an int past any float
            raise UsageError(f"run {path}: line {number} is not a log entry") from None
    arrays = {field: np.array(column) for field, column in columns.items()}
    check_values(path, arrays, "line")
    return [arrays[field].astype(np.int64) if field in COUNTS else arrays[field]
            for field in fields]


def read_steps(folder):
    """(steps, losses) of a run's log.jsonl; empty where there is none."""
    if not os.path.exists(os.path.join(folder, LOG)):
        return np.zeros(0), np.zeros(0)
    return tuple(read_log(folder, ("step", "loss")))


def rate_changes(epochs):
    """[(epoch boundary, new weight rate)] where the rate differs from the epoch before."""
    rates, numbers = epochs["weight_lr"], epochs["epoch"]
    return [(numbers[i - 1], rates[i]) for i in range(1, len(rates)) if rates[i] != rates[i - 1]]


def draw(runs, labels):
    """runs: [(epochs, (steps, losses))]; one colour per run."""
    figure = new_figure(12, 8)
    axes = figure.subplots(2, 2).ravel()
    figure.subplots_adjust(left=0.07, right=0.98, top=0.95, bottom=0.07, hspace=0.3, wspace=0.2)
    colours = [f"C{i % 10}" for i in range(len(runs))]
    for (epochs, (steps, losses)), label, colour in zip(runs, labels, colours):
        for ax, (field, title) in zip(axes, PANELS):
            ax.plot(epochs["epoch"], epochs[f"train_{field}"], "--o", color=colour, ms=3,
                    label=f"{label} train")
            ax.plot(epochs["epoch"], epochs[f"val_{field}"], "-o", color=colour, ms=3,
                    label=f"{label} val")
            for boundary, rate in rate_changes(epochs):
                ax.axvline(boundary, color=colour, ls=":", lw=1)
                ax.annotate(f"lr {rate:g}", (boundary, 1), xycoords=("data", "axes fraction"),
                            xytext=(3, -12), textcoords="offset points", fontsize=8,
                            color=colour)
            ax.set_title(title)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(steps):
            axes[3].plot(steps, losses, color=colour, lw=1, label=label)
    for ax in axes[1:3]:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))   # decimals as the ticks need
    legend(axes[0])
    axes[3].set_title(f"training loss per logged step ({LOG})")
    axes[3].set_xlabel("step")
    if axes[3].lines:
        legend(axes[3])
    return figure


def run(args):
    runs = [(read_epochs(run), read_steps(run_folder(run))) for run in args.runs]
    labels = run_labels(args)
    path = output_path(args, run_folder(args.runs[0]), "curves")
    size = save(draw(runs, labels), path)
    lengths = sorted({len(epochs["epoch"]) for epochs, _ in runs})
    epochs = f"{lengths[0]}" if len(lengths) == 1 else f"{lengths[0]} to {lengths[-1]}"
    return path, size, f"{len(runs)} run(s) of {epochs} epochs", 0
