"""The paper's figures, drawn from any checkpoint the training command writes, and its curves:

    python -m convnet.figures filters       Figure 3: the learned conv1 kernels, tower a above b
    python -m convnet.figures predictions   Figure 4, left: images with their top-5 labels
    python -m convnet.figures neighbours    Figure 4, right: the training images nearest in fc7
    python -m convnet.figures curves        loss and top-1/top-5 error against epochs, per run
    python -m convnet.figures training-error
                                            Figure 1: training error against epochs, per run,
                                            and when each reaches a threshold

Each writes one PNG, atomically, by default into the run's folder (RUN/figures/NAME.png), and
takes the training command's flags where they apply (--data-path, -b, --ten-crop, --gpus).
This module holds what the figures share: flags, image selection, and PNG output.
"""
import os

import numpy as np
from matplotlib.figure import Figure

from convnet import options
from convnet.atomic import atomic_path, check_writable
from convnet.errors import SHOWN_ESCAPE, shown
from convnet.inference import checkpoint_file
from convnet.train import UsageError
from convnet.trainer import EPOCHS_CSV, LOG

DPI = 100
FIGURES = "figures"   # the folder, beside the checkpoint, that the figures go to by default
# The most pixels a figure may have: matplotlib's canvas holds 4 bytes a pixel, so this is a
# 1 GiB canvas. A figure of more images than fit is refused before any work, not drawn into more
# memory than the machine has.
MAX_PIXELS = 1 << 28


def add_output_flag(p, name, beside="the checkpoint"):
    p.add_argument("-o", "--output", metavar="FILE",
                   help=f"the PNG to write (default: {FIGURES}/{name}.png beside {beside})")


def add_labels_flag(p):
    p.add_argument("--labels", nargs="+", metavar="LABEL",
                   help="a legend label per run (default: the folders' names)")


def check_labels(p, args):
    if args.labels and len(args.labels) != len(args.runs):
        p.error(f"--labels: {len(args.labels)} labels for {len(args.runs)} runs")


def run_folder(run):
    """The folder a RUN argument stands for: itself, or the folder of the file it names (curves
    reads an epochs.csv given itself)."""
    return os.path.dirname(os.path.abspath(run)) if os.path.isfile(run) else run


def run_labels(args):
    """--labels, or the runs' names, as text matplotlib can draw (bytes that are not UTF-8,
    which Python reads as surrogates, as \\xNN escapes): a folder's name, a file's, or for a
    file named as the trainer names its log, its folder's."""
    def name(run):
        base = os.path.basename(os.path.abspath(run))
        return os.path.basename(run_folder(run)) if base in (EPOCHS_CSV, LOG) else base
    return [shown(label) for label in args.labels or [name(run) for run in args.runs]]


def file_title(path):
    """An image file's title: its name, printable and drawable whatever its bytes."""
    return shown(os.path.basename(path))


def output_path(args, folder, name):
    """-o (checked as the command line was read), or FIGURES/<name>.png in `folder`, checked
    here: each figure asks for its path before the work that draws it."""
    if args.output:
        return args.output
    path = os.path.join(folder, FIGURES, f"{name}.png")
    try:
        check_writable(path, "the figure")
    except ValueError as error:
        raise UsageError(f"{error} (-o names another place)") from None
    given = options.replaced_input(args, path)
    if given is not None:
        raise UsageError(f"the figure {path}: the same file as the input {given}, which the "
                         f"figure would replace (-o names another place)")
    return path


def checkpoint_output(args, name):
    """--output, or FIGURES/<name>.png in the folder of the checkpoint."""
    return output_path(args, os.path.dirname(os.path.abspath(checkpoint_file(args.checkpoint))),
                       name)


def add_selection_flags(p, count):
    p.add_argument("images", nargs="*", metavar="IMAGE", type=options.named_path,
                   help="JPEG/PNG files; without them, images of the dataset's --split")
    p.add_argument("--split", choices=("val", "train"), default="val",
                   help="the split to take images from when no files are given (default val)")
    p.add_argument("--indices", type=int, nargs="+", metavar="I",
                   help="those images of --split (default: --count of them drawn at random)")
    p.add_argument("--count", type=int, default=count,
                   help=f"images drawn from --split (default {count})")
    p.add_argument("--seed", type=int, default=0,
                   help="decides which images are drawn (default 0)")


def check_selection(p, args):
    if args.count < 1:
        p.error(f"--count must be at least 1; got {args.count}")
    if args.seed < 0:   # NumPy's generators take seeds of 0 and above
        p.error(f"--seed must be 0 or more; got {args.seed}")
    if args.images and args.indices:
        p.error("give image files or --indices, not both")


def split_candidates(inference, args):
    """The --split images to consider, in order: --indices, or the whole split in an order
    drawn from --seed (callers take what they need from the front)."""
    if args.indices:
        inference.check_indices(args.split, args.indices)
        return np.asarray(args.indices)
    count = len(inference.loader.labels(args.split))
    return np.random.default_rng(args.seed).permutation(count)


def selection_count(inference, args):
    """How many images --count, --indices or the files select (the split's images where
    --count asks for more), for a figure to check its size by before any work; a UsageError
    where --count draws from a split of none."""
    if args.images:
        return len(args.images)
    if args.indices:
        return len(args.indices)
    available = len(inference.loader.labels(args.split))
    if not available:
        raise UsageError(f"the {args.split} split holds no images")
    return min(args.count, available)


def check_figure_size(width, height, fewer):
    """A figure of width × height inches has at most MAX_PIXELS pixels: else a UsageError that
    says what to ask `fewer` of."""
    columns, rows = round(width * DPI), round(height * DPI)
    if columns * rows > MAX_PIXELS:
        raise UsageError(f"the figure would be {columns}×{rows} pixels, more than the "
                         f"{MAX_PIXELS:,} a figure may have: ask for fewer {fewer}")


def new_figure(width, height):
    """A matplotlib Figure of width × height inches at DPI (no pyplot: no global state)."""
    return Figure(figsize=(width, height), dpi=DPI)


def save(figure, path):
    """Write `figure` as PNG, atomically; returns its (width, height) in pixels."""
    with atomic_path(path, ".png") as temporary:
        figure.savefig(temporary, format="png", dpi=DPI)
    width, height = figure.get_size_inches() * DPI
    return round(width), round(height)


def show_image(ax, image, title=None, colour="black"):
    """An image (S, S, 3) uint8 on `ax`, without axes; small images keep their pixels."""
    ax.imshow(image, interpolation="nearest" if image.shape[0] < 128 else "antialiased")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:   # a file's name or a class's, drawn as given: a `$` in it is no mathtext
        ax.set_title(title, fontsize=8, color=colour, parse_math=False)


def legend(ax):
    """ax's legend of its lines' labels (runs' names, --labels) drawn as given: a `$` in one is
    no mathtext, which an unmatched one would fail to parse."""
    for text in ax.legend(fontsize=8).get_texts():
        text.set_parse_math(False)


def short_name(name, limit=22):
    """A class name (shown) for a label: ImageNet's first synonym, cut to `limit` characters,
    before an escape shown() wrote (\\x1b) rather than inside it."""
    first = name.split(",")[0]
    if len(first) <= limit:
        return first
    cut = limit - 1
    for escape in SHOWN_ESCAPE.finditer(first):
        if escape.start() < cut < escape.end():
            cut = escape.start()
    return first[:cut] + "…"

