"""Errors as the project reports them: one line naming the input and what is wrong."""
import errno
import io
import math
import os
import re
import signal
import sys
from contextlib import contextmanager, suppress

import convnet

# What a pipe, a socket or a device is called where a file was expected: an input that is one is
# never opened (a pipe would wait for a writer for ever, /dev/zero never ends).
NOT_REGULAR = "not a regular file (a pipe, a socket or a device)"
# What would break a name's line, or drive the terminal it is shown on: the C0 and C1 controls
# (a newline, a tab, an escape sequence), DEL, and Unicode's line and paragraph separators; and
# what no stream or file can encode: surrogates, a non-UTF-8 name's bytes as Python reads them
# (U+DC80 to U+DCFF) or a lone one a JSON file wrote as \ud800.
UNSHOWABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
ESCAPED_BYTES = range(0xDC80, 0xDD00)   # surrogateescape's: \xNN, the byte they stand for
SHOWN_ESCAPE = re.compile(r"\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|[tnr])")   # shown()'s for a character


def counted(count, noun, plural=None) -> str:
    """"1 epoch", "6 epochs": a count and its noun in a message (plural: where not noun + s)."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def bytes_text(count, up=False) -> str:
    """A size in a message: whole MiB below a GiB, tenths of a GiB above; rounded up where it
    is space to free (`up`), so that freeing it is enough."""
    tenths = count >= 2**30
    figure = count / 2**30 * 10 if tenths else count / 2**20
    figure = math.ceil(figure) if up else round(figure)
    return f"{figure / 10:.1f} GiB" if tenths else f"{figure} MiB"


def shown(name) -> str:
    """A file name (str or bytes), or any text that holds names, as text that can be written
    anywhere (standard output, a figure, an HDF5 attribute, JSON) on one line: its bytes that
    are not UTF-8, which Python reads as surrogates, as \\xNN escapes, and its other UNSHOWABLE
    characters as Python writes them (\\n, \\t, \\x1b, \\ud800).

    Where it applies: to a name as it is put into a line that is printed, drawn or stored as
    text, and to the whole message of each error a command prints, which covers the names a
    message took in as they were. Shown text is shown as it is (shown(shown(x)) == shown(x)),
    so a name that meets both is escaped once."""
    def escape(match):
        code = ord(match[0])
        return f"\\x{code & 0xFF:02x}" if code in ESCAPED_BYTES else \
            match[0].encode("unicode_escape").decode("ascii")
    return UNSHOWABLE.sub(escape, os.fsdecode(name))


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
    import h5py   # here: the training flags' check (options) runs before the set-up installs it

    named = f"{noun} {shown(path)}"
    if not_a_regular_file(path):
        raise kind(f"{named}: {NOT_REGULAR}")
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise kind(f"{named}: no such file") from None
    except IsADirectoryError:
        raise kind(f"{named}: a folder, {folder_note}") from None
    except OSError as error:
        raise kind(f"{named}: not a readable HDF5 file ({one_line(error)})") from None


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


# -- standard output ------------------------------------------------------------------------------
class OutputClosed(Exception):
    """Standard output's reader has gone (| head): the command ends quietly, as a C tool does."""


class OutputFailed(Exception):
    """Standard output refused a write (a full disk): one line, naming it."""


class _CheckedOutput:
    """sys.stdout while a command runs. A write or a flush it refuses raises OutputClosed or
    OutputFailed, which no handler of a bad input file takes for its own (an OSError would be,
    and name no file); after that, what is written goes nowhere, the interpreter's flush at exit
    included, so nothing fails on it a second time."""

    def __init__(self, stream):
        self._stream = stream
        self._failed = False

    def write(self, text):
        return len(text) if self._failed else self._checked(self._stream.write, text)

    def flush(self):
        if not self._failed:
            self._checked(self._stream.flush)

    def _checked(self, operation, *args):
        try:
            return operation(*args)
        except OSError as error:
            self._failed = True
            _send_nowhere(self._stream)
            if error.errno == errno.EPIPE:
                raise OutputClosed() from None
            raise OutputFailed(f"standard output: {error.strerror or error}") from None

    def __getattr__(self, name):   # isatty, fileno, encoding...: the stream's own
        return getattr(self._stream, name)


def _send_nowhere(stream):
    """`stream`, which refused a write, sent to the null device: what it still holds is written
    there at exit, so that the interpreter's flush does not fail on it again, which would end
    the command with status 120 whatever it returned."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        return
    nowhere = os.open(os.devnull, os.O_WRONLY)
    os.dup2(nowhere, fd)
    os.close(nowhere)


def _tell(line):
    """`line` on standard error, where it can be written: a closed terminal's (SIGHUP), or one
    on a full disk, takes no line."""
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:
        _send_nowhere(sys.stderr)


PIPE_CLOSED_STATUS = 141   # 128 + SIGPIPE: what a shell reports of a C tool stopped by | head
INTERRUPTED_STATUS = 128 + signal.SIGINT


def stop_signal(stop):
    """The number of the signal a KeyboardInterrupt stands for: the one a Stopped names
    (convnet.stopping), else Ctrl-C's (a second Ctrl-C's is Python's own)."""
    return getattr(stop, "number", signal.SIGINT)


def interrupted(stop):
    """What a command stopped by a Ctrl-C (`stop`: its KeyboardInterrupt) says, where it has no
    word of its own for it."""
    return "interrupted: each file it wrote is whole or as it was"


def run_command(main, output_required=True, stopped=interrupted) -> int:
    """main()'s exit status, with standard output checked. Where a write to it fails (a full
    disk) the command stops, with one line on stderr naming standard output and exit status
    2; where its reader has gone (| head), quietly with status 141. The commands' files are
    written atomically: each is whole or as it was. A command started with standard output
    closed (>&-), which would lose what it prints, is refused, unless what it prints is only
    an account of what it writes to files (output_required False). A Ctrl-C that main() lets
    through (or training's SIGTERM and SIGHUP, convnet.stopping) is one line, stopped(the
    KeyboardInterrupt), and exit status 128 + its signal's number, as a shell reports of a C
    tool it stopped."""
    if signal.getsignal(signal.SIGINT) is convnet.stopped_while_loading:   # loaded now
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if sys.stdout is None and output_required:
        print("error: standard output is closed (>&-): the results would go nowhere",
              file=sys.stderr)
        return 2
    try:
        return main() if sys.stdout is None else _with_checked_output(main)
    except KeyboardInterrupt as stop:
        number = stop_signal(stop)
        # At a terminal the line starts after the echoed ^C, not beside it.
        _tell(("\n" if sys.stderr.isatty() else "") + stopped(stop))
        return 128 + number


def _with_checked_output(main) -> int:
    """main()'s exit status, standard output checked as run_command says."""
    stream = sys.stdout
    if isinstance(stream, io.TextIOWrapper):
        # What its encoding lacks (× under PYTHONIOENCODING=ascii) escaped, as standard error
        # writes it: not a UnicodeEncodeError once the work is done.
        stream.reconfigure(errors="backslashreplace")
    checked = sys.stdout = _CheckedOutput(stream)
    try:
        status = main()
        checked.flush()   # what a buffered stream held: its failure shows here
        return status
    except OutputClosed:
        return PIPE_CLOSED_STATUS
    except OutputFailed as error:
        _tell(f"error: {error}")   # standard error may have gone with it (a closed terminal)
        return 2
    finally:
        # On the way out of an exception too (Ctrl-C), where the exception is what is told.
        with suppress(OutputClosed, OutputFailed):
            checked.flush()
        sys.stdout = stream
