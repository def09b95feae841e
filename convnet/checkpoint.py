"""Checkpoints in HDF5: a network's parameters per tower, the momentum buffers and the training
state, written atomically.

File layout:
  /towers/<tower>/params/<layer>/<input or "bias">     float arrays, as in Network.params
  /towers/<tower>/momentum/<layer>/<input or "bias">   the SGD velocity of each of them
  attrs: format (FORMAT), model, dtype, commit (convnet.provenance; "" where unknown), state
         (JSON: epoch, step, schedule, seed, ...: every random draw follows from the seed and
         the counters), state_sha256 (its digest), complete = True, written last
Every array is stored with Fletcher-32 checksums, and the state with its digest, which a load
verifies (checkpoints written before the digest load without it). Written atomically
(convnet.atomic): an interrupted save leaves the previous checkpoint untouched and never a file
that looks complete but is not.
"""
import hashlib
import json
import os
import shutil

import numpy as np

from convnet import alexnet, provenance
from convnet.atomic import atomic_h5, atomic_path
from convnet.errors import damaged_file_errors, failed_writes, one_line, open_hdf5, shown
from convnet.network import FLOAT_TYPES, Network, bias_key, parameter_specs

FORMAT = "convnet-checkpoint-1"
LAST, BEST = "last.h5", "best.h5"   # a run folder's: its latest weights, its lowest val error


def in_run(path) -> str:
    """A checkpoint file as given, or for a run folder its best.h5: a CheckpointError where the
    folder holds none, naming its last.h5 where it has one (a run that never improved on the
    best.h5 of the run it went on from: convnet.trainer's best_to_take). A path named best.h5 is
    taken as given, a folder too (the loader refuses it): it may be this function's own answer."""
    if not os.path.isdir(path) or os.path.basename(os.path.normpath(path)) == BEST:
        return str(path)
    best, last = os.path.join(path, BEST), os.path.join(path, LAST)
    if not os.path.lexists(best):
        raise CheckpointError(f"run folder {path} holds no {BEST}" + (
            f"; give its {LAST}, {last}, for its latest weights"
            if os.path.lexists(last) else ""))
    return best


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


class Unreadable(CheckpointError):
    """A file that cannot be read as a checkpoint: missing, cut short, damaged, incomplete."""


class OtherModel(CheckpointError):
    """A checkpoint written for another model than the network's (`recorded`: its name)."""

    def __init__(self, path, recorded, asked):
        super().__init__(f"checkpoint {path}: written for model {recorded}, not {asked}")
        self.recorded = recorded


class OtherClasses(CheckpointError):
    """A checkpoint of the network's model written for another class count (`recorded`)."""

    def __init__(self, path, recorded, asked):
        super().__init__(f"checkpoint {path}: classifies {recorded} classes, not {asked}")
        self.recorded = recorded


def save(path, network, velocity: dict, state: dict):
    """Write network.params, velocity (same keys) and the JSON-serializable `state`. A write
    that fails (a full disk, say) is a CheckpointError; the file it would have replaced stays."""
    params, velocity = network.to_host(network.params), network.to_host(velocity)
    with _writing(path):
        _write(path, network, params, velocity, state)


def copy(source, target):
    """Checkpoint `source` written as `target` too (a resumed run's last.h5), atomically; a
    failure is a CheckpointError, as save's."""
    with _writing(target), atomic_path(target, ".h5") as temporary:
        shutil.copyfile(source, temporary)


def _writing(path):
    """A write of checkpoint `path` that fails (a full disk, say) as a CheckpointError."""
    return failed_writes(CheckpointError, lambda error: f"checkpoint {path}: cannot write it "
                                                        f"({one_line(error)}); the previous one "
                                                        f"there, if any, is untouched")


def _write(path, network, params, velocity, state):
    with atomic_h5(path) as file:
        for spec in network.specs:
            group = f"towers/{spec.tower}"
            for kind, arrays in (("params", params), ("momentum", velocity)):
                # a checksum per chunk: a bit flipped on disk fails the load, not the run
                file.create_dataset(f"{group}/{kind}/{spec.key}", data=arrays[spec.key],
                                    fletcher32=True)
        file.attrs["format"] = FORMAT
        file.attrs["model"] = network.model.name
        file.attrs["dtype"] = network.dtype.name
        file.attrs["commit"] = provenance.running() or ""
        file.attrs["state"] = text = json.dumps(state)
        file.attrs["state_sha256"] = _digest(text)


def _digest(text):
    return hashlib.sha256(text.encode()).hexdigest()


def _open(path):
    file = open_hdf5(path, Unreadable, "checkpoint",
                     f"not a checkpoint file (a run's folder holds {LAST} and {BEST})")
    try:
        with _reading(path):   # the attributes' own storage may be what is damaged
            ours = file.attrs.get("format") == FORMAT and file.attrs.get("complete", False)
        if not ours:
            raise Unreadable(f"checkpoint {path}: incomplete or not a convnet checkpoint")
    except CheckpointError:
        file.close()
        raise
    return file


