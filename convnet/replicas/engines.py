"""The communication the trainer needs from its replicas, and the engines that provide it.

Four primitives, which an engine provides:
  gradients_ready(tower, grads)   Network.backward hands over each layer's finished parameter
                                  gradients ({key: array}); the engine starts summing them over
                                  the replicas' copies of that tower, in place, while backward
                                  goes on with the layers below, and returns the arrays that
                                  will hold the sums
  wait_gradients()                returns once every started sum has finished
  sum(values)                     float64 values summed over the ranks, on the host (the step's
                                  loss and error counts, evaluation totals)
  abort(code)                     ends every rank of the job
and on these, for every engine: gather (one value per rank), first_failure and check_same.

Engines:
  Replicas      one process alone: every primitive is the identity (no MPI, no network)
  MpiReplicas   MPI through mpi4py over NumPy arrays (the CPU backend): one communicator per
                tower, duplicated from COMM_WORLD, with non-blocking all-reduces started during
                the backward pass and polled at each layer so that they progress under it
  NcclReplicas  NCCL through CuPy over GPU arrays (the CUDA backend): convnet/replicas/nccl.py
Every wait on the other ranks runs under the watchdog (convnet/replicas/watchdog.py).
"""
import functools
import sys
import time
import zlib

import numpy as np

from convnet.alexnet import TOWERS
from convnet.replicas.launch import LaunchError
from convnet.replicas.shard import Shard
from convnet.replicas.watchdog import Watchdog


OUTPUT_GRACE = 0.5   # seconds before an abort, for the launcher to pass on the last output


class ReplicasDiverged(RuntimeError):
    """The replicas' weights differ where they must be equal: a bug or a bad launch."""


class Replicas:
    """One process alone (world size 1); the base of every engine."""
    rank, world, launcher = 0, 1, "single"

    @property
    def shard(self) -> Shard:
        return Shard(self.rank, self.world)

    # -- the primitives ------------------------------------------------------------------------
    def gradients_ready(self, tower, grads: dict) -> dict:
        return grads

    def wait_gradients(self):
        pass

    def sum(self, values) -> np.ndarray:
        return np.array(values, np.float64)

    def abort(self, code):
        raise SystemExit(code)

    # -- built on them -------------------------------------------------------------------------
    def gather(self, value) -> np.ndarray:
        """Each rank's float `value`, indexed by rank, on every rank."""
        one_hot = np.zeros(self.world)
        one_hot[self.rank] = value
        return self.sum(one_hot)

    def first_failure(self, failed: bool) -> int | None:
        """The lowest rank that failed, the same on every rank; None if none did."""
        failures = np.flatnonzero(self.gather(float(failed)))
        return int(failures[0]) if failures.size else None

    def check_same(self, arrays, what):
        """Raise ReplicasDiverged on every rank unless `arrays` (NumPy) hold the same bytes on
        every rank: a CRC-32, exact in float64, compared across ranks."""
        if self.world == 1:
            return
        checksum = 0
        for array in arrays:
            checksum = zlib.crc32(np.ascontiguousarray(array).view(np.uint8), checksum)
        checksums = self.gather(checksum)
        differ = np.flatnonzero(checksums != checksums[0])
        if differ.size:
            ranks = ", ".join(map(str, differ))
            who = f"ranks {ranks} disagree" if differ.size > 1 else f"rank {ranks} disagrees"
            raise ReplicasDiverged(f"the replicas' {what} differ: {who} with rank 0")


class MpiReplicas(Replicas):
    launcher = "mpi"

    def __init__(self, comm, watchdog: Watchdog):
        from mpi4py import MPI
        self.mpi, self.comm, self.watchdog = MPI, comm, watchdog
        self.rank, self.world = comm.Get_rank(), comm.Get_size()
        self.tower_comms = {tower: comm.Dup() for tower in TOWERS}
        self.pending = []

    def gradients_ready(self, tower, grads):
        grads = {key: np.ascontiguousarray(grad) for key, grad in grads.items()}
        for grad in grads.values():
            self.pending.append(self.tower_comms[tower].Iallreduce(self.mpi.IN_PLACE, grad,
                                                                   self.mpi.SUM))
        # MPI libraries mostly progress a non-blocking collective inside MPI calls: poll once
        # per layer, so the sums move while backward computes the next layer.
        self.mpi.Request.Testall(self.pending)
        return grads

    def wait_gradients(self):
        with self.watchdog.waiting("summing the gradients"):
            self.mpi.Request.Waitall(self.pending)
        self.pending = []

    def sum(self, values):
        values = np.array(values, np.float64)
        with self.watchdog.waiting("a sum over the ranks"):
            self.comm.Allreduce(self.mpi.IN_PLACE, values, self.mpi.SUM)
        return values

    def abort(self, code):
        abort_job(self.comm, code)


def abort_job(comm, code):
    """MPI's abort of the whole job. The launcher stops passing on the ranks' output once the
    abort reaches it: what this rank wrote last (its one-line reason) gets the time to get
    through first."""
    sys.stdout.flush()
    sys.stderr.flush()
    time.sleep(OUTPUT_GRACE)
    comm.Abort(code)


def mpi_world():
    """MPI's COMM_WORLD, initializing MPI (importing mpi4py.MPI does)."""
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise LaunchError(f"this process was started by an MPI launcher but mpi4py cannot be "
                          f"loaded ({error}): pip install mpi4py (make setup installs it)") from None
    return MPI.COMM_WORLD


def node_rank(comm):
    """This rank's place among the ranks of its node (MPI's shared-memory split), for the GPUs
    it takes: a collective, reached by every rank before anything that may fail on one alone."""
    from mpi4py import MPI
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return node.Get_rank()
    finally:
        node.Free()


def connect(launch, *, timeout) -> Replicas:
    """The engine of the CPU backend for this launch; one process alone needs none. The CUDA
    backend connects through convnet.replicas.nccl.connect with its towers' GPUs."""
    if launch.launcher == "single":
        return Replicas()
    if launch.launcher != "mpi":
        raise LaunchError("the CPU backend's replicas sum their gradients through MPI: launch "
                          "with mpirun or srun (torchrun-style variables are for GPUs, "
                          "through NCCL)")
    comm = mpi_world()
    if launch.world is not None and comm.Get_size() != launch.world:
        raise LaunchError(f"the launcher started {launch.world} ranks but MPI sees a world of "
                          f"{comm.Get_size()}: mpi4py is loading another MPI library than the "
                          f"launcher's (use the mpirun of the MPI that mpi4py was built for)")
    if comm.Get_size() == 1:
        return Replicas()
    return MpiReplicas(comm, Watchdog(timeout, comm.Get_rank(),
                                      end_job=functools.partial(abort_job, comm)))
