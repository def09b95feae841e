"""ILSVRC-2012 JPEG tree → the prepared-dataset format (convnet.data.dataset), on several processes.

    python -m convnet.data.prepare ROOT [--output data/imagenet.h5] [--size 256] [--workers N]
                                        [--val-labels FILE] [--classes FILE] [--name NAME]
                                        [--restart]

ROOT holds train/<wnid>/<files> and val/, either in class folders (val/<wnid>/<files>) or flat
(val/<files>, labelled by --val-labels, default data/ilsvrc2012_val_labels.tsv: the devkit's
ground truth as "file<TAB>index" lines, index into data/ilsvrc2012_classes.tsv; refused with
class folders, which label their files). Class index =
position in the sorted list of train/'s wnids; names come from --classes (the shipped table of
all 1000: index, wnid, names). Both tables may start with a header line (the shipped ones do),
which is told from a row by its fields. Every file in those folders is read, whatever its name;
any other entry there (a folder, a broken link, a pipe) is reported as skipped. A val/ none of
whose files is labelled for a class of train/ is refused before the work, and a split left
without an image after it: training reads both.

Each image: decoded with Pillow (JPEG draft mode: the decoder's DCT scaling to the smallest
1/1, 1/2, 1/4 or 1/8 size whose sides are all ≥ S, which speeds decoding large photographs),
converted to RGB where it is not, its central min(w, h) square resized (bilinear, antialiased) to
S×S: the shorter side rescaled to S and the central S×S taken, in one resampling.
The file holds, besides images and labels (see convnet.data.dataset for the whole format):
  /mean, /eigenvalues, /eigenvectors   from the training images (exact integer sums, dataset.py)
  /report/converted, /report/skipped   "path<TAB>reason" for every file that was not a plain RGB
                                       JPEG: CMYK or greyscale (converted; 16- or 32-bit
                                       greyscale by its high byte), PNG or another format
                                       under a .JPEG name (decoded as what it is), an EXIF
                                       orientation other than upright (noted: the pixels are
                                       stored as encoded, as torchvision's ImageNet reader
                                       takes them), empty, truncated or undecodable files and
                                       entries that are not files (skipped); names that are not
                                       UTF-8 with their other bytes as \\xNN
  attrs: name = "imagenet" (or --name), image_size = S, complete = True written last.

Crash safety: the work goes into OUTPUT.partial, in blocks of BLOCK files, written in file order
whatever the number of processes; after each block the counters and the running statistics are
stored and the file flushed. Interrupted (Ctrl-C, SIGTERM) it stops at once, or after the block
being stored, dropping those the workers hold, with exit status 128 + the signal's number (130,
143); a worker that dies (killed, out of memory) stops it with an error naming its block; so does
a full disk, a quota or a file-size limit, before the block it may not hold (HDF5 leaves a file
whose writes failed broken): the block's room is taken, and given back, before HDF5 writes.
The same command resumes from the last stored block if the file list and settings are
unchanged, and otherwise starts again (as it does with --restart). Only a finished file is renamed
to OUTPUT, so OUTPUT is never a file that looks complete but is not.
"""
import contextlib
import hashlib
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import traceback
import warnings

import h5py
import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from convnet import provenance
from convnet.atomic import HDF5_METADATA_ROOM, check_room
from convnet.errors import (bytes_text, counted, failed_writes, one_line, run_command, shown,
                            stop_signal)
from convnet.stopping import Stopped
from convnet.data.dataset import (CHUNK_BYTES, SPLITS, Statistics, chunk_images,
                                   write_classes, write_statistics)
from convnet.data.ilsvrc import (BLOCK, BLOCKS_PER_WORKER, CLASSES, DEFAULT_OUTPUT,
                                  PrepareError, check, command_parser, holding, partial_of,
                                  refused)

SHOWN_NOTES = 20      # converted/skipped files printed at the end; all are in /report
MODES = {"L": "greyscale (L)", "LA": "greyscale with alpha (LA)", "P": "palette (P)",
         "RGBA": "RGB with alpha (RGBA)", "CMYK": "CMYK", "I;16": "16-bit greyscale (I;16)",
         "I;16B": "16-bit greyscale (I;16B)", "I": "integer greyscale (I)"}
