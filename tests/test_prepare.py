"""prepare: an ILSVRC-2012-layout tree of real JPEGs and bad files → the HDF5 format; the bad
files reported, the statistics against NumPy, one-line errors, interruption and resumption."""
import errno
import os
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys

import h5py
import numpy as np
import pytest
import tqdm
from PIL import Image, JpegImagePlugin

import imagetree
from convnet.data import ilsvrc, prepare
from convnet.data.dataset import Dataset, DatasetError
from convnet.stopping import Stopped

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


def test_image_is_central_square_of_shorter_side(tmp_path, rng, monkeypatch):
    """A large photograph (draft mode used, which decodes at a reduced scale no smaller than
    the stored size) against a plain full-size resize and crop."""
    photo = imagetree.photographs()[0]                      # 640×427
    path = tmp_path / "photo.JPEG"
    path.write_bytes(imagetree.jpeg_bytes(photo, quality=95))
    decoded_sizes, draft = [], JpegImagePlugin.JpegImageFile.draft

    def recorded_draft(image, *args):
        result = draft(image, *args)
        decoded_sizes.append(image.size)
        return result
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", recorded_draft)
    pixels, note = prepare.load_image(str(path), 128)
    assert decoded_sizes == [(320, 214)]   # 1/2 scale: 1/4 would be 107 rows, under 128
    assert note is None and pixels.shape == (128, 128, 3) and pixels.dtype == np.uint8
    decoded = Image.open(path).convert("RGB")
    width = round(decoded.width * 128 / decoded.height)
    resized = np.asarray(decoded.resize((width, 128), Image.BILINEAR), np.float64)
    left = (width - 128) // 2
    difference = np.abs(resized[:, left:left + 128] - pixels)
    assert difference.mean() < 4, difference.mean()        # draft decoding and rounding only


