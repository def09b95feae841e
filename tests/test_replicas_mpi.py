"""The training command as real MPI jobs on the CPU (mpiexec -n 2, MPICH from PyPI, installed
by make setup): 2 ranks with global batch B end with the weights of 1 process with batch B; a
2-rank checkpoint resumes on 1 rank; a rank killed or hung mid-step, replicas that start
apart, a rank that cannot read the dataset and a batch that does not split end every rank with
a message, in bounded time; a stop signal that reaches one rank stops all at one step, saved.

The dataset is tiny and made here: 33 training and 9 validation images in batches of 8, so each
epoch and each evaluation end with a 1-image batch, of which rank 0's part is empty. Every job
runs under a timeout."""
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from convnet.data import dataset
from tiny_run import LOGS_ALONE, write_logs_alone

TIMEOUT = 120           # seconds for any one job: a hang fails the test instead of CI
FAULTS = Path(__file__).with_name("replica_faults.py")


def mpiexec():
    """The mpiexec beside this Python (MPICH's PyPI build, from make setup), else on PATH;
    with Open MPI as root, the flags it needs to run at all."""
    beside = Path(sys.executable).parent / "mpiexec"
    path = str(beside) if beside.exists() else shutil.which("mpiexec")
    if path is None:
        message = "no mpiexec: make setup installs MPICH from PyPI (pip install mpich)"
        if os.environ.get("CI"):
            pytest.fail(message)    # CI must run these, never skip them
        pytest.skip(message)
    version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    if "Open MPI" in version.stdout + version.stderr:
        return [path, "--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
    return [path]


def environment():
    """One BLAS thread per rank (two ranks share this machine's cores), and no launcher's
    variables from outside."""
    names = ("OMPI_", "PMI_", "PMIX_", "SLURM_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(names)}
    return dict(env, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")


def run(ranks, *flags, faults=None, cwd):
    """The training command on `ranks` MPI ranks (0: a plain process): (result, seconds)."""
    program = [str(FAULTS), *faults] if faults else ["-m", "convnet.train"]
    command = [sys.executable, *program, "--gpus", "cpu", *flags]
    if ranks:
        command = mpiexec() + ["-n", str(ranks)] + command
    start = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=TIMEOUT,
                            env=environment())
    return result, time.monotonic() - start


def without_aborts(stderr, status):
    """stderr without MPICH's report of each rank's abort with `status`, which its launcher may
    set down inside another process's line."""
    return re.sub(rf"Abort\({status}\) on node \d+ \(rank \d+ in comm \d+\): application "
                  rf"called MPI_Abort\(MPI_COMM_WORLD, {status}\) - process \d+\n?", "", stderr)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    rng = np.random.default_rng(7)
    folder = tmp_path_factory.mktemp("replicas")
    dataset.write(folder / "tiny.h5", name="tiny",
                  train_images=rng.integers(0, 256, (33, 32, 32, 3), np.uint8),
                  train_labels=rng.integers(0, 4, 33),
                  val_images=rng.integers(0, 256, (9, 32, 32, 3), np.uint8),
                  val_labels=rng.integers(0, 4, 9), class_ids=list("abcd"),
                  class_names=list("abcd"))
    return folder


def common(folder, output):
    """The runs' flags. A schedule that does not depend on --epochs (÷10 after epoch 1), so
    that a run stopped after epoch 1 and resumed repeats one run of 2 epochs."""
    return ["--data-path", str(folder / "tiny.h5"), "-b", "8", "--seed", "3", "--print-freq",
            "1", "--lr-schedule", "steps", "--lr-steps", "1", "--output-dir", str(folder / output)]


@pytest.fixture(scope="module")
def one_process(tiny):
    result, _ = run(0, *common(tiny, "one"), "--epochs", "2", cwd=tiny)
    assert result.returncode == 0, result.stderr
    return tiny / "one"


def weights(path):
    with h5py.File(path, "r") as file:
        found = {}
        file.visititems(lambda name, item: found.update(
            {name: item[()]} if isinstance(item, h5py.Dataset) else {}))
        return found, json.loads(file.attrs["state"])


def assert_same_run(folder, reference):
    """The weights and momentum within float32 reduction-order tolerance; the step's losses
    and the epochs' figures likewise; the same step counter."""
    ours, our_state = weights(folder / "last.h5")
    theirs, their_state = weights(reference / "last.h5")
    assert ours.keys() == theirs.keys() and len(ours) > 0
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-4, atol=1e-6, err_msg=key)
    assert (our_state["epoch"], our_state["step"]) == (their_state["epoch"], their_state["step"])
    logs = [[json.loads(line) for line in open(f / "log.jsonl")] for f in (folder, reference)]
    assert [e["step"] for e in logs[0]] == [e["step"] for e in logs[1]] == list(range(1, 11))
    np.testing.assert_allclose([e["loss"] for e in logs[0]], [e["loss"] for e in logs[1]],
                               rtol=1e-5)
    rows = [list(csv.DictReader(open(f / "epochs.csv"))) for f in (folder, reference)]
    for field in ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5"):
        np.testing.assert_allclose([float(r[field]) for r in rows[0]],
                                   [float(r[field]) for r in rows[1]], rtol=1e-5, err_msg=field)


def test_two_ranks_train_like_one_process(tiny, one_process):
    result, _ = run(2, *common(tiny, "two"), "--epochs", "2", cwd=tiny)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("training 2012-small28") == 1          # rank 0 alone prints
    assert "(cpu, 2 ranks)" in result.stdout
    assert json.loads((tiny / "two" / "settings.json").read_text())["ranks"] == 2
    assert_same_run(tiny / "two", one_process)


def test_a_two_rank_checkpoint_resumes_on_one_rank(tiny, one_process):
    first, _ = run(2, *common(tiny, "moved"), "--epochs", "1", cwd=tiny)
    assert first.returncode == 0, first.stderr
    second, _ = run(0, *common(tiny, "moved"), "--epochs", "2", "--resume", "auto", cwd=tiny)
    assert second.returncode == 0, second.stderr
    assert "at epoch 1, step 5" in second.stdout
    assert_same_run(tiny / "moved", one_process)


@pytest.mark.parametrize("fault,expected", [
    ("die", None),      # the launcher's own report (MPICH: "BAD TERMINATION ... Killed")
    ("hang", "error: rank 0 waited 3 s for the other ranks (summing the gradients): a rank has "
             "died or hangs; stopping"),
])
def test_a_rank_failing_mid_step_ends_every_rank_in_time(tiny, fault, expected):
    result, seconds = run(2, *common(tiny, f"fault-{fault}"), "--epochs", "2",
                          "--dist-timeout", "3", faults=[fault, "1", "2"], cwd=tiny)
    assert result.returncode != 0
    assert seconds < 60
    assert "validation" not in result.stdout                        # rank 0 did not go on
    assert "training 2012-small28" in result.stdout                 # it had started
    if expected:
        assert expected in result.stderr


def test_replicas_that_start_apart_are_refused(tiny):
    result, _ = run(2, *common(tiny, "apart"), faults=["diverge", "1", "0"], cwd=tiny)
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: the replicas' weights and momentum at the start "
                                     "differ: rank 1 disagrees with rank 0")


