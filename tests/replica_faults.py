"""The training command with one rank made to fail, for tests/test_replicas_mpi.py:

    mpiexec -n N python tests/replica_faults.py FAULT RANK STEP [training flags]

FAULT happens on rank RANK in the middle of step STEP (inside the backward pass, after the
step's loss was summed, while the other ranks go on to sum the gradients):
  die      the process is killed (SIGKILL), as by the out-of-memory killer or a lost node
  hang     the process sleeps for an hour, as a rank stuck in a driver call would
  diverge  (STEP ignored) the rank's initial weights differ slightly from the others'
  ctrl-c   (RANK ignored) every rank is interrupted in that step, as by the launcher passing on
           a Ctrl-C to each
"""
import os
import signal
import sys
import time

from convnet import train
from convnet.network import Network
from convnet.replicas.launch import from_environment


FAULTS = ("die", "hang", "diverge", "ctrl-c")


def main():
    fault, rank, step, flags = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    if fault not in FAULTS:
        raise SystemExit(f"unknown fault {fault!r}; choose one of {FAULTS}")
    if fault == "ctrl-c" or from_environment().rank == rank:
        inject(fault, step)
    return train.main(flags)


def inject(fault, at_step):
    if fault == "diverge":
        initialize = Network.__init__

        def perturbed(self, *args, **kwargs):
            initialize(self, *args, **kwargs)
            self.params["fc8/drop7a"][0, 0] += 1e-3
        Network.__init__ = perturbed
        return
    backward, steps = Network.backward, iter(range(10 ** 9))

    def failing(self, **kwargs):
        if next(steps) == at_step:
            if fault == "die":
                os.kill(os.getpid(), signal.SIGKILL)
            if fault == "ctrl-c":
                raise KeyboardInterrupt
            time.sleep(3600)
        return backward(self, **kwargs)
    Network.backward = failing


if __name__ == "__main__":
    sys.exit(main())
