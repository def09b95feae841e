"""The figures and `python -m convnet.predict` on a small dataset and checkpoint made here: each
writes a PNG of the expected size, and its numbers (kernel pixels, top-5 labels and
probabilities, fc7 vectors, distances, neighbours, curves) equal a direct NumPy computation."""
import csv
import errno
import io
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import warnings
import zlib
from argparse import Namespace

import h5py
import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.ticker import PercentFormatter
from PIL import Image

import convnet.figures
from convnet import alexnet, checkpoint, predict
from convnet.backend import get_backend
from convnet.data import dataset, fashion_mnist
from convnet.errors import SHOWN_ESCAPE, shown
from convnet.figures import DPI, new_figure, run_labels, short_name, show_image
from convnet.figures import __main__ as figures_main
from convnet.figures import curves, filters, neighbours, predictions, training_error
from convnet.inference import Inference, last_hidden_layers, top_k
from convnet.network import Network
from convnet.train import dataset_identity
from convnet.trainer import EPOCH_FIELDS
from networks import make_active
from readme import shown_commands
from tiny_run import CLASSES, CROP, MODEL, TRAIN, VAL, direct_outputs, make_tiny_run, save_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def trained(tmp_path, rng):
    return make_tiny_run(tmp_path, rng)


def direct_top5(probs):
    return [list(np.argsort(-row)[:5]) for row in probs]


