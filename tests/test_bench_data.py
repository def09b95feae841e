"""tools/bench_data.py end to end on a few small images: it checks the loader's first batch
against NumPy's float32 formulas before timing (or it would time batches the network never gets),
and its report holds the rates it printed. The timings themselves are not asserted."""
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

import pytest

from convnet import provenance

ROOT = Path(__file__).resolve().parents[1]


def test_bench_data_times_checked_batches_and_reports_what_it_printed(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    import bench_data
    report = tmp_path / "data.json"
    result = subprocess.run([sys.executable, "tools/bench_data.py", "--batch", "2", "--crop", "8",
                             "--size", "16", "--images", "6", "--jpegs", "2", "--repeats", "3",
                             "--json",
                             str(report)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout
    figures = json.loads(report.read_text())
    rates = figures["loader_images_per_second"]
    threads = sorted({1, len(os.sched_getaffinity(0))})
    places = ("memory", "file", "hdf5") + (   # a folder in memory is read cold by none
        () if bench_data.filesystem(tempfile.gettempdir()) in ("tmpfs", "ramfs")
        else ("file-cold", "hdf5-cold"))
    assert list(rates) == [f"{place}-{count}-threads" for place in places for count in threads]
    assert all(rate > 0 for rate in rates.values())
    assert figures["loader_file_per_core"] == rates["file-1-threads"]   # one thread, one core
    per_core = figures["loader_file_per_core"]
    assert f"loader from the file, 1 thread: {per_core:.0f} images/s per core" in result.stdout
    cores = threads[-1]
    def ratio(cold):
        return rates[f"file{cold}-{cores}-threads"] / rates[f"hdf5{cold}-{cores}-threads"]
    said = ", ".join(f"{ratio(cold):.2f}× {name}"
                     for cold, name in (("", "warm"), ("-cold", "cold"))
                     if f"file{cold}-{cores}-threads" in rates)
    assert f"straight from the file against through HDF5, {cores} thread(s): {said}\n" in \
        result.stdout
    assert figures["prepare_images_per_second_per_core"] > 0
    # What the figures depend on, which the report did not say: the loader's images, how many
    # prepare stored (its rate counts the pool's start), the commit on its own.
    assert figures["images"] == 6 and figures["prepare_images_stored"] > 0
    assert figures["repeats"] == 3
    assert figures["commit"] == provenance.running() and figures["commit"] in figures["machine"]


def test_rates_per_core_are_measured_on_as_many_cores(monkeypatch):
    """Every thread of the process, one started before too, kept to the cores counted; all of
    them given back after."""
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    import bench_data
    allowed = os.sched_getaffinity(0)
    seen, go = [], threading.Event()

    def waiting():
        go.wait()
        seen.append(os.sched_getaffinity(0))
    earlier = threading.Thread(target=waiting)
    earlier.start()
    with bench_data.on_cores(1):
        go.set()
        earlier.join()
        assert len(os.sched_getaffinity(0)) == 1
    assert seen == [{min(allowed)}] and os.sched_getaffinity(0) == allowed
    assert bench_data.filesystem("/proc/self") == "proc"


def test_loader_rates_count_an_epoch_whose_batches_are_all_made_while_timed(monkeypatch,
                                                                           tmp_path):
    """Images per second: one whole epoch's images over the time it took, here a clock that
    advances 1 s between the timer's two readings: 6 images, 6 images/s. The loader makes the
    next batch while the caller holds one: a batch made during the warm-up's check, before the
    clock started, was counted as timed (2 batches of 100 timed as 1: 3.8 million images/s).
    Every batch of the timed epoch is made between the readings (b: a batch begun, c: a clock
    reading), whatever the warm-up's check takes."""
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    import bench_data
    from convnet.data import loader
    events, ticks = [], iter(range(100))

    def perf_counter():
        events.append("c")
        return float(next(ticks))
    monkeypatch.setattr(bench_data, "time", types.SimpleNamespace(perf_counter=perf_counter))
    make = loader.Loader.train_batch
    monkeypatch.setattr(loader.Loader, "train_batch",
                        lambda *arguments: events.append("b") or make(*arguments))
    check = bench_data.check_batch

    def slow_check(*arguments):   # time for the loader's thread to make a batch ahead
        time.sleep(0.2)
        check(*arguments)
    monkeypatch.setattr(bench_data, "check_batch", slow_check)
    args = types.SimpleNamespace(batch=2, crop=8, size=16, images=6, repeats=1)
    rates = bench_data.bench_loader(args, str(tmp_path))
    assert rates and all(rate == 6.0 for rate in rates.values())
    assert re.fullmatch(f"(b+cbbbc){{{len(rates)}}}", "".join(events)), "".join(events)


def test_a_size_past_the_largest_is_one_line_before_any_work():
    """A side of 10⁸ pixels was an allocation of petabytes and a traceback."""
    result = subprocess.run([sys.executable, "tools/bench_data.py", "--size", "99999999",
                             "--images", "3", "--batch", "2", "--crop", "1", "--jpegs", "1"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().endswith("error: --size must be at most 1024 pixels (a batch "
                                          "of that side is gigabytes); got 99999999 (see --help)")


@pytest.mark.parametrize("flag", ["--images", "--jpegs"])
def test_a_count_past_the_machines_memory_is_one_line_before_any_work(flag):
    """10¹² images was an allocation of petabytes and a traceback (or, for prepare's
    photographs, a machine driven out of memory one crop at a time)."""
    flags = {"--images": "2", "--jpegs": "1", "--batch": "1", "--size": "8", "--crop": "4",
             flag: str(10 ** 12)}
    result = subprocess.run([sys.executable, "tools/bench_data.py",
                             *(word for pair in flags.items() for word in pair)],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert re.fullmatch(rf"bench_data.py: error: {flag} {10 ** 12}: needs up to [0-9.]+ GiB of "
                        rf"memory; this machine has [0-9.]+ GiB \(see --help\)\n", result.stderr)
