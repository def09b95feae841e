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
import report_tables  # noqa: E402

from convnet import alexnet, graph  # noqa: E402
from convnet.backend import get_backend  # noqa: E402
from convnet.backend.cuda import emulator_backend  # noqa: E402
from stand_in_cupy import stand_in_cupy, stand_in_torch  # noqa: E402

CONV_PASSES = 14   # the small model's 5 convolutions of tower a, 3 passes each but conv1's
#                   input gradient (training never asks for the images' gradient)
WINOGRAD_PASSES = 9   # ... of which conv3, conv4 and conv5 have 3 × 3 filters at stride 1
# conv5's filters in a tower: its only 3 × 3 layer with that many
CONV5_FILTERS = next(layer.channels for layer in alexnet.build_model("2012-small28").layers
                     if layer.name == "conv5a")
assert CONV5_FILTERS not in (layer.channels for layer in alexnet.build_model("2012-small28").layers
                             if layer.name in ("conv3a", "conv4a"))


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
    assert not [case for case in convs
                if case["layer"].startswith("conv1") and case["pass"] == "backward input"]
    key = lambda plan: (plan["algorithm"], plan["tile"], plan["splits"],   # noqa: E731
                        plan.get("winograd_tile"))
    for case in convs:
        assert case["ms"] > 0 and case["gflop_s"] > 0 and case["plan"]["algorithm"] == "implicit"
        plans = {key(plan) for plan in case["other_plans"]}
        assert len(plans) == len(case["other_plans"]) >= 2, "distinct plans beside the launcher's"
        assert key(case["plan"]) not in plans
        assert all(plan["ms"] > 0 for plan in case["other_plans"])
        winograd = case.get("winograd")
        assert (winograd is not None) == case["layer"].endswith("3×3/1)"), case["layer"]
        if winograd:
            assert winograd["ms"] > 0 and winograd["plan"]["algorithm"] == "winograd"
            assert key(winograd["plan"]) not in plans
            assert {plan["algorithm"] for plan in case["other_plans"]} == {"implicit",
                                                                           "winograd"}
            assert {plan.get("winograd_tile") for plan in case["other_plans"]} == {None, 2, 4}
    assert sum("winograd" in case for case in convs) == WINOGRAD_PASSES
    memory = [case for case in report["cases"] if "gb_s" in case]
    assert {case["pass"] for case in memory} >= {"forward", "backward", "bias", "SGD update"}
    assert "convolution passes timed" not in capsys.readouterr().out   # no cuDNN here


def test_the_figures_are_their_operations_and_bytes_over_the_time(on_the_emulator, tmp_path,
                                                                   monkeypatch):
    """Every timing 2 ms: each convolution's GFLOP/s is 2 × its multiply-adds (both towers'
    inputs of conv3) × the batch, by either algorithm, and its share of the FP32 peak (an
    H100's 132 SMs × 128 units × 2 at 1.98 GHz); the copy's bandwidth is its bytes read and
    written; each memory-bound op's bytes are those of its inputs and outputs (max pooling
    backward: dy, x and y read, dx written), and its share of the copy's bandwidth."""
    elapsed = 2.0
    monkeypatch.setattr(bench_kernels, "gpu_modules", lambda tool: (stand_in_cupy(elapsed), None))
    report = tmp_path / "bench.json"
    assert bench_kernels.main(["--model", "2012-small28", "--batch", "2", "--repeats", "1",
                               "--json", str(report)]) == 0
    report = json.loads(report.read_text())
    per_second = 1e3 / elapsed
    assert report["copy_bandwidth_gb_s"] == pytest.approx(2 * 4 * 4096 * per_second / 1e9)
    model = alexnet.build_model("2012-small28")
    infos, shapes = graph.analyze(model), graph.input_shapes(model)
    convs = {case["layer"].split()[0]: case for case in report["cases"]
             if "gflop_s" in case and case["pass"] == "forward"}
    assert len(convs) == 5
    peak = 132 * 128 * 2 * 1.98e9
    assert report["fp32_peak_tflops"] == pytest.approx(peak / 1e12)
    for name, case in convs.items():
        assert case["ms"] == elapsed
        assert case["gflop_s"] == pytest.approx(2 * infos[name].multiply_adds * 2 * per_second / 1e9), name
        assert case["percent_of_fp32_peak"] == pytest.approx(100 * case["gflop_s"] * 1e9 / peak)
        if "winograd" in case:
            assert case["winograd"]["gflop_s"] == pytest.approx(case["gflop_s"]), name
    memory = [case for case in report["cases"] if "gb_s" in case]
    for case in memory:
        assert case["percent_of_copy"] == pytest.approx(
            100 * case["gb_s"] / report["copy_bandwidth_gb_s"]), case
    pools = {(case["layer"].split()[0], case["pass"]): case for case in report["cases"]
             if case["layer"].startswith("pool")}
    for (name, pass_name), case in pools.items():
        x = 4 * np.prod(shapes[name][0]) * 2
        y = 4 * np.prod(infos[name].output_shape) * 2
        moved = x + y if pass_name == "forward" else 2 * x + 2 * y
        assert case["gb_s"] == pytest.approx(moved * per_second / 1e9), (name, pass_name)
    assert len(pools) == 6
    norms = {(case["layer"].split()[0], case["pass"]): case for case in report["cases"]
             if case["layer"].startswith(("rnorm", "cnorm"))}
    for (name, pass_name), case in norms.items():
        x = 4 * np.prod(shapes[name][0]) * 2
        moved = 3 * x if pass_name == "forward" else 5 * x   # + y, denoms; dy, x, y, denoms, dx
        assert case["gb_s"] == pytest.approx(moved * per_second / 1e9), (name, pass_name)
    assert len(norms) == 6
    conv1 = 4 * np.prod(infos["conv1a"].output_shape) * 2       # bytes of conv1's output
    fc6 = np.prod(infos["fc6a"].output_shape) * 2                # elements of fc6's output
    fc6_weights = (4 * sum(np.prod(shape) for shape in shapes["fc6a"])   # bytes of its weights
                   * infos["fc6a"].output_shape[0])
    moved = {"bias": 2 * conv1, "relu forward": 2 * conv1, "relu backward": 3 * conv1,
             "tanh forward": 2 * conv1, "tanh backward": 3 * conv1, "bias gradient": conv1,
             "dropout mask + apply": 2 * 4 * fc6 + 2 * fc6,       # x in, out; mask out, in
             "softmax": 2 * 4 * model.geometry.classes * 2,
             "SGD update": 5 * fc6_weights}                        # w, v, grad in; w, v out
    elementwise = {case["pass"]: case for case in memory
                   if not case["layer"].startswith(("pool", "rnorm", "cnorm"))}
    assert elementwise.keys() == moved.keys()
    for pass_name, case in elementwise.items():
        assert case["gb_s"] == pytest.approx(moved[pass_name] * per_second / 1e9), pass_name