def _reading(path):
    """A context in which a read that fails on a damaged file is one Unreadable naming the
    file."""
    return damaged_file_errors(Unreadable,
                               lambda error: f"checkpoint {path}: corrupt ({error})")


def _array(file, name, dtype):
    return file[name][()].astype(dtype, copy=False)


def commit(path) -> str:
    """The commit of the code that wrote checkpoint `path` ("" where it was not known, or the
    checkpoint is older than the attribute)."""
    with _open(path) as file, _reading(path):
        return str(file.attrs.get("commit", ""))


def record(path) -> tuple[str, dict]:
    """(model name, training state) of checkpoint `path`, its arrays left unread."""
    with _open(path) as file, _reading(path):
        return str(file.attrs["model"]), _state(file, path)


def load(path, network):
    """(params, velocity, state) from `path`, checked against `network`'s model and parameter
    shapes. Raises CheckpointError with a one-line reason."""
    with _open(path) as file, _reading(path):
        if file.attrs["model"] != network.model.name:
            raise OtherModel(path, str(file.attrs["model"]), network.model.name)
        recorded = _classes(file, path, network.model)
        if recorded != network.model.geometry.classes:   # fc8's shape: the class count
            raise OtherClasses(path, recorded, network.model.geometry.classes)
        return (_arrays(file, path, network.specs, network.dtype, "params"),
                _arrays(file, path, network.specs, network.dtype, "momentum"), _state(file, path))


def _arrays(file, path, specs, dtype, kind):
    """{key: array} of `kind` ("params" or "momentum") for each parameter of `specs` (a model's
    parameter_specs), in `dtype`."""
    arrays = {}
    for spec in specs:
        name = f"towers/{spec.tower}/{kind}/{spec.key}"
        if name not in file:
            raise Unreadable(f"checkpoint {path}: missing {name}")
        if file[name].shape != spec.shape:
            raise CheckpointError(f"checkpoint {path}: {name} has shape {file[name].shape}, "
                                  f"the model needs {spec.shape}")
        arrays[spec.key] = _array(file, name, dtype)
    return arrays


def _state(file, path) -> dict:
    text, digest = file.attrs["state"], file.attrs.get("state_sha256")
    # a flipped bit in the JSON may still parse: another epoch, step or rate
    if digest is not None and digest != _digest(text):
        raise Unreadable(f"checkpoint {path}: corrupt (its training state does not match the "
                         f"digest written with it)")
    return json.loads(text)


def _classes(file, path, model) -> int:
    """The class count checkpoint `file` was written for: the length of the bias of `model`'s
    output layer (fc8, the layer the softmax reads)."""
    output = model.layer(model.output_layer.inputs[0])
    bias = f"towers/{output.tower}/params/{bias_key(output.name)}"
    if bias not in file:
        raise Unreadable(f"checkpoint {path}: missing {bias}")
    return file[bias].shape[0]


def load_shared(path, network) -> dict:
    """The parameters of checkpoint `path` that `network`'s model shares with the model the
    checkpoint was written for, whatever that was: {key: array} of those with the same tower,
    layer, input and shape (host arrays of the network's dtype). Fine-tuning starts from them."""
    with _open(path) as file, _reading(path):
        params = {}
        for spec in network.specs:
            name = f"towers/{spec.tower}/params/{spec.key}"
            if name in file and file[name].shape == spec.shape:
                params[spec.key] = _array(file, name, network.dtype)
    return params


def load_network(path, backend) -> tuple[Network, dict]:
    """(network, training state): a Network on `backend` (or a Placement) with the parameters of
    checkpoint `path`, its model rebuilt from the file (the model's name, and the class count from
    the output layer's bias) in the element type it was written in, and the training state the
    checkpoint records (as load's), read in one opening of the file. A network to use: one whose
    parameters are not all finite (a diverged run) is refused."""
    with _open(path) as file, _reading(path):
        name = str(file.attrs["model"])
        try:
            model = alexnet.build_model(name)
        except ValueError as error:
            raise CheckpointError(f"checkpoint {path}: written for a model this code does not "
                                  f"build ({error})") from None
        model = alexnet.build_model(name, classes=_classes(file, path, model))
        dtype = _dtype(file, path)
        # the parameters alone: a network to use needs no momentum, as large again
        params = _arrays(file, path, parameter_specs(model), dtype, "params")
        state = _state(file, path)
    if not all(np.isfinite(array).all() for array in params.values()):   # NaN for every image
        raise CheckpointError(f"checkpoint {shown(path)}: its parameters are not all finite (a "
                              f"diverged network)")
    return Network(model, backend, dtype=dtype, params=params), state


def _dtype(file, path):
    """The element type checkpoint `file` was written in (its networks': float32 or float64)."""
    dtype = str(file.attrs.get("dtype", ""))
    if dtype not in FLOAT_TYPES:
        raise CheckpointError(f"checkpoint {path}: written in {dtype or 'no recorded type'}, not "
                              f"{' or '.join(FLOAT_TYPES)}")
    return np.dtype(dtype)
