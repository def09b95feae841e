"""A trained network at work on images: shared by `python -m convnet.predict`, `python -m
convnet.ensemble` and the figures (`python -m convnet.figures`).

  Inference(checkpoint, data_path, gpus=, batch_size=, ten_crop=)
    the network rebuilt from a checkpoint the training command wrote (convnet.checkpoint; a run
    folder: its best.h5; --checkpoint's value through checkpoint_file), on
    the placement --gpus selects (convnet.train.select_placement), with its dataset's
    preprocessing: the evaluation views of convnet.data.loader (the centre crop, or the paper's
    10 views) minus the dataset's mean, and its class names. A checkpoint whose parameters are
    not all finite (a diverged run) is refused; one whose run trained on a dataset of another
    name gets a note on stderr: the class names are this dataset's. Where data_path names no
    file, the error names the dataset the checkpoint trained on.
  .pictures(paths)            image files (JPEG, PNG, ...) → the dataset's stored form
  .run(images)                stored images (n, S, S, 3) uint8 → batches of outputs
  .run_split(split, indices)  images `indices` of a split of the dataset → batches of outputs
Outputs, per batch: (positions in the input, probs (n, classes), features (n, units) or None),
host NumPy arrays. probs is the softmax averaged over the views; features, when asked for, are
the last hidden layer's outputs after its activation, towers side by side (fc7a then fc7b: 4096
units in the default network), averaged likewise; both come from convnet.trainer.forward_views,
the evaluation's own code. probs that are not all finite are a CheckpointError.
"""
import os
import sys
from contextlib import closing

import numpy as np

from convnet import alexnet, options
from convnet.checkpoint import CheckpointError, in_run, load_network
from convnet.data import fashion_mnist
from convnet.data.dataset import SPLITS, Dataset, DatasetError
from convnet.data.loader import Batches, Loader
from convnet.data.prepare import UNROTATED, load_image
from convnet.errors import INTERRUPTED_STATUS, shown
from convnet.train import UsageError, check_fits, other_dataset_note, select_placement
from convnet.trainer import forward_views

DEFAULT_RUN = os.path.join("runs", "fashion-mnist")   # make train's (configs/fashion-mnist.json)
# How an image file becomes a stored image, per dataset name; others as prepare stores ImageNet.
PICTURE_LOADERS = {fashion_mnist.NAME: fashion_mnist.load_picture}


def add_checkpoint_flag(p):
    p.add_argument("--checkpoint", default=DEFAULT_RUN, metavar="PATH",
                   type=options.named_path,
                   help="a checkpoint the training command wrote, or a run folder (its best.h5); "
                        "default: %(default)s, the default run's")


def checkpoint_file(given):
    """The checkpoint file --checkpoint names (a run folder: its best.h5); where that is the
    default run's folder and there is none, a UsageError saying what makes it."""
    if given == DEFAULT_RUN and not os.path.exists(given):
        raise UsageError(f"--checkpoint {DEFAULT_RUN}, the default run's folder, does not exist "
                         f"in {shown(os.getcwd())}: make train makes it in the project's folder "
                         f"(run the command there), or give --checkpoint PATH")
    return in_run(given)


def last_hidden_layers(model) -> tuple[str, ...]:
    """The layers the classifier reads, looking through its dropout layers: fc7a and fc7b."""
    classifier = model.layer(model.output_layer.inputs[0])
    names = []
    for name in classifier.inputs:
        layer = model.layer(name)
        names.append(layer.inputs[0] if isinstance(layer, alexnet.Dropout) else name)
    return tuple(names)