def test_a_plan_with_a_wrong_output_is_reported_and_left_out(on_the_emulator, tmp_path):
    def broken(backend):
        """conv1's forward pass under the launcher's plan, every forward pass with tiles of 64,
        and conv5's by Winograd under its launcher's plan leave an output element unwritten."""
        real = backend.conv_forward

        def conv_forward(x, w, tile=None, **kwargs):
            y = real(x, w, tile=tile, **kwargs)
            winograd_conv5 = (kwargs.get("algorithm") == "winograd" and tile is None and
                              w.shape[3] == CONV5_FILTERS)
            if tile == 64 or (tile is None and x.shape[0] == 3) or winograd_conv5:
                y[-1, -1, -1, -1] = np.nan
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
        if "winograd" in case:
            assert ("not_timed" in case["winograd"]) == case["layer"].startswith("conv5"), case


def test_check_only_runs_every_case_once_and_times_nothing(on_the_emulator, tmp_path, capsys):
    """make gpu-check's ncu step: each case's output checked under the plans of its rows only
    (the launcher's, and Winograd's where it serves: what the profiler is to see), no timer,
    copy or report."""
    runs = []

    def counted(backend):
        for op in ("conv_forward", "conv_backward_input", "conv_backward_filters"):
            real = getattr(backend, op)
            setattr(backend, op, lambda *args, real=real, **kwargs: runs.append(kwargs) or
                    real(*args, **kwargs))
    on_the_emulator.append(counted)
    report = tmp_path / "bench.json"
    status = bench_kernels.main(["--model", "2012-small28", "--batch", "1", "--check-only",
                                 "--json", str(report)])
    assert status == 0 and not report.exists()
    assert "GB/s" not in capsys.readouterr().out
    plans = {tuple(sorted(set(kwargs) - {"stride", "pad", "input_size", "filter_size"}))
             for kwargs in runs}
    assert plans == {(), ("algorithm",)}, "no other tile or slicing than the launcher's"


def test_only_the_families_named_run(on_the_emulator, tmp_path):
    report = tmp_path / "bench.json"
    assert bench_kernels.main(["pool", "--model", "2012-small28", "--batch", "1", "--repeats",
                               "1", "--json", str(report)]) == 0
    report = json.loads(report.read_text())
    assert report["families"] == ["pool"]
    assert [case["layer"].split()[0] for case in report["cases"]] == ["pool1a", "pool1a",
                                                                      "pool2a", "pool2a",
                                                                      "pool3a", "pool3a"]


