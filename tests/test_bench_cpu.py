"""The CPU step benchmark runs end to end (on a small model; the timings are not asserted, only
that its figures agree with each other), and refuses to time networks that disagree."""
import json
import platform
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from convnet import provenance

from numpy_torch import numpy_torch

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "bench_cpu_step.py"


def test_bench_prints_images_per_second(tmp_path):
    report = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--model", "2012-small28", "--batch",
                             "4", "--repeats", "1", "--json", str(report)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "images/s" in result.stdout
    figures = json.loads(report.read_text())
    assert figures["reference_images_per_second"] > 0
    # what the reference's speed depends on: NumPy's BLAS among the versions
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except TypeError:   # NumPy before 1.26: show_config() has no mode, and says no BLAS
        assert figures["blas"] is None
    else:
        assert figures["blas"] == f"{blas['name']} {blas['version']}"
    assert (figures["python"], figures["numpy"]) == (platform.python_version(), np.__version__)
    assert figures["commit"] == provenance.running()
    if "torch" in figures:          # PyTorch importable: the comparison ran after agreeing
        assert "ratio reference / PyTorch" in result.stdout
        assert figures["probability_max_relative_difference"] < 1e-3
        # the ratio is of the rates reported beside it: reference / PyTorch
        assert figures["ratio"] == pytest.approx(figures["reference_images_per_second"] /
                                                 figures["torch_images_per_second"])
    else:
        assert "PyTorch is not importable" in result.stdout


def bench_cpu_step_on_numpy_torch(monkeypatch):
    """tools/bench_cpu_step.py as it runs with PyTorch, with tests/numpy_torch.py in its place:
    the peer network is built and compared for real; its training steps are not (the stand-in
    has no autograd), so the tests that reach the timing replace it."""
    torch = types.SimpleNamespace(**vars(numpy_torch), __version__="stand-in",
                                  set_num_threads=lambda count: None, get_num_threads=lambda: 1)
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import bench_cpu_step
    return bench_cpu_step


def test_bench_does_not_time_networks_that_disagree(monkeypatch, capsys):
    """Above 1e-3 (relative) the two networks do not compute the same thing: no timing."""
    bench_cpu_step = bench_cpu_step_on_numpy_torch(monkeypatch)

    def not_timed(draw, step, repeats):
        raise AssertionError("timed networks that disagree")
    monkeypatch.setattr(bench_cpu_step, "check_agreement", lambda *args: 2e-3)
    monkeypatch.setattr(bench_cpu_step, "time_steps", not_timed)
    assert bench_cpu_step.main(["--model", "2012-small28", "--batch", "4", "--repeats", "1"]) == 1
    assert "the reference and PyTorch networks disagree" in capsys.readouterr().err


def test_the_rates_and_ratio_are_of_the_two_steps(monkeypatch, capsys, tmp_path):
    """A reference step of 0.5 s and a PyTorch step of 2 s, batch 4: 8 and 2 images/s, and the
    ratio reference / PyTorch is the reference's rate over PyTorch's, 4 (PyTorch's time over
    ours). The agreement check runs on the real networks first."""
    bench_cpu_step = bench_cpu_step_on_numpy_torch(monkeypatch)
    seconds = iter([0.5, 2.0])
    monkeypatch.setattr(bench_cpu_step, "time_steps", lambda draw, step, repeats: next(seconds))
    report = tmp_path / "bench.json"
    assert bench_cpu_step.main(["--model", "2012-small28", "--batch", "4", "--repeats", "1",
                                "--json", str(report)]) == 0
    figures = json.loads(report.read_text())
    assert figures["reference_images_per_second"] == pytest.approx(8.0)
    assert figures["torch_images_per_second"] == pytest.approx(2.0)
    assert figures["ratio"] == pytest.approx(4.0)
    assert figures["probability_max_relative_difference"] < 1e-4
    assert "ratio reference / PyTorch: 4.00x" in capsys.readouterr().out


def test_a_step_is_timed_without_drawing_its_inputs(monkeypatch):
    """The clock runs around the step alone: drawing a batch (here 100 s of a stand-in clock,
    the step 1 s) is done before it starts, afresh for every run, the warm-up's included."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import bench_cpu_step
    clock, drawn, stepped = [0.0], [], []
    monkeypatch.setattr(bench_cpu_step, "time", types.SimpleNamespace(
        perf_counter=lambda: clock[0]))

    def draw():
        clock[0] += 100.0
        drawn.append(object())
        return drawn[-1], len(drawn)

    def step(images, number):
        clock[0] += 1.0
        stepped.append(images)

    assert bench_cpu_step.time_steps(draw, step, 3) == 1.0
    assert stepped == drawn and len(drawn) == 4   # one warm-up, 3 timed; each its own inputs


def test_the_cores_are_those_the_process_may_run_on(monkeypatch, tmp_path):
    """Under taskset or a container's cpuset os.cpu_count() names the machine's cores: PyTorch
    was given a thread for each (several to a core it may use, against NumPy's BLAS, which keeps
    to the process's own) and the report recorded them."""
    bench_cpu_step = bench_cpu_step_on_numpy_torch(monkeypatch)
    threads = []
    monkeypatch.setattr(sys.modules["torch"], "set_num_threads", threads.append, raising=False)
    monkeypatch.setattr(bench_cpu_step.provenance.os, "sched_getaffinity", lambda pid: {3})
    monkeypatch.setattr(bench_cpu_step.provenance.os, "cpu_count", lambda: 64)
    monkeypatch.setattr(bench_cpu_step, "time_steps", lambda draw, step, repeats: 1.0)
    report = tmp_path / "bench.json"
    assert bench_cpu_step.main(["--model", "2012-small28", "--batch", "4", "--repeats", "1",
                                "--json", str(report)]) == 0
    assert threads == [1] and json.loads(report.read_text())["cores"] == 1
