"""Batches for training and evaluation, with the paper's augmentation, in NumPy.

Training, per image (S the stored size, C the crop):
  1. a C×C crop at offset (y, x), y, x uniform in [0, S − C], mirrored left-right with
     probability ½; offset and flip drawn per image (paper) or once per chunk of 32 consecutive
     images of the batch (the released code);
  2. minus the central C×C crop of the mean image (the released code's choice, whatever the
     crop's offset);
  3. PCA colour noise, when on: every pixel gets + Σ_i p_i · α_i · σ_i, α_i ~ N(0, 0.1²) drawn
     once per image, p_i and λ_i the training set's RGB eigenvectors and eigenvalues, with
     σ_i = λ_i (paper's prose, "eigenvalue") or σ_i = √λ_i and the whole image then ÷ 1.1
     (released code, "sqrt-eigenvalue-div-1.1").
Evaluation: the centre crop, or the paper's 10 views: the four corner crops and the centre, and
their mirror images.
Output layout: (3, C, C, N) float32, images innermost (convnet.backend), labels (N,) int64.

Every random draw of a batch comes from a generator seeded by (seed, epoch, batch index), so a
batch is a pure function of them, whatever else has been drawn before.
"""
import numpy as np

from convnet.data.dataset import Dataset

COLOUR_NOISE = ("eigenvalue", "sqrt-eigenvalue-div-1.1")
CROP_DRAWS = {"per-image": 1, "per-chunk-32": 32}
ALPHA_STD = 0.1
CODE_DIVISOR = 1.1


def crop_and_flip(images, offsets, flips, crop):
    """images (n, S, S, 3) uint8 → (n, C, C, 3) float32 crops, mirrored where flips is set."""
    out = np.empty((len(images), crop, crop, 3), np.float32)
    for index, ((y, x), flip) in enumerate(zip(offsets, flips)):   # one slice copy per image
        window = images[index, y:y + crop, x:x + crop]
        out[index] = window[:, ::-1] if flip else window
    return out


def colour_noise(alphas, eigenvalues, eigenvectors, convention):
    """(n, 3) RGB offsets Σ_i p_i α_i σ_i, one per image."""
    if convention not in COLOUR_NOISE:
        raise ValueError(f"unknown colour-noise convention {convention!r}; choose one of "
                         f"{COLOUR_NOISE}")
    sigma = eigenvalues if convention == "eigenvalue" else np.sqrt(eigenvalues)
    return (alphas * sigma) @ eigenvectors.T


def to_layout(batch):
    """(n, C, C, 3) → (3, C, C, n), contiguous."""
    return np.ascontiguousarray(batch.transpose(3, 1, 2, 0))


class Batches:
    """The trainer's data source over one prepared dataset (see convnet.trainer)."""

    def __init__(self, path, *, crop, seed, colour_noise_convention, crop_draw):
        if crop_draw not in CROP_DRAWS:
            raise ValueError(f"unknown crop draw {crop_draw!r}; choose one of {list(CROP_DRAWS)}")
        self.dataset = Dataset(path)
        if not 0 < crop <= self.dataset.image_size:
            raise ValueError(f"a {crop}-pixel crop does not fit the {self.dataset.image_size}-"
                             f"pixel images of {path}")
        self.crop, self.seed = crop, seed
        self.convention, self.draw_every = colour_noise_convention, CROP_DRAWS[crop_draw]
        margin = (self.dataset.image_size - crop) // 2
        self.mean_crop = self.dataset.mean[margin:margin + crop, margin:margin + crop]
        self.train_labels = self.dataset.labels("train")
        self.val_labels = self.dataset.labels("val")

    def augment(self, images, rng, colour_noise_on):
        """The training transformation of one batch of uint8 images, (n, S, S, 3) → layout."""
        n, limit = len(images), self.dataset.image_size - self.crop
        draws = -(-n // self.draw_every)
        offsets = np.repeat(rng.integers(0, limit + 1, (draws, 2)), self.draw_every, axis=0)[:n]
        flips = np.repeat(rng.random(draws) < 0.5, self.draw_every)[:n]
        batch = crop_and_flip(images, offsets, flips, self.crop)
        batch -= self.mean_crop
        if colour_noise_on:
            alphas = rng.normal(0.0, ALPHA_STD, (n, 3))
            batch += colour_noise(alphas, self.dataset.eigenvalues, self.dataset.eigenvectors,
                                  self.convention).astype(np.float32)[:, None, None, :]
            if self.convention == "sqrt-eigenvalue-div-1.1":
                batch /= np.float32(CODE_DIVISOR)
        return to_layout(batch)

    def train_batches(self, epoch, batch_size, colour_noise_on):
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.train_labels))
        for index, start in enumerate(range(0, len(order), batch_size)):
            chosen = order[start:start + batch_size]
            rng = np.random.default_rng([self.seed, epoch, index])
            images = self.dataset.images("train", chosen)
            yield self.augment(images, rng, colour_noise_on), self.train_labels[chosen]

    def views(self, images, ten_crop):
        """The evaluation views of uint8 images: [centre] or the 10 of the paper."""
        size, crop = self.dataset.image_size, self.crop
        centre = (size - crop) // 2
        positions = [(centre, centre)]
        if ten_crop:
            far = size - crop
            positions += [(0, 0), (0, far), (far, 0), (far, far)]
        n = len(images)
        views = []
        for flip in ((False, True) if ten_crop else (False,)):
            for position in positions:
                batch = crop_and_flip(images, [position] * n, [flip] * n, crop)
                batch -= self.mean_crop
                views.append(to_layout(batch))
        return views

    def eval_batches(self, batch_size, ten_crop):
        for start in range(0, len(self.val_labels), batch_size):
            indices = np.arange(start, min(start + batch_size, len(self.val_labels)))
            yield self.views(self.dataset.images("val", indices), ten_crop), \
                self.val_labels[indices]
