"""Figure 4, right: for each query image, the training images whose last-hidden-layer vectors
(fc7a and fc7b side by side after their activation: 4096 values in the default network) are
nearest in Euclidean distance, nearest first.

Queries: files, or images of --split (drawn at random, or --indices). The training set's
vectors are computed in batches on the backend --gpus selects (convnet.inference) and cached in
HDF5, by default beside the checkpoint (RUN/features/<checkpoint>-train.h5):
  /features   (N, units) float32, row i for training image i
  attrs: fingerprint (SHA-256 of the parameters, the model, the dataset file's path, size and
         modification time, the split, the layers and the views), checkpoint, data_path,
         layers, views; complete = True, written last (convnet.atomic)
A cache whose fingerprint differs is computed again, so a second query over the same set reads
the vectors instead of running the network over it.

Distances, in float64, a block of cached rows at a time: ‖q − r‖² = ‖q‖² + ‖r‖² − 2 q·r,
clipped at 0, square-rooted; equal distances in index order.
"""
import hashlib
import json
import os

import h5py
import numpy as np

from convnet import options
from convnet.atomic import HDF5_METADATA_ROOM, atomic_h5, check_room, check_writable
from convnet.errors import counted, shown
from convnet.figures import (add_output_flag, add_selection_flags, check_figure_size,
                             check_selection, checkpoint_output, file_title, new_figure, save,
                             selection_count, short_name, show_image, split_candidates)
from convnet.inference import Inference, add_checkpoint_flag, checkpoint_file, report_unreadable
from convnet.train import UsageError, with_progress

HELP = "Figure 4, right: the training images nearest to each query in fc7"
INFERENCE = True            # takes the training command's --data-path, -b, --ten-crop, --gpus
REFERENCE = "train"         # the split searched
BLOCK_VALUES = 1 << 24      # cached values compared per block (64 MiB of float32)
CELL = 1.25                 # inches per image


def add_arguments(p):
    add_checkpoint_flag(p)
    add_selection_flags(p, count=5)
    p.add_argument("-k", "--neighbours", type=int, default=6,
                   help="training images shown per query (default 6, as in the paper)")
    p.add_argument("--cache", metavar="FILE", type=options.named_path,
                   help="the HDF5 cache of the training set's vectors (default: "
                        "features/<checkpoint>-train.h5 beside the checkpoint)")
    add_output_flag(p, "neighbours")


def check(p, args):
    check_selection(p, args)
    if args.neighbours < 1:
        p.error(f"--neighbours must be at least 1; got {args.neighbours}")
    if args.cache and not os.path.isfile(args.cache):   # one there may only be read
        options.check_writable_flag(p, args.cache, "--cache")


def fingerprint(inference, split):
    """What the cached vectors depend on: the weights, the dataset file, the split, the layers
    and the views."""
    digest = hashlib.sha256()
    inference.hash_weights(digest)
    stat = os.stat(inference.loader.path)
    digest.update(json.dumps([inference.network.model.name,
                              os.path.realpath(inference.loader.path), stat.st_size,
                              stat.st_mtime_ns, split,
                              list(inference.feature_layers), inference.ten_crop]).encode())
    return digest.hexdigest()


def cache_path(inference, split):
    folder, name = os.path.split(os.path.abspath(inference.checkpoint))
    return os.path.join(folder, "features", f"{os.path.splitext(name)[0]}-{split}.h5")


def check_cache_place(path, given):
    """A cache file to be written can be, and one to be written over is a cache: another file
    (a checkpoint, the dataset) given as --cache would be lost. A UsageError before any work
    where it is not so."""
    if not os.path.exists(path):
        try:
            check_writable(path, "--cache" if given else "the feature cache")
        except ValueError as error:
            raise UsageError(f"{error}{'' if given else ' (--cache names another place)'}") \
                from None
        return
    try:
        with h5py.File(path, "r") as file:
            if "fingerprint" in file.attrs and "features" in file:
                return
    except OSError:   # not HDF5
        pass
    raise UsageError(f"{'--cache' if given else 'the feature cache'} {path}: holds a file that "
                     f"is not a cache of feature vectors, which computing them would replace; "
                     f"give {'another path' if given else 'another with --cache'}")


def cached_features(inference, split, path):
    """(the open cache file, whether it was computed now): the vectors of every image of
    `split`, read from `path` when its fingerprint matches, else computed and written there."""
    stamp = fingerprint(inference, split)
    try:
        file = h5py.File(path, "r")
        if file.attrs.get("complete") and file.attrs.get("fingerprint") == stamp:
            return file, False
        file.close()
    except OSError:       # absent or unreadable: compute it
        pass
    count = len(inference.loader.labels(split))
    # Written by blocks, not built in memory: ImageNet's training split has 21 GB of features.
    with atomic_h5(path, in_memory=False) as file:
        stored = None
        for positions, _, features in with_progress(inference.run_split(split, features=True),
                                                    f"{split} features"):
            if stored is None:   # a batch's rows a chunk: each write fills whole chunks
                stored = file.create_dataset("features", (count, features.shape[1]), np.float32,
                                             chunks=(len(positions), features.shape[1]))
                # room for them all, before HDF5 writes: its failed write would crash h5py
                check_room(file.filename, stored.nbytes + HDF5_METADATA_ROOM)
            stored[positions[0]:positions[-1] + 1] = features
        file.attrs.update(fingerprint=stamp, checkpoint=shown(inference.checkpoint),
                          data_path=shown(inference.loader.path),
                          layers=list(inference.feature_layers),
                          views=10 if inference.ten_crop else 1)
    return h5py.File(path, "r"), True


