"""Inputs that are named pipes (or devices, or sockets) are refused unopened, in one line naming
them: opening a pipe would wait for a writer for ever, and /dev/zero never ends. The HDF5
inputs (checkpoint, dataset) are checked in test_checkpoint.py and test_dataset.py."""
import os
import sys

import pytest

from convnet import options
from convnet.data import fashion_mnist, ilsvrc
from convnet.errors import NOT_REGULAR
from convnet.figures import curves
from convnet.train import UsageError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tools"))
import compare_runs  # noqa: E402
import scaling  # noqa: E402


def test_a_config_that_is_a_pipe(tmp_path, pipe, capsys):
    fifo = pipe(tmp_path / "c.json")
    with pytest.raises(SystemExit) as exit_:
        options.parse(["-c", str(fifo)])
    (line,) = capsys.readouterr().err.splitlines()[-1:]
    assert exit_.value.code == 2 and f"--config {fifo}: cannot read it ({NOT_REGULAR})" in line


@pytest.mark.parametrize("name", ["epochs.csv", "log.jsonl"])
def test_a_runs_log_that_is_a_pipe(tmp_path, pipe, name):
    pipe(tmp_path / name)
    with pytest.raises(UsageError, match=f"run {tmp_path}: cannot read {name} "
                                         rf"\({NOT_REGULAR.replace('(', '.').replace(')', '.')}"):
        if name == "epochs.csv":
            curves.read_epochs(str(tmp_path))
        else:
            curves.read_log(str(tmp_path), ["step"])


def test_compare_runs_settings_that_are_a_pipe(tmp_path, pipe):
    fifo = pipe(tmp_path / "settings.json")
    with pytest.raises(UsageError) as refused:
        compare_runs.read_run(str(tmp_path))
    assert str(refused.value) == f"{fifo}: cannot read it ({NOT_REGULAR})"


def test_a_scaling_report_that_is_a_pipe(tmp_path, pipe, capsys):
    fifo = pipe(tmp_path / "report.json")
    with pytest.raises(SystemExit) as exit_:
        scaling.main(["--report", str(fifo)])
    (line,) = capsys.readouterr().err.splitlines()[-1:]
    assert exit_.value.code == 2 and f"--report {fifo}: cannot read it ({NOT_REGULAR})" in line


def test_a_label_table_that_is_a_pipe(tmp_path, pipe):
    fifo = pipe(tmp_path / "labels.tsv")
    with pytest.raises(ilsvrc.PrepareError) as refused:
        ilsvrc.read_rows(str(fifo), "validation labels", lambda fields: True)
    assert str(refused.value) == f"validation labels {fifo}: {NOT_REGULAR}"


def test_a_fashion_mnist_file_that_is_a_pipe(tmp_path, pipe):
    fifo = pipe(tmp_path / "train-images-idx3-ubyte.gz")
    with pytest.raises(ValueError) as refused:
        fashion_mnist.read_idx(str(fifo), 0x803, 3)
    assert str(refused.value).startswith(f"{fifo}: not a readable gzip file (")
    assert NOT_REGULAR in str(refused.value)