def exit_status(run, args):
    """run(args)'s exit status, or 2 with a one-line error on stderr where an input cannot be
    used (flags found wrong late, checkpoint, dataset, a file the system refuses): predict,
    ensemble and the figures share this."""
    try:
        # Outputs that are not all finite are refused in one line (a CheckpointError); NumPy's
        # warnings of overflows on the way there would only add lines before it.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return run(args)
    # Each shown(): one line whatever the names in it hold.
    except (UsageError, DatasetError, CheckpointError) as error:
        print(f"error: {shown(str(error))}", file=sys.stderr)
    except OSError as error:
        where = f"{shown(error.filename)}: " if error.filename else ""
        print(f"error: {where}{error.strerror or error}", file=sys.stderr)
    except MemoryError:   # a batch of -b images, or their 10 views, past the memory
        batch = getattr(args, "batch_size", None)   # the figures drawn from logs take none
        print("error: out of memory" + (f" with -b {batch}: give a smaller batch size" if batch
                                        else ""), file=sys.stderr)
    except KeyboardInterrupt:   # their files are written atomically: each whole or as it was
        print("interrupted: no file is left half-written", file=sys.stderr)
        return INTERRUPTED_STATUS
    return 2


def report_unreadable(failed, readable):
    """One line on stderr for each image file that could not be read: [(path, reason)], where
    `readable` others were; a UsageError where none was: the one file's line, or a count after
    each file's."""
    if not readable and len(failed) == 1:
        path, reason = failed[0]
        raise UsageError(f"{shown(path)}: {reason}")
    for path, reason in failed:
        print(f"error: {shown(path)}: {reason}", file=sys.stderr)
    if not readable:
        raise UsageError(f"none of the {len(failed)} image files could be read")


def top_k(probs, k):
    """(n, k) class indices, most probable first; equal probabilities in class order."""
    return np.argsort(-probs, axis=1, kind="stable")[:, :k]


