"""Training and evaluation batches against the formulas written out image by image."""
import numpy as np
import pytest

from convnet.data import dataset
from convnet.data.loader import ALPHA_STD, Loader

SIZE, CROP = 12, 9


@pytest.fixture
def stored(tmp_path, rng):
    train = rng.integers(0, 256, (70, SIZE, SIZE, 3), dtype=np.uint8)
    val = rng.integers(0, 256, (5, SIZE, SIZE, 3), dtype=np.uint8)
    path = tmp_path / "set.h5"
    dataset.write(path, name="t", train_images=train, train_labels=rng.integers(0, 4, 70),
                  val_images=val, val_labels=rng.integers(0, 4, 5), class_ids=list("abcd"),
                  class_names=list("abcd"))
    return path, train, val


def expected_batch(images, data, rng_seed, chunk, convention, noise_on):
    """One image at a time: the draws in the loader's order, then crop, flip, mean, noise."""
    rng = np.random.default_rng(rng_seed)
    n = len(images)
    draws = -(-n // chunk)
    offsets = rng.integers(0, SIZE - CROP + 1, (draws, 2))
    flips = rng.random(draws) < 0.5
    alphas = rng.normal(0, ALPHA_STD, (n, 3)) if noise_on else None
    margin = (SIZE - CROP) // 2
    mean_crop = data.mean[margin:margin + CROP, margin:margin + CROP].astype(np.float64)
    values, vectors = data.eigenvalues, data.eigenvectors
    out = np.empty((3, CROP, CROP, n), np.float64)
    for i in range(n):
        y, x = offsets[i // chunk]
        image = images[i, y:y + CROP, x:x + CROP].astype(np.float64)
        if flips[i // chunk]:
            image = image[:, ::-1]
        image = image - mean_crop
        if noise_on:
            sigma = values if convention == "eigenvalue" else np.sqrt(values)
            image = image + sum(vectors[:, k] * alphas[i, k] * sigma[k] for k in range(3))
            if convention == "sqrt-eigenvalue-div-1.1":
                image = image / 1.1
        out[..., i] = image.transpose(2, 0, 1)
    return out


@pytest.mark.parametrize("convention", ["eigenvalue", "sqrt-eigenvalue-div-1.1"])
@pytest.mark.parametrize("crop_draw,chunk", [("per-image", 1), ("per-chunk-32", 32)])
@pytest.mark.parametrize("noise_on", [True, False])
def test_training_batch_matches_formulas(stored, convention, crop_draw, chunk, noise_on):
    path, train, _ = stored
    data = Loader(path, crop=CROP, seed=11, colour_noise_convention=convention,
                   crop_draw=crop_draw)
    batches = list(data.train_batches(epoch=2, batch_size=40, colour_noise_on=noise_on))
    assert [len(labels) for _, labels in batches] == [40, 30]
    order = np.random.default_rng([11, 2]).permutation(70)
    for index, (images, labels) in enumerate(batches):
        chosen = order[index * 40:(index + 1) * 40]
        assert images.shape == (3, CROP, CROP, len(chosen)) and images.dtype == np.float32
        np.testing.assert_array_equal(labels, data.train_labels[chosen])
        expected = expected_batch(train[chosen], data, [11, 2, index], chunk, convention,
                                  noise_on)
        np.testing.assert_allclose(images, expected, rtol=1e-5, atol=1e-3)


def test_batches_are_a_function_of_seed_and_epoch(stored):
    path, _, _ = stored
    make = lambda seed: Loader(path, crop=CROP, seed=seed, colour_noise_convention="eigenvalue",
                                crop_draw="per-image")
    first = [b for b, _ in make(1).train_batches(0, 32, True)]
    again = [b for b, _ in make(1).train_batches(0, 32, True)]
    other = [b for b, _ in make(1).train_batches(1, 32, True)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], other[0])


def test_ten_views_are_corners_centre_and_mirrors(stored):
    path, _, val = stored
    data = Loader(path, crop=CROP, seed=0, colour_noise_convention="eigenvalue",
                   crop_draw="per-image")
    (views, labels), = list(data.eval_batches(batch_size=8, ten_crop=True))
    (centre_only, _), = list(data.eval_batches(batch_size=8, ten_crop=False))
    assert len(views) == 10 and len(centre_only) == 1 and len(labels) == 5
    far, mid = SIZE - CROP, (SIZE - CROP) // 2
    mean_crop = data.mean_crop
    expected = []
    for flip in (False, True):
        for y, x in ((mid, mid), (0, 0), (0, far), (far, 0), (far, far)):
            crops = val[:, y:y + CROP, x:x + CROP].astype(np.float32)
            crops = crops[:, :, ::-1] if flip else crops
            expected.append((crops - mean_crop).transpose(3, 1, 2, 0))
    for view, want in zip(views, expected):
        np.testing.assert_allclose(view, want, rtol=1e-6)
    np.testing.assert_array_equal(centre_only[0], views[0])


def test_bad_settings_are_refused(stored):
    path, _, _ = stored
    with pytest.raises(ValueError, match="does not fit"):
        Loader(path, crop=SIZE + 1, seed=0, colour_noise_convention="eigenvalue",
                crop_draw="per-image")
    with pytest.raises(ValueError, match="crop draw"):
        Loader(path, crop=CROP, seed=0, colour_noise_convention="eigenvalue",
                crop_draw="per-batch")
