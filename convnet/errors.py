"""Errors as the project reports them: one line naming the input and what is wrong."""
from contextlib import contextmanager


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
