"""Fashion-MNIST conversion: IDX parsing (and its errors) on files written here, then the real
files of Debian's dataset-fashion-mnist package."""
import gzip
import os
import re

import numpy as np
import pytest

from convnet import atomic
from convnet.data import fashion_mnist
from convnet.data.dataset import Dataset
from fashion import needs_fashion_mnist


def write_idx(path, magic, array):
    header = np.array([magic, *array.shape], dtype=">u4").tobytes()
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_read_idx_round_trip_and_errors(tmp_path, rng):
    images = rng.integers(0, 256, (5, 28, 28))
    write_idx(tmp_path / "i.gz", 0x803, images)
    np.testing.assert_array_equal(fashion_mnist.read_idx(tmp_path / "i.gz", 0x803, 3), images)
    with pytest.raises(ValueError, match="not an IDX file"):
        fashion_mnist.read_idx(tmp_path / "i.gz", 0x801, 1)
    with gzip.open(tmp_path / "i.gz", "rb") as handle:
        data = handle.read()
    with gzip.open(tmp_path / "short.gz", "wb") as handle:
        handle.write(data[:-10])
    with pytest.raises(ValueError, match="truncated"):
        fashion_mnist.read_idx(tmp_path / "short.gz", 0x803, 3)
    compressed = (tmp_path / "i.gz").read_bytes()
    (tmp_path / "cut.gz").write_bytes(compressed[:len(compressed) // 2])   # the stream cut off
    with pytest.raises(ValueError, match=r"cut.gz: not a readable gzip file"):
        fashion_mnist.read_idx(tmp_path / "cut.gz", 0x803, 3)
    (tmp_path / "plain.gz").write_bytes(b"IDX?")
    with pytest.raises(ValueError, match=r"plain.gz: not a readable gzip file"):
        fashion_mnist.read_idx(tmp_path / "plain.gz", 0x803, 3)
    with gzip.open(tmp_path / "tiny.gz", "wb") as handle:
        handle.write(b"junk")
    with pytest.raises(ValueError, match=r"tiny.gz: too short for an IDX header"):
        fashion_mnist.read_idx(tmp_path / "tiny.gz", 0x803, 3)


@pytest.mark.parametrize("output,message", [
    ("", "must name a file, not a folder"), (".", "must name a file, not a folder"),
    ("newdir/", "must name a file, not a folder"),
    ("afile/out.h5", "afile is a file, not a folder")])
def test_an_output_that_cannot_be_written_is_refused_before_the_work(tmp_path, output,
                                                                       message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    with pytest.raises(ValueError, match=message):
        fashion_mnist.prepare(str(tmp_path / "no-source"), output)


def test_missing_source_names_the_package(tmp_path):
    assert fashion_mnist.main(["--source", str(tmp_path), "--output",
                               str(tmp_path / "out.h5")]) == 2
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        fashion_mnist.prepare(str(tmp_path), str(tmp_path / "out.h5"))
    assert not (tmp_path / "out.h5").exists()


def test_the_commands_lines_show_their_names(tmp_path, capsys, monkeypatch):
    """A source or output whose name holds an escape sequence, a newline or a byte that is not
    UTF-8: shown in the command's lines (convnet.errors.shown), not driving the terminal nor
    breaking the line."""
    odd = os.fsdecode(b"\x1b[31m\n\xff")
    assert fashion_mnist.main(["--source", str(tmp_path / odd), "--output",
                               str(tmp_path / "fm.h5")]) == 2
    assert capsys.readouterr().err.startswith(f"error: Fashion-MNIST not found in {tmp_path}/"
                                              f"\\x1b[31m\\n\\xff (missing ")
    for split, count in (("train", 2), ("val", 1)):
        images_file, labels_file = fashion_mnist.FILES[split]
        write_idx(tmp_path / images_file, 0x803, np.zeros((count, 28, 28)))
        write_idx(tmp_path / labels_file, 0x801, np.arange(count))
    output = ["--source", str(tmp_path), "--output", str(tmp_path / f"fm{odd}.h5")]
    assert fashion_mnist.main(output) == 0
    assert capsys.readouterr().out == f"wrote {tmp_path}/fm\\x1b[31m\\n\\xff.h5\n"

    def stopped(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(fashion_mnist, "prepare", stopped)
    assert fashion_mnist.main(output) == 130
    assert capsys.readouterr().err == (f"interrupted: {tmp_path}/fm\\x1b[31m\\n\\xff.h5 is as it "
                                       f"was\n")


def test_a_ctrl_c_after_the_output_is_renamed_into_place_says_it_was_written(
        tmp_path, monkeypatch, capsys):
    """The rename is followed by a sync of the folder, where a Ctrl-C may land: the output
    is then the new one, whole."""
    for split, count in (("train", 2), ("val", 1)):
        images_file, labels_file = fashion_mnist.FILES[split]
        write_idx(tmp_path / images_file, 0x803, np.zeros((count, 28, 28)))
        write_idx(tmp_path / labels_file, 0x801, np.arange(count))
    output = tmp_path / "fm.h5"
    output.write_bytes(b"an older file")

    def interrupted(folder):
        raise KeyboardInterrupt
    monkeypatch.setattr(atomic, "_sync_folder", interrupted)
    assert fashion_mnist.main(["--source", str(tmp_path), "--output", str(output)]) == 130
    assert capsys.readouterr().err == f"interrupted: {output} was written whole\n"
    assert Dataset(str(output)).size("train") == 2


@needs_fashion_mnist
def test_real_fashion_mnist(tmp_path):
    path = fashion_mnist.prepare(output=str(tmp_path / "fm.h5"))
    data = Dataset(path)
    assert (data.image_size, data.size("train"), data.size("val"), data.classes) == \
        (32, 60000, 10000, 10)
    assert data.class_names[9] == "Ankle boot"
    labels = data.labels("train")
    assert np.bincount(labels).tolist() == [6000] * 10
    images = data.images("train", np.arange(100))
    assert (images[:, :2] == 0).all() and (images[:, :, -2:] == 0).all()     # the padding
    assert (images[..., 0] == images[..., 2]).all()                          # grey as RGB
    raw = fashion_mnist.read_idx(os.path.join(fashion_mnist.DEBIAN_SOURCE,
                                              fashion_mnist.FILES["train"][0]), 0x803, 3)
    np.testing.assert_array_equal(images[:, 2:30, 2:30, 1], raw[:100])


def test_each_image_keeps_its_own_label(tmp_path):
    # each image's corner pixel encodes its label, so a shuffled pairing shows
    splits = {"train": [3, 1, 4, 1, 5, 9, 2, 6], "val": [0, 7, 8, 2, 8]}
    for split, labels in splits.items():
        images = np.zeros((len(labels), 28, 28), np.uint8)
        images[:, 0, 0] = np.array(labels) * 20 + 1
        images_file, labels_file = fashion_mnist.FILES[split]
        write_idx(tmp_path / images_file, 0x803, images)
        write_idx(tmp_path / labels_file, 0x801, np.array(labels))
    data = Dataset(fashion_mnist.prepare(str(tmp_path), str(tmp_path / "fm.h5")))
    for split, labels in splits.items():
        stored = data.images(split, np.arange(len(labels)))
        pad = fashion_mnist.PAD
        assert data.labels(split).tolist() == labels
        assert ((stored[:, pad, pad, 0] - 1) // 20).tolist() == labels


def test_a_label_past_the_classes_is_refused_naming_its_file(tmp_path, capsys):
    for split, labels in (("train", [1, 2]), ("val", [3, 10])):
        images_file, labels_file = fashion_mnist.FILES[split]
        write_idx(tmp_path / images_file, 0x803, np.zeros((2, 28, 28), np.uint8))
        write_idx(tmp_path / labels_file, 0x801, np.array(labels))
    output = tmp_path / "fm.h5"
    assert fashion_mnist.main(["--source", str(tmp_path), "--output", str(output)]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / labels_file}: label 10 is past the 10 "
                                       f"classes\n")
    assert not output.exists()


@pytest.mark.parametrize("shape", [(2, 10, 10), (0, 28, 28)])
def test_images_not_fashion_mnists_are_refused_naming_their_file(tmp_path, capsys, shape):
    for split in ("train", "val"):
        images_file, labels_file = fashion_mnist.FILES[split]
        write_idx(tmp_path / images_file, 0x803, np.zeros(shape, np.uint8))
        write_idx(tmp_path / labels_file, 0x801, np.ones(shape[0], np.uint8))
    output = tmp_path / "fm.h5"
    assert fashion_mnist.main(["--source", str(tmp_path), "--output", str(output)]) == 2
    images_file = tmp_path / fashion_mnist.FILES["train"][0]
    assert capsys.readouterr().err == (f"error: {images_file}: holds {shape[0]} images of "
                                       f"{shape[1]}×{shape[2]} pixels; Fashion-MNIST's are "
                                       f"28×28\n")
    assert not output.exists()


def test_a_split_of_more_images_than_labels_is_refused_naming_its_folder(tmp_path, capsys):
    for split, count in (("train", 3), ("val", 2)):
        images_file, labels_file = fashion_mnist.FILES[split]
        write_idx(tmp_path / images_file, 0x803, np.zeros((count, 28, 28), np.uint8))
        write_idx(tmp_path / labels_file, 0x801, np.array([1, 2]))
    output = tmp_path / "fm.h5"
    assert fashion_mnist.main(["--source", str(tmp_path), "--output", str(output)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path}: train has 3 images but 2 labels\n"
    assert not output.exists()


README = "/usr/share/doc/dataset-fashion-mnist/README.md.gz"


@pytest.mark.skipif(not os.path.isfile(README), reason=f"{README} is not installed "
                                                        f"(apt-get install dataset-fashion-mnist)")
def test_class_names_are_the_datasets_own_labels():
    """A prediction prints the name at its label's index: the names must be the dataset's own,
    in its order, as its README (Debian's copy of Zalando's) tables them."""
    with gzip.open(README, "rt", encoding="utf-8") as handle:
        labels = handle.read().split("### Labels", 1)[1].split("\n## ", 1)[0]
    table = re.findall(r"^\| (\d+) \| (.+?) \|$", labels, re.MULTILINE)
    assert [int(label) for label, _ in table] == list(range(10))
    assert [name for _, name in table] == list(fashion_mnist.CLASS_NAMES)
