"""Checks a prepare command's flags and ILSVRC-2012 tree before its work: exit 0, or 2 with the
one-line error.

    python -m convnet.data.ilsvrc ROOT [prepare's flags]

The tree as convnet.data.prepare reads it (its docstring describes the layout) and that command's
flags, on the standard library alone: make imagenet checks them so before its set-up, minutes on
a fresh clone, as make train does its flags (convnet.options). What is checked is all prepare
refuses before its work but the disk's space (which prepare weighs against the images its
partial file lacks): the flags' values, the output's place, the tree and its two tables.
"""
import contextlib
import fcntl
import os
import sys

from convnet import options, provenance
from convnet.atomic import LockHeld, check_writable, exclusive_lock
from convnet.errors import (NOT_REGULAR, bytes_text, counted, not_a_regular_file, open_regular,
                            run_command, shown)

DATA_DIR = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "data"))
CLASSES = os.path.join(DATA_DIR, "ilsvrc2012_classes.tsv")
VAL_LABELS = os.path.join(DATA_DIR, "ilsvrc2012_val_labels.tsv")
DEFAULT_OUTPUT = os.path.join("data", "imagenet.h5")
BLOCK = 64                # files per worker task and per stored step
BLOCKS_PER_WORKER = 2     # converted blocks out at once per worker, the one awaited included


class PrepareError(Exception):
    """Bad input (a path, a layout, a table) or, in prepare, a worker's death; reported in one
    line with exit code 2 (refused)."""