def run_two(rank_0_flags, rank_1_flags, *, cwd):
    """The training command on 2 ranks with flags of their own (MPMD: one command per rank,
    joined by ':'): (result, seconds)."""
    rank = [sys.executable, "-m", "convnet.train", "--gpus", "cpu"]
    command = mpiexec() + ["-n", "1", *rank, *rank_0_flags, ":", "-n", "1", *rank, *rank_1_flags]
    start = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=TIMEOUT,
                            env=environment())
    return result, time.monotonic() - start


def test_a_rank_that_cannot_read_the_dataset_stops_every_rank(tiny):
    """Rank 1 alone is given a missing file."""
    flags = ["-b", "8", "--output-dir", str(tiny / "unread")]
    result, _ = run_two(["--data-path", str(tiny / "tiny.h5"), *flags],
                        ["--data-path", str(tiny / "nowhere.h5"), *flags], cwd=tiny)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: rank 1: dataset {tiny / 'nowhere.h5'}: no such file"


def test_a_rank_that_cannot_start_stops_every_rank_at_once(tiny):
    """Rank 1 alone is given a config file its node lacks, which it finds before MPI's start:
    every rank ends with its one line, rather than rank 0 waiting for it inside MPI for ever
    (the watchdog's 600 s are not waited either)."""
    flags = [*common(tiny, "unstarted")]
    missing = tiny / "missing.json"
    result, seconds = run_two(flags, [*flags, "-c", str(missing)], cwd=tiny)
    assert result.returncode == 2 and seconds < 60
    assert result.stderr == (f"rank 1: python -m convnet.train: error: --config {missing}: "
                             f"cannot read it (No such file or directory) (see --help)\n")
    # Both ranks unable to start: the lowest one's word
    result, _ = run_two([*flags, "--print-freq", "0"], [*flags, "-c", str(missing)], cwd=tiny)
    assert result.returncode == 2
    assert result.stderr == ("python -m convnet.train: error: --print-freq must be at least 1; "
                             "got 0 (see --help)\n")
    assert not (tiny / "unstarted").exists()


