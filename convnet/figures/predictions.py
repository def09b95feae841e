"""Figure 4, left: images with their five most probable labels as bars, the true label's bar in
red when the true label is known (images of a dataset split) and among the five.

Images: files (JPEG, PNG, ...), or --count images of --split drawn at random (or --indices);
with --mistakes, only images whose most probable label is wrong, drawn in the same random order
until --count are found. Probabilities are the softmax averaged over the evaluation views (the
centre crop, or --ten-crop's 10), as in evaluation. Each image is shown as the dataset stores
it, titled with its true label (or its file name).
"""
from dataclasses import dataclass

import numpy as np

from convnet.errors import counted
from convnet.figures import (add_output_flag, add_selection_flags, check_figure_size,
                             check_selection, checkpoint_output, file_title, new_figure, save,
                             selection_count, short_name, show_image, split_candidates)
from convnet.inference import (Inference, add_checkpoint_flag, checkpoint_file, report_unreadable,
                               top_k)
from convnet.train import UsageError

HELP = "Figure 4, left: images with their top-5 labels"
INFERENCE = True            # takes the training command's --data-path, -b, --ten-crop, --gpus
TOP = 5
# Layout of one image's cell, in inches: title, image, gap, bars, margin.
CELL_WIDTH, TITLE, IMAGE, GAP, BARS, MARGIN = 2.2, 0.3, 1.5, 0.08, 0.85, 0.15
CELL_HEIGHT = TITLE + IMAGE + GAP + BARS + MARGIN
CORRECT, OTHER, WRONG = "#f28e8e", "#a6c8e6", "#d62728"   # true label's bar, others, a miss

def add_arguments(p):
    add_checkpoint_flag(p)
    add_selection_flags(p, count=8)
    p.add_argument("--mistakes", action="store_true",
                   help="only images whose most probable label is wrong (needs --split images); "
                        "written as mistakes.png unless -o names the file")
    p.add_argument("--columns", type=int, default=4, help="images per row (default 4)")
    add_output_flag(p, "predictions")


def check(p, args):
    check_selection(p, args)
    if args.columns < 1:
        p.error(f"--columns must be at least 1; got {args.columns}")
    if args.mistakes and args.images:
        p.error("--mistakes needs true labels: use images of --split, not files")


@dataclass
class Chosen:
    images: np.ndarray            # (n, S, S, 3) uint8, as the dataset stores them
    titles: list
    indices: np.ndarray | None    # their indices in --split; None for files
    labels: np.ndarray | None     # true labels; None for files
    probs: np.ndarray             # (n, classes)
    failed: list                  # [(path, reason)] of the files that could not be read
    examined: int                 # images classified to find them


def choose(inference, args) -> Chosen:
    if args.images:
        images, paths, failed = inference.pictures(args.images)
        probs = [p for _, p, _ in inference.run(images)]
        probs = np.concatenate(probs) if probs else np.zeros((0, len(inference.class_names)))
        return Chosen(images, [file_title(p) for p in paths], None, None, probs, failed,
                      len(images))
    candidates = split_candidates(inference, args)
    labels = inference.loader.labels(args.split)
    wanted = len(candidates) if args.indices else args.count
    kept, kept_probs, examined = [], [], 0
    for positions, probs, _ in inference.run_split(args.split, candidates):
        chosen = candidates[positions]
        examined += len(chosen)
        keep = probs.argmax(axis=1) != labels[chosen] if args.mistakes else \
            np.ones(len(chosen), bool)
        kept.extend(chosen[keep])
        kept_probs.extend(probs[keep])
        if len(kept) >= wanted:
            break
    if not kept:   # under --mistakes: run refused a split of none (selection_count)
        raise UsageError(f"no mistakes among the {examined} images of the {args.split} split")
    kept, kept_probs = np.asarray(kept[:wanted], np.int64), np.asarray(kept_probs[:wanted])
    names = inference.class_names
    titles = [f"{args.split}[{i}] {short_name(names[labels[i]])}" for i in kept]
    return Chosen(inference.stored(args.split, kept), titles, kept, labels[kept], kept_probs, [],
                  examined)


def layout(count, columns):
    """(columns, width, height in inches) of the figure of `count` images, `columns` a row at
    most."""
    columns = min(columns, count)
    rows = -(-count // columns)
    return columns, columns * CELL_WIDTH, rows * CELL_HEIGHT


def draw(images, titles, probs, true_labels, class_names, columns):
    """The figure: per image, the image above its top-5 bars."""
    columns, width, height = layout(len(images), columns)
    figure = new_figure(width, height)

    def axes(left, bottom, w, h):      # inches → figure fractions
        return figure.add_axes((left / width, bottom / height, w / width, h / height))

    best = top_k(probs, TOP)
    for n, image in enumerate(images):
        row, column = divmod(n, columns)
        left, top = column * CELL_WIDTH, height - row * CELL_HEIGHT
        truth = None if true_labels is None else true_labels[n]
        missed = truth is not None and best[n, 0] != truth
        image_bottom = top - TITLE - IMAGE
        show_image(axes(left + (CELL_WIDTH - IMAGE) / 2, image_bottom, IMAGE, IMAGE), image,
                   titles[n], WRONG if missed else "black")
        bars = axes(left + 0.1, image_bottom - GAP - BARS, CELL_WIDTH - 0.2, BARS)
        classes = best[n]
        bars.barh(np.arange(len(classes)), probs[n, classes], height=0.85,
                  color=[CORRECT if c == truth else OTHER for c in classes])
        for y, c in enumerate(classes):
            bars.text(0.02, y, f"{short_name(class_names[c])}  {probs[n, c]:.0%}",
                      va="center", fontsize=7, parse_math=False)   # the dataset's names
        bars.set_xlim(0, 1)
        bars.set_ylim(len(classes) - 0.5, -0.5)
        bars.set_xticks([])
        bars.set_yticks([])
    return figure

def run(args):
    inference = Inference(checkpoint_file(args.checkpoint), args.data_path, gpus=args.gpus,
                          batch_size=args.batch_size, ten_crop=args.ten_crop)
    # --mistakes beside the drawn images, not over them
    path = checkpoint_output(args, "mistakes" if args.mistakes else "predictions")
    check_figure_size(*layout(selection_count(inference, args), args.columns)[1:],
                      fewer="images (--count, --indices or files)")
    chosen = choose(inference, args)
    report_unreadable(chosen.failed, readable=len(chosen.images))
    figure = draw(chosen.images, chosen.titles, chosen.probs, chosen.labels,
                  inference.class_names, args.columns)
    size = save(figure, path)
    what = counted(len(chosen.images), "image")
    if args.mistakes:
        what += f": mistakes among {chosen.examined} {args.split} images examined"
    elif chosen.labels is not None:
        right = int((chosen.probs.argmax(axis=1) == chosen.labels).sum())
        what += f", {right} of them right at top-1"
    return path, size, what, 1 if chosen.failed else 0
