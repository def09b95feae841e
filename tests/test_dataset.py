"""The prepared-dataset format: round trip, statistics against a direct computation, and
refusal of incomplete or foreign files."""
import os
import re
from contextlib import closing

import h5py
import numpy as np
import pytest

from convnet.data import dataset
from convnet.data.dataset import Dataset, DatasetError
from convnet.data.loader import colour_offsets


def make(tmp_path, rng, size=8, train=40, val=12):
    images = rng.integers(0, 256, (train, size, size, 3), dtype=np.uint8)
    path = tmp_path / "set.h5"
    dataset.write(path, name="test", train_images=images,
                  train_labels=rng.integers(0, 3, train),
                  val_images=rng.integers(0, 256, (val, size, size, 3), dtype=np.uint8),
                  val_labels=rng.integers(0, 3, val), class_ids=["a", "b", "c"],
                  class_names=["ant", "bee", "cat"])
    return path, images


def test_round_trip_and_statistics(tmp_path, rng):
    path, images = make(tmp_path, rng)
    data = Dataset(path)
    assert (data.image_size, data.classes, data.size("train"), data.size("val")) == (8, 3, 40, 12)
    assert data.class_names == ["ant", "bee", "cat"]
    np.testing.assert_allclose(data.mean, images.mean(axis=0), rtol=1e-6)
    covariance = np.cov(images.reshape(-1, 3).astype(np.float64), rowvar=False, bias=True)
    values, vectors = np.linalg.eigh(covariance)
    np.testing.assert_allclose(data.eigenvalues, values, rtol=1e-9)
    np.testing.assert_allclose(np.abs(data.eigenvectors.T @ vectors), np.eye(3), atol=1e-9)
    chosen = np.array([7, 2, 30, 0])
    np.testing.assert_array_equal(data.images("train", chosen), images[chosen])


def test_statistics_in_batches_equal_one_pass(rng):
    images = rng.integers(0, 256, (50, 4, 4, 3), dtype=np.uint8)
    whole = dataset.image_statistics(images, batch=50)
    pieces = dataset.image_statistics(images, batch=7)
    for a, b in zip(whole, pieces):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


def test_statistics_over_many_exact_blocks_equal_one_pass(rng, monkeypatch):
    """Pixels summed in blocks short enough for exact float64 sums (EXACT_FLOAT_PIXELS): made
    short here, so that a batch spans many blocks, each block's products counted once."""
    images = rng.integers(0, 256, (20, 4, 4, 3), dtype=np.uint8)
    whole = dataset.image_statistics(images, batch=20)
    monkeypatch.setattr(dataset, "EXACT_FLOAT_PIXELS", 7)
    for a, b in zip(whole, dataset.image_statistics(images, batch=20)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


def test_incomplete_and_foreign_files_are_refused(tmp_path, rng):
    path, _ = make(tmp_path, rng)
    with h5py.File(path, "a") as file:
        del file.attrs["complete"]
    with pytest.raises(DatasetError, match="incomplete"):
        Dataset(path)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"JPEG? no")
    with pytest.raises(DatasetError, match="not a readable HDF5"):
        Dataset(junk)
    with pytest.raises(DatasetError, match="no such file"):
        Dataset(tmp_path / "absent.h5")
    with pytest.raises(DatasetError, match=f"dataset {tmp_path}: a folder, not a dataset file$"):
        Dataset(tmp_path)


def test_a_dataset_that_is_a_pipe_is_refused_unopened(tmp_path, pipe):
    fifo = pipe(tmp_path / "set.h5")
    with pytest.raises(DatasetError, match=re.escape(
            f"dataset {fifo}: not a regular file (a pipe, a socket or a device)")):
        Dataset(fifo)


def replace(file, key, array):
    del file[key]
    file[key] = array


