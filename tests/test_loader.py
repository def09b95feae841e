"""Training and evaluation batches against the formulas written out image by image."""
import multiprocessing
import threading

import h5py
import numpy as np
import pytest

import imagetree
from convnet.data import dataset, loader as loader_module, prepare
from convnet.data.dataset import Dataset, DatasetError
from convnet.data.loader import (ALPHA_STD, CODE_DIVISOR, Loader, augment, colour_offsets, draw,
                                 prefetch)

SIZE, CROP = 12, 9


@pytest.fixture
def stored(tmp_path, rng):
    return write_set(tmp_path, rng)


def write_set(tmp_path, rng):
    """A small dataset: its path, training and validation images."""
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
            # the paper's λ are of pixels in [0, 1]: λ/255², moving 0–255 pixels by 255 times
            sigma = values / 255 if convention == "eigenvalue" else np.sqrt(values)
            image = image + sum(vectors[:, k] * alphas[i, k] * sigma[k] for k in range(3))
            if convention == "sqrt-eigenvalue-div-1.1":
                image = image / 1.1
        out[..., i] = image.transpose(2, 0, 1)
    return out


def test_draws_have_the_papers_distributions():
    """The draws by their statistics over many images, against the paper's rather than the
    loader's constants: α ~ N(0, 0.1) per image and eigenvector, crop offsets uniform over
    every position, a mirror image half the time."""
    offsets, flips, alphas = draw(np.random.default_rng(0), 60_000, 4, 1, True)
    assert np.abs(alphas.mean(axis=0)).max() < 0.002   # 5 standard errors
    np.testing.assert_allclose(alphas.std(axis=0), 0.1, rtol=0.02)
    np.testing.assert_allclose(np.bincount(offsets.ravel()) / offsets.size, 0.2, atol=0.01)
    assert abs(flips.mean() - 0.5) < 0.01


@pytest.mark.parametrize("convention", ["eigenvalue", "sqrt-eigenvalue-div-1.1"])
def test_colour_noise_on_imagenet_moves_pixels_by_a_few_grey_levels(convention):
    """ImageNet's RGB eigenvalues (√λ = 19.72, 37.09, 121.78 for 0–255 values) under either
    convention: the offsets' spread is a few grey levels, a nudge to the colours, not the
    hundreds that the paper's σ = λ gives when λ is taken of 0–255 values."""
    eigenvalues = np.array([19.72, 37.09, 121.78]) ** 2
    eigenvectors, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    alphas = np.random.default_rng(1).normal(0.0, ALPHA_STD, (20_000, 3))
    spread = np.sqrt((colour_offsets(alphas, eigenvalues, eigenvectors, convention) ** 2)
                     .sum(axis=1).mean())
    assert 2 < spread < 20, f"{convention}: offsets of {spread:.1f} grey levels"


