"""`python -m convnet.ensemble CHECKPOINT...`: several networks' averaged predictions, as in
the paper's section 6 (five similar CNNs averaged: ILSVRC-2012 validation top-1 error 40.7% →
38.1%, top-5 18.2% → 16.4%).

Each checkpoint (a file the training command wrote, or a run folder: its best.h5) classifies
every image of a split of the dataset, through the evaluation's own preprocessing and forward
pass (convnet.inference: the centre crop, or with --ten-crop the softmax averaged over the
paper's 10 views); the ensemble's prediction is the mean of the networks' softmax outputs.
The networks may differ (models, ablations, image sizes) but must classify as many classes as
the dataset has (checkpoints do not record the classes' names: one trained on a dataset of
another name gets a note on stderr), and each counts once (two arguments naming one file are
refused); all are loaded and checked before any is evaluated.

The networks run in step, a batch at a time, each figure summed over the batches: no images ×
classes array is held, which ImageNet's training split would make 5 GB a network.

Output, once every network is evaluated: a line per network, then the ensemble's, each as the
training command's evaluation prints it (loss, top-1 error, top-5 error over the images); with
-o, the same figures as JSON (written atomically, with the commit), before those lines, so that
a standard output that fails loses none of it. Exit status 0; 2 for bad flags or an input that
cannot be used (checkpoint, dataset, a network whose parameters or outputs are not finite),
with a one-line error.
"""
import contextlib
import hashlib
import os
import sys
from dataclasses import asdict

import numpy as np

from convnet import options, provenance
from convnet.atomic import atomic_json
from convnet.data.loader import Batches
from convnet.backend.reference.softmax import topk_errors
from convnet.errors import run_command, shown
from convnet.inference import Inference, exit_status
from convnet.train import UsageError, with_progress
from convnet.trainer import Evaluation, summed_log_loss, views_name


def parser():
    p = options.Parser(prog="python -m convnet.ensemble", parents=[options.shared_flags()],
                       description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT",
                   type=options.named_path,
                   help="checkpoints the training command wrote, or run folders (their best.h5)")
    p.add_argument("--split", choices=("val", "train"), default="val",
                   help="the dataset's split to classify (default val)")
    p.add_argument("-o", "--output", metavar="FILE.json",
                   help="also write the figures as JSON to FILE.json")
    return p


def summed_scores(probs, labels) -> np.ndarray:
    """(log-loss, top-1 errors, top-5 errors) of probs (n, classes) for labels (n,), summed over
    the images: the training command's evaluation figures before their division by n, which
    add up over batches."""
    top1, top5 = topk_errors(probs.T, labels, (1, 5))
    return np.array([summed_log_loss(probs[np.arange(len(labels)), labels]), top1, top5])


def scores(sums, count) -> Evaluation:
    return Evaluation(*(sums / count), count)


def weights_digest(inference) -> str:
    digest = hashlib.sha256()
    inference.hash_weights(digest)
    return digest.hexdigest()


def check_distinct(given, members):
    """Each network counts once in the average: two arguments that name one checkpoint file (a
    run folder and its best.h5, a link to it) are refused; two files of the same weights (a
    copy; a run's best.h5 and last.h5 where its last epoch was its best) get a note, as the
    average then counts that network twice."""
    for later in range(len(members)):
        for earlier in range(later):
            if os.path.samefile(members[earlier].checkpoint, members[later].checkpoint):
                raise UsageError(f"{shown(given[later])}: the same checkpoint as "
                                 f"{shown(given[earlier])}; each network counts once")
    first = {}   # a digest of weights → the first argument that holds them
    for name, member in zip(given, members):
        digest = weights_digest(member)
        if digest in first:
            print(f"note: {shown(name)} holds the same weights as {shown(first[digest])}: the "
                  f"average counts that network twice", file=sys.stderr)
        else:
            first[digest] = name


def split_sums(members, split, labels, description):
    """summed_scores over every image of `split` of each member and of their average (the last
    row): the members in step, a batch at a time, so that no images × classes array is held
    (ImageNet's training split: 5 GB a network). A progress bar with `description` on a
    terminal (the figures are printed once all are evaluated)."""
    sums = np.zeros((len(members) + 1, 3))
    with contextlib.ExitStack() as open_splits:
        splits = [open_splits.enter_context(contextlib.closing(member.run_split(split)))
                  for member in members]
        for outputs in with_progress(Batches(zip(*splits), len(splits[0])), description):
            average = None
            for row, (positions, probs, _) in enumerate(outputs):
                sums[row] += summed_scores(probs, labels[positions])
                average = probs.astype(np.float32) if average is None else average + probs
            average /= len(members)
            sums[-1] += summed_scores(average, labels[positions])
    return sums


def run(args):
    # Every checkpoint is loaded and checked before any network is evaluated (-o before them).
    members = [Inference(path, args.data_path, gpus=args.gpus, batch_size=args.batch_size,
                         ten_crop=args.ten_crop) for path in args.checkpoints]
    check_distinct(args.checkpoints, members)
    labels = np.asarray(members[0].loader.labels(args.split))
    if len(labels) == 0:
        raise UsageError(f"dataset {shown(args.data_path)}: its {args.split} split holds no "
                         f"images")
    sums = split_sums(members, args.split, labels, f"{len(members)} networks")
    *results, average = (scores(row, len(labels)) for row in sums)
    views = views_name(args.ten_crop)
    # The report first, then the lines: the evaluation, which may have taken hours, is lost
    # neither to a standard output that fails (a closed pipe, a full disk) nor to a report
    # that cannot be written, whose error comes after the lines. The report holds the names
    # as they are (JSON holds any), for a script to open.
    unwritten = None
    if args.output:
        try:
            atomic_json(args.output, {
                "data_path": args.data_path, "split": args.split, "views": views,
                "images": average.images, "commit": provenance.running(),
                "members": [{"checkpoint": inference.checkpoint, **asdict(result)}
                            for inference, result in zip(members, results)],
                "average": asdict(average)}, indent=2)
        except OSError as error:
            unwritten = error
    for inference, result in zip(members, results):
        print(f"{shown(inference.checkpoint)}: {result}")
    print(f"average of {len(members)} ({views}, {args.split}): {average}")
    if unwritten is not None:
        raise unwritten
    return 0


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    options.check_shared(p, args)
    if args.output is not None:
        options.check_output_flag(p, args, ".json")
    return exit_status(run, args)


if __name__ == "__main__":
    sys.exit(run_command(main))
