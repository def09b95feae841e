"""Data pipeline throughput: the loader (HDF5 → crop, mirror, colour noise, mean → batch in the
network's layout) and prepare (JPEG → 256×256 in HDF5), in images per second per core, beside the
rate a GPU trains at, which the loader must sustain.

    python tools/bench_data.py [--batch 128] [--crop 224] [--size 256] [--images 1024]
                               [--repeats 5] [--jpegs 150] [--json FILE]

Loader: 2012 settings (colour noise on, ÷1.1, offsets per 32 images), random pixels (the work
does not depend on them), read from HDF5 every way the loader reads: all in memory; per batch
straight from the file (a dataset too large for memory, chunked per image); and per batch
through HDF5, the way it reads a file whose chunks are compressed, and the peer of the direct
reads. The two per-batch ways are timed again cold: the file's pages dropped from the system's
memory before the epoch (posix_fadvise), so that its images come from the disk, as most of a
250 GB ImageNet file's do (not where the temporary folder is on tmpfs, which keeps its files in
memory). Each with the loader on 1 thread and on every core, the process kept to as many cores
(its 16 reading threads included); each figure the median over --repeats epochs of all the
images, after a warm-up batch that is first checked against NumPy's float32 arithmetic.
Prepare: real photographs (crops of scikit-learn's samples, 60 to 640 pixels a side, and
Fashion-MNIST images, tests/imagetree.py) decoded, resized and stored by one worker process.
"""
import contextlib
import os
import platform
import sys
import tempfile
import time

import h5py
import numpy as np
import PIL

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import imagetree  # noqa: E402  (the test suite's tree of real images)

from convnet import options, provenance  # noqa: E402
from convnet.atomic import atomic_json  # noqa: E402
from convnet.data import dataset, prepare  # noqa: E402
from convnet.data.loader import Loader, colour_offsets, draw  # noqa: E402
from convnet.errors import bytes_text, run_command  # noqa: E402

# Targets, not measurements: the loader's goal on a 16-core GPU machine, and the 2012 run.
GPU_RATE_TARGET = 10_000      # images/s a current GPU trains the full model at: the loader's goal
GPU_RATE_2012 = 227           # images/s on two GTX 580: 90 epochs in the paper's 5-6 days
LOADER_TARGET_PER_CORE = 2_000
MAX_SIZE = 1024                # stored side the benchmark allows (ImageNet is stored at 256)
# The loader's images at their peak: the random pixels, the dataset file's image as it is written
# (convnet.atomic.atomic_h5, in memory), and its copy in the file.
LOADER_COPIES = 3
PHOTOGRAPH_BYTES = 640 * 480 * 3   # prepare's photographs, each a crop held in memory at once
# The loader's ways of reading: {name: (printed, in memory, direct reads, file's pages dropped)}
SOURCES = {"memory": ("in memory", True, True, False),
           "file": ("from the file", False, True, False),
           "hdf5": ("through HDF5", False, False, False),
           "file-cold": ("from the file, cold", False, True, True),
           "hdf5-cold": ("through HDF5, cold", False, False, True)}


def machine():
    return (f"{provenance.processor()}, {provenance.cores()} cores; "
            f"Python {platform.python_version()}, "
            f"NumPy {np.__version__}, h5py {h5py.__version__}, Pillow {PIL.__version__}; "
            f"commit {provenance.running()}")


