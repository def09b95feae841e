"""tools/report_tables.py: the GPU benchmarks' reports as README's tables, line by line, from
reports written here by hand with figures whose rendering is known; the benchmarks' own reports
(through the emulator) are rendered in tests/test_bench_kernels.py and test_bench_train.py."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import report_tables  # noqa: E402

RUN = {"device": "NVIDIA H100 80GB HBM3", "compute_capability": "90", "driver": 13000,
       "driver_release": "580.95.05", "cuda_runtime": 13000, "cupy": "14.2.0",
       "peer": {"torch": "2.11.0", "cudnn": 91200, "cudnn_allow_tf32": False,
                "matmul_allow_tf32": False, "cudnn_benchmark": True},
       "python": "3.12.3", "commit": "0123456789abcdef0123456789abcdef01234567",
       "kernels_hash": "fedcba9876543210" * 4, "kernels_from": "kernels/build/convnet.fatbin",
       "model": "2012", "batch": 128, "repeats": 25, "complete": True}
RUN_LINE = ("NVIDIA H100 80GB HBM3 (sm_90, driver 580.95.05, CUDA runtime 13000, CuPy 14.2.0; "
            "peer PyTorch 2.11.0, cuDNN 91200, TF32 off), commit `0123456`, kernels "
            "`fedcba987654`, model `2012`, batch 128, median of 25 runs.")
CONV3 = {"layer": "conv3a (2×128→192, 3×3/1)", "pass": "forward", "ms": 1.25,
         "plan": {"algorithm": "implicit", "tile": 64, "splits": 1},
         "gflop_s": 24013.4, "percent_of_fp32_peak": 35.94, "peer": "cuDNN", "peer_ms": 1.5,
         "ratio_peer_over_ours": 1.2,
         "winograd": {"plan": {"algorithm": "winograd", "tile": 64, "splits": 1,
                               "winograd_tile": 4},
                      "ms": 0.75, "gflop_s": 40022.3, "percent_of_fp32_peak": 59.9,
                      "host_bound_runs": 1, "ratio_peer_over_ours": 2.0}}
KERNELS = {**RUN, "families": ["conv", "norm"], "fp32_peak_tflops": 66.9,
           "copy_bandwidth_gb_s": 3011.6, "flush_ms": 2.5,
           "cases": [CONV3,
                     {"layer": "conv1a (3→48, 11×11/4)", "pass": "backward filters",
                      "not_timed": "its output differs from the reference"},
                     {"layer": "rnorm1a (crossmap 5)", "pass": "forward", "ms": 0.125,
                      "gb_s": 2287.6, "percent_of_copy": 75.96, "host_bound_runs": 3,
                      "peer": "PyTorch", "peer_ms": 0.5, "ratio_peer_over_ours": 4.0}],
           "conv_total_ratio": 1.2, "conv_total_ratio_fastest_algorithm": 2.0,
           "conv_total_passes": 1}
TRAIN = {**RUN, "repeats": 20,
         "placements": [{"gpus": "0", "conv_algorithm": "implicit", "placement": "GPU 0",
                         "step_ms": 40.0, "images_per_second": 3200.0,
                         "ratio_torch_over_ours": 1.25},
                        {"gpus": "0,0", "conv_algorithm": "winograd",
                         "placement": "GPU 0 through the two-device path", "step_ms": 50.0,
                         "images_per_second": 2560.0, "ratio_torch_over_ours": 1.0}],
         "step_ms": 40.0, "images_per_second": 3200.0, "projected_90_epoch_hours": 10.009,
         "torch_step_ms": 50.0, "torch_images_per_second": 2560.0, "ratio_torch_over_ours": 1.25,
         "layers": [{"layer": "conv1a", "pass": "forward", "ms": 3.0},
                    {"layer": "conv1a", "pass": "backward", "ms": 1.0}]}


def test_the_kernel_table():
    assert report_tables.tables(KERNELS) == [
        f"Kernels: {RUN_LINE}",
        "FP32 peak 66.9 TFLOP/s; device-to-device copy 3,012 GB/s (read + write).",
        "",
        "| layer | pass | ours (ms) | rate | peer (ms) | peer / ours |",
        "|---|---|---|---|---|---|",
        "| conv3a (2×128→192, 3×3/1) | forward | 1.250 | 24,013 GFLOP/s, 35.9% of peak | "
        "cuDNN 1.500 | 1.20× |",
        "|  | by Winograd, m = 4 | 0.750 (1 run host-bound) | 40,022 GFLOP/s, 59.9% of peak |  | "
        "2.00× |",
        "| conv1a (3→48, 11×11/4) | backward filters | not timed: its output differs from the "
        "reference |  |  |  |",
        "| rnorm1a (crossmap 5) | forward | 0.125 (3 runs host-bound) | 2,288 GB/s, 76% of copy | "
        "PyTorch 0.500 | 4.00× |",
        "",
        "The 1 convolution passes against cuDNN: 1.20× with the launcher's plans, 2.00× with the "
        "faster algorithm of each pass (target: 1.0× in all, 0.8× each)."]


def test_the_training_table():
    assert report_tables.tables(TRAIN) == [
        f"Training step: {RUN_LINE.replace('25 runs', '20 runs')}",
        "",
        "| --gpus | --conv-algorithm | ms per step | images/s | PyTorch / ours |",
        "|---|---|---|---|---|",
        "| 0 | implicit | 40.00 | 3,200 | 1.25× |",
        "| 0,0 | winograd | 50.00 | 2,560 | 1.00× |",
        "",
        "PyTorch (cuDNN, TF32 off, groups=2): 50.00 ms per step, 2,560 images/s (target: 1.0×, "
        "goal 1.3×).",
        "",
        "| layer | pass | ms | share |",
        "|---|---|---|---|",
        "| conv1a | forward | 3.000 | 75.0% |",
        "| conv1a | backward | 1.000 | 25.0% |",
        "",
        "90 epochs of ILSVRC-2012 at the speed of --gpus 0 --conv-algorithm implicit: 10.0 h."]


def test_a_run_without_its_peer_or_its_end_says_so():
    """No PyTorch: no peer columns' figures, no peer line; a run cut short: its first line says
    so, and what it did not reach is left out (the training step's layers, projection)."""
    alone = {**TRAIN, "peer": None, "complete": False,
             "placements": [{key: value for key, value in TRAIN["placements"][0].items()
                             if key != "ratio_torch_over_ours"}]}
    for key in ("torch_step_ms", "torch_images_per_second", "ratio_torch_over_ours", "layers",
                "projected_90_epoch_hours"):
        del alone[key]
    lines = report_tables.tables(alone)
    assert lines[0].startswith("Training step (cut short: the cases it timed): NVIDIA H100 80GB "
                               "HBM3 (sm_90, driver 580.95.05, CUDA runtime 13000, CuPy 14.2.0; "
                               "no PyTorch peer), commit")
    assert lines[2:] == ["| --gpus | --conv-algorithm | ms per step | images/s | PyTorch / ours |",
                         "|---|---|---|---|---|", "| 0 | implicit | 40.00 | 3,200 |  |"]


def test_tf32_on_in_the_peer_is_shown():
    peer = {**RUN["peer"], "matmul_allow_tf32": True}
    assert "TF32 on" in report_tables.tables({**KERNELS, "peer": peer})[0]


def test_the_command_prints_each_report_in_turn(tmp_path, capsys):
    paths = []
    for name, report in (("kernels.json", KERNELS), ("train.json", TRAIN)):
        paths.append(tmp_path / name)
        paths[-1].write_text(json.dumps(report))
    assert report_tables.main([str(path) for path in paths]) == 0
    assert capsys.readouterr().out == "\n".join(
        report_tables.tables(KERNELS) + [""] + report_tables.tables(TRAIN)) + "\n"


@pytest.mark.parametrize("content, message", [
    (None, "cannot read it (No such file or directory)"),
    ("{", "Expecting property name"),
    ("[1]", "not a benchmark report (a JSON object)"),
    ('{"model": "2012"}', "neither tools/bench_kernels.py's report (cases) nor "
                          "tools/bench_train.py's (placements)"),
    ('{"cases": []}', "a benchmark report without 'driver'"),
    (json.dumps({**TRAIN, "placements": [1]}), "a benchmark report with a field of the wrong "
                                                "kind"),
])
def test_what_is_no_report_is_one_line_with_exit_2(tmp_path, content, message, capsys):
    path = tmp_path / "report.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit) as exit_:
        report_tables.main([str(path)])
    (line,) = capsys.readouterr().err.splitlines()
    assert exit_.value.code == 2 and f"error: {path}: " in line and message in line
