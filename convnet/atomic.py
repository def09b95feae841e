"""Atomic writes: build under a temporary name beside the target, rename over it at the end.

An interrupted or failed write leaves the previous file (if any) untouched and no partial file
under the target's name. HDF5 readers also require the `complete` attribute, set last.
"""
import errno
import fcntl
import hashlib
import json
import os
import socket
import tempfile
from contextlib import contextmanager

from convnet.errors import NOT_REGULAR, not_a_regular_file


def check_writable(path, flag, suffix=""):
    """`path`, given as `flag`, names a file that can be written where it says, and as `path` +
    `suffix` (where the work goes until it is complete): checked before the work that makes it
    (a conversion, hours of evaluation), not after. ValueError if not."""
    if not os.path.basename(path) or os.path.isdir(path):   # "", "runs/", "."
        raise ValueError(f"{flag} {path!r}: must name a file, not a folder")
    if not_a_regular_file(path):
        raise ValueError(f"{flag} {path}: {NOT_REGULAR}, which the write would replace")
    folder = nearest_existing(os.path.dirname(os.path.abspath(path)))
    if not os.path.isdir(folder):
        raise ValueError(f"{flag} {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: {folder} is not writable")
    try:
        longest = os.pathconf(folder, "PC_NAME_MAX")
    except OSError:   # a filesystem that does not say: the write itself will tell
        return
    for name in (path + suffix).split(os.sep):   # the file's, and the folders' to be made
        size = len(os.fsencode(name))
        if size > longest:
            with_suffix = f" (with {suffix})" if suffix and name.endswith(suffix) else ""
            raise ValueError(f"{flag} {path}: a name of {size} bytes{with_suffix}, longer than "
                             f"the {longest} that {folder} takes")


class LockHeld(Exception):
    """Another process holds the lock exclusive_lock asked for."""


@contextmanager
def exclusive_lock(path):
    """An exclusive lock on file `path`, for the block: LockHeld where another process holds
    one. The file is made where missing and never removed (a removal would race with its next
    taker), opened for writing, as NFS's locks need, or, another user's left there, for reading;
    the system lets the lock go however the process ends. Yields None, or the OSError of a
    filesystem that takes no lock; an OSError opening the file passes through."""
    try:
        lock = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        lock = os.open(path, os.O_RDONLY)
    try:
        unlocked = None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(path) from None
        except OSError as error:
            unlocked = error
        yield unlocked
    finally:
        os.close(lock)


def refuse_unless_regular(path):
    """An OSError naming `path` where it is a device, a pipe or a socket: checked before a
    file is rewritten, and before it is read for that (opening a pipe would wait for a
    writer)."""
    if not_a_regular_file(path):
        raise OSError(errno.EEXIST, "not a regular file, which the write would replace", path)


def nearest_existing(folder):
    """`folder`, or where it is missing the nearest path above it that exists, through links
    as the missing folders would be made: where they can be made is decided there. Checks
    make nothing, so a run refused later leaves no empty folder behind."""
    existing = os.path.realpath(folder)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    return existing


@contextmanager
def atomic_path(path, suffix=""):
    """Yields a temporary path beside `path` for the caller to write; renamed to `path` when the
    block ends normally, removed when it raises. The file reaches the disk before the rename,
    and the rename before the return: a power cut leaves the old file or the new one whole.
    A failure of the file's own writes is an OSError naming `path`, not the temporary name.
    A `path` that is a device, a pipe or a socket is refused before the block runs."""
    refuse_unless_regular(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    prefix = _partial_prefix(path)
    _remove_leftovers(folder, prefix)
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}-", suffix=suffix,
                                             dir=folder)
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(handle, 0o666 & ~umask)   # mkstemp's 0600 would outlive the rename
        finally:
            os.close(handle)
        yield temporary
        _sync(temporary)
        os.replace(temporary, path)
        _sync_folder(folder)
    except BaseException as error:
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)
        # A copy's error names the copy second (filename2), the file it reads first; the
        # rename's, the file renamed to.
        if isinstance(error, OSError) and error.errno is not None and (
                _names_a_partial(error.filename2 or error.filename, prefix)   # not another's
                or error.filename2 == path):
            raise OSError(error.errno, error.strerror, path) from None
        raise


