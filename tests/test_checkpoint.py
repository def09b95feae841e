"""Checkpoints: a round trip restores everything and records the commit; an interrupted save
leaves the previous file intact; truncated, corrupt (down to one flipped bit in the weights) and
foreign files are refused with a one-line reason."""
import json
import os
import re
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from convnet import alexnet, checkpoint, provenance
from convnet.backend import get_backend
from convnet.errors import damaged_file_errors
from convnet.network import Network
from convnet.placement import Placement
from convnet.solver import SGD


def trained_network(rng, name="2012-small28"):
    model = alexnet.build_model(name)
    network = Network(model, get_backend("reference"), seed=int(rng.integers(1000)))
    solver = SGD(0.01, 2.0, 0.9, 5e-4)
    velocity = solver.momentum_buffers(network)
    images = rng.normal(0, 50, model.image_shape + (4,)).astype(np.float32)
    network.forward(images, rng.integers(0, 10, 4), train=True, step=0)
    solver.step(network, network.backward(), velocity)
    return network, velocity


def test_round_trip(tmp_path, rng):
    network, velocity = trained_network(rng)
    state = {"epoch": 3, "step": 1234, "rng": {"seed": 7}}
    path = tmp_path / "last.h5"
    checkpoint.save(path, network, velocity, state)
    params, loaded_velocity, loaded_state = checkpoint.load(path, network)
    assert loaded_state == state
    rebuilt, rebuilt_state = checkpoint.load_network(path, get_backend("reference"))
    assert rebuilt.model.name == "2012-small28" and rebuilt_state == state
    with h5py.File(path, "r") as file:
        assert file.attrs["commit"] == (provenance.commit() or "")   # "": unknown
    for key in network.params:
        np.testing.assert_array_equal(params[key], network.params[key])
        np.testing.assert_array_equal(loaded_velocity[key], velocity[key])
    assert os.listdir(tmp_path) == ["last.h5"]


def test_a_run_of_an_unknown_commit_saves_and_records_none(tmp_path, rng, monkeypatch):
    """A copy of the tree without .git and without CONVNET_COMMIT: the commit is unknown
    (provenance.running() is None), and the checkpoint records "" rather than failing."""
    network, velocity = trained_network(rng)
    monkeypatch.setattr(provenance, "running", lambda: None)
    checkpoint.save(tmp_path / "last.h5", network, velocity, {"epoch": 1})
    assert checkpoint.commit(tmp_path / "last.h5") == ""


def test_a_float32_checkpoint_loads_in_the_networks_dtype(tmp_path, rng):
    network, velocity = trained_network(rng)
    checkpoint.save(tmp_path / "last.h5", network, velocity, {"epoch": 1})
    wide = Network(network.model, get_backend("reference"), dtype=np.float64)
    params, loaded_velocity, _ = checkpoint.load(tmp_path / "last.h5", wide)
    shared = checkpoint.load_shared(tmp_path / "last.h5", wide)
    # arrays of the network's dtype (load_shared's docstring), whatever the file holds
    for arrays in (params, loaded_velocity, shared):
        assert {array.dtype for array in arrays.values()} == {np.dtype(np.float64)}
    for key in network.params:
        np.testing.assert_array_equal(params[key], network.params[key])


def test_a_network_loads_in_the_type_its_checkpoint_was_written_in(tmp_path, rng):
    """load_network builds the network a checkpoint holds: a float64 one's parameters stay
    float64, bit for bit; a file of another recorded type is refused naming it."""
    network, velocity = trained_network(rng)
    wide = Network(network.model, get_backend("reference"), dtype=np.float64,
                   params={key: value.astype(np.float64) + 1e-12
                           for key, value in network.params.items()})
    checkpoint.save(tmp_path / "wide.h5", wide, velocity, {"epoch": 1})
    loaded, _ = checkpoint.load_network(tmp_path / "wide.h5", get_backend("reference"))
    assert loaded.dtype == np.float64
    for key, value in wide.params.items():
        np.testing.assert_array_equal(loaded.params[key], value)
    with h5py.File(tmp_path / "wide.h5", "r+") as file:
        file.attrs["dtype"] = "float16"
    with pytest.raises(checkpoint.CheckpointError, match=f"checkpoint {tmp_path / 'wide.h5'}: "
                                                         f"written in float16, not float32 or "
                                                         f"float64"):
        checkpoint.load_network(tmp_path / "wide.h5", get_backend("reference"))


