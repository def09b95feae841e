"""Ctrl-C, and the signals that end a job (SIGTERM from a scheduler or `timeout`, SIGHUP from a
closed terminal), in the training command. Python's own Ctrl-C handler raises KeyboardInterrupt
wherever the interpreter is, and where that is a garbage collector's callback the exception is
printed and swallowed, so the run goes on; SIGTERM and SIGHUP would end it at once, between two
lines of a log. Here the first such signal asks the run to stop, and the training loop raises
Stopped (a KeyboardInterrupt) at its next step or evaluation batch (check); a second of the same
signal acts at once, as it would have.

In a job of several ranks the launcher passes the signal on to each (MPICH's mpiexec; SLURM at a
time limit), or it reaches one alone (a kill of one process). Each rank's requests() are summed
over the ranks, in the step's sum of its loss and in one sum per evaluation batch (check_ranks),
and check(summed) stops every rank at the same place: rank 0 saves the run there while the
others wait."""
import contextlib
import signal
import threading

# Each signal handled, with the handler it has where nothing changed it: one changed (ignored,
# as nohup and a script's background jobs do) is left as it is.
STOP_SIGNALS = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL,
                signal.SIGHUP: signal.SIG_DFL}

_requested = None   # the number of the signal that asked the run to stop


class Stopped(KeyboardInterrupt):
    """The run stopped at a signal's request: `number`, for the exit status 128 + number."""

    def __init__(self, number):
        super().__init__(signal.Signals(number).name)
        self.number = number


@contextlib.contextmanager
def signals_stop_at_next_step():
    """Within the block, a stop signal asks the run to stop. Only in the main thread (the one
    signals reach). The handlers before are restored after."""
    global _requested
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number, default in STOP_SIGNALS.items()
                if signal.getsignal(number) is default}

    def request(number, frame):
        global _requested
        _requested = number
        signal.signal(number, previous[number])   # a second: at once
    for number in previous:
        signal.signal(number, request)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        _requested = None


def requests():
    """This process's request to stop since the last check, as a count for each stop signal
    (in STOP_SIGNALS' order), to be summed over the ranks."""
    return [float(_requested == number) for number in STOP_SIGNALS]


def check(asked=None):
    """Raises Stopped where a stop signal has come since the last check: to this process, or,
    given `asked` (requests() summed over the ranks), to any rank of the job, which then stops
    every rank here. A request that came after `asked` was summed waits for the next check."""
    global _requested
    if asked is None:
        asked = requests()
    for number, count in zip(STOP_SIGNALS, asked):
        if count:
            _requested = None
            raise Stopped(number)


def check_ranks(replicas):
    """check() over the ranks of a job (convnet.replicas, which sums requests() over them): a
    stop asked of any stops every rank here. A collective: every rank must reach it."""
    check(replicas.sum(requests()))