@pytest.mark.parametrize("damage,message", [
    (lambda file: file.__delitem__("mean"), r"corrupt or incomplete .*'mean' doesn't exist"),
    (lambda file: file["val/labels"].__setitem__(0, 3),
     r"val labels must lie in \[0, 3\) for its 3 classes; found \d+ to 3"),
    (lambda file: file["train/labels"].__setitem__(1, -1), "train labels must lie in"),
    (lambda file: file["val/images"].resize(11, axis=0), "val holds 11 images but 12 labels"),
    (lambda file: replace(file, "mean", np.zeros((8, 8, 1))),
     r"mean is float64 of shape \(8, 8, 1\), not floating point of shape \(8, 8, 3\)"),
    (lambda file: replace(file, "eigenvectors", np.eye(2)), r"eigenvectors is float64 of shape "
                                                            r"\(2, 2\)"),
    (lambda file: replace(file, "eigenvalues", np.ones(4)), r"eigenvalues is float64 of shape "
                                                            r"\(4,\)"),
    (lambda file: replace(file, "val/images", np.zeros((12, 9, 9, 3), np.uint8)),
     r"val holds images of shape \(12, 9, 9, 3\) and labels of shape \(12,\), not \(N, 8, 8, "
     r"3\) and \(N,\)"),
    (lambda file: replace(file, "train/labels", np.zeros((40, 1), np.int32)),
     r"train holds images of shape \(40, 8, 8, 3\) and labels of shape \(40, 1\)"),
    (lambda file: replace(file, "class_ids", np.arange(3)), "class_ids is not a list of strings"),
    (lambda file: replace(file, "class_names", np.array(["ant"], dtype=h5py.string_dtype())),
     "3 class ids but 1 class names"),
    (lambda file: replace(file, "val/labels", "abc"), r"labels of shape \(\), not"),
    (lambda file: replace(file, "eigenvalues", 3.0), r"eigenvalues is float64 of shape \(\), "
                                                     r"not floating point of shape \(3,\)"),
    (lambda file: replace(file, "mean", np.zeros((8, 8, 3), "S8")), r"mean is \|S8 of shape "),
    (lambda file: replace(file, "eigenvalues", np.ones(3, np.int64)), "eigenvalues is int64 "),
    (lambda file: replace(file, "train/images", np.zeros((40, 8, 8, 3), np.float32)),
     "train holds float32 images and int32 labels, not uint8 and integers"),
    (lambda file: replace(file, "class_ids", "ant"), "class_ids is not a list of strings"),
    (lambda file: (file.__delitem__("mean"), file.create_group("mean")), "mean is not an array"),
    (lambda file: (file.__delitem__("val/images"), file.create_group("val/images")),
     "val/images is not an array"),
    (lambda file: replace(file, "train/labels", np.zeros(40)),
     "train holds uint8 images and float64 labels, not uint8 and integers"),
], ids=["mean missing", "a label past the classes", "a negative label", "images and labels apart",
        "mean of another shape", "eigenvectors of another shape", "eigenvalues of another shape",
        "val images of another size", "labels not a vector", "class ids not strings",
        "class names too few", "labels one value", "eigenvalues one value", "mean of strings",
        "eigenvalues whole numbers", "images not bytes", "class ids one string", "mean a group",
        "images a group", "labels not integers"])
def test_a_damaged_dataset_is_refused_when_opened(tmp_path, rng, damage, message):
    """What would stop a run mid-epoch (a label past the classes, an array missing) is found
    when the file is opened, in one line naming it."""
    path, _ = make(tmp_path, rng)
    with h5py.File(path, "a") as file:
        damage(file)
    with pytest.raises(DatasetError, match=message) as refused:
        Dataset(path)
    assert str(refused.value).startswith(f"dataset {path}: ")
    assert "\n" not in str(refused.value)


