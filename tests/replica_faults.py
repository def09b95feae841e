"""The training command with one rank made to fail, for tests/test_replicas_mpi.py:

    mpiexec -n N python tests/replica_faults.py FAULT RANK STEP [training flags]

FAULT happens on rank RANK in the middle of step STEP (inside the backward pass, after the
step's loss was summed, while the other ranks go on to sum the gradients):
  die      the process is killed (SIGKILL), as by the out-of-memory killer or a lost node
  hang     the process sleeps for an hour, as a rank stuck in a driver call would
  diverge  (STEP ignored) the rank's initial weights differ slightly from the others'
  ctrl-c   (RANK ignored) every rank is interrupted in that step, as by a second Ctrl-C passed
           on to each, which acts at once
  sigterm  the rank alone is sent SIGTERM, as by a kill of one process
  sigterm-validating  (STEP ignored) the rank alone is sent SIGTERM in its first evaluation batch
  sigterm-at-start    (STEP ignored) the rank alone is sent SIGTERM as the run starts, before
           anything is written
  no-weights  (STEP ignored) the rank finds no file at --weights, as a node that lacks its copy
  gpus     (STEP ignored) rank RANK sees two GPUs, through stand-ins for CuPy and the CUDA
           backend, and every other rank no CuPy: a job whose nodes differ, run with --gpus
"""
import os
import signal
import sys
import time
import types

from convnet import checkpoint, train, trainer
from convnet.backend import get_backend
from convnet.backend.cuda.devices import NO_CUPY
from convnet.network import Network
from convnet.replicas.launch import from_environment


FAULTS = ("die", "hang", "diverge", "ctrl-c", "sigterm", "sigterm-validating",
          "sigterm-at-start", "no-weights", "gpus")


def main():
    fault, rank, step, flags = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    if fault not in FAULTS:
        raise SystemExit(f"unknown fault {fault!r}; choose one of {FAULTS}")
    if fault == "gpus":
        see_gpus(from_environment().rank == rank)
    elif fault == "ctrl-c" or from_environment().rank == rank:
        inject(fault, step)
    return train.main(flags)


def see_gpus(seen):
    """Two GPUs where `seen` (a CuPy whose devices do nothing, the reference backend for the
    CUDA one), else no CuPy."""
    if not seen:
        train.cuda_devices = lambda: (0, NO_CUPY)
        return
    train.cuda_devices = lambda: (2, None)
    device = types.SimpleNamespace(use=lambda: None)
    sys.modules["cupy"] = types.SimpleNamespace(cuda=types.SimpleNamespace(Device=lambda _: device))
    train.get_backend = lambda name, **_: get_backend("reference")


def inject(fault, at_step):
    if fault == "no-weights":
        in_run = checkpoint.in_run
        checkpoint.in_run = lambda path: in_run(path) + ".absent"
        return
    if fault == "diverge":
        initialize = Network.__init__

        def perturbed(self, *args, **kwargs):
            initialize(self, *args, **kwargs)
            self.params["fc8/drop7a"][0, 0] += 1e-3
        Network.__init__ = perturbed
        return
    if fault == "sigterm-at-start":
        note = train.idle_device_note

        def signalled(*args):
            os.kill(os.getpid(), signal.SIGTERM)
            return note(*args)
        train.idle_device_note = signalled
        return
    if fault == "sigterm-validating":
        forward_views, calls = trainer.forward_views, iter(range(10 ** 9))

        def signalled(*args):
            if next(calls) == 0:
                os.kill(os.getpid(), signal.SIGTERM)
            return forward_views(*args)
        trainer.forward_views = signalled
        return
    backward, steps = Network.backward, iter(range(10 ** 9))

    def failing(self, **kwargs):
        if next(steps) == at_step:
            if fault == "die":
                os.kill(os.getpid(), signal.SIGKILL)
            if fault == "ctrl-c":
                raise KeyboardInterrupt
            if fault == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
                return backward(self, **kwargs)
            time.sleep(3600)
        return backward(self, **kwargs)
    Network.backward = failing


if __name__ == "__main__":
    sys.exit(main())
