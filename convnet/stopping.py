"""Ctrl-C in the training command. Python's own handler raises KeyboardInterrupt wherever the
interpreter is, and where that is a garbage collector's callback the exception is printed and
swallowed, so the run goes on. Here the first Ctrl-C asks the run to stop and the training loop
raises KeyboardInterrupt at its next step or evaluation batch (check); a second stops it at once,
as Python's handler would."""
import contextlib
import signal
import threading

_requested = False


@contextlib.contextmanager
def ctrl_c_stops_at_next_step():
    """Within the block, Ctrl-C asks the run to stop. Only in the main thread (the one signals
    reach) and where SIGINT has Python's own handler: a process started with SIGINT ignored (in
    the background of a script) keeps ignoring it. The handler before is restored after."""
    global _requested
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler or \
            threading.current_thread() is not threading.main_thread():
        yield
        return

    def request(number, frame):
        global _requested
        _requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)   # a second press: at once
    signal.signal(signal.SIGINT, request)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _requested = False


def check():
    """Raises KeyboardInterrupt where Ctrl-C has been pressed since the last check."""
    global _requested
    if _requested:
        _requested = False
        raise KeyboardInterrupt
