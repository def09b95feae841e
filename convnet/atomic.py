"""Atomic writes: build under a temporary name beside the target, rename over it at the end.

An interrupted or failed write leaves the previous file (if any) untouched and no partial file
under the target's name. HDF5 readers also require the `complete` attribute, set last.
"""
import json
import os
import socket
import tempfile
from contextlib import contextmanager

import h5py

from convnet.errors import one_line


def check_writable(path, flag):
    """`path`, given as `flag`, names a file that can be written where it says: checked before
    the work that makes it (a conversion, hours of evaluation), not after. ValueError if not."""
    if not os.path.basename(path) or os.path.isdir(path):   # "", "runs/", "."
        raise ValueError(f"{flag} {path!r}: must name a file, not a folder")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"{flag} {path}: {folder} is a file, not a folder")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise ValueError(f"{flag} {path}: cannot make its folder ({one_line(error)})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: its folder is not writable")


@contextmanager
def atomic_path(path, suffix=""):
    """Yields a temporary path beside `path` for the caller to write; renamed to `path` when the
    block ends normally, removed when it raises. The file reaches the disk before the rename,
    and the rename before the return: a power cut leaves the old file or the new one whole."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    prefix = _partial_prefix(path)
    _remove_leftovers(folder, prefix)
    handle, temporary = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}-", suffix=suffix,
                                         dir=folder)
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)   # mkstemp's 0600 would outlive the rename
    try:
        yield temporary
        _sync(temporary)
        os.replace(temporary, path)
        _sync(folder)
    except BaseException as error:
        if os.path.exists(temporary):
            os.unlink(temporary)
        if isinstance(error, OSError) and error.filename == temporary:   # name the file asked for
            raise OSError(error.errno, error.strerror, path) from None
        raise


def _partial_prefix(path):
    """The temporary files of `path` written on this machine: the writer's process id follows."""
    return f".partial-{os.path.basename(path)}@{socket.gethostname()}:"


def _remove_leftovers(folder, prefix):
    """Removes the temporary files of a write that was killed before its cleanup (SIGKILL, a
    power cut): those of `prefix` whose process has ended. A live writer's file stays (and one
    whose process id was taken again, until that process ends)."""
    for name in os.listdir(folder):
        writer = name[len(prefix):].split("-", 1)[0] if name.startswith(prefix) else ""
        if writer.isdigit() and not _running(int(writer)):
            try:
                os.unlink(os.path.join(folder, name))
            except FileNotFoundError:   # another writer removed it first
                pass


def _running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # another user's
        pass
    return True


def _sync(path):
    """Writes `path`'s data (a file) or its entries (a folder) to the disk."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def atomic_json(path, data, indent=1):
    """`data` as a JSON file at `path`, written atomically (settings, benchmark reports)."""
    with atomic_path(path, ".json") as temporary, open(temporary, "w") as file:
        json.dump(data, file, indent=indent)


@contextmanager
def atomic_h5(path, in_memory=True):
    """An HDF5 file to fill. in_memory: built in memory and written to disk in one go at the
    end (twice its size in memory for a moment). HDF5 writing to disk itself crashed the process
    (a segmentation fault, h5py 3.16 with HDF5 2.0) when a write failed, a full disk say, before
    any cleanup could run; a plain write of the finished image fails with an OSError instead,
    and the partial file is removed. Files too large for memory are written by HDF5."""
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
