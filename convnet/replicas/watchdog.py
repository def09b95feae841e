"""A bound on how long a rank waits for the others.

MPI launchers end the whole job when a rank dies (Open MPI's and MPICH's mpirun, srun), but
a rank that hangs, a launcher that does not watch its ranks, or NCCL waiting on a peer that is
gone would leave the others blocked for ever. Every wait on the other ranks runs inside
`Watchdog.waiting(what)`; a thread of its own ends the process, with a one-line message, when
one wait lasts longer than the timeout. Under MPI it ends the job through MPI's abort, which
asks the launcher to end every rank (a rank that hangs outside any wait among them) rather than
relying on the launcher to notice one rank's exit; elsewhere the launcher ends the remaining
ranks, or their own watchdogs do.

The timeout must exceed the longest honest wait: the slowest rank's lead in one step, rank 0
writing a checkpoint while the others wait at the next step.
"""
import os
import sys
import threading
import time
from contextlib import contextmanager

EXIT_CODE = 1
ABORT_GRACE = 10    # seconds the job-wide abort may take before this process ends by itself


def _stop(message, end_job):
    print(message, file=sys.stderr, flush=True)
    if end_job is not None:
        # The abort runs beside the main thread, which is blocked inside the wait; should the
        # MPI library make it wait too, the timer still ends this process.
        threading.Timer(ABORT_GRACE, os._exit, (EXIT_CODE,)).start()
        end_job(EXIT_CODE)
    os._exit(EXIT_CODE)   # not SystemExit: the main thread is blocked inside the wait


class Watchdog:
    """`end_job(code)` ends every rank of the job (MPI's Abort), None where the launcher does;
    `expire(message)` replaces the stop, for tests."""
    def __init__(self, timeout, rank, end_job=None, expire=None):
        if timeout <= 0:
            raise ValueError(f"the watchdog's timeout must be positive; got {timeout}")
        self.timeout, self.rank = timeout, rank
        self.expire = expire or (lambda message: _stop(message, end_job))
        self._condition = threading.Condition()
        self._wait = None   # (what, deadline) of the wait in progress
        threading.Thread(target=self._watch, name="convnet-watchdog", daemon=True).start()

    @contextmanager
    def waiting(self, what):
        with self._condition:
            self._wait = (what, time.monotonic() + self.timeout)
            self._condition.notify()
        try:
            yield
        finally:
            with self._condition:
                self._wait = None

    def _watch(self):
        with self._condition:
            while True:
                if self._wait is None:
                    self._condition.wait()
                    continue
                what, deadline = self._wait
                left = deadline - time.monotonic()
                if left > 0:
                    self._condition.wait(left)
                    continue
                self._wait = None
                self.expire(f"error: rank {self.rank} waited {self.timeout:g} s for the other "
                            f"ranks ({what}): a rank has died or hangs; stopping")