def png_size(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()                # a truncated or corrupt file fails here
        return image.size


def save_png(pixels, path):
    Image.fromarray(pixels).save(path)
    return str(path)


# -- shared pieces ------------------------------------------------------------------------------
def test_last_hidden_layer_of_the_default_network_is_fc7_4096_units():
    model = alexnet.build_model("2012")
    assert last_hidden_layers(model) == ("fc7a", "fc7b")
    assert 2 * model.geometry.fc_units == 4096


def test_top_k_puts_equal_probabilities_in_class_order():
    # the docstring's promise; a reversed ascending sort would put class 2 before class 1
    np.testing.assert_array_equal(top_k(np.array([[0.2, 0.4, 0.4, 0.0]]), 3), [[1, 2, 0]])


def test_short_names_keep_a_name_that_fits_and_images_keep_their_pixels():
    assert short_name("x" * 22) == "x" * 22
    assert short_name("y" * 23 + ", z") == "y" * 21 + "…"
    # Cut before an escape shown() wrote, not inside it; each form of escape.
    for escape in (shown("\x1b"), shown("\udcff"), shown("\u2028"), shown("\t")):
        assert SHOWN_ESCAPE.fullmatch(escape)
        assert short_name("y" * 20 + escape + "tail") == "y" * 20 + "…"
    assert short_name("y" * 19 + "\\x1b" + "tail") == "y" * 19 + "…"
    ax = new_figure(1, 1).add_subplot()
    show_image(ax, np.zeros((32, 32, 3), np.uint8))
    assert ax.images[0].get_interpolation() == "nearest"


def test_load_network_rebuilds_the_model_and_class_count(tmp_path, rng):
    network = make_active(Network(alexnet.build_model(MODEL, classes=7),
                                  get_backend("reference")), rng)
    save_checkpoint(network, tmp_path / "c.h5")
    loaded, _ = checkpoint.load_network(tmp_path / "c.h5", get_backend("reference"))
    assert loaded.model.name == MODEL and loaded.model.geometry.classes == 7
    for key, value in network.params.items():
        np.testing.assert_array_equal(loaded.params[key], value)


def test_pictures_come_out_as_the_dataset_stores_them(trained):
    paths = [save_png(trained.val[i], trained.tmp / f"val{i}.png") for i in range(3)]
    inference = Inference(trained.run, trained.data)
    images, read, failed = inference.pictures(paths + [str(trained.tmp / "none.png")])
    np.testing.assert_array_equal(images, trained.val[:3])
    assert read == paths and failed == [(str(trained.tmp / "none.png"), "no such file")]


def test_inference_from_python_refuses_what_it_would_misread(trained):
    """Images as the dataset stores them (uint8, its side), a split it has, indices in it, a
    batch of at least one: else one ValueError saying so, not a cast (int64 pixels + 256 read
    as the same image), a wrong image named, or a numpy error."""
    inference = Inference(trained.run, trained.data)
    side = trained.val.shape[1]
    for images, got in ((trained.val.astype(np.int64) + 256, "int64"),
                        (trained.val[:, 2:-2, 2:-2], "uint8"), ([[0]], "list")):
        with pytest.raises(ValueError, match=rf"images must be \(n, {side}, {side}, 3\) uint8, as "
                                             rf"the dataset stores its own; got {got} of shape"):
            next(inference.run(images))
    with pytest.raises(ValueError, match="split 'test': the dataset's are train, val"):
        inference.run_split("test")
    with pytest.raises(ValueError, match=f"indices: {VAL}: the val split has images 0 to "
                                         f"{VAL - 1}"):
        inference.run_split("val", [0, VAL])
    for size in (0, 2.5, True):
        with pytest.raises(ValueError, match=f"Inference batch_size {size!r}: must be an integer"):
            Inference(trained.run, trained.data, batch_size=size)


def test_a_float64_checkpoint_is_evaluated_in_float64(trained):
    """load_network keeps a checkpoint's type; the loader's float32 views are fed to it as
    such, and its outputs are the float32 network's within float32's rounding."""
    wide = Network(trained.network.model, get_backend("reference"), dtype=np.float64,
                   params={key: value.astype(np.float64)
                           for key, value in trained.network.params.items()})
    save_checkpoint(wide, trained.tmp / "wide" / "best.h5")
    narrow, wide = (next(iter(Inference(path, trained.data).run_split("val")))[1]
                    for path in (trained.run, trained.tmp / "wide"))
    assert wide.dtype == np.float64
    np.testing.assert_allclose(wide, narrow, atol=1e-5)


def test_fashion_mnist_pictures_are_grey_padded_like_the_dataset(tmp_path, rng):
    grey = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    pixels, _ = fashion_mnist.load_picture(save_png(grey, tmp_path / "g.png"), 32)
    np.testing.assert_array_equal(pixels, np.repeat(np.pad(grey, 2)[..., None], 3, axis=2))
    colour = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
    pixels, _ = fashion_mnist.load_picture(save_png(colour, tmp_path / "c.png"), 32)
    # Pillow's "L": (299 R + 587 G + 114 B) / 1000, rounded
    luma = (colour.astype(np.int64) @ [299, 587, 114] + 500) // 1000
    np.testing.assert_allclose(pixels[2:30, 2:30, 0], luma, atol=1)
    assert (pixels[:2] == 0).all() and (pixels[..., 0] == pixels[..., 2]).all()


# -- Figure 3 -----------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", ["per-kernel", "shared"])
def test_filters_png_holds_each_kernel_contrast_normalized(trained, scale):
    """Shared: tower b holds the lowest weight and tower a the highest, so that a scale taken
    from one tower shows."""
    a, b = trained.network.params["conv1a/data"], trained.network.params["conv1b/data"]
    b.flat[0], a.flat[0] = min(a.min(), b.min()) - 0.05, max(a.max(), b.max()) + 0.05
    save_checkpoint(trained.network, trained.run / "best.h5")
    out = trained.tmp / "filters.png"
    assert figures_main.main(["filters", "--checkpoint", str(trained.run), "--columns", "6",
                              "--zoom", "2", "--scale", scale, "-o", str(out)]) == 0
    # 16 kernels of 5×5 per tower in rows of 6: 3 rows each; a cell is 5·2 + 2 pixels
    assert png_size(out) == (2 + 6 * 12, 2 + 3 * 12 + 3 * 2 + 3 * 12)
    pixels = np.asarray(Image.open(out).convert("RGB"))
    with h5py.File(trained.run / "best.h5", "r") as file:
        towers = [file["towers/a/params/conv1a/data"][()], file["towers/b/params/conv1b/data"][()]]
    low, high = min(k.min() for k in towers), max(k.max() for k in towers)
    for t, kernels in enumerate(towers):
        for i in range(16):
            kernel = kernels[..., i]                   # float32, as stored
            if scale == "per-kernel":
                low, high = kernel.min(), kernel.max()
            expected = np.rint((kernel - low) / (high - low) * np.float32(255)).astype(np.uint8)
            y = 2 + t * (3 * 12 + 3 * 2) + (i // 6) * 12
            x = 2 + (i % 6) * 12
            np.testing.assert_array_equal(pixels[y:y + 10, x:x + 10],
                                          expected.transpose(1, 2, 0).repeat(2, 0).repeat(2, 1))
    assert (pixels[:2] == 255).all() and (pixels[38:44] == 255).all()   # margin, tower gap


def test_filters_grid_is_no_wider_than_its_kernels():
    """Fewer kernels than --columns: one row as wide as they are, no blank columns."""
    kernels = [np.zeros((3, 5, 5, 3), np.float32), np.ones((3, 5, 5, 3), np.float32)]
    pixels = filters.grid(kernels, columns=16, zoom=2)
    assert pixels.shape == (2 + 12 + 3 * 2 + 12, 2 + 3 * 12, 3)



def test_a_zoom_past_the_largest_is_refused_before_any_work(trained, capsys):
    """A million pixels a kernel pixel would ask for petabytes: refused as a flag, the largest
    named; the largest itself is drawn."""
    out = trained.tmp / "zoom.png"
    with pytest.raises(SystemExit) as exit_:
        figures_main.main(["filters", "--checkpoint", str(trained.tmp / "none"), "--zoom",
                           "1000000", "-o", str(out)])
    assert exit_.value.code == 2
    assert f"--zoom must be at most {filters.MAX_ZOOM}; got 1000000" in \
        capsys.readouterr().err.splitlines()[-1]
    assert figures_main.main(["filters", "--checkpoint", str(trained.run), "--zoom",
                              str(filters.MAX_ZOOM), "-o", str(out)]) == 0
    cell = 5 * filters.MAX_ZOOM + filters.MAX_ZOOM   # 16 kernels of 5×5 a tower, in one row
    assert png_size(out) == (filters.MAX_ZOOM + 16 * cell, filters.MAX_ZOOM + 2 * cell
                             + 3 * filters.MAX_ZOOM)


# -- predict ------------------------------------------------------------------------------------
def parse_predictions(text):
    """{path: [(probability, class)]} from predict's output, each class's name checked against
    the dataset's (tiny_run's "class {i}, synonym")."""
    result, current = {}, None
    for line in text.splitlines():
        match = re.match(r"\s+([\d.]+)%\s+(\d+)\s+(\S.*)$", line)
        if match:
            assert match[3] == f"class {int(match[2])}, synonym", line
            result[current].append((float(match[1]) / 100, int(match[2])))
        else:
            current = line
            result[current] = []
    return result


@pytest.mark.parametrize("ten_crop", [False, True])
def test_predict_top5_equals_numpy(trained, capsys, ten_crop):
    paths = [save_png(trained.val[i], trained.tmp / f"v{i}.png") for i in range(5)]
    flags = ["--ten-crop", "-b", "3"] if ten_crop else ["-b", "2"]   # batches of 3 + 2 images
    assert predict.main(paths + ["--checkpoint", str(trained.run), "--data-path",
                                 str(trained.data)] + flags) == 0
    printed = parse_predictions(capsys.readouterr().out)
    probs, _ = direct_outputs(trained.network, trained.val[:5], trained.mean, ten_crop)
    assert list(printed) == paths
    for path, row, best in zip(paths, probs, direct_top5(probs)):
        assert [c for _, c in printed[path]] == best
        np.testing.assert_allclose([p for p, _ in printed[path]], row[best], atol=5.1e-5)
    assert predict.main(paths[:2] + ["--checkpoint", str(trained.run), "--data-path",
                                     str(trained.data), "--top", "2"] + flags) == 0
    printed = parse_predictions(capsys.readouterr().out)
    assert [[c for _, c in printed[path]] for path in paths[:2]] == \
        [best[:2] for best in direct_top5(probs[:2])]


def test_predict_reports_each_unreadable_file_and_goes_on(trained, capsys):
    good = save_png(trained.val[0], trained.tmp / "good.png")
    (trained.tmp / "text.jpg").write_text("not an image")
    (trained.tmp / "empty.png").write_bytes(b"")
    (trained.tmp / "folder.png").mkdir()
    bad = [str(trained.tmp / "text.jpg"), str(trained.tmp / "empty.png"),
           str(trained.tmp / "missing.png"), str(trained.tmp / "folder.png")]
    status = predict.main([bad[0], good, bad[1], bad[2], bad[3], "--checkpoint",
                           str(trained.run), "--data-path", str(trained.data)])
    out, err = capsys.readouterr()
    assert status == 1
    assert list(parse_predictions(out)) == [good]
    assert err.splitlines() == [f"error: {bad[0]}: not an image Pillow can identify",
                                f"error: {bad[1]}: empty file",
                                f"error: {bad[2]}: no such file",
                                f"error: {bad[3]}: not a file"]


def test_predict_notes_a_photograph_taken_as_encoded_against_its_exif_orientation(trained,
                                                                                  capsys):
    """A phone's picture whose EXIF orientation says to turn it is read as encoded, as the
    dataset's images were: a note on stderr says so, the prediction goes on."""
    picture = Image.fromarray(trained.val[0][..., 0]).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6   # the orientation tag: turn 90° clockwise to view
    rotated = str(trained.tmp / "rotated.jpg")
    picture.save(rotated, exif=exif)
    picture.save(trained.tmp / "upright.jpg")
    assert predict.main([rotated, str(trained.tmp / "upright.jpg"), "--checkpoint",
                         str(trained.run), "--data-path", str(trained.data)]) == 0
    out, err = capsys.readouterr()
    assert list(parse_predictions(out)) == [rotated, str(trained.tmp / "upright.jpg")]
    assert err == (f"note: {rotated}: converted: EXIF orientation 6 not applied (stored as "
                   f"encoded)\n")


def test_predict_of_no_readable_file_is_exit_2(trained, capsys):
    """One file that cannot be read is one line; several, a line each and their count."""
    (trained.tmp / "text.jpg").write_text("not an image")
    flags = ["--checkpoint", str(trained.run), "--data-path", str(trained.data)]
    text, missing = str(trained.tmp / "text.jpg"), str(trained.tmp / "missing.png")
    assert predict.main([text, *flags]) == 2
    assert capsys.readouterr().err == f"error: {text}: not an image Pillow can identify\n"
    assert predict.main([text, missing, *flags]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {text}: not an image Pillow can identify", f"error: {missing}: no such file",
        "error: none of the 2 image files could be read"]


def test_predict_errors_are_one_line_with_exit_2(trained, capsys, rng):
    image = save_png(trained.val[0], trained.tmp / "v.png")
    assert predict.main([image, "--checkpoint", str(trained.tmp / "none.h5"),
                         "--data-path", str(trained.data)]) == 2
    assert capsys.readouterr().err == f"error: checkpoint {trained.tmp / 'none.h5'}: no such file\n"
    assert predict.main([image, "--checkpoint", str(trained.run), "--data-path",
                         str(trained.tmp / "none.h5")]) == 2   # it records no dataset
    assert capsys.readouterr().err == f"error: dataset {trained.tmp / 'none.h5'}: no such file\n"
    other = trained.tmp / "four.h5"
    dataset.write(other, name="four", train_images=trained.train,
                  train_labels=trained.train_labels % 4, val_images=trained.val,
                  val_labels=trained.val_labels % 4,
                  class_ids=list("abcd"), class_names=list("abcd"))
    assert predict.main([image, "--checkpoint", str(trained.run), "--data-path", str(other)]) == 2
    assert "classifies 10 classes but dataset" in capsys.readouterr().err
    small = trained.tmp / "small.h5"   # images smaller than the checkpoint's crop
    dataset.write(small, name="small", train_images=trained.train[:, :CROP - 1, :CROP - 1],
                  train_labels=trained.train_labels, val_images=trained.val[:, :CROP - 1, :CROP - 1],
                  val_labels=trained.val_labels, class_ids=[f"c{i}" for i in range(CLASSES)],
                  class_names=[f"c{i}" for i in range(CLASSES)])
    assert predict.main([image, "--checkpoint", str(trained.run), "--data-path", str(small)]) == 2
    assert capsys.readouterr().err == (f"error: checkpoint {trained.run / 'best.h5'} needs "
                                       f"{CROP}-pixel crops but {small} holds {CROP - 1}-pixel "
                                       f"images\n")
    with pytest.raises(SystemExit) as exit_:
        predict.main([image, "--top", "0"])
    assert exit_.value.code == 2


def test_a_missing_default_run_says_what_makes_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    said = (f"error: --checkpoint {os.path.join('runs', 'fashion-mnist')}, the default run's "
            f"folder, does not exist in {tmp_path}: make train makes it in the project's folder "
            f"(run the command there), or give --checkpoint PATH\n")
    assert predict.main(["x.png"]) == 2
    assert capsys.readouterr().err == said
    assert figures_main.main(["filters"]) == 2
    assert capsys.readouterr().err == said


def test_an_error_naming_a_name_with_a_newline_is_one_line(trained, capsys):
    foreign = trained.tmp / "not\nours.h5"
    h5py.File(foreign, "w").close()
    assert predict.main([str(trained.tmp / "v.png"), "--checkpoint", str(foreign),
                         "--data-path", str(trained.data)]) == 2
    assert capsys.readouterr().err == (f"error: checkpoint {trained.tmp}/not\\nours.h5: "
                                       f"incomplete or not a convnet checkpoint\n")


def test_a_diverged_checkpoint_is_refused_and_no_probability_printed_is_nan(trained, capsys):
    """NaN parameters (a diverged run) are refused before any image is classified, by predict
    and the figures (filters too) as by ensemble; finite weights whose outputs overflow, at the
    batch."""
    image = save_png(trained.val[0], trained.tmp / "v.png")
    data = ["--data-path", str(trained.data)]
    params, diverged = trained.network.params, trained.tmp / "nan.h5"
    params["fc8/bias"][0] = np.nan
    save_checkpoint(trained.network, diverged)
    refused = (f"error: checkpoint {diverged}: its parameters are not all finite (a diverged "
               f"network)\n")
    assert predict.main([image, "--checkpoint", str(diverged), *data]) == 2
    assert capsys.readouterr() == ("", refused)
    assert figures_main.main(["predictions", "--checkpoint", str(diverged), *data, "-o",
                              str(trained.tmp / "p.png")]) == 2
    assert capsys.readouterr() == ("", refused)
    assert figures_main.main(["filters", "--checkpoint", str(diverged), "-o",
                              str(trained.tmp / "f.png")]) == 2   # reads the weights alone
    assert capsys.readouterr() == ("", refused)
    params["fc8/bias"][0] = 0
    params["fc8/drop7a"][:], params["fc8/drop7b"][:] = 3e38, -3e38
    save_checkpoint(trained.network, trained.tmp / "overflow.h5")
    with warnings.catch_warnings():   # one line on stderr, not NumPy's warnings before it
        warnings.simplefilter("error", RuntimeWarning)
        assert predict.main([image, "--checkpoint", str(trained.tmp / "overflow.h5"), *data]) == 2
    assert capsys.readouterr() == ("", f"error: checkpoint {trained.tmp / 'overflow.h5'}: its "
                                       f"outputs on the images given are not all finite\n")


def test_a_checkpoint_of_another_dataset_gets_a_note_and_this_dataset_s_names(trained, capsys):
    """The training state records the dataset's name, class ids and stored size
    (train.dataset_identity); another dataset of as many classes may be used (a transferred
    net), and one line says whose names are shown; one of the same name but other class ids (two
    class subsets of ImageNet), and one line says the outputs are read as this one's classes;
    the same one stored at another size (prepare --size), and one line says that the crops take
    another share of each image."""
    image = save_png(trained.val[0], trained.tmp / "v.png")
    velocity = {key: np.zeros_like(value) for key, value in trained.network.params.items()}
    side = trained.val.shape[1]
    ids = dataset.Dataset(trained.data).class_ids
    for name, size, class_ids, note in (
            ("other10", side, ids, f"dataset other10, not tiny; the class names are this "
                                   f"dataset's ({trained.data})"),
            ("tiny", side, ids[::-1], f"a dataset tiny of other class ids than {trained.data}'s: "
                                      f"its outputs are read as this dataset's classes, which "
                                      f"may not be what it learned"),
            ("tiny", side + 4, ids, f"dataset tiny stored at {side + 4} pixels; {trained.data} "
                                    f"stores it at {side}, so each crop takes another share of "
                                    f"the image"),
            ("tiny", side, ids, None)):
        path = trained.tmp / f"trained-on-{name}-{size}-{class_ids[0]}.h5"
        trained_on = dataset_identity(Namespace(name=name, train_labels=trained.train_labels,
                                                val_labels=trained.val_labels, image_size=size,
                                                class_ids=class_ids))
        checkpoint.save(path, trained.network, velocity, {"epoch": 1, "step": 1,
                                                          "dataset": trained_on})
        assert predict.main([image, "--checkpoint", str(path), "--data-path",
                             str(trained.data), "-k", "1"]) == 0
        out, err = capsys.readouterr()
        assert list(parse_predictions(out)) == [image]
        assert err == (f"note: checkpoint {path} was trained on {note}\n" if note else "")
    # No dataset file (--data-path's default, Fashion-MNIST's, for a run on ImageNet, say): the
    # error names the one it trained on.
    assert predict.main([image, "--checkpoint", str(path), "--data-path",
                         str(trained.tmp / "none.h5")]) == 2
    assert capsys.readouterr().err == (f"error: dataset {trained.tmp / 'none.h5'}: no such file; "
                                       f"checkpoint {path} was trained on dataset tiny: give its "
                                       f"file with --data-path\n")


def png_header(path, side):
    """A PNG's first bytes for a side × side grey image, its data cut short: Pillow takes the
    size from them as from a whole picture that large, in a moment rather than seconds."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I",
                                                                        zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side,
                                                                       8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(bytes(side))))
    return str(path)


def test_a_picture_pillow_warns_of_is_read_without_its_warning(trained, capsys):
    """Pillow warns (two lines on stderr) of a picture over MAX_IMAGE_PIXELS, which is read all
    the same; one over twice that it refuses, in one line."""
    good = save_png(trained.val[0], trained.tmp / "v.png")
    large = png_header(trained.tmp / "large.png", math.isqrt(Image.MAX_IMAGE_PIXELS) + 1)
    huge = png_header(trained.tmp / "huge.png", math.isqrt(2 * Image.MAX_IMAGE_PIXELS) + 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = predict.main([large, good, huge, "--checkpoint", str(trained.run),
                               "--data-path", str(trained.data)])
    assert [str(warning.message) for warning in caught
            if issubclass(warning.category, Image.DecompressionBombWarning)] == []
    out, err = capsys.readouterr()
    assert status == 1 and list(parse_predictions(out)) == [good]
    truncated, refused = err.splitlines()
    assert truncated == f"error: {large}: truncated"
    assert refused.startswith(f"error: {huge}: undecodable (Image size (")


def test_predict_prints_any_name_on_one_line(trained, capsys):
    """Under a strict UTF-8 output (capsys's), bytes that are not UTF-8 and a newline are
    escaped, so that each name stays one line above its labels; on stderr too."""
    paths = [save_png(trained.val[i], trained.tmp / name)
             for i, name in enumerate([os.fsdecode(b"bad\xff.png"), "two\nlines.png"])]
    gone = str(trained.tmp / os.fsdecode(b"gone\xfe\n.png"))
    flags = ["--checkpoint", str(trained.run), "--data-path", str(trained.data), "-k", "2"]
    assert predict.main([*paths, gone, *flags]) == 1
    out, err = capsys.readouterr()
    assert list(parse_predictions(out)) == [f"{trained.tmp}/bad\\xff.png",
                                            f"{trained.tmp}/two\\nlines.png"]
    assert err == f"error: {trained.tmp}/gone\\xfe\\n.png: no such file\n"
    assert predict.main([gone, *flags]) == 2          # the one file, as the command's error
    assert capsys.readouterr().err == err


@pytest.mark.parametrize("argv,flag", [
    (["predict", "--checkpoint", ""], "argument --checkpoint:"),
    (["predict", "--data-path", ""], "--data-path"),
    (["filters", "--checkpoint", ""], "argument --checkpoint:"),
    (["predictions", "--checkpoint", ""], "argument --checkpoint:"),
    (["neighbours", "--data-path", ""], "--data-path"),
    (["predict", ""], "argument IMAGE:"),
    (["predictions", ""], "argument IMAGE:"),
    (["neighbours", "--cache", ""], "argument --cache:"),
    (["curves", ""], "argument RUN:"),
    (["training-error", ""], "argument RUN:"),
])
def test_an_empty_name_is_the_parser_s_one_line(argv, flag, capsys):
    """Not h5py's "invalid file name", as the training command refuses it."""
    with pytest.raises(SystemExit) as exit_:
        if argv[0] == "predict":
            predict.main(["v.png", *argv[1:]])
        else:
            figures_main.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.endswith(f"error: {flag} must name a file or folder; got '' (see --help)\n"), err
    assert err.count("\n") == 1


def test_predict_runs_as_a_module(trained):
    image = save_png(trained.val[0], trained.tmp / "v.png")
    result = subprocess.run([sys.executable, "-m", "convnet.predict", image, "--checkpoint",
                             str(trained.run / "best.h5"), "--data-path", str(trained.data)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert len(parse_predictions(result.stdout)[image]) == 5


# -- Figure 4, left -----------------------------------------------------------------------------
def selection(trained, **flags):
    args = dict(images=[], split="val", indices=None, count=8, seed=0, mistakes=False)
    return Namespace(**(args | flags))


def test_predictions_figure_and_its_numbers(trained, capsys):
    out = trained.tmp / "p.png"
    assert figures_main.main(["predictions", "--checkpoint", str(trained.run), "--data-path",
                              str(trained.data), "--indices", "3", "0", "7", "--columns", "2",
                              "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed
    assert png_size(out) == (round(2 * predictions.CELL_WIDTH * DPI),
                             round(2 * predictions.CELL_HEIGHT * DPI))
    chosen = predictions.choose(Inference(trained.run, trained.data, batch_size=2),
                                selection(trained, indices=[3, 0, 7]))
    probs, _ = direct_outputs(trained.network, trained.val[[3, 0, 7]], trained.mean)
    np.testing.assert_allclose(chosen.probs, probs, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(chosen.labels, trained.val_labels[[3, 0, 7]])
    np.testing.assert_array_equal(chosen.images, trained.val[[3, 0, 7]])
    assert chosen.titles == [f"val[{i}] class {trained.val_labels[i]}" for i in (3, 0, 7)]
    right = int((probs.argmax(axis=1) == trained.val_labels[[3, 0, 7]]).sum())
    assert f"3 images, {right} of them right at top-1" in printed


def test_predictions_of_more_indices_than_the_count_draw_them_all(trained):
    """--indices names the images: all of them, whatever --count's default (8)."""
    indices = [11, 0, 5, 3, 9, 1, 2, 7, 4, 10]
    chosen = predictions.choose(Inference(trained.run, trained.data, batch_size=4),
                                selection(trained, indices=indices))
    np.testing.assert_array_equal(chosen.indices, indices)


def test_predictions_classify_no_more_batches_than_they_need(trained):
    """--count 3 in batches of 3: one batch examined, not the next."""
    chosen = predictions.choose(Inference(trained.run, trained.data, batch_size=3),
                                selection(trained, count=3))
    assert chosen.examined == 3 and len(chosen.indices) == 3


def test_predictions_drawn_bars_and_titles(rng):
    """Per image, its title (red where the top guess is wrong) above the top 5 bars, as long
    as their probabilities, the true class's bar in its own colour."""
    probs = rng.dirichlet(np.ones(10), 2)
    order = np.argsort(-probs, axis=1)
    truths = [order[0, 0], order[1, 2]]   # the first image right, the second its third guess
    images = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    figure = predictions.draw(images, ["first", "second"], probs, np.array(truths),
                              [f"name {c}" for c in range(10)], columns=2)
    for n, truth in enumerate(truths):
        image_axes, bars = figure.axes[2 * n], figure.axes[2 * n + 1]
        assert image_axes.get_title() == ("first", "second")[n]
        assert image_axes.title.get_color() == ("black" if n == 0 else predictions.WRONG)
        np.testing.assert_allclose([bar.get_width() for bar in bars.patches],
                                   probs[n, order[n, :5]])
        colours = [to_hex(bar.get_facecolor()) for bar in bars.patches]
        assert colours == [predictions.CORRECT if c == truth else predictions.OTHER
                           for c in order[n, :5]]
        assert [text.get_text().split("  ")[0] for text in bars.texts] == \
            [f"name {c}" for c in order[n, :5]]
        assert bars.yaxis_inverted()                        # the most probable bar on top



def test_dollars_in_titles_and_class_names_are_drawn_as_they_are(rng):
    """A `$` in a file's name or a dataset's class name is a dollar, not mathtext (an unmatched
    one would not parse)."""
    images = rng.integers(0, 256, (1, 8, 8, 3), dtype=np.uint8)
    names = [f"$x^{{$ {c}" for c in range(10)]
    figure = predictions.draw(images, ["$a^{$.png"], rng.dirichlet(np.ones(10), 1), None, names,
                              columns=1)
    figure.savefig(io.BytesIO(), format="png")
    assert figure.axes[0].get_title() == "$a^{$.png"
    assert figure.axes[1].texts[0].get_text().startswith("$x^{$ ")


def test_mistakes_are_drawn_beside_the_predictions_not_over_them(trained, capsys):
    common = ["predictions", "--checkpoint", str(trained.run), "--data-path", str(trained.data),
              "--count", "2"]
    folder = trained.run / "figures"
    assert figures_main.main(common) == 0
    drawn = (folder / "predictions.png").read_bytes()
    assert figures_main.main([*common, "--mistakes", "--split", "train", "--count", "1"]) == 0
    assert f"wrote {folder / 'mistakes.png'}" in capsys.readouterr().out
    assert (folder / "predictions.png").read_bytes() == drawn


def test_mistakes_are_the_first_wrong_images_in_the_drawn_order(trained):
    inference = Inference(trained.run, trained.data, batch_size=3)
    chosen = predictions.choose(inference, selection(trained, count=4, seed=5, mistakes=True))
    probs, _ = direct_outputs(trained.network, trained.val, trained.mean)
    wrong = [i for i in np.random.default_rng(5).permutation(VAL)
             if probs[i].argmax() != trained.val_labels[i]]
    np.testing.assert_array_equal(chosen.indices, wrong[:4])
    np.testing.assert_allclose(chosen.probs, probs[wrong[:4]], rtol=1e-5, atol=1e-7)


def test_predictions_figure_of_files_skips_unreadable_ones(trained, capsys):
    good = [save_png(trained.val[i], trained.tmp / f"v{i}.png") for i in range(3)]
    out = trained.tmp / "files.png"
    status = figures_main.main(["predictions", *good, str(trained.tmp / "gone.png"),
                                "--checkpoint", str(trained.run), "--data-path",
                                str(trained.data), "-o", str(out)])
    assert status == 1
    assert capsys.readouterr().err == f"error: {trained.tmp / 'gone.png'}: no such file\n"
    assert png_size(out) == (round(3 * predictions.CELL_WIDTH * DPI),
                             round(predictions.CELL_HEIGHT * DPI))


@pytest.mark.parametrize("figure,flags,message", [
    ("predictions", ["--count", "0"], "--count must be at least 1"),
    ("predictions", ["--seed", "-1"], "--seed must be 0 or more; got -1"),
    ("predictions", ["--mistakes", "x.png"], "--mistakes needs true labels"),
    ("predictions", ["-b", "0"], "--batch-size must be at least 1"),
    ("neighbours", ["-k", "0"], "--neighbours must be at least 1; got 0"),
    ("neighbours", ["--count", "0"], "--count must be at least 1"),
])
def test_predictions_and_neighbours_bad_flags(figure, flags, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        figures_main.main([figure, *flags])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


PREDICTIONS_FEWER = "images (--count, --indices or files)"
NEIGHBOURS_FEWER = "queries (--count, --indices or files) or --neighbours"


@pytest.mark.parametrize("figure,flags,pixels,fewer", [
    # --count past the split draws all 12 of its images, a column each under --columns 1
    ("predictions", lambda run: ["--count", "1000", "--columns", "1"],
     lambda: predictions.layout(VAL, 1)[1:], PREDICTIONS_FEWER),
    # --indices and files name their images, whatever --count
    ("predictions", lambda run: ["--indices", "3", "0", "7", "--columns", "2"],
     lambda: predictions.layout(3, 2)[1:], PREDICTIONS_FEWER),
    ("predictions", lambda run: [save_png(run.val[i], run.tmp / f"v{i}.png") for i in range(9)]
     + ["--count", "2"], lambda: predictions.layout(9, 4)[1:], PREDICTIONS_FEWER),
    # -k past the training split shows all 40 of its images beside each of the 3 queries
    ("neighbours", lambda run: ["--count", "3", "-k", "1000"],
     lambda: neighbours.inches(3, 1 + TRAIN), NEIGHBOURS_FEWER),
    ("neighbours", lambda run: ["--indices", "1", "2", "-k", "4"],
     lambda: neighbours.inches(2, 5), NEIGHBOURS_FEWER),
], ids=["count", "indices", "files", "neighbours", "indices-neighbours"])
def test_a_figure_of_too_many_pixels_is_refused_before_any_work(trained, capsys, monkeypatch,
                                                                 figure, flags, pixels, fewer):
    """A figure one pixel over MAX_PIXELS is refused in one line before the network runs (no
    vectors cached, no figure written); one of exactly MAX_PIXELS is drawn at that size."""
    width, height = (round(inches * DPI) for inches in pixels())
    out = trained.tmp / f"{figure}.png"
    argv = [figure, "--checkpoint", str(trained.run), "--data-path", str(trained.data),
            *flags(trained), "-o", str(out)]
    monkeypatch.setattr(convnet.figures, "MAX_PIXELS", width * height - 1)
    assert figures_main.main(argv) == 2
    assert capsys.readouterr().err == (
        f"error: the figure would be {width}×{height} pixels, more than the "
        f"{width * height - 1:,} a figure may have: ask for fewer {fewer}\n")
    assert not out.exists() and not (trained.tmp / "run" / "features").exists()
    monkeypatch.setattr(convnet.figures, "MAX_PIXELS", width * height)
    assert figures_main.main(argv) == 0
    assert png_size(out) == (width, height)


@pytest.mark.parametrize("figure", ["predictions", "neighbours"])
def test_a_figure_of_an_empty_split_is_one_line(trained, capsys, figure):
    """A --split of no images: its one line, not the figure's size of no rows (a division by
    zero) nor "none of the 0 image files could be read"."""
    empty = trained.tmp / "empty-val.h5"
    dataset.write(empty, name="tiny", train_images=trained.train,
                  train_labels=trained.train_labels, val_images=trained.val[:0],
                  val_labels=trained.val_labels[:0], class_ids=[f"c{i}" for i in range(CLASSES)],
                  class_names=[str(i) for i in range(CLASSES)])
    assert figures_main.main([figure, "--checkpoint", str(trained.run), "--data-path",
                              str(empty), "-o", str(trained.tmp / "empty.png")]) == 2
    assert capsys.readouterr().err == "error: the val split holds no images\n"


def test_neighbours_among_no_training_images_is_one_line_and_caches_nothing(trained, capsys):
    """A dataset whose training split is empty: one line, and no cache of no vectors left in
    the run's folder for the next query to take for a foreign file."""
    empty = trained.tmp / "empty-train.h5"   # which no writer of the project makes
    shutil.copy(trained.data, empty)
    with h5py.File(empty, "r+") as file:
        for name in ("images", "labels"):
            kept = file["train"][name]
            shape, dtype = (0,) + kept.shape[1:], kept.dtype
            del file["train"][name]
            file["train"].create_dataset(name, shape, dtype)
    assert figures_main.main(["neighbours", "--checkpoint", str(trained.run), "--data-path",
                              str(empty), "-o", str(trained.tmp / "n.png")]) == 2
    assert capsys.readouterr().err == ("error: the train split holds no images, among which the "
                                       "neighbours are found\n")
    assert not (trained.tmp / "run" / "features").exists()


def test_out_of_memory_is_one_line_naming_the_batch_size(trained, capsys, monkeypatch):
    """A batch past the memory (MemoryError, where the system does not kill the process
    first): one line with exit status 2, not a traceback."""
    def too_large(*_, **__):
        raise MemoryError
    monkeypatch.setattr(Inference, "run", too_large)
    picture = save_png(trained.val[0], trained.tmp / "v.png")
    assert predict.main([picture, "--checkpoint", str(trained.run), "--data-path",
                         str(trained.data), "-b", "7"]) == 2
    assert capsys.readouterr().err == "error: out of memory with -b 7: give a smaller batch size\n"
    monkeypatch.setattr(curves, "read_epochs", too_large)   # a figure of logs takes no -b
    assert figures_main.main(["curves", str(trained.run)]) == 2
    assert capsys.readouterr().err == "error: out of memory\n"


@pytest.mark.parametrize("index", [VAL, -1])   # -1 would be the last image in NumPy
def test_indices_out_of_range_are_one_line(trained, capsys, index):
    status = figures_main.main(["predictions", "--checkpoint", str(trained.run), "--data-path",
                                str(trained.data), "--indices", "2", str(index)])
    assert status == 2
    assert capsys.readouterr().err == (f"error: --indices {index}: the val split has images 0 "
                                       f"to {VAL - 1}\n")


# -- Figure 4, right ----------------------------------------------------------------------------
def test_nearest_equals_brute_force_across_blocks(rng, monkeypatch, tmp_path):
    reference = rng.normal(size=(53, 7)).astype(np.float32)
    queries = rng.normal(size=(4, 7)).astype(np.float32)
    queries[0] = reference[17]                   # a query that is in the set: distance 0
    monkeypatch.setattr(neighbours, "BLOCK_VALUES", 7 * 10)   # blocks of 10 rows
    with h5py.File(tmp_path / "r.h5", "w") as file:
        file["r"] = reference
        index, distance = neighbours.nearest(queries, file["r"], 6)
    direct = np.sqrt(((queries[:, None].astype(np.float64) - reference[None]) ** 2).sum(-1))
    np.testing.assert_array_equal(index, np.argsort(direct, axis=1, kind="stable")[:, :6])
    np.testing.assert_allclose(distance, np.sort(direct, axis=1)[:, :6], rtol=1e-9, atol=1e-6)
    assert index[0, 0] == 17


def test_a_query_in_the_set_is_at_distance_0_not_nan(rng):
    """‖q‖² + ‖r‖² − 2 q·r of q = r rounds to a little below 0 as often as above: clipped at 0
    before the square root."""
    reference = (rng.normal(size=(64, 31)) * 50).astype(np.float32)
    index, distance = neighbours.nearest(reference, reference, 1)
    np.testing.assert_array_equal(index[:, 0], np.arange(64))
    assert np.isfinite(distance).all()
    np.testing.assert_allclose(distance, 0, atol=1e-3)


def parse_neighbours(text):
    """[[(train index, distance)]] per query line of the neighbours command's output."""
    return [[(int(i), float(d)) for i, d in re.findall(r"train\[(\d+)\] d=([\d.e+-]+) ", line)]
            for line in text.splitlines() if line.startswith("val[")]


def test_neighbours_figure_cache_and_numbers(trained, capsys):
    out = trained.tmp / "n.png"
    flags = ["neighbours", "--checkpoint", str(trained.run), "--data-path", str(trained.data),
             "--indices", "4", "1", "-k", "5", "-b", "16", "-o", str(out)]
    assert figures_main.main(flags) == 0
    first = capsys.readouterr().out
    assert "train vectors computed and cached in" in first
    assert png_size(out) == (round(6 * neighbours.CELL * DPI), round(2 * neighbours.CELL * DPI))

    _, train_features = direct_outputs(trained.network, trained.train, trained.mean)
    _, query_features = direct_outputs(trained.network, trained.val[[4, 1]], trained.mean)
    cache = trained.run / "features" / "best-train.h5"
    # The cache is computed in batches of 16, the direct features in one: BLAS blocks each
    # float32 sum differently, so they agree to a fraction of the features' scale, not per element.
    with h5py.File(cache, "r") as file:
        np.testing.assert_allclose(file["features"][()], train_features, rtol=0,
                                   atol=1e-5 * np.abs(train_features).max())
        assert file["features"].chunks[0] == 16   # a batch a chunk: no chunk written twice
    distances = np.linalg.norm(query_features[:, None].astype(np.float64)
                               - train_features[None], axis=2)
    expected = np.argsort(distances, axis=1)[:, :5]
    printed = parse_neighbours(first)
    assert [[i for i, _ in row] for row in printed] == expected.tolist()
    np.testing.assert_allclose([[d for _, d in row] for row in printed],
                               np.take_along_axis(distances, expected, axis=1), rtol=1e-3)

    stamp = os.stat(cache).st_mtime_ns
    assert figures_main.main(flags) == 0
    second = capsys.readouterr().out
    assert "train vectors read from" in second and parse_neighbours(second) == printed
    assert os.stat(cache).st_mtime_ns == stamp

    trained.network.params["fc7a/bias"] += 1.0           # new weights: the cache is stale
    save_checkpoint(trained.network, trained.run / "best.h5")
    assert figures_main.main(flags) == 0
    assert "train vectors computed and cached in" in capsys.readouterr().out
    assert figures_main.main(flags + ["--ten-crop"]) == 0   # other views: other vectors
    assert "train vectors computed and cached in" in capsys.readouterr().out
    assert figures_main.main(flags) == 0
    capsys.readouterr()
    os.utime(trained.data, ns=(stamp, stamp + 10 ** 9))   # the dataset prepared again
    assert figures_main.main(flags) == 0
    assert "train vectors computed and cached in" in capsys.readouterr().out
    # without --indices, --count queries of the split
    count = [flag for flag in flags if flag not in ("--indices", "4", "1")] + ["--count", "3"]
    assert figures_main.main(count) == 0
    assert len(parse_neighbours(capsys.readouterr().out)) == 3
    # --indices names the queries, however many more than --count's default (5)
    many = [flag for flag in flags if flag not in ("--indices", "4", "1")] + \
        ["--indices", *map(str, range(7))]
    assert figures_main.main(many) == 0
    assert len(parse_neighbours(capsys.readouterr().out)) == 7


def test_neighbours_of_a_dataset_whose_name_is_not_utf8(trained, capsys):
    data = trained.tmp / os.fsdecode(b"set\xfe.h5")
    shutil.copy(trained.data, data)
    cache = trained.tmp / "cache.h5"
    assert figures_main.main(["neighbours", "--checkpoint", str(trained.run), "--data-path",
                              str(data), "--indices", "1", "-k", "2", "--cache", str(cache),
                              "-o", str(trained.tmp / "n.png")]) == 0
    with h5py.File(cache, "r") as file:
        assert file.attrs["data_path"] == str(trained.tmp / "set\\xfe.h5")


def test_a_cache_the_disk_cannot_hold_is_one_line_and_leaves_nothing(trained, capsys,
                                                                     monkeypatch):
    """The room for every vector is taken before HDF5 writes the first: HDF5's failed write
    crashed h5py (a segmentation fault, tracebacks) where the disk, a quota or a file-size
    limit could not hold them."""
    def full(descriptor, offset, length):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
    monkeypatch.setattr(os, "posix_fallocate", full)
    cache = trained.tmp / "full-cache.h5"
    assert figures_main.main(["neighbours", "--checkpoint", str(trained.run), "--data-path",
                              str(trained.data), "--indices", "1", "-o",
                              str(trained.tmp / "n.png"), "--cache", str(cache)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"error: {cache}: Disk quota exceeded"
    assert not cache.exists() and not list(trained.tmp.glob(".partial-full-cache*"))


def test_a_cache_path_holding_another_file_is_refused_before_any_work(trained, capsys):
    """--cache naming the dataset (or a checkpoint, or any file not a cache) would replace it."""
    kept = trained.data.read_bytes()
    common = ["neighbours", "--checkpoint", str(trained.run), "--data-path", str(trained.data),
              "--indices", "1", "-o", str(trained.tmp / "n.png")]
    assert figures_main.main(common + ["--cache", str(trained.data)]) == 2
    assert capsys.readouterr().err == (
        f"error: --cache {trained.data}: holds a file that is not a cache of feature vectors, "
        f"which computing them would replace; give another path\n")
    assert trained.data.read_bytes() == kept
    with pytest.raises(SystemExit) as exit_:
        figures_main.main(common + ["--cache", str(trained.tmp)])
    assert exit_.value.code == 2
    assert f"--cache '{trained.tmp}': must name a file, not a folder" in capsys.readouterr().err


def test_a_default_cache_place_that_cannot_be_written_is_refused_before_any_work(
        trained, capsys, tmp_path, monkeypatch):
    """A run folder this user may not write (root, running the tests, may write any: a
    stand-in for it), the figure given elsewhere."""
    run = tmp_path / "copy"
    run.mkdir()
    shutil.copy(trained.run / "best.h5", run / "best.h5")
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: path != str(run) and access(path, mode))
    assert figures_main.main(["neighbours", "--checkpoint", str(run), "--data-path",
                              str(trained.data), "--indices", "0", "-o",
                              str(tmp_path / "n.png")]) == 2
    assert capsys.readouterr().err == (f"error: the feature cache {run}/features/best-train.h5: "
                                       f"{run} is not writable (--cache names another place)\n")
    assert sorted(os.listdir(run)) == ["best.h5"]


@pytest.mark.parametrize("figure", ["filters", "neighbours"])
def test_an_output_that_cannot_be_written_is_refused_before_any_work(trained, capsys, figure):
    common = [figure, "--checkpoint", str(trained.run)]
    for output, message in ((trained.tmp, f"-o '{trained.tmp}': must name a file, not a folder"),
                            ("", "-o '': must name a file, not a folder"),
                            (trained.tmp / "f.jpg", f"-o {trained.tmp / 'f.jpg'}: the output "
                                                    f"is a PNG file; give a name ending in .png"),
                            (trained.data / "f.png", f"-o {trained.data / 'f.png'}: "
                                                     f"{trained.data} is a file, not a folder")):
        with pytest.raises(SystemExit) as exit_:
            figures_main.main(common + ["-o", str(output)])
        assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("figure", ["filters", "neighbours", "predictions"])
def test_a_default_place_that_cannot_be_written_is_refused_before_any_work(trained, capsys,
                                                                           tmp_path, figure):
    run = tmp_path / "copy"
    run.mkdir()
    shutil.copy(trained.run / "best.h5", run / "best.h5")
    (run / "figures").write_text("")   # a file where the figures' folder would be
    common = ["--data-path", str(trained.data)] if figure != "filters" else []
    assert figures_main.main([figure, "--checkpoint", str(run), *common]) == 2
    assert capsys.readouterr().err == (f"error: the figure {run / 'figures' / figure}.png: "
                                       f"{run / 'figures'} is a file, not a folder (-o names "
                                       f"another place)\n")
    assert sorted(os.listdir(run)) == ["best.h5", "figures"]   # no features cached


@pytest.mark.parametrize("figure", ["filters", "neighbours", "predictions"])
def test_a_checkpoint_under_a_file_is_named_not_the_figure_beside_it(trained, capsys, figure):
    """The mistake is the checkpoint's path: the figure's default place beside it is no
    place either, but the message names what was given."""
    given = trained.data / "best.h5"   # under the dataset file
    common = ["--data-path", str(trained.data)] if figure != "filters" else []
    assert figures_main.main([figure, "--checkpoint", str(given), *common]) == 2
    assert capsys.readouterr().err.startswith(f"error: checkpoint {given}: ")


def test_an_output_that_is_an_input_picture_is_refused_before_any_work(trained, capsys):
    image = save_png(trained.val[2], trained.tmp / "same.png")
    kept = open(image, "rb").read()
    with pytest.raises(SystemExit) as exit_:
        figures_main.main(["neighbours", "--checkpoint", str(trained.run), "--data-path",
                           str(trained.data), image, "-o", str(trained.tmp / "." / "same.png")])
    assert exit_.value.code == 2
    assert (f"-o {trained.tmp / '.' / 'same.png'}: the same file as the input {image}, which the "
            f"output would replace") in capsys.readouterr().err
    assert open(image, "rb").read() == kept


@pytest.mark.parametrize("figure", ["neighbours", "predictions"])
def test_a_default_place_that_is_an_input_picture_is_refused_before_any_work(trained, capsys,
                                                                            tmp_path, figure):
    """A picture given from the figures' folder of the run, under the figure's own name."""
    run = tmp_path / "copy"
    (run / "figures").mkdir(parents=True)
    shutil.copy(trained.run / "best.h5", run / "best.h5")
    image = save_png(trained.val[2], run / "figures" / f"{figure}.png")
    kept = open(image, "rb").read()
    assert figures_main.main([figure, "--checkpoint", str(run), "--data-path", str(trained.data),
                              image]) == 2
    assert capsys.readouterr().err == (f"error: the figure {image}: the same file as the input "
                                       f"{image}, which the figure would replace (-o names "
                                       f"another place)\n")
    assert open(image, "rb").read() == kept
    assert sorted(os.listdir(run)) == ["best.h5", "figures"]   # no features cached


def test_a_figure_in_the_place_of_the_cache_is_refused_before_any_work(trained, capsys,
                                                                      tmp_path):
    """-o and --cache naming one file, there or not yet: the figure would replace the vectors."""
    same = tmp_path / "same.png"
    assert figures_main.main(["neighbours", "--checkpoint", str(trained.run), "--data-path",
                              str(trained.data), "--indices", "0", "--cache", str(same), "-o",
                              str(same)]) == 2
    assert capsys.readouterr().err == (f"error: the figure {same}: the same file as the cache "
                                       f"of vectors {same}, which the figure would replace\n")
    assert not same.exists()


def test_ctrl_c_is_one_line_and_leaves_no_file_half_written(trained, capsys, monkeypatch):
    def stopped(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(Image.Image, "save", stopped)
    out = trained.tmp / "stopped.png"
    assert figures_main.main(["filters", "--checkpoint", str(trained.run), "-o", str(out)]) == 130
    assert capsys.readouterr().err == "interrupted: no file is left half-written\n"
    assert not out.exists() and not list(trained.tmp.glob(".partial-*"))


def test_a_figure_that_cannot_be_written_is_one_line_naming_it_and_exit_2(trained, capsys,
                                                                           monkeypatch):
    """A full disk at the write (an error naming no file, as a write's): the file asked for
    is named, not its temporary name."""
    def full_disk(image, path, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(Image.Image, "save", full_disk)
    out = trained.tmp / "full.png"
    assert figures_main.main(["filters", "--checkpoint", str(trained.run), "-o", str(out)]) == 2
    assert capsys.readouterr().err == f"error: {out}: No space left on device\n"
    assert not out.exists() and not list(trained.tmp.glob(".partial-full.png*"))


def test_neighbours_of_a_file_equal_those_of_its_stored_image(trained, capsys):
    image = save_png(trained.val[2], trained.tmp / "q.png")
    common = ["neighbours", "--checkpoint", str(trained.run), "--data-path", str(trained.data),
              "-k", "3", "-o", str(trained.tmp / "q.png.png")]
    assert figures_main.main(common + ["--indices", "2"]) == 0
    from_split = parse_neighbours(capsys.readouterr().out)
    assert figures_main.main(common + [image]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("q.png: ")
    assert parse_neighbours(line.replace("q.png", "val[2]", 1)) == from_split



@pytest.mark.parametrize("figure", ["predictions", "neighbours"])
def test_image_files_of_any_name_are_titled_with_it(trained, capsys, figure):
    """A name that is not UTF-8 is shown with \\xNN escapes, one holding `$` as it is, in the
    figure and in neighbours' lines."""
    names = [os.fsdecode(b"q\xfe.png"), "$a^{$.png"]
    paths = [save_png(trained.val[i], trained.tmp / name) for i, name in enumerate(names)]
    out = trained.tmp / "titled.png"
    few = ["-k", "2"] if figure == "neighbours" else []
    assert figures_main.main([figure, *paths, "--checkpoint", str(trained.run), "--data-path",
                              str(trained.data), *few, "-o", str(out)]) == 0
    assert png_size(out)
    if figure == "neighbours":
        lines = capsys.readouterr().out.splitlines()
        assert [line.split(": ")[0] for line in lines[:2]] == ["q\\xfe.png", "$a^{$.png"]


def test_class_and_dataset_names_and_a_cache_of_any_name_are_shown(trained, capsys):
    """A dataset's class names are any text (prepare's class table), one may hold a tab or an
    escape sequence, its name too, a --cache a newline: each line that names them (predict's,
    neighbours', the note of a checkpoint trained on another dataset) is one line, shown."""
    data, odd = trained.tmp / "odd.h5", "class\t{}\x1b[31m"
    dataset.write(data, name="odd\x1b[31m", train_images=trained.train,
                  train_labels=trained.train_labels, val_images=trained.val,
                  val_labels=trained.val_labels, class_ids=[f"c{i}" for i in range(CLASSES)],
                  class_names=[odd.format(i) for i in range(CLASSES)])
    shown_class = r"class\\t\d\\x1b\[31m"   # a pattern of the names as shown
    image = save_png(trained.val[0], trained.tmp / "v.png")
    trained_on = trained.tmp / "trained-on-other.h5"
    checkpoint.save(trained_on, trained.network,
                    {key: np.zeros_like(value) for key, value in trained.network.params.items()},
                    {"epoch": 1, "step": 1, "dataset": {"name": "other\n10"}})
    assert predict.main([image, "--checkpoint", str(trained_on), "--data-path", str(data),
                         "-k", "1"]) == 0
    out, err = capsys.readouterr()
    assert re.fullmatch(rf"{re.escape(image)}\n +[\d.]+% +\d+  {shown_class}\n", out), out
    assert err == (f"note: checkpoint {trained_on} was trained on dataset other\\n10, not "
                   f"odd\\x1b[31m; the class names are this dataset's ({data})\n")
    cache = trained.tmp / "cache\n.h5"
    assert figures_main.main(["neighbours", "--checkpoint", str(trained.run), "--data-path",
                              str(data), "--indices", "1", "-k", "1", "--cache", str(cache),
                              "-o", str(trained.tmp / "n.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2, lines
    assert re.fullmatch(rf"val\[1\] {shown_class}: train\[\d+\] d=\S+ {shown_class}", lines[0])
    assert lines[1].endswith(f"train vectors computed and cached in {trained.tmp}/cache\\n.h5")


class FailingOutput(io.TextIOBase):
    """A standard output that cannot be written: a full disk, a closed pipe."""
    def write(self, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_neighbours_saves_its_figure_before_it_prints(trained, monkeypatch):
    out = trained.tmp / "kept.png"
    monkeypatch.setattr(sys, "stdout", FailingOutput())
    figures_main.main(["neighbours", "--checkpoint", str(trained.run), "--data-path",
                       str(trained.data), "--indices", "1", "-k", "2", "-o", str(out)])
    assert png_size(out) == (round(3 * neighbours.CELL * DPI), round(neighbours.CELL * DPI))


# -- curves -------------------------------------------------------------------------------------
def write_run(folder, rng, rates):
    folder.mkdir()
    rows = []
    with open(folder / "epochs.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, EPOCH_FIELDS)
        writer.writeheader()
        for epoch, rate in enumerate(rates, 1):
            row = {field: rng.uniform(0, 1) for field in EPOCH_FIELDS}
            row.update(epoch=epoch, weight_lr=rate, bias_lr=2 * rate)
            writer.writerow(row)
            rows.append(row)
    with open(folder / "log.jsonl", "w") as handle:
        for step in range(10, 60, 10):
            handle.write(json.dumps({"epoch": 1, "step": step, "loss": 2.0 / step}) + "\n")
    return rows


def test_curves_of_two_runs(tmp_path, rng, capsys):
    first = write_run(tmp_path / "a", rng, [0.01, 0.01, 0.001, 0.001, 0.0001])
    write_run(tmp_path / "b", rng, [0.01, 0.01, 0.01])
    out = tmp_path / "curves.png"
    assert figures_main.main(["curves", str(tmp_path / "a"), str(tmp_path / "b"),
                              "--labels", "A", "B", "-o", str(out)]) == 0
    assert png_size(out) == (1200, 800)
    assert capsys.readouterr().out.endswith(": 2 run(s) of 3 to 5 epochs\n")
    epochs = curves.read_epochs(tmp_path / "a")
    assert curves.rate_changes(epochs) == [(2.0, 0.001), (4.0, 0.0001)]
    figure = curves.draw([(epochs, curves.read_steps(tmp_path / "a"))], ["A"])
    loss, top1, top5, steps = figure.axes
    for ax, field, title, percent in ((loss, "loss", "loss", False),
                                      (top1, "top1", "top-1 error", True),
                                      (top5, "top5", "top-5 error", True)):
        assert ax.get_title() == title
        assert isinstance(ax.yaxis.get_major_formatter(), PercentFormatter) == percent
        train, val = ax.lines[0], ax.lines[1]
        assert (train.get_label(), val.get_label()) == ("A train", "A val")
        np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3, 4, 5])
        np.testing.assert_allclose(train.get_ydata(), [r[f"train_{field}"] for r in first])
        np.testing.assert_allclose(val.get_ydata(), [r[f"val_{field}"] for r in first])
    np.testing.assert_allclose(steps.lines[0].get_ydata(), [2.0 / s for s in range(10, 60, 10)])


def test_each_run_has_a_colour_of_its_own_and_a_log_is_optional(tmp_path, rng, capsys):
    """Two runs: two colours. A run given as its epochs.csv, with no log.jsonl: its epochs
    drawn, the per-step panel left empty."""
    write_run(tmp_path / "a", rng, [0.01, 0.001])
    write_run(tmp_path / "b", rng, [0.01, 0.01])
    runs = [(curves.read_epochs(tmp_path / name), curves.read_steps(tmp_path / name))
            for name in ("a", "b")]
    loss = curves.draw(runs, ["A", "B"]).axes[0]
    colours = {line.get_label(): line.get_color() for line in loss.lines}
    assert colours["A train"] == colours["A val"] != colours["B train"] == colours["B val"]
    os.remove(tmp_path / "b" / "log.jsonl")
    out = tmp_path / "c.png"
    assert figures_main.main(["curves", str(tmp_path / "b" / "epochs.csv"), "-o",
                              str(out)]) == 0
    assert png_size(out) == (1200, 800)


def test_a_run_folder_whose_name_is_not_utf8_is_drawn(tmp_path, rng):
    folder = tmp_path / os.fsdecode(b"run\xfe")
    write_run(folder, rng, [0.01, 0.01])
    assert figures_main.main(["curves", str(folder), "-o", str(tmp_path / "c.png")]) == 0
    assert run_labels(Namespace(labels=None, runs=[str(folder)])) == ["run\\xfe"]


def test_curves_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "epochs.csv").write_text("epoch,loss\n1,2\n")
    assert figures_main.main(["curves", str(tmp_path / "bad")]) == 2
    assert "not the trainer's epochs.csv" in capsys.readouterr().err
    (tmp_path / "bytes").mkdir()
    (tmp_path / "bytes" / "epochs.csv").write_bytes(b"epoch,\xff\xfe\n")
    assert figures_main.main(["curves", str(tmp_path / "bytes")]) == 2
    assert capsys.readouterr().err == (f"error: run {tmp_path / 'bytes' / 'epochs.csv'}: not the "
                                       f"trainer's epochs.csv (bytes that are not UTF-8 text)\n")
    assert figures_main.main(["curves", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err == f"error: run {tmp_path / 'none'}: no such folder\n"
    (tmp_path / "nan").mkdir()   # the trainer stops before it writes one: a damaged file
    rows = ["1" if field == "epoch" else "0.5" for field in EPOCH_FIELDS]
    with open(tmp_path / "nan" / "epochs.csv", "w") as handle:
        handle.write(",".join(EPOCH_FIELDS) + "\n" + ",".join(rows) + "\n"
                     + ",".join("nan" if field == "val_top1" else value
                                for field, value in zip(EPOCH_FIELDS, rows)) + "\n")
    assert figures_main.main(["curves", str(tmp_path / "nan")]) == 2
    assert capsys.readouterr().err == (f"error: run {tmp_path / 'nan' / 'epochs.csv'}: row 2 "
                                       f"holds val_top1 nan, not an error rate from 0 to 1 (a "
                                       f"damaged file)\n")
    with pytest.raises(SystemExit) as exit_:
        figures_main.main(["curves", "x", "y", "--labels", "one"])
    assert exit_.value.code == 2


def test_curves_of_an_epochs_file_go_beside_it_under_its_run_s_name(tmp_path, rng, capsys):
    write_run(tmp_path / "a", rng, [0.01, 0.01])
    assert figures_main.main(["curves", str(tmp_path / "a" / "epochs.csv")]) == 0
    assert png_size(tmp_path / "a" / "figures" / "curves.png") == (1200, 800)
    args = figures_main.parser()[0].parse_args(["curves", str(tmp_path / "a" / "epochs.csv"),
                                                str(tmp_path / "a-epochs.csv")])
    assert run_labels(args) == ["a", "a-epochs.csv"]
    # the run's step losses are its log.jsonl's, beside its epochs.csv: the same figure
    for run, name in ((tmp_path / "a", "folder.png"), (tmp_path / "a" / "epochs.csv", "file.png")):
        assert figures_main.main(["curves", str(run), "-o", str(tmp_path / name)]) == 0
    with Image.open(tmp_path / "folder.png") as folder, Image.open(tmp_path / "file.png") as file:
        assert np.array_equal(np.asarray(folder), np.asarray(file))



def test_the_default_run_absent_is_named(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert figures_main.main(["curves"]) == 2
    assert capsys.readouterr().err == "error: run runs/fashion-mnist: no such folder\n"


def append(path, text):
    with open(path, "a") as handle:
        handle.write(text)


@pytest.mark.parametrize("figure", ["curves", "training-error"])
def test_labels_and_run_names_are_drawn_as_they_are(tmp_path, rng, figure):
    """--labels whose bytes are not UTF-8 are drawn with \\xNN escapes; a `$` in a label or a
    run's name is a dollar, not mathtext (an unmatched one would not parse)."""
    runs = [tmp_path / "$x^{$", tmp_path / "plain"]
    for folder in runs:
        if figure == "curves":
            write_run(folder, rng, [0.01, 0.01])
        else:
            write_step_log(folder, np.full(40, 0.5), per_epoch=20)
    out = str(tmp_path / "labelled.png")
    assert figures_main.main([figure, *map(str, runs), "-o", out]) == 0
    labels = [os.fsdecode(b"a\xffb"), "$\\frac{$"]
    assert figures_main.main([figure, *map(str, runs), "--labels", *labels, "-o", out]) == 0
    assert run_labels(Namespace(labels=labels, runs=runs)) == ["a\\xffb", "$\\frac{$"]


def test_a_line_cut_short_where_a_run_stopped_is_left_out(tmp_path, rng, capsys):
    """The trainer drops a last line without its newline when the run goes on: the figures read
    the run without it. A damaged line that has its newline is still refused."""
    write_run(tmp_path / "run", rng, [0.01, 0.01])
    append(tmp_path / "run" / "epochs.csv", "3,2.3")
    append(tmp_path / "run" / "log.jsonl", '{"epoch": 3, "st')
    write_step_log(tmp_path / "steps", np.full(40, 0.5), per_epoch=20)
    append(tmp_path / "steps" / "log.jsonl", '{"epoch": 3, "st')
    out = str(tmp_path / "cut.png")
    assert figures_main.main(["curves", str(tmp_path / "run"), "-o", out]) == 0
    assert figures_main.main(["training-error", str(tmp_path / "steps"), "-o", out]) == 0
    assert len(curves.read_epochs(tmp_path / "run")["epoch"]) == 2
    assert len(curves.read_steps(tmp_path / "run")[0]) == 5
    append(tmp_path / "run" / "log.jsonl", "\n")
    capsys.readouterr()
    assert figures_main.main(["curves", str(tmp_path / "run"), "-o", out]) == 2
    assert capsys.readouterr().err.endswith(": line 6 is not a log entry\n")
    append(tmp_path / "run" / "epochs.csv", "\n")
    assert figures_main.main(["curves", str(tmp_path / "run"), "-o", out]) == 2
    assert "not the trainer's epochs.csv" in capsys.readouterr().err


@pytest.mark.parametrize("name,field,value,meaning", [
    ("log.jsonl", "step", 10 ** 23, "1e+23, not a whole number from 1 to 9007199254740992"),
    ("log.jsonl", "step", 0, "0.0, not a whole number from 1"),
    ("log.jsonl", "step", 2.5, "2.5, not a whole number from 1"),
    ("log.jsonl", "loss", -1.0, "-1.0, not a finite number of 0 or more"),
    ("epochs.csv", "epoch", 2 ** 53 + 2, "9007199254740994.0, not a whole number from 1"),
    ("epochs.csv", "train_top1", -1e308, "-1e+308, not an error rate from 0 to 1"),
    ("epochs.csv", "val_top5", 1.5, "1.5, not an error rate from 0 to 1"),
    ("epochs.csv", "seconds", float("inf"), "inf, not a finite number of 0 or more"),
    ("epochs.csv", "weight_lr", -0.01, "-0.01, not a finite number of 0 or more"),
])
def test_values_the_trainer_never_writes_are_a_damaged_file(tmp_path, rng, capsys, name,
                                                            field, value, meaning):
    """Line 5 of log.jsonl or row 2 of epochs.csv holds a value out of its field's range."""
    folder = tmp_path / "run"
    write_run(folder, rng, [0.01, 0.01, 0.01])
    if name == "log.jsonl":
        lines = (folder / name).read_text().splitlines()
        lines[4] = json.dumps({**json.loads(lines[4]), field: value})
        (folder / name).write_text("\n".join(lines) + "\n")
        place, path = "line 5", folder / name
    else:
        with open(folder / name, newline="") as handle:
            rows = list(csv.DictReader(handle))
        rows[1][field] = value
        with open(folder / name, "w", newline="") as handle:
            writer = csv.DictWriter(handle, EPOCH_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        place, path = "row 2", folder / name
    assert figures_main.main(["curves", str(folder), "-o", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: run {path}: {place} holds {field} {meaning}")
    assert err.endswith(" (a damaged file)\n") and err.count("\n") == 1


def test_training_error_refuses_an_error_rate_the_trainer_never_writes(tmp_path, capsys):
    write_step_log(tmp_path / "run", [0.5] * 3 + [-1e308] + [0.5] * 36, per_epoch=20)
    assert figures_main.main(["training-error", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == (f"error: run {tmp_path / 'run' / 'log.jsonl'}: line 4 "
                                       f"holds top1 -1e+308, not an error rate from 0 to 1 (a "
                                       f"damaged file)\n")


# -- training error (Figure 1) ------------------------------------------------------------------
def write_step_log(folder, errors, per_epoch, rate=0.02, steps=None):
    """A log.jsonl of one line per step (or per `steps`), `per_epoch` steps an epoch."""
    folder.mkdir()
    steps = range(1, len(errors) + 1) if steps is None else steps
    with open(folder / "log.jsonl", "w") as handle:
        for step, error in zip(steps, errors):
            handle.write(json.dumps({"epoch": (step - 1) // per_epoch + 1, "step": step,
                                     "loss": 1.0, "top1": error, "weight_lr": rate}) + "\n")


def test_running_mean_is_the_mean_of_the_last_steps(rng):
    values = rng.uniform(0, 1, 40)
    got = training_error.running_mean(values, 7)
    want = [values[max(0, i - 6):i + 1].mean() for i in range(40)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    everything = [values[:i + 1].mean() for i in range(40)]   # a window past them all
    for window in (40, 2 ** 63, 2 ** 70):
        np.testing.assert_allclose(training_error.running_mean(values, window), everything,
                                   rtol=1e-12)


def test_training_error_finds_each_run_s_first_step_at_the_threshold(tmp_path, capsys):
    """Errors that fall 0.01 a step from 0.905 (to 0) with a window of 1 reach 25% at step 67;
    a run that falls half as fast, at step 132: 2.0 times the epochs; one that never gets there
    in 1.86 epochs took more than 1.388 times: "more than 1.3×", a bound rounded down. Values
    stay clear of the threshold, so no rounding decides the step."""
    write_step_log(tmp_path / "fast", np.maximum(0.905 - 0.01 * np.arange(100), 0), per_epoch=50)
    write_step_log(tmp_path / "slow", 0.9025 - 0.005 * np.arange(150), per_epoch=50, rate=0.04)
    write_step_log(tmp_path / "stuck", np.full(93, 0.5), per_epoch=50)
    out = tmp_path / "figure1.png"
    assert figures_main.main(["training-error", *(str(tmp_path / name) for name in
                                                  ("fast", "slow", "stuck")),
                              "--window", "1", "-o", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "fast   rate 0.02  reached 25% at step 67 (epoch 1.34)"
    assert lines[1] == "slow   rate 0.04  reached 25% at step 132 (epoch 2.64)"
    assert lines[2] == "stuck  rate 0.02  not reached in 93 steps (1.86 epochs); lowest 50.00%"
    assert lines[3] == "slow took 2.0× the epochs of fast"
    assert lines[4] == "stuck took more than 1.3× the epochs of fast"
    assert png_size(out) == (700, 500)
    assert figures_main.main(["training-error", str(tmp_path / "stuck"), str(tmp_path / "fast"),
                              "-o", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[2] == "stuck did not reach 25%: no ratios"


def test_training_error_takes_a_run_of_one_finished_epoch(tmp_path, rng, capsys):
    """All its steps are epoch 1's; its epochs.csv says that epoch finished."""
    write_step_log(tmp_path / "one", np.linspace(0.9, 0.1, 50), per_epoch=50)
    assert figures_main.main(["training-error", str(tmp_path / "one"), "--window", "1"]) == 2
    assert "has not finished its first epoch" in capsys.readouterr().err
    write_run(tmp_path / "epochs", rng, [0.02])
    os.replace(tmp_path / "epochs" / "epochs.csv", tmp_path / "one" / "epochs.csv")
    assert figures_main.main(["training-error", str(tmp_path / "one"), "--window", "1"]) == 0
    assert "reached 25% at step 41 (epoch 0.82)" in capsys.readouterr().out


def test_training_error_of_runs_always_right_draws_without_a_warning(tmp_path, capsys):
    """Every logged batch without an error: the axis still spans a range (matplotlib warned of
    a singular one, 0 to 0)."""
    write_step_log(tmp_path / "right", np.zeros(40), per_epoch=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert figures_main.main(["training-error", str(tmp_path / "right"), "--window", "1",
                                  "-o", str(tmp_path / "te.png")]) == 0
    assert capsys.readouterr().err == ""


def test_training_error_names_a_runs_first_rate_and_counts_a_mean_at_the_threshold(tmp_path):
    """A run whose rate drops is named by its first rate; a mean exactly at the threshold (as
    errors of k/batch often are) has reached it; the figure's axes say what they show."""
    write_step_log(tmp_path / "run", np.linspace(0.9, 0.3, 60), per_epoch=20)
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    dropped = [line.replace('"weight_lr": 0.02', '"weight_lr": 0.002') for line in lines[40:]]
    (tmp_path / "run" / "log.jsonl").write_text("\n".join(lines[:40] + dropped) + "\n")
    run = training_error.read_run(tmp_path / "run")
    assert run[2] == 0.02
    assert training_error.first_reached(np.array([0.5, 0.25, 0.2]), 0.25) == 1
    ax = training_error.draw(["run"], [run], [run[1]], 0.25, 4).axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == (
        "epochs", "training error rate (mean of the last 4 batches)")


def test_training_error_averages_over_the_window(tmp_path):
    """Alternating batches of 0.2 and 0.4 average to 0.3: never at 25% over 2 steps, though
    every other batch is below it; over 1 step, at the first 0.2."""
    errors = np.tile([0.4, 0.2], 30)
    write_step_log(tmp_path / "run", errors, per_epoch=20)
    runs = [training_error.read_run(tmp_path / "run")]
    curve = training_error.running_mean(runs[0][1], 2)
    assert training_error.first_reached(curve, 0.25) is None
    assert training_error.first_reached(training_error.running_mean(errors, 1), 0.25) == 1
    figure = training_error.draw(["run"], runs, [curve], 0.25, 2)
    np.testing.assert_allclose(figure.axes[0].lines[0].get_xdata(), np.arange(1, 61) / 20)
    np.testing.assert_allclose(figure.axes[0].lines[0].get_ydata(), curve)


def test_training_error_figure_shows_every_run_whole(tmp_path):
    """The y axis reaches the highest run's curve, whichever run is first; x the longest run."""
    write_step_log(tmp_path / "low", np.full(40, 0.2), per_epoch=20)
    write_step_log(tmp_path / "high", np.full(60, 0.8), per_epoch=20)
    runs = [training_error.read_run(tmp_path / name) for name in ("low", "high")]
    curves = [training_error.running_mean(errors, 1) for _, errors, _ in runs]
    ax = training_error.draw(["low", "high"], runs, curves, 0.25, 1).axes[0]
    assert ax.get_ylim() == pytest.approx((0, 0.84))
    assert ax.get_xlim() == pytest.approx((0, 3))


def test_training_error_refuses_logs_it_cannot_use(tmp_path, capsys):
    write_step_log(tmp_path / "sparse", [0.5] * 5, per_epoch=100, steps=range(50, 300, 50))
    write_step_log(tmp_path / "short", [0.5] * 30, per_epoch=40)
    # every step, but from step 21: its first steps' errors are missing, and its epochs would
    # be counted from step 1 of a log that has none
    write_step_log(tmp_path / "late", [0.5] * 100, per_epoch=40, steps=range(21, 121))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "log.jsonl").write_text("{}\n")
    (tmp_path / "bytes").mkdir()
    (tmp_path / "bytes" / "log.jsonl").write_bytes(b'{"\xff\xfe": 1}\n')
    (tmp_path / "silent").mkdir()   # --print-freq past the run's steps: a log of no line
    (tmp_path / "silent" / "log.jsonl").write_text("")
    write_step_log(tmp_path / "nan", [0.5] * 3 + [float("nan")] + [0.5] * 96, per_epoch=40)
    for name, message in (("sparse", "does not log every step from step 1 (train with "
                                     "--print-freq 1)"),
                          ("short", "has not finished its first epoch"),
                          ("late", "does not log every step from step 1"),
                          ("bad", "line 1 is not a log entry"),
                          ("bytes", "line 1 is not a log entry"),
                          ("silent", "does not log every step from step 1"),
                          ("nan", "line 4 holds top1 nan, not an error rate from 0 to 1"),
                          ("none", "cannot read log.jsonl")):
        assert figures_main.main(["training-error", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: run ") and message in err and err.count("\n") == 1, err
    for flags in (["--threshold", "1.5"], ["--threshold", "1"], ["--window", "0"],
                  ["--labels", "a", "b"]):
        with pytest.raises(SystemExit) as exit_:
            figures_main.main(["training-error", str(tmp_path / "short"), *flags])
        assert exit_.value.code == 2



def test_training_error_prints_its_threshold_as_given(tmp_path, capsys):
    """0.005 is 0.5%, not 0%; 0.8125 is 81.25%, not 81%."""
    write_step_log(tmp_path / "stuck", np.full(40, 0.9), per_epoch=20)
    write_step_log(tmp_path / "falls", np.linspace(0.8, 0.0, 40), per_epoch=20)
    out = str(tmp_path / "t.png")
    assert figures_main.main(["training-error", str(tmp_path / "stuck"), str(tmp_path / "falls"),
                              "--window", "1", "--threshold", "0.005", "-o", out]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("falls  rate 0.02  reached 0.5% at step 40 ")
    assert lines[2] == "stuck did not reach 0.5%: no ratios"
    assert lines[3].endswith(": 2 run(s), threshold 0.5%")
    # a run named by its log.jsonl, as curves takes its epochs.csv: the run's folder
    assert figures_main.main(["training-error", str(tmp_path / "falls" / "log.jsonl"),
                              "--window", "1", "--threshold", "0.005", "-o", out]) == 0
    assert capsys.readouterr().out.startswith("falls  rate 0.02  reached 0.5% at step 40 ")
    assert figures_main.main(["training-error", str(tmp_path / "falls"), "--window", "1",
                              "--threshold", "0.8125", "-o", out]) == 0
    assert capsys.readouterr().out.startswith("falls  rate 0.02  reached 81.25% at step 1 ")


def test_training_error_saves_its_figure_before_it_prints(tmp_path, monkeypatch):
    write_step_log(tmp_path / "run", np.full(40, 0.5), per_epoch=20)
    out = tmp_path / "kept.png"
    monkeypatch.setattr(sys, "stdout", FailingOutput())
    figures_main.main(["training-error", str(tmp_path / "run"), "-o", str(out)])
    assert png_size(out) == (700, 500)


def test_the_readme_figure1_lines_are_the_commands_output(tmp_path, capsys, monkeypatch):
    commands = shown_commands("python -m convnet.figures training-error")
    assert len(commands) == 4
    monkeypatch.chdir(os.path.join(ROOT, "bench", "results", "figure1"))
    for arguments, printed in commands:
        # The last -o wins: the test's PNG goes to its own folder.
        assert figures_main.main(["training-error", *arguments, "-o",
                                  str(tmp_path / "figure1.png")]) == 0
        output = capsys.readouterr().out.splitlines()
        assert output[:-1] == printed[:-1]
        assert output[-1].startswith("wrote ") and printed[-1].startswith("wrote ")


def test_figures_run_as_a_module(trained):
    result = subprocess.run([sys.executable, "-m", "convnet.figures", "filters",
                             "--checkpoint", str(trained.run)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert png_size(trained.run / "figures" / "filters.png") == (
        9 + 16 * 54, 9 + 54 + 3 * 9 + 54)   # zoom 9 (about 44 pixels a kernel): cells of 54
