"""prepare: an ILSVRC-2012-layout tree of real JPEGs and bad files → the HDF5 format; the bad
files reported, the statistics against NumPy, one-line errors, interruption and resumption."""
import concurrent.futures
import os
import signal
import subprocess
import sys
from concurrent.futures.process import BrokenProcessPool

import h5py
import numpy as np
import pytest
from PIL import Image

import imagetree
from convnet.data import prepare
from convnet.data.dataset import Dataset, DatasetError

SIZE = 64   # small stored images keep the tests fast; the code does not depend on the size


def run(root, output, **options):
    return prepare.prepare(str(root), str(output), progress=False, **options)


@pytest.fixture
def tree(tmp_path, rng):
    root = tmp_path / "imagenet"
    return root, imagetree.build(str(root), rng)


@pytest.mark.parametrize("flat_val", [False, True])
def test_tree_to_hdf5(tmp_path, rng, flat_val):
    root = tmp_path / "imagenet"
    labels = imagetree.build(str(root), rng, flat_val=flat_val)
    options = {"val_labels": str(root / "val_labels.tsv")} if flat_val else {}
    summary = run(root, tmp_path / "out.h5", size=SIZE, workers=2, **options)
    data = Dataset(tmp_path / "out.h5")
    good_train = sorted(path for path in labels if path.startswith("train/"))
    converted = [name for name, (kind, _) in imagetree.BAD.items() if kind == "converted"]
    assert data.size("train") == len(good_train) + len(converted)
    assert data.size("val") == len(labels) - len(good_train)
    assert data.image_size == SIZE and data.class_ids == list(imagetree.WNIDS)
    assert data.class_names[0] == "tench, Tinca tinca"

    # Files in sorted order, labels = position of the wnid; bad files where they sort.
    stored = sorted(good_train + [f"train/{imagetree.WNIDS[0]}/{name}" for name in converted])
    assert data.labels("train").tolist() == [imagetree.WNIDS.index(path.split("/")[1])
                                              for path in stored]
    val_paths = sorted(path for path in labels if not path.startswith("train/"))
    assert data.labels("val").tolist() == [labels[path] for path in val_paths]
    for i in rng.choice(len(stored), 5, replace=False):
        pixels, _ = prepare.load_image(str(root / stored[i]), SIZE)
        np.testing.assert_array_equal(data.images("train", [i])[0], pixels)

    # Every bad file is reported once, with its reason.
    report = {kind: dict(line.decode().split("\t") for line in data.file[f"report/{kind}"])
              for kind in ("converted", "skipped")}
    for name, (kind, reason) in imagetree.BAD.items():
        assert report[kind][f"train/{imagetree.WNIDS[0]}/{name}"].startswith(reason), name
    assert sum(map(len, report.values())) == len(imagetree.BAD)
    assert summary["converted"] and len(summary["skipped"]) == 3

    # Statistics: a direct NumPy computation over the stored training images.
    images = data.images("train", np.arange(data.size("train"))).astype(np.float64)
    np.testing.assert_allclose(data.mean, images.mean(axis=0), rtol=1e-6, atol=1e-4)
    covariance = np.cov(images.reshape(-1, 3), rowvar=False, bias=True)
    values, vectors = np.linalg.eigh(covariance)
    np.testing.assert_allclose(data.eigenvalues, values, rtol=1e-9)
    np.testing.assert_allclose(np.abs(data.eigenvectors.T @ vectors), np.eye(3), atol=1e-9)
    assert not os.path.exists(str(tmp_path / "out.h5") + ".partial")


def test_image_is_central_square_of_shorter_side(tmp_path, rng):
    """A large photograph (draft mode used) against a plain full-size resize and crop."""
    photo = imagetree.photographs()[0]                      # 640×427
    path = tmp_path / "photo.JPEG"
    path.write_bytes(imagetree.jpeg_bytes(photo, quality=95))
    pixels, note = prepare.load_image(str(path), 128)
    assert note is None and pixels.shape == (128, 128, 3) and pixels.dtype == np.uint8
    decoded = Image.open(path).convert("RGB")
    width = round(decoded.width * 128 / decoded.height)
    resized = np.asarray(decoded.resize((width, 128), Image.BILINEAR), np.float64)
    left = (width - 128) // 2
    difference = np.abs(resized[:, left:left + 128] - pixels)
    assert difference.mean() < 4, difference.mean()        # draft decoding and rounding only