UNROTATED = "not applied (stored as encoded)"   # a picture's EXIF orientation: as torchvision
# Greyscale modes wider than 8 bits, which Pillow's convert() clips at 255 instead of scaling:
# they keep their high byte, as Pillow reads 16-bit RGB (greyscale_levels).
WIDE_GREYSCALE = ("I;16", "I;16B", "I;16L", "I;16N", "I")
TIFF_BITS_PER_SAMPLE, TIFF_SAMPLE_FORMAT, TIFF_SIGNED = 258, 339, 2


def greyscale_levels(image) -> tuple[np.ndarray, int]:
    """(the pixel values of a wide greyscale `image`, the bits their range spans): a TIFF's
    bits per sample, less the sign bit where its samples are signed (as Pillow writes mode I),
    its unsigned 32-bit samples (the format's default, which Pillow reads as signed) made
    unsigned again; else 16 (the I;16 modes, and older Pillow's mode I for PNG's 16-bit
    greyscale)."""
    values = np.asarray(image)
    if image.format != "TIFF":
        return values, 16
    bits = image.tag_v2.get(TIFF_BITS_PER_SAMPLE, (16,))[0]
    if image.tag_v2.get(TIFF_SAMPLE_FORMAT, (1,))[0] == TIFF_SIGNED:
        return values, bits - 1
    return (values.view(np.uint32) if values.dtype == np.int32 else values), bits


# -- one image, one block (in the worker processes) -------------------------------------------
def load_image(path, size):
    """(uint8 (S, S, 3) or None, note): note None for a plain RGB JPEG, else what was done."""
    if os.path.getsize(path) == 0:
        return None, "skipped: empty file"
    notes = []
    try:
        with warnings.catch_warnings():
            # Pillow warns of an image of MAX_IMAGE_PIXELS to twice that, which is read all the
            # same (a large photograph, two lines on stderr); it refuses a larger one (below).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(path)
        with opened as image:
            if image.format != "JPEG":
                notes.append(f"{image.format} file under a JPEG name, decoded as {image.format}"
                             if path.lower().endswith((".jpeg", ".jpg")) else
                             f"{image.format} file")
            else:
                image.draft("RGB", (size, size))
            image.load()
            orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
            if orientation != 1:
                notes.append(f"EXIF orientation {orientation} {UNROTATED}")
            if image.mode != "RGB":
                notes.append(f"{MODES.get(image.mode, image.mode)} converted to RGB")
                if image.mode in WIDE_GREYSCALE:
                    values, bits = greyscale_levels(image)
                    high_byte = np.clip(values, 0, 2 ** bits - 1) >> (bits - 8)
                    image = Image.fromarray(high_byte.astype(np.uint8))
                image = image.convert("RGB")
            width, height = image.size
            side = min(width, height)
            left, top = (width - side) / 2, (height - side) / 2
            square = image.resize((size, size), Image.BILINEAR,
                                  box=(left, top, left + side, top + side))
            pixels = np.asarray(square, dtype=np.uint8)
    except UnidentifiedImageError:
        return None, "skipped: not an image Pillow can identify"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        if isinstance(error, OSError) and error.errno is not None:   # the system's, not a decoder's
            return None, f"skipped: cannot read it ({error.strerror})"
        reason = "truncated" if "truncated" in str(error).lower() else f"undecodable ({error})"
        return None, f"skipped: {reason}"
    return pixels, ("converted: " + "; ".join(notes)) if notes else None


def process_block(task):
    """One block of one split: (images, labels, notes [(path, note)], Statistics or None)."""
    root, size, split, jobs = task
    images, labels, notes = [], [], []
    for relative, label, note in jobs:
        if note is None:
            pixels, note = load_image(os.path.join(root, relative), size)
            if pixels is not None:
                images.append(pixels)
                labels.append(label)
        else:
            note = f"skipped: {note}"
        if note is not None:
            notes.append((relative, note))
    images = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    statistics = Statistics(size).add(images) if split == "train" else None
    return images, np.array(labels, np.int32), notes, statistics


class WorkerError(Exception):
    """The worker given the task at INDEX raised (TRACEBACK is its traceback) or died (None)."""

    def __init__(self, index, traceback=None):
        super().__init__(index, traceback)
        self.index, self.traceback = index, traceback


