"""README's tables of the GPU benchmarks, rendered from their JSON reports.

    python tools/report_tables.py REPORT.json [REPORT.json ...]

A report of tools/bench_kernels.py (it has "cases") becomes the kernel table: each layer's
passes, our time, the rate (GFLOP/s and percent of the FP32 peak for a convolution, GB/s and
percent of the measured copy for the others), the peer's time and the ratio, the Winograd row of
conv3-5 where it was timed, and the convolutions' total against cuDNN. A report of
tools/bench_train.py (it has "placements") becomes the training table: each placement and
convolution algorithm, its step, images/s and ratio to PyTorch, then the peer's step, each
layer's passes on their own with their share of the sum, and the projected 90 epochs. Each
table opens with the run it comes from (device, versions, commit, the kernels' hash), so
README's figures name their report; tests/test_readme_reports.py requires every such report in
bench/results/ (kernels-*.json, train-*.json) to stand in README as this prints it. A report cut
short ("complete" false) says so in its first line.
"""
import json
import sys

from convnet import options
from convnet.errors import counted, one_line, open_regular, run_command


def run_line(report, what):
    """Where the figures come from: the device and versions, the commit and the kernels."""
    peer = report.get("peer")
    with_peer = (f"; peer PyTorch {peer['torch']}, cuDNN {peer['cudnn']}, TF32 "
                 f"{'on' if peer['cudnn_allow_tf32'] or peer['matmul_allow_tf32'] else 'off'}"
                 if peer else "; no PyTorch peer")
    cut_short = "" if report.get("complete") else " (cut short: the cases it timed)"
    driver = report.get("driver_release") or report["driver"]
    return (f"{what}{cut_short}: {report['device']} (sm_{report['compute_capability']}, "
            f"driver {driver}, CUDA runtime {report['cuda_runtime']}, CuPy {report['cupy']}{with_peer}), commit "
            f"`{(report.get('commit') or 'unknown')[:7]}`, kernels `{report['kernels_hash'][:12]}`"
            f", model `{report['model']}`, batch {report['batch']}, median of "
            f"{counted(report['repeats'], 'run')}.")


def row(*cells):
    return f"| {' | '.join(cells)} |"


def ratio(value):
    return f"{value:.2f}×"


def rate(record):
    if "gflop_s" in record:
        return f"{record['gflop_s']:,.0f} GFLOP/s, {record['percent_of_fp32_peak']:.1f}% of peak"
    return f"{record['gb_s']:,.0f} GB/s, {record['percent_of_copy']:.0f}% of copy"


def host_bound(record):
    runs = record.get("host_bound_runs")
    return f" ({counted(runs, 'run')} host-bound)" if runs else ""


def kernel_rows(case):
    """A case's row, and its Winograd row where it has one."""
    if "not_timed" in case:
        yield row(case["layer"], case["pass"], f"not timed: {case['not_timed']}", "", "", "")
        return
    peer = (f"{case['peer']} {case['peer_ms']:.3f}", ratio(case["ratio_peer_over_ours"])) \
        if "peer_ms" in case else ("", "")
    yield row(case["layer"], case["pass"], f"{case['ms']:.3f}{host_bound(case)}", rate(case),
              *peer)
    winograd = case.get("winograd")
    if winograd is None:
        return
    label = f"by Winograd, m = {winograd['plan']['winograd_tile']}"
    if "not_timed" in winograd:
        yield row("", label, f"not timed: {winograd['not_timed']}", "", "", "")
        return
    theirs = ratio(winograd["ratio_peer_over_ours"]) if "ratio_peer_over_ours" in winograd else ""
    yield row("", label, f"{winograd['ms']:.3f}{host_bound(winograd)}", rate(winograd), "",
              theirs)


def kernels_table(report):
    lines = [run_line(report, "Kernels"),
             f"FP32 peak {report['fp32_peak_tflops']:.1f} TFLOP/s; device-to-device copy "
             f"{report['copy_bandwidth_gb_s']:,.0f} GB/s (read + write).", "",
             row("layer", "pass", "ours (ms)", "rate", "peer (ms)", "peer / ours"),
             "|---|---|---|---|---|---|"]
    for case in report["cases"]:
        lines += kernel_rows(case)
    if "conv_total_ratio" in report:
        lines += ["", f"The {report['conv_total_passes']} convolution passes against cuDNN: "
                      f"{ratio(report['conv_total_ratio'])} with the launcher's plans, "
                      f"{ratio(report['conv_total_ratio_fastest_algorithm'])} with the faster "
                      f"algorithm of each pass (target: 1.0× in all, 0.8× each)."]
    return lines


def train_table(report):
    peer = "torch_step_ms" in report
    lines = [run_line(report, "Training step"), "",
             row("--gpus", "--conv-algorithm", "ms per step", "images/s", "PyTorch / ours"),
             "|---|---|---|---|---|"]
    for entry in report["placements"]:
        theirs = ratio(entry["ratio_torch_over_ours"]) if peer else ""
        lines.append(row(entry["gpus"], entry["conv_algorithm"], f"{entry['step_ms']:.2f}",
                         f"{entry['images_per_second']:,.0f}", theirs))
    if peer:
        lines += ["", f"PyTorch (cuDNN, TF32 off, groups=2): {report['torch_step_ms']:.2f} ms per "
                      f"step, {report['torch_images_per_second']:,.0f} images/s (target: 1.0×, "
                      f"goal 1.3×)."]
    if report.get("layers"):
        total = sum(layer["ms"] for layer in report["layers"])
        lines += ["", row("layer", "pass", "ms", "share"), "|---|---|---|---|"]
        lines += [row(layer["layer"], layer["pass"], f"{layer['ms']:.3f}",
                      f"{100 * layer['ms'] / total:.1f}%") for layer in report["layers"]]
    if "projected_90_epoch_hours" in report:
        first = report["placements"][0]
        lines += ["", f"90 epochs of ILSVRC-2012 at the speed of --gpus {first['gpus']} "
                      f"--conv-algorithm {first['conv_algorithm']}: "
                      f"{report['projected_90_epoch_hours']:.1f} h."]
    return lines


def tables(report) -> list:
    """The lines of a report's table; ValueError for JSON that is neither benchmark's report."""
    if not isinstance(report, dict):
        raise ValueError("not a benchmark report (a JSON object)")
    try:
        if "cases" in report:
            return kernels_table(report)
        if "placements" in report:
            return train_table(report)
    except KeyError as error:
        raise ValueError(f"a benchmark report without {error.args[0]!r}") from None
    except TypeError as error:
        raise ValueError(f"a benchmark report with a field of the wrong kind "
                         f"({one_line(error)})") from None
    raise ValueError("neither tools/bench_kernels.py's report (cases) nor tools/bench_train.py's "
                     "(placements)")


def main(argv=None):
    p = options.Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("reports", nargs="+", metavar="REPORT", type=options.named_path,
                   help="a JSON report of tools/bench_kernels.py or tools/bench_train.py")
    args = p.parse_args(argv)
    rendered = []
    for path in args.reports:
        try:
            with open_regular(path, encoding="utf-8") as handle:
                rendered.append(tables(json.load(handle)))
        except OSError as error:
            p.error(f"{path}: cannot read it ({error.strerror})")
        except ValueError as error:   # not JSON, not UTF-8, not a report
            p.error(f"{path}: {one_line(error)}")
    print("\n\n".join("\n".join(lines) for lines in rendered))
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