def test_bad_inputs_get_one_line(tmp_path, capsys, monkeypatch):
    root = tmp_path / "r"

    def refused(path, message, *options, before_work=True):
        """prepare's refusal in one line; its check (make imagenet's, before the set-up) gives
        the same where prepare refuses before its work, and passes what only the work finds."""
        arguments = [str(path), "--output", str(tmp_path / "o.h5"), *options]
        assert prepare.main(arguments) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and message in error, (message, error)
        assert ilsvrc.main(arguments) == (2 if before_work else 0)
        assert capsys.readouterr().err == (error if before_work else "")

    # The output, before the images are read: here there are none to read
    (tmp_path / "afile").write_text("")
    refused(tmp_path / "absent", f"--output {tmp_path}/afile/x.h5: {tmp_path}/afile is a file",
            "--output", str(tmp_path / "afile" / "x.h5"))
    refused(tmp_path / "absent", f"--output {str(tmp_path)!r}: must name a file, not a folder",
            "--output", str(tmp_path))
    refused(tmp_path / "absent", "--output '': must name a file", "--output", "")
    long = str(tmp_path / ("o" * 250 + ".h5"))   # its work's file, named .partial, would not fit
    refused(tmp_path / "absent", f"--output {long}: a name of 261 bytes (with .partial), longer "
                                 f"than the 255", "--output", long)
    # What is in the partial file's place, neither resumed nor replaced (HDF5 wrote its error)
    (tmp_path / "o.h5.partial").mkdir()
    refused(tmp_path / "absent", f"{tmp_path}/o.h5.partial: a folder, where the work for "
                                 f"{tmp_path}/o.h5 goes; move it away")
    os.rmdir(tmp_path / "o.h5.partial")
    os.mkfifo(tmp_path / "o.h5.partial")
    refused(tmp_path / "absent", f"{tmp_path}/o.h5.partial: not a regular file (a pipe, a "
                                 f"socket or a device), where the work for {tmp_path}/o.h5 goes")
    os.remove(tmp_path / "o.h5.partial")
    # A partial file another prepare of the same output holds (HDF5's lock: it said "cannot
    # resume ... starting again", then "Resource temporarily unavailable"), or one this user
    # may not write (as root, os.access sees none: a stand-in for it)
    with h5py.File(tmp_path / "o.h5.partial", "w"):
        refused(tmp_path / "absent", f"{tmp_path}/o.h5.partial: in use by another process "
                                     f"(another prepare of {tmp_path}/o.h5?)")
    with h5py.File(tmp_path / "o.h5.partial", "r"):   # a reader too: a new one would empty it
        refused(tmp_path / "absent", f"{tmp_path}/o.h5.partial: in use by another process")
    with monkeypatch.context() as patch:
        partial = str(tmp_path / "o.h5.partial")
        access = os.access
        patch.setattr(os, "access", lambda path, mode: path != partial and access(path, mode))
        refused(tmp_path / "absent", f"{partial}: not readable and writable by this user, where "
                                     f"the work for {tmp_path}/o.h5 goes")
    os.remove(tmp_path / "o.h5.partial")
    refused(tmp_path / "absent", "--size 0: must be a positive number of pixels", "--size", "0")
    refused(tmp_path / "absent", "--workers 0: must be at least 1", "--workers", "0")
    # A size whose images alone outgrow the memory (a MemoryError, once decoding started); a
    # machine with as much memory as they take goes on to the tree's checks
    refused(tmp_path / "absent", "--size 100000: prepare would hold at least 3799.8 GiB of images "
                                 "at once (2 blocks of 64 per worker, 1 worker), more than this "
                                 "machine's ", "--size", "100000", "--workers", "1")
    held_4096 = (2 * 64 * 3 + 3 * 8) * 4096 ** 2   # 2 blocks of 64 images, the int64 pixel sum
    for pages, message in ((held_4096 // 4096 - 1, "more than this machine's 6.4 GiB of memory: "
                                                   "lower --size or --workers"),
                           (held_4096 // 4096, "absent: no such folder")):
        with monkeypatch.context() as patch:
            patch.setattr(os, "sysconf", {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": pages}.get)
            refused(tmp_path / "absent", message, "--size", "4096", "--workers", "1")
    refused(tmp_path / "absent", "absent: no such folder")
    (tmp_path / "image.png").write_bytes(b"")
    refused(tmp_path / "image.png", "image.png: a file, not the folder of train/ and val/")
    root.mkdir()
    refused(root, "no train/ folder")
    (root / "train").mkdir()
    refused(root, "no class folders")
    (root / "train" / "notes.txt").write_text("x")
    refused(root, "expected only class folders (train/<wnid>/), found file notes.txt")
    os.remove(root / "train" / "notes.txt")
    os.symlink(root / "gone", root / "train" / imagetree.WNIDS[0])   # a class folder moved away
    refused(root, f"found {imagetree.WNIDS[0]} (a broken symbolic link)")
    os.remove(root / "train" / imagetree.WNIDS[0])
    (root / "train" / "cats").mkdir()
    refused(root, "train/cats: not an ILSVRC-2012 wnid")
    os.rmdir(root / "train" / "cats")
    (root / "train" / imagetree.WNIDS[0]).mkdir()
    (root / "train" / imagetree.WNIDS[2]).mkdir()
    with monkeypatch.context() as patch:   # a folder this user may not list (root lists all)
        unlisted, scandir = str(root / "train" / imagetree.WNIDS[2]), os.scandir

        def denied(path):
            if str(path) == unlisted:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
            return scandir(path)
        patch.setattr(os, "scandir", denied)
        refused(root, f"{unlisted}: cannot list it (Permission denied)")
    os.rmdir(root / "train" / imagetree.WNIDS[2])
    refused(root, f"train: one class folder ({imagetree.WNIDS[0]}/); a classifier needs at least 2")
    (root / "train" / imagetree.WNIDS[2]).mkdir()
    refused(root, "no val/ folder")
    (root / "val" / "cats").mkdir(parents=True)
    refused(root, "val/cats: not an ILSVRC-2012 wnid")
    os.rmdir(root / "val" / "cats")
    (root / "val" / imagetree.WNIDS[1]).mkdir()
    (root / "val" / imagetree.WNIDS[1] / "a.JPEG").write_bytes(b"")
    # the labels of a flat val/, which would be read for nothing here
    refused(root, f"--val-labels /x.tsv: labels a flat val/, but {root}/val is sorted into "
                  f"class folders ({imagetree.WNIDS[1]}/), which label its files; leave the "
                  f"flag out", "--val-labels", "/x.tsv")
    refused(root, f"val: none of its 1 file is a validation image of a class in train/ (the "
                  f"first, val/{imagetree.WNIDS[1]}/a.JPEG: class {imagetree.WNIDS[1]} is not in "
                  f"train/)")
    shutil.rmtree(root / "val" / imagetree.WNIDS[1])
    (root / "val" / imagetree.WNIDS[0]).mkdir()
    (root / "val" / "x.JPEG").write_bytes(b"")
    refused(root, "mixes class folders")
    os.rmdir(root / "val" / imagetree.WNIDS[0])
    refused(root, "validation labels /nowhere.tsv: No such file", "--val-labels", "/nowhere.tsv")
    (root / "labels.tsv").write_text("file\tindex\nx.JPEG\tpotato\n")
    refused(root, "line 2: 'potato' is neither a class index nor a wnid", "--val-labels",
            str(root / "labels.tsv"))
    (root / "labels.tsv").write_text("x.JPEG\t0\n\nx.JPEG\t1\n")   # no header, a blank line
    refused(root, "line 3: x.JPEG again (first on line 1)", "--val-labels",
            str(root / "labels.tsv"))
    refused(root, "class table /nowhere.tsv: No such file", "--classes", "/nowhere.tsv")
    # A split that would hold no image, which training refuses: where no val/ file is labelled
    # (a flat val/ of other names than the devkit's) before the work, not after it.
    refused(root, f"{root}/val: none of its 1 file is a validation image of a class in train/ "
                  f"(the first, val/x.JPEG: not listed in ilsvrc2012_val_labels.tsv); "
                  f"--val-labels names a flat val/'s classes")
    labels = ["--val-labels", str(root / "labels.tsv")]
    (root / "labels.tsv").write_text(f"x.JPEG\t{imagetree.WNIDS[0]}\n")
    refused(root, f"{root}/train: not one image could be read (see the skipped files in "
                  f"{tmp_path}/o.h5.partial); once they can be, run the same command with "
                  f"--restart, which reads them again", *labels, before_work=False)
    (root / "train" / imagetree.WNIDS[0] / "a.JPEG").write_bytes(
        imagetree.jpeg_bytes(Image.new("RGB", (8, 8))))
    refused(root, f"{root}/val: not one image could be read", *labels,   # x.JPEG is empty
            "--restart", before_work=False)
    os.remove(root / "val" / "x.JPEG")
    refused(root, f"{root}/val: no files (expected val/<wnid>/*.JPEG or flat val/*.JPEG", *labels)
    assert not (tmp_path / "o.h5").exists()


@pytest.mark.parametrize("earlier", [False, True], ids=["no partial file", "another's"])
def test_a_ctrl_c_before_the_work_says_that_nothing_was_written(tmp_path, rng, monkeypatch,
                                                                capsys, earlier):
    """A Ctrl-C in the scan (minutes on a slow disk's 1.3 million files) said the work so far
    was in a partial file that was not there, or that an earlier run (of other settings, say:
    the scan had not found out) had left, and that the same command would resume it."""
    root = tmp_path / "imagenet"
    imagetree.build(str(root), rng, per_class=1, val_per_class=1)
    if earlier:
        (tmp_path / "o.h5.partial").write_bytes(b"an earlier run's")

    def ctrl_c(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(ilsvrc, "scan", ctrl_c)
    assert prepare.main([str(root), "--output", str(tmp_path / "o.h5")]) == 130
    assert capsys.readouterr().err == ("interrupted before the work, of which nothing was "
                                       "written; run the same command again\n")
    assert sorted(os.listdir(tmp_path)) == ["imagenet"] + ["o.h5.partial"] * earlier


def test_a_partial_file_the_system_refuses_is_one_line(tmp_path, rng, monkeypatch, capsys):
    """HDF5's error for a file it cannot create (a read-only place that os.access, as root,
    does not see) spans lines: one line naming the partial file and the system's reason."""
    root = tmp_path / "imagenet"
    imagetree.build(str(root), rng, per_class=1, val_per_class=1)
    output = tmp_path / "o.h5"

    def refused(path, mode):
        raise PermissionError(errno.EACCES, f"Unable to synchronously create file (unable to "
                                            f"open file: name = '{path}', errno = 13,\n...)")
    monkeypatch.setattr(h5py, "File", refused)
    assert prepare.main([str(root), "--output", str(output), "--size", "16"]) == 2
    assert capsys.readouterr().err == (f"error: {output}.partial: cannot write it (Permission "
                                       f"denied)\n")


def test_unlabelled_flat_val_files_are_skipped_with_reason(tmp_path, rng):
    root = tmp_path / "imagenet"
    imagetree.build(str(root), rng, flat_val=True, per_class=1)
    (root / "val" / "stray.JPEG").write_bytes(imagetree.jpeg_bytes(imagetree.photographs()[1]))
    summary = run(root, tmp_path / "o.h5", size=16, workers=1,
                  val_labels=str(root / "val_labels.tsv"))
    assert "val/stray.JPEG\tnot listed in val_labels.tsv" in summary["skipped"]


def test_validation_folders_of_a_class_train_lacks_are_skipped_with_reason(tmp_path, rng):
    """As a flat val/'s files of such a class are: a class subset of train/ beside the whole
    sorted val/ converts, those files skipped."""
    root = tmp_path / "imagenet"
    imagetree.build(str(root), rng, per_class=1)
    shutil.rmtree(root / "train" / imagetree.WNIDS[2])
    summary = run(root, tmp_path / "o.h5", size=16, workers=1)
    untrained = [line for line in summary["skipped"]
                 if line.startswith(f"val/{imagetree.WNIDS[2]}/")]
    assert untrained and all(line.endswith(f"\tclass {imagetree.WNIDS[2]} is not in train/")
                             for line in untrained)
    assert summary["classes"] == 2 and summary["val"] > 0


def test_a_jpeg_cut_short_in_its_header_is_truncated_too(tmp_path):
    """Pillow says "Truncated File Read" there, "image file is truncated" further on."""
    whole = imagetree.jpeg_bytes(imagetree.photographs()[1])
    (tmp_path / "cut.JPEG").write_bytes(whole[:200])
    assert prepare.load_image(str(tmp_path / "cut.JPEG"), 16) == (None, "skipped: truncated")


def test_tables_without_their_header_line_lose_no_row(tmp_path, rng):
    """A header is told from a row by its fields, so a table without one keeps its first row;
    blank lines (a trailing one, say) are left out."""
    rows = open(ilsvrc.CLASSES, encoding="utf-8").read().splitlines()
    assert rows[0] == "index\twnid\tnames"
    (tmp_path / "classes.tsv").write_text("\n".join(rows[1:]) + "\n\n")
    assert ilsvrc.read_classes(str(tmp_path / "classes.tsv")) == \
        ilsvrc.read_classes(ilsvrc.CLASSES)

    root = tmp_path / "imagenet"
    labels = imagetree.build(str(root), rng, flat_val=True, per_class=1)
    rows = (root / "val_labels.tsv").read_text().splitlines()
    assert rows[0] == "file\tindex"
    (root / "bare.tsv").write_text("\n".join(rows[1:]) + "\n\n")
    summary = run(root, tmp_path / "o.h5", size=16, workers=1, val_labels=str(root / "bare.tsv"))
    assert summary["val"] == sum(path.startswith("val/") for path in labels)
    assert not [line for line in summary["skipped"] if line.startswith("val/")]


def test_sixteen_bit_greyscale_keeps_its_high_byte(tmp_path):
    """Pillow's convert() clips 16-bit greyscale at 255 (a white image): prepare keeps the high
    byte, as Pillow reads 16-bit RGB."""
    grey = np.asarray(imagetree.photographs()[0].convert("L").crop((0, 0, 96, 64)))
    wide = grey.astype(np.uint16) << 8 | (255 - grey)   # low bytes that would round otherwise
    Image.fromarray(grey).save(tmp_path / "grey8.png")
    Image.fromarray(wide).save(tmp_path / "grey16.png")
    pixels, note = prepare.load_image(str(tmp_path / "grey16.png"), 32)
    expected, _ = prepare.load_image(str(tmp_path / "grey8.png"), 32)
    assert note == f"converted: PNG file; {imagetree.PNG16_NOTE} converted to RGB"
    np.testing.assert_array_equal(pixels, expected)


def unsigned_samples(path):
    """The TIFF at `path` (one image, little-endian, as Pillow writes it) with its SampleFormat
    tag saying unsigned, the format's default, which Pillow does not write for mode I."""
    data = bytearray(path.read_bytes())
    assert data[:4] == b"II*\0"
    ifd = struct.unpack_from("<I", data, 4)[0]
    for entry in range(struct.unpack_from("<H", data, ifd)[0]):
        at = ifd + 2 + 12 * entry
        if struct.unpack_from("<H", data, at)[0] == prepare.TIFF_SAMPLE_FORMAT:
            struct.pack_into("<H", data, at + 8, 1)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_thirty_two_bit_greyscale_keeps_its_high_byte(tmp_path, signed):
    """A 32-bit integer TIFF (Pillow's mode I) holds 32 bits a pixel, not 16: its high byte is
    bits 23 to 30 where the samples are signed (as Pillow writes them), 24 to 31 where they are
    unsigned (which Pillow reads as signed: white would be negative)."""
    grey = np.asarray(imagetree.photographs()[0].convert("L").crop((0, 0, 96, 64)))
    Image.fromarray(grey).save(tmp_path / "grey8.png")
    shift = 23 if signed else 24
    wide = ((grey.astype(np.uint32) << shift) | ((1 << shift) - 1)).view(np.int32)
    Image.fromarray(wide).save(tmp_path / "grey32.tif")
    if not signed:
        unsigned_samples(tmp_path / "grey32.tif")
    pixels, note = prepare.load_image(str(tmp_path / "grey32.tif"), 32)
    expected, _ = prepare.load_image(str(tmp_path / "grey8.png"), 32)
    assert note == "converted: TIFF file; integer greyscale (I) converted to RGB"
    np.testing.assert_array_equal(pixels, expected)


def test_an_exif_orientation_is_noted_and_the_pixels_stored_as_encoded(tmp_path):
    """torchvision's ImageNet reader takes the pixels as encoded, so prepare does too, and says
    so for each such file."""
    name = "rotated.JPEG"
    rotated = imagetree.bad_files(imagetree.photographs()[0].crop((0, 0, 120, 80)))[name]
    (tmp_path / name).write_bytes(rotated)
    Image.open(tmp_path / name).save(tmp_path / "plain.JPEG", quality=90)   # the same pixels,
    pixels, note = prepare.load_image(str(tmp_path / name), 32)             # no EXIF
    expected, plain_note = prepare.load_image(str(tmp_path / "plain.JPEG"), 32)
    assert note == "converted: EXIF orientation 6 not applied (stored as encoded)"
    assert plain_note is None
    assert np.abs(pixels.astype(int) - expected).mean() < 1   # the re-encoding's rounding only


def test_a_file_the_system_will_not_read_is_skipped_as_such_not_as_undecodable(tmp_path,
                                                                            monkeypatch):
    """Permission denied (which root, running the tests, is never) or an I/O error: the system's
    error, which Pillow's open passes on, not a decoder's."""
    path = tmp_path / "locked.JPEG"
    path.write_bytes(imagetree.jpeg_bytes(imagetree.photographs()[0]))

    def refused(opened, *_):
        raise PermissionError(errno.EACCES, "Permission denied", opened)
    monkeypatch.setattr(Image, "open", refused)
    assert prepare.load_image(str(path), 32) == (None, "skipped: cannot read it (Permission "
                                                       "denied)")


def test_prepares_lines_show_their_names(tmp_path, rng, capsys, monkeypatch):
    """A folder, an output and a --name that a newline, an escape sequence or a byte that is
    not UTF-8 is in: its lines one each (its progress bar's too), and a name the dataset
    cannot hold refused before the work, not when it is stored at the end of it."""
    assert prepare.main([str(tmp_path / "tr\nee"), "--output", str(tmp_path / "o.h5")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path}/tr\\nee: no such folder\n"
    root = tmp_path / "imagenet"
    imagetree.build(str(root), rng, per_class=1, val_per_class=1)
    output = tmp_path / "o\x1b[31m.h5"
    common = [str(root), "--output", str(output), "--size", str(SIZE), "--workers", "1"]
    assert prepare.main([*common, "--name", os.fsdecode(b"na\xffme")]) == 2
    assert capsys.readouterr().err == ("error: --name na\\xffme: not UTF-8 text, which the "
                                       "dataset's name attribute holds\n")
    assert os.listdir(tmp_path) == ["imagenet"]
    shown = f"{tmp_path}/o\\x1b[31m.h5"
    (tmp_path / "o\x1b[31m.h5.partial").write_bytes(b"half an HDF5 file")
    bars = []

    class Bar(tqdm.tqdm):
        def __init__(self, *args, **options):
            bars.append(options["desc"])
            super().__init__(*args, **options)
    monkeypatch.setattr(tqdm, "tqdm", Bar)
    assert prepare.main(common) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"wrote {shown}: 3 classes")
    assert err.startswith(f"{shown}.partial: cannot resume (unreadable")
    assert bars == ["prepare o\\x1b[31m.h5"]

    (tmp_path / "o\x1b[31m.h5.partial").write_bytes(b"a stopped run's work")
    for stop, status in [(Stopped(signal.SIGINT), 130), (Stopped(signal.SIGTERM), 143)]:
        def stopped(*args, **options):
            raise stop
        monkeypatch.setattr(prepare, "prepare", stopped)
        assert prepare.main(common) == status
        assert capsys.readouterr().err == (f"interrupted: the work so far is in {shown}.partial; "
                                           f"run the same command again to resume\n")
        assert prepare.main([*common, "--restart"]) == status   # which would start it again
        assert capsys.readouterr().err == (f"interrupted: the work so far is in {shown}.partial; "
                                           f"run it again without --restart to resume\n")


def test_every_entry_of_a_class_folder_is_read_or_reported(tmp_path, rng, capsys):
    """A folder, a broken link, a pipe and a name that is not UTF-8 among the files, and a class
    with none: each reported, none opened as an image (a pipe would wait for ever), none a
    crash (the name is in the run's fingerprint and its report)."""
    root = tmp_path / "imagenet"
    imagetree.build(str(root), rng, per_class=2)
    folder = root / "train" / imagetree.WNIDS[1]
    (folder / "nested").mkdir()
    photo = imagetree.jpeg_bytes(imagetree.photographs()[1])
    (folder / "nested" / "inside.JPEG").write_bytes(photo)
    os.symlink(folder / "gone.JPEG", folder / "broken.JPEG")
    os.mkfifo(folder / "pipe.JPEG")
    grey = imagetree.photographs()[1].convert("L")
    (folder / os.fsdecode(b"caf\xe9.JPEG")).write_bytes(imagetree.jpeg_bytes(grey))
    empty = root / "train" / imagetree.WNIDS[2]
    shutil.rmtree(empty)
    empty.mkdir()
    summary = run(root, tmp_path / "o.h5", size=16, workers=1)
    here = f"train/{imagetree.WNIDS[1]}"
    for line in (f"{here}/nested\ta folder: only the files directly in the folder are read",
                 f"{here}/broken.JPEG\ta broken symbolic link",
                 f"{here}/pipe.JPEG\tnot a regular file (a pipe, a socket or a device)"):
        assert line in summary["skipped"]
    assert f"{here}/caf\\xe9.JPEG\tgreyscale (L) converted to RGB" in summary["converted"]
    readable_bad_files = sum(kind == "converted" for kind, _ in imagetree.BAD.values())
    assert summary["train"] == 2 * 2 + readable_bad_files + 1   # + café
    assert summary["untrained"] == [imagetree.WNIDS[2]]

    prepare.report(summary)
    warning = capsys.readouterr().err
    assert warning == (f"warning: 1 of the 3 classes have no training image (an empty folder, "
                       f"or every file skipped), so training cannot learn them: "
                       f"{imagetree.WNIDS[2]}\n")


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


def test_a_full_disk_stops_before_the_block_and_resumes(tmp_path, rng, monkeypatch, capsys):
    """HDF5 writes that fail for want of space leave the file broken (and h5py crashing as it
    closes it): the block that the disk may not hold is refused before it is written."""
    root, _ = tree_with_blocks(tmp_path, rng, monkeypatch)
    run(root, tmp_path / "clean.h5", size=SIZE, workers=2)
    output = tmp_path / "out.h5"
    disk_usage, folders = shutil.disk_usage, []

    def full_at_the_second_block(folder):   # the first look is for all the images
        folders.append(folder)
        usage = disk_usage(folder)
        return usage._replace(free=0) if len(folders) == 3 else usage
    monkeypatch.setattr(shutil, "disk_usage", full_at_the_second_block)
    with pytest.raises(prepare.PrepareError) as refused:
        run(root, output, size=SIZE, workers=2)
    files = sum(len(names) for _, _, names in os.walk(root))
    said = re.fullmatch(rf"{tmp_path}/out.h5.partial: 0 MiB free on its disk, too little for "
                        rf"the next block \(\d+ MiB\); free (\d+) MiB more, room for the "
                        rf"{files - prepare.BLOCK} images left, and run the same command to resume",
                        str(refused.value))
    assert said, refused.value
    assert folders == [str(tmp_path)] * 3
    # that much freed, the resume (which asks room for every image left) goes on
    freed = int(said.group(1)) << 20
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda folder: disk_usage(folder)._replace(free=freed))
    run(root, output, size=SIZE, workers=2)
    assert "resuming after 1 of" in capsys.readouterr().err
    assert_same_dataset(tmp_path / "clean.h5", output)


def test_a_finished_partial_file_killed_before_its_rename_is_named_as_one(tmp_path, rng,
                                                                          monkeypatch, capsys):
    """Killed between its last write and its rename, the partial file is finished, and its
    record of what it was made from is gone with its progress: said so, and made again."""
    root, _ = tree_with_blocks(tmp_path, rng, monkeypatch)
    output = tmp_path / "out.h5"
    run(root, output, size=SIZE, workers=1)
    shutil.copy(output, tmp_path / "out.h5.partial")
    capsys.readouterr()
    run(root, output, size=SIZE, workers=1)
    assert capsys.readouterr().err == (f"{output}.partial: cannot resume (finished, but not "
                                       f"renamed; what it was made from is no longer recorded "
                                       f"in it); starting again\n")


@pytest.mark.parametrize("partial", ["resumable", "another's"])
def test_a_refusal_for_want_of_space_says_nothing_of_resuming_or_starting_again(
        tmp_path, rng, monkeypatch, capsys, partial):
    """The space is checked before the line that says the work resumes, or starts again over
    a partial file it cannot resume, which the refusal leaves as it was."""
    root, _ = tree_with_blocks(tmp_path, rng, monkeypatch)
    output = tmp_path / "out.h5"
    if partial == "resumable":
        store = prepare.store_block

        def stop_after_one_block(file, *block):
            store(file, *block)
            raise KeyboardInterrupt   # as a Ctrl-C would
        monkeypatch.setattr(prepare, "store_block", stop_after_one_block)
        with pytest.raises(KeyboardInterrupt):
            run(root, output, size=SIZE, workers=1)
        monkeypatch.setattr(prepare, "store_block", store)
    else:
        (tmp_path / "out.h5.partial").write_bytes(b"another run's")
    before = (tmp_path / "out.h5.partial").read_bytes()
    disk_usage = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: disk_usage(folder)._replace(free=0))
    capsys.readouterr()
    with pytest.raises(prepare.PrepareError, match="too little for the"):
        run(root, output, size=SIZE, workers=1)
    assert capsys.readouterr().err == ""
    assert (tmp_path / "out.h5.partial").read_bytes() == before


def test_a_file_size_limit_stops_before_the_block_and_resumes(tmp_path, rng):
    """A limit the disk's free space does not show (a quota; here the process's file-size
    limit) is met before HDF5 writes: HDF5, whose writes then fail, leaves its file unreadable
    and every stored block lost. The work stops in one line, and goes on with the limit gone."""
    root = tmp_path / "imagenet"
    imagetree.build(str(root), rng, per_class=300, val_per_class=20)   # 15 blocks of 64 files
    clean, output = tmp_path / "clean.h5", tmp_path / "out.h5"
    run(root, clean, size=128, workers=2)
    command = [sys.executable, "-m", "convnet.data.prepare", str(root), "--output", str(output),
               "--size", "128", "--workers", "2"]
    # the room a block may take (20 MiB, an upper bound), and about two blocks' images: the
    # 47 MiB of images outgrow it
    limit = prepare.space_for(64, 128 * 128 * 3) + (6 << 20)
    limited = subprocess.run(command, capture_output=True, text=True, preexec_fn=lambda: (
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))))
    assert limited.returncode == 2, limited.stderr
    assert re.fullmatch(rf"error: {output}.partial: it cannot grow by the \d+ MiB it may take "
                        rf"next \(File too large\); make room for them \(a quota, a file size "
                        rf"limit\) and run the same command to resume\n", limited.stderr)
    resumed = subprocess.run(command, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert re.match(r".*: resuming after [1-9]\d* of \d+ blocks\n", resumed.stderr)
    assert_same_dataset(clean, output)


def test_a_disk_too_small_for_all_the_images_is_refused_before_the_work(tmp_path, rng,
                                                                         monkeypatch):
    """Its free space against every image left to store (each file counted as one): found
    before the work, not when the disk fills hours in; a resumed run counts only the images
    its partial file lacks."""
    root, _ = tree_with_blocks(tmp_path, rng, monkeypatch)
    files = sum(len(names) for _, _, names in os.walk(root))
    output, disk_usage = tmp_path / "out.h5", shutil.disk_usage
    # each image, its label and chunk index entry; a chunk begun, HDF5's other metadata
    per_image, overhead = SIZE * SIZE * 3 + 4 + 128, 2 * prepare.CHUNK_BYTES + (16 << 20)
    needed = files * per_image + overhead
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda folder: disk_usage(folder)._replace(free=needed - 1))
    with pytest.raises(prepare.PrepareError) as refused:
        run(root, output, size=SIZE, workers=1)
    assert str(refused.value) == (f"{output}.partial: {(needed - 1) / 2 ** 20:.0f} MiB free on "
                                  f"its disk, too little for the {files} images left to store "
                                  f"({needed / 2 ** 20:.0f} MiB); free 1 MiB more and run the "
                                  f"same command again")
    assert not os.path.exists(f"{output}.partial")   # refused before it was made
    store, stored = prepare.store_block, []

    def stop_at_once(*block):
        raise KeyboardInterrupt

    def stop_after_two_blocks(*block):
        if len(stored) == 2:
            raise KeyboardInterrupt   # as a Ctrl-C would
        stored.append(store(*block))
    monkeypatch.setattr(prepare, "store_block", stop_after_two_blocks)
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: disk_usage(folder)._replace(
        free=needed))
    with pytest.raises(KeyboardInterrupt):
        run(root, output, size=SIZE, workers=1)
    # 8 files fewer to store: space for them alone is enough, one byte less is refused
    space_for_the_rest = needed - 8 * per_image
    monkeypatch.setattr(prepare, "store_block", store)
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: disk_usage(folder)._replace(
        free=space_for_the_rest - 1))
    with pytest.raises(prepare.PrepareError, match=f"too little for the {files - 8} images left "
                                                   f"to store .*; free 1 MiB more and run the "
                                                   f"same command to resume"):
        run(root, output, size=SIZE, workers=1)
    # --restart empties the partial file first: its blocks on the disk count as free. A disk
    # of `capacity` bytes but the partial file's:
    def disk_of(capacity):
        def usage(folder):
            partial = f"{output}.partial"
            held = os.stat(partial).st_blocks * 512 if os.path.exists(partial) else 0
            return disk_usage(folder)._replace(free=capacity - held)
        return usage
    monkeypatch.setattr(shutil, "disk_usage", disk_of(needed - 1))
    with pytest.raises(prepare.PrepareError, match=f"too little for the {files} images left to "
                                                   f"store .*; free 1 MiB more and run the same "
                                                   f"command again"):
        run(root, output, size=SIZE, workers=1, restart=True)
    monkeypatch.setattr(shutil, "disk_usage", disk_of(needed))
    monkeypatch.setattr(prepare, "store_block", stop_at_once)
    with pytest.raises(KeyboardInterrupt):   # the work begun: not refused
        run(root, output, size=SIZE, workers=1, restart=True)
    monkeypatch.setattr(prepare, "store_block", store)
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: disk_usage(folder)._replace(
        free=needed))
    run(root, output, size=SIZE, workers=1)
    assert Dataset(str(output)).size("train") > 0


