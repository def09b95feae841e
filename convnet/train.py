"""`python -m convnet.train`: train AlexNet with the paper's recipe (see --help).

With no arguments it trains the scaled-down 2012 model on the prepared Fashion-MNIST
(data/fashion-mnist.h5) on the CPU. Settings resolved from flags and --config are written to
<output-dir>/settings.json; logs and checkpoints go beside them (see convnet.trainer).
"""
import json
import os
import subprocess
import sys

import numpy as np

from convnet import alexnet, checkpoint, options
from convnet.backend import get_backend
from convnet.data.loader import Loader
from convnet.data.dataset import Dataset, DatasetError
from convnet.network import Network
from convnet.schedule import RELEASED_2012_EPOCHS, Rates, Schedule
from convnet.trainer import NonFiniteLoss, Trainer, evaluate

SMALL_MODEL_EPOCHS = 6


class UsageError(Exception):
    """A setting that cannot work; reported in one line with exit code 2."""


def choose_model(name, dataset: Dataset) -> alexnet.Model:
    """The named model, or with "auto" the 2012-preset model whose crop is 7/8 of the dataset's
    stored size (224 of 256, 28 of 32); its class count is the dataset's."""
    if name == "auto":
        fits = [m for m, (geometry, preset) in alexnet.MODELS.items() if preset == "2012"
                and alexnet.GEOMETRIES[geometry].image_size * 8 == dataset.image_size * 7]
        if not fits:
            raise UsageError(f"--model auto: no model takes crops of {dataset.image_size}-pixel "
                             f"images; name one with --model")
        name = fits[0]
    model = alexnet.build_model(name, classes=dataset.classes)
    if model.geometry.image_size > dataset.image_size:
        raise UsageError(f"--model {name} needs {model.geometry.image_size}-pixel crops but "
                         f"{dataset.path} holds {dataset.image_size}-pixel images")
    return model


def make_schedule(args, model, epochs) -> Schedule:
    rates = Rates(args.lr, args.lr * model.preset.bias_lr_multiplier)
    kind = args.lr_schedule
    if kind == "preset":
        kind = "2012" if model.preset.name == "2012" else "plateau"
    return Schedule(kind, rates, step_epochs=tuple(args.lr_steps),
                    scale=epochs / RELEASED_2012_EPOCHS)


def select_backend(gpus):
    """The reference backend for --gpus cpu (and by default on a machine without a GPU)."""
    if gpus in (None, "cpu"):
        return get_backend("reference"), "cpu"
    raise UsageError(f"--gpus {gpus}: this build of convnet has no CUDA backend yet; "
                     f"use --gpus cpu")


def commit():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=os.path.dirname(__file__), timeout=10).stdout.strip() or None
    except OSError:
        return None


def progress_bar():
    """tqdm over the batches when stderr is a terminal; None (no bar) otherwise."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    def wrap(batches, description):
        return tqdm(batches, desc=description, unit="batch", dynamic_ncols=True, leave=False)
    return wrap


def run(args):
    backend, device = select_backend(args.gpus)
    dataset = Dataset(args.data_path)
    model = choose_model(args.model, dataset)
    dataset.close()
    epochs = args.epochs or (RELEASED_2012_EPOCHS if model.geometry.image_size == 224
                             else SMALL_MODEL_EPOCHS)
    output_dir = args.output_dir or os.path.join("runs", model.name)
    data = Loader(args.data_path, crop=model.geometry.image_size, seed=args.seed,
                  colour_noise_convention=model.preset.colour_noise,
                  crop_draw=model.preset.crop_draw)
    network = Network(model, backend, seed=args.seed)
    trainer = Trainer(network, data, make_schedule(args, model, epochs),
                      batch_size=args.batch_size, momentum=args.momentum, weight_decay=args.wd,
                      output_dir=output_dir, print_freq=args.print_freq,
                      progress=progress_bar(), ten_crop=args.ten_crop)
    if args.resume:
        path = os.path.join(output_dir, "last.h5") if args.resume == "auto" else args.resume
        if args.resume != "auto" or os.path.exists(path):
            trainer.resume(path)
            print(f"resumed from {path} at epoch {trainer.epoch}, step {trainer.step}")
    settings = dict(vars(args), model=model.name, epochs=epochs, output_dir=output_dir,
                    device=device, commit=commit(), schedule=trainer.schedule.kind)
    with open(os.path.join(output_dir, "settings.json"), "w") as handle:
        json.dump(settings, handle, indent=2)

    if args.test_only:
        result = evaluate(network, data, args.batch_size, args.ten_crop)
    else:
        print(f"training {model.name} on {args.data_path} ({device}) for {epochs} epochs; "
              f"output in {output_dir}")
        result = trainer.fit(epochs)
    views = "10 views" if args.ten_crop else "centre crop"
    print(f"validation ({views}): loss {result.loss:.4f}, top-1 error {result.top1:.2%}, "
          f"top-5 error {result.top5:.2%} over {result.images} images")
    return 0


def main(argv=None):
    args = options.parse(argv)
    try:
        return run(args)
    except (UsageError, DatasetError, checkpoint.CheckpointError, NonFiniteLoss) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
