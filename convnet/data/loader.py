"""The data loader: training and evaluation batches of a prepared dataset (convnet.data.dataset),
with the paper's augmentation done in C++ (kernels/augment.cpp), one batch ahead of the trainer.

Training, per image (S the stored size, C the crop):
  1. a C×C crop at offset (y, x), y, x uniform in [0, S − C], mirrored left-right with
     probability ½; offset and mirror drawn per image ("per-image", the paper) or once per chunk
     of 32 consecutive images of the batch ("per-chunk-32", the released code); or the centre
     crop, unmirrored ("centre": the no-crop-flip ablation, convnet.alexnet.ABLATIONS);
  2. minus the central C×C crop of the mean image (the released code's choice, whatever the
     crop's offset);
  3. PCA colour noise, when on: every pixel gets + Σ_k p_k α_k σ_k, α_k ~ N(0, 0.1²) drawn once
     per image, p_k and λ_k the training set's RGB eigenvectors and eigenvalues, with σ_k = λ_k
     of pixel values in [0, 1] ("eigenvalue", the paper's prose: λ grows with the square of
     the pixels' unit: ImageNet's λ of 0–255 values would move pixels by hundreds of grey
     levels, of values in [0, 1] by a few) or σ_k = √λ_k and the whole image then ÷ 1.1
     ("sqrt-eigenvalue-div-1.1", the released code, which divides only while noise is on), or
     never (convention None: the no-colour-noise ablation).
Evaluation: the centre crop, or the paper's 10 views: the four corner crops and the centre, and
their mirror images; minus the mean's central crop, no noise.
Output: (3, C, C, n) float32, images innermost (convnet.backend), and labels (n,) int64.

Every random draw of a batch comes from a NumPy generator seeded by (seed, epoch, batch index),
made here in Python (at most 6 numbers an image); the C++ threads only move pixels, each output
value computed by one thread from those draws, so a batch is a pure function of (seed, epoch,
index), whatever the number of threads.

Replicas (convnet.replicas): a Loader given a Shard makes only that rank's part of each global
batch (training and evaluation). It draws the whole batch's numbers and keeps its images'
share, so the parts of a batch, put side by side, are the batch one process would make.

Double buffering: a background thread makes batch k + 1 while the caller uses batch k (the C++
code releases the GIL). A yielded batch stays valid for as long as the caller holds it; its
memory is reused for a later batch once the caller has dropped every reference to it. That
memory is page-locked (CuPy's pinned allocator) when CuPy and a GPU are present, so the copy to
the GPU can be asynchronous; elsewhere it is an ordinary NumPy buffer.

Reading: a dataset of up to IN_MEMORY_BYTES is read into memory once. A larger one (ImageNet's
250 GB) is read per batch: each image straight from the file at its byte offset, found once from
HDF5's chunk index, READS_IN_FLIGHT at once (threads the process's loaders share). HDF5 reads
one thing at a time in a process, so a batch read through it waits on each image in turn
(a disk's, or a network filesystem's, latency 128 times a step). A file whose chunks are not
stored as they are (a copy repacked with compression) is read through HDF5.

The HDF5 file is opened in the process and at the moment of the first batch, never before a
fork: a Loader made before a fork opens its own handle in each process that uses it.
"""
import concurrent.futures
import os
import queue
import sys
import threading

import numpy as np

from convnet import _augment, provenance
from convnet.backend.cuda.devices import cuda_devices
from convnet.data.dataset import SPLITS, Dataset
from convnet.replicas.shard import WHOLE

PAPER_NOISE, CODE_NOISE = "eigenvalue", "sqrt-eigenvalue-div-1.1"   # the colour-noise conventions
COLOUR_NOISE = (PAPER_NOISE, CODE_NOISE)
# Images that share one draw of crop offset and mirror flag; None: no draw, the centre crop.
CROP_DRAWS = {"per-image": 1, "per-chunk-32": 32, "centre": None}
ALPHA_STD = 0.1
CODE_DIVISOR = 1.1
PIXEL_RANGE = 255.0   # stored pixels run 0–255; the paper's eigenvalues are of values in [0, 1]
IN_MEMORY_BYTES = 4 << 30   # datasets up to this size are read into memory once (Fashion-MNIST)
# Reads of a batch's images at once: each waits on the disk, not on a core, and a disk (a network
# filesystem more so) serves many at a time.
READS_IN_FLIGHT = 16