def test_sizes_read_as_a_person_reads_them():
    sizes = (0, 12 << 20, (1 << 30) - 1, 1 << 30, int(249.61 * 2 ** 30))
    assert [prepare.bytes_text(size) for size in sizes] == \
        ["0 MiB", "12 MiB", "1024 MiB", "1.0 GiB", "249.6 GiB"]
    assert [prepare.bytes_text(size, up=True) for size in sizes] == \
        ["0 MiB", "12 MiB", "1024 MiB", "1.0 GiB", "249.7 GiB"]   # enough, once freed


# Runs of prepare that once waited for ever, in a process of their own so that a test fails
# instead. Blocks of 3 megabytes (4 files at 512 pixels), larger than a pipe holds: the first
# pool's stop killed its busy workers, and one killed while it sent its block held the shared
# result pipe's lock, on which the stop then waited (in about half the Ctrl-C runs, so they are
# repeated); a worker that died while sending left the next pool reading half a message.
STOPPED_RUN = """
import functools, multiprocessing, os, signal, sys, time
import numpy as np
import imagetree
from convnet.data import ilsvrc, prepare

REPEATS = 5

def ignores_ctrl_c(pid):
    with open(f"/proc/{pid}/status") as status:
        ignored = next(int(line.split()[1], 16) for line in status if line.startswith("SigIgn:"))
    return ignored >> (signal.SIGINT - 1) & 1

def wait_until_workers_ignore_ctrl_c():
    # A worker still starting has Python's handler: it would die of the Ctrl-C, saying so.
    end = time.monotonic() + 10
    while not all(map(ignores_ctrl_c, (p.pid for p in multiprocessing.active_children()))):
        if time.monotonic() > end:
            sys.exit("the workers did not come to ignore Ctrl-C within 10 s")
        time.sleep(0.01)

def dies(first_file, task):
    if task[3][0][0] == first_file:
        os._exit(9)
    return prepare.process_block(task)

def raises(first_file, task):
    if task[3][0][0] == first_file:
        1 / 0
    return prepare.process_block(task)

def dies_while_sending(first_file, folder, task):
    # Sends its block while the parent stores the first one, so that the pipe fills, and
    # gives its process number to the parent, which kills it then.
    result = prepare.process_block(task)
    if task[3][0][0] == first_file:
        while not os.path.exists(f"{folder}/storing"):
            time.sleep(0.01)
        with open(f"{folder}/sending.tmp", "w") as pid:
            pid.write(str(os.getpid()))
        os.rename(f"{folder}/sending.tmp", f"{folder}/sending")
    return result

def stuck(first_file, parent, folder, task):
    # Never ends its block: Ctrl-C, half a second after the parent stored the second block and
    # went waiting for it.
    if task[3][0][0] != first_file:
        return prepare.process_block(task)
    while not os.path.exists(f"{folder}/stored"):
        time.sleep(0.01)
    time.sleep(0.5)
    os.kill(parent, signal.SIGINT)
    time.sleep(3600)

def kill_the_sender(folder):
    open(f"{folder}/storing", "w").close()
    while not os.path.exists(f"{folder}/sending"):
        time.sleep(0.01)
    time.sleep(0.2)   # to be well into sending
    with open(f"{folder}/sending") as pid:
        os.kill(int(pid.read()), signal.SIGKILL)

def main(how, root, output):
    imagetree.build(root, np.random.default_rng(0), per_class=12)
    prepare.BLOCK = 4
    third = ilsvrc.scan(root, ilsvrc.CLASSES)[2]["train"][8][0]
    print(third, flush=True)
    store, calls = prepare.store_block, []
    def hooked(*args):
        calls.append(1)
        if how == "interrupted" and len(calls) == 2:   # as a terminal's Ctrl-C: to the workers too
            wait_until_workers_ignore_ctrl_c()
            os.killpg(0, signal.SIGINT)
        if how == "terminated" and len(calls) == 2:
            os.killpg(0, signal.SIGTERM)
        if how == "dies while sending" and len(calls) == 1:
            kill_the_sender(os.path.dirname(output))
        store(*args)
        if how == "stuck" and len(calls) == 2:
            open(f"{os.path.dirname(output)}/stored", "w").close()
    prepare.store_block = hooked
    if how == "dies while sending":
        prepare.process_block = functools.partial(dies_while_sending, third,
                                                  os.path.dirname(output))
    elif how == "stuck":
        prepare.process_block = functools.partial(stuck, third, os.getpid(),
                                                  os.path.dirname(output))
    elif how in ("dies", "raises"):
        prepare.process_block = functools.partial(globals()[how], third)
    for attempt in range(REPEATS):
        calls.clear()
        if os.path.exists(f"{os.path.dirname(output)}/stored"):
            os.remove(f"{os.path.dirname(output)}/stored")
        try:
            prepare.prepare(root, output, size=512, workers=4, progress=False, restart=True)
        except KeyboardInterrupt as stop:
            status = 128 + stop.number   # prepare names the signal that stopped it
            continue
        except prepare.PrepareError as error:
            sys.exit(f"error: {error}")
        sys.exit("prepare was not stopped")
    sys.exit(status)

if __name__ == "__main__":
    main(*sys.argv[1:])
"""