@pytest.mark.parametrize("convention", ["eigenvalue", "sqrt-eigenvalue-div-1.1"])
@pytest.mark.parametrize("crop_draw,chunk", [("per-image", 1), ("per-chunk-32", 32)])
@pytest.mark.parametrize("noise_on", [True, False])
def test_training_batch_matches_formulas(stored, convention, crop_draw, chunk, noise_on):
    path, train, _ = stored
    data = Loader(path, crop=CROP, seed=11, colour_noise_convention=convention,
                   crop_draw=crop_draw)
    batches = list(data.train_batches(epoch=2, batch_size=40, colour_noise_on=noise_on))
    assert [len(labels) for _, labels, _ in batches] == [40, 30]
    order = np.random.default_rng([11, 2]).permutation(70)
    for index, (images, labels, _) in enumerate(batches):
        chosen = order[index * 40:(index + 1) * 40]
        assert images.shape == (3, CROP, CROP, len(chosen)) and images.dtype == np.float32
        np.testing.assert_array_equal(labels, data.train_labels[chosen])
        expected = expected_batch(train[chosen], data, [11, 2, index], chunk, convention,
                                  noise_on)
        np.testing.assert_allclose(images, expected, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("convention", ["eigenvalue", None])
def test_centre_draw_without_noise_trains_on_the_evaluation_view(stored, convention):
    """The no-crop-flip and no-colour-noise ablations together: each training image is its
    centre crop, unmirrored, minus the mean, whatever the schedule says of colour noise."""
    path, _, _ = stored
    data = Loader(path, crop=CROP, seed=3, colour_noise_convention=convention,
                  crop_draw="centre")
    order = np.random.default_rng([3, 1]).permutation(70)
    for index, (images, labels, _) in enumerate(data.train_batches(1, 32, colour_noise_on=True)):
        chosen = order[index * 32:(index + 1) * 32]
        (centre,), _ = data.eval_batch(chosen, ten_crop=False, split="train")
        if convention is None:
            np.testing.assert_array_equal(images, centre)
        else:   # the same crop with noise: every pixel of an image moved by the same offset
            offsets = (images - centre).reshape(3, -1, len(chosen))
            assert np.ptp(offsets, axis=1).max() < 1e-3 < np.abs(offsets).max()


def test_batches_are_a_function_of_seed_and_epoch(stored):
    path, _, _ = stored
    make = lambda seed: Loader(path, crop=CROP, seed=seed, colour_noise_convention="eigenvalue",
                                crop_draw="per-image")
    first = [b for b, _, _ in make(1).train_batches(0, 32, True)]
    again = [b for b, _, _ in make(1).train_batches(0, 32, True)]
    other = [b for b, _, _ in make(1).train_batches(1, 32, True)]
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


def test_evaluation_views_of_chosen_training_images(stored):
    path, train, _ = stored
    data = Loader(path, crop=CROP, seed=0, colour_noise_convention="eigenvalue",
                  crop_draw="per-image")
    chosen = np.array([5, 0, 69, 5])
    (views, labels), = list(data.eval_batches(8, False, "train", chosen))
    middle = (SIZE - CROP) // 2
    crops = train[chosen, middle:middle + CROP, middle:middle + CROP].astype(np.float32)
    np.testing.assert_allclose(views[0], (crops - data.mean_crop).transpose(3, 1, 2, 0),
                               rtol=1e-6)
    np.testing.assert_array_equal(labels, Dataset(path).labels("train")[chosen])


def test_bad_settings_are_refused(stored):
    path, _, _ = stored
    with pytest.raises(ValueError, match="does not fit"):
        Loader(path, crop=SIZE + 1, seed=0, colour_noise_convention="eigenvalue",
                crop_draw="per-image")
    with pytest.raises(ValueError, match="crop draw"):
        Loader(path, crop=CROP, seed=0, colour_noise_convention="eigenvalue",
                crop_draw="per-batch")


def test_a_crop_of_the_whole_image_is_the_image_minus_the_mean(stored):
    """A model whose input is the stored size (no room to crop): every offset is 0, and with
    no noise and no mirror a training image is the stored one minus the whole mean image."""
    path, train, _ = stored
    data = Loader(path, crop=SIZE, seed=0, colour_noise_convention=None, crop_draw="centre")
    (images, labels, _), = list(data.train_batches(0, 70, colour_noise_on=False))
    order = np.random.default_rng([0, 0]).permutation(70)
    expected = (train[order].astype(np.float64) - data.mean).transpose(3, 1, 2, 0)
    np.testing.assert_allclose(images, expected, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(labels, Dataset(path).labels("train")[order])


def test_a_dataset_of_exactly_the_memory_limit_is_read_into_memory(stored):
    """In memory up to and including IN_MEMORY_BYTES."""
    path, train, val = stored
    assert loader(path, in_memory_bytes=train.nbytes + val.nbytes).in_memory
    assert not loader(path, in_memory_bytes=train.nbytes + val.nbytes - 1).in_memory


# -- the C++ augmenter against NumPy float32, bit for bit -------------------------------------
def numpy_float32(images, index, offsets, flips, colour, mean_crop, divisor):
    """The formulas image by image in NumPy float32, in the order kernels/augment.cpp uses."""
    crop = mean_crop.shape[0]
    out = np.empty((3, crop, crop, len(index)), np.float32)
    for i, source in enumerate(index):
        y, x = offsets[i]
        image = images[source, y:y + crop, x:x + crop].astype(np.float32)
        if flips[i]:
            image = image[:, ::-1]
        image = (image - mean_crop) + colour[i]
        if divisor != 1:
            image = image / np.float32(divisor)
        out[..., i] = image.transpose(2, 0, 1)
    return out


def random_job(rng, size, crop, total, n):
    images = rng.integers(0, 256, (total, size, size, 3), dtype=np.uint8)
    return (images, rng.integers(0, total, n), rng.integers(0, size - crop + 1, (n, 2)),
            rng.random(n) < 0.5, rng.normal(0, 30, (n, 3)).astype(np.float32),
            rng.uniform(0, 255, (crop, crop, 3)).astype(np.float32))


@pytest.mark.parametrize("divisor", [1.0, CODE_DIVISOR])
def test_augmenter_equals_numpy_float32_exactly(rng, divisor):
    size = int(rng.integers(20, 40))
    crop = int(rng.integers(1, size + 1))
    n = int(rng.integers(1, 50))     # not a multiple of the 16-image blocks
    job = random_job(rng, size, crop, 30, n)
    out = np.empty((3, crop, crop, n), np.float32)
    augment(*job, divisor, out, threads=3)
    np.testing.assert_array_equal(out, numpy_float32(*job, divisor))


def test_augmenter_result_does_not_depend_on_threads(rng):
    job = random_job(rng, 40, 33, 20, 37)
    results = []
    for threads in (1, 2, 3, 8, 64):
        out = np.empty((3, 33, 33, 37), np.float32)
        results.append(augment(*job, CODE_DIVISOR, out, threads).tobytes())
    assert len(set(results)) == 1


def test_augmenter_refuses_bad_arguments(rng):
    images, index, offsets, flips, colour, mean = random_job(rng, 12, 9, 5, 4)
    out = np.zeros((3, 9, 9, 4), np.float32)
    for row, column in ((4, 0), (0, 4)):                     # 4 + 9 > 12, down or across
        bad_offsets = offsets.copy()
        bad_offsets[2] = (row, column)
        with pytest.raises(IndexError, match="image 2: index or crop offset outside"):
            augment(images, index, bad_offsets, flips, colour, mean, 1.0, out, 2)
    last_offsets = offsets.copy()
    last_offsets[2] = (3, 3)                                  # the last crop that fits
    augment(images, index, last_offsets, flips, colour, mean, 1.0, out, 2)
    total = len(images)
    for bad, image in ((total, 1), (-1, 3)):                   # one past the last, and before
        bad_index = index.copy()
        bad_index[image] = bad
        with pytest.raises(IndexError, match=f"image {image}: index or crop offset outside"):
            augment(images, bad_index, offsets, flips, colour, mean, 1.0, out, 2)
    last_index = index.copy()
    last_index[1] = total - 1                                 # the last image
    augment(images, last_index, offsets, flips, colour, mean, 1.0, out, 2)
    with pytest.raises(ValueError, match="out: wrong dtype or not C-contiguous"):
        augment(images, index, offsets, flips, colour, mean, 1.0, out.astype(np.float64), 2)
    with pytest.raises(ValueError, match="mean: wrong shape"):
        augment(images, index, offsets, flips, colour, mean[:8], 1.0, out, 2)


# -- the loader -------------------------------------------------------------------------------
def loader(path, **options):
    settings = dict(crop=CROP, seed=5, colour_noise_convention="sqrt-eigenvalue-div-1.1",
                    crop_draw="per-chunk-32")
    return Loader(path, **{**settings, **options})


def test_reads_from_file_equal_reads_from_memory(stored):
    path, _, _ = stored
    memory, disk = loader(path), loader(path, in_memory_bytes=0, threads=2)
    assert memory.in_memory and not disk.in_memory
    for (a, la, _), (b, lb, _) in zip(memory.train_batches(3, 16, True),
                                      disk.train_batches(3, 16, True)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    (views_a, _), = list(memory.eval_batches(8, True))[:1]
    (views_b, _), = list(disk.eval_batches(8, True))[:1]
    for a, b in zip(views_a, views_b):
        np.testing.assert_array_equal(a, b)


def test_an_epoch_goes_on_from_a_batch_as_it_would_have(stored):
    """A stopped epoch's next batch on (train_batches' start): the epoch's own batches, not
    the first ones again, nor others drawn."""
    data = loader(stored[0])
    whole = [(images.copy(), labels) for images, labels, _ in data.train_batches(2, 16, True)]
    going_on = list(data.train_batches(2, 16, True, start=3))
    assert len(going_on) == len(whole) - 3 == 2
    for (images, labels, _), (want_images, want_labels) in zip(going_on, whole[3:]):
        np.testing.assert_array_equal(images, want_images)
        np.testing.assert_array_equal(labels, want_labels)


def direct_reads(monkeypatch):
    """The images the loader reads straight from the file, counted."""
    counted = []

    def counting(descriptor, offset, out):
        counted.append(offset)
        return read_at(descriptor, offset, out)
    read_at = loader_module.read_at
    monkeypatch.setattr(loader_module, "read_at", counting)
    return counted


@pytest.mark.parametrize("per_chunk", [1, 8, 70])
def test_images_are_read_straight_from_the_file(tmp_path, rng, monkeypatch, per_chunk):
    """At the offsets HDF5's chunk index gives, in chunks of one image, of several with the last
    one part-filled, and of the whole split: the images, and the batches, that HDF5 reads."""
    monkeypatch.setattr(dataset, "CHUNK_BYTES", per_chunk * SIZE * SIZE * 3)
    path, train, _ = write_set(tmp_path, rng)
    with h5py.File(path) as file:
        assert file["train/images"].chunks[0] == per_chunk
    direct, counted = loader(path, in_memory_bytes=0, threads=3), direct_reads(monkeypatch)
    order = rng.permutation(len(train))
    images, index = direct.read("train", order)
    np.testing.assert_array_equal(images[index], train[order])
    assert len(counted) == len(train)
    through_hdf5 = loader(path, in_memory_bytes=0, direct_reads=False)
    for (a, _, _), (b, _, _) in zip(direct.train_batches(1, 16, True),
                                    through_hdf5.train_batches(1, 16, True)):
        np.testing.assert_array_equal(a, b)
    assert len(counted) == 2 * len(train)   # the second loader's reads went through HDF5


def test_image_offsets_are_where_the_file_holds_each_image(tmp_path, rng):
    """Counted from the file's first byte, a user block before HDF5's data included; none for
    images stored otherwise than in whole chunks as they are, or in a chunk never written."""
    images = rng.integers(0, 256, (7, 4, 4, 3), dtype=np.uint8)
    with h5py.File(tmp_path / "a.h5", "w", userblock_size=512) as file:
        whole = file.create_dataset("whole", data=images, chunks=(3, 4, 4, 3))
        rows = file.create_dataset("rows", data=images, chunks=(3, 4, 2, 3))
        contiguous = file.create_dataset("contiguous", data=images)
        unwritten = file.create_dataset("unwritten", (7, 4, 4, 3), np.uint8, chunks=(3, 4, 4, 3))
        unwritten[:3] = images[:3]
        found = {name: loader_module.image_offsets(stored) for name, stored in
                 (("whole", whole), ("rows", rows), ("contiguous", contiguous),
                  ("unwritten", unwritten))}
    raw = (tmp_path / "a.h5").read_bytes()
    assert [raw[offset:offset + images[0].nbytes] for offset in found["whole"]] == \
        [image.tobytes() for image in images]
    assert found["rows"] is found["contiguous"] is found["unwritten"] is None


def test_a_compressed_copy_is_read_through_hdf5(stored, tmp_path, monkeypatch):
    """Its chunks are not stored as they are: HDF5 reads them, and undoes the compression."""
    path, train, _ = stored
    copy = tmp_path / "compressed.h5"
    copy.write_bytes(path.read_bytes())
    with h5py.File(copy, "r+") as file:
        images = file["train/images"]
        chunks, attributes = images.chunks, dict(images.attrs)
        del file["train/images"]
        file.create_dataset("train/images", data=train, chunks=chunks, compression="gzip")
        file["train/images"].attrs.update(attributes)
    counted = direct_reads(monkeypatch)
    images, index = loader(copy, in_memory_bytes=0).read("train", [5, 2, 60])
    np.testing.assert_array_equal(images[index], train[[5, 2, 60]])
    assert counted == []


def test_an_image_past_the_files_end_is_a_dataset_error(stored, monkeypatch):
    """A file cut short after HDF5 opened it (another prepare's rename under a slow read)."""
    path, _, _ = stored
    size = path.stat().st_size
    monkeypatch.setattr(loader_module, "image_offsets",
                        lambda stored: np.full(len(stored), size - 10, np.int64))
    with pytest.raises(DatasetError, match=f"set.h5: corrupt or incomplete \\(the file ends at "
                                           f"byte {size}, inside an image\\)"):
        loader(path, in_memory_bytes=0).read("train", [3])


def test_batch_memory_is_reused_only_once_released(stored):
    path, _, _ = stored
    data = loader(path)
    address = lambda array: array.__array_interface__["data"][0]
    held = [images for images, _, _ in data.train_batches(0, 10, True)]   # all kept
    assert len({address(images) for images in held}) == len(held)
    expected = [images.copy() for images in held]
    del held
    seen = set()
    for index, (images, _, _) in enumerate(data.train_batches(0, 10, True)):   # each dropped
        np.testing.assert_array_equal(images, expected[index])
        seen.add(address(images))
    assert len(seen) <= 3   # the batch in use, the one being made, the one just released


def test_an_evaluations_blocks_are_let_go_as_training_starts(stored):
    """Ten views a batch fill 20 blocks (the batch used, the one made meanwhile), which an
    epoch's training would keep, reusing 3 of them: they go as its batches start. A block a
    batch still occupies stays, and is not handed out again."""
    path, _, _ = stored
    data = loader(path)
    kept, _ = data.eval_batch(np.arange(10), ten_crop=True, split="train")
    expected = [view.copy() for view in kept]

    def each(batches):   # holds none once done, as the trainer's evaluation
        for _ in batches:
            pass
    each(data.eval_batches(10, ten_crop=True, split="train"))
    assert len(data.buffers.blocks) >= 20
    each(data.train_batches(0, 10, True))
    assert len(data.buffers.blocks) <= 10 + 3   # kept's, and training's
    for view, before in zip(kept, expected):
        np.testing.assert_array_equal(view, before)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_loader_made_before_a_fork_works_in_the_child(stored, method):
    """The file is open in the parent (a batch was made) when the child is started."""
    path, _, _ = stored
    data = loader(path, in_memory_bytes=0)
    first = next(iter(data.train_batches(0, 16, True)))[0].copy()
    with multiprocessing.get_context(method).Pool(1) as pool:
        child = pool.apply(first_batch, (data,))
    np.testing.assert_array_equal(child, first)


def first_batch(data):
    return next(iter(data.train_batches(0, 16, True)))[0].copy()


def test_errors_reach_the_caller_and_an_abandoned_iteration_stops(stored):
    path, _, _ = stored
    data = loader(path)

    def failing(k):
        if k == 2:
            raise RuntimeError("batch 2 failed")
        return k
    with pytest.raises(RuntimeError, match="batch 2 failed"):
        list(prefetch(failing, 5))
    before = threading.active_count()
    batches = data.train_batches(0, 8, True)
    next(batches)
    batches.close()
    assert threading.active_count() == before


def test_real_jpeg_tree_through_prepare_and_loader(tmp_path, rng):
    """Real photographs and the bad files → prepare → a training batch equal to the formulas."""
    root = tmp_path / "imagenet"
    imagetree.build(str(root), rng)
    output = tmp_path / "imagenet.h5"
    assert prepare.main([str(root), "--output", str(output), "--size", "32", "--workers",
                         "2"]) == 0
    data = Loader(output, crop=28, seed=3, colour_noise_convention="eigenvalue",
                  crop_draw="per-image", threads=2)
    (images, labels, _), = list(data.train_batches(0, 64, True))
    order = np.random.default_rng([3, 0]).permutation(len(data.train_labels))
    rng_batch = np.random.default_rng([3, 0, 0])
    offsets, flips, alphas = draw(rng_batch, len(order), 4, 1, True)
    stored = Dataset(output).images("train", np.arange(len(order)))
    colour = colour_offsets(alphas, data.eigenvalues, data.eigenvectors, "eigenvalue")
    np.testing.assert_array_equal(
        images, numpy_float32(stored, order, offsets, flips, colour, data.mean_crop, 1.0))
    np.testing.assert_array_equal(labels, data.train_labels[order])
    assert images.shape == (3, 28, 28, len(order)) and images.flags.c_contiguous
