"""The prepared-dataset format (HDF5), its writer and its reader.

  /train/images   (N, S, S, 3) uint8, RGB, S×S the stored size (256 for ImageNet)
  /train/labels   (N,) int32, class index = position in the sorted class-id list
  /val/images, /val/labels      the same for the validation split
  /mean           (S, S, 3) float32, the per-pixel mean of the training images
  /eigenvalues    (3,) float64, ascending, of the 3×3 covariance of training RGB values (0–255)
  /eigenvectors   (3, 3) float64, the matching unit eigenvectors as columns
  /class_ids      (K,) str (wnids for ImageNet), /class_names (K,) str
  attrs: format = FORMAT, image_size = S, name; complete = True, written last
Images are chunked by about CHUNK_BYTES (one 256×256 image per chunk, 85 Fashion-MNIST images),
so the loader's random reads touch little more than the images they want. A file made by
convnet.data.prepare also holds /report/converted and /report/skipped: "path<TAB>reason" lines.

Statistics (class Statistics), over the N training images, P pixels each, RGB values 0–255:
  mean[y, x, c] = Σ_n image_n[y, x, c] / N
  covariance = Σ v v^T / M − m m^T over the M = N·P pixels' RGB vectors v, m = Σ v / M
The sums are kept as exact integers (int64), so they do not depend on batching or on the order
in which worker processes deliver their blocks; covariance = (M·Σ v v^T − Σv Σv^T) / M² is
formed from Python integers and rounded once.

Writers build the file atomically (convnet.atomic), so an interrupted preparation never leaves a
file that looks complete; readers refuse a file that is not complete.
"""
import h5py
import numpy as np

from convnet.atomic import atomic_h5
from convnet.errors import damaged_file_errors, open_hdf5

FORMAT = "convnet-dataset-1"
SPLITS = ("train", "val")
CHUNK_BYTES = 256 * 1024   # per HDF5 chunk: one ImageNet image, or a run of small images
EXACT_FLOAT_PIXELS = 1 << 20   # float64 products of ≤ this many pixels sum to < 2^53: exact


class DatasetError(Exception):
    """A dataset file that cannot be used; the message names it and says what is wrong."""