def check_batch(data, images, order, batch):
    """The first batch of epoch 0 against NumPy float32 (the loader's formulas)."""
    n, limit = len(order), data.image_size - data.crop
    offsets, flips, alphas = draw(np.random.default_rng([data.seed, 0, 0]), n, limit,
                                  data.draw_every, True)
    colour = colour_offsets(alphas, data.eigenvalues, data.eigenvectors, data.convention)
    for i in range(0, n, max(1, n // 8)):   # a sample of the images
        y, x = offsets[i]
        crop = images[order[i], y:y + data.crop, x:x + data.crop].astype(np.float32)
        crop = crop[:, ::-1] if flips[i] else crop
        want = ((crop - data.mean_crop) + colour[i]) / np.float32(1.1)
        if not np.array_equal(batch[..., i], want.transpose(2, 0, 1)):
            raise SystemExit(f"loader batch differs from NumPy at image {i}: not timing it")


def drop_cached(path):
    """Ask the system to forget the file's pages, written back first: the next reads of it go
    to the disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
        os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def filesystem(path):
    """The type of the filesystem that holds `path`: that of the longest mount point above it
    in /proc/self/mounts."""
    path, longest, kind = os.path.realpath(path), "", None
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            _, point, point_kind = line.split()[:3]
            point = point.replace("\\040", " ")
            if (path == point or path.startswith(point.rstrip("/") + "/")) and \
                    len(point) > len(longest):
                longest, kind = point, point_kind
    return kind


@contextlib.contextmanager
def on_cores(count):
    """Every thread of the process (this one, the loader's, its readers') kept to `count` of the
    cores it may use, and those it makes meanwhile too: a rate on n threads is one on n cores."""
    allowed = os.sched_getaffinity(0)

    def pin(cores):
        for thread in os.listdir("/proc/self/task"):
            with contextlib.suppress(ProcessLookupError):   # one that has ended
                os.sched_setaffinity(int(thread), cores)
    pin(set(sorted(allowed)[:count]))
    try:
        yield
    finally:
        pin(allowed)


def time_loader(path, images, args, threads, source):
    _, in_memory, direct, cold = SOURCES[source]
    data = Loader(path, crop=args.crop, seed=1, colour_noise_convention="sqrt-eigenvalue-div-1.1",
                  crop_draw="per-chunk-32", threads=threads,
                  in_memory_bytes=dataset_bytes(images) if in_memory else 0, direct_reads=direct)
    order = np.random.default_rng([1, 0]).permutation(len(images))[:args.batch]
    warm_up = data.train_batches(0, args.batch, True)
    first, _, _ = next(warm_up)                    # opens the file, fills memory
    # Stopped, so that no batch of the timed epoch is made before its clock starts (the loader
    # makes the next batch while the caller holds one).
    warm_up.close()
    check_batch(data, images, order, first)
    del first
    rates = []
    for epoch in range(1, args.repeats + 1):   # the median of several: one moves by a third
        if cold:
            drop_cached(path)
        count, start = 0, time.perf_counter()
        for _, labels, _ in data.train_batches(epoch, args.batch, True):
            count += len(labels)
        rates.append(count / (time.perf_counter() - start))
    return float(np.median(rates))


def dataset_bytes(images):
    return 2 * images.nbytes + (1 << 20)


def bench_loader(args, folder):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, args.size, args.size, 3), dtype=np.uint8)
    path = os.path.join(folder, "bench.h5")
    dataset.write(path, name="bench", train_images=images,
                  train_labels=np.zeros(len(images), np.int32), val_images=images[:1],
                  val_labels=np.zeros(1, np.int32), class_ids=["0"], class_names=["0"])
    cores = provenance.cores()
    print(f"loader: {args.batch}-image batches of {args.crop}-pixel crops from {args.size}-pixel "
          f"images, colour noise on (2012 settings), output (3, {args.crop}, {args.crop}, "
          f"{args.batch}) float32")
    kind = filesystem(folder)
    memory_backed = kind in ("tmpfs", "ramfs")   # its files are pages in memory: none read cold
    rates = {}
    for source, (printed, _, _, cold) in SOURCES.items():
        if cold and memory_backed:
            continue
        for threads in sorted({1, cores}):
            with on_cores(threads):
                rate = time_loader(path, images, args, threads, source)
            rates[source, threads] = rate
            print(f"  {printed:20s}  {threads:2d} thread(s): {rate:8.0f} images/s, "
                  f"{rate / threads:6.0f} per core")
    if memory_backed:
        print(f"  not timed cold: {folder} is on {kind}, which keeps its files in memory")
    print(f"  straight from the file against through HDF5, {cores} thread(s): "
          + ", ".join(f"{rates[f'file{cold}', cores] / rates[f'hdf5{cold}', cores]:.2f}× {name}"
                      for cold, name in (("", "warm"), ("-cold", "cold"))
                      if (f"file{cold}", cores) in rates))
    return rates


def bench_prepare(args, folder):
    root = os.path.join(folder, "tree")
    rng = np.random.default_rng(0)
    per_class = max(1, args.jpegs // len(imagetree.WNIDS))
    imagetree.build(root, rng, per_class=per_class, val_per_class=1)
    files = sum(len(files) for _, _, files in os.walk(root)) - len(imagetree.BAD)
    start = time.perf_counter()
    summary = prepare.prepare(root, os.path.join(folder, "tree.h5"), size=args.size, workers=1,
                              progress=False)
    seconds = time.perf_counter() - start
    stored = summary["train"] + summary["val"]
    rate = stored / seconds
    print(f"prepare: {files} real JPEGs (+{len(imagetree.BAD)} bad files) → {args.size}×"
          f"{args.size}, 1 worker process: {rate:.0f} images/s per core (including the pool's "
          f"start and the statistics)")
    return rate, stored


def main(argv=None):
    parser = options.Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--images", type=int, default=1024, help="images in the loader's file")
    parser.add_argument("--repeats", type=int, default=5,
                        help="epochs timed for each of the loader's figures, their median taken")
    parser.add_argument("--jpegs", type=int, default=150, help="JPEGs for prepare")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    options.check_counts(parser, args, "batch", "crop", "images", "jpegs", "repeats")
    if args.images < args.batch:
        parser.error(f"--batch {args.batch} must not exceed --images {args.images}: a batch is "
                     f"drawn from the file's images")
    if args.crop > args.size:
        parser.error(f"--crop {args.crop} must not exceed --size {args.size}")
    if args.size > MAX_SIZE:
        parser.error(f"--size must be at most {MAX_SIZE} pixels (a batch of that side is "
                     f"gigabytes); got {args.size}")
    memory = provenance.memory()
    for flag, count, held in (("images", args.images,
                               LOADER_COPIES * args.images * args.size ** 2 * 3),
                              ("jpegs", args.jpegs, args.jpegs * PHOTOGRAPH_BYTES)):
        if held > memory:
            parser.error(f"--{flag} {count}: needs up to {bytes_text(held)} of memory; this "
                         f"machine has {bytes_text(memory)}")
    options.check_writable_flag(parser, args.json, "--json")   # before the benchmark
    print(machine())
    with tempfile.TemporaryDirectory() as folder:
        rates = bench_loader(args, folder)
        prepare_rate, prepared = bench_prepare(args, folder)
    per_core = rates["file", 1]
    cores = provenance.cores()
    if args.json:
        # What the figures depend on: prepare's rate counts its pool's start, over few images.
        report = {"machine": machine(), "commit": provenance.running(), "batch": args.batch,
                  "crop": args.crop, "size": args.size, "images": args.images,
                  "repeats": args.repeats,
                  "prepare_images_stored": prepared,
                  "loader_images_per_second": {f"{source}-{threads}-threads": rate
                                               for (source, threads), rate in rates.items()},
                  "loader_file_per_core": per_core, "target_per_core": LOADER_TARGET_PER_CORE,
                  "prepare_images_per_second_per_core": prepare_rate}
        atomic_json(args.json, report)
    print(f"GPU training rate to sustain (a target, not measured here: no GPU is used): "
          f"{GPU_RATE_TARGET} images/s for the full model on a current GPU; the 2012 run did "
          f"{GPU_RATE_2012} images/s on two GTX 580")
    print(f"loader from the file, 1 thread: {per_core:.0f} images/s per core against the target "
          f"of {LOADER_TARGET_PER_CORE} (16 cores × {LOADER_TARGET_PER_CORE} > "
          f"{GPU_RATE_TARGET}); this machine's {cores} cores: about "
          f"{per_core * cores:.0f} images/s")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
