"""Data-parallel scaling on paper: what each replica sends per step, and the efficiency to
expect on 2–64 machines, from the model's parameter counts and a measured step time.

    python tools/scaling.py [--model 2012] [--report bench/results/cpu-step-2012-b32.json]
        [--step-seconds S --batch B] [--gbps 100 400] [--machines 2 4 8 16 32 64]

The step time is the per-replica time of one training step (forward, backward, update) at the
per-replica batch, from a benchmark report (tools/bench_cpu_step.py's JSON) or given with
--step-seconds and --batch. Prints a Markdown table.

The model (stated here, not measured):
  - each tower's float32 gradients are summed by a ring all-reduce, in which every replica sends
    (and receives) 2(W − 1)/W of the gradients' bytes: a reduce-scatter and an all-gather;
  - one network link per machine carries both towers' traffic;
  - the all-reduce takes at least bytes / link rate: latency and protocol overheads are left
    out, so the times are lower bounds and the efficiencies upper bounds;
  - weak scaling: every machine keeps the measured per-replica batch (the global batch grows
    with W), so its compute time per step stays the measured one. Efficiency is
    T / (T + C) when the all-reduce waits for the step (no overlap), and T / max(T, C) when it
    hides entirely under the backward pass (full overlap); the truth lies between.
"""
import json
import math
import sys

import numpy as np

from convnet import alexnet, options
from convnet.errors import counted, one_line, open_regular, run_command, shown
from convnet.alexnet import TOWERS
from convnet.network import parameter_specs

FLOAT32_BYTES = 4
DEFAULT_REPORT = "bench/results/cpu-step-2012-b32.json"   # the CPU step of the 2012 model


def tower_gradient_bytes(model) -> dict:
    """{tower: bytes of its float32 parameter gradients}."""
    return {tower: FLOAT32_BYTES * sum(int(np.prod(spec.shape)) for spec
                                       in parameter_specs(model) if spec.tower == tower)
            for tower in TOWERS}


def ring_bytes_sent(gradient_bytes, world) -> float:
    """Bytes one replica sends in a ring all-reduce of `gradient_bytes` among `world`."""
    return 2 * (world - 1) / world * gradient_bytes


def link_seconds(size, rate_gbps) -> float:
    """Seconds for `size` bytes at `rate_gbps` gigabits per second."""
    return size / (rate_gbps * 1e9 / 8)


def efficiency(step_seconds, comm_seconds, overlapped) -> float:
    busy = max(step_seconds, comm_seconds) if overlapped else step_seconds + comm_seconds
    return step_seconds / busy


def step_time(p, args):
    """(seconds per step, per-replica batch, where the figure comes from); a report that does
    not give them is p.error's one line."""
    if args.step_seconds is not None:
        return args.step_seconds, args.batch, "--step-seconds"
    try:
        with open_regular(args.report, encoding="utf-8") as handle:
            report = json.load(handle)
    except OSError as error:
        p.error(f"--report {args.report}: cannot read it ({error.strerror})")
    except ValueError as error:   # not JSON, or not UTF-8
        p.error(f"--report {args.report}: not a JSON report ({one_line(error)})")
    fields = {"model": str, "batch": int, "reference_images_per_second": (int, float)}
    wrong = [key for key, kind in fields.items()
             if not isinstance(report, dict) or not isinstance(report.get(key), kind)]
    if wrong:
        p.error(f"--report {args.report}: not a step benchmark's report (tools/"
                f"bench_cpu_step.py's): no {wrong[0]}")
    if report["model"] != args.model:
        p.error(f"--report {args.report} times model {report['model']}, not {args.model}")
    rate = report["reference_images_per_second"]
    if not (math.isfinite(rate) and rate > 0 and report["batch"] > 0):
        p.error(f"--report {args.report}: batch {report['batch']} at {rate} images/s is no "
                f"step time")
    return report["batch"] / rate, report["batch"], (
        f"{shown(args.report)} ({rate:.1f} images/s at batch {report['batch']}, commit "
        f"{short_commit(report.get('commit'))})")