def nearest(queries, reference, k):
    """(indices (q, k), distances (q, k)) of the k rows of `reference` (N, d: an array or an
    HDF5 dataset, read a block of rows at a time) nearest to each row of queries (q, d)."""
    queries = np.asarray(queries, np.float64)
    count, units = reference.shape
    k = min(k, count)
    block = max(1, BLOCK_VALUES // units)
    query_norms = (queries ** 2).sum(axis=1)[:, None]
    best_index = np.zeros((len(queries), 0), np.int64)
    best_square = np.zeros((len(queries), 0))
    for start in range(0, count, block):
        rows = np.asarray(reference[start:start + block], np.float64)
        square = query_norms + (rows ** 2).sum(axis=1)[None, :] - 2 * queries @ rows.T
        index = np.concatenate([best_index, np.broadcast_to(
            np.arange(start, start + len(rows)), square.shape)], axis=1)
        square = np.concatenate([best_square, np.maximum(square, 0)], axis=1)
        order = np.lexsort((index, square), axis=1)[:, :k]
        best_index = np.take_along_axis(index, order, axis=1)
        best_square = np.take_along_axis(square, order, axis=1)
    return best_index, np.sqrt(best_square)


def queries(inference, args):
    """(images, titles, their vectors (q, units), files that could not be read)."""
    if args.images:
        images, paths, failed = inference.pictures(args.images)
        titles = [file_title(p) for p in paths]
        batches = inference.run(images, features=True)
    else:
        chosen = split_candidates(inference, args)
        chosen = chosen if args.indices else chosen[:args.count]
        images, failed = inference.stored(args.split, chosen), []
        labels, names = inference.loader.labels(args.split), inference.class_names
        titles = [f"{args.split}[{i}] {short_name(names[labels[i]])}" for i in chosen]
        batches = inference.run_split(args.split, chosen, features=True)
    features = [f for _, _, f in batches]
    return images, titles, np.concatenate(features) if features else None, failed


def inches(rows, columns):
    """(width, height) of the figure of `rows` queries, each beside its `columns` − 1
    neighbours."""
    return columns * CELL, rows * CELL


def draw(query_images, titles, neighbour_images, neighbour_titles):
    """Rows: the query, then its neighbours, nearest first."""
    rows, columns = len(query_images), 1 + len(neighbour_images[0])
    figure = new_figure(*inches(rows, columns))
    grid = figure.add_gridspec(rows, columns, left=0.01, right=0.99, top=1 - 0.3 / rows,
                               bottom=0.01, hspace=0.45, wspace=0.08)
    for row in range(rows):
        show_image(figure.add_subplot(grid[row, 0]), query_images[row], titles[row], "#d62728")
        for column, (image, title) in enumerate(zip(neighbour_images[row],
                                                    neighbour_titles[row]), start=1):
            show_image(figure.add_subplot(grid[row, column]), image, title)
    return figure


def run(args):
    inference = Inference(checkpoint_file(args.checkpoint), args.data_path, gpus=args.gpus,
                          batch_size=args.batch_size, ten_crop=args.ten_crop)
    path = checkpoint_output(args, "neighbours")
    cache_file = args.cache or cache_path(inference, REFERENCE)
    if os.path.realpath(cache_file) == os.path.realpath(path):   # a file there or to be
        raise UsageError(f"the figure {path}: the same file as the cache of vectors "
                         f"{cache_file}, which the figure would replace")
    check_cache_place(cache_file, given=bool(args.cache))
    searched = len(inference.loader.labels(REFERENCE))
    if not searched:   # nothing to be near, and no vectors to cache
        raise UsageError(f"the {REFERENCE} split holds no images, among which the neighbours "
                         f"are found")
    neighbours = min(args.neighbours, searched)
    check_figure_size(*inches(selection_count(inference, args), 1 + neighbours),
                      fewer="queries (--count, --indices or files) or --neighbours")
    images, titles, vectors, failed = queries(inference, args)
    report_unreadable(failed, readable=len(images))
    cache, computed = cached_features(inference, REFERENCE, cache_file)
    with cache:
        index, distance = nearest(vectors, cache["features"], args.neighbours)
    labels, names = inference.loader.labels(REFERENCE), inference.class_names
    neighbour_images = [inference.stored(REFERENCE, row) for row in index]
    neighbour_titles = [[f"{short_name(names[labels[i]], 14)} {d:.3g}"
                         for i, d in zip(row, row_distance)]
                        for row, row_distance in zip(index, distance)]
    figure = draw(images, titles, neighbour_images, neighbour_titles)
    size = save(figure, path)
    # Printed once the figure is saved: a standard output that fails loses no figure.
    for title, row, row_distance in zip(titles, index, distance):
        print(f"{title}: " + "; ".join(f"{REFERENCE}[{i}] d={d:.4g} {names[labels[i]]}"
                                       for i, d in zip(row, row_distance)))
    source = "computed and cached in" if computed else "read from"
    return (path, size, f"{counted(len(images), 'query', 'queries')}; {REFERENCE} vectors "
                        f"{source} {cache_file}", 1 if failed else 0)
