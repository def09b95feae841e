"""Ctrl-C in the training command. Python's own handler raises KeyboardInterrupt wherever the
interpreter is, and where that is a garbage collector's callback the exception is printed and
swallowed, so the run goes on. Here the first Ctrl-C asks the run to stop and the training loop
raises KeyboardInterrupt at its next step or evaluation batch (check); a second stops it at once,
as Python's handler would."""
import signal

_requested = False


def stop_at_next_step_on_ctrl_c():
    """Install the handler (from the main thread, in a process of its own)."""
    def request(number, frame):
        global _requested
        _requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)   # a second press: at once
    signal.signal(signal.SIGINT, request)


def check():
    """Raises KeyboardInterrupt where Ctrl-C has been pressed since the last check."""
    global _requested
    if _requested:
        _requested = False
        raise KeyboardInterrupt
