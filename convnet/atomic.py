"""Atomic HDF5 writes: build under a temporary name beside the target, rename over it at the end.

An interrupted or failed write leaves the previous file (if any) untouched and no file that looks
complete but is not: readers also require the `complete` attribute, set last.
"""
import os
import tempfile
from contextlib import contextmanager

import h5py


@contextmanager
def atomic_h5(path):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".partial-", suffix=".h5", dir=folder)
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)   # mkstemp's 0600 would outlive the rename
    try:
        with h5py.File(temporary, "w") as file:
            yield file
            file.attrs["complete"] = True
            file.flush()
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
