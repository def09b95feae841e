"""convnet: AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012) on two towers.

The network is data (`convnet.alexnet`), placed on towers (`convnet.placement`), executed by a
backend (`convnet.backend`) through one op interface.
"""
import contextlib
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


# `python -m convnet.<command>` (Python names it "-m" while it finds the command's module): a
# Ctrl-C while the command's modules load (about half a second) would be a traceback.
# convnet.errors.run_command, which runs every command, puts Python's own handler back; a
# Ctrl-C that the command was started with ignored (a script's background job) stays so.
if sys.argv[:1] == ["-m"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, stopped_while_loading)
