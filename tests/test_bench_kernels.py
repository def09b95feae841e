"""tools/bench_kernels.py end to end without a GPU, so that its first GPU run does not fail on
its own logic: the emulator stands in for the GPU, and stand_in_cupy for the CuPy calls the
benchmark makes itself, on the small model's shapes. The timings mean nothing here; what is checked is that every case and plan runs and is
recorded, and that a plan whose output is wrong is reported and left out, not fatal."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import bench_kernels  # noqa: E402

from convnet.backend.cuda import emulator_backend  # noqa: E402
from stand_in_cupy import stand_in_cupy  # noqa: E402

CONV_PASSES = 15   # the small model's 5 convolutions of tower a, 3 passes each


@pytest.fixture
def on_the_emulator(monkeypatch):
    """The benchmark with the emulator for its backends; returns the list of backend hooks
    (functions of a backend) applied to every backend it makes."""
    hooks = []

    def get_backend(name, **options):
        backend = emulator_backend(**options)
        for hook in hooks:
            hook(backend)
        return backend
    monkeypatch.setattr(bench_kernels, "gpu_modules", lambda tool: (stand_in_cupy(), None))
    monkeypatch.setattr(bench_kernels, "get_backend", get_backend)
    monkeypatch.setattr(bench_kernels, "COPY_ELEMENTS", 4096)
    return hooks


def run(tmp_path):
    report = tmp_path / "bench.json"
    status = bench_kernels.main(["--model", "2012-small28", "--batch", "1", "--repeats", "1",
                                 "--plans", "--json", str(report)])
    return status, json.loads(report.read_text())


def test_every_case_and_plan_is_timed_and_recorded(on_the_emulator, tmp_path, capsys):
    status, report = run(tmp_path)
    assert status == 0 and report["complete"]
    convs = [case for case in report["cases"] if "plan" in case]
    assert len(convs) == CONV_PASSES
    for case in convs:
        assert case["ms"] > 0 and case["gflop_s"] > 0
        plans = {(plan["tile"], plan["splits"]) for plan in case["other_plans"]}
        assert len(plans) == len(case["other_plans"]) >= 2, "distinct plans beside the launcher's"
        assert (case["plan"]["tile"], case["plan"]["splits"]) not in plans
        assert all(plan["ms"] > 0 for plan in case["other_plans"])
    memory = [case for case in report["cases"] if "gb_s" in case]
    assert {case["pass"] for case in memory} >= {"forward", "backward", "bias", "SGD update"}
    assert "convolution passes timed" not in capsys.readouterr().out   # no cuDNN here


def test_a_plan_with_a_wrong_output_is_reported_and_left_out(on_the_emulator, tmp_path):
    def broken(backend):
        """conv1's forward pass under the launcher's plan, and every forward pass with tiles of
        64, leave their output unwritten."""
        real = backend.conv_forward

        def conv_forward(x, w, tile=None, **kwargs):
            y = real(x, w, tile=tile, **kwargs)
            if tile == 64 or (tile is None and x.shape[0] == 3):
                y[...] = np.nan
            return y
        backend.conv_forward = conv_forward
    on_the_emulator.append(broken)
    status, report = run(tmp_path)
    assert status == 1 and report["complete"]
    forwards = [case for case in report["cases"] if case["pass"] == "forward" and
                case["layer"].startswith("conv")]
    assert forwards[0]["not_timed"] == "an output is not finite" and "ms" not in forwards[0]
    for case in forwards[1:]:
        assert case["ms"] > 0
        for plan in case["other_plans"]:
            assert ("not_timed" in plan) == (plan["tile"] == 64), plan