def stopped_run(tmp_path, how):
    """(exit status, the third block's first file, stderr) of STOPPED_RUN; fails the test past
    120 s."""
    script = tmp_path / "stopped.py"
    script.write_text(STOPPED_RUN)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [os.path.dirname(__file__), *filter(None, [os.environ.get("PYTHONPATH")])])}
    # A session of its own, so that a timeout ends its fork server and workers too.
    run = subprocess.Popen([sys.executable, str(script), how, str(tmp_path / "imagenet"),
                            str(tmp_path / "out.h5")], env=environment, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = run.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        run.communicate()
        pytest.fail(f"prepare ({how}) did not end within 120 s")
    return run.returncode, stdout.strip(), stderr


@pytest.mark.parametrize("how", ["interrupted", "terminated", "stuck"])
def test_stop_while_workers_send_large_blocks(tmp_path, how):
    """Ctrl-C (the workers ignore it and are ended) or SIGTERM to the process group (it ends the
    workers) at the second block, or Ctrl-C while a stuck worker holds the third: the run stops
    after the second block, saying nothing."""
    status, _, stderr = stopped_run(tmp_path, how)
    assert status == (143 if how == "terminated" else 130) and stderr == "", stderr
    assert not (tmp_path / "out.h5").exists()
    with h5py.File(tmp_path / "out.h5.partial", "r") as partial:
        assert partial.attrs["blocks_done"] == 2


@pytest.mark.parametrize("how", ["dies", "dies while sending"])
def test_a_worker_that_dies_is_an_error_naming_its_block(tmp_path, how):
    status, third, stderr = stopped_run(tmp_path, how)
    assert status == 1
    assert stderr == (f"error: a worker process died (killed, out of memory, or a crash in a "
                      f"decoder) on the block of 4 files that starts at {tmp_path}/imagenet/"
                      f"{third}; the blocks stored so far are in {tmp_path}/out.h5.partial: run "
                      f"the same command again to resume\n")
    assert not (tmp_path / "out.h5").exists()


def test_a_worker_that_raises_shows_its_traceback(tmp_path):
    status, third, stderr = stopped_run(tmp_path, "raises")
    assert status == 1
    assert (f"RuntimeError: converting the block of 4 files that starts at {tmp_path}/imagenet/"
            f"{third}:\nTraceback") in stderr
    assert stderr.rstrip().endswith("ZeroDivisionError: division by zero"), stderr


class TerminatedWorkers:
    """Workers as a SIGTERM sent to the whole process group leaves them, the parent getting it
    too: while they start, the fork server ends; later, the worker of the third block dies."""
    during_start = False

    def __init__(self, count, convert):
        self.convert = convert
        if self.during_start:
            self.terminate()
            raise ConnectionRefusedError(111, "Connection refused")

    def terminate(self):
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)

    def map(self, tasks, ahead, stopped):
        for index, task in enumerate(tasks):
            if index == 2:
                self.terminate()
                raise prepare.WorkerError(index)
            yield self.convert(task)

    def close(self):
        pass


