"""A tiny run to evaluate, for the tests of the commands that read checkpoints (figures,
predict, ensemble): a dataset of random images and checkpoints of networks with random, active
weights, and their evaluation outputs computed directly, crop by crop. And the logs a run
leaves before its first checkpoint, for the training command's tests."""
from types import SimpleNamespace

import h5py
import numpy as np

from convnet import alexnet, checkpoint
from convnet.backend import get_backend
from convnet.data import dataset
from convnet.network import Network
from networks import make_active

MODEL, CLASSES, SIZE, CROP = "2012-small28", 10, 32, 28
TRAIN, VAL = 40, 12


# What a run stopped in its first epoch leaves, before any checkpoint: logs alone.
LOGS_ALONE = {"log.jsonl": '{"epoch": 1, "step": 1, "loss": 9.0}\n',
              "epochs.csv": "epoch,train_loss\n"}


def write_logs_alone(folder):
    """A new run folder holding LOGS_ALONE."""
    folder.mkdir()
    for name, text in LOGS_ALONE.items():
        (folder / name).write_text(text)


def save_checkpoint(network, path):
    zeros = {key: np.zeros_like(value) for key, value in network.params.items()}
    checkpoint.save(path, network, zeros, {"epoch": 1, "step": 1})


def active_network(rng, model=MODEL):
    return make_active(Network(alexnet.build_model(model, classes=CLASSES),
                               get_backend("reference")), rng)


def make_tiny_run(tmp_path, rng):
    """A dataset of random images (tiny.h5) and a checkpoint of a network with random, active
    weights (run/best.h5)."""
    train = rng.integers(0, 256, (TRAIN, SIZE, SIZE, 3), dtype=np.uint8)
    val = rng.integers(0, 256, (VAL, SIZE, SIZE, 3), dtype=np.uint8)
    train_labels, val_labels = rng.integers(0, CLASSES, TRAIN), rng.integers(0, CLASSES, VAL)
    data = tmp_path / "tiny.h5"
    dataset.write(data, name="tiny", train_images=train, train_labels=train_labels,
                  val_images=val, val_labels=val_labels,
                  class_ids=[f"c{i}" for i in range(CLASSES)],
                  class_names=[f"class {i}, synonym" for i in range(CLASSES)])
    network = active_network(rng)
    run = tmp_path / "run"
    save_checkpoint(network, run / "best.h5")
    with h5py.File(data, "r") as file:
        mean = file["mean"][()]
    return SimpleNamespace(data=data, run=run, network=network, train=train, val=val,
                           train_labels=train_labels, val_labels=val_labels, mean=mean,
                           tmp=tmp_path)


def direct_views(images, mean, ten_crop):
    """The evaluation views written out: crops at the centre (and the corners), mirrored for
    the 10 views, minus the mean's central crop; (3, C, C, n) float32."""
    middle, far = (SIZE - CROP) // 2, SIZE - CROP
    corners = [(middle, middle)] + ([(0, 0), (0, far), (far, 0), (far, far)] if ten_crop else [])
    mean_crop = mean[middle:middle + CROP, middle:middle + CROP]
    views = []
    for flip in ((False, True) if ten_crop else (False,)):
        for y, x in corners:
            crops = images[:, y:y + CROP, x:x + CROP].astype(np.float32)
            crops = crops[:, :, ::-1] if flip else crops
            views.append(np.ascontiguousarray((crops - mean_crop).transpose(3, 1, 2, 0)))
    return views


def direct_outputs(network, images, mean, ten_crop=False):
    """(probs (n, classes), fc7a and fc7b side by side (n, units)), averaged over the views."""
    probs, features = 0.0, 0.0
    views = direct_views(images, mean, ten_crop)
    for view in views:
        probs = probs + network.forward(view, None, train=False).probs
        features = features + np.concatenate([network.outputs["fc7a"], network.outputs["fc7b"]])
    return (probs / len(views)).T.astype(np.float64), (features / len(views)).T