class Inference:
    def __init__(self, checkpoint, data_path, *, gpus=None, batch_size=128, ten_crop=False):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"Inference batch_size {batch_size!r}: must be an integer ≥ 1")
        placement, self.device = select_placement(gpus)
        self.checkpoint = in_run(checkpoint)
        self.network, state = load_network(self.checkpoint, placement)
        model = self.network.model
        # checked before the Loader, which refuses a crop larger than the images
        with closing(self.dataset_of(data_path, state)) as dataset:
            check_fits(model, dataset, f"checkpoint {shown(self.checkpoint)}")
        self.loader = Loader(data_path, crop=model.geometry.image_size, seed=0,
                             colour_noise_convention=model.colour_noise,
                             crop_draw=model.crop_draw)
        self.batch_size, self.ten_crop = batch_size, ten_crop
        self.feature_layers = last_hidden_layers(model)
        # A class table's names are text, but any text: one may hold a tab or an escape.
        self.class_names = [shown(name) for name in self.loader.class_names]
        self.note_another_dataset(state)

    def dataset_of(self, data_path, state):
        """The dataset at --data-path; where there is no file, the error names the dataset the
        checkpoint trained on (--data-path's default is the default run's, Fashion-MNIST)."""
        try:
            return Dataset(data_path)
        except DatasetError as error:
            trained_on = (state.get("dataset") or {}).get("name")
            if trained_on is None or os.path.exists(data_path):
                raise
            raise DatasetError(f"{error}; checkpoint {shown(self.checkpoint)} was trained on "
                               f"dataset {shown(trained_on)}: give its file with --data-path"
                               ) from None

    def note_another_dataset(self, state):
        note = other_dataset_note(self.checkpoint, state.get("dataset"), self.loader)
        if note:
            print(shown(note), file=sys.stderr)

    # -- inputs -------------------------------------------------------------------------------
    def pictures(self, paths):
        """(images (n, S, S, 3) uint8, the paths they came from, [(path, reason)] for the files
        that could not be read), each image as the dataset stores its own: a photograph whose
        EXIF orientation says to turn it is taken as encoded, as the dataset's were, with a
        note on stderr (a phone's picture may then lie on its side)."""
        load = PICTURE_LOADERS.get(self.loader.name, load_image)
        size = self.loader.image_size
        images, read, failed = [], [], []
        for path in paths:
            if not os.path.exists(path):
                failed.append((path, "no such file"))
                continue
            if not os.path.isfile(path):
                failed.append((path, "not a file"))
                continue
            pixels, note = load(path, size)
            if pixels is None:
                failed.append((path, note.removeprefix("skipped: ")))
            else:
                if UNROTATED in (note or ""):
                    print(f"note: {shown(path)}: {note}", file=sys.stderr)
                images.append(pixels)
                read.append(path)
        stacked = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
        return stacked, read, failed

    def stored(self, split, indices):
        """The stored images (n, S, S, 3) uint8 of `split` at `indices`, in their order."""
        images, index = self.loader.read(split, np.asarray(indices))
        return images[index]

    def hash_weights(self, digest):
        """Feed `digest` (a hashlib object) the network's parameters, key by key in sorted
        order: equal digests, equal weights."""
        params = self.network.to_host(self.network.params)
        for key in sorted(params):
            digest.update(key.encode())
            digest.update(np.ascontiguousarray(params[key]).tobytes())

    def check_indices(self, split, indices, error=UsageError, named="--indices"):
        """Each of `indices` an image of `split`; else `error` naming the first that is not, as
        `named` (the command line's flag; run_split's argument)."""
        count = len(self.loader.labels(split))
        bad = [i for i in indices if not 0 <= i < count]
        if bad:
            raise error(f"{named} {bad[0]}: the {split} split has images 0 to {count - 1}")

    # -- outputs ------------------------------------------------------------------------------
    def _outputs(self, views, features, on):
        """(probs, features) of one batch of views; `on` names their images in an error."""
        probs, hidden = forward_views(self.network, views,
                                      self.feature_layers if features else ())
        network = self.network
        probs = network.output_backend.to_host(probs).T
        if not np.isfinite(probs).all():   # finite weights can still overflow
            raise CheckpointError(f"checkpoint {shown(self.checkpoint)}: its outputs on "
                                  f"{on} are not all finite")
        units = np.concatenate([network.layer_backend(name).to_host(h) for name, h
                                in zip(self.feature_layers, hidden)]).T if features else None
        return probs, units

    def run(self, images, features=False):
        """Yields (positions, probs, features) per batch of stored images (n, S, S, 3) uint8,
        as the dataset stores its own (pictures(), stored())."""
        side = self.loader.image_size
        if getattr(images, "dtype", None) != np.uint8 or images.shape[1:] != (side, side, 3):
            raise ValueError(f"images must be (n, {side}, {side}, 3) uint8, as the dataset stores "
                             f"its own; got {getattr(images, 'dtype', type(images).__name__)} of "
                             f"shape {np.shape(images)}")
        for start in range(0, len(images), self.batch_size):
            positions = np.arange(start, min(start + self.batch_size, len(images)))
            yield (positions,
                   *self._outputs(self.loader.views(images, positions, self.ten_crop), features,
                                  "the images given"))

    def run_split(self, split, indices=None, features=False):
        """(positions in `indices`, probs, features) per batch of images `indices` of `split`
        (default: all of them, in order), read one batch ahead by the loader: Batches, whose
        len() gives a progress bar its total."""
        if split not in SPLITS:
            raise ValueError(f"split {split!r}: the dataset's are {', '.join(SPLITS)}")
        if indices is None:
            indices = np.arange(len(self.loader.labels(split)))
        else:
            self.check_indices(split, indices, ValueError, "indices:")
        batches = self.loader.eval_batches(self.batch_size, self.ten_crop, split,
                                           np.asarray(indices))
        return Batches(self._split_outputs(batches, split, features), len(batches))

    def _split_outputs(self, batches, split, features):
        with closing(batches):
            start = 0
            for views, _ in batches:
                positions = np.arange(start, start + views[0].shape[-1])
                start = positions[-1] + 1
                yield (positions, *self._outputs(views, features, f"the {split} split"))
