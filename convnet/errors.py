"""Errors as the project reports them: one line naming the input and what is wrong."""
import errno
import os
from contextlib import contextmanager

import h5py

# What a pipe, a socket or a device is called where a file was expected: an input that is one is
# never opened (a pipe would wait for a writer for ever, /dev/zero never ends).
NOT_REGULAR = "not a regular file (a pipe, a socket or a device)"


def counted(count, noun, plural=None) -> str:
    """"1 epoch", "6 epochs": a count and its noun in a message (plural: where not noun + s)."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def shown(name) -> str:
    """A file name as text that can be written anywhere (standard output under any locale, a
    figure, an HDF5 attribute): its bytes that are not UTF-8, which Python reads as surrogates,
    as \\xNN escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def not_a_regular_file(path) -> bool:
    """Whether `path` is something other than a regular file or a folder (or a link to one)."""
    return os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path)


def open_regular(path, mode="r", **options):
    """open(path, mode, ...) of an input file, an OSError naming it where it is a pipe, a socket
    or a device."""
    if not_a_regular_file(path):
        raise OSError(errno.EINVAL, NOT_REGULAR, path)
    return open(path, mode, **options)


def open_hdf5(path, kind, noun, folder_note):
    """The HDF5 file `path` open for reading, else one `kind` error naming it as `noun`
    ("checkpoint PATH: no such file"): missing, a folder (folder_note says what it is not), a
    pipe, a socket or a device, not HDF5."""
    if not_a_regular_file(path):
        raise kind(f"{noun} {path}: {NOT_REGULAR}")
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise kind(f"{noun} {path}: no such file") from None
    except IsADirectoryError:
        raise kind(f"{noun} {path}: a folder, {folder_note}") from None
    except OSError as error:
        raise kind(f"{noun} {path}: not a readable HDF5 file ({one_line(error)})") from None


def one_line(error) -> str:
    """An exception's message on one line: HDF5's messages, which h5py passes on, span several."""
    return " ".join(str(error).split())


@contextmanager
def damaged_file_errors(kind, message):
    """What h5py raises reading a damaged HDF5 file (a checksum, an array cut short or missing,
    bad JSON in an attribute, HDF5's own structures overwritten: OSError, KeyError, ValueError,
    RuntimeError) becomes one `kind` error, message(the error in one line)."""
    try:
        yield
    except (OSError, KeyError, ValueError, RuntimeError) as error:
        raise kind(message(one_line(error))) from None


@contextmanager
def failed_writes(kind, message):
    """A write that fails inside (a full disk, a folder in the file's place) becomes one `kind`
    error, message(the OSError): a write's own error names no file, or a temporary one."""
    try:
        yield
    except OSError as error:
        raise kind(message(error)) from None
