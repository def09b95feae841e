"""A small ILSVRC-2012-layout tree of real images, with the bad files ImageNet is known to hold
and a few worse ones (BAD), for the prepare and loader tests and tools/bench_data.py.

Real images: the two photographs scikit-learn ships (china.jpg, flower.jpg), cut into crops of
several shapes and sizes (some large enough for JPEG draft mode), and Fashion-MNIST samples
(Debian's dataset-fashion-mnist) as RGB JPEGs.
"""
import gzip
import importlib.util
import io
import os

import numpy as np
from PIL import ExifTags, Image

WNIDS = ("n01440764", "n01443537", "n01484850")      # the first three ILSVRC-2012 classes
FASHION_MNIST_IMAGES = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


def _png16_mode():
    """How this Pillow opens a 16-bit greyscale PNG: I;16 from Pillow 10.3, I before."""
    encoded = io.BytesIO()
    Image.fromarray(np.zeros((1, 1), np.uint16)).save(encoded, "PNG")
    return Image.open(encoded).mode


PNG16_NOTE = {"I;16": "16-bit greyscale (I;16)", "I": "integer greyscale (I)"}[_png16_mode()]
BAD = {   # file name → (converted or skipped, the start of its reason in /report)
    "cmyk.JPEG": ("converted", "CMYK converted to RGB"),
    "grey.JPEG": ("converted", "greyscale (L) converted to RGB"),
    "png.JPEG": ("converted", "PNG file under a JPEG name"),
    "grey16.png": ("converted", f"PNG file; {PNG16_NOTE} converted to RGB"),
    "rotated.JPEG": ("converted", "EXIF orientation 6 not applied"),
    "truncated.JPEG": ("skipped", "truncated"),
    "empty.JPEG": ("skipped", "empty file"),
    "text.JPEG": ("skipped", "not an image"),
}


def photographs():
    """The photographs scikit-learn ships, found without importing scikit-learn (slow)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None:
        raise RuntimeError("scikit-learn is needed for its sample photographs: "
                           "pip install -e '.[test]'")
    folder = os.path.join(spec.submodule_search_locations[0], "datasets", "images")
    return [Image.open(os.path.join(folder, name)).convert("RGB")
            for name in ("china.jpg", "flower.jpg")]


def fashion_mnist(count):
    """The first `count` Fashion-MNIST training images (28×28 uint8), or none where the Debian
    package is not installed."""
    if not os.path.exists(FASHION_MNIST_IMAGES):
        return np.zeros((0, 28, 28), np.uint8)
    with gzip.open(FASHION_MNIST_IMAGES, "rb") as handle:
        data = handle.read(16 + count * 784)
    return np.frombuffer(data, np.uint8, offset=16).reshape(-1, 28, 28)


def jpeg_bytes(image, quality=90):
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def real_images(rng, count):
    """`count` RGB images: crops of the photographs (sizes 60 to 640 pixels, both orientations)
    and Fashion-MNIST samples."""
    photos = photographs()
    grey = fashion_mnist(count // 4)
    images = [Image.fromarray(np.repeat(g[..., None], 3, axis=2)) for g in grey]
    while len(images) < count:
        photo = photos[len(images) % len(photos)]
        width = int(rng.integers(60, photo.width + 1))
        height = int(rng.integers(60, photo.height + 1))
        left = int(rng.integers(0, photo.width - width + 1))
        top = int(rng.integers(0, photo.height - height + 1))
        images.append(photo.crop((left, top, left + width, top + height)))
    order = rng.permutation(len(images))
    return [images[i] for i in order]


def bad_files(photo):
    """{name: bytes} of the deliberately bad files, made from one real photograph."""
    png, grey16, rotated = io.BytesIO(), io.BytesIO(), io.BytesIO()
    photo.save(png, "PNG")
    Image.fromarray(np.asarray(photo.convert("L"), np.uint16) * 257).save(grey16, "PNG")
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6   # a camera held upright: rotate 90° clockwise to show
    photo.save(rotated, "JPEG", quality=90, exif=exif)
    good = jpeg_bytes(photo)
    return {"cmyk.JPEG": jpeg_bytes(photo.convert("CMYK")),
            "grey.JPEG": jpeg_bytes(photo.convert("L")),
            "png.JPEG": png.getvalue(),
            "grey16.png": grey16.getvalue(),
            "rotated.JPEG": rotated.getvalue(),
            "truncated.JPEG": good[:len(good) // 2],
            "empty.JPEG": b"",
            "text.JPEG": b"this is not a JPEG, just text\n"}


def build(root, rng, per_class=6, val_per_class=2, flat_val=False):
    """Write ROOT/train/<wnid>/*.JPEG and ROOT/val (class folders, or flat with a labels file
    ROOT/val_labels.tsv); the bad files go into the first class of train/. Returns
    {relative path: class index} of the good files."""
    images = real_images(rng, len(WNIDS) * (per_class + val_per_class))
    labels, labels_tsv = {}, ["file\tindex"]
    for index, wnid in enumerate(WNIDS):
        for split, count in (("train", per_class), ("val", val_per_class)):
            for number in range(count):
                name = f"{wnid}_{split}_{number}.JPEG"
                relative = (f"val/{name}" if split == "val" and flat_val
                            else f"{split}/{wnid}/{name}")
                path = os.path.join(root, relative)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as handle:
                    handle.write(jpeg_bytes(images.pop()))
                labels[relative] = index
                if split == "val":
                    labels_tsv.append(f"{name}\t{index}")   # the first three table indices
    for name, data in bad_files(photographs()[0].crop((0, 0, 300, 200))).items():
        with open(os.path.join(root, "train", WNIDS[0], name), "wb") as handle:
            handle.write(data)
    if flat_val:
        with open(os.path.join(root, "val_labels.tsv"), "w") as handle:
            handle.write("\n".join(labels_tsv) + "\n")
    return labels