def test_towers_of_their_own_save_and_load_like_one_backend(tmp_path, rng):
    """A checkpoint written from towers on two devices (two emulators) holds each tower's arrays
    as one backend would, and loads back onto towers of their own, each on its tower's backend."""
    network, velocity = trained_network(rng)
    towers = {"a": get_backend("emulator"), "b": get_backend("emulator")}
    placement = Placement(towers)
    placed = Network(network.model, placement, seed=network.seed,
                     params=network.to_host(network.params))
    path = tmp_path / "last.h5"
    checkpoint.save(path, placed, placed.place(network.to_host(velocity)), {"epoch": 1})
    params, loaded_velocity, _ = checkpoint.load(path, network)
    for key in network.params:
        np.testing.assert_array_equal(params[key], network.params[key])
        np.testing.assert_array_equal(loaded_velocity[key], velocity[key])
    loaded, state = checkpoint.load_network(path, placement)
    assert state == {"epoch": 1}
    for spec in loaded.specs:
        np.testing.assert_array_equal(loaded.params[spec.key], network.params[spec.key])
    assert loaded.backend("a") is towers["a"] and loaded.backend("b") is towers["b"]


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, rng, monkeypatch):
    network, velocity = trained_network(rng)
    path = tmp_path / "last.h5"
    checkpoint.save(path, network, velocity, {"step": 1})
    before = path.read_bytes()

    def killed(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, network, velocity, {"step": 2})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["last.h5"]


