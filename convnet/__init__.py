"""convnet: AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012) on two towers.

The network is data (`convnet.alexnet`), placed on towers (`convnet.placement`), executed by a
backend (`convnet.backend`) through one op interface.
"""
import contextlib
import importlib.util
import signal
import sys

__version__ = "0.1.0"


def stopped_while_loading(number, frame):
    """A Ctrl-C before a command runs: one line and exit status 130, as once it runs (the line
    where standard error can take it: closed, 2>&-, or gone with its terminal, it cannot)."""
    with contextlib.suppress(AttributeError, OSError, ValueError):
        sys.stderr.write(("\n" if sys.stderr.isatty() else "") +
                         "interrupted: before the work, of which nothing was written\n")
    raise SystemExit(128 + number)


def missing_package(kind, error, trace):
    """A command run by a Python without one of the packages it needs (the system's python,
    not the project's .venv): one line naming the package, the Python and what to run, where a
    traceback would end in ModuleNotFoundError; exit status 1, as for any error. A module
    missing from a package this Python has (a fault, not an install) keeps its traceback."""
    package = (getattr(error, "name", None) or "").partition(".")[0]
    if not issubclass(kind, ModuleNotFoundError) or not package or package == __name__ or \
            installed(package):
        sys.__excepthook__(kind, error, trace)
        return
    with contextlib.suppress(AttributeError, OSError, ValueError):
        sys.stderr.write(f"error: {error.name} is not installed for {sys.executable}: run the "
                         f"command with the project's Python, .venv/bin/python (make setup makes "
                         f"it), or pip install -e . for this one\n")


def installed(package) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):   # a package whose own loading fails: installed
        return True


# `python -m convnet.<command>` (Python names it "-m" while it finds the command's module): a
# Ctrl-C while the command's modules load (about half a second) would be a traceback.
# convnet.errors.run_command, which runs every command, puts Python's own handler back; a
# Ctrl-C that the command was started with ignored (a script's background job) stays so. A
# package this Python lacks: one line, for every command, wherever the import comes.
if sys.argv[:1] == ["-m"]:
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, stopped_while_loading)
    sys.excepthook = missing_package