def test_bad_inputs_get_one_line(tmp_path, capsys):
    root = tmp_path / "r"

    def refused(path, message, *options):
        assert prepare.main([str(path), "--output", str(tmp_path / "o.h5"), *options]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and message in error, (message, error)

    refused(tmp_path / "absent", "absent: no such folder")
    root.mkdir()
    refused(root, "no train/ folder")
    (root / "train").mkdir()
    refused(root, "no class folders")
    (root / "train" / "notes.txt").write_text("x")
    refused(root, "expected only class folders (train/<wnid>/), found file notes.txt")
    os.remove(root / "train" / "notes.txt")
    (root / "train" / "cats").mkdir()
    refused(root, "train/cats: not an ILSVRC-2012 wnid")
    os.rmdir(root / "train" / "cats")
    (root / "train" / imagetree.WNIDS[0]).mkdir()
    refused(root, "no val/ folder")
    (root / "val" / imagetree.WNIDS[1]).mkdir(parents=True)
    refused(root, f"val/{imagetree.WNIDS[1]}: not one of the classes in train/")
    os.rmdir(root / "val" / imagetree.WNIDS[1])
    (root / "val" / imagetree.WNIDS[0]).mkdir()
    (root / "val" / "x.JPEG").write_bytes(b"")
    refused(root, "mixes class folders")
    os.rmdir(root / "val" / imagetree.WNIDS[0])
    refused(root, "validation labels /nowhere.tsv: No such file", "--val-labels", "/nowhere.tsv")
    (root / "labels.tsv").write_text("file\tindex\nx.JPEG\tpotato\n")
    refused(root, "line 2: 'potato' is neither a class index nor a wnid", "--val-labels",
            str(root / "labels.tsv"))
    refused(root, "class table /nowhere.tsv: No such file", "--classes", "/nowhere.tsv")
    refused(root, "not one image could be read")   # the only file is an empty val image
    assert not (tmp_path / "o.h5").exists()


def test_unlabelled_flat_val_files_are_skipped_with_reason(tmp_path, rng):
    root = tmp_path / "imagenet"
    imagetree.build(str(root), rng, flat_val=True, per_class=1)
    (root / "val" / "stray.JPEG").write_bytes(imagetree.jpeg_bytes(imagetree.photographs()[1]))
    summary = run(root, tmp_path / "o.h5", size=16, workers=1,
                  val_labels=str(root / "val_labels.tsv"))
    assert "val/stray.JPEG\tnot listed in val_labels.tsv" in summary["skipped"]


def test_interrupted_run_resumes_to_the_same_file(tmp_path, rng, monkeypatch, capsys):
    root, _ = tree_with_blocks(tmp_path, rng, monkeypatch)
    clean = tmp_path / "clean.h5"
    run(root, clean, size=SIZE, workers=2)

    output = tmp_path / "out.h5"
    store = prepare.store_block
    calls = []

    def interrupted(*args):   # Ctrl-C while the third block is being stored
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        store(*args)
    monkeypatch.setattr(prepare, "store_block", interrupted)
    # Not always Python's KeyboardInterrupt handler: a shell's background job starts with
    # SIGINT ignored.
    handler_before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        run(root, output, size=SIZE, workers=2)
    assert signal.getsignal(signal.SIGINT) is handler_before
    assert not output.exists()
    with pytest.raises(DatasetError, match="incomplete"):
        Dataset(str(output) + ".partial")
    monkeypatch.setattr(prepare, "store_block", store)
    run(root, output, size=SIZE, workers=1)
    assert "resuming after 3 of" in capsys.readouterr().err
    assert_same_dataset(clean, output)


# Runs of prepare that once waited for ever, in a process of their own so that a test fails
# instead. Ctrl-C at the second stored block of 3-megabyte blocks (4 files at 512 pixels), while
# the other workers write theirs into the result pipe: a stop that killed them left the pipe's
# lock held, and waited on it in about half the runs, so the run is repeated. A worker that dies
# as an out-of-memory kill would end it.
STOPPED_RUN = """
import multiprocessing, os, signal, sys, time
import numpy as np
import imagetree
from convnet.data import prepare

REPEATS = 5

def worker_dies(task):
    os._exit(9)

def ignores_ctrl_c(pid):
    with open(f"/proc/{pid}/status") as status:
        ignored = next(int(line.split()[1], 16) for line in status if line.startswith("SigIgn:"))
    return ignored >> (signal.SIGINT - 1) & 1

def wait_until_workers_ignore_ctrl_c():
    # A worker still starting has Python's handler: it would die of the Ctrl-C, saying so.
    end = time.monotonic() + 10
    while not all(map(ignores_ctrl_c, (p.pid for p in multiprocessing.active_children()))):
        if time.monotonic() > end:
            return
        time.sleep(0.01)

def main(how, root, output):
    imagetree.build(root, np.random.default_rng(0), per_class=12)
    prepare.BLOCK = 4
    store, calls = prepare.store_block, []
    def interrupted(*args):
        calls.append(1)
        if len(calls) == 2:   # as a terminal's Ctrl-C: to the workers too
            wait_until_workers_ignore_ctrl_c()
            os.killpg(0, signal.SIGINT)
        store(*args)
    if how == "interrupted":
        prepare.store_block = interrupted
    else:
        prepare.process_block = worker_dies
    for attempt in range(REPEATS):
        calls.clear()
        try:
            prepare.prepare(root, output, size=512, workers=4, progress=False, restart=True)
        except KeyboardInterrupt:
            continue
        except prepare.PrepareError as error:
            sys.exit(f"error: {error}")
        sys.exit("prepare was not stopped")
    sys.exit(130)

if __name__ == "__main__":
    main(*sys.argv[1:])
"""


def stopped_run(tmp_path, how):
    """(exit status, stderr) of STOPPED_RUN; fails the test past 120 s."""
    script = tmp_path / "stopped.py"
    script.write_text(STOPPED_RUN)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [os.path.dirname(__file__), *filter(None, [os.environ.get("PYTHONPATH")])])}
    # A session of its own, so that a timeout ends its fork server and workers too.
    run = subprocess.Popen([sys.executable, str(script), how, str(tmp_path / "imagenet"),
                            str(tmp_path / "out.h5")], env=environment, stderr=subprocess.PIPE,
                           text=True, start_new_session=True)
    try:
        _, stderr = run.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        run.communicate()
        pytest.fail(f"prepare ({how}) did not end within 120 s")
    return run.returncode, stderr


