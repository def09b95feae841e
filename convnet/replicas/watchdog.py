"""A bound on how long a rank waits for the others.

MPI launchers end the whole job when a rank dies (Open MPI's and MPICH's mpirun, srun), but
a rank that hangs, a launcher that does not watch its ranks, or NCCL waiting on a peer that is
gone would leave the others blocked for ever. Every wait on the other ranks runs inside
`Watchdog.waiting(what)`; a thread of its own ends the process, with a one-line message, when
one wait lasts longer than the timeout. The launcher then ends the remaining ranks, or their
own watchdogs do.

The timeout must exceed the longest honest wait: the slowest rank's lead in one step, rank 0
writing a checkpoint while the others wait at the next step.
"""
import os
import sys
import threading
import time
from contextlib import contextmanager

EXIT_CODE = 1


def _stop(message):
    print(message, file=sys.stderr, flush=True)
    os._exit(EXIT_CODE)   # not SystemExit: the main thread is blocked inside the wait


class Watchdog:
    def __init__(self, timeout, rank, expire=_stop):
        if timeout <= 0:
            raise ValueError(f"the watchdog's timeout must be positive; got {timeout}")
        self.timeout, self.rank, self.expire = timeout, rank, expire
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
