"""The CPU step benchmark runs end to end (on a small model; the figures are not asserted)."""
import json
import subprocess
import sys
from pathlib import Path

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
    else:
        assert "PyTorch is not importable" in result.stdout
