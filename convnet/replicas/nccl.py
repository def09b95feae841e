"""The NCCL engine: the CUDA backend's replicas, through cupy.cuda.nccl over GPU arrays.

NOT YET RUN. This project's development machine and CI have no GPU; this module is written
against CuPy's NCCL API (NcclCommunicator(ndev, commId, rank), allReduce(sendbuf, recvbuf, count,
datatype, op, stream), get_unique_id: bytes from CuPy 14 on, a tuple of ints before), checked
against CuPy 14.2's signatures, and kept small so that it can be read as correct. What CI does
run is the part that needs no GPU: the unique ids' exchange (exchange_unique_ids, through
convnet/replicas/rendezvous.py or MPI's broadcast) and the GPU assignment
(convnet/replicas/launch.py rank_gpus); and NcclReplicas' calls, in their order, on stand-ins of
CuPy and its NCCL module (tests/test_replicas.py).

One communicator per tower, made on the GPU that holds this rank's copy of the tower, so tower
a's gradients travel only between the GPUs that hold tower a. The all-reduces run on an NCCL
stream of the tower's GPU (one per GPU), which waits (an event) for the tower's compute stream
(the current one when Network hands the gradients over, in the tower's context) to finish the
layer's backward pass: they overlap the backward pass of the layers below. wait_gradients()
waits on the host, under the watchdog, for the NCCL streams. sum() sums a few float64 values on
tower a's communicator and stream.
"""
import functools
import json
import os
import warnings

import numpy as np

from convnet.alexnet import TOWERS
from convnet.replicas import rendezvous
from convnet.replicas.engines import Replicas, abort_job, mpi_world
from convnet.replicas.launch import LaunchError
from convnet.replicas.watchdog import Watchdog


class NcclReplicas(Replicas):
    def __init__(self, launcher, rank, world, tower_devices, unique_ids, watchdog):
        import cupy
        from cupy.cuda import nccl
        self.cupy, self.nccl, self.watchdog = cupy, nccl, watchdog
        self.launcher, self.rank, self.world = launcher, rank, world
        self.devices = dict(tower_devices)
        self.types = {np.dtype(np.float32): nccl.NCCL_FLOAT32,
                      np.dtype(np.float64): nccl.NCCL_FLOAT64}
        self.comms, self.streams = {}, {}
        # One NCCL stream per GPU: two communicators' collectives on concurrent streams of one
        # GPU can deadlock (NCCL's guide); on one stream they run in issue order, the same on
        # every rank.
        device_streams = {}
        with watchdog.waiting("creating the NCCL communicators"):
            for tower in TOWERS:   # in the same order on every rank: creation is collective
                device = self.devices[tower]
                with cupy.cuda.Device(device):
                    self.comms[tower] = nccl.NcclCommunicator(world, unique_ids[tower], rank)
                    if device not in device_streams:
                        device_streams[device] = cupy.cuda.Stream(non_blocking=True)
                    self.streams[tower] = device_streams[device]

    def _all_reduce(self, tower, array):
        self.comms[tower].allReduce(array.data.ptr, array.data.ptr, array.size,
                                    self.types[array.dtype], self.nccl.NCCL_SUM,
                                    self.streams[tower].ptr)

    def _after_compute(self, tower):
        """Make the tower's stream wait for the work queued so far on the compute stream."""
        written = self.cupy.cuda.Event(disable_timing=True)
        written.record()   # on the current (compute) stream
        self.streams[tower].wait_event(written)

    def gradients_ready(self, tower, grads):
        with self.cupy.cuda.Device(self.devices[tower]):
            grads = {key: self.cupy.ascontiguousarray(grad) for key, grad in grads.items()}
            self._after_compute(tower)   # after the copies above, if any
            for grad in grads.values():
                self._all_reduce(tower, grad)
        return grads

    def wait_gradients(self):
        with self.watchdog.waiting("summing the gradients"):
            for tower in TOWERS:
                self.streams[tower].synchronize()

    def sum(self, values):
        with self.cupy.cuda.Device(self.devices["a"]):
            buffer = self.cupy.asarray(np.array(values, np.float64))
            self._after_compute("a")
            self._all_reduce("a", buffer)
            with self.watchdog.waiting("a sum over the ranks"):
                self.streams["a"].synchronize()
            return buffer.get()

    def abort(self, code):
        for comm in self.comms.values():
            comm.abort()
        if self.launcher == "mpi":   # an MPI launcher ends the other ranks on MPI's abort alone
            abort_job(mpi_world(), code)
        os._exit(code)   # torchrun ends the others as one ends; elsewhere their watchdog does


def connect(launch, tower_devices, *, timeout) -> Replicas:
    """The NCCL engine for this launch, {tower: GPU} this rank's towers' devices."""
    if launch.launcher == "single":
        return Replicas()
    try:
        # Without the library, CuPy's import warns in ten lines what the error below says in one.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from cupy.cuda import nccl
        problem = None if nccl.available else "CuPy found no NCCL library"
    except ImportError as error:
        problem = str(error)
    if problem:
        raise LaunchError(f"GPU replicas sum their gradients through NCCL, which CuPy cannot "
                          f"load here ({problem}): pip install nvidia-nccl-cu13") from None
    rank, world, ids, watchdog = exchange_unique_ids(launch, nccl, timeout=timeout)
    return NcclReplicas(launch.launcher, rank, world, tower_devices, ids, watchdog)


def exchange_unique_ids(launch, nccl, *, timeout):
    """(rank, world, {tower: NCCL unique id}, watchdog): rank 0 draws the ids (one per tower)
    and they reach the other ranks by MPI's broadcast where MPI launched the job, else through
    the rendezvous at MASTER_ADDR:MASTER_PORT, as JSON."""
    if launch.launcher == "mpi":
        comm = mpi_world()
        rank, world = comm.Get_rank(), comm.Get_size()
        watchdog = Watchdog(timeout, rank, end_job=functools.partial(abort_job, comm))
        with watchdog.waiting("receiving NCCL's unique ids"):
            ids = comm.bcast({tower: nccl.get_unique_id() for tower in TOWERS}
                             if rank == 0 else None, root=0)
    elif launch.launcher == "torchrun":
        rank, world = launch.rank, launch.world
        watchdog = Watchdog(timeout, rank)
        payload = json.dumps({tower: _id_as_json(nccl.get_unique_id()) for tower in TOWERS}
                             ).encode() if rank == 0 else None
        address, port = launch.master
        received = rendezvous.broadcast(payload, rank=rank, world=world, address=address,
                                        port=port, timeout=timeout)
        ids = {tower: _id_from_json(value) for tower, value in json.loads(received).items()}
    else:
        raise LaunchError(f"unknown launcher {launch.launcher!r}")
    return rank, world, ids, watchdog


# An id in JSON, and back in the type get_unique_id gave: CuPy 14's bytes as hex, an earlier
# CuPy's tuple of (signed) ints as a list. NcclCommunicator takes only that type.
def _id_as_json(unique_id):
    return unique_id.hex() if isinstance(unique_id, bytes) else list(unique_id)


def _id_from_json(value):
    return bytes.fromhex(value) if isinstance(value, str) else tuple(value)
