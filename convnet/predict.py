"""`python -m convnet.predict IMAGE...`: the most probable labels of image files, with their
probabilities, from a checkpoint the training command wrote.

Each file (JPEG, PNG, or anything Pillow reads) is brought to the dataset's stored form (as
convnet.data.prepare stores ImageNet: the central square resized to S×S; Fashion-MNIST's: grey,
resized to 28×28, zero-padded to 32×32), then through the evaluation's own preprocessing and
forward pass (convnet.inference): minus the dataset's mean, the centre crop or with --ten-crop
the softmax averaged over the paper's 10 views. Class names come from the dataset.

Output, per readable file: its path (bytes that are not UTF-8 and control characters escaped,
\\xff, \\n: one line whatever the name), then one line per label, most probable first:
    <probability as a percentage>  <class index>  <class name>
A file that cannot be read gets one line on stderr, "error: PATH: reason", and the others are
still processed. A checkpoint trained on a dataset of another name gets a note on stderr (the
class names are --data-path's); one whose parameters or outputs are not all finite is refused.
Exit status: 0; 1 when some file could not be read; 2 for bad flags, an unusable checkpoint or
dataset, or when no file could be read.
"""
import sys

from convnet import options
from convnet.errors import run_command, shown
from convnet.inference import (Inference, add_checkpoint_flag, checkpoint_file, exit_status,
                               report_unreadable, top_k)


def parser():
    p = options.Parser(prog="python -m convnet.predict", parents=[options.shared_flags()],
                       description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("images", nargs="+", metavar="IMAGE", type=options.named_path,
                   help="image files (JPEG, PNG, ...)")
    add_checkpoint_flag(p)
    p.add_argument("-k", "--top", type=int, default=5, help="labels per image (default 5)")
    return p


def run(args):
    inference = Inference(checkpoint_file(args.checkpoint), args.data_path, gpus=args.gpus,
                          batch_size=args.batch_size, ten_crop=args.ten_crop)
    images, paths, failed = inference.pictures(args.images)
    report_unreadable(failed, readable=len(paths))
    names = inference.class_names
    for positions, probs, _ in inference.run(images):
        for position, row, best in zip(positions, probs, top_k(probs, args.top)):
            print(shown(paths[position]))
            for c in best:
                print(f"  {row[c]:7.2%}  {c:4d}  {names[c]}")
    return 1 if failed else 0


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    options.check_shared(p, args)
    if args.top < 1:
        p.error(f"--top must be at least 1; got {args.top}")
    return exit_status(run, args)


if __name__ == "__main__":
    sys.exit(run_command(main))
