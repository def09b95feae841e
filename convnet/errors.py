"""Errors as the project reports them: one line naming the input and what is wrong."""


def one_line(error) -> str:
    """An exception's message on one line: HDF5's messages, which h5py passes on, span several."""
    return " ".join(str(error).split())
