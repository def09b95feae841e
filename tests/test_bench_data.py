"""tools/bench_data.py end to end on a few small images: it checks the loader's first batch
against NumPy's float32 formulas before timing (or it would time batches the network never gets),
and its report holds the rates it printed. The timings themselves are not asserted."""
import json
import os
import subprocess
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_data_times_checked_batches_and_reports_what_it_printed(tmp_path):
    report = tmp_path / "data.json"
    result = subprocess.run([sys.executable, "tools/bench_data.py", "--batch", "2", "--crop", "8",
                             "--size", "16", "--images", "6", "--jpegs", "2", "--json",
                             str(report)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout
    figures = json.loads(report.read_text())
    rates = figures["loader_images_per_second"]
    threads = sorted({1, len(os.sched_getaffinity(0))})
    assert list(rates) == [f"{place}-{count}-threads" for place in ("memory", "hdf5")
                           for count in threads]
    assert all(rate > 0 for rate in rates.values())
    assert figures["loader_hdf5_per_core"] == rates["hdf5-1-threads"]   # one thread, one core
    per_core = figures["loader_hdf5_per_core"]
    assert f"loader from HDF5, 1 thread: {per_core:.0f} images/s per core" in result.stdout
    assert figures["prepare_images_per_second_per_core"] > 0


def test_loader_rates_count_the_images_after_the_warm_up_batch(monkeypatch, tmp_path):
    """Images per second: the timed batches' images (not the batches, nor the warm-up's) over
    the time they took, here a clock that advances 1 s between the timer's two readings: 6
    images in batches of 2 leave 4 timed."""
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    import bench_data
    ticks = iter(range(100))
    monkeypatch.setattr(bench_data, "time", types.SimpleNamespace(
        perf_counter=lambda: float(next(ticks))))
    args = types.SimpleNamespace(batch=2, crop=8, size=16, images=6)
    rates = bench_data.bench_loader(args, str(tmp_path))
    assert rates and all(rate == 4.0 for rate in rates.values())


def test_a_size_past_the_largest_is_one_line_before_any_work():
    """A side of 10⁸ pixels was an allocation of petabytes and a traceback."""
    result = subprocess.run([sys.executable, "tools/bench_data.py", "--size", "99999999",
                             "--images", "3", "--batch", "2", "--crop", "1", "--jpegs", "1"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().endswith("error: --size must be at most 1024 pixels (a batch "
                                          "of that side is gigabytes); got 99999999 (see --help)")
