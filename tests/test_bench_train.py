"""tools/bench_train.py end to end without a GPU, so that its first GPU run does not fail on its
own logic: emulators stand in for the GPU (one backend for both towers as --gpus 0, one per
tower as --gpus 0,0) and stand_in_cupy for the CuPy calls the benchmark makes itself, on the
small model. The timings mean nothing here; what is checked is that every placement, with each
convolution algorithm, and every layer's passes are timed and recorded."""
import dataclasses
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import bench_train  # noqa: E402
import report_tables  # noqa: E402

from convnet import alexnet  # noqa: E402
from convnet.backend import get_backend  # noqa: E402
from convnet.placement import Placement  # noqa: E402
from stand_in_cupy import Event, stand_in_cupy, stand_in_torch  # noqa: E402


def emulated_placement(gpus, conv_algorithm=None):
    emulator = lambda: get_backend("emulator", conv_algorithm=conv_algorithm)   # noqa: E731
    if "," in gpus:
        return Placement({"a": emulator(), "b": emulator()}), "two emulators"
    return Placement(emulator()), "one emulator"


def test_every_placement_and_layer_is_timed_and_recorded(monkeypatch, tmp_path):
    monkeypatch.setattr(bench_train, "gpu_modules", lambda tool: (stand_in_cupy(), None))
    monkeypatch.setattr(bench_train, "select_placement", emulated_placement)
    report_path = tmp_path / "train.json"
    bench_train.main(["--model", "2012-small28", "--batch", "1", "--repeats", "1",
                      "--json", str(report_path)])
    report = json.loads(report_path.read_text())
    assert [(entry["gpus"], entry["conv_algorithm"]) for entry in report["placements"]] == \
        [("0", "implicit"), ("0", "winograd"), ("0,0", "implicit"), ("0,0", "winograd")]
    assert all(entry["step_ms"] > 0 for entry in report["placements"])
    assert report["images_per_second"] > 0 and report["projected_90_epoch_hours"] > 0
    layers = alexnet.build_model("2012-small28").layers
    assert [(row["layer"], row["pass"]) for row in report["layers"]] == \
        [(layer.name, name) for layer in layers for name in ("forward", "backward")]
    assert all(row["ms"] > 0 for row in report["layers"])
    assert "torch_step_ms" not in report     # no PyTorch peer here
    assert report["complete"] and report["commit"] and report["kernels_hash"]


def test_a_step_time_is_the_median_of_the_timed_steps():
    """After WARMUP untimed steps, the median of the timed ones: one slow step (a page fault, a
    clock change) among five moves a mean by a fifth of its delay, a median not at all."""
    times = iter([30.0, 10.0, 11.0, 90.0, 12.0])
    calls = []

    def record(begin, end):
        calls.append(begin)
        begin()
        end()
    median = bench_train.median_ms(record, 5, Event(), Event(), lambda start, stop: next(times))
    assert median == 12.0
    assert len(calls) == bench_train.WARMUP + 5


def test_the_rates_are_the_batch_over_the_step(monkeypatch, tmp_path):
    """Every timing 40 ms: 2 images a step are 50 images/s, and 90 ImageNet epochs
    (1,281,167 images each) take 90 × 1281167 / 50 s."""
    monkeypatch.setattr(bench_train, "gpu_modules", lambda tool: (stand_in_cupy(40.0), None))
    monkeypatch.setattr(bench_train, "select_placement", emulated_placement)
    report_path = tmp_path / "train.json"
    bench_train.main(["--model", "2012-small28", "--batch", "2", "--repeats", "1", "--gpus", "0",
                      "--conv-algorithms", "implicit", "--json", str(report_path)])
    report = json.loads(report_path.read_text())
    (entry,) = report["placements"]
    assert entry["step_ms"] == 40.0 and entry["images_per_second"] == pytest.approx(50)
    assert report["images_per_second"] == pytest.approx(50)
    assert report["projected_90_epoch_hours"] == pytest.approx(90 * 1281167 / 50 / 3600)


def test_a_step_that_fails_is_not_timed(monkeypatch, tmp_path):
    """A loss that is not finite in a timed step stops the benchmark with one line, and the
    report written so far holds the placements timed before it and says it is incomplete."""
    monkeypatch.setattr(bench_train, "gpu_modules", lambda tool: (stand_in_cupy(), None))
    monkeypatch.setattr(bench_train, "select_placement", emulated_placement)
    original = bench_train.Network.forward
    steps = []   # the second placement's timed step (after 2 × WARMUP + 1 before it) diverges

    def diverged(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        steps.append(None)
        return dataclasses.replace(result, loss=float("nan")) \
            if len(steps) == 2 * bench_train.WARMUP + 2 else result
    monkeypatch.setattr(bench_train.Network, "forward", diverged)
    report_path = tmp_path / "train.json"
    with pytest.raises(SystemExit, match=r"--gpus 0 --conv-algorithm winograd: the loss of "
                                         r"timed step 0 is nan"):
        bench_train.main(["--model", "2012-small28", "--batch", "1", "--repeats", "1",
                          "--json", str(report_path)])
    report = json.loads(report_path.read_text())
    assert not report["complete"]
    assert [(entry["gpus"], entry["conv_algorithm"]) for entry in report["placements"]] == \
        [("0", "implicit")]


def test_the_peer_ratios_are_its_step_over_ours(monkeypatch, tmp_path):
    """With the PyTorch peer: its step of 60 ms against each placement's own step time, and the
    headline ratio against the first placement's (the stand-in peer's steps do nothing)."""
    monkeypatch.setattr(bench_train, "gpu_modules",
                        lambda tool: (stand_in_cupy(), stand_in_torch(60.0)))
    monkeypatch.setattr(bench_train, "select_placement", emulated_placement)
    peer_losses = []

    def peer_step(torch, model, params, batch):
        def record(begin, end):
            begin()
            end()
            peer_losses.append(2.3)
        return None, record, peer_losses
    monkeypatch.setattr(bench_train, "torch_step", peer_step)
    report_path = tmp_path / "train.json"
    bench_train.main(["--model", "2012-small28", "--batch", "2", "--repeats", "1", "--gpus", "0",
                      "0,0", "--conv-algorithms", "implicit", "--json", str(report_path)])
    report = json.loads(report_path.read_text())
    assert len(peer_losses) == bench_train.WARMUP + 1
    assert report["torch_step_ms"] == 60.0
    assert report["torch_images_per_second"] == pytest.approx(2 / 0.060)
    first, second = report["placements"]
    assert report["ratio_torch_over_ours"] == pytest.approx(60.0 / first["step_ms"])
    for entry in (first, second):
        assert entry["ratio_torch_over_ours"] == pytest.approx(60.0 / entry["step_ms"])
    assert first["step_ms"] != second["step_ms"]   # wall-clock times: the two ratios differ
    # README's table of it (tools/report_tables.py): a row a placement, then a row a layer's pass
    rows = [line for line in report_tables.tables(report) if line.startswith("| ")]
    assert rows[1:3] == [f"| {entry['gpus']} | implicit | {entry['step_ms']:.2f} | "
                         f"{entry['images_per_second']:,.0f} | "
                         f"{entry['ratio_torch_over_ours']:.2f}× |" for entry in (first, second)]
    assert len(rows) == 3 + 1 + len(report["layers"])