def short_commit(commit):
    """A report's commit (convnet/provenance.py) in git's short form, keeping its mark of a tree
    that differed from it; "unknown" where it has none."""
    if not isinstance(commit, str) or not commit:
        return "unknown"
    sha, dirty, _ = commit.partition("-dirty")
    return sha[:7] + dirty


def table(model, step_seconds, batch, source, rates_gbps, machines):
    towers = tower_gradient_bytes(model)
    total = sum(towers.values())
    per_tower = ", ".join(f"tower {tower} {size / 1e6:.1f} MB" for tower, size in towers.items()
                          if size)
    lines = [f"Model `{model.name}`: gradients of {per_tower} (float32). Step: "
             f"{step_seconds * 1e3:.0f} ms at batch {batch} per replica, from {source}.", ""]
    header = "| machines | sent per replica per step |"
    rule = "|---|---|"
    for rate in rates_gbps:
        header += f" {rate:g} Gb/s: all-reduce | no overlap | full overlap |"
        rule += "---|---|---|"
    lines += [header, rule]
    for world in machines:
        sent = sum(ring_bytes_sent(size, world) for size in towers.values())
        row = f"| {world} | {sent / 1e6:.1f} MB |"
        for rate in rates_gbps:
            comm = link_seconds(sent, rate)
            row += (f" {comm * 1e3:.1f} ms | {efficiency(step_seconds, comm, False):.1%} |"
                    f" {efficiency(step_seconds, comm, True):.1%} |")
        lines.append(row)
    lines += ["", "The all-reduce hides entirely under a step of at least "
              + ", ".join(f"{link_seconds(ring_bytes_sent(total, max(machines)), rate) * 1e3:.1f}"
                          f" ms on {rate:g} Gb/s" for rate in rates_gbps)
              + f" at {counted(max(machines), 'machine')}."]
    return "\n".join(lines)


def main(argv=None):
    p = options.Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="2012", type=options.model_choice)
    p.add_argument("--report", type=options.named_path,
                   help=f"benchmark report with the step's images/s (default: {DEFAULT_REPORT})")
    p.add_argument("--step-seconds", type=float, help="a step time instead of a report")
    p.add_argument("--batch", type=int, help="with --step-seconds: its per-replica batch")
    p.add_argument("--gbps", type=float, nargs="+", default=[100, 400],
                   help="link rates in Gb/s (default: 100 400)")
    p.add_argument("--machines", type=int, nargs="+", default=[2, 4, 8, 16, 32, 64])
    args = p.parse_args(argv)
    if (args.step_seconds is None) != (args.batch is None):
        p.error("--step-seconds and --batch go together")
    if args.step_seconds is not None and args.report is not None:
        p.error("--report and --step-seconds each give the step's time: give one")
    args.report = args.report or DEFAULT_REPORT
    if args.step_seconds is not None and not (math.isfinite(args.step_seconds)
                                              and args.step_seconds > 0):
        p.error(f"--step-seconds must be a positive number; got {args.step_seconds}")
    if args.batch is not None and args.batch < 1:
        p.error(f"--batch must be at least 1; got {args.batch}")
    if min(args.machines) < 1:
        p.error(f"--machines must each be at least 1; got {' '.join(map(str, args.machines))}")
    if not all(math.isfinite(rate) and rate > 0 for rate in args.gbps):
        p.error(f"--gbps must be positive numbers; got {' '.join(map(str, args.gbps))}")
    model = alexnet.build_model(args.model)
    slowest = min(args.gbps)
    most = ring_bytes_sent(sum(tower_gradient_bytes(model).values()), max(args.machines))
    if not math.isfinite(link_seconds(most, slowest) * 1e3):   # the table's milliseconds
        p.error(f"--gbps {slowest}: so slow a link takes longer than a float can hold")
    # a value given twice is one row or column
    print(table(model, *step_time(p, args),
                list(dict.fromkeys(args.gbps)), list(dict.fromkeys(args.machines))))
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