def colour_offsets(alphas, eigenvalues, eigenvectors, convention):
    """(n, 3) float32 RGB offsets Σ_k p_k α_k σ_k, one per image."""
    if convention not in COLOUR_NOISE:
        raise ValueError(f"unknown colour-noise convention {convention!r}; choose one of "
                         f"{COLOUR_NOISE}")
    # λ of values in [0, 1] is λ / 255², and its offset in 0–255 units 255 times that
    sigma = eigenvalues / PIXEL_RANGE if convention == PAPER_NOISE else np.sqrt(eigenvalues)
    return ((alphas * sigma) @ eigenvectors.T).astype(np.float32)


def centre_offset(spare):
    """The offset of the central crop along each side, given the side's spare pixels (image
    size − crop): evaluation's view, the mean image's part that every crop subtracts, and the
    no-crop-flip ablation's training crop."""
    return spare // 2


def draw(rng, n, limit, every, noise_on):
    """The random draws of one training batch, in this order: crop offsets (y, x) in
    [0, limit] and mirror flags, one per `every` consecutive images (every None: none, the
    centre crop unmirrored, and α comes first), then α (n, 3) if noise is on. Returns offsets
    (n, 2) int32, flips (n,) bool, alphas (n, 3) or None."""
    if every is None:
        offsets, flips = np.full((n, 2), centre_offset(limit)), np.zeros(n, bool)
    else:
        draws = -(-n // every)
        offsets = np.repeat(rng.integers(0, limit + 1, (draws, 2)), every, axis=0)[:n]
        flips = np.repeat(rng.random(draws) < 0.5, every)[:n]
    alphas = rng.normal(0.0, ALPHA_STD, (n, 3)) if noise_on else None
    return offsets.astype(np.int32), flips, alphas


def view_positions(size, crop, ten_crop):
    """[(y, x, flip)] of the evaluation views: the centre, or the 10 of the paper."""
    far = size - crop
    centre = centre_offset(far)
    corners = [(centre, centre)] + ([(0, 0), (0, far), (far, 0), (far, far)] if ten_crop else [])
    return [(y, x, flip) for flip in ((False, True) if ten_crop else (False,))
            for y, x in corners]


def image_offsets(stored):
    """(N,) int64: each image's byte offset in the file holding the h5py dataset `stored`
    (N, S, S, 3), where its chunks hold whole images stored as they are (no filter), as the
    format's writers make them; None where they do not, or where h5py cannot list its chunks."""
    per_chunk = stored.chunks[0] if stored.chunks else 0
    if (not per_chunk or stored.chunks[1:] != stored.shape[1:]
            or stored.id.get_create_plist().get_nfilters()
            or not hasattr(stored.id, "chunk_iter")):   # h5py 3.8 built on an HDF5 before 1.12.3
        return None
    starts = np.full(-(-len(stored) // per_chunk), -1, np.int64)

    def note(chunk):   # its address counts from the file's first byte, user block included
        starts[chunk.chunk_offset[0] // per_chunk] = chunk.byte_offset
    stored.id.chunk_iter(note)
    if (starts < 0).any():   # a chunk never written, which HDF5 would read as zeros
        return None
    image = np.arange(len(stored))
    return starts[image // per_chunk] + image % per_chunk * np.prod(stored.shape[1:])


def read_at(descriptor, offset, out):
    """Fill the uint8 array `out` from the file at byte `offset`."""
    view, done = memoryview(out).cast("B"), 0
    while done < len(view):
        got = os.preadv(descriptor, [view[done:]], offset + done)
        if not got:
            raise OSError(f"the file ends at byte {offset + done}, inside an image")
        done += got


def augment(images, index, offsets, flips, colour, mean_crop, divisor, out, threads):
    """out (3, C, C, n) float32 ← crops of images (N, S, S, 3) uint8; see kernels/augment.cpp.
    index (n,) selects the source image of each output column."""
    _augment.augment(np.ascontiguousarray(images, np.uint8),
                     np.ascontiguousarray(index, np.int64),
                     np.ascontiguousarray(offsets, np.int32),
                     np.ascontiguousarray(flips, np.bool_).view(np.uint8),
                     np.ascontiguousarray(colour, np.float32),
                     np.ascontiguousarray(mean_crop, np.float32), float(divisor), out, threads)
    return out


class Buffers:
    """Float32 blocks for batches, reused once nothing outside this pool refers to them.
    Page-locked where CuPy and a GPU are present (fast, asynchronous copies to the GPU), plain
    NumPy memory otherwise. A copy to the GPU from a page-locked block may still be running when
    the batch is dropped; CuPy's asarray keeps a reference to its source until the copy is done,
    which keeps the block from being handed out (a GPU test checks it)."""

    def __init__(self):
        self.blocks = []
        self.empty, self._return_unused = self._allocator()
        self.lock = threading.Lock()
        # The count of a block that nothing else refers to, measured the way take() measures
        # (interpreters differ in the references they hold themselves).
        self.free_references = references([np.empty(1, np.float32)], 0)

    @staticmethod
    def _allocator():
        """(a block of `count` floats, the memory of dropped blocks given back to the system)"""
        if cuda_devices()[0]:
            import cupy
            import cupyx
            # CuPy's pool keeps the page-locked memory of dropped arrays for its next ones
            return (lambda count: cupyx.empty_pinned((count,), np.float32),
                    cupy.get_default_pinned_memory_pool().free_all_blocks)
        # no CuPy, no driver or no device: NumPy's memory goes back as it is dropped
        return lambda count: np.empty(count, np.float32), lambda: None

    def _free(self, i):
        # A batch still in use is a view of its block, which holds a reference to it.
        return references(self.blocks, i) == self.free_references

    def take(self, shape):
        """A (shape) float32 array in a block that no batch in use occupies."""
        count = int(np.prod(shape))
        with self.lock:
            for i in range(len(self.blocks)):   # no loop variable: it would be a reference
                if self.blocks[i].size >= count and self._free(i):
                    return self.blocks[i][:count].reshape(shape)
            self.blocks.append(self.empty(count))
            return self.blocks[-1][:count].reshape(shape)

    def release_free(self):
        """Lets go of the blocks no batch occupies: the 20 that an evaluation of ten views
        fills (1.5 GB at batch 128), of which an epoch's training needs 3."""
        with self.lock:
            self.blocks = [self.blocks[i] for i in range(len(self.blocks)) if not self._free(i)]
        self._return_unused()


def references(blocks, i):
    return sys.getrefcount(blocks[i])


class Loader:
    """The trainer's data source over one prepared dataset (see convnet.trainer)."""

    def __init__(self, path, *, crop, seed, colour_noise_convention, crop_draw, threads=None,
                 in_memory_bytes=IN_MEMORY_BYTES, direct_reads=True):
        """direct_reads False: a dataset read per batch is read through HDF5 whatever its
        chunks (the way tools/bench_data.py compares its direct reads with)."""
        if crop_draw not in CROP_DRAWS:
            raise ValueError(f"unknown crop draw {crop_draw!r}; choose one of {list(CROP_DRAWS)}")
        if colour_noise_convention not in (*COLOUR_NOISE, None):
            raise ValueError(f"unknown colour-noise convention {colour_noise_convention!r}; "
                             f"choose one of {COLOUR_NOISE} or None (no noise)")
        dataset = Dataset(path)   # metadata only; closed again before any fork can happen
        try:
            self.name, self.image_size = dataset.name, dataset.image_size
            self.mean, self.eigenvalues = dataset.mean, dataset.eigenvalues
            self.eigenvectors = dataset.eigenvectors
            self.class_ids, self.class_names = dataset.class_ids, dataset.class_names
            self.train_labels = dataset.labels("train").astype(np.int64)
            self.val_labels = dataset.labels("val").astype(np.int64)
            with dataset.reading():
                stored = sum(dataset.file[f"{s}/images"].nbytes for s in SPLITS)
        finally:
            dataset.close()
        if not 0 < crop <= self.image_size:
            raise ValueError(f"a {crop}-pixel crop does not fit the {self.image_size}-pixel "
                             f"images of {path}")
        self.path, self.crop, self.seed = path, crop, seed
        self.convention, self.draw_every = colour_noise_convention, CROP_DRAWS[crop_draw]
        self.threads = threads or provenance.cores()
        self.in_memory = stored <= in_memory_bytes
        self.direct_reads = direct_reads
        margin = centre_offset(self.image_size - crop)
        self.mean_crop = np.ascontiguousarray(
            self.mean[margin:margin + crop, margin:margin + crop], np.float32)
        self.buffers = Buffers()
        self._opened = None   # (pid, Dataset, {split: images in memory}, Reading)

    def __getstate__(self):
        """Sent to another process without its file handle and its buffers."""
        return {key: value for key, value in self.__dict__.items()
                if key not in ("_opened", "buffers")}

    def __setstate__(self, state):
        self.__dict__.update(state, _opened=None, buffers=Buffers())

    # -- reading ------------------------------------------------------------------------------
    def _source(self):
        """This process's open dataset (opened on first use, again after a fork)."""
        if self._opened is None or self._opened[0] != os.getpid():
            dataset = Dataset(self.path)
            memory = {}
            if self.in_memory:
                with dataset.reading():
                    memory = {split: dataset.file[f"{split}/images"][()]
                              for split in SPLITS}
            self._opened = (os.getpid(), dataset, memory, Reading(dataset, self.direct_reads))
        return self._opened

    def read(self, split, indices):
        """(images, index): images holding the requested ones and index (n,) into them."""
        _, dataset, memory, reading = self._source()
        if split in memory:
            return memory[split], np.asarray(indices, np.int64)
        # In file order: a disk reads ahead. Through HDF5, one read per image: h5py's list
        # indexing is ~100× slower on 4-d data.
        order = np.argsort(indices)
        with dataset.reading():
            stored = dataset.file[f"{split}/images"]
            images = np.empty((len(indices),) + stored.shape[1:], np.uint8)
            wanted = np.asarray(indices)[order]
            offsets = reading.offsets(split)
            if offsets is None:
                for k, i in enumerate(wanted):
                    images[k] = stored[i]
            else:
                reading.read(offsets[wanted], images)
        index = np.empty(len(indices), np.int64)
        index[order] = np.arange(len(indices))
        return images, index

    # -- batches ------------------------------------------------------------------------------
    def train_batch(self, epoch, index, chosen, colour_noise_on, shard=WHOLE):
        """The shard's part of batch `index` of `epoch` over the training images `chosen`:
        (images, labels, part). Colour noise where the schedule has it on and the convention
        is not None."""
        n, limit = len(chosen), self.image_size - self.crop
        part = shard.part(n)
        rng = np.random.default_rng([self.seed, epoch, index])
        noise_on = colour_noise_on and self.convention is not None
        offsets, flips, alphas = draw(rng, n, limit, self.draw_every, noise_on)
        mine = slice(part.start, part.stop)
        if noise_on:
            colour = colour_offsets(alphas[mine], self.eigenvalues, self.eigenvectors,
                                    self.convention)
        else:
            colour = np.zeros((part.count, 3), np.float32)
        divisor = CODE_DIVISOR if noise_on and self.convention == CODE_NOISE else 1.0
        images, source_index = self.read("train", chosen[mine])
        out = self.buffers.take((3, self.crop, self.crop, part.count))
        augment(images, source_index, offsets[mine], flips[mine], colour, self.mean_crop,
                divisor, out, self.threads)
        return out, self.train_labels[chosen[mine]], part

    def labels(self, split):
        return {"train": self.train_labels, "val": self.val_labels}[split]

    def views(self, images, source_index, ten_crop):
        """The evaluation views of stored images (N, S, S, 3) uint8, source_index (n,) choosing
        them: [view (3, C, C, n)], the centre crop or the paper's 10, minus the mean."""
        n = len(source_index)
        zeros = np.zeros((n, 3), np.float32)
        views = []
        for y, x, flip in view_positions(self.image_size, self.crop, ten_crop):
            out = self.buffers.take((3, self.crop, self.crop, n))
            augment(images, source_index, np.tile(np.int32([y, x]), (n, 1)), np.full(n, flip),
                    zeros, self.mean_crop, 1.0, out, self.threads)
            views.append(out)
        return views

    def eval_batch(self, indices, ten_crop, split="val"):
        """The views of images `indices` of `split`: ([view (3, C, C, n)], labels)."""
        images, source_index = self.read(split, indices)
        return self.views(images, source_index, ten_crop), self.labels(split)[indices]

    def train_batches(self, epoch, batch_size, colour_noise_on, shard=WHOLE, start=0):
        """The epoch's batches in its shuffled order from batch `start` on (a stopped epoch's
        next): (images, labels, part), the shard's part of each (convnet.replicas.BatchPart);
        the last batch may be shorter."""
        self.buffers.release_free()   # an evaluation's, which training would keep otherwise
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.train_labels))
        starts = range(0, len(order), batch_size)[start:]
        return prefetch(lambda k: self.train_batch(
            epoch, start + k, order[starts[k]:starts[k] + batch_size], colour_noise_on, shard),
            len(starts))

    def eval_batches(self, batch_size, ten_crop, split="val", indices=None, shard=WHOLE):
        """Evaluation batches of `split`: all its images in order, or `indices` in their order;
        the shard's part of each batch."""
        if indices is None:
            indices = np.arange(len(self.labels(split)))
        starts = range(0, len(indices), batch_size)

        def make(k):
            batch = indices[starts[k]:starts[k] + batch_size]
            part = shard.part(len(batch))
            return self.eval_batch(batch[part.start:part.stop], ten_crop, split)
        return prefetch(make, len(starts))


class Reading:
    """A process's direct reads of an open dataset's images: their offsets (image_offsets, found
    per split on its first read) and the threads that read them, on HDF5's own file descriptor
    (the very file it opened)."""

    def __init__(self, dataset, direct):
        self.dataset, self.direct, self._offsets = dataset, direct, {}

    def offsets(self, split):
        """The split's image_offsets, None where its images are read through HDF5."""
        if split not in self._offsets:
            file = self.dataset.file
            self._offsets[split] = (image_offsets(file[f"{split}/images"])
                                    if self.direct and file.driver == "sec2"   # one file on disk
                                    else None)
        return self._offsets[split]

    def read(self, offsets, images):
        """images[k] ← the image at offsets[k], for every k."""
        descriptor = self.dataset.file.id.get_vfd_handle()
        list(readers().map(read_at, [descriptor] * len(images), offsets.tolist(), images))


_readers = None   # (pid, the threads): made at the process's first direct read
_readers_made = threading.Lock()   # two loaders' first reads at once make one


def readers():
    """The process's reading threads, which all its loaders share (a forked child makes its
    own: a parent's threads do not run in it)."""
    global _readers
    with _readers_made:
        if _readers is None or _readers[0] != os.getpid():
            _readers = (os.getpid(),
                        concurrent.futures.ThreadPoolExecutor(READS_IN_FLIGHT, "convnet-read"))
        return _readers[1]


class Batches:
    """An iterator over a known number of batches: len() gives a progress bar its total."""

    def __init__(self, iterator, count):
        self.iterator, self.count = iterator, count

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.iterator)

    def __len__(self):
        return self.count

    def close(self):
        """Stop early: the background thread ends (the generator's own close)."""
        self.iterator.close()


def prefetch(make, count):
    """make(0) … make(count − 1) as Batches, each made on a background thread while the caller
    uses the one before (one batch ahead: double buffering)."""
    return Batches(_prefetched(make, count), count)


def _prefetched(make, count):
    ready = queue.Queue()
    slots = threading.Semaphore(1)   # batches the thread may make ahead of the caller
    stop = threading.Event()

    def produce():
        for k in range(count):
            slots.acquire()
            if stop.is_set():
                return
            try:
                ready.put((make(k), None))
            except BaseException as error:   # handed to the caller, who raises it
                ready.put((None, error))
                return

    thread = threading.Thread(target=produce, name="convnet-loader", daemon=True)
    thread.start()
    try:
        for _ in range(count):
            batch, error = ready.get()
            if error is not None:
                raise error
            slots.release()   # the caller now holds this batch: start the next one
            yield batch
            batch = None
    finally:
        stop.set()
        slots.release()
        thread.join()
