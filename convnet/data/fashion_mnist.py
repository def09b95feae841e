"""Fashion-MNIST → the prepared-dataset format (convnet.data.dataset): the project's real default
dataset, so that the main command trains on real images on any machine.

    python -m convnet.data.fashion_mnist [--source DIR] [--output data/fashion-mnist.h5]

The source is Debian's `dataset-fashion-mnist` package (MIT licence; IDX files in
/usr/share/datasets/fashion-mnist). Each 28×28 grey image is zero-padded by 2 pixels to 32×32
(its background is 0, so the padding is exact; 28/32 = 224/256, the ImageNet crop ratio) and
replicated into R, G and B, so one format and one loader serve both datasets. The 60,000
training images are the train split, the 10,000 test images the val split.
"""
import gzip
import os
import sys
import zlib

import numpy as np
from PIL import Image

from convnet import options
from convnet.atomic import check_writable
from convnet.data.dataset import write
from convnet.data.prepare import load_image
from convnet.errors import INTERRUPTED_STATUS, one_line, open_regular, run_command, shown

NAME = "fashion-mnist"   # the dataset's name in the prepared file
DEBIAN_SOURCE = "/usr/share/datasets/fashion-mnist"
DEFAULT_OUTPUT = "data/fashion-mnist.h5"
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "val": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot")
SIDE = 28   # pixels a side of each image
PAD = 2


def read_idx(path, magic, dims):
    """The array of an IDX file (big-endian header: magic, then one uint32 per dimension)."""
    try:
        with open_regular(path, "rb") as raw, gzip.GzipFile(fileobj=raw) as handle:
            data = handle.read()
    except (OSError, EOFError, zlib.error) as error:   # not gzip, cut short, damaged
        raise ValueError(f"{path}: not a readable gzip file ({one_line(error)})") from None
    if len(data) < 4 * (1 + dims):
        raise ValueError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    header = np.frombuffer(data, ">u4", count=1 + dims)
    if header[0] != magic:
        raise ValueError(f"{path}: not an IDX file of {dims} dimension(s) (magic {header[0]:#x})")
    shape = tuple(int(d) for d in header[1:])
    body = np.frombuffer(data, np.uint8, offset=4 * (1 + dims))
    if body.size != np.prod(shape):
        raise ValueError(f"{path}: truncated ({body.size} bytes for shape {shape})")
    return body.reshape(shape)


def load_split(source, split):
    images_file, labels_file = (os.path.join(source, name) for name in FILES[split])
    images = read_idx(images_file, 0x803, 3)
    if images.shape[1:] != (SIDE, SIDE) or not len(images):
        raise ValueError(f"{images_file}: holds {len(images)} images of {images.shape[1]}×"
                         f"{images.shape[2]} pixels; Fashion-MNIST's are {SIDE}×{SIDE}")
    labels = read_idx(labels_file, 0x801, 1)
    if len(images) != len(labels):
        raise ValueError(f"{source}: {split} has {len(images)} images but {len(labels)} labels")
    if len(labels) and labels.max() >= len(CLASS_NAMES):
        raise ValueError(f"{labels_file}: label {labels.max()} is past the {len(CLASS_NAMES)} "
                         f"classes")
    padded = np.pad(images, ((0, 0), (PAD, PAD), (PAD, PAD)))
    return np.repeat(padded[..., None], 3, axis=3), labels


def load_picture(path, size):
    """An image file in this dataset's stored form, S = size: its central square resized to
    S − 2·PAD (convnet.data.prepare.load_image), made grey as Pillow's "L" mode does (ITU-R 601
    luma), zero-padded by PAD and replicated into R, G and B. A 28×28 Fashion-MNIST picture
    comes out exactly as the dataset stores it. Returns (uint8 (S, S, 3) or None, note)."""
    pixels, note = load_image(path, size - 2 * PAD)
    if pixels is None:
        return None, note
    grey = np.pad(np.asarray(Image.fromarray(pixels).convert("L")), PAD)
    return np.repeat(grey[..., None], 3, axis=2), note


def prepare(source=DEBIAN_SOURCE, output=DEFAULT_OUTPUT):
    check_writable(output, "--output")
    missing = [name for pair in FILES.values() for name in pair
               if not os.path.isfile(os.path.join(source, name))]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST not found in {source} (missing {', '.join(missing)}); install it "
            f"with: apt-get install dataset-fashion-mnist")
    train_images, train_labels = load_split(source, "train")
    val_images, val_labels = load_split(source, "val")
    write(output, name=NAME, train_images=train_images, train_labels=train_labels,
          val_images=val_images, val_labels=val_labels,
          class_ids=[str(i) for i in range(len(CLASS_NAMES))], class_names=CLASS_NAMES)
    return output


def identity(path):
    """What tells a file from the one that replaces it (its inode and change time), or None."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_ino, status.st_ctime_ns


def main(argv=None):
    parser = options.Parser(prog="python -m convnet.data.fashion_mnist",
                            description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=DEBIAN_SOURCE, help="folder of the IDX .gz files")
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    before = identity(args.output)
    try:
        path = prepare(args.source, args.output)
    except (OSError, ValueError) as error:
        print(f"error: {shown(str(error))}", file=sys.stderr)   # names: one line, escaped
        return 2
    except KeyboardInterrupt:
        # the output is renamed into place whole; a Ctrl-C may come after, as its folder syncs
        state = "is as it was" if identity(args.output) == before else "was written whole"
        print(f"interrupted: {shown(args.output)} {state}", file=sys.stderr)
        return INTERRUPTED_STATUS
    print(f"wrote {shown(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