def test_labels_past_the_classes_or_names_apart_from_ids_are_not_written(tmp_path, rng):
    """A dataset every reader would refuse is refused by its writer, and leaves no file."""
    images = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    common = dict(name="t", train_images=images, val_images=images, class_ids=["a", "b"])
    with pytest.raises(ValueError, match=r"val labels must lie in \[0, 2\) for its 2 classes; "
                                         r"found 0 to 2"):   # the first label past them
        dataset.write(tmp_path / "a.h5", train_labels=np.zeros(4), class_names=["A", "B"],
                      val_labels=np.array([0, 1, 2, 0]), **common)
    with pytest.raises(ValueError, match=r"train labels must lie in \[0, 2\) for its 2 classes; "
                                         r"found -1 to 1"):
        dataset.write(tmp_path / "a.h5", train_labels=np.array([0, -1, 1, 0]),
                      val_labels=np.zeros(4), class_names=["A", "B"], **common)
    with pytest.raises(ValueError, match="val labels must be whole numbers"):
        dataset.write(tmp_path / "a.h5", train_labels=np.zeros(4), class_names=["A", "B"],
                      val_labels=np.array([0, 1.5, 1, 0]), **common)
    with pytest.raises(ValueError, match="2 class ids but 1 class names"):
        dataset.write(tmp_path / "a.h5", train_labels=np.zeros(4), val_labels=np.zeros(4),
                      class_names=["A"], **common)
    assert os.listdir(tmp_path) == []


def test_a_split_of_no_images_is_written_and_read(tmp_path, rng):
    images = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    dataset.write(tmp_path / "a.h5", name="t", train_images=images, train_labels=np.zeros(4),
                  val_images=images[:0], val_labels=np.zeros(0), class_ids=["a"],
                  class_names=["A"])
    with closing(Dataset(tmp_path / "a.h5")) as data:
        assert (data.size("train"), data.size("val")) == (4, 0)


def test_grey_images_have_no_negative_eigenvalue(rng):
    """Grey images (Fashion-MNIST's, R = G = B) have a colour covariance of rank 1: its two zero
    eigenvalues come out of the solver a little either side of 0, and a negative one would make
    the released code's noise √λ NaN. They are clipped at 0."""
    for _ in range(16):
        grey = rng.integers(0, 256, (50, 8, 8, 1), dtype=np.uint8).repeat(3, axis=3)
        _, eigenvalues, eigenvectors = dataset.image_statistics(grey)
        assert (eigenvalues >= 0).all(), eigenvalues
        alphas = rng.normal(0, 0.1, (4, 3))
        assert np.isfinite(colour_offsets(alphas, eigenvalues, eigenvectors,
                                          "sqrt-eigenvalue-div-1.1")).all()


def test_overwritten_hdf5_structures_are_refused_in_one_line(tmp_path, rng):
    path, _ = make(tmp_path, rng)
    data = bytearray(path.read_bytes())
    data[2000:2000 + 20_000] = bytes(20_000)    # HDF5's own tables, after the superblock
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=f"dataset {path}: ") as refused:
        Dataset(path)
    assert "\n" not in str(refused.value)


def test_failed_write_leaves_the_file_before_it_and_nothing_else(tmp_path, rng, monkeypatch):
    """Refused arrays write nothing; a write that fails half-way (its images written, then an
    error) leaves the dataset that was there, whole, and no temporary file."""
    images = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    good = dict(name="good", train_images=images, train_labels=np.zeros(4),
                val_images=images[:2], val_labels=np.zeros(2), class_ids=["a"], class_names=["a"])
    with pytest.raises(ValueError, match=r"val images must be uint8 of shape \(N, 8, 8, 3\)"):
        dataset.write(tmp_path / "bad.h5", **{**good, "val_images": np.zeros((2, 9, 8, 3),
                                                                          np.uint8)})
    assert list(tmp_path.iterdir()) == []
    dataset.write(tmp_path / "set.h5", **good)
    before = (tmp_path / "set.h5").read_bytes()

    def failing(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(dataset, "write_classes", failing)
    with pytest.raises(OSError, match="disk full"):
        dataset.write(tmp_path / "set.h5", **{**good, "name": "new"})
    assert os.listdir(tmp_path) == ["set.h5"]
    assert (tmp_path / "set.h5").read_bytes() == before
