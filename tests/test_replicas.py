"""Data-parallel replicas without MPI: the parts of a batch (shards, dropout masks, loader
draws, gradients) put together equal the whole batch; the launch environment; the NCCL ids'
rendezvous over TCP on 127.0.0.1; the watchdog; the checks built on a sum over the ranks (run
here by threads standing in for ranks). The real MPI jobs are in test_replicas_mpi.py."""
import itertools
import os
import socket
import subprocess
import sys
import threading
import time
import types
import warnings

import numpy as np
import pytest

from convnet import alexnet, train
from convnet.backend import get_backend
from convnet.backend.reference import dropout_mask
from convnet.data import dataset
from convnet.data.loader import Loader
from convnet.network import Network
from convnet.replicas import nccl as nccl_engine
from convnet.replicas import rendezvous
from convnet.replicas.engines import Replicas, ReplicasDiverged
from convnet.replicas.launch import LaunchError, from_environment, rank_gpus
from convnet.replicas.shard import BatchPart, Shard
from convnet.replicas.watchdog import Watchdog
from targets import require_gpu


def parts(total, world):
    return [Shard(rank, world).part(total) for rank in range(world)]


# -- shards ------------------------------------------------------------------------------------
@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_shards_cover_a_batch_once_in_rank_order(world):
    for total in range(13):
        split = parts(total, world)
        assert split[0].start == 0 and split[-1].stop == total
        assert all(a.stop == b.start for a, b in zip(split, split[1:]))
        counts = [part.count for part in split]
        assert max(counts) - min(counts) <= 1
        if total % world == 0:
            assert counts == [total // world] * world


def test_bad_parts_are_refused():
    with pytest.raises(ValueError, match=r"do not lie in a batch of 4"):
        BatchPart(3, 2, 4)
    with pytest.raises(ValueError, match=r"images \[3, 2\) do not lie in a batch of 4"):
        BatchPart(3, -1, 4)   # a negative count: its share of the loss would be negative
    with pytest.raises(ValueError, match="rank 2 does not lie in a world of 2"):
        Shard(2, 2)


# -- dropout masks ----------------------------------------------------------------------------
def test_dropout_masks_of_the_parts_are_the_whole_batch_mask(rng):
    total, world = int(rng.integers(1, 40)), int(rng.integers(2, 6))
    shape, key = (int(rng.integers(1, 5)), int(rng.integers(1, 30))), int(rng.integers(2 ** 32))
    whole = dropout_mask(shape + (total,), 0.5, key)
    masks = [dropout_mask(shape + (part.count,), 0.5, key, start=part.start, total=total)
             for part in parts(total, world)]
    np.testing.assert_array_equal(np.concatenate(masks, axis=-1), whole)
    with pytest.raises(ValueError, match=r"images \[3, 5\) does not lie in a batch of 4"):
        dropout_mask((2, 2), 0.5, key, start=3, total=4)


# -- the loader ---------------------------------------------------------------------------------
@pytest.fixture
def stored(tmp_path, rng):
    path = tmp_path / "set.h5"
    dataset.write(path, name="t", train_images=rng.integers(0, 256, (45, 12, 12, 3), np.uint8),
                  train_labels=rng.integers(0, 3, 45),
                  val_images=rng.integers(0, 256, (11, 12, 12, 3), np.uint8),
                  val_labels=rng.integers(0, 3, 11), class_ids=list("abc"),
                  class_names=list("abc"))
    return path


@pytest.mark.parametrize("crop_draw", ["per-image", "per-chunk-32"])
@pytest.mark.parametrize("world", [2, 3])
def test_loader_parts_side_by_side_are_the_whole_batches(stored, crop_draw, world):
    data = Loader(stored, crop=9, seed=5, colour_noise_convention="sqrt-eigenvalue-div-1.1",
                  crop_draw=crop_draw)
    whole = [(images.copy(), labels, part) for images, labels, part
             in data.train_batches(1, 40, True)]            # batches of 40 and 5
    shards = [[(images.copy(), labels, part) for images, labels, part
               in data.train_batches(1, 40, True, Shard(rank, world))] for rank in range(world)]
    for index, (images, labels, part) in enumerate(whole):
        assert part == BatchPart.of_whole(len(labels))
        mine = [shard[index] for shard in shards]
        assert [p for _, _, p in mine] == parts(len(labels), world)
        np.testing.assert_array_equal(np.concatenate([i for i, _, _ in mine], axis=-1), images)
        np.testing.assert_array_equal(np.concatenate([l for _, l, _ in mine]), labels)
    for ten_crop in (False, True):
        whole = list(data.eval_batches(8, ten_crop))
        shards = [list(data.eval_batches(8, ten_crop, shard=Shard(rank, world)))
                  for rank in range(world)]
        for index, (views, labels) in enumerate(whole):
            np.testing.assert_array_equal(
                np.concatenate([shard[index][1] for shard in shards]), labels)
            for view, view_parts in zip(views, zip(*[shard[index][0] for shard in shards])):
                np.testing.assert_array_equal(np.concatenate(view_parts, axis=-1), view)


# -- the network ------------------------------------------------------------------------------
@pytest.mark.parametrize("world", [2, 4, 7])
def test_gradients_of_the_parts_sum_to_the_whole_batch_gradient(rng, world):
    """In float64: share-weighted part gradients (a part of 7 with no images among them) add
    up to the whole batch's, dropout included, and the shares' losses to its loss."""
    model = alexnet.build_model("2012-small28")
    network = Network(model, get_backend("reference"), dtype=np.float64,
                      seed=int(rng.integers(1000)))
    images = rng.normal(0, 50, model.image_shape + (6,))
    labels = rng.integers(0, model.geometry.classes, 6)
    whole_loss = network.forward(images, labels, train=True, step=3).loss
    whole = network.backward()
    loss, summed = 0.0, {key: 0.0 for key in whole}
    for part in parts(6, world):
        if part.count:
            mine = slice(part.start, part.stop)
            result = network.forward(images[..., mine], labels[mine], train=True, step=3,
                                     part=part)
            loss += result.loss * part.count / part.total
            grads = network.backward()
        else:
            grads = network.zero_gradients()
        summed = {key: summed[key] + grads[key] for key in whole}
    assert loss == pytest.approx(whole_loss, rel=1e-12)
    for key in whole:
        np.testing.assert_allclose(summed[key], whole[key], rtol=1e-9, atol=1e-13, err_msg=key)


def test_gradients_are_handed_over_per_layer_per_tower_in_one_order(rng):
    model = alexnet.build_model("2012-small28")
    network = Network(model, get_backend("reference"), seed=1)
    towers = {spec.key: spec.tower for spec in network.specs}
    handed = {"backward": [], "zero": []}

    def record(name):
        def gradients_ready(tower, grads):
            assert all(towers[key] == tower for key in grads)
            handed[name].extend(grads)
            return {key: grad.copy() for key, grad in grads.items()}
        return gradients_ready
    images = rng.normal(0, 50, model.image_shape + (2,)).astype(np.float32)
    network.forward(images, np.array([0, 1]), train=True)
    network.backward(gradients_ready=record("backward"))
    network.zero_gradients(gradients_ready=record("zero"))
    assert handed["backward"] == handed["zero"]
    assert sorted(handed["backward"]) == sorted(towers)
    assert handed["backward"][:3] == ["fc8/drop7a", "fc8/drop7b", "fc8/bias"]   # the last layer
    assert handed["backward"][-2:] == ["conv1a/data", "conv1a/bias"]            # the first


# -- checks built on the sum over the ranks -------------------------------------------------
class ThreadReplicas(Replicas):
    """A rank played by a thread: sum() meets the other threads at a barrier."""

    def __init__(self, rank, world, slots, barrier):
        self.rank, self.world, self.slots, self.barrier = rank, world, slots, barrier

    def sum(self, values):
        self.slots[self.rank] = np.array(values, np.float64)
        self.barrier.wait(timeout=10)
        total = np.sum(self.slots, axis=0)
        self.barrier.wait(timeout=10)
        return total


def on_ranks(world, work):
    """work(replicas) on `world` threads; each rank's result or raised exception."""
    slots, barrier = [None] * world, threading.Barrier(world)
    results = [None] * world

    def run(rank):
        try:
            results[rank] = work(ThreadReplicas(rank, world, slots, barrier))
        except Exception as error:
            results[rank] = error
    threads = [threading.Thread(target=run, args=(rank,)) for rank in range(world)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    return results


def test_gather_and_first_failure_agree_on_every_rank():
    assert on_ranks(3, lambda r: list(r.gather(10 * r.rank + 1))) == [[1, 11, 21]] * 3
    assert on_ranks(4, lambda r: r.first_failure(r.rank in (2, 3))) == [2] * 4
    assert on_ranks(2, lambda r: r.first_failure(False)) == [None] * 2


def test_check_same_fails_on_every_rank_naming_the_odd_one(rng):
    weights = rng.normal(size=(5, 4)).astype(np.float32)

    def check(replicas):
        mine = weights.copy()
        if replicas.rank == 2:
            mine[4, 3] = np.nextafter(mine[4, 3], np.float32(np.inf))   # one ulp
        replicas.check_same([weights, mine], "weights")
    results = on_ranks(3, check)
    assert all(isinstance(result, ReplicasDiverged) for result in results)
    assert str(results[0]) == "the replicas' weights differ: rank 2 disagrees with rank 0"
    results = on_ranks(4, lambda r: r.check_same([weights if r.rank % 2 == 0 else weights[::-1]],
                                                 "weights"))
    assert [str(result) for result in results] == \
        ["the replicas' weights differ: ranks 1, 3 disagree with rank 0"] * 4
    assert on_ranks(3, lambda r: r.check_same([weights], "weights")) == [None] * 3
    # the odd array first: every array is compared, not the last one alone
    results = on_ranks(3, lambda r: r.check_same([weights[::-1] if r.rank == 1 else weights,
                                                  weights], "weights"))
    assert [str(result) for result in results] == \
        ["the replicas' weights differ: rank 1 disagrees with rank 0"] * 3


# -- the launch environment -------------------------------------------------------------------
TORCHRUN = {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "node0",
            "MASTER_PORT": "29500"}


@pytest.mark.parametrize("environ,launcher,rank,world", [
    ({}, "single", 0, 1),
    ({"WORLD_SIZE": "1", "RANK": "0"}, "single", 0, 1),
    ({"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "8"}, "mpi", 3, 8),
    ({"PMI_RANK": "1", "PMI_SIZE": "2"}, "mpi", 1, 2),
    ({"PMIX_RANK": "5"}, "mpi", 5, None),
    ({"PMI_RANK": "0", "PMI_SIZE": "2", **TORCHRUN}, "mpi", 0, 2),   # MPI's word first
    (TORCHRUN, "torchrun", 1, 4),
    ({"SLURM_STEP_NUM_TASKS": "1", "SLURM_PROCID": "0"}, "single", 0, 1),
])
def test_launch_from_environment(environ, launcher, rank, world):
    launch = from_environment(environ)
    assert (launch.launcher, launch.rank, launch.world) == (launcher, rank, world)
    if launcher == "torchrun":
        assert launch.master == ("node0", 29500) and launch.local_rank == 1


def test_under_torchrun_the_rendezvous_takes_the_port_after_its_agent_store():
    launch = from_environment({**TORCHRUN, "TORCHELASTIC_USE_AGENT_STORE": "True"})
    assert launch.master == ("node0", 29501)


@pytest.mark.parametrize("environ,message", [
    ({"WORLD_SIZE": "2", "RANK": "0"}, "MASTER_ADDR, MASTER_PORT are not set"),
    ({**TORCHRUN, "MASTER_ADDR": ""}, "MASTER_ADDR is not set"),
    ({**TORCHRUN, "RANK": "4"}, "RANK=4 does not lie in WORLD_SIZE=4"),
    ({**TORCHRUN, "RANK": "0", "WORLD_SIZE": "0"}, "RANK=0 does not lie in WORLD_SIZE=0"),
    ({**TORCHRUN, "MASTER_PORT": "70000"}, "MASTER_PORT=70000 leaves no TCP port"),
    ({**TORCHRUN, "MASTER_PORT": "65535", "TORCHELASTIC_USE_AGENT_STORE": "True"},
     "MASTER_PORT=65535 leaves no TCP port"),
    ({**TORCHRUN, "WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not an integer"),
    ({"SLURM_STEP_NUM_TASKS": "4", "SLURM_PROCID": "2"}, "srun started 4 tasks without an MPI"),
    ({"SLURM_STEP_NUM_TASKS": "2", "SLURM_PROCID": "1"}, "srun started 2 tasks without an MPI"),
])
def test_bad_launch_environments(environ, message):
    with pytest.raises(LaunchError, match=message):
        from_environment(environ)


@pytest.mark.parametrize("gpus,local_rank,visible,expected", [
    ([0, 1], 0, 8, [0, 1]), ([0, 1], 3, 8, [6, 7]), ([0], 5, 8, [5]), ([0, 0], 2, 4, [2, 2]),
    ([1, 0], 1, 4, [3, 2]), ([0, 1], 3, 2, [0, 1]),     # each rank sees its own two GPUs
])
def test_each_local_rank_takes_its_own_gpus(gpus, local_rank, visible, expected):
    assert rank_gpus(gpus, local_rank, visible) == expected


def test_too_few_gpus_for_the_local_ranks():
    with pytest.raises(LaunchError, match=r"local rank 2 with --gpus 0,1 needs GPUs 4..5, but 4"):
        rank_gpus([0, 1], 2, 4)
    with pytest.raises(LaunchError, match=r"local rank 1 with --gpus 0,1 needs GPUs 2..3, but 3"):
        rank_gpus([0, 1], 1, 3)   # one GPU short: GPU 3 does not exist
    with pytest.raises(LaunchError, match="LOCAL_RANK is not set"):
        rank_gpus([0], None, 8)


ADDRESS = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


@pytest.mark.parametrize("environ,message", [
    ({"WORLD_SIZE": "2", "RANK": "0"}, "error: WORLD_SIZE=2 but MASTER_ADDR, MASTER_PORT are "
                                       "not set: a torchrun-style launch needs"),
    ({"WORLD_SIZE": "2", "RANK": "0", **ADDRESS},
     "error: the CPU backend's replicas sum their gradients through MPI: launch with mpirun"),
    ({"WORLD_SIZE": "2", "RANK": "1", **ADDRESS}, None),     # rank 0 reports it, not rank 1
])
def test_training_command_refuses_a_bad_launch(monkeypatch, capsys, tmp_path, environ, message):
    """Refused before any data is read, with exit code 2 and one line on rank 0."""
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert train.main(["--data-path", str(tmp_path / "none.h5"), "--gpus", "cpu"]) == 2
    output = capsys.readouterr()
    assert output.out == ""
    if message is None:
        assert output.err == ""
    else:
        assert len(output.err.strip().splitlines()) == 1 and output.err.startswith(message)


def test_a_torchrun_style_rank_that_cannot_start_says_why(monkeypatch, capsys, tmp_path):
    """Without MPI the ranks do not agree on their start: a rank other than 0 that cannot start
    says why itself, its line marked with its rank (rank 0 would only find it missing)."""
    for name, value in {"WORLD_SIZE": "2", "RANK": "1", **ADDRESS}.items():
        monkeypatch.setenv(name, value)
    assert train.main(["--data-path", str(tmp_path / "none.h5"), "--gpus", "cpu",
                       "--print-freq", "0"]) == 2
    assert capsys.readouterr().err == ("rank 1: python -m convnet.train: error: --print-freq must "
                                       "be at least 1; got 0 (see --help)\n")


# -- the rendezvous -----------------------------------------------------------------------------
def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rendezvous_on_threads(world, ranks, payload, timeout):
    port, results = free_port(), {}

    def run(rank):
        try:
            results[rank] = rendezvous.broadcast(payload if rank == 0 else None, rank=rank,
                                                 world=world, address="127.0.0.1", port=port,
                                                 timeout=timeout)
        except Exception as error:
            results[rank] = error
    threads = [threading.Thread(target=run, args=(rank,)) for rank in ranks]
    for thread in reversed(threads):   # the other ranks first: they must wait for rank 0
        thread.start()
        time.sleep(0.05)
    for thread in threads:
        thread.join(timeout=timeout + 10)
    return results, port


def test_rendezvous_hands_rank_0s_bytes_to_every_rank(rng):
    payload = rng.bytes(300)
    results, _ = rendezvous_on_threads(4, range(4), payload, timeout=10)
    assert results == {rank: payload for rank in range(4)}


def test_rendezvous_with_a_missing_rank_fails_in_time_on_every_rank():
    start = time.monotonic()
    results, port = rendezvous_on_threads(3, [0, 1], b"ids", timeout=1.0)
    assert time.monotonic() - start < 5
    assert isinstance(results[0], rendezvous.RendezvousError)
    assert str(results[0]) == f"rendezvous at 127.0.0.1:{port}: ranks 2 did not arrive within 1 s"
    assert isinstance(results[1], rendezvous.RendezvousError)
    assert "rank 1 waiting for the other ranks" in str(results[1])


def test_rendezvous_without_rank_0_fails_in_time():
    start = time.monotonic()
    results, port = rendezvous_on_threads(2, [1], None, timeout=0.5)
    assert time.monotonic() - start < 5
    assert str(results[1]).startswith(f"rendezvous at 127.0.0.1:{port}: rank 0 did not listen "
                                      f"within 0.5 s (rank 1")


def test_rendezvous_refuses_a_duplicate_rank():
    results, _ = rendezvous_on_threads(3, [0, 1, 1], b"ids", timeout=2)
    assert "a duplicate or a rank outside WORLD_SIZE=3 arrived (rank 1)" in str(results[0])


def test_rendezvous_names_an_address_that_does_not_resolve_at_once(monkeypatch):
    """Not retried as a rank 0 that does not listen yet: the launch's MASTER_ADDR is wrong.
    (The resolver's answer is given here, so that no DNS server is asked.)"""
    def unresolved(address, timeout):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    monkeypatch.setattr(rendezvous.socket, "create_connection", unresolved)
    start = time.monotonic()
    with pytest.raises(rendezvous.RendezvousError,
                       match="rendezvous at no-such-host.invalid:29500: cannot resolve MASTER_ADDR"):
        rendezvous.broadcast(None, rank=1, world=2, address="no-such-host.invalid", port=29500,
                             timeout=10)
    assert time.monotonic() - start < 5


def test_rendezvous_with_a_rank_0_that_closes_early_is_an_error_not_a_short_payload():
    """A rank 0 that ends after the others arrive and before it sends all the bytes."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(5)   # accept gives up if the rank never connects
        port = server.getsockname()[1]

        def serve_half():
            connection, _ = server.accept()
            with connection:
                connection.recv(4)
                connection.sendall((300).to_bytes(8, "big") + bytes(100))
        thread = threading.Thread(target=serve_half, daemon=True)
        thread.start()
        with pytest.raises(rendezvous.RendezvousError,
                           match=f"rendezvous at 127.0.0.1:{port}: rank 1 waiting for the other "
                                 f"ranks: the connection closed early"):
            rendezvous.broadcast(None, rank=1, world=2, address="127.0.0.1", port=port, timeout=5)
        thread.join(timeout=5)


def test_rendezvous_with_a_peer_that_connects_and_says_nothing_fails_in_time():
    """Rank 0 waits for a connection's rank bytes against the deadline too, not for ever."""
    port, results = free_port(), {}

    def serve():
        try:
            results[0] = rendezvous.broadcast(b"ids", rank=0, world=2, address="127.0.0.1",
                                              port=port, timeout=2.0)
        except Exception as error:
            results[0] = error
    thread = threading.Thread(target=serve, daemon=True)
    start = time.monotonic()
    thread.start()
    silent = None
    while silent is None and thread.is_alive():   # a connection that never sends its rank
        try:
            silent = socket.create_connection(("127.0.0.1", port), timeout=1)
        except ConnectionRefusedError:
            time.sleep(0.01)
    assert silent is not None, f"rank 0 ended before a connection: {results.get(0)!r}"
    with silent:
        thread.join(timeout=10)
    assert time.monotonic() - start < 6
    assert str(results[0]) == f"rendezvous at 127.0.0.1:{port}: a rank: timed out"


# -- NCCL's unique ids (the GPU engine's part that needs no GPU) ------------------------------
class FakeNccl:
    """cupy.cuda.nccl as far as the ids' exchange uses it: get_unique_id returns bytes from CuPy
    14 on, a tuple of 128 signed ints before, and NcclCommunicator takes only that type."""
    def __init__(self, rng, as_bytes, available=True):
        self.rng, self.as_bytes, self.available = rng, as_bytes, available

    def get_unique_id(self):
        values = self.rng.integers(0, 256, 128)
        return bytes(values.tolist()) if self.as_bytes else tuple((values - 128).tolist())


def install_cupy(monkeypatch, cupy):
    """`cupy`, its cuda and cuda.nccl as the modules the engine imports, for the test."""
    for name, module in (("cupy", cupy), ("cupy.cuda", cupy.cuda),
                         ("cupy.cuda.nccl", cupy.cuda.nccl)):
        monkeypatch.setitem(sys.modules, name, module)


@pytest.mark.parametrize("as_bytes", [True, False], ids=["cupy14-bytes", "cupy13-tuple"])
def test_nccl_unique_ids_reach_every_rank_as_the_type_cupy_gave(rng, as_bytes):
    nccl = FakeNccl(rng, as_bytes)
    port, results = free_port(), {}

    def run(rank):
        launch = from_environment({"RANK": str(rank), "WORLD_SIZE": "3", "LOCAL_RANK": str(rank),
                                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
        results[rank] = nccl_engine.exchange_unique_ids(launch, nccl, timeout=10)
    threads = [threading.Thread(target=run, args=(rank,)) for rank in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert [results[rank][:2] for rank in range(3)] == [(0, 3), (1, 3), (2, 3)]
    ids = [results[rank][2] for rank in range(3)]
    assert ids[0] == ids[1] == ids[2] and set(ids[0]) == set(alexnet.TOWERS)
    assert ids[0]["a"] != ids[0]["b"]
    assert all(type(unique_id) is (bytes if as_bytes else tuple) and len(unique_id) == 128
               for unique_id in ids[1].values())


def test_gpu_replicas_without_an_nccl_library_are_a_launch_error(rng, monkeypatch):
    """CuPy imports cupy.cuda.nccl without the library (available = False, no functions), so
    the check is on `available`, not on the import; CuPy's multi-line warning of it is not
    shown beside the one-line error."""
    nccl = FakeNccl(rng, as_bytes=True, available=False)

    class Cuda:   # CuPy 14 warns as it imports cupy.cuda.nccl without the library
        @property
        def nccl(self):
            warnings.warn("\nnccl library could not be loaded.\n\nReason: ImportError "
                          "(libnccl.so.2: cannot open shared object file)\n", UserWarning)
            return nccl
    cuda = Cuda()
    for name, module in (("cupy", types.SimpleNamespace(cuda=cuda)), ("cupy.cuda", cuda),
                         ("cupy.cuda.nccl", nccl)):   # install_cupy without reading cuda.nccl
        monkeypatch.setitem(sys.modules, name, module)
    launch = from_environment({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                               "MASTER_PORT": str(free_port())})
    warnings.simplefilter("error")   # the one-line error alone (pytest restores the filters)
    with pytest.raises(LaunchError, match=r"through NCCL, which CuPy cannot load here \(CuPy "
                                          r"found no NCCL library\): pip install nvidia-nccl"):
        nccl_engine.connect(launch, {"a": 0, "b": 0}, timeout=1)


class GpuArray(np.ndarray):
    """A NumPy array as CuPy's arrays look to the NCCL engine: data.ptr, get()."""
    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.__array_interface__["data"][0])

    def get(self):
        return np.array(self)


class StandInGpus:
    """CuPy and its NCCL module as far as the NCCL engine uses them, on NumPy, installed for
    the test: each call noted in `log` in order, with the GPU current at it. An all-reduce is
    queued on its stream and done when that stream is synchronized (so a value read before is
    the unsummed one, as on a GPU); it sums `world` replicas that all hold this rank's values
    (world × the values), on the array its pointer names, after checking its count and element
    type."""
    NCCL = types.SimpleNamespace(NCCL_SUM=0, NCCL_FLOAT32=7, NCCL_FLOAT64=8, available=True)
    CODES = {np.dtype(np.float32): NCCL.NCCL_FLOAT32, np.dtype(np.float64): NCCL.NCCL_FLOAT64}

    def __init__(self, world, monkeypatch):
        self.world, self.log, self.device, self.arrays, self.streams = world, [], None, {}, {}
        gpus, pointers = self, itertools.count(1000)

        class Device:
            def __init__(self, index):
                self.index = index

            def __enter__(self):
                self.outer, gpus.device = gpus.device, self.index

            def __exit__(self, *exception):
                gpus.device = self.outer

        class Stream:
            def __init__(self, non_blocking=False):
                assert non_blocking
                self.ptr, self.device, self.queued = next(pointers), gpus.device, []
                gpus.streams[self.ptr] = self
                gpus.log.append(("stream", self.device))

            def wait_event(self, event):
                gpus.log.append(("wait", self.ptr, event.device))

            def synchronize(self):
                for array in self.queued:
                    array *= gpus.world
                self.queued.clear()
                gpus.log.append(("synchronize", self.ptr))

        class Event:
            def __init__(self, disable_timing=False):
                assert disable_timing

            def record(self, stream=None):   # None: the current stream, the tower's compute one
                assert stream is None
                self.device = gpus.device
                gpus.log.append(("record", self.device))

        class NcclCommunicator:
            def __init__(self, ndev, comm_id, rank):
                self.device = gpus.device
                gpus.log.append(("communicator", self.device, ndev, comm_id, rank))

            def allReduce(self, send, receive, count, datatype, op, stream):
                array = gpus.arrays[receive]
                assert send == receive and count == array.size and op == nccl.NCCL_SUM
                assert datatype == StandInGpus.CODES[array.dtype]
                gpus.streams[stream].queued.append(array)
                gpus.log.append(("all-reduce", self.device, stream, array.dtype))

            def abort(self):
                gpus.log.append(("abort", self.device))

        def on_gpu(array, label):
            array = np.ascontiguousarray(array).view(GpuArray)
            gpus.arrays[array.data.ptr] = array
            gpus.log.append((label, gpus.device))
            return array

        def ascontiguousarray(array):   # CuPy's takes its own arrays only
            assert isinstance(array, GpuArray)
            return on_gpu(array, "contiguous")
        nccl = types.SimpleNamespace(NcclCommunicator=NcclCommunicator, **vars(self.NCCL))
        cuda = types.SimpleNamespace(Device=Device, Stream=Stream, Event=Event, nccl=nccl)
        install_cupy(monkeypatch, types.SimpleNamespace(
            cuda=cuda, ascontiguousarray=ascontiguousarray,
            asarray=lambda values: on_gpu(values, "to the GPU")))


@pytest.mark.parametrize("devices", [{"a": 0, "b": 1}, {"a": 2, "b": 2}],
                         ids=["a GPU per tower", "both towers on one GPU"])
def test_nccl_engine_on_stand_ins_sums_each_tower_on_its_gpu_after_its_compute(devices, rng,
                                                                             monkeypatch):
    """The NCCL engine's calls, which only a GPU with NCCL runs (the GPU test below, on one
    rank), in their order on stand-ins: a communicator per tower on its GPU, in the towers'
    order on every rank; one NCCL stream per GPU; the gradients made contiguous, then the NCCL
    stream waits for the compute stream's work (those copies included), then each is summed
    in place with its own element type, done once the host has waited for the NCCL streams; a
    sum of float64 values on tower a's GPU, read once summed."""
    gpus = StandInGpus(3, monkeypatch)
    ids = {"a": b"id of a", "b": b"id of b"}
    engine = nccl_engine.NcclReplicas("test", 1, 3, devices, ids, Watchdog(60, 1))
    a, b = devices["a"], devices["b"]
    assert gpus.log == ([("communicator", a, 3, ids["a"], 1), ("stream", a),
                         ("communicator", b, 3, ids["b"], 1)]
                        + ([("stream", b)] if b != a else []))
    assert [engine.streams[tower].device for tower in alexnet.TOWERS] == [a, b]
    stream = engine.streams["b"].ptr

    gpus.log.clear()
    weights = rng.normal(size=(6, 4)).astype(np.float32)
    bias = rng.normal(size=5)
    sent = {"w": weights.T.copy(), "bias": bias.copy()}   # summed in place where contiguous
    kept = engine.gradients_ready("b", {"w": weights.view(GpuArray).T,
                                        "bias": bias.view(GpuArray)})
    assert gpus.log == [("contiguous", b), ("contiguous", b), ("record", b), ("wait", stream, b),
                        ("all-reduce", b, stream, np.float32), ("all-reduce", b, stream,
                                                                np.float64)]
    assert kept["w"].flags.c_contiguous

    gpus.log.clear()
    engine.wait_gradients()
    assert gpus.log == [("synchronize", engine.streams[tower].ptr) for tower in alexnet.TOWERS]
    for key, value in sent.items():
        np.testing.assert_array_equal(kept[key].get(), 3 * value, err_msg=key)

    gpus.log.clear()
    total = engine.sum([1.5, -2.25])
    assert total.dtype == np.float64 and total.tolist() == [4.5, -6.75]
    stream = engine.streams["a"].ptr
    assert gpus.log == [("to the GPU", a), ("record", a), ("wait", stream, a),
                        ("all-reduce", a, stream, np.float64), ("synchronize", stream)]


@pytest.mark.parametrize("launcher", ["mpi", "torchrun"])
def test_nccl_engine_aborts_its_communicators_then_the_job(launcher, monkeypatch):
    """A rank that stops the job: its communicators aborted (a collective in flight would wait
    for ever), then the job ended as its launcher ends it: through MPI's abort, which alone
    makes an MPI launcher end the other ranks, or this process's exit, on which torchrun does."""
    gpus = StandInGpus(2, monkeypatch)
    engine = nccl_engine.NcclReplicas(launcher, 0, 2, {"a": 0, "b": 1}, {"a": b"a", "b": b"b"},
                                      Watchdog(60, 0))
    gpus.log.clear()

    def ended(how):
        def end(*arguments):
            gpus.log.append((how, *arguments))
            raise SystemExit
        return end
    monkeypatch.setattr(nccl_engine, "mpi_world", lambda: "world")
    monkeypatch.setattr(nccl_engine, "abort_job", ended("MPI abort"))
    monkeypatch.setattr(os, "_exit", ended("exit"))
    with pytest.raises(SystemExit):
        engine.abort(2)
    assert gpus.log == [("abort", 0), ("abort", 1),
                        ("MPI abort", "world", 2) if launcher == "mpi" else ("exit", 2)]


@pytest.mark.gpu
def test_nccl_engine_runs_its_calls_on_a_gpu(rng):
    """The NCCL engine's own calls on a real GPU, which nothing else runs: the communicators
    (one per tower, both on GPU 0), the all-reduces on the NCCL stream after the compute
    stream's work, the host's wait, and the sum of float64 values. A smoke test of the calls:
    a world of one rank leaves every value as it was, so each must come back unchanged, but a
    sum that does nothing, or a wrong element type, would pass too (several ranks need several
    GPUs)."""
    require_gpu()
    import cupy
    from cupy.cuda import nccl
    if not nccl.available:
        pytest.skip("GPU test skipped: CuPy found no NCCL library (pip install nvidia-nccl-cu13)")
    engine = nccl_engine.NcclReplicas("test", 0, 1, {"a": 0, "b": 0},
                                      {tower: nccl.get_unique_id() for tower in alexnet.TOWERS},
                                      Watchdog(60, 0))
    sent = {"conv1a/data": rng.normal(size=(3, 5, 5, 8)).astype(np.float32),
            "conv1a/bias": rng.normal(size=8)}
    kept = engine.gradients_ready("a", {key: cupy.asarray(value) for key, value in sent.items()})
    engine.wait_gradients()
    for key, value in sent.items():
        np.testing.assert_array_equal(kept[key].get(), value, err_msg=key)
    np.testing.assert_array_equal(engine.sum([1.5, -2.25, 1e300]), [1.5, -2.25, 1e300])


# -- the watchdog ---------------------------------------------------------------------------
def test_watchdog_stops_a_long_wait_and_only_that():
    expired = []
    watchdog = Watchdog(0.3, rank=4, expire=expired.append)
    for _ in range(3):
        with watchdog.waiting("a short wait"):
            time.sleep(0.05)
    time.sleep(0.5)                       # no wait in progress: nothing to stop
    assert expired == []
    with watchdog.waiting("summing the gradients"):
        time.sleep(1.0)
    assert expired == ["error: rank 4 waited 0.3 s for the other ranks (summing the gradients): "
                       "a rank has died or hangs; stopping"]


def test_watchdog_stops_a_wait_when_its_timeout_is_up():
    """At the timeout, not some multiple of it: the ranks left waiting are held no longer than
    the timeout they were given (0.5 s here; the margin is for a loaded machine's thread)."""
    stopped = []
    watchdog = Watchdog(0.5, rank=0, expire=lambda message: stopped.append(time.monotonic()))
    start = time.monotonic()
    with watchdog.waiting("a sum over the ranks"):
        while not stopped and time.monotonic() - start < 3:
            time.sleep(0.01)
    assert stopped and 0.5 <= stopped[0] - start < 0.95


@pytest.mark.parametrize("timeout", [0, -1])
def test_a_watchdog_without_a_positive_timeout_is_refused(timeout):
    """A timeout of 0 would stop every rank at its first wait."""
    with pytest.raises(ValueError, match=f"timeout must be positive; got {timeout}"):
        Watchdog(timeout, rank=0, expire=lambda message: None)


# A process whose main thread is stuck in a wait; end_job is MPI's Abort in a real job.
STUCK_RANK = """
import os, sys, time
from convnet.replicas import watchdog
watchdog.ABORT_GRACE = 0.5
def end_job(code):
    print(f"ending the job ({code})", flush=True)
    if sys.argv[1] == "ends":
        os._exit(7)
    time.sleep(3600)      # an abort that never returns
with watchdog.Watchdog(0.2, rank=1, end_job=end_job).waiting("a sum over the ranks"):
    time.sleep(3600)
"""


@pytest.mark.parametrize("abort,code", [("ends", 7), ("blocks", 1)])
def test_watchdog_ends_the_job_and_the_process_even_if_the_abort_blocks(abort, code):
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-c", STUCK_RANK, abort], capture_output=True,
                            text=True, timeout=60)
    assert time.monotonic() - start < 30
    assert result.returncode == code
    assert result.stderr.strip() == ("error: rank 1 waited 0.2 s for the other ranks (a sum "
                                     "over the ranks): a rank has died or hangs; stopping")
    assert result.stdout == "ending the job (1)\n"


def test_an_mpi_world_other_than_the_launchers_is_a_launch_error(monkeypatch):
    """mpi4py loading another MPI library than the launcher's sees a world of 1 in each of the
    N processes: each would train alone as rank 0 into the same folder."""
    from convnet.replicas import engines
    from convnet.replicas.launch import Launch
    monkeypatch.setattr(engines, "mpi_world", lambda: types.SimpleNamespace(Get_size=lambda: 1))
    with pytest.raises(LaunchError, match="the launcher started 4 ranks but MPI sees a world "
                                          "of 1: mpi4py is loading another MPI library"):
        engines.connect(Launch("mpi", 0, 4), timeout=1)
    assert isinstance(engines.connect(Launch("mpi", 0, 1), timeout=1), Replicas)
