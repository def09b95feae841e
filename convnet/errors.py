"""Errors as the project reports them: one line naming the input and what is wrong."""
import os
from contextlib import contextmanager


def counted(count, noun, plural=None) -> str:
    """"1 epoch", "6 epochs": a count and its noun in a message (plural: where not noun + s)."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def shown(name) -> str:
    """A file name as text that can be written anywhere (a figure, an HDF5 attribute): its
    bytes that are not UTF-8, which Python reads as surrogates, as U+FFFD."""
    return os.fsencode(name).decode(errors="replace")


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