# -- the tree ---------------------------------------------------------------------------------
def read_rows(path, what, is_row):
    """[(line number, fields)] of a tab-separated table, without its blank lines, nor its first
    line where is_row(fields) says that it is not a row but a header."""
    try:
        with open_regular(path, encoding="utf-8") as handle:
            rows = [(number, line.rstrip("\n").split("\t"))
                    for number, line in enumerate(handle, start=1) if line.strip()]
    except OSError as error:
        raise PrepareError(f"{what} {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise PrepareError(f"{what} {path}: not UTF-8 text") from None
    return rows[1:] if rows and not is_row(rows[0][1]) else rows


def read_classes(path):
    """({wnid: names}, the wnids in the table's order) from the shipped table (index, wnid,
    names), whose header line is the one whose index is not a number."""
    rows = [row for _, row in read_rows(path, "class table", lambda row: row[0].isdigit())]
    if not rows or any(len(row) != 3 for row in rows):
        raise PrepareError(f"class table {path}: expected lines 'index<TAB>wnid<TAB>names'")
    return {wnid: names for _, wnid, names in rows}, [wnid for _, wnid, _ in rows]


def read_val_labels(path, table_wnids):
    """{file name: wnid} from 'file<TAB>index' (index into the class table) or 'file<TAB>wnid';
    a header line is one whose second field is neither."""
    known = set(table_wnids)

    def wnid(value):
        if value.isdigit() and int(value) < len(table_wnids):
            return table_wnids[int(value)]
        return value if value in known else None
    rows = read_rows(path, "validation labels",
                     lambda row: len(row) == 2 and wnid(row[1]) is not None)
    labels, line_of = {}, {}
    for number, row in rows:
        where = f"validation labels {path}, line {number}"
        if len(row) != 2:
            raise PrepareError(f"{where}: expected 'file<TAB>class index or wnid'")
        name, value = row
        labels_it = wnid(value)
        if labels_it is None:
            raise PrepareError(f"{where}: {value!r} is neither a class index nor a wnid of the "
                               f"class table")
        if name in labels:
            raise PrepareError(f"{where}: {name} again (first on line {line_of[name]})")
        labels[name], line_of[name] = labels_it, number
    return labels


def listing(folder):
    """The entries of a folder, sorted by name; one that cannot be listed (its permissions) is a
    PrepareError naming it."""
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except OSError as error:
        raise PrepareError(f"{folder}: cannot list it ({error.strerror})") from None


def described(entries):
    """[(name, None, or why it is not read)] of a folder's entries: each file is an input, and
    whatever else is there is reported, not ignored."""
    def why_not(entry):
        if entry.is_file():
            return None
        if entry.is_dir():
            return "a folder: only the files directly in the folder are read"
        if entry.is_symlink() and not os.path.exists(entry.path):
            return "a broken symbolic link"
        return NOT_REGULAR
    return [(entry.name, why_not(entry)) for entry in entries]


def entries_in(folder):
    """described() of every entry of a folder, sorted by name."""
    return described(listing(folder))


def untrained_note(wnid):
    """Why a validation file of a class train/ lacks is skipped."""
    return f"class {wnid} is not in train/"


def scan(root, classes_path, val_labels_path=None):
    """(wnids, names, jobs): jobs[split] = [(path relative to root, label or None, note)].
    val_labels_path labels a flat val/ (default VAL_LABELS); given with a sorted one, which it
    would not label, it is refused."""
    if not os.path.isdir(root):
        raise PrepareError(f"{root}: " + ("a file, not the folder of train/ and val/"
                                          if os.path.exists(root) else "no such folder"))
    names_of, table_wnids = read_classes(classes_path)
    train = os.path.join(root, "train")
    if not os.path.isdir(train):
        raise PrepareError(f"{root}: no train/ folder (expected {root}/train/<wnid>/*.JPEG)")
    entries = listing(train)
    stray = described(entry for entry in entries if not entry.is_dir())
    if stray:
        name, why_not = stray[0]
        raise PrepareError(f"{train}: expected only class folders (train/<wnid>/), found "
                           + (f"file {name}" if why_not is None else f"{name} ({why_not})"))
    wnids = [entry.name for entry in entries]
    if not wnids:
        raise PrepareError(f"{train}: no class folders (expected train/<wnid>/*.JPEG)")
    unknown = [wnid for wnid in wnids if wnid not in names_of]
    if unknown:
        raise PrepareError(f"{train}/{unknown[0]}: not an ILSVRC-2012 wnid (see {classes_path})")
    if len(wnids) < 2:
        raise PrepareError(f"{train}: one class folder ({wnids[0]}/); a classifier needs at "
                           f"least 2")
    label_of = {wnid: index for index, wnid in enumerate(wnids)}
    jobs = {"train": [(f"train/{wnid}/{name}", label_of[wnid], why_not)
                      for wnid in wnids for name, why_not in entries_in(os.path.join(train, wnid))]}

    val = os.path.join(root, "val")
    given_val_labels, val_labels_path = val_labels_path, val_labels_path or VAL_LABELS
    if not os.path.isdir(val):
        raise PrepareError(f"{root}: no val/ folder (expected val/<wnid>/*.JPEG or flat val/*.JPEG "
                           f"with {val_labels_path})")
    val_entries = listing(val)   # listed once: a flat val/ holds 50,000 files
    folders = [entry.name for entry in val_entries if entry.is_dir()]
    flat = described(entry for entry in val_entries if not entry.is_dir())
    if folders and flat:
        raise PrepareError(f"{val}: mixes class folders ({folders[0]}/) and files "
                           f"({flat[0][0]}); use one layout")
    if folders:
        if given_val_labels is not None:
            raise PrepareError(f"--val-labels {given_val_labels}: labels a flat val/, but {val} "
                               f"is sorted into class folders ({folders[0]}/), which label its "
                               f"files; leave the flag out")
        unknown = [wnid for wnid in folders if wnid not in names_of]
        if unknown:
            raise PrepareError(f"{val}/{unknown[0]}: not an ILSVRC-2012 wnid (see "
                               f"{classes_path})")
        jobs["val"] = []
        for wnid in folders:   # a class train/ lacks: its files skipped, as a flat val/'s are
            untrained = None if wnid in label_of else untrained_note(wnid)
            for name, why_not in entries_in(os.path.join(val, wnid)):
                note = why_not or untrained
                jobs["val"].append((f"val/{wnid}/{name}", None if note else label_of[wnid], note))
    else:
        wnid_of = read_val_labels(val_labels_path, table_wnids)
        jobs["val"] = []
        for name, why_not in flat:
            wnid = wnid_of.get(name)
            note = why_not or (f"not listed in {os.path.basename(val_labels_path)}"
                               if wnid is None else
                               untrained_note(wnid) if wnid not in label_of else None)
            jobs["val"].append((f"val/{name}", None if note else label_of[wnid], note))
    # Training refuses a dataset without validation images: refused here, not after hours.
    if not any(note is None for _, _, note in jobs["val"]):
        if not jobs["val"]:
            raise PrepareError(f"{val}: no files (expected val/<wnid>/*.JPEG or flat val/*.JPEG "
                               f"with {val_labels_path})")
        path, _, note = jobs["val"][0]
        raise PrepareError(f"{val}: none of its {counted(len(jobs['val']), 'file')} is a "
                           f"validation image of a class in train/ (the first, {path}: {note})"
                           + ("" if folders else "; --val-labels names a flat val/'s classes"))
    return wnids, [names_of[wnid] for wnid in wnids], jobs


# -- the command's flags ----------------------------------------------------------------------
def command_parser(description):
    """The flags of `python -m convnet.data.prepare`, which its check here takes too (its
    errors, as the user's command's, name prepare)."""
    p = options.Parser(prog="python -m convnet.data.prepare", description=description)
    p.add_argument("root", help="folder with train/<wnid>/ and val/")
    p.add_argument("--output", default=DEFAULT_OUTPUT,
                   help=f"the HDF5 file to write (default {DEFAULT_OUTPUT})")
    p.add_argument("--size", type=int, default=256, help="stored image size (default 256)")
    p.add_argument("--workers", type=int, default=None,
                   help="decoding processes (default: one per available core)")
    p.add_argument("--val-labels",
                   help=f"labels of a flat val/ folder: file<TAB>class index or wnid (default "
                        f"{VAL_LABELS})")
    p.add_argument("--classes", default=CLASSES, help="the synset table (index, wnid, names)")
    p.add_argument("--name", default="imagenet", help="the dataset's name attribute")
    p.add_argument("--restart", action="store_true",
                   help="ignore an interrupted run's OUTPUT.partial and start again")
    return p


def in_use(path):
    """Whether another open of the file holds a lock on it: HDF5 takes one on each file it
    opens, a shared one to read it (a reader of a partial file, which a new prepare would
    empty, counts too); prepare an exclusive one on OUTPUT.lock."""
    with open(path, "rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False   # the lock, if taken, went with the close


def partial_of(output):
    """Where prepare's work for OUTPUT goes until it is complete."""
    return output + ".partial"


def lock_of(output):
    """The file a prepare of OUTPUT holds a lock on, from before it opens OUTPUT.partial to its
    end: made beside OUTPUT and never removed (a removal would race with its next taker)."""
    return output + ".lock"


def busy(output):
    return PrepareError(f"{output}: another prepare is writing it now (it holds "
                        f"{lock_of(output)}); let it end, or give another --output")


@contextlib.contextmanager
def holding(output):
    """OUTPUT held for one prepare: a second one started with it, which would cut the first
    one's partial file short (HDF5 empties a file it is asked to create before it tries its own
    lock on it), is refused in one line. The system lets the lock go however the process ends;
    a filesystem that takes no lock leaves only HDF5's own lock on the partial file."""
    with contextlib.ExitStack() as held:   # its own errors refused, not those of the work
        try:
            held.enter_context(exclusive_lock(lock_of(output)))
        except LockHeld:
            raise busy(output) from None
        except OSError as error:
            raise PrepareError(f"{lock_of(output)}: cannot open it ({error.strerror})") from None
        yield


def images_held(size, workers):
    """The fewest bytes of images prepare holds at once: its blocks out (BLOCKS_PER_WORKER per
    worker, BLOCK images of size × size × 3 bytes each) and the training set's int64 pixel sum."""
    return (BLOCKS_PER_WORKER * workers * BLOCK * 3 + 3 * 8) * size * size


def check(root, output, *, size, workers, name, classes, val_labels):
    """Everything prepare refuses before its work (PrepareError), the tree last; returns scan's
    (wnids, names, jobs)."""
    if size < 1:
        raise PrepareError(f"--size {size}: must be a positive number of pixels")
    if workers is not None and workers < 1:
        raise PrepareError(f"--workers {workers}: must be at least 1")
    memory = provenance.memory()
    processes = workers or provenance.cores()
    held = images_held(size, processes)
    if held > memory:   # else a MemoryError, or the kernel's OOM killer, once decoding starts
        raise PrepareError(f"--size {size}: prepare would hold at least {bytes_text(held)} "
                           f"of images at once ({BLOCKS_PER_WORKER} blocks of {BLOCK} per "
                           f"worker, {counted(processes, 'worker')}), more than this machine's "
                           f"{bytes_text(memory)} of memory: lower --size or --workers")
    try:   # checked before the work, not when it is stored at the end
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise PrepareError(f"--name {shown(name)}: not UTF-8 text, which the dataset's name "
                           f"attribute holds") from None
    try:   # before hours of decoding, not after
        check_writable(output, "--output", suffix=partial_of(""))
    except ValueError as error:
        raise PrepareError(str(error)) from None
    if os.path.isfile(lock_of(output)) and in_use(lock_of(output)):   # before the scan too
        raise busy(output)
    partial = partial_of(output)
    if os.path.isdir(partial) or not_a_regular_file(partial):   # neither resumed nor replaced
        raise PrepareError(f"{partial}: " + ("a folder" if os.path.isdir(partial) else NOT_REGULAR)
                           + f", where the work for {output} goes; move it away")
    if os.path.isfile(partial):   # resumed or replaced after the scan: refused before it
        if not os.access(partial, os.R_OK | os.W_OK):
            raise PrepareError(f"{partial}: not readable and writable by this user, where the "
                               f"work for {output} goes")
        if in_use(partial):
            raise PrepareError(f"{partial}: in use by another process (another prepare of "
                               f"{output}?)")
    return scan(root, classes, val_labels)


def refused(error):
    """A PrepareError as the commands report it: one line on stderr whatever the names; exit
    code 2."""
    print(f"error: {shown(str(error))}", file=sys.stderr)
    return 2


def main(argv=None):
    parser = command_parser(__doc__.split("\n\n")[0])
    args = parser.parse_args(argv)
    try:
        check(args.root, args.output, size=args.size, workers=args.workers, name=args.name,
              classes=args.classes, val_labels=args.val_labels)
    except PrepareError as error:
        return refused(error)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, output_required=False))
