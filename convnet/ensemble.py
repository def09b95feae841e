"""`python -m convnet.ensemble CHECKPOINT...`: several networks' averaged predictions, as in
the paper's section 6 (five similar CNNs averaged: ILSVRC-2012 validation top-1 error 40.7% →
38.1%, top-5 18.2% → 16.4%).

Each checkpoint (a file the training command wrote, or a run folder: its best.h5) classifies
every image of a split of the dataset, through the evaluation's own preprocessing and forward
pass (convnet.inference: the centre crop, or with --ten-crop the softmax averaged over the
paper's 10 views); the ensemble's prediction is the mean of the networks' softmax outputs.
The networks may differ (models, ablations, image sizes) but must classify the dataset's classes.

Output: a line per network, then the ensemble's, each as the training command's evaluation
prints it (loss, top-1 error, top-5 error over the images); with -o, the same figures as JSON
(written atomically, with the commit). Exit status 0; 2 for bad flags or an input that cannot
be used (checkpoint, dataset, a network whose outputs are not finite), with a one-line error.
"""
import sys
from dataclasses import asdict

import numpy as np

from convnet import options, provenance
from convnet.atomic import atomic_json
from convnet.backend.reference.softmax import topk_errors
from convnet.inference import Inference, checkpoint_file, exit_status
from convnet.train import UsageError
from convnet.trainer import Evaluation, summed_log_loss


def parser():
    p = options.Parser(prog="python -m convnet.ensemble", parents=[options.shared_flags()],
                       description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT",
                   help="checkpoints the training command wrote, or run folders (their best.h5)")
    p.add_argument("--split", choices=("val", "train"), default="val",
                   help="the dataset's split to classify (default val)")
    p.add_argument("-o", "--output", metavar="FILE.json",
                   help="also write the figures as JSON to FILE.json")
    return p


def scores(probs, labels) -> Evaluation:
    """The training command's evaluation figures of probs (n, classes) for labels (n,)."""
    top1, top5 = topk_errors(probs.T, labels, (1, 5))
    count = len(labels)
    loss = summed_log_loss(probs[np.arange(count), labels]) / count
    return Evaluation(loss, top1 / count, top5 / count, count)


def member_probs(checkpoint, args):
    """(probs (n, classes) float64 of every image of --split, in order, labels (n,))."""
    inference = Inference(checkpoint, args.data_path, gpus=args.gpus,
                          batch_size=args.batch_size, ten_crop=args.ten_crop)
    labels = inference.loader.labels(args.split)
    probs = np.empty((len(labels), len(inference.class_names)))
    for positions, batch_probs, _ in inference.run_split(args.split):
        probs[positions] = batch_probs
    if not np.isfinite(probs).all():
        raise UsageError(f"checkpoint {inference.checkpoint}: its outputs on the {args.split} "
                         f"split are not all finite (a diverged network)")
    return probs, np.asarray(labels)


def line(name, result: Evaluation):
    return (f"{name}: loss {result.loss:.4f}, top-1 error {result.top1:.2%}, "
            f"top-5 error {result.top5:.2%} over {result.images} images")


def run(args):
    total, members = None, []
    for path in args.checkpoints:
        probs, labels = member_probs(path, args)
        result = scores(probs, labels)
        print(line(checkpoint_file(path), result), flush=True)
        members.append((checkpoint_file(path), result))
        total = probs if total is None else total + probs
    views = "10 views" if args.ten_crop else "centre crop"
    average = scores(total / len(members), labels)
    print(line(f"average of {len(members)} ({views}, {args.split})", average))
    if args.output:
        atomic_json(args.output, {
            "data_path": args.data_path, "split": args.split, "views": views,
            "images": average.images, "commit": provenance.running(),
            "members": [{"checkpoint": name, **asdict(result)} for name, result in members],
            "average": asdict(average)}, indent=2)
    return 0


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    options.check_shared(p, args)
    return exit_status(run, args)

if __name__ == "__main__":
    sys.exit(main())