@pytest.mark.parametrize("rank_1_flags, what", [
    (["-b", "16"], "settings (all but --gpus, --data-path, -j, -c, --dist-timeout)"),
    # compared before rank 1 alone finds that its batch does not split over the ranks
    (["-b", "7"], "settings (all but --gpus, --data-path, -j, -c, --dist-timeout)"),
    (["--data-path", "other.h5"], "datasets (name, sizes, labels, class ids and mean image)"),
])
def test_ranks_given_other_settings_or_data_are_refused(tiny, rank_1_flags, what):
    """Another batch size would sum gradients of batches of other sizes (MPI's "message
    truncated"); another dataset with the same labels, images of other data."""
    source = dataset.Dataset(tiny / "tiny.h5")
    everything = {split: np.arange(source.size(split)) for split in ("train", "val")}
    dataset.write(tiny / "other.h5", name="tiny", class_ids=source.class_ids,
                  class_names=source.class_names,
                  **{f"{split}_{kind}": values for split, indices in everything.items()
                     for kind, values in (("images", 255 - source.images(split, indices)),
                                          ("labels", source.labels(split)))})
    flags = common(tiny, "other")
    result, _ = run_two(flags, [*flags, *rank_1_flags], cwd=tiny)
    assert result.returncode == 2
    assert result.stderr == f"error: the replicas' {what} differ: rank 1 disagrees with rank 0\n"
    assert not (tiny / "other" / "log.jsonl").exists()


def test_a_rank_that_cannot_use_its_gpus_stops_every_rank_at_once(tiny):
    """Rank 1 alone lacks CuPy under --gpus 0: every rank ends with its line. Rank 0, which sees
    GPUs, asks MPI for its place on its node only where rank 1 asks it too, before either
    starts, not inside its start, where it waited for rank 1 for the watchdog's 600 s."""
    result, seconds = run(2, *common(tiny, "no-cupy"), "--gpus", "0", faults=["gpus", "0", "0"],
                          cwd=tiny)
    assert result.returncode == 2 and seconds < 60
    assert result.stderr.startswith("rank 1: error: --gpus 0: CuPy is not installed") \
        and result.stderr.count("\n") == 1, result.stderr
    assert not (tiny / "no-cupy").exists()


def test_ranks_that_would_train_to_other_epochs_are_refused(tiny, one_process):
    """A resumed run trains to its checkpoint's epochs unless --epochs is typed: rank 0 types
    it, rank 1 has the same value in its config; rank 0 would train an epoch while rank 1
    evaluated, until MPI found their sums of other sizes ("message truncated")."""
    config = tiny / "epochs-3.json"
    config.write_text('{"epochs": 3}')
    flags = [*common(tiny, "epochs-apart"), "--resume", str(one_process / "last.h5")]
    result, _ = run_two([*flags, "--epochs", "3"], [*flags, "-c", str(config)], cwd=tiny)
    assert result.returncode == 2
    assert result.stderr.endswith("error: the replicas' epochs to train to (a typed --epochs, "
                                  "else the checkpoint's) differ: rank 1 disagrees with rank 0\n")
    assert not (tiny / "epochs-apart" / "log.jsonl").exists()


