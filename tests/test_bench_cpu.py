"""The CPU step benchmark runs end to end (on a small model; the timings are not asserted, only
that its figures agree with each other), and refuses to time networks that disagree."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

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
    if "torch" in figures:          # PyTorch importable: the comparison ran after agreeing
        assert "ratio reference / PyTorch" in result.stdout
        assert figures["probability_max_relative_difference"] < 1e-3
        # the ratio is of the rates reported beside it: reference / PyTorch
        assert figures["ratio"] == pytest.approx(figures["reference_images_per_second"] /
                                                 figures["torch_images_per_second"])
    else:
        assert "PyTorch is not importable" in result.stdout


def test_bench_does_not_time_networks_that_disagree(monkeypatch, capsys):
    """Above 1e-3 (relative) the two networks do not compute the same thing: no timing."""
    pytest.importorskip("torch", reason="PyTorch is not installed (make bench-cpu installs it)")
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import bench_cpu_step

    def not_timed(step, repeats):
        raise AssertionError("timed networks that disagree")
    monkeypatch.setattr(bench_cpu_step, "check_agreement", lambda *args: 2e-3)
    monkeypatch.setattr(bench_cpu_step, "time_steps", not_timed)
    assert bench_cpu_step.main(["--model", "2012-small28", "--batch", "4", "--repeats", "1"]) == 1
    assert "the reference and PyTorch networks disagree" in capsys.readouterr().err