@pytest.mark.parametrize("during_start", [False, True])
def test_workers_ended_by_a_stop_signal_are_a_stop(tmp_path, rng, monkeypatch, during_start):
    root, _ = tree_with_blocks(tmp_path, rng, monkeypatch)
    monkeypatch.setattr(prepare, "BlockWorkers", TerminatedWorkers)
    monkeypatch.setattr(TerminatedWorkers, "during_start", during_start)
    with pytest.raises(Stopped) as stop:
        run(root, tmp_path / "out.h5", size=SIZE, workers=2)
    assert stop.value.number == signal.SIGTERM
    assert not (tmp_path / "out.h5").exists()
    with h5py.File(tmp_path / "out.h5.partial", "r") as partial:
        assert partial.attrs["blocks_done"] == (0 if during_start else 2)


def test_a_second_prepare_of_the_same_output_touches_nothing_of_the_first(tree, tmp_path,
                                                                         monkeypatch, capsys):
    """Two started together both pass the check before either holds OUTPUT: the second is
    refused where it would take the partial file (HDF5 empties a file it is asked to create
    before it tries its lock: the first then wrote "wrote" over a broken file), leaving it as it
    is; one started later is refused by the check, before its scan."""
    root, _ = tree
    output = tmp_path / "o.h5"
    first = tmp_path / "o.h5.partial"
    first.write_bytes(b"the first prepare's blocks")
    with ilsvrc.holding(str(output)):   # the first, converting
        refusal = (f"{output}: another prepare is writing it now (it holds {output}.lock); let "
                   f"it end, or give another --output")
        with monkeypatch.context() as patch:   # its check passed before the first took the lock
            patch.setattr(ilsvrc, "in_use", lambda path: False)
            with pytest.raises(prepare.PrepareError, match=re.escape(refusal)):
                run(root, output, size=SIZE, workers=1)
        assert first.read_bytes() == b"the first prepare's blocks"
        for command in (prepare.main, ilsvrc.main):   # ilsvrc: make imagenet's check alone
            assert command([str(root), "--output", str(output)]) == 2
            assert capsys.readouterr().err == f"error: {refusal}\n"
    first.unlink()
    run(root, output, size=SIZE, workers=1)   # let go: the next one takes it
    assert Dataset(output).size("val") > 0
    # Another user's lock file, left there, which this one may only read: it still locks
    opened = os.open
    monkeypatch.setattr(ilsvrc.os, "open", lambda path, flags, *mode: (
        (_ for _ in ()).throw(PermissionError(errno.EACCES, "Permission denied", path))
        if path == f"{output}.lock" and flags & os.O_RDWR else opened(path, flags, *mode)))
    with ilsvrc.holding(str(output)):
        with pytest.raises(prepare.PrepareError, match=re.escape(refusal)):
            with ilsvrc.holding(str(output)):
                pass


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

    # Partial files of a run killed between the writes that store a block.
    for attribute, reason in [("statistics_count", "its statistics and images disagree"),
                              ("blocks_done", "its counters and its count of blocks disagree")]:
        stop_after_a_block(root, output, monkeypatch, size=SIZE)
        with h5py.File(partial, "r+") as file:
            file.attrs[attribute] = int(file.attrs[attribute]) - 1
        run(root, output, size=SIZE, workers=2)
        assert f"cannot resume ({reason}); starting again" in capsys.readouterr().err
        assert_same_dataset(tmp_path / "clean.h5", output)


def test_a_partial_file_of_another_size_starts_again(tmp_path, rng, monkeypatch, capsys):
    """The stored size is part of what a partial file was made from: a run stopped at one size
    and run again at another starts again, where going on would mix the two."""
    root, _ = tree_with_blocks(tmp_path, rng, monkeypatch)
    output = tmp_path / "out.h5"
    stop_after_a_block(root, output, monkeypatch, size=SIZE)
    run(root, output, size=SIZE // 2, workers=2)
    assert "made from other files or settings" in capsys.readouterr().err
    run(root, tmp_path / "clean.h5", size=SIZE // 2, workers=2)
    assert_same_dataset(tmp_path / "clean.h5", output)


def stop_after_a_block(root, output, monkeypatch, **options):
    """A preparation interrupted (Ctrl-C) once it has stored its first block."""
    store = prepare.store_block

    def stopped(*args):
        store(*args)
        raise KeyboardInterrupt
    monkeypatch.setattr(prepare, "store_block", stopped)
    with pytest.raises(KeyboardInterrupt):
        run(root, output, workers=2, **options)
    monkeypatch.setattr(prepare, "store_block", store)


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
