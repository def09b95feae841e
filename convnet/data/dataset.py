"""The prepared-dataset format (HDF5), its writer and its reader.

  /train/images   (N, S, S, 3) uint8, RGB, S×S the stored size (256 for ImageNet)
  /train/labels   (N,) int32, class index = position in the sorted class-id list
  /val/images, /val/labels      the same for the validation split
  /mean           (S, S, 3) float32, the per-pixel mean of the training images
  /eigenvalues    (3,) float64, ascending, of the 3×3 covariance of training RGB values (0–255)
  /eigenvectors   (3, 3) float64, the matching unit eigenvectors as columns
  /class_ids      (K,) str (wnids for ImageNet), /class_names (K,) str
  attrs: format = FORMAT, image_size = S, name; complete = True, written last

Writers build the file atomically (convnet.atomic), so an interrupted preparation never leaves a
file that looks complete; readers refuse a file that is not complete.
"""
import h5py
import numpy as np

from convnet.atomic import atomic_h5

FORMAT = "convnet-dataset-1"
CHUNK_IMAGES = 64   # images per HDF5 chunk: one chunk read serves a run of shuffled indices


class DatasetError(Exception):
    """A dataset file that cannot be used; the message names it and says what is wrong."""


def image_statistics(images, batch=4096):
    """(mean image float32, eigenvalues, eigenvectors) of uint8 images (N, S, S, 3), in float64
    sums over batches so that 1.3 million images fit in memory."""
    count = len(images)
    total = np.zeros(images.shape[1:], np.float64)
    rgb_sum = np.zeros(3, np.float64)
    rgb_outer = np.zeros((3, 3), np.float64)
    for start in range(0, count, batch):
        block = np.asarray(images[start:start + batch], dtype=np.float64)
        total += block.sum(axis=0)
        pixels = block.reshape(-1, 3)
        rgb_sum += pixels.sum(axis=0)
        rgb_outer += pixels.T @ pixels
    pixel_count = count * images.shape[1] * images.shape[2]
    rgb_mean = rgb_sum / pixel_count
    covariance = rgb_outer / pixel_count - np.outer(rgb_mean, rgb_mean)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    return (total / count).astype(np.float32), np.maximum(eigenvalues, 0.0), eigenvectors


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
    mean, eigenvalues, eigenvectors = image_statistics(train_images)
    with atomic_h5(path) as file:
        for split, images, labels in (("train", train_images, train_labels),
                                      ("val", val_images, val_labels)):
            file.create_dataset(f"{split}/images", data=images,
                                chunks=(min(CHUNK_IMAGES, len(images)), size, size, 3))
            file.create_dataset(f"{split}/labels", data=labels.astype(np.int32))
        file["mean"] = mean
        file["eigenvalues"] = eigenvalues
        file["eigenvectors"] = eigenvectors
        file["class_ids"] = np.array(class_ids, dtype=h5py.string_dtype())
        file["class_names"] = np.array(class_names, dtype=h5py.string_dtype())
        file.attrs["format"] = FORMAT
        file.attrs["image_size"] = size
        file.attrs["name"] = name


class Dataset:
    """An open prepared dataset. Open it in the process that reads it (after any fork)."""

    def __init__(self, path):
        try:
            self.file = h5py.File(path, "r")
        except FileNotFoundError:
            raise DatasetError(f"dataset {path}: no such file") from None
        except OSError as error:
            raise DatasetError(f"dataset {path}: not a readable HDF5 file ({error})") from None
        attrs = self.file.attrs
        if attrs.get("format") != FORMAT or not attrs.get("complete", False):
            self.file.close()
            raise DatasetError(f"dataset {path}: incomplete or not a convnet dataset "
                               f"(prepare it again)")
        self.path = path
        self.image_size = int(attrs["image_size"])
        self.mean = self.file["mean"][()]
        self.eigenvalues = self.file["eigenvalues"][()]
        self.eigenvectors = self.file["eigenvectors"][()]
        self.class_ids = [s.decode() for s in self.file["class_ids"][()]]
        self.class_names = [s.decode() for s in self.file["class_names"][()]]

    @property
    def classes(self):
        return len(self.class_ids)

    def size(self, split):
        return len(self.file[f"{split}/labels"])

    def labels(self, split):
        return self.file[f"{split}/labels"][()]

    def images(self, split, indices):
        """uint8 (n, S, S, 3) for the given indices, in their order."""
        order = np.argsort(indices)
        sorted_indices = np.asarray(indices)[order]
        block = self.file[f"{split}/images"][sorted_indices]   # h5py wants increasing indices
        out = np.empty_like(block)
        out[order] = block
        return out

    def close(self):
        self.file.close()