def serve_blocks(connection, convert):
    """A worker: convert(task) for each task received on CONNECTION, sent back as (True,
    result), or (False, the traceback) when it raises; until the parent closes its end. Ctrl-C,
    which a terminal sends to the workers too, is left to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            task = connection.recv()
        except (EOFError, OSError):   # the parent is done, or gone
            return
        try:
            reply = True, convert(task)
        except Exception:
            reply = False, traceback.format_exc()
        try:
            connection.send(reply)
        except OSError:   # the parent is gone
            return


class BlockWorkers:
    """Worker processes that convert blocks, each on a pipe of its own, so that a worker ending
    at any moment (killed, out of memory, a crash in a decoder, a SIGTERM sent to the process
    group) is an end of file on its own pipe and nothing else. Process pools share one result
    pipe and its lock, which a worker killed while sending holds for ever: the pool then waits
    for ever (python/cpython#96995)."""

    def __init__(self, count, convert):
        # From a fork server (Python 3.14's default on Linux), not a fork of this process,
        # which may hold threads and their locks (a library's, a caller's) and open HDF5 files.
        context = multiprocessing.get_context("forkserver")
        self.workers = []
        try:
            for _ in range(count):
                ours, theirs = context.Pipe()
                process = context.Process(target=serve_blocks, args=(theirs, convert),
                                          daemon=True)
                self.workers.append((process, ours))
                process.start()
                theirs.close()   # the worker's end is then only in the worker
        except BaseException:
            self.close()
            raise

    def map(self, tasks, ahead, stopped):
        """The results of TASKS (a list), in order, with at most AHEAD tasks out at once, the one
        awaited included: the converted blocks held here stay few whatever the order the
        workers finish in. Raises WorkerError, and KeyboardInterrupt once stopped(): before the
        next result, and every 0.1 s while waiting (workers ignore Ctrl-C, and a stuck one
        would otherwise keep the stop waiting)."""
        idle = [connection for _, connection in self.workers]
        given, awaited, held, finished = 0, 0, {}, {}
        while awaited < len(tasks):
            if stopped():
                raise KeyboardInterrupt
            while idle and given < min(len(tasks), awaited + ahead):
                connection = idle.pop()
                try:
                    connection.send(tasks[given])
                except OSError:
                    raise WorkerError(given) from None
                held[connection] = given
                given += 1
            if awaited not in finished:
                for connection in multiprocessing.connection.wait(list(held), timeout=0.1):
                    index = held.pop(connection)
                    try:
                        converted, result = connection.recv()
                    except (EOFError, OSError):   # OSError: it died while sending
                        raise WorkerError(index) from None
                    if not converted:
                        raise WorkerError(index, result)
                    finished[index] = result
                    idle.append(connection)
                continue
            yield finished.pop(awaited)
            awaited += 1

    def close(self):
        """Ends the workers at once; the blocks they hold are dropped."""
        started = [process for process, _ in self.workers if process.pid is not None]
        for process in started:   # before closing their pipes, which a busy one would report
            process.kill()
        for process in started:
            process.join()
        for _, connection in self.workers:
            connection.close()


# -- the partial file -------------------------------------------------------------------------
def fingerprint(jobs, size):
    digest = hashlib.sha256(f"{size} {BLOCK}".encode())
    for split in SPLITS:
        for relative, label, note in jobs[split]:
            digest.update(os.fsencode(f"{split}\t{relative}\t{label}\t{note}\n"))
    return digest.hexdigest()


def create_partial(path, size, stamp):
    file = h5py.File(path, "w")
    chunk = chunk_images(size)
    for split in SPLITS:
        file.create_dataset(f"{split}/images", (0, size, size, 3), np.uint8,
                            maxshape=(None, size, size, 3), chunks=(chunk, size, size, 3))
        file.create_dataset(f"{split}/labels", (0,), np.int32, maxshape=(None,))
        file.attrs[f"{split}_count"] = 0
    for kind in ("converted", "skipped"):
        file.create_dataset(f"report/{kind}", (0,), h5py.string_dtype(), maxshape=(None,))
        file.attrs[f"{kind}_count"] = 0
    store_statistics(file, Statistics(size))
    file.attrs["blocks_done"] = 0
    file.attrs["fingerprint"] = stamp
    file.flush()
    return file, Statistics(size)


def store_statistics(file, statistics):
    for key in ("pixel_sum", "rgb_sum", "rgb_outer"):
        if f"progress/{key}" in file:
            file[f"progress/{key}"][...] = getattr(statistics, key)
        else:
            file[f"progress/{key}"] = getattr(statistics, key)
    file.attrs["statistics_count"] = statistics.count


def reopen_partial(path, size, stamp, blocks):
    """The partial file cut back to its last stored block of BLOCKS, and its statistics; or a
    reason why it cannot be resumed."""
    try:
        file = h5py.File(path, "r+")
    except OSError as error:
        return None, None, f"unreadable ({one_line(error)})"
    attrs = file.attrs
    if attrs.get("complete"):   # killed between its last write and its rename
        file.close()
        return None, None, ("finished, but not renamed; what it was made from is no longer "
                            "recorded in it")
    if attrs.get("fingerprint") != stamp:
        file.close()
        return None, None, "made from other files or settings"
    statistics = Statistics(size)
    statistics.count = int(attrs["statistics_count"])
    for key in ("pixel_sum", "rgb_sum", "rgb_outer"):
        setattr(statistics, key, file[f"progress/{key}"][()])
    if statistics.count != attrs["train_count"]:
        file.close()   # killed between storing the statistics and the counters
        return None, None, "its statistics and images disagree"
    # Each file of a stored block is an image of its split or a skipped file.
    if sum(int(attrs[f"{kind}_count"]) for kind in (*SPLITS, "skipped")) != \
            sum(len(block) for _, block in blocks[:int(attrs["blocks_done"])]):
        file.close()   # killed between storing the counters and the count of blocks
        return None, None, "its counters and its count of blocks disagree"
    for split in SPLITS:   # drop anything written after the last stored block
        count = int(attrs[f"{split}_count"])
        file[f"{split}/images"].resize(count, axis=0)
        file[f"{split}/labels"].resize(count, axis=0)
    for kind in ("converted", "skipped"):
        file[f"report/{kind}"].resize(int(attrs[f"{kind}_count"]), axis=0)
    return file, statistics, None


def append(dataset, values):
    start = len(dataset)
    dataset.resize(start + len(values), axis=0)
    dataset[start:] = values


def store_block(file, split, result, statistics):
    images, labels, notes, block_statistics = result
    append(file[f"{split}/images"], images)
    append(file[f"{split}/labels"], labels)
    for kind in ("converted", "skipped"):
        lines = [f"{shown(path)}\t{note[len(kind) + 2:]}" for path, note in notes
                 if note.startswith(kind)]
        append(file[f"report/{kind}"], np.array(lines, dtype=h5py.string_dtype()))
    if block_statistics is not None:
        statistics.merge(block_statistics)
        store_statistics(file, statistics)
    # The counters last: until they are stored, the block does not count.
    for split_name in SPLITS:
        file.attrs[f"{split_name}_count"] = len(file[f"{split_name}/labels"])
    for kind in ("converted", "skipped"):
        file.attrs[f"{kind}_count"] = len(file[f"report/{kind}"])
    file.attrs["blocks_done"] = int(file.attrs["blocks_done"]) + 1
    file.flush()


def space_for(images, image_bytes):
    """The bytes `images` of image_bytes each may take: a block may start an image chunk; each
    image adds its label and an entry to HDF5's chunk index (about 65 bytes); HDF5 writes its
    other metadata besides."""
    return images * (image_bytes + 4 + 128) + 2 * CHUNK_BYTES + HDF5_METADATA_ROOM


def check_space(path, images, image_bytes, what="the next block", then="to resume", freed=0,
                left=None):
    """Refuses `images` of image_bytes each that the disk of PATH may not hold (`what` they
    are), counting `freed` bytes that the work frees first as free: an HDF5 file whose writes
    failed is left broken (and h5py may crash closing it), while the file before them resumes.
    Checked for every image left before the work too, which would otherwise find a disk too
    small for ImageNet's 250 GB hours in; so, where the work refuses a block, what to free is
    the room for the `left` images (files) it has not stored, which a resume asks for."""
    needed = space_for(images, image_bytes)
    free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free + freed
    if free < needed:
        asked, room = (needed, "") if left is None else \
            (space_for(left, image_bytes), f", room for the {counted(left, 'image')} left,")
        raise PrepareError(f"{path}: {bytes_text(free)} free on its disk, too little for {what} "
                           f"({bytes_text(needed)}); free {bytes_text(asked - free, up=True)} "
                           f"more{room} and run the same command {then}")


def check_growth(path, nbytes):
    """Refuses the `nbytes` of a block (or of the end's tables) that the file at PATH may not
    grow by for a reason its disk's free space does not show (a quota, a file-size limit,
    another writer that took the space): HDF5's failed write would leave the file unreadable,
    and every stored block lost (atomic.check_room)."""
    try:
        check_room(path, nbytes)
    except OSError as error:
        raise PrepareError(f"{path}: it cannot grow by the {bytes_text(nbytes)} it may take next "
                           f"({error.strerror}); make room for them (a quota, a file size limit) "
                           f"and run the same command to resume") from None


# -- the run ----------------------------------------------------------------------------------
class StopRequest:
    """SIGINT/SIGTERM set a flag that the block loop reads before each result and while it waits."""

    def __init__(self):
        self.signal = None

    def __call__(self, number, frame):
        self.signal = number


def prepare(root, output=DEFAULT_OUTPUT, *, size=256, workers=None, classes=CLASSES,
            val_labels=None, restart=False, name="imagenet", progress=True):
    """Prepare ROOT into OUTPUT; returns a summary dict. Raises PrepareError on bad input or a
    worker's death and KeyboardInterrupt when stopped by a signal (the partial file is kept for
    resuming either way)."""
    wnids, names, jobs = check(root, output, size=size, workers=workers, name=name,
                               classes=classes, val_labels=val_labels)
    blocks = [(split, jobs[split][start:start + BLOCK]) for split in SPLITS
              for start in range(0, len(jobs[split]), BLOCK)]
    stamp = fingerprint(jobs, size)
    partial = partial_of(output)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with holding(output):   # from before the partial file is opened to its rename
        return convert(root, output, partial, blocks, stamp, jobs, wnids, names, size=size,
                       workers=workers or provenance.cores(), restart=restart, name=name,
                       progress=progress)


def convert(root, output, partial, blocks, stamp, jobs, wnids, names, *, size, workers,
            restart, name, progress):
    """prepare's work, once OUTPUT is held: the blocks converted into the partial file (resumed
    where it holds some of them), then the statistics, and the file renamed to OUTPUT."""
    total = sum(len(jobs[split]) for split in SPLITS)

    file, reason = None, None
    if os.path.exists(partial) and not restart:
        file, statistics, reason = reopen_partial(partial, size, stamp, blocks)
    done = 0 if file is None else int(file.attrs["blocks_done"])
    # A partial file started again is emptied first: its blocks on the disk count as free.
    freed = os.stat(partial).st_blocks * 512 if file is None and os.path.exists(partial) else 0
    left = sum(len(files) for _, files in blocks[done:])   # skipped files counted: a bound
    try:   # before a new partial file is made, and before a line says the work goes on
        check_space(partial, left, size * size * 3, f"the {counted(left, 'image')} left to store",
                    "to resume" if done else "again", freed)
    except PrepareError:
        if file is not None:
            file.close()
        raise
    if reason is not None:
        print(f"{shown(partial)}: cannot resume ({reason}); starting again", file=sys.stderr)
    elif file is not None:
        print(f"{shown(partial)}: resuming after {done} of {len(blocks)} blocks", file=sys.stderr)
    if file is None:   # a file the system refuses (HDF5's message, errno's many lines): one line
        with failed_writes(PrepareError, lambda error: f"{shown(partial)}: cannot write it ("
                           f"{os.strerror(error.errno) if error.errno else one_line(error)})"):
            file, statistics = create_partial(partial, size, stamp)
    stop = StopRequest()
    previous = {number: signal.signal(number, stop) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        from tqdm import tqdm
        bar = tqdm(total=total, initial=sum(len(b) for _, b in blocks[:done]), unit="file",
                   desc=f"prepare {shown(os.path.basename(output))}", disable=not progress or None,
                   dynamic_ncols=True)
        tasks = [(root, size, split, block) for split, block in blocks[done:]]
        try:
            pool = BlockWorkers(min(workers, len(tasks)), process_block)
        except (EOFError, OSError):
            if stop.signal is None:
                raise
            raise KeyboardInterrupt from None   # a SIGTERM to the group ended the fork server
        with contextlib.closing(pool):
            try:
                for (_, _, split, block), result in zip(tasks, pool.map(
                        tasks, BLOCKS_PER_WORKER * workers, lambda: stop.signal is not None)):
                    # what to free: the room a resume asks for, every image left
                    check_space(partial, len(result[0]), size * size * 3, left=left)
                    check_growth(partial, space_for(len(result[0]), size * size * 3))
                    store_block(file, split, result, statistics)
                    left -= len(block)
                    bar.update(len(block))
                    bar.set_postfix(converted=int(file.attrs["converted_count"]),
                                    skipped=int(file.attrs["skipped_count"]), refresh=False)
            except WorkerError as error:
                block = f"the block of {len(tasks[error.index][3])} files that starts at " \
                        f"{root}/{tasks[error.index][3][0][0]}"
                if error.traceback is not None:   # a bug, not bad input
                    raise RuntimeError(f"converting {block}:\n{error.traceback}") from None
                # Workers die of a stop signal too: a SIGTERM sent to the process group, or a
                # Ctrl-C that comes before a starting worker ignores it.
                if stop.signal is not None:
                    raise KeyboardInterrupt from None
                raise PrepareError(
                    f"a worker process died (killed, out of memory, or a crash in a decoder) on "
                    f"{block}; the blocks stored so far are in {partial}: run the same command "
                    f"again to resume") from None
        bar.close()
        for split in SPLITS:   # training reads both
            if int(file.attrs[f"{split}_count"]) == 0:
                raise PrepareError(f"{root}/{split}: not one image could be read (see the "
                                   f"skipped files in {partial}); once they can be, run the "
                                   f"same command with --restart, which reads them again")
        per_class = np.bincount(file["train/labels"][()], minlength=len(wnids))
        summary = {"output": output, "classes": len(wnids),
                   **{split: int(file.attrs[f"{split}_count"]) for split in SPLITS},
                   "untrained": [wnid for wnid, count in zip(wnids, per_class) if count == 0],
                   **{kind: [line.decode() for line in file[f"report/{kind}"][()]]
                      for kind in ("converted", "skipped")}}
        check_growth(partial, space_for(0, 0))   # the statistics and the class table
        write_statistics(file, statistics.result())
        write_classes(file, name=name, size=size, class_ids=wnids, class_names=names)
        for key in ("fingerprint", "blocks_done", "statistics_count"):
            del file.attrs[key]
        del file["progress"]
        file.attrs["complete"] = True
        file.close()
        os.replace(partial, output)
    except KeyboardInterrupt:
        if stop.signal is None:
            raise
        raise Stopped(stop.signal) from None   # which signal: the exit status says it
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if file is not None and file.id.valid:
            file.close()
    return summary


def report(summary):
    """The summary on standard output (sys.stdout as the command runs: run_command's, which
    checks its writes), the classes left without a training image on stderr."""
    print(f"wrote {shown(summary['output'])}: {summary['classes']} classes, {summary['train']} "
          f"training and {summary['val']} validation images; {len(summary['converted'])} "
          f"converted, {len(summary['skipped'])} skipped")
    for kind in ("converted", "skipped"):
        lines = summary[kind]
        for line in lines[:SHOWN_NOTES]:
            path, reason = line.split("\t", 1)
            print(f"  {kind}: {path}: {reason}")
        if len(lines) > SHOWN_NOTES:
            print(f"  … and {len(lines) - SHOWN_NOTES} more {kind} files, all listed in "
                  f"/report/{kind} of {shown(summary['output'])}")
    untrained = summary["untrained"]
    if untrained:
        print(f"warning: {len(untrained)} of the {summary['classes']} classes have no training "
              f"image (an empty folder, or every file skipped), so training cannot learn them: "
              f"{', '.join(untrained[:SHOWN_NOTES])}{' …' * (len(untrained) > SHOWN_NOTES)}",
              file=sys.stderr)


def main(argv=None):
    parser = command_parser(__doc__.split("\n\n")[0])
    args = parser.parse_args(argv)
    try:
        summary = prepare(args.root, args.output, size=args.size, workers=args.workers,
                          classes=args.classes, val_labels=args.val_labels,
                          restart=args.restart, name=args.name)
    except PrepareError as error:
        return refused(error)
    except Stopped as stop:   # in the work: its partial file holds the blocks stored so far
        again = "the same command again" if not args.restart else "it again without --restart"
        print(f"interrupted: the work so far is in {shown(partial_of(args.output))}; run {again} "
              f"to resume", file=sys.stderr)
        return 128 + stop.number
    except KeyboardInterrupt as stop:   # a Ctrl-C before the work (the scan: minutes on ImageNet)
        print("interrupted before the work, of which nothing was written; run the same command "
              "again", file=sys.stderr)
        return 128 + stop_signal(stop)
    report(summary)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