def _partial_prefix(path):
    """The temporary files of `path` written on this machine, short whatever the name's length
    (a name has at most 255 bytes, not always UTF-8): the writer's process id follows."""
    mine = os.fsencode(os.path.basename(path)) + f"@{socket.gethostname()}".encode()
    return f".partial-{hashlib.sha1(mine).hexdigest()[:12]}-"


def _names_a_partial(filename, prefix):
    """Whether an error's file name is none, or one of the write's temporary files (the file
    itself, or its making: a folder that takes no new file)."""
    return filename is None or os.path.basename(os.fsdecode(filename)).startswith(prefix)


def _remove_leftovers(folder, prefix):
    """Removes the temporary files of a write that was killed before its cleanup (SIGKILL, a
    power cut): those of `prefix` whose process has ended. A live writer's file stays (and one
    whose process id was taken again, until that process ends). Best effort: what cannot be
    listed or removed (another user's file) stays, and the write goes on."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        writer = name[len(prefix):].split("-", 1)[0] if name.startswith(prefix) else ""
        if writer.isdigit() and not _running(int(writer)):
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:   # removed by another writer first, or not ours to remove
                pass


def _running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # another user's
        pass
    return True


def _sync(path, flags=os.O_RDONLY):
    """Writes `path`'s data (a file) or entries (a folder: flags with O_DIRECTORY) to the disk."""
    handle = os.open(path, flags)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


# What some filesystems (CIFS, FUSE ones, Ceph) answer to a folder's fsync, which they do not
# offer: the rename is done, so the write has not failed.
FOLDER_SYNC_UNOFFERED = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF, errno.EACCES}


def _sync_folder(folder):
    """Writes the folder's entries (the rename) to the disk, where its filesystem can."""
    try:
        _sync(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as error:
        if error.errno not in FOLDER_SYNC_UNOFFERED:
            raise


def atomic_json(path, data, indent=1):
    """`data` as a JSON file at `path`, written atomically (settings, benchmark reports)."""
    with atomic_path(path, ".json") as temporary, open(temporary, "w") as file:
        json.dump(data, file, indent=indent)


# The room HDF5's own metadata may take beside a file's data (its headers, chunk indexes,
# free-space records), added to the data's bytes where a check asks room for a file's writes.
HDF5_METADATA_ROOM = 16 << 20


def check_room(path, nbytes):
    """Raises the OSError (no space, a quota, a file-size limit) of the file at `path` where it
    may not grow by `nbytes`: the room is taken and given back at once, the file's end left as
    it was. For an HDF5 file written on the disk before HDF5 writes: HDF5, whose write fails,
    has by then recorded the file's new end in it, which leaves it unreadable (and h5py may
    crash closing it); a disk's free space does not show a quota or a file-size limit. Where
    the system lacks posix_fallocate (macOS), nothing is checked."""
    if not hasattr(os, "posix_fallocate"):
        return
    descriptor = os.open(path, os.O_WRONLY)
    try:
        end = os.fstat(descriptor).st_size
        try:
            os.posix_fallocate(descriptor, end, nbytes)
        except OSError as error:
            raise OSError(error.errno, os.strerror(error.errno), path) from None
        finally:
            os.ftruncate(descriptor, end)
    finally:
        os.close(descriptor)


@contextmanager
def atomic_h5(path, in_memory=True):
    """An HDF5 file to fill. in_memory: built in memory and written to disk in one go at the
    end (twice its size in memory for a moment). HDF5 writing to disk itself crashed the process
    (a segmentation fault, h5py 3.16 with HDF5 2.0) when a write failed, a full disk say, before
    any cleanup could run; a plain write of the finished image fails with an OSError instead,
    and the partial file is removed. Files too large for memory are written by HDF5."""
    import h5py   # here: the training flags' check (options) runs before the set-up installs it

    memory = {"driver": "core", "backing_store": False} if in_memory else {}
    with atomic_path(path, ".h5") as temporary:
        with h5py.File(temporary, "w", **memory) as file:
            yield file
            file.attrs["complete"] = True
            if in_memory:
                file.flush()
                image = file.id.get_file_image()
        if in_memory:
            with open(temporary, "wb") as target:
                target.write(image)