def test_a_flipped_bit_inside_the_weights_is_refused(tmp_path, rng):
    """HDF5 reads a damaged chunk without complaint unless it carries a checksum."""
    network, velocity = trained_network(rng)
    path = tmp_path / "last.h5"
    checkpoint.save(path, network, velocity, {"epoch": 1})
    spec = network.specs[-1]
    with h5py.File(path, "r") as file:
        chunk = file[f"towers/{spec.tower}/params/{spec.key}"].id.get_chunk_info(0)
    data = bytearray(path.read_bytes())
    data[chunk.byte_offset + chunk.size // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(checkpoint.CheckpointError, match=f"checkpoint {path}: corrupt"):
        checkpoint.load(path, network)


def test_a_changed_byte_in_the_training_state_is_refused(tmp_path, rng):
    """The state's JSON, changed where it still parses (another epoch), fails its digest."""
    network, velocity = trained_network(rng)
    path = tmp_path / "last.h5"
    checkpoint.save(path, network, velocity, {"epoch": 3, "step": 1234})
    data = bytearray(path.read_bytes())
    at = data.index(b'"epoch": 3')
    data[at + len('"epoch": ')] = ord("7")
    path.write_bytes(bytes(data))
    with h5py.File(path, "r") as file:
        assert json.loads(file.attrs["state"])["epoch"] == 7
    with pytest.raises(checkpoint.CheckpointError, match=re.escape(
            f"checkpoint {path}: corrupt (its training state does not match the digest")):
        checkpoint.load(path, network)


def test_truncated_file_is_refused(tmp_path, rng):
    network, velocity = trained_network(rng)
    path = tmp_path / "last.h5"
    checkpoint.save(path, network, velocity, {})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(checkpoint.CheckpointError, match="last.h5"):
        checkpoint.load(path, network)


def test_damaged_attributes_are_refused_in_one_line(tmp_path, rng):
    """The attributes' variable-length values (model, commit: HDF5's global heap, read when the
    file is opened) with their heap's signature overwritten."""
    network, velocity = trained_network(rng)
    path = tmp_path / "last.h5"
    checkpoint.save(path, network, velocity, {})
    data = bytearray(path.read_bytes())
    heap = data.index(b"GCOL")
    data[heap:heap + 4] = b"XXXX"
    path.write_bytes(bytes(data))
    for read in (lambda: checkpoint.load_network(path, get_backend("reference")),
                 lambda: checkpoint.load(path, network)):
        with pytest.raises(checkpoint.CheckpointError, match=re.escape(f"checkpoint {path}: "
                                                                       f"corrupt (")):
            read()


def test_overwritten_hdf5_structures_are_refused_in_one_line(tmp_path, rng):
    """HDF5's own tables zeroed (h5py raises a RuntimeError there, not an OSError), by every
    reader: resume, fine-tuning, evaluation. (Braces in its path are text.)"""
    network, velocity = trained_network(rng)
    (tmp_path / "run{a}").mkdir()
    path = tmp_path / "run{a}" / "last.h5"
    checkpoint.save(path, network, velocity, {})
    data = bytearray(path.read_bytes())
    data[2000:2000 + 4096] = bytes(4096)
    path.write_bytes(bytes(data))
    for read in (lambda: checkpoint.load(path, network),
                 lambda: checkpoint.load_shared(path, network),
                 lambda: checkpoint.load_network(path, get_backend("reference"))):
        with pytest.raises(checkpoint.CheckpointError,
                           match=re.escape(f"checkpoint {path}: ")) as refused:
            read()
        assert "\n" not in str(refused.value)


def test_an_hdf5_message_over_several_lines_is_refused_in_one_line():
    """HDF5's messages, which h5py passes on, may span lines; the refusal is one line."""
    with pytest.raises(checkpoint.CheckpointError,
                       match=r"^checkpoint x\.h5: Unable to open \(bad object header\)$"):
        with damaged_file_errors(checkpoint.CheckpointError,
                                 lambda error: f"checkpoint x.h5: {error}"):
            raise OSError("Unable to open\n    (bad object header)")


def test_a_write_that_fails_keeps_the_previous_checkpoint(tmp_path):
    """A save, or a copy (a resumed run's last.h5), that cannot write (a full disk; here a
    file-size limit, which fails the write as a full disk does) is one CheckpointError, leaves
    the previous file as it was and no partial file. In a process of its own: a failed write
    inside HDF5 can end the process that made it."""
    script = textwrap.dedent("""
        import resource, signal
        import numpy as np
        from convnet import alexnet, checkpoint
        from convnet.backend import get_backend
        from convnet.network import Network
        from convnet.solver import SGD
        network = Network(alexnet.build_model("2012-small28"), get_backend("reference"))
        velocity = SGD(0.01, 2, 0.9, 5e-4).momentum_buffers(network)
        checkpoint.save("last.h5", network, velocity, {"step": 1})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit fails instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
        try:
            checkpoint.save("last.h5", network, velocity, {"step": 2})
        except checkpoint.CheckpointError as error:
            print(error)
        try:
            checkpoint.copy("last.h5", "copy.h5")
        except checkpoint.CheckpointError as error:
            print(error)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""
    saved, copied = result.stdout.splitlines()
    assert saved.startswith("checkpoint last.h5: cannot write it (") and "untouched" in saved
    assert copied.startswith("checkpoint copy.h5: cannot write it (")
    assert os.listdir(tmp_path) == ["last.h5"]
    assert checkpoint.load(tmp_path / "last.h5", Network(
        alexnet.build_model("2012-small28"), get_backend("reference")))[2] == {"step": 1}


@pytest.mark.parametrize("attribute, value", [("complete", None), ("format", "other-1")])
def test_a_file_not_marked_complete_or_of_another_format_is_refused(tmp_path, rng, attribute,
                                                                      value):
    """`complete` is written last: a file without it was never finished (a copy cut short, a
    writer other than checkpoint.save)."""
    network, velocity = trained_network(rng)
    path = tmp_path / "last.h5"
    checkpoint.save(path, network, velocity, {})
    with h5py.File(path, "r+") as file:
        if value is None:
            del file.attrs[attribute]
        else:
            file.attrs[attribute] = value
    with pytest.raises(checkpoint.CheckpointError, match="last.h5: incomplete or not a convnet"):
        checkpoint.load(path, network)


def test_non_hdf5_and_missing_files_are_refused(tmp_path, rng):
    network, _ = trained_network(rng)
    junk = tmp_path / "junk.h5"
    junk.write_text("not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match="not a readable HDF5"):
        checkpoint.load(junk, network)
    with pytest.raises(checkpoint.CheckpointError, match="no such file"):
        checkpoint.load(tmp_path / "absent.h5", network)
    with pytest.raises(checkpoint.CheckpointError, match=f"checkpoint {tmp_path}: a folder, not "
                                                         f"a checkpoint file"):
        checkpoint.load(tmp_path, network)


def test_a_checkpoint_named_with_a_newline_is_refused_in_one_line(tmp_path, rng):
    network, _ = trained_network(rng)
    with pytest.raises(checkpoint.CheckpointError) as refused:
        checkpoint.load(tmp_path / "no\nsuch.h5", network)
    assert str(refused.value) == f"checkpoint {tmp_path}/no\\nsuch.h5: no such file"


def test_a_checkpoint_that_is_a_pipe_is_refused_unopened(tmp_path, rng, pipe):
    network, _ = trained_network(rng)
    fifo = pipe(tmp_path / "last.h5")
    with pytest.raises(checkpoint.CheckpointError, match=re.escape(
            f"checkpoint {fifo}: not a regular file (a pipe, a socket or a device)")):
        checkpoint.load(fifo, network)


def test_checkpoint_of_another_model_is_refused(tmp_path, rng):
    network, velocity = trained_network(rng, "2012-small28")
    path = tmp_path / "small.h5"
    checkpoint.save(path, network, velocity, {})
    other = Network(alexnet.build_model("paper-small28"), get_backend("reference"))
    with pytest.raises(checkpoint.CheckpointError, match="written for model 2012-small28"):
        checkpoint.load(path, other)
    bigger = Network(alexnet.build_model("2012-small28", classes=20), get_backend("reference"))
    with pytest.raises(checkpoint.OtherClasses, match=r"small.h5: classifies 10 classes, not 20"):
        checkpoint.load(path, bigger)


@pytest.mark.parametrize("attribute, read", [
    ("model", lambda path, network: checkpoint.load(path, network)),
    ("model", lambda path, network: checkpoint.load_network(path, get_backend("reference"))),
    ("state", lambda path, network: checkpoint.load(path, network)),
    ("state", lambda path, network: checkpoint.load_network(path, get_backend("reference"))),
], ids=["model, load", "model, load_network", "state, load", "state, load_network"])
def test_a_complete_file_without_its_model_or_state_is_refused(tmp_path, rng, attribute, read):
    network, velocity = trained_network(rng)
    path = tmp_path / "last.h5"
    checkpoint.save(path, network, velocity, {})
    with h5py.File(path, "r+") as file:
        del file.attrs[attribute]
    with pytest.raises(checkpoint.CheckpointError, match=f"checkpoint {path}: corrupt"):
        read(path, network)


def test_a_run_folder_without_best_h5_names_the_checkpoints_it_holds(tmp_path, rng):
    """A run folder stands for its best.h5; where it has none, the error names those it has
    (its last.h5), not a file that is missing."""
    network, velocity = trained_network(rng)
    assert checkpoint.in_run(tmp_path / "last.h5") == str(tmp_path / "last.h5")
    with pytest.raises(checkpoint.CheckpointError, match=f"^run folder {tmp_path} holds no "
                                                         f"best.h5$"):
        checkpoint.in_run(tmp_path)
    checkpoint.save(tmp_path / "last.h5", network, velocity, {})
    with pytest.raises(checkpoint.CheckpointError) as refused:
        checkpoint.in_run(tmp_path)
    assert str(refused.value) == (f"run folder {tmp_path} holds no best.h5; give its last.h5, "
                                  f"{tmp_path / 'last.h5'}, for its latest weights")
    checkpoint.save(tmp_path / "best.h5", network, velocity, {})
    assert checkpoint.in_run(tmp_path) == str(tmp_path / "best.h5")
    (tmp_path / "odd" / "best.h5").mkdir(parents=True)   # the loader's to refuse
    resolved = checkpoint.in_run(tmp_path / "odd")
    assert checkpoint.in_run(resolved) == resolved == str(tmp_path / "odd" / "best.h5")
    with pytest.raises(checkpoint.CheckpointError, match="best.h5: a folder, not a checkpoint"):
        checkpoint.load_network(resolved, get_backend("reference"))
