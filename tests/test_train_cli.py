"""The training command as a user runs it: a short real run with its files, resume, test-only,
and one-line errors with exit code 2 for bad flags, data and checkpoints."""
import contextlib
import errno
import fcntl
import importlib.util
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from argparse import Namespace
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from convnet import (alexnet, checkpoint, options, stopping, train as train_module,
                     trainer as trainer_module)
from convnet.backend.cuda.devices import NO_CUPY, cuda_devices
from convnet.data import dataset, fashion_mnist
from convnet.errors import run_command, stop_signal
from convnet.network import Network
from convnet.schedule import Rates, Schedule
from convnet.train import UsageError, check_fits, make_schedule, planned_epochs
from convnet.trainer import ALONE, TRAINS_WITH, Saved, Trainer
from fashion import INSTALLED, MISSING, needs_fashion_mnist
from tiny_run import LOGS_ALONE, write_logs_alone

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def train(*args, cwd):
    return subprocess.run([sys.executable, "-m", "convnet.train", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def small_real_set(tmp_path_factory):
    """512 training and 128 test images of the real Fashion-MNIST, in the prepared format."""
    if not INSTALLED:
        pytest.skip(MISSING)
    train_images, train_labels = fashion_mnist.load_split(fashion_mnist.DEBIAN_SOURCE, "train")
    val_images, val_labels = fashion_mnist.load_split(fashion_mnist.DEBIAN_SOURCE, "val")
    path = tmp_path_factory.mktemp("data") / "fm-small.h5"
    dataset.write(path, name="fm-small", train_images=train_images[:512],
                  train_labels=train_labels[:512], val_images=val_images[:128],
                  val_labels=val_labels[:128], class_ids=[str(i) for i in range(10)],
                  class_names=fashion_mnist.CLASS_NAMES)
    return path


@needs_fashion_mnist
def test_short_run_resume_and_test_only(small_real_set, tmp_path):
    out = tmp_path / "run"
    common = ["--data-path", str(small_real_set), "--output-dir", str(out), "-b", "64",
              "--print-freq", "2", "--seed", "3"]
    first = train(*common, "--epochs", "1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "validation (centre crop)" in first.stdout
    settings = json.loads((out / "settings.json").read_text())
    assert settings["model"] == "2012-small28" and settings["batch_size"] == 64
    assert settings["device"] == "cpu" and settings["conv_algorithm"] is None
    assert (settings["dataset"]["name"], settings["dataset"]["train_images"]) == ("fm-small", 512)
    assert {"last.h5", "best.h5", "log.jsonl", "epochs.csv"} <= set(os.listdir(out))

    # A new run into the folder would replace its checkpoints: refused, the run left as it was.
    kept = {name: (out / name).read_bytes() for name in os.listdir(out)}
    again = train(*common, "--epochs", "1", cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr == (f"error: --output-dir {out} holds a run already (last.h5, best.h5, "
                            f"epochs.csv, log.jsonl): add --resume to go on with it, or give "
                            f"another --output-dir\n")
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == kept

    # A log line cut short where the run was stopped: dropped when it resumes.
    with open(out / "log.jsonl", "a") as log:
        log.write('{"epoch": 2, "st')
    # Resumed without the first command's rate flags: the settings keep the run's schedule.
    second = train(*common, "--epochs", "2", "--resume", "auto", "--lr", "0.5", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "resumed from" in second.stdout and "epoch 1, step 8" in second.stdout
    assert len((out / "epochs.csv").read_text().splitlines()) == 3     # header + 2 epochs
    assert [json.loads(line)["epoch"] for line in (out / "log.jsonl").read_text().splitlines()] \
        == [1] * 4 + [2] * 4
    resumed = json.loads((out / "settings.json").read_text())
    assert resumed["epochs"] == 2 and resumed["resume"] == "auto"
    assert {key: resumed[key] for key in ("lr", "lr_schedule", "lr_steps", "schedule")} == \
        {"lr": 0.01, "lr_schedule": "2012", "lr_steps": [], "schedule": "2012"}

    # Nothing left to do: without --epochs, the run's own (its checkpoint records them), not
    # the model's default; --epochs below those done trains nothing either.
    finished = train(*common, "--resume", cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    assert "has done its 2 epochs (--epochs to train more)" in finished.stdout
    assert "validation (centre crop)" in finished.stdout
    assert len((out / "epochs.csv").read_text().splitlines()) == 3
    fewer = train(*common, "--resume", "--epochs", "1", cwd=tmp_path)
    assert fewer.returncode == 0, fewer.stderr
    assert "has done 2 epochs, which --epochs 1 does not exceed" in fewer.stdout
    assert len((out / "epochs.csv").read_text().splitlines()) == 3

    untrained = train(*common, "--test-only", cwd=tmp_path)
    assert untrained.returncode == 0, untrained.stderr
    assert "evaluates the initial weights" in untrained.stderr

    settings_before = (out / "settings.json").read_text()
    check = train(*common, "--resume", str(out / "last.h5"), "--test-only", "--ten-crop",
                  cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert "validation (10 views)" in check.stdout
    assert (out / "settings.json").read_text() == settings_before   # the run's own settings


@pytest.mark.parametrize("flags,message", [
    (["--model", "vgg"], "unknown model 'vgg'"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--lr", "-1"], "--lr must be positive"),
    (["--gpus", "0;1"], "--gpus must be cpu or"),
    (["--lr-schedule", "steps"], "needs --lr-steps"),
    (["--conv-algorithm", "fft"], "argument --conv-algorithm: invalid choice: 'fft'"),
    (["--ablation", "no-relu"], "argument --ablation: invalid choice: 'no-relu'"),
    (["--model", "2012+no-norm+no-norm"], "ablation 'no-norm' named twice"),
    (["--model", "2012+no-norm", "--ablation", "no-norm"],
     "--ablation no-norm: --model 2012+no-norm has it already"),
    (["--ablation", "no-norm", "tanh", "no-norm"], "--ablation no-norm: named twice"),
    (["--weights", "a.h5", "--resume", "b.h5"], "--weights starts a new run and --resume PATH"),
])
def test_bad_flags(flags, message, tmp_path):
    result = train(*flags, cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert message in line


@pytest.mark.parametrize("flags,message", [
    (["--seed", "-1"], "--seed must not be negative; got -1"),
    (["--gpus", "²"], "--gpus must be cpu or one or two GPU indices"),
    (["-j", str(2 ** 32)], "--workers must be at most 1024"),
    (["--lr", "nan"], "--lr must be a finite number; got nan"),
    (["--wd", "inf"], "--wd must be a finite number; got inf"),
    (["--momentum", "nan"], "--momentum must be a finite number"),
    (["--dist-timeout", "nan"], "--dist-timeout must be a finite number"),
    (["--lr-schedule", "steps", "--lr-steps", "0"], "each at least 1; got 0"),
    (["--lr-schedule", "steps", "--lr-steps", "20", "1", "20"],
     "--lr-steps 20 1 20: epoch 20 named twice"),
    (["--output-dir", ""], "--output-dir must name a file or folder; got ''"),
    (["--resume", ""], "--resume must name a file or folder"),
    (["--weights", ""], "--weights must name a file or folder"),
    (["--data-path", ""], "--data-path must name a file or folder"),
    (["-c", ""], "--config must name a file or folder; got ''"),
    (["--momentum", "1"], "--momentum must be in [0, 1); got 1.0"),
    (["--wd", "-0.0005"], "--wd must not be negative; got -0.0005"),
    (["--dist-timeout", "0"], "--dist-timeout must be positive; got 0.0"),
    (["--dist-timeout", "1e10"], f"--dist-timeout must be at most {threading.TIMEOUT_MAX:.0f} s, "
                                 f"the longest wait a thread can make; got 1e+10"),
    (["--print-freq", "0"], "--print-freq must be at least 1; got 0"),
    (["--gpus", "0,1,2"], "--gpus must be cpu or one or two GPU indices like 0,1; got '0,1,2'"),
])
def test_values_that_cannot_work_are_refused_by_the_parser(flags, message, capsys):
    """In this process (no run starts): exit code 2 and one line."""
    from convnet import options
    with pytest.raises(SystemExit) as refused:
        options.parse(flags)
    assert refused.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert message in line


def test_an_output_named_in_capitals_has_the_suffix(tmp_path, capsys):
    """-o RESULTS.JSON is a JSON file: the suffix is matched whatever its case."""
    p = options.Parser(prog="python -m convnet.ensemble")
    options.check_output_flag(p, Namespace(output=str(tmp_path / "RESULTS.JSON")), ".json")
    with pytest.raises(SystemExit) as refused:
        options.check_output_flag(p, Namespace(output=str(tmp_path / "results.h5")), ".json")
    assert refused.value.code == 2
    assert "the output is a JSON file; give a name ending in .json" in capsys.readouterr().err


def test_an_ablation_is_trained_recorded_and_rebuilt(tmp_path, tiny_set):
    """--ablation adds to the model's name, which the settings and checkpoints record, so
    that evaluation rebuilds the ablated network and a run of another model refuses them."""
    from convnet import checkpoint
    from convnet.backend import get_backend
    out = tmp_path / "run"
    common = ["--data-path", str(tiny_set), "--output-dir", str(out), "-b", "4"]
    run = train(*common, "--ablation", "no-crop-flip", "one-tower", "no-norm", "--epochs", "1",
                cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    name = "2012-small28+no-norm+one-tower+no-crop-flip"
    assert f"training {name} on" in run.stdout
    assert json.loads((out / "settings.json").read_text())["model"] == name
    assert checkpoint.load_network(out / "last.h5", get_backend("reference"))[0].model.name == name
    check = train(*common, "--model", "2012-small28+one-tower", "--ablation", "no-norm",
                  "no-crop-flip", "--resume", "--test-only", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    other = train(*common, "--resume", cwd=tmp_path)
    assert other.returncode == 2
    assert other.stderr.strip() == (f"error: checkpoint {out / 'last.h5'}: written for model "
                                    f"{name}, not 2012-small28: give --model {name} to load it")
    hinted = train(*common, "--model", name, "--resume", "--test-only", cwd=tmp_path)
    assert hinted.returncode == 0, hinted.stderr
    # where the run names ablations, the hint's --model is the whole name, without them
    ablated = train(*common, "--model", "2012-small28+one-tower", "--ablation", "no-norm",
                    "--resume", "--test-only", cwd=tmp_path)
    assert ablated.stderr.strip() == (
        f"error: checkpoint {out / 'last.h5'}: written for model {name}, not "
        f"2012-small28+no-norm+one-tower: give --model {name} without --ablation to load it")


def test_resuming_on_a_dataset_of_another_class_count_names_both(tmp_path, tiny_set, rng):
    """The checkpoint's fc8 holds 2 classes, the dataset 3: one line naming the checkpoint, the
    dataset and both counts, not an array shape."""
    out = tmp_path / "run"
    first = train("--data-path", str(tiny_set), "--output-dir", str(out), "-b", "4", "--epochs",
                  "1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    three = tmp_path / "three.h5"
    dataset.write(three, name="t3", train_images=rng.integers(0, 256, (6, 32, 32, 3), np.uint8),
                  train_labels=np.arange(6) % 3, val_images=np.zeros((3, 32, 32, 3), np.uint8),
                  val_labels=np.arange(3), class_ids=list("abc"), class_names=list("abc"))
    for flags in ([], ["--test-only"]):
        resumed = train("--data-path", str(three), "--output-dir", str(out), "-b", "4",
                        "--epochs", "2", "--resume", *flags, cwd=tmp_path)
        assert resumed.returncode == 2
        assert resumed.stderr == (f"error: checkpoint {out / 'last.h5'} classifies 2 classes but "
                                  f"dataset {three} has 3\n")


def test_a_device_left_idle_by_a_one_tower_model_is_named():
    from convnet import alexnet
    from convnet.backend import get_backend
    from convnet.placement import Placement
    from convnet.train import idle_device_note
    per_tower = Placement({"a": get_backend("emulator"), "b": get_backend("emulator")})
    one_tower = alexnet.build_model("2012-small28+one-tower")
    assert idle_device_note(one_tower, per_tower) == (
        "note: 2012-small28+one-tower has no tower b, so its device does nothing in this run; "
        "--gpus with one index runs the model on one GPU")
    assert idle_device_note(alexnet.build_model("2012-small28"), per_tower) is None
    assert idle_device_note(one_tower, Placement(get_backend("emulator"))) is None


def test_a_model_fits_a_dataset_stored_at_its_own_size():
    """A crop as large as the stored images is the whole image (no room to move): it fits;
    one pixel larger does not."""
    model = alexnet.build_model("2012-small28")
    check_fits(model, SimpleNamespace(image_size=28, classes=10, path="d.h5"), "--model m")
    with pytest.raises(UsageError, match="--model m needs 28-pixel crops but d.h5 holds "
                                         "27-pixel images"):
        check_fits(model, SimpleNamespace(image_size=27, classes=10, path="d.h5"), "--model m")


@pytest.mark.parametrize("settings,message", [
    ('{"lr_steps": 5}', "lr_steps must be a list of values; got 5"),
    ('{"resume": [1]}', "resume must be true, false or a string; got [1]"),
    ('{"ten_crop": "yes"}', 'ten_crop must be true or false; got "yes"'),
    ('{"lr_schedule": "bogus"}', "--config c.json: error: argument --lr-schedule: invalid choice"),
    ('{"epochs": 2.5}', "--config c.json: error: argument --epochs: invalid int value: '2.5'"),
    ('{"epochs": 0}', "--epochs must be at least 1"),
    ('{"seed": -1}', "--config c.json: error: --seed must not be negative"),
    ('{"data_path": true}', "data_path must be a number or a string; got true"),
])
def test_bad_config_settings_are_checked_as_flags_are(settings, message, tmp_path):
    (tmp_path / "c.json").write_text(settings)
    result = train("-c", "c.json", cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert message in line


def test_missing_dataset(tmp_path):
    result = train("--data-path", str(tmp_path / "none.h5"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: dataset {tmp_path / 'none.h5'}: no such file"


def test_bad_config(tmp_path):
    (tmp_path / "c.json").write_text('{"epochs": 3, "colour": true, "epoch": 2}')
    result = train("-c", str(tmp_path / "c.json"), cwd=tmp_path)
    assert result.returncode == 2 and "unknown settings colour, epoch (did you mean epochs?)" \
        in result.stderr
    (tmp_path / "d.json").write_text("{not json")
    result = train("-c", str(tmp_path / "d.json"), cwd=tmp_path)
    assert result.returncode == 2 and "cannot read it as JSON" in result.stderr


def test_config_is_overridden_by_flags(tmp_path, capsys):
    from convnet import options
    (tmp_path / "c.json").write_text('{"epochs": 3, "lr": 0.05, "lr_schedule": "steps", '
                                     '"lr_steps": [1, 2], "ten_crop": true, "gpus": 0, "resume": null, '
                                     '"ablation": []}')
    args = options.parse(["-c", str(tmp_path / "c.json"), "--lr", "0.02", "--lr-steps", "2"])
    assert (args.epochs, args.lr, args.lr_steps, args.ten_crop, args.gpus, args.resume,
            args.ablation) == (3, 0.02, [2], True, "0", None, [])
    # a switch the config sets is switched off by its --no- form, which is no key of its own
    assert not options.parse(["-c", str(tmp_path / "c.json"), "--no-ten-crop"]).ten_crop
    (tmp_path / "s.json").write_text('{"test_only": true, "ten_crop": false}')
    args = options.parse(["-c", str(tmp_path / "s.json")])
    assert (args.test_only, args.ten_crop) == (True, False)
    assert not options.parse(["-c", str(tmp_path / "s.json"), "--no-test-only"]).test_only
    for text, message in (('{"no_ten_crop": true}', "unknown setting no_ten_crop"),
                          ('{"epochs": 1, "epochs": 2}', "cannot read it as JSON ('epochs' is "
                                                         "set twice)"),
                          (" " * (1 << 20) + "{}", "cannot read it as JSON (over 1 MiB: not a "
                                                   "config)")):
        (tmp_path / "x.json").write_text(text)
        with pytest.raises(SystemExit):
            options.parse(["-c", str(tmp_path / "x.json")])
        assert message in capsys.readouterr().err, text[:40]
    # a flag's every long name is a key: wd or weight_decay, not both
    (tmp_path / "w.json").write_text('{"weight_decay": 0.001, "batch_size": 64}')
    args = options.parse(["-c", str(tmp_path / "w.json")])
    assert (args.wd, args.batch_size) == (0.001, 64)
    (tmp_path / "w.json").write_text('{"weight_decay": 0.001, "wd": 0.001}')
    with pytest.raises(SystemExit):
        options.parse(["-c", str(tmp_path / "w.json")])
    assert "wd and weight_decay name one setting" in capsys.readouterr().err
    # --resume alone as true (auto), or with its value; false leaves it out
    for resume, expected in ((True, "auto"), (False, None), ("runs/x/best.h5", "runs/x/best.h5")):
        (tmp_path / "r.json").write_text(json.dumps({"resume": resume}))
        assert options.parse(["-c", str(tmp_path / "r.json")]).resume == expected
    # a value that starts with "-" is that value, as --output-dir=-run is on the command line
    (tmp_path / "d.json").write_text('{"output_dir": "-run", "resume": "--test-only"}')
    args = options.parse(["-c", str(tmp_path / "d.json")])
    assert (args.output_dir, args.resume, args.test_only) == ("-run", "--test-only", False)


def test_configs_given_again_each_override_those_before(tmp_path, capsys):
    """-c a.json -c b.json: b's settings win where both set one (null: the default; false: a
    switch off), a's stand where b is silent, and flags win over both; each file's errors name
    it."""
    from convnet import options
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text('{"epochs": 2, "batch_size": 16, "seed": 5, "ten_crop": true, "wd": 0.001}')
    b.write_text('{"epochs": 1, "seed": null, "ten_crop": false, "weight_decay": 0.002}')
    args = options.parse(["-c", str(a), "-c", str(b)])
    assert (args.epochs, args.batch_size, args.seed, args.ten_crop, args.wd) == \
        (1, 16, 0, False, 0.002)
    assert args.config == [str(a), str(b)]
    args = options.parse(["-c", str(b), "-c", str(a), "--epochs", "4"])
    assert (args.epochs, args.batch_size, args.seed, args.ten_crop, args.wd) == \
        (4, 16, 5, True, 0.001)
    b.write_text('{"epochs": 0}')
    with pytest.raises(SystemExit) as exit_:
        options.parse(["-c", str(a), "-c", str(b)])
    assert exit_.value.code == 2
    assert f"--config {b}: error: --epochs must be at least 1; got 0" in capsys.readouterr().err


@pytest.mark.parametrize("config", sorted(os.listdir(CONFIGS)))
def test_the_shipped_configs_pass_the_checks(config):
    from convnet import options
    args = options.parse(["-c", os.path.join(CONFIGS, config)])
    assert args.epochs and all(step < args.epochs for step in args.lr_steps)


def test_workers_sets_the_loaders_threads(tiny_set, tmp_path):
    from convnet import options
    from convnet.train import prepare, select_placement
    args = options.parse(["--data-path", str(tiny_set), "-j", "3", "--gpus", "cpu",
                          "--output-dir", str(tmp_path / "out")])
    placement, _ = select_placement("cpu")
    trainer, *_ = prepare(args, placement, ALONE)
    assert trainer.data.threads == 3


def test_the_augmentation_ablations_reach_the_loader(tiny_set, tmp_path):
    from convnet import options
    from convnet.data.loader import CROP_DRAWS
    from convnet.train import prepare, select_placement
    args = options.parse(["--data-path", str(tiny_set), "--gpus", "cpu", "--ablation",
                          "no-crop-flip", "no-colour-noise", "--output-dir", str(tmp_path / "o")])
    trainer, *_ = prepare(args, select_placement("cpu")[0], ALONE)
    assert trainer.data.draw_every == CROP_DRAWS["centre"] and trainer.data.convention is None


@pytest.fixture
def tiny_set(tmp_path, rng):
    path = tmp_path / "set.h5"
    dataset.write(path, name="t", train_images=rng.integers(0, 256, (8, 32, 32, 3), np.uint8),
                  train_labels=np.zeros(8), val_images=np.zeros((4, 32, 32, 3), np.uint8),
                  val_labels=np.zeros(4), class_ids=list("ab"), class_names=list("ab"))
    return path


@pytest.mark.parametrize("gpus", ["63", "0,63", "63,63"])
def test_gpu_that_cannot_run_is_one_line_with_exit_code_2(tmp_path, tiny_set, gpus):
    """Without CuPy: says to install it; with CuPy but no usable GPU: why CuPy sees none (here
    or on a GPU machine whose driver it cannot use); with GPUs: names the first index past them
    (63), for one tower or both."""
    count, why_none = cuda_devices()
    if why_none == NO_CUPY:
        expected = "CuPy is not installed; pip install" if shutil.which("nvidia-smi") else \
            "CuPy is not installed and no nvidia-smi is on the PATH; use --gpus cpu"
    elif why_none:
        expected = f"error: --gpus {gpus}: {why_none}; --gpus cpu runs on the CPU"
    else:
        missing = next(int(index) for index in gpus.split(",") if int(index) >= count)
        expected = f"there is no GPU {missing} (this machine has {count})"
    result = train("--data-path", str(tiny_set), "--gpus", gpus, cwd=tmp_path)
    assert result.returncode == 2 and expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed "
                    "here: the advice for a machine without it cannot be seen")
def test_a_machine_with_nvidia_smi_but_no_cupy_is_told_which_cupy_to_install(tmp_path, tiny_set):
    """--gpus 0: one line naming both CuPy extras and how to tell which; no --gpus: a note that
    the run trains on the CPU, with the same advice (a stand-in nvidia-smi on the PATH)."""
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    (bin_folder / "nvidia-smi").write_text("#!/bin/sh\necho 'CUDA Version: 12.4'\n")
    (bin_folder / "nvidia-smi").chmod(0o755)
    advice = ("pip install -e '.[cuda]' for a CUDA 13 driver, '.[cuda12]' for CUDA 12 "
              "or a Volta GPU (nvidia-smi's header names the driver's CUDA version)")
    path = f"{bin_folder}{os.pathsep}{os.environ['PATH']}"
    common = [sys.executable, "-m", "convnet.train", "--data-path", str(tiny_set), "--epochs",
              "1"]
    refused = subprocess.run([*common, "--gpus", "0"], capture_output=True, text=True,
                             cwd=tmp_path, env={**os.environ, "PATH": path}, timeout=600)
    assert refused.returncode == 2
    assert refused.stderr == (f"error: --gpus 0: CuPy is not installed; {advice}; or use "
                              f"--gpus cpu\n")
    noted = subprocess.run(common, capture_output=True, text=True, cwd=tmp_path,
                           env={**os.environ, "PATH": path}, timeout=600)
    assert noted.returncode == 0, noted.stderr
    assert noted.stderr == (f"note: training on the CPU: this machine has nvidia-smi but not "
                            f"CuPy; {advice}\n")


class CudaRuntimeError(RuntimeError):
    """CuPy's CUDARuntimeError, as getDeviceCount raises it without a driver it can use."""


def cupy_without_a_gpu(driver):
    """A stand-in CuPy built for CUDA 13.2 on a machine whose driver is CUDA `driver` (CUDA's
    encoding: 12040 for 12.4, 0 for no driver): CUDA's answer to the device count is then
    cudaErrorInsufficientDriver either way."""
    def no_device():
        raise CudaRuntimeError("cudaErrorInsufficientDriver: CUDA driver version is "
                               "insufficient for CUDA runtime version")
    runtime = SimpleNamespace(getDeviceCount=no_device, driverGetVersion=lambda: driver,
                              runtimeGetVersion=lambda: 13020)
    return SimpleNamespace(__version__="14.2.0", cuda=SimpleNamespace(runtime=runtime))


@pytest.mark.parametrize("driver, why", [
    (0, "CuPy is installed but this machine has no NVIDIA driver"),
    (12040, "CuPy 14.2.0 is built for CUDA 13, newer than this NVIDIA driver's CUDA 12.4: pip "
            "install -e '.[cuda]' for a CUDA 13 driver, '.[cuda12]' for CUDA 12"),
    (13000, "CuPy finds no usable GPU (CudaRuntimeError: cudaErrorInsufficientDriver: CUDA "
            "driver version is insufficient for CUDA runtime version)")])
def test_cupy_without_a_usable_gpu_says_why_and_trains_on_the_cpu_only_when_asked(
        monkeypatch, capsys, tmp_path, driver, why):
    """CuPy installed, but no driver, or one older than CuPy's CUDA (a GPU machine with the
    wrong CuPy), or another fault: --gpus 0 and 0,1 are refused with that reason, not 'there is
    no GPU 0 (this machine has 0)'; without --gpus the run takes the CPU, with a note of the
    reason where nvidia-smi says this is a GPU machine, quietly where it does not."""
    monkeypatch.setitem(sys.modules, "cupy", cupy_without_a_gpu(driver))
    count, reason = cuda_devices()
    assert count == 0 and reason.startswith(why)
    for gpus in ("0", "0,1"):
        with pytest.raises(UsageError) as refused:
            train_module.select_placement(gpus)
        assert str(refused.value) == f"--gpus {gpus}: {reason}; --gpus cpu runs on the CPU"
    monkeypatch.setenv("PATH", str(tmp_path))   # no nvidia-smi
    assert train_module.select_placement(None)[1] == "cpu"
    assert capsys.readouterr().err == ""
    (tmp_path / "nvidia-smi").write_text("#!/bin/sh\n")
    (tmp_path / "nvidia-smi").chmod(0o755)
    assert train_module.select_placement(None)[1] == "cpu"
    assert capsys.readouterr().err == f"note: training on the CPU: {reason}\n"


def test_what_the_run_cannot_use_is_refused_before_it_starts(tmp_path, tiny_set, rng):
    """An output folder that is a file, a broken link or cannot be made, a dataset without
    validation images or with one class: one line, exit code 2, before any training (also when
    evaluating)."""
    (tmp_path / "afile").write_text("")
    os.symlink(tmp_path / "gone", tmp_path / "dangling")
    empty_val, one_class = tmp_path / "no-val.h5", tmp_path / "one-class.h5"
    dataset.write(empty_val, name="t", train_images=np.zeros((8, 32, 32, 3), np.uint8),
                  train_labels=np.zeros(8), val_images=np.zeros((0, 32, 32, 3), np.uint8),
                  val_labels=np.zeros(0), class_ids=list("ab"), class_names=list("ab"))
    dataset.write(one_class, name="t", train_images=np.zeros((8, 32, 32, 3), np.uint8),
                  train_labels=np.zeros(8), val_images=np.zeros((4, 32, 32, 3), np.uint8),
                  val_labels=np.zeros(4), class_ids=["a"], class_names=["a"])
    for flags, message in (
            (["--output-dir", "afile"], "error: --output-dir afile: a file, not a folder"),
            (["--output-dir", "afile/run"], f"error: --output-dir afile/run: {tmp_path / 'afile'} "
                                            f"is a file, not a folder"),
            (["--output-dir", "dangling"], f"error: --output-dir dangling: a symbolic link to "
                                           f"{tmp_path / 'gone'}, which does not exist"),
            (["--data-path", str(empty_val)], f"error: dataset {empty_val}: its val split "
                                              f"holds no images"),
            (["--data-path", str(one_class)], f"error: dataset {one_class}: 1 class; a "
                                              f"classifier needs at least 2"),
            (["--data-path", str(one_class), "--test-only"], f"error: dataset {one_class}: 1 "
                                                             f"class")):
        result = train("--data-path", str(tiny_set), "--output-dir", str(tmp_path / "run"),
                       *flags, cwd=tmp_path)
        assert result.returncode == 2, (flags, result.stderr)
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(message), (flags, line)
        assert not (tmp_path / "run" / "log.jsonl").exists()


def test_a_run_folder_that_takes_no_file_points_to_test_only(tmp_path, monkeypatch):
    """A run's folder made read-only (root's writes too: EROFS) is refused for training, and
    where it holds a run the refusal says how to evaluate it."""
    def refused(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    monkeypatch.setattr(train_module.tempfile, "TemporaryFile", refused)
    args = SimpleNamespace(test_only=False)
    (tmp_path / "run").mkdir()
    cannot = (f"--output-dir {tmp_path / 'run'}: cannot make a file in {tmp_path / 'run'} "
              f"(Read-only file system)")
    with pytest.raises(UsageError) as new_run:
        train_module.check_output_folder(str(tmp_path / "run"), args)
    assert str(new_run.value) == cannot
    (tmp_path / "run" / "best.h5").write_bytes(b"")
    with pytest.raises(UsageError) as finished_run:
        train_module.check_output_folder(str(tmp_path / "run"), args)
    assert str(finished_run.value) == (
        f"{cannot}; --test-only evaluates the run it holds without writing")


def test_a_folder_refusing_the_probe_is_named_not_the_probes_file(tmp_path, monkeypatch):
    """A folder the user may not write in (EACCES, which root never meets) names the folder
    tried, here the one above the run's, which the run would make: not the temporary file
    the check would have made there."""
    def refused(*args, dir, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES),
                              os.path.join(dir, "tmpa1b2c3d4"))
    monkeypatch.setattr(train_module.tempfile, "TemporaryFile", refused)
    with pytest.raises(UsageError) as refused_run:
        train_module.check_output_folder(str(tmp_path / "runs" / "new"),
                                         SimpleNamespace(test_only=False))
    assert str(refused_run.value) == (f"--output-dir {tmp_path / 'runs' / 'new'}: cannot make a "
                                      f"file in {tmp_path} (Permission denied)")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in a folder made read-only (chmod)")
def test_a_folder_the_user_may_not_write_in_is_refused_before_training(tmp_path, tiny_set):
    (tmp_path / "shared").mkdir(mode=0o555)
    try:
        result = train("--data-path", str(tiny_set), "--output-dir", "shared/run", cwd=tmp_path)
    finally:
        (tmp_path / "shared").chmod(0o755)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (f"error: --output-dir shared/run: cannot make a file in "
                             f"{tmp_path / 'shared'} (Permission denied)\n")
    assert os.listdir(tmp_path / "shared") == []


def test_rate_drops_that_do_nothing_are_noted(tmp_path, tiny_set):
    """After the last epoch they act only if a resume raises --epochs (a run trained in parts);
    under another schedule (a config's steps, the schedule changed by a flag) not at all: a
    note, not an error."""
    common = ["--data-path", str(tiny_set), "--epochs", "1"]
    late = train(*common, "--output-dir", "late", "--lr-schedule", "steps", "--lr-steps", "1",
                 "5", cwd=tmp_path)
    assert late.returncode == 0, late.stderr
    assert late.stderr == ("note: --lr-steps 1 5: this run trains 1 epoch, so the rates drop "
                           "there only if a resume raises --epochs\n")
    (tmp_path / "c.json").write_text('{"lr_schedule": "steps", "lr_steps": [1]}')
    other = train(*common, "-c", "c.json", "--lr-schedule", "plateau", "--output-dir", "other",
                  cwd=tmp_path)
    assert other.returncode == 0, other.stderr
    assert other.stderr == "note: --lr-steps 1 left unused: the schedule is plateau\n"


def test_a_run_into_another_runs_folder_is_refused(tmp_path, tiny_set):
    """Resuming from a checkpoint of another folder would replace that run's files: refused,
    the files left alone, the way on named. Resuming from the folder's own best.h5 goes on; so
    does --resume auto where the folder has a best.h5 but no last.h5 (a run stopped between its
    first epoch's two writes, best.h5 first), making last.h5 its copy."""
    common = ["--data-path", str(tiny_set), "--epochs", "1"]
    for name in ("one", "two"):
        assert train(*common, "--output-dir", name, cwd=tmp_path).returncode == 0
    (tmp_path / "two" / "last.h5").unlink()
    kept = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    result = train(*common, "--output-dir", "two", "--resume", str(tmp_path / "one" / "last.h5"),
                   cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (f"error: --output-dir two holds a run already (best.h5, "
                             f"epochs.csv, log.jsonl), and --resume {tmp_path / 'one' / 'last.h5'} "
                             f"is another folder's checkpoint: give --output-dir a folder of its "
                             f"own\n")
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == kept
    # The run's own folder given for its checkpoint: the loader's word, which names the files
    for folder in ("two", "two/", "."):
        result = train(*common, "--output-dir", "two", "--resume", folder, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert result.stderr == (f"error: checkpoint {folder}: a folder, not a checkpoint file "
                                 f"(a run's folder holds last.h5 and best.h5)\n")
    for flags in (["--resume", "two/best.h5"], ["--resume", "auto"]):
        own = train(*common, "--epochs", "2", "--output-dir", "two", *flags, cwd=tmp_path)
        assert own.returncode == 0, own.stderr
        assert "resumed from two/best.h5 at epoch 1" in own.stdout
        assert (tmp_path / "two" / "last.h5").exists()
        (tmp_path / "two" / "last.h5").unlink()
        (tmp_path / "two" / "best.h5").write_bytes(kept[tmp_path / "two" / "best.h5"])
    # Going on in a folder of its own: it takes the run's best.h5, which --weights FOLDER reads.
    moved = train(*common, "--epochs", "2", "--output-dir", "three", "--resume",
                  str(tmp_path / "one" / "last.h5"), cwd=tmp_path)
    assert moved.returncode == 0 and "best.h5" not in moved.stderr, moved.stderr
    assert train(*common, "--weights", "three", "--test-only", cwd=tmp_path).returncode == 0
    (tmp_path / "one" / "best.h5").unlink()
    noted = train(*common, "--epochs", "2", "--output-dir", "four", "--resume",
                  str(tmp_path / "one" / "last.h5"), cwd=tmp_path)
    assert noted.returncode == 0, noted.stderr
    assert "note: four gets no best.h5 until an epoch beats the validation top-1 error of " \
           in noted.stderr


def test_resume_auto_from_a_damaged_last_checkpoint_names_the_best_one(tmp_path, tiny_set):
    """--resume auto finds last.h5 cut short: refused, the folder left as it was, and the run's
    best.h5 named as the way on; a damaged best.h5 alone is refused without a way on, and so is
    a readable last.h5 refused for what best.h5 shares (its seed)."""
    common = ["--data-path", str(tiny_set), "--output-dir", "run"]
    assert train(*common, "--epochs", "1", cwd=tmp_path).returncode == 0
    other_seed = train(*common, "--epochs", "2", "--resume", "auto", "--seed", "5", cwd=tmp_path)
    assert other_seed.returncode == 2 and "written with seed 0" in other_seed.stderr
    assert "instead" not in other_seed.stderr
    last, best = tmp_path / "run" / "last.h5", tmp_path / "run" / "best.h5"
    last.write_bytes(last.read_bytes()[:3000])
    kept = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    result = train(*common, "--epochs", "2", "--resume", "auto", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: checkpoint {os.path.join('run', 'last.h5')}: not a "
                                    f"readable HDF5 file (")
    assert result.stderr.endswith(f"; --resume {os.path.join('run', 'best.h5')} goes on from the "
                                  f"run's best epoch instead\n")
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == kept
    last.write_bytes(kept[best])   # whole, but an array gone: fc8's, read first, or another's
    for array in ("towers/a/params/fc8/bias", "towers/a/params/conv1a/bias"):
        with h5py.File(last, "r+") as file:
            del file[array]
        result = train(*common, "--epochs", "2", "--resume", "auto", cwd=tmp_path)
        assert result.returncode == 2 and result.stderr.endswith("instead\n"), result.stderr
        assert f"missing {array}" in result.stderr
        last.write_bytes(kept[best])
    last.unlink()
    best.write_bytes(kept[best][:3000])
    alone = train(*common, "--epochs", "2", "--resume", "auto", cwd=tmp_path)
    assert alone.returncode == 2 and "instead" not in alone.stderr, alone.stderr


def test_resume_auto_over_logs_alone_starts_again(tmp_path, tiny_set):
    """Logs without a checkpoint are those of a run stopped in its first epoch: --resume auto
    starts from step 0, its logs replacing theirs; but only once all it loads has loaded (a
    --weights that fails leaves them as they were)."""
    out = tmp_path / "run"
    write_logs_alone(out)
    common = ["--data-path", str(tiny_set), "--epochs", "1", "--print-freq", "1",
              "--output-dir", str(out), "--resume", "auto"]
    failed = train(*common, "--weights", str(tmp_path / "none.h5"), cwd=tmp_path)
    assert failed.returncode == 2 and "none.h5" in failed.stderr, failed.stderr
    assert {name: (out / name).read_text() for name in LOGS_ALONE} == LOGS_ALONE
    result = train(*common, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "resumed from" not in result.stdout
    assert (f"note: --resume auto found no checkpoint in {out}: the run starts again from step "
            f"0\n") in result.stderr
    assert all(json.loads(line)["loss"] != 9.0
               for line in (out / "log.jsonl").read_text().splitlines())


def test_a_restart_over_logs_alone_names_the_settings_it_changes(tmp_path, tiny_set):
    """A fine-tuning run stopped before its first checkpoint and restarted without its
    --weights starts from random weights: the note says so, as for any setting the stopped
    run's settings.json records otherwise; a folder that holds no run, that a new one starts
    there."""
    donor, out = tmp_path / "donor", tmp_path / "run"
    common = ["--data-path", str(tiny_set), "--epochs", "1"]
    assert train(*common, "--output-dir", str(donor), cwd=tmp_path).returncode == 0
    first = train(*common, "-b", "8", "--weights", str(donor / "last.h5"),
                  "--output-dir", str(out), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    for name in ("last.h5", "best.h5"):   # as a run stopped in its first epoch leaves it
        (out / name).unlink()
    again = train(*common, "-b", "4", "--output-dir", str(out), "--resume", "auto",
                  cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (f"note: --resume auto found no checkpoint in {out}: the run starts again from step "
            f"0, with settings other than the stopped run's: --weights (was "
            f"{donor / 'last.h5'}, now none); --batch-size (was 8, now 4)\n") in again.stderr
    # the same dataset named another way (relative, not absolute) is no other setting
    for name in ("last.h5", "best.h5"):
        (out / name).unlink()
    relative = train("--data-path", os.path.relpath(tiny_set, tmp_path), "--epochs", "1", "-b",
                     "4", "--output-dir", str(out), "--resume", "auto", cwd=tmp_path)
    assert relative.returncode == 0, relative.stderr
    assert (f"note: --resume auto found no checkpoint in {out}: the run starts again from step "
            f"0\n") in relative.stderr
    fresh = train(*common, "--output-dir", str(tmp_path / "fresh"), "--resume", "auto",
                  cwd=tmp_path)   # a new folder (a typo?): nothing starts again, a run starts
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stderr == (f"note: --resume auto found no run in {tmp_path / 'fresh'}: a new "
                            f"run starts there\n")


def test_a_restart_over_a_settings_file_that_holds_no_settings_is_noted_plainly(tmp_path,
                                                                             tiny_set):
    """A settings.json that is JSON but not an object (a list, null) is no stopped run's
    settings to compare: the restart's note, without them, not a traceback."""
    out = tmp_path / "run"
    for text in ('["model"]', "null"):
        write_logs_alone(out)
        (out / "settings.json").write_text(text)
        result = train("--data-path", str(tiny_set), "--epochs", "1", "--output-dir", str(out),
                       "--resume", "auto", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert (f"note: --resume auto found no checkpoint in {out}: the run starts again from "
                f"step 0\n") in result.stderr
        shutil.rmtree(out)


def test_a_run_refused_after_its_checks_makes_no_folder(tmp_path, tiny_set):
    """A resume refused for training otherwise than its checkpoint, or --weights that do not
    load, leave no new --output-dir behind (not even its lock file); evaluating a checkpoint
    says where it resumes, not how its schedule would go on; a run going on says how many
    epochs it has left."""
    source = tmp_path / "source"
    common = ["--data-path", str(tiny_set), "-b", "4"]
    assert train(*common, "--epochs", "1", "--output-dir", str(source),
                 cwd=tmp_path).returncode == 0
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"junk")
    new = tmp_path / "new"
    for flags in (["--resume", str(source / "last.h5"), "--wd", "0.1", "--epochs", "2"],
                  ["--weights", str(junk)]):
        result = train(*common, *flags, "--output-dir", str(new), cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert not new.exists(), (flags, os.listdir(new))
    evaluated = train(*common, "--test-only", "--resume", str(source / "last.h5"), cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"evaluating {source / 'last.h5'} (epoch 1, step 2)\n" in evaluated.stdout
    going_on = train(*common, "--epochs", "3", "--output-dir", str(source), "--resume",
                     cwd=tmp_path)
    assert going_on.returncode == 0, going_on.stderr
    assert f"(cpu) to epoch 3 (2 epochs more); output in {source}\n" in going_on.stdout


def test_resuming_an_earlier_checkpoint_past_its_epochs_evaluates_and_changes_nothing(
        tmp_path, tiny_set):
    """--resume of an earlier checkpoint with --epochs it has done trains nothing: the run's
    logs, settings and last.h5, which are further on, stay as they are."""
    out = tmp_path / "run"
    common = ["--data-path", str(tiny_set), "--output-dir", str(out), "--print-freq", "1"]
    assert train(*common, "--epochs", "1", cwd=tmp_path).returncode == 0
    shutil.copy(out / "last.h5", out / "epoch1.h5")
    assert train(*common, "--epochs", "2", "--resume", cwd=tmp_path).returncode == 0
    kept = {path.name: path.read_bytes() for path in out.iterdir()}
    result = train(*common, "--epochs", "1", "--resume", str(out / "epoch1.h5"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "the run has done its 1 epoch (" in result.stdout
    assert {path.name: path.read_bytes() for path in out.iterdir()} == kept


def test_a_resume_trains_on_as_its_checkpoint_trained(tmp_path, tiny_set, rng):
    """Batch size, momentum, weight decay, the validation's views and the dataset are what the
    checkpoint records its run trained with: a resume that would train otherwise is refused
    in one line naming every flag that differs, and touches nothing; evaluating it (--test-only) may differ."""
    out = tmp_path / "run"
    common = ["--data-path", str(tiny_set), "--output-dir", str(out)]
    assert train(*common, "--epochs", "1", cwd=tmp_path).returncode == 0
    other = tmp_path / "other.h5"
    dataset.write(other, name="other", train_images=rng.integers(0, 256, (9, 32, 32, 3), np.uint8),
                  train_labels=np.zeros(9), val_images=np.zeros((4, 32, 32, 3), np.uint8),
                  val_labels=np.zeros(4), class_ids=list("ab"), class_names=list("ab"))
    relabelled = tmp_path / "relabelled.h5"
    dataset.write(relabelled, name="t", train_images=rng.integers(0, 256, (8, 32, 32, 3), np.uint8),
                  train_labels=np.ones(8), val_images=np.zeros((4, 32, 32, 3), np.uint8),
                  val_labels=np.zeros(4), class_ids=list("ab"), class_names=list("ab"))
    reclassed = tmp_path / "reclassed.h5"   # another class subset of a dataset of one name
    dataset.write(reclassed, name="t", train_images=rng.integers(0, 256, (8, 32, 32, 3), np.uint8),
                  train_labels=np.zeros(8), val_images=np.zeros((4, 32, 32, 3), np.uint8),
                  val_labels=np.zeros(4), class_ids=list("ac"), class_names=list("ac"))
    source = dataset.Dataset(tiny_set)
    # The same images at another side, with the model named as a config names it (--model auto
    # takes none for 36-pixel images)
    resized = tmp_path / "resized.h5"
    dataset.write(resized, name="t",
                  **{f"{split}_{kind}": values for split in ("train", "val")
                     for kind, values in (("images", np.pad(source.images(split, np.arange(
                         source.size(split))), ((0, 0), (2, 2), (2, 2), (0, 0)))),
                                          ("labels", source.labels(split)))},
                  class_ids=source.class_ids, class_names=source.class_names)
    kept = {path.name: path.read_bytes() for path in out.iterdir()}
    checkpoint_named = f"error: checkpoint {out / 'last.h5'}: its run"
    for flags, refusal in (
            (["-b", "4"], "trains with --batch-size 128, not 4: pass --batch-size 128"),
            (["--momentum", "0.5"], "trains with --momentum 0.9, not 0.5: pass --momentum 0.9"),
            (["--wd", "0"], "trains with --wd 0.0005, not 0.0: pass --wd 0.0005"),
            (["--momentum", "0.9000001"], "trains with --momentum 0.9, not 0.9000001: pass "
                                          "--momentum 0.9"),
            (["--ten-crop"], "validates on the centre crop, which picks best.h5: leave out "
                             "--ten-crop"),
            (["--data-path", str(other)], "trains on dataset t (8 training, 4 validation "
                                          "images), not other (9, 4): give --data-path its "
                                          "dataset"),
            (["--data-path", str(relabelled)], "trains on dataset t (8 training, 4 validation "
                                               "images), not this one, whose labels differ: give "
                                               "--data-path its dataset"),
            (["--data-path", str(reclassed)], "trains on dataset t (8 training, 4 validation "
                                              "images), not this one, whose class ids differ: "
                                              "give --data-path its dataset"),
            (["--data-path", str(resized), "--model", "2012-small28"],
             "trains on dataset t (8 training, 4 validation images), stored at 32 pixels, not "
             "this one, stored at 36: give --data-path its dataset"),
            (["-b", "4", "--ten-crop", "--data-path", str(other), "--wd", "0"],   # all at once
             "trains with --batch-size 128, not 4; trains with --wd 0.0005, not 0.0; validates "
             "on the centre crop, which picks best.h5; trains on dataset t (8 training, 4 "
             "validation images), not other (9, 4): leave out --ten-crop and give --data-path "
             "its dataset and pass --batch-size 128 --wd 0.0005")):
        result = train(*common, "--epochs", "2", "--resume", *flags, cwd=tmp_path)
        assert result.returncode == 2, (flags, result.stderr)
        assert result.stderr == f"{checkpoint_named} {refusal} to go on with it\n"
    assert {path.name: path.read_bytes() for path in out.iterdir()} == kept
    evaluated = train(*common, "--resume", "--test-only", "-b", "4", "--ten-crop", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "note: checkpoint" not in evaluated.stderr
    # evaluated on another dataset, or another class subset of one: a note says so
    for data, note in ((other, f"was trained on dataset t, not other; the class names are this "
                               f"dataset's ({other})"),
                       (reclassed, f"was trained on a dataset t of other class ids than "
                                   f"{reclassed}'s")):
        elsewhere = train(*common, "--resume", "--test-only", "--data-path", str(data),
                          cwd=tmp_path)
        assert elsewhere.returncode == 0, elsewhere.stderr
        assert f"note: checkpoint {out / 'last.h5'} {note}" in elsewhere.stderr
    with h5py.File(out / "last.h5", "r+") as file:   # as written before it recorded the size
        del file.attrs["state_sha256"]
        state = json.loads(file.attrs["state"])
        del state["dataset"]["image_size"]
        file.attrs["state"] = json.dumps(state)
    assert train(*common, "--epochs", "2", "--resume", cwd=tmp_path).returncode == 0


def test_a_resume_notes_a_change_of_code_and_a_2012_schedule_kept_to_its_epochs(tmp_path,
                                                                                tiny_set):
    out = tmp_path / "run\x1b[31m"   # named in the note as shown
    common = ["--data-path", str(tiny_set), "--output-dir", str(out), "--lr-schedule", "2012"]
    assert train(*common, "--epochs", "1", cwd=tmp_path).returncode == 0
    with h5py.File(out / "last.h5", "r+") as file:
        file.attrs["commit"] = "0123abc"
    # the schedule flags typed again as they were: no note; otherwise, each named
    result = train(*common, "--epochs", "2", "--resume", "--lr", "0.5", "--lr-steps", "1",
                   cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert notes[0] == ("note: --lr 0.5, --lr-steps 1 left unused: a resumed run goes on with "
                        "its checkpoint's schedule and rates")
    assert notes[1].startswith(f"note: {tmp_path}/run\\x1b[31m/last.h5 was written by commit "
                               f"0123abc; this is ")
    assert notes[2] == ("note: the 2012 schedule goes on as scaled to the run's first 1 epoch; "
                        "training to epoch 2 moves only where it stops")


def test_a_convolution_algorithm_asked_of_the_cpu_is_noted_unused(tmp_path, tiny_set):
    result = train("--data-path", str(tiny_set), "--epochs", "1", "--gpus", "cpu",
                   "--conv-algorithm", "winograd", "--output-dir", str(tmp_path / "run"),
                   cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ("note: --conv-algorithm winograd left unused: it picks among the "
                             "CUDA kernels, and the CPU's reference backend has one "
                             "convolution\n")
    assert json.loads((tmp_path / "run" / "settings.json").read_text())["conv_algorithm"] is None


def test_a_checkpoint_older_than_its_commit_and_training_records_resumes(tmp_path, tiny_set):
    """Checkpoints written before they recorded the commit, what their run trains with and
    their state's digest go on with the flags given, as they did then, and with no note."""
    out = tmp_path / "run"
    common = ["--data-path", str(tiny_set), "--output-dir", str(out), "--lr-schedule", "steps",
              "--lr-steps", "1"]
    assert train(*common, "--epochs", "1", cwd=tmp_path).returncode == 0
    with h5py.File(out / "last.h5", "r+") as file:
        del file.attrs["commit"], file.attrs["state_sha256"]
        state = json.loads(file.attrs["state"])
        for key in (*TRAINS_WITH, "epochs"):
            del state[key]
        file.attrs["state"] = json.dumps(state)
    result = train(*common, "--epochs", "2", "--resume", "-b", "4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "note:" not in result.stderr and "resumed from" in result.stdout


@pytest.mark.parametrize("model, kind, bias_factor", [("paper-small28", "plateau", 1),
                                                     ("2012-small28", "2012", 2)])
def test_each_preset_trains_on_its_own_schedule_and_bias_rate(model, kind, bias_factor):
    """The paper's rule (÷10 on a plateau, biases at the weights' rate) and the released
    run's hand schedule (biases at twice the rate), from --lr-schedule preset."""
    args = options.parse(["--model", model, "--data-path", "x.h5", "--lr", "0.03"])
    schedule = make_schedule(args, alexnet.build_model(model), 30)
    assert schedule.kind == kind
    assert (schedule.rates.weight_lr, schedule.rates.bias_lr) == pytest.approx(
        (0.03, 0.03 * bias_factor))


def test_a_configs_epochs_is_a_new_runs_and_a_resume_keeps_to_its_checkpoints(tmp_path,
                                                                              tiny_set):
    """make train's case: its config says 6 epochs; a run started with --epochs 1 and
    resumed under the config has done its epochs, and evaluates; a typed --epochs goes on."""
    out = tmp_path / "run"
    (tmp_path / "c.json").write_text(json.dumps({"epochs": 2, "data_path": str(tiny_set),
                                                 "output_dir": str(out)}))
    first = train("-c", str(tmp_path / "c.json"), "--epochs", "1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert json.loads((out / "settings.json").read_text())["typed"] == ["config", "epochs"]
    resumed = train("-c", str(tmp_path / "c.json"), "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "the run has done its 1 epoch (" in resumed.stdout
    longer = train("-c", str(tmp_path / "c.json"), "--resume", "--epochs", "2", cwd=tmp_path)
    assert longer.returncode == 0, longer.stderr
    assert "epoch 2/2:" in longer.stdout


def test_a_resume_without_epochs_goes_on_to_those_its_run_was_started_for():
    """The checkpoint's record; before checkpoints recorded them, the epochs a 2012 schedule
    was scaled to, else the model's default."""
    rates = Rates(0.01, 0.02)
    scaled = Schedule("2012", rates, scale=12 / 90)
    assert planned_epochs(7, scaled, 30) == 7
    assert planned_epochs(None, scaled, 30) == 12
    assert planned_epochs(None, Schedule("steps", rates, step_epochs=(5,)), 30) == 30


def test_a_checkpoint_that_cannot_be_written_mid_run_is_exit_2(tmp_path, tiny_set, capsys,
                                                                monkeypatch):
    """A failure of an input or output once training runs (a full disk at a checkpoint) is
    one line and exit code 2, as at the start."""
    def full_disk(path, *args):
        raise checkpoint.CheckpointError(f"checkpoint {path}: cannot write it (disk full)")
    monkeypatch.setattr(checkpoint, "save", full_disk)
    status = train_module.main(["--data-path", str(tiny_set), "--epochs", "1",
                                "--output-dir", str(tmp_path / "run"), "--gpus", "cpu"])
    assert status == 2
    assert capsys.readouterr().err == (f"error: checkpoint {tmp_path / 'run' / 'best.h5'}: "
                                       f"cannot write it (disk full)\n")


@pytest.mark.parametrize("in_the_way", ["log.jsonl", "settings.json"])
def test_a_folder_in_place_of_a_log_or_the_settings_is_one_line_and_exit_2(tmp_path, tiny_set,
                                                                           capsys, in_the_way):
    (tmp_path / "run" / in_the_way).mkdir(parents=True)
    status = train_module.main(["--data-path", str(tiny_set), "--epochs", "1", "--resume",
                                "--output-dir", str(tmp_path / "run"), "--gpus", "cpu"])
    assert status == 2
    assert capsys.readouterr().err.endswith(f"error: {tmp_path / 'run' / in_the_way}: cannot "
                                            f"write (Is a directory)\n")


@contextlib.contextmanager
def ctrl_c_delivered():
    """Ctrl-C raising KeyboardInterrupt, as a terminal delivers it, even where this suite runs
    with it ignored (in a background job), which a run would keep."""
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture
def two_epochs(tmp_path, tiny_set):
    """A run of 2 epochs in tmp_path/run, its first epoch's checkpoint kept as epoch1.h5."""
    out = tmp_path / "run"
    common = ["--data-path", str(tiny_set), "--output-dir", str(out), "--gpus", "cpu", "-b", "4"]
    assert train_module.main([*common, "--epochs", "1"]) == 0
    shutil.copy(out / "last.h5", out / "epoch1.h5")
    assert train_module.main([*common, "--epochs", "2", "--resume"]) == 0
    return out, common


@pytest.mark.parametrize("in_the_way", ["log.jsonl", "epochs.csv", "settings.json"])
def test_a_resume_refused_by_its_folder_changes_none_of_its_files(two_epochs, capsys,
                                                                   in_the_way):
    """Resuming from an earlier checkpoint rewinds last.h5 and the logs to it, but only once
    nothing can refuse the run: a folder in place of a log or the settings leaves the run's
    files as they were."""
    out, common = two_epochs
    (out / in_the_way).unlink()
    (out / in_the_way).mkdir()
    kept = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
    capsys.readouterr()
    assert train_module.main([*common, "--epochs", "3", "--resume", str(out / "epoch1.h5")]) == 2
    assert capsys.readouterr().err.endswith(f"error: {out / in_the_way}: cannot write (Is a "
                                            f"directory)\n")
    assert {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()} == kept


def test_a_ctrl_c_before_a_resume_rewinds_the_folder_changes_none_of_its_files(
        two_epochs, capsys, monkeypatch):
    """A Ctrl-C as a resume from an earlier checkpoint makes its first notes stops it before
    anything changes, settings.json, last.h5 and the logs alike, as its line says."""
    out, common = two_epochs
    kept = {path.name: path.read_bytes() for path in out.iterdir()}
    monkeypatch.setattr(train_module, "idle_device_note",
                        lambda *args: signal.raise_signal(signal.SIGINT))
    capsys.readouterr()
    with ctrl_c_delivered():
        status = run_command(lambda: train_module.main([*common, "--epochs", "3", "--resume",
                                                        str(out / "epoch1.h5")]),
                             output_required=False, stopped=train_module.stopped_line)
    assert status == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        "interrupted as it started, before it changed any checkpoint or log; the same command "
        "starts it again")
    assert {path.name: path.read_bytes() for path in out.iterdir()} == kept


@pytest.mark.parametrize("name,checkpoints", [("log.jsonl", True), ("epochs.csv", True),
                                              ("settings.json", False)])
def test_a_resume_whose_log_or_settings_is_a_pipe_is_one_line_and_does_not_wait(
        tmp_path, tiny_set, name, checkpoints):
    """A resume reads its logs to rewrite them, and a restart over logs alone reads the
    settings it replaces: a pipe in their place would block that read for ever, then be
    replaced by a plain file. It is refused, naming it."""
    run = tmp_path / "run"
    assert train_module.main(["--data-path", str(tiny_set), "--epochs", "1", "--output-dir",
                              str(run), "--gpus", "cpu"]) == 0
    if not checkpoints:
        for path in run.glob("*.h5"):
            path.unlink()
    (run / name).unlink()
    os.mkfifo(run / name)
    resumed = subprocess.run([sys.executable, "-m", "convnet.train", "--data-path", str(tiny_set),
                              "--epochs", "2", "--resume", "--output-dir", str(run), "--gpus",
                              "cpu"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert resumed.returncode == 2
    assert resumed.stderr.endswith(f"error: {run / name}: cannot write (not a regular file, "
                                   f"which the write would replace)\n")
    assert stat.S_ISFIFO(os.stat(run / name).st_mode)


def test_a_log_that_cannot_be_written_mid_run_is_one_line_naming_it(tmp_path, tiny_set, capsys,
                                                                    monkeypatch):
    """A full disk at a log's append: the write's error names no file; the message does."""
    class FullDisk:
        def __init__(self, path, *args, **kwargs):
            pass

        def write(self, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def flush(self):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def close(self):
            pass
    monkeypatch.setattr(trainer_module, "open", FullDisk, raising=False)
    status = train_module.main(["--data-path", str(tiny_set), "--epochs", "1", "--print-freq",
                                "1", "--output-dir", str(tmp_path / "run"), "--gpus", "cpu"])
    assert status == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'run' / 'log.jsonl'}: cannot write "
                                       f"(No space left on device)\n")


def test_evaluating_makes_no_folder(tmp_path, tiny_set):
    source = tmp_path / "source"
    assert train("--data-path", str(tiny_set), "--epochs", "1", "--output-dir", str(source),
                 cwd=tmp_path).returncode == 0
    result = train("--data-path", str(tiny_set), "--test-only", "--resume",
                   str(source / "last.h5"), "--output-dir", str(tmp_path / "typo" / "run"),
                   cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "typo").exists()
    # nor resuming a finished run into another folder: it evaluates, and writes nothing there
    finished = train("--data-path", str(tiny_set), "--resume", str(source / "last.h5"),
                     "--output-dir", str(tmp_path / "typo" / "run"), cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    assert "has done its 1 epoch" in finished.stdout and not (tmp_path / "typo").exists()


def test_test_only_refuses_to_evaluate_when_resume_auto_finds_nothing(tmp_path, tiny_set):
    """The initial weights' error is not what --resume asked for (a typo in --output-dir, or
    its default, runs/MODEL, for a run made elsewhere): refused. Without --resume, they are
    evaluated, and a note says so."""
    result = train("--data-path", str(tiny_set), "--output-dir", str(tmp_path / "run\n"),
                   "--resume", "--test-only", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (f"error: --resume auto --test-only: {tmp_path}/run\\n holds no "
                             f"checkpoint to evaluate; give the run's folder with --output-dir\n")
    defaulted = train("--data-path", str(tiny_set), "--resume", "--test-only", cwd=tmp_path)
    assert defaulted.returncode == 2
    assert defaulted.stderr.endswith("give the run's folder with --output-dir (this is "
                                     "--output-dir's default for model 2012-small28)\n")
    initial = train("--data-path", str(tiny_set), "--test-only", cwd=tmp_path)
    assert initial.returncode == 0, initial.stderr
    assert initial.stderr.startswith("note: no checkpoint was loaded, so this evaluates the "
                                     "initial weights")


def test_the_stop_line_says_where_the_run_was_saved():
    stop = stopping.Stopped(signal.SIGTERM)
    stop.stage, stop.output_dir = train_module.TRAINING, "runs/a"
    stop.saved = Saved(37, 12, 200, 3, written=True, lost=0)
    assert train_module.stopped_line(stop) == (
        "stopped by SIGTERM at step 37 (batch 12 of 200 of epoch 3), which last.h5 now holds; "
        "--resume --output-dir runs/a goes on from its last.h5 as if never stopped")
    stop.saved = Saved(400, 0, 200, 3, written=False, lost=0)
    assert train_module.stopped_line(stop) == (
        "stopped by SIGTERM at step 400 (the end of epoch 2), which last.h5 held already (no "
        "step since), so nothing was lost; --resume --output-dir runs/a goes on from its "
        "last.h5 as if never stopped")


def test_the_stop_line_says_what_a_stop_at_once_lost_and_where_no_checkpoint_was_made():
    stop = KeyboardInterrupt()   # a second Ctrl-C: at once, nothing saved
    stop.stage, stop.output_dir = train_module.TRAINING, None
    stop.saved = Saved(400, 0, 200, 3, written=False, lost=17)
    assert train_module.stopped_line(stop) == (
        "interrupted at once at step 417: last.h5 holds step 400 (the end of epoch 2), and what "
        "the run did since (17 steps) is lost; --resume goes on from last.h5")
    stop.saved = None
    assert train_module.stopped_line(stop) == (
        "interrupted before the run's first checkpoint; the same command with --resume starts "
        "it again")
    stop.stage = train_module.EVALUATING
    assert train_module.stopped_line(stop) == (
        "interrupted: an evaluation writes nothing, so nothing was lost")
    assert train_module.stopped_line(KeyboardInterrupt()) == (   # no stage: as it started
        "interrupted as it started, before it changed any checkpoint or log; the same command "
        "starts it again")


@pytest.mark.parametrize("stop", ["SIGTERM", "second Ctrl-C", "Ctrl-C at the settings"])
def test_a_resume_from_an_earlier_checkpoint_stopped_before_its_first_step_says_last_h5_has_it(
        two_epochs, capsys, monkeypatch, stop):
    """The folder is rewound to the checkpoint resumed from (last.h5 its copy), then the stop
    comes before a step, at the step's sum or at once (a second Ctrl-C, in the forward pass):
    the line names that checkpoint's step as last.h5's, not the files as they were before the
    resume. A Ctrl-C as the run's settings are written is one such stop, so that settings.json
    never describes a command that left the folder as another run's."""
    out, common = two_epochs
    if stop == "Ctrl-C at the settings":
        write = train_module.atomic_json
        monkeypatch.setattr(train_module, "atomic_json", lambda *args, **kwargs: (
            write(*args, **kwargs), signal.raise_signal(signal.SIGINT)))
    elif stop == "SIGTERM":
        rewound = []
        go_on_from = Trainer.go_on_from
        monkeypatch.setattr(Trainer, "go_on_from", lambda *args: (rewound.append(True),
                                                                   go_on_from(*args))[1])
        monkeypatch.setattr(stopping, "requests", lambda: [0.0, float(bool(rewound)), 0.0])
    else:
        monkeypatch.setattr(Network, "forward", lambda *args, **kwargs: signal.raise_signal(
            signal.SIGINT) or signal.raise_signal(signal.SIGINT))
    with ctrl_c_delivered():
        status = run_command(lambda: train_module.main([*common, "--epochs", "3", "--resume",
                                                        str(out / "epoch1.h5")]),
                             output_required=False, stopped=train_module.stopped_line)
    how = "stopped by SIGTERM" if stop == "SIGTERM" else "interrupted"
    assert status == (143 if stop == "SIGTERM" else 130)
    step = checkpoint.record(str(out / "epoch1.h5"))[1]["step"]
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"{how} at step {step} (the end of epoch 1), which last.h5 held already (no step "
        f"since), so nothing was lost; --resume --output-dir {out} goes on from its last.h5 as "
        f"if never stopped")
    assert checkpoint.record(str(out / "last.h5"))[1]["step"] == step   # epoch 2's before
    assert json.loads((out / "settings.json").read_text())["epochs"] == 3
    assert len((out / "epochs.csv").read_text().splitlines()) == 2   # header + epoch 1


def test_a_stop_at_once_in_training_says_which_steps_it_lost(two_epochs, capsys, monkeypatch):
    """A second Ctrl-C acts at once, in the step: last.h5 keeps the run's last checkpoint, and
    the steps since are lost, as the line says."""
    out, common = two_epochs
    step = checkpoint.record(str(out / "last.h5"))[1]["step"]
    train_step = Trainer.train_step

    def interrupted_second(trainer, *args):
        if trainer.step == step + 1:
            raise KeyboardInterrupt
        return train_step(trainer, *args)
    monkeypatch.setattr(Trainer, "train_step", interrupted_second)
    status = run_command(lambda: train_module.main([*common, "--epochs", "3", "--resume"]),
                         output_required=False, stopped=train_module.stopped_line)
    assert status == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"interrupted at once at step {step + 1}: last.h5 holds step {step} (the end of epoch 2), "
        f"and what the run did since (1 step) is lost; --resume --output-dir {out} goes on "
        f"from its last.h5")
    assert checkpoint.record(str(out / "last.h5"))[1]["step"] == step


def test_a_stopped_evaluation_of_a_finished_run_says_it_wrote_nothing(two_epochs, tmp_path,
                                                                      capsys, monkeypatch):
    """A --resume of a finished run into another folder evaluates it: stopped, it names no
    folder to go on from (the other folder holds nothing to)."""
    out, common = two_epochs

    def stopped(*args):
        raise stopping.Stopped(signal.SIGTERM)
    monkeypatch.setattr(train_module, "evaluate", stopped)
    flags = [*common[:2], "--gpus", "cpu", "-b", "4", "--output-dir", str(tmp_path / "other")]
    status = run_command(lambda: train_module.main([*flags, "--resume", str(out / "last.h5")]),
                         output_required=False, stopped=train_module.stopped_line)
    assert status == 143
    assert capsys.readouterr().err.splitlines()[-1] == (
        "stopped by SIGTERM: an evaluation writes nothing, so nothing was lost")


def test_the_stop_line_names_the_output_folder_as_a_shell_reads_it():
    stop = KeyboardInterrupt()
    stop.stage, stop.output_dir = train_module.TRAINING, "my runs/a;b"
    stop.saved = Saved(37, 12, 200, 3, written=True, lost=0)
    assert train_module.stopped_line(stop) == (
        "interrupted at step 37 (batch 12 of 200 of epoch 3), which last.h5 now holds; --resume "
        "--output-dir 'my runs/a;b' goes on from its last.h5 as if never stopped")


@pytest.mark.parametrize("number, said, output_closed",
                         [(signal.SIGINT, "interrupted", False),
                          (signal.SIGTERM, "stopped by SIGTERM", False),
                          (signal.SIGTERM, "stopped by SIGTERM", True),   # a job's >&-
                          (signal.SIGHUP, "stopped by SIGHUP", False)])
def test_ctrl_c_or_a_job_end_stops_the_run_in_one_line_and_saves_it_there(
        tmp_path, rng, number, said, output_closed):
    """Ctrl-C, a scheduler's SIGTERM or a closed terminal's SIGHUP in the first epoch, after
    its first step: exit code 128 + the signal's, one line, last.h5 written at the step it
    stopped and resumable from there; with standard output closed, which training alone allows,
    too."""
    data = tmp_path / "set.h5"   # an epoch of 200 steps: the signal comes well inside it
    dataset.write(data, name="t", train_images=rng.integers(0, 256, (800, 32, 32, 3), np.uint8),
                  train_labels=rng.integers(0, 2, 800),
                  val_images=np.zeros((4, 32, 32, 3), np.uint8), val_labels=np.zeros(4),
                  class_ids=list("ab"), class_names=list("ab"))
    out = tmp_path / "run"
    command = [sys.executable, "-m", "convnet.train", "--data-path", str(data), "-b", "4",
               "--print-freq", "1", "--epochs", "1", "--output-dir", str(out)]

    def start():
        # The signal as a terminal or a scheduler finds it, even where this suite runs with it
        # ignored (which a child inherits, and the run then keeps).
        signal.signal(number, signal.SIG_DFL)
        if output_closed:
            os.close(1)
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=start)
    try:
        deadline = time.monotonic() + 300
        log = out / "log.jsonl"   # made empty as the epoch begins: its first step logged
        while not (log.exists() and log.stat().st_size) and time.monotonic() < deadline and \
                process.poll() is None:
            time.sleep(0.05)
        process.send_signal(number)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + number, stderr
    stopped = re.fullmatch(rf"{said} at step (\d+) \(batch (\d+) of 200 of epoch 1\), which "
                           rf"last.h5 now holds; --resume --output-dir {out} goes on from its "
                           rf"last.h5 as if never stopped\n", stderr)
    assert stopped, stderr
    step, batch = map(int, stopped.groups())
    assert step == batch and checkpoint.record(str(out / "last.h5"))[1]["step"] == step
    if number != signal.SIGINT:   # the way on from a stop, once: it trains the epoch's rest
        return
    into = f"{batch} {'batch' if batch == 1 else 'batches'} into epoch 1"
    evaluated = train("--data-path", str(data), "-b", "4", "--output-dir", str(out), "--resume",
                      "--test-only", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"evaluating {out}/last.h5 (epoch 0, step {step}, {into})" in evaluated.stdout
    resumed = train("--data-path", str(data), "-b", "4", "--print-freq", "1", "--epochs", "1",
                    "--output-dir", str(out), "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {out}/last.h5 at epoch 0, step {step} ({into})" in resumed.stdout
    with open(out / "log.jsonl") as log:   # every step once, the stopped run's and the rest
        assert [json.loads(line)["step"] for line in log] == list(range(1, 201))


def test_the_bar_of_an_epoch_gone_on_with_counts_its_batches_done(monkeypatch):
    """A run resumed 6 batches into an epoch of 10: its bar starts at 6 of 10, not 0 of 4."""
    from convnet.data.loader import Batches
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    bar = train_module.progress_bar()(Batches(iter(range(4)), 4), "epoch 2", 6)
    try:
        assert (bar.n, bar.total) == (6, 10)
    finally:
        bar.close()


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), stopping.Stopped(signal.SIGTERM)],
                         ids=["ctrl-c", "SIGTERM"])
def test_a_stopped_evaluation_says_it_wrote_nothing(tmp_path, tiny_set, monkeypatch, capsys,
                                                    stop):
    """--test-only writes no checkpoint, so its stop line does not speak of resuming one."""
    def stopped(*args, **kwargs):
        raise stop
    monkeypatch.setattr(train_module, "evaluate", stopped)
    flags = ["--data-path", str(tiny_set), "--gpus", "cpu", "--test-only", "--output-dir",
             str(tmp_path / "run")]
    status = run_command(lambda: train_module.main(flags), output_required=False,
                         stopped=train_module.stopped_line)
    assert status == 128 + stop_signal(stop)
    how = "interrupted" if status == 130 else "stopped by SIGTERM"
    assert capsys.readouterr().err.splitlines()[-1] == (f"{how}: --test-only writes nothing, so "
                                                        f"nothing was lost")


def test_a_refused_checkpoint_named_with_a_newline_is_one_line(tmp_path, tiny_set, capsys):
    foreign = tmp_path / "not\nours.h5"
    h5py.File(foreign, "w").close()
    assert train_module.main(["--data-path", str(tiny_set), "--resume", str(foreign),
                              "--output-dir", str(tmp_path / "out"), "--gpus", "cpu"]) == 2
    assert capsys.readouterr().err == (f"error: checkpoint {tmp_path}/not\\nours.h5: incomplete "
                                       f"or not a convnet checkpoint\n")


def test_corrupt_checkpoint_is_refused(tmp_path, tiny_set):
    path = tiny_set
    broken = tmp_path / "broken.h5"
    broken.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    result = train("--data-path", str(path), "--resume", str(broken), "--output-dir",
                   str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"error: checkpoint {broken}: not a readable HDF5")


def validation_line(result):
    assert result.returncode == 0, result.stderr
    return next(line for line in result.stdout.splitlines() if line.startswith("validation"))


def test_weights_start_a_new_run_and_a_resumed_run_leaves_them(tmp_path, tiny_set):
    source = tmp_path / "source"
    common = ["--data-path", str(tiny_set), "-b", "4"]
    assert train(*common, "--output-dir", str(source), "--epochs", "1",
                 cwd=tmp_path).returncode == 0
    weights = str(source / "last.h5")
    evaluated = train(*common, "--weights", weights, "--test-only", cwd=tmp_path)
    assert "initial weights" not in evaluated.stderr
    assert validation_line(evaluated) == validation_line(
        train(*common, "--resume", weights, "--test-only", cwd=tmp_path))

    out, best = tmp_path / "tuned", str(source / "best.h5")
    first = train(*common, "--output-dir", str(out), "--weights", str(source), "--epochs", "1",
                  "--model", "2012-small28+one-tower", cwd=tmp_path)     # a folder: its best.h5
    assert first.returncode == 0, first.stderr
    line = next(line for line in first.stdout.splitlines() if line.startswith("weights from"))
    assert line.startswith(f"weights from {best}: 9 of 16 parameter arrays; as a new run draws "
                           f"them: conv5a/conv4a, ")
    assert json.loads((out / "settings.json").read_text())["weights"] == best
    # Evaluating weights that leave part of this model to be drawn at random is refused.
    partial = train(*common, "--weights", str(source), "--test-only",
                    "--model", "2012-small28+one-tower", cwd=tmp_path)
    assert partial.returncode == 2
    assert partial.stderr.startswith(f"error: --test-only --weights {best}: 7 of 16 parameter "
                                     f"arrays are not there for this model (conv5a/conv4a, ")
    assert partial.stderr.endswith("), so it would evaluate random ones\n")
    # Resumed: the checkpoint's record of the start stands, whatever --weights says now.
    again = train(*common, "--output-dir", str(out), "--weights", weights, "--epochs", "2",
                  "--model", "2012-small28+one-tower", "--resume", "auto", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "resumed from" in again.stdout and "weights from" not in again.stdout
    assert f"note: --weights {weights} left unused" in again.stderr
    assert json.loads((out / "settings.json").read_text())["weights"] == best

    missing = train(*common, "--weights", str(tmp_path / "none.h5"), cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr == f"error: checkpoint {tmp_path / 'none.h5'}: no such file\n"


def test_the_ctrl_c_handler_goes_only_over_pythons_own_and_is_restored():
    from convnet import stopping
    previous = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)     # a run started in a script's background
        with stopping.signals_stop_at_next_step():
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with stopping.signals_stop_at_next_step():
            stopping.check()                               # no Ctrl-C yet: nothing
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)          # Ctrl-C
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # the next: at once
            with pytest.raises(KeyboardInterrupt):
                stopping.check()
            stopping.check()                               # raised once
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_second_run_training_into_a_folder_at_the_same_time_is_refused(tmp_path, tiny_set,
                                                                          capsys):
    """Two runs at once in one folder would mix their logs and checkpoints (a forgotten
    --resume while the first still trains, two new runs started together): the second is
    refused before it writes, and the folder is free again when a run ends."""
    run = tmp_path / "run"
    flags = ["--data-path", str(tiny_set), "-b", "4", "--epochs", "1", "--output-dir", str(run),
             "--gpus", "cpu"]
    run.mkdir()
    lock = os.open(run / train_module.LOCK, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)   # as the run training there holds it
        for resume in ([], ["--resume"]):
            assert train_module.main([*flags, *resume]) == 2
            assert capsys.readouterr().err == (f"error: --output-dir {run}: another run is "
                                               f"training in it now; let it end, or give another "
                                               f"--output-dir\n")
            assert os.listdir(run) == [train_module.LOCK]
    finally:
        os.close(lock)
    assert train_module.main(flags) == 0
    assert train_module.main([*flags[:5], "2", *flags[6:], "--resume"]) == 0


def test_a_folder_made_by_another_run_while_this_one_starts_is_refused(tmp_path, tiny_set,
                                                                          capsys, monkeypatch):
    """A folder still to be made is held once the run is known to train: another run that
    made it meanwhile, and trains there, is found then."""
    run = tmp_path / "run"
    make_schedule, locks = train_module.make_schedule, []

    def another_run_starts(*args, **kwargs):
        run.mkdir()
        locks.append(os.open(run / train_module.LOCK, os.O_RDWR | os.O_CREAT))
        fcntl.flock(locks[-1], fcntl.LOCK_EX)
        return make_schedule(*args, **kwargs)
    monkeypatch.setattr(train_module, "make_schedule", another_run_starts)
    try:
        assert train_module.main(["--data-path", str(tiny_set), "-b", "4", "--epochs", "1",
                                  "--output-dir", str(run), "--gpus", "cpu"]) == 2
    finally:
        os.close(locks[0])
    assert "another run is training in it now" in capsys.readouterr().err


def test_a_run_that_only_evaluates_leaves_its_folder_free(tmp_path, tiny_set, monkeypatch):
    """A resume of a finished run evaluates and writes nothing: it lets the folder go before
    its evaluation, which a run training there meanwhile may take."""
    run = tmp_path / "run"
    flags = ["--data-path", str(tiny_set), "-b", "4", "--epochs", "1", "--output-dir", str(run),
             "--gpus", "cpu"]
    assert train_module.main(flags) == 0
    evaluate, free = train_module.evaluate, []

    def evaluate_while_another_takes_the_folder(*args, **kwargs):
        lock = os.open(run / train_module.LOCK, os.O_RDWR)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            free.append(True)
        except BlockingIOError:
            free.append(False)
        finally:
            os.close(lock)
        return evaluate(*args, **kwargs)
    monkeypatch.setattr(train_module, "evaluate", evaluate_while_another_takes_the_folder)
    assert train_module.main([*flags, "--resume"]) == 0
    assert free == [True]


def test_a_run_ending_while_another_starts_leaves_the_other_refused(tmp_path, tiny_set, capsys,
                                                                    monkeypatch):
    """What the folder holds is looked at once it is held: a run that ended between a new
    run's start and its hold (its files written meanwhile) makes the new run refused, not
    written over it."""
    run = tmp_path / "run"
    flags = ["--data-path", str(tiny_set), "-b", "4", "--epochs", "1", "--output-dir", str(run),
             "--gpus", "cpu"]
    holding = train_module.holding

    @contextlib.contextmanager
    def another_run_ends_first(output_dir):
        (run / "epochs.csv").write_text("")   # the other run's last write, before it let go
        with holding(output_dir):
            yield
    monkeypatch.setattr(train_module, "holding", another_run_ends_first)
    run.mkdir()
    assert train_module.main(flags) == 2
    assert capsys.readouterr().err.startswith(f"error: --output-dir {run} holds a run already "
                                              f"(epochs.csv): add --resume")


def test_a_run_given_more_epochs_and_stopped_before_a_step_goes_on_to_them(tmp_path, tiny_set,
                                                                           monkeypatch):
    """A finished run resumed with --epochs raised and stopped at its first step, before any
    checkpoint of its own: the run's last.h5 records the new target, so that --resume alone
    trains to it, not to the old one (which would only evaluate)."""
    out = tmp_path / "run"
    flags = ["--data-path", str(tiny_set), "-b", "4", "--output-dir", str(out), "--gpus", "cpu"]
    assert train_module.main([*flags, "--epochs", "1"]) == 0

    def stopped(*args):
        raise stopping.Stopped(signal.SIGTERM)
    with monkeypatch.context() as patched:
        patched.setattr(trainer_module.Trainer, "train_step", stopped)
        status = run_command(lambda: train_module.main([*flags, "--epochs", "2", "--resume"]),
                             output_required=False, stopped=train_module.stopped_line)
    assert status == 143
    assert checkpoint.record(str(out / "last.h5"))[1]["epochs"] == 2
    assert train_module.main([*flags, "--resume"]) == 0
    with open(out / "epochs.csv") as handle:
        assert [row.split(",")[0] for row in handle][1:] == ["1", "2"]


def test_a_run_made_while_a_resume_auto_starts_is_not_restarted_over(tmp_path, tiny_set,
                                                                      capsys, monkeypatch):
    """--resume auto found no folder, so no checkpoint; another run made the folder and wrote
    its files before this one held it: refused, those files untouched, not a run started again
    over them."""
    run = tmp_path / "run"
    flags = ["--data-path", str(tiny_set), "-b", "4", "--epochs", "1", "--output-dir", str(run),
             "--gpus", "cpu", "--resume", "auto"]
    holding = train_module.holding

    @contextlib.contextmanager
    def another_run_ends_first(output_dir):
        run.mkdir()
        (run / "epochs.csv").write_text("the other run's\n")
        with holding(output_dir):
            yield
    monkeypatch.setattr(train_module, "holding", another_run_ends_first)
    assert train_module.main(flags) == 2
    assert capsys.readouterr().err == (f"error: --output-dir {run}: another run made it and "
                                       f"wrote epochs.csv there as this one started; run this "
                                       f"command again to go on with that run\n")
    assert (run / "epochs.csv").read_text() == "the other run's\n"


def test_a_folder_on_a_filesystem_without_locks_is_trained_into_with_a_note(
        tmp_path, tiny_set, monkeypatch, capsys):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
    monkeypatch.setattr(fcntl, "flock", no_locks)
    run = tmp_path / "run\n"   # named in the note as shown: on its one line
    assert train_module.main(["--data-path", str(tiny_set), "-b", "4", "--epochs", "1",
                              "--output-dir", str(run), "--gpus", "cpu"]) == 0
    assert capsys.readouterr().err == (f"note: --output-dir {tmp_path}/run\\n: its filesystem "
                                       f"takes no lock "
                                       f"(No locks available), so a second run training into it "
                                       f"at the same time would not be refused\n")


def test_a_hang_up_whose_line_cannot_be_written_ends_the_run_with_129(tmp_path, tiny_set):
    """A closed terminal's SIGHUP comes with standard error gone (here a full disk, which fails
    the same way): the stop line cannot be written, and the run ends with its status all the
    same, not a traceback's 1."""
    out = tmp_path / "run"
    with open("/dev/full", "w") as full:
        process = subprocess.Popen([sys.executable, "-m", "convnet.train", "--data-path",
                                    str(tiny_set), "-b", "4", "--epochs", "1000", "--gpus",
                                    "cpu", "--output-dir", str(out)], cwd=tmp_path,
                                   stdout=subprocess.DEVNULL, stderr=full,
                                   preexec_fn=lambda: signal.signal(signal.SIGHUP,
                                                                    signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 300
        while not (out / "last.h5").exists() and time.monotonic() < deadline and \
                process.poll() is None:
            time.sleep(0.05)
        process.send_signal(signal.SIGHUP)
        assert process.wait(timeout=120) == 128 + signal.SIGHUP
    finally:
        process.kill()


def test_the_job_ending_signals_stop_at_the_next_step_unless_ignored():
    from convnet import stopping
    previous = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGHUP)}
    try:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)     # nohup
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with stopping.signals_stop_at_next_step():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL   # the next: at once
            with pytest.raises(stopping.Stopped) as stopped:
                stopping.check()
            assert stopped.value.number == signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def test_a_ctrl_c_left_unchecked_does_not_stop_the_next_run():
    from convnet import stopping
    with ctrl_c_delivered():
        with stopping.signals_stop_at_next_step():
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)   # Ctrl-C as the run ends
        with stopping.signals_stop_at_next_step():
            try:
                stopping.check()
            except KeyboardInterrupt:   # caught: pytest would take it for its own Ctrl-C
                pytest.fail("a Ctrl-C of the block before stopped this one")


def test_the_ctrl_c_handler_is_left_alone_outside_the_main_thread():
    from convnet import stopping
    errors = []

    def run():
        try:
            with stopping.signals_stop_at_next_step():
                stopping.check()
        except Exception as error:   # signal.signal refuses other threads (ValueError)
            errors.append(error)
    with ctrl_c_delivered():
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        assert errors == [] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