def chunk_images(size):
    """Images per HDF5 chunk for S×S×3 uint8 images."""
    return max(1, CHUNK_BYTES // (size * size * 3))


class Statistics:
    """Exact running sums over uint8 RGB images (n, S, S, 3); blocks may be added in any order,
    and sums made in several processes merged."""

    def __init__(self, size):
        self.count = 0
        self.pixel_sum = np.zeros((size, size, 3), np.int64)
        self.rgb_sum = np.zeros(3, np.int64)
        self.rgb_outer = np.zeros((3, 3), np.int64)

    def add(self, images):
        self.count += len(images)
        self.pixel_sum += images.sum(axis=0, dtype=np.int64)
        pixels = images.reshape(-1, 3)
        self.rgb_sum += pixels.sum(axis=0, dtype=np.int64)
        # BLAS in float64: every partial sum is an integer below 2^53, so the result is exact.
        for start in range(0, len(pixels), EXACT_FLOAT_PIXELS):
            block = pixels[start:start + EXACT_FLOAT_PIXELS].astype(np.float64)
            self.rgb_outer += (block.T @ block).astype(np.int64)
        return self

    def merge(self, other):
        self.count += other.count
        self.pixel_sum += other.pixel_sum
        self.rgb_sum += other.rgb_sum
        self.rgb_outer += other.rgb_outer
        return self

    def result(self):
        """(mean image float32, eigenvalues ascending float64, unit eigenvectors as columns)."""
        if self.count == 0:
            raise ValueError("no training images to compute the mean and colour statistics from")
        mean = (self.pixel_sum / self.count).astype(np.float32)
        pixels = self.count * self.pixel_sum.shape[0] * self.pixel_sum.shape[1]
        sums = [int(v) for v in self.rgb_sum]
        covariance = np.array([[(int(self.rgb_outer[i, j]) * pixels - sums[i] * sums[j])
                                / pixels ** 2 for j in range(3)] for i in range(3)])
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        return mean, np.maximum(eigenvalues, 0.0), eigenvectors


def image_statistics(images, batch=4096):
    """(mean image float32, eigenvalues, eigenvectors) of uint8 images (N, S, S, 3), read in
    batches so that an HDF5 dataset of 1.3 million images need not fit in memory."""
    statistics = Statistics(images.shape[1])
    for start in range(0, len(images), batch):
        statistics.add(np.asarray(images[start:start + batch]))
    return statistics.result()


def write_statistics(file, statistics):
    """Store (mean, eigenvalues, eigenvectors), as from Statistics.result()."""
    mean, eigenvalues, eigenvectors = statistics
    file["mean"] = mean
    file["eigenvalues"] = eigenvalues
    file["eigenvectors"] = eigenvectors


def write_classes(file, *, name, size, class_ids, class_names):
    file["class_ids"] = np.array(class_ids, dtype=h5py.string_dtype())
    file["class_names"] = np.array(class_names, dtype=h5py.string_dtype())
    file.attrs["format"] = FORMAT
    file.attrs["image_size"] = size
    file.attrs["name"] = name


def labels_outside(split, labels, classes):
    """What is wrong with `split`'s labels for `classes` classes (one checked by the writer and
    the reader alike), or None."""
    if len(labels) and not 0 <= labels.min() <= labels.max() < classes:
        return (f"{split} labels must lie in [0, {classes}) for its {classes} classes; found "
                f"{labels.min()} to {labels.max()}")
    return None


def write(path, *, name, train_images, train_labels, val_images, val_labels, class_ids,
          class_names):
    """Write a whole dataset from in-memory arrays (small datasets such as Fashion-MNIST)."""
    size = train_images.shape[1]
    for split, images, labels in (("train", train_images, train_labels),
                                  ("val", val_images, val_labels)):
        if images.dtype != np.uint8 or images.shape[1:] != (size, size, 3):
            raise ValueError(f"{split} images must be uint8 of shape (N, {size}, {size}, 3); "
                             f"got {images.dtype} {images.shape}")
        if labels.shape != (len(images),):
            raise ValueError(f"{split} has {len(images)} images but labels of shape "
                             f"{labels.shape}")
        if not np.array_equal(labels, np.trunc(labels)):   # stored as int32
            raise ValueError(f"{split} labels must be whole numbers")
        problem = labels_outside(split, labels, len(class_ids))
        if problem:
            raise ValueError(problem)
    if len(class_names) != len(class_ids):
        raise ValueError(f"{len(class_ids)} class ids but {len(class_names)} class names")
    with atomic_h5(path) as file:
        for split, images, labels in (("train", train_images, train_labels),
                                      ("val", val_images, val_labels)):
            file.create_dataset(f"{split}/images", data=images,
                                chunks=(max(1, min(chunk_images(size), len(images))), size,
                                        size, 3),
                                maxshape=(None, size, size, 3))   # as prepare's: may be empty
            file.create_dataset(f"{split}/labels", data=labels.astype(np.int32))
        write_statistics(file, image_statistics(train_images))
        write_classes(file, name=name, size=size, class_ids=class_ids, class_names=class_names)


class Dataset:
    """An open prepared dataset. Open it in the process that reads it (after any fork)."""

    def __init__(self, path):
        self.file = open_hdf5(path, DatasetError, "dataset", "not a dataset file")
        self.path = path
        try:
            with self.reading():
                self._read_metadata()
        except BaseException:
            self.file.close()
            raise

    def _read_metadata(self):
        attrs = self.file.attrs
        if attrs.get("format") != FORMAT or not attrs.get("complete", False):
            raise DatasetError(f"dataset {self.path}: incomplete or not a convnet dataset "
                               f"(prepare it again)")
        self.name = str(attrs["name"])
        self.image_size = size = int(attrs["image_size"])
        # Read once here, and checked: an array of another shape would stop a run mid-epoch.
        shapes = {"mean": (size, size, 3), "eigenvalues": (3,), "eigenvectors": (3, 3)}
        for key, shape in shapes.items():
            setattr(self, key, self._array(key, shape))
        self.class_ids, self.class_names = (self._strings(key) for key in ("class_ids",
                                                                             "class_names"))
        if len(self.class_names) != len(self.class_ids):
            raise DatasetError(f"dataset {self.path}: {len(self.class_ids)} class ids but "
                               f"{len(self.class_names)} class names; prepare it again")
        self._labels = {split: self._values(f"{split}/labels") for split in SPLITS}
        for split, labels in self._labels.items():
            images = self._stored(f"{split}/images")
            if images.shape[1:] != (size, size, 3) or labels.ndim != 1:
                raise DatasetError(f"dataset {self.path}: {split} holds images of shape "
                                   f"{images.shape} and labels of shape {labels.shape}, not "
                                   f"(N, {size}, {size}, 3) and (N,); prepare it again")
            if images.dtype != np.uint8 or labels.dtype.kind not in "iu":
                raise DatasetError(f"dataset {self.path}: {split} holds {images.dtype} images "
                                   f"and {labels.dtype} labels, not uint8 and integers; "
                                   f"prepare it again")
            if len(images) != len(labels):
                raise DatasetError(f"dataset {self.path}: {split} holds {len(images)} images "
                                   f"but {len(labels)} labels")
            problem = labels_outside(split, labels, self.classes)
            if problem:
                raise DatasetError(f"dataset {self.path}: {problem}")

    def _stored(self, key):
        """The file's array `key`, refused where a group stands in its place."""
        stored = self.file[key]
        if not isinstance(stored, h5py.Dataset):
            raise DatasetError(f"dataset {self.path}: {key} is not an array; prepare it again")
        return stored

    def _values(self, key):
        """The values of array `key` as a NumPy array (of shape () where one value is stored)."""
        return np.asarray(self._stored(key)[()])

    def _array(self, key, shape):
        """The floating-point array `key` of `shape`."""
        array = self._values(key)
        if array.shape != shape or array.dtype.kind != "f":
            raise DatasetError(f"dataset {self.path}: {key} is {array.dtype} of shape "
                               f"{array.shape}, not floating point of shape {shape}; prepare "
                               f"it again")
        return array

    def _strings(self, key):
        values = self._values(key)
        if values.ndim != 1 or not all(isinstance(value, bytes) for value in values):
            raise DatasetError(f"dataset {self.path}: {key} is not a list of strings; prepare "
                               f"it again")
        return [value.decode() for value in values]

    def reading(self):
        """A context in which a read that fails on a damaged file is one DatasetError naming
        the file."""
        return damaged_file_errors(DatasetError, lambda error: f"dataset {self.path}: corrupt "
                                                               f"or incomplete ({error}); "
                                                               f"prepare it again")

    @property
    def classes(self):
        return len(self.class_ids)

    def size(self, split):
        return len(self._labels[split])

    def labels(self, split):
        """The split's labels, as read when the file was opened."""
        return self._labels[split]

    def images(self, split, indices):
        """uint8 (n, S, S, 3) for the given indices, in their order."""
        order = np.argsort(indices)
        sorted_indices = np.asarray(indices)[order]
        with self.reading():
            block = self.file[f"{split}/images"][sorted_indices]   # h5py wants increasing
        out = np.empty_like(block)
        out[order] = block
        return out

    def close(self):
        self.file.close()