def test_a_ctrl_c_passed_on_to_every_rank_ends_the_job_in_one_line(tiny):
    """A KeyboardInterrupt on every rank inside a step (a second Ctrl-C, which acts at once):
    rank 0's line, then only the MPI library's own report of each rank's abort (which ends
    the job wherever a rank is: one may be waiting inside a sum for another)."""
    result, _ = run(2, *common(tiny, "interrupted"), "--epochs", "2",
                    faults=["ctrl-c", "0", "2"], cwd=tiny)
    assert result.returncode == 130
    assert without_aborts(result.stderr, 130).strip() == (
        "interrupted before the run's first checkpoint; the same command with --resume starts "
        "it again")


@pytest.mark.parametrize("fault, saved, going_on", [
    ("sigterm", "at step 3 (batch 3 of 5 of epoch 1)", 2),   # sent in step 3: seen in step 4's sum
    ("sigterm", "at step 3 (batch 3 of 5 of epoch 1)", 0),   # gone on with in one process
    ("sigterm-validating", "at step 5 (batch 5 of 5 of epoch 1)", 2)])
def test_a_stop_sent_to_one_rank_stops_every_rank_at_one_step_saved_there(tiny, one_process,
                                                                           fault, saved, going_on):
    """A SIGTERM that reaches rank 1 alone, in a step or in a validation: every rank stops at the
    same place, rank 0 saves the run there, and each leaves with status 143, rank 0 alone saying
    so; two ranks, or one process, going on from it end as the run never stopped."""
    out = tiny / f"stopped-{fault}-{going_on}"
    flags = [*common(tiny, out.name), "--epochs", "2"]
    result, _ = run(2, *flags, faults=[fault, "1", "2"], cwd=tiny)
    assert result.returncode == 143
    assert result.stderr == (f"stopped by SIGTERM {saved}, which last.h5 now holds; --resume "
                             f"--output-dir {out} goes on from its last.h5 as if never stopped\n")
    resumed, _ = run(going_on, *flags, "--resume", cwd=tiny)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(out, one_process)


def test_a_stop_sent_to_one_rank_as_the_ranks_start_stops_both_before_either_writes(tiny):
    out = tiny / "stopped-at-start"
    result, _ = run(2, *common(tiny, out.name), "--epochs", "2",
                    faults=["sigterm-at-start", "1", "0"], cwd=tiny)
    assert result.returncode == 143
    assert result.stderr == ("stopped by SIGTERM as it started, before it changed any "
                             "checkpoint or log; the same command starts it again\n")
    assert not (out / "settings.json").exists()


def test_a_stop_sent_to_one_rank_in_an_evaluation_stops_both(tiny, one_process):
    result, _ = run(2, *common(tiny, "one"), "--resume", "--test-only",
                    faults=["sigterm-validating", "1", "0"], cwd=tiny)
    assert result.returncode == 143
    assert result.stderr == (
        "stopped by SIGTERM: --test-only writes nothing, so nothing was lost\n")


def test_a_rank_whose_weights_fail_leaves_the_logs_of_the_run(tiny, one_process):
    """--resume auto over logs alone starts again and cuts them, but only once every rank has
    loaded what it loads: rank 1, which finds no file at --weights, stops both ranks before
    rank 0, whose weights loaded, touches the logs."""
    out = tiny / "logs-alone"
    write_logs_alone(out)
    result, _ = run(2, *common(tiny, "logs-alone"), "--resume", "auto", "--weights",
                    str(one_process / "last.h5"), faults=["no-weights", "1", "0"], cwd=tiny)
    assert result.returncode == 2
    assert result.stderr.startswith("error: rank 1: ") and "last.h5.absent" in result.stderr, \
        result.stderr
    assert {name: (out / name).read_text() for name in LOGS_ALONE} == LOGS_ALONE


def test_a_batch_that_does_not_split_over_the_ranks_is_refused(tiny):
    result, _ = run(2, "--data-path", str(tiny / "tiny.h5"), "-b", "7", cwd=tiny)
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: --batch-size 7 is the global batch and must split "
                                     "evenly over the 2 ranks; use a multiple of 2")