def test_interrupt_while_workers_send_large_blocks_stops(tmp_path):
    status, stderr = stopped_run(tmp_path, "interrupted")
    assert status == 130 and stderr == "", stderr
    assert not (tmp_path / "out.h5").exists()
    with h5py.File(tmp_path / "out.h5.partial", "r") as partial:
        assert partial.attrs["blocks_done"] == 2


def test_a_worker_that_dies_is_an_error_naming_the_files(tmp_path):
    status, stderr = stopped_run(tmp_path, "worker dies")
    first_file = f"{tmp_path}/imagenet/train/{imagetree.WNIDS[0]}/"
    assert status == 1
    assert stderr.startswith(f"error: a worker process died (killed, out of memory, or a crash "
                             f"in a decoder) at {first_file}"), stderr
    assert stderr.endswith(f"or a file after it; the blocks before are in {tmp_path}/out.h5.partial: "
                           f"run the same command again to resume\n"), stderr
    assert not (tmp_path / "out.h5").exists()


class TerminatedPool(concurrent.futures.ThreadPoolExecutor):
    """The process pool as a SIGTERM sent to the whole process group leaves it: the worker of the
    third block dies of it, and the parent, waiting for that block, gets it too."""

    def __init__(self, workers, mp_context, initializer):
        super().__init__(workers)
        self.submitted = 0

    def submit(self, function, task):
        self.submitted += 1
        return super().submit(function, task) if self.submitted != 3 else TerminatedWorker()


class TerminatedWorker(concurrent.futures.Future):
    def result(self, timeout=None):
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
        raise BrokenProcessPool("A process in the process pool was terminated abruptly")


def test_workers_ended_by_a_stop_signal_are_a_stop(tmp_path, rng, monkeypatch):
    root, _ = tree_with_blocks(tmp_path, rng, monkeypatch)
    monkeypatch.setattr(prepare, "ProcessPoolExecutor", TerminatedPool)
    with pytest.raises(KeyboardInterrupt):
        run(root, tmp_path / "out.h5", size=SIZE, workers=2)
    assert not (tmp_path / "out.h5").exists()
    with h5py.File(tmp_path / "out.h5.partial", "r") as partial:
        assert partial.attrs["blocks_done"] == 2


def test_unusable_partial_file_starts_again(tmp_path, rng, monkeypatch, capsys):
    root, _ = tree_with_blocks(tmp_path, rng, monkeypatch)
    output = tmp_path / "out.h5"
    partial = tmp_path / "out.h5.partial"
    partial.write_bytes(b"half an HDF5 file")
    run(root, output, size=SIZE, workers=2)
    assert "cannot resume (unreadable" in capsys.readouterr().err
    run(root, tmp_path / "clean.h5", size=SIZE, workers=2)
    assert_same_dataset(tmp_path / "clean.h5", output)

    with h5py.File(partial, "w") as file:   # a partial file of other settings
        file.attrs["fingerprint"] = "something else"
    run(root, output, size=SIZE, workers=2)
    assert "made from other files or settings" in capsys.readouterr().err


def tree_with_blocks(tmp_path, rng, monkeypatch):
    """A tree and blocks of 4 files, so that it takes several blocks."""
    monkeypatch.setattr(prepare, "BLOCK", 4)
    root = tmp_path / "imagenet"
    return root, imagetree.build(str(root), rng)


def assert_same_dataset(first, second):
    with h5py.File(first, "r") as a, h5py.File(second, "r") as b:
        names = []
        a.visit(names.append)
        other = []
        b.visit(other.append)
        assert sorted(names) == sorted(other)
        for name in names:
            if isinstance(a[name], h5py.Dataset):
                np.testing.assert_array_equal(a[name][()], b[name][()], err_msg=name)
        assert dict(a.attrs) == dict(b.attrs)