def test_a_run_cut_short_keeps_the_cases_it_timed(on_the_emulator, tmp_path, monkeypatch):
    """The report is rewritten after every case: a run ended at its first Winograd row (conv3's
    forward pass) keeps conv1's and conv2's passes, marked incomplete."""
    def interrupted(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(bench_kernels, "winograd_row", interrupted)
    report = tmp_path / "bench.json"
    with pytest.raises(KeyboardInterrupt):
        bench_kernels.main(["conv", "--model", "2012-small28", "--batch", "1", "--repeats", "1",
                            "--json", str(report)])
    report = json.loads(report.read_text())
    assert not report["complete"]
    assert [(case["layer"].split()[0], case["pass"]) for case in report["cases"]] == [
        ("conv1a", "forward"), ("conv1a", "backward filters"), ("conv2a", "forward"),
        ("conv2a", "backward input"), ("conv2a", "backward filters")]


def test_the_peers_ratio_is_its_time_over_ours(on_the_emulator, tmp_path, monkeypatch):
    """Ours 2 ms, the peer's 3 ms: every case has a peer (the convolutions: cuDNN; the others:
    PyTorch), and each, and each Winograd row, is 1.5× faster than the peer, and so are the
    convolutions in total."""
    monkeypatch.setattr(bench_kernels, "gpu_modules",
                        lambda tool: (stand_in_cupy(2.0), stand_in_torch(3.0)))
    report = tmp_path / "bench.json"
    assert bench_kernels.main(["--model", "2012-small28", "--batch", "1", "--repeats", "1",
                               "--json", str(report)]) == 0
    report = json.loads(report.read_text())
    assert report["peer"]["cudnn_allow_tf32"] is False
    peers = {(case["layer"].split()[0], case["pass"]): case for case in report["cases"]
             if "peer_ms" in case}
    assert len(peers) == len(report["cases"]) > CONV_PASSES
    for case in peers.values():
        assert case["peer"] == ("cuDNN" if "plan" in case else "PyTorch")
        assert case["peer_ms"] == 3.0 and case["ratio_peer_over_ours"] == 1.5
        assert case.get("winograd", {}).get("ratio_peer_over_ours", 1.5) == 1.5
    assert report["conv_total_passes"] == CONV_PASSES
    assert report["conv_total_ratio"] == report["conv_total_ratio_fastest_algorithm"] == 1.5
    # README's table of it (tools/report_tables.py): a row a pass, one more a Winograd pass
    lines = report_tables.tables(report)
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| layer")]
    assert len(rows) == len(report["cases"]) + WINOGRAD_PASSES
    assert lines[-1].startswith(f"The {CONV_PASSES} convolution passes against cuDNN: 1.50× with "
                                f"the launcher's plans, 1.50× with the faster algorithm")


def test_runs_queued_past_the_flush_are_counted_host_bound(on_the_emulator, tmp_path,
                                                           monkeypatch):
    """Events that time a flush of a picosecond: queueing any run outlasts it."""
    monkeypatch.setattr(bench_kernels, "gpu_modules", lambda tool: (stand_in_cupy(1e-9), None))
    report = tmp_path / "bench.json"
    assert bench_kernels.main(["pool", "--model", "2012-small28", "--batch", "1", "--repeats",
                               "3", "--json", str(report)]) == 0
    report = json.loads(report.read_text())
    assert [case["host_bound_runs"] for case in report["cases"]] == [3] * 6


@pytest.mark.parametrize("name", ["2012", "2012-small64"])
def test_the_peers_convolutions_are_ours_in_size(name):
    """cuDNN is timed on the convolution we time: the output gradient its backward passes take
    has the shape of ours (in NCHW), its filters ours with both towers' input channels where
    ours reads both (conv3). Its input carries conv1's overhang past the padding as zeros; a
    peer given the padding there twice would convolve a larger image (the default network's
    conv2 at 29² for our 27², conv3-5 at 14² for 13²) and flatter our ratio by as much."""
    cases = bench_kernels.Cases(stand_in_cupy(), stand_in_torch(1.0), get_backend("reference"),
                                2, name)
    nchw = lambda shape: (shape[-1],) + tuple(shape[:-1])   # noqa: E731
    passes = 0
    for case in cases.all():
        if case["kind"] != "conv" or case["pass"] == "forward":
            continue
        ours = case["inputs"]()
        dy, x, weights = case["torch"][1](*ours)
        assert dy.shape == nchw(ours[0].shape), case["layer"]
        towers = len(ours) - 1
        assert weights.shape[0] == dy.shape[1] and x.shape[:2] == (2, weights.shape[1])
        if case["pass"] == "backward input":
            assert weights.shape == nchw(np.concatenate(ours[1:]).shape), case["layer"]
        else:
            assert x.shape[2] >= ours[1].shape[1] and towers * ours[1].shape[0] == x.shape[1]
        passes += 1
    assert passes == 9   # the 5 layers' filter gradients, and conv2-5's input gradients

