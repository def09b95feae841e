"""tools/scaling.py: the bytes a ring all-reduce sends, against a ring all-reduce run here
chunk by chunk; the gradients' bytes against the model's parameter count; the table."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import scaling  # noqa: E402

from convnet import alexnet  # noqa: E402


def ring_all_reduce(arrays):
    """Sum `arrays` (one per rank) the ring way: W − 1 reduce-scatter steps, then W − 1
    all-gather steps, each rank sending one chunk to the next per step. Returns (the arrays
    after it, bytes each rank sent)."""
    world = len(arrays)
    chunks = [np.array_split(array.copy(), world) for array in arrays]
    sent = [0] * world
    for step in range(world - 1):                        # reduce-scatter
        outgoing = [chunks[r][(r - step) % world].copy() for r in range(world)]
        for r in range(world):
            index = (r - step) % world
            chunks[(r + 1) % world][index] += outgoing[r]
            sent[r] += outgoing[r].nbytes
    for step in range(world - 1):                        # all-gather of the finished chunks
        outgoing = [chunks[r][(r + 1 - step) % world].copy() for r in range(world)]
        for r in range(world):
            chunks[(r + 1) % world][(r + 1 - step) % world] = outgoing[r]
            sent[r] += outgoing[r].nbytes
    return [np.concatenate(c) for c in chunks], sent


@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_ring_bytes_are_those_of_a_ring_all_reduce(rng, world):
    arrays = [rng.integers(-100, 100, 48 * world).astype(np.float32) for _ in range(world)]
    summed, sent = ring_all_reduce(arrays)
    for result in summed:
        np.testing.assert_array_equal(result, np.sum(arrays, axis=0))
    assert sent == [scaling.ring_bytes_sent(arrays[0].nbytes, world)] * world


def test_gradient_bytes_are_the_parameters_in_float32():
    towers = scaling.tower_gradient_bytes(alexnet.build_model("2012"))
    assert sum(towers.values()) == 4 * 60_965_224     # the published parameter count
    assert towers["a"] > towers["b"]                   # fc8 lives on tower a


def test_efficiency_bounds():
    assert scaling.efficiency(3.0, 1.0, overlapped=False) == 0.75
    assert scaling.efficiency(3.0, 1.0, overlapped=True) == 1.0
    assert scaling.efficiency(1.0, 4.0, overlapped=True) == 0.25


def test_table_from_a_step_time():
    script = Path(scaling.__file__)
    result = subprocess.run([sys.executable, str(script), "--step-seconds", "0.05", "--batch",
                             "128", "--machines", "2", "64"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| 2 |")
            or line.startswith("| 64 |")]
    assert len(rows) == 2
    # 64 machines: 2·63/64 · 243.9 MB = 480.1 MB; 38.41 ms on 100 Gb/s; 50/(50 + 38.41) = 56.6%
    assert rows[1].startswith("| 64 | 480.1 MB | 38.4 ms | 56.6% | 100.0% |")


@pytest.mark.parametrize("flags, message", [
    (["--step-seconds", "0.05", "--batch", "0"], "--batch must be at least 1; got 0"),
    (["--step-seconds", "0", "--batch", "128"],
     "--step-seconds must be a positive number; got 0.0"),
    (["--step-seconds", "nan", "--batch", "128"],
     "--step-seconds must be a positive number; got nan"),
    (["--step-seconds", "inf", "--batch", "128"],
     "--step-seconds must be a positive number; got inf"),
    (["--batch", "128"], "--step-seconds and --batch go together"),
    (["--step-seconds", "0.05", "--batch", "128", "--gbps", "100", "0"],
     "--gbps must be positive numbers; got 100.0 0.0"),
    (["--step-seconds", "0.05", "--batch", "128", "--gbps", "nan"],
     "--gbps must be positive numbers; got nan"),
    (["--step-seconds", "0.05", "--batch", "128", "--gbps", "100", "inf"],
     "--gbps must be positive numbers; got 100.0 inf"),
    (["--step-seconds", "0.05", "--batch", "128", "--gbps", "100", "1e-320"],
     "--gbps 1e-320: so slow a link takes longer than a float can hold"),
    (["--step-seconds", "0.05", "--batch", "128", "--machines", "0", "2"],
     "--machines must each be at least 1; got 0 2"),
    (["--step-seconds", "0.05", "--batch", "128", "--report", "r.json"],
     "--report and --step-seconds each give the step's time: give one"),
    (["--report", ""], "argument --report: must name a file or folder; got ''"),
])
def test_bad_flags_are_one_line_with_exit_2(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        scaling.main(flags)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    (None, "cannot read it (No such file or directory)"),
    ("{", "not a JSON report ("),
    ("[1]", "not a step benchmark's report (tools/bench_cpu_step.py's): no model"),
    ('{"model": "2012", "batch": 32}', "no reference_images_per_second"),
    ('{"model": "2012", "batch": 32, "reference_images_per_second": 0}',
     "batch 32 at 0 images/s is no step time"),
    ('{"model": "2012", "batch": 32, "reference_images_per_second": Infinity}',
     "batch 32 at inf images/s is no step time"),
    ('{"model": "paper", "batch": 32, "reference_images_per_second": 9.5}',
     "times model paper, not 2012"),
])
def test_a_report_without_a_step_time_is_one_line_with_exit_2(tmp_path, content, message,
                                                               capsys):
    report = tmp_path / "report.json"
    if content is not None:
        report.write_text(content)
    with pytest.raises(SystemExit) as exit_:
        scaling.main(["--report", str(report)])
    (line,) = capsys.readouterr().err.splitlines()
    assert exit_.value.code == 2 and f"error: --report {report}" in line and message in line


def test_table_from_a_report_and_its_closing_line(tmp_path, capsys):
    """The step from a benchmark report (batch over images/s); the closing line's figure is
    the largest machine count's all-reduce time."""
    report = tmp_path / "step.json"
    report.write_text(json.dumps({"model": "2012", "batch": 32,
                                  "reference_images_per_second": 64.0, "commit": "abc1234"}))
    assert scaling.main(["--report", str(report), "--machines", "2", "64", "--gbps", "100"]) == 0
    text = capsys.readouterr().out
    assert "Step: 500 ms at batch 32 per replica, from " in text
    # 64 machines: 2·63/64 · 243.86 MB over 12.5 GB/s = 38.4 ms
    assert text.rstrip().endswith("hides entirely under a step of at least 38.4 ms on 100 Gb/s "
                                  "at 64 machines.")


def test_the_closing_line_names_the_largest_machine_count_in_any_order(capsys):
    assert scaling.main(["--step-seconds", "0.05", "--batch", "128", "--machines", "64", "2",
                         "--gbps", "100"]) == 0
    assert capsys.readouterr().out.rstrip().endswith(
        "hides entirely under a step of at least 38.4 ms on 100 Gb/s at 64 machines.")


def test_a_value_given_twice_is_one_row_or_column(capsys):
    assert scaling.main(["--step-seconds", "0.05", "--batch", "128", "--machines", "4", "2", "4",
                         "--gbps", "100", "100"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [row.split(" |")[0] for row in rows] == ["| machines", "| 4", "| 2"]
    assert rows[0].count("Gb/s") == 1


@pytest.mark.parametrize("commit,shown", [
    ("8675c96d999dfc73c4a4c2b07c95194755b0d78c-dirty", "8675c96-dirty"),
    ("8675c96d999dfc73c4a4c2b07c95194755b0d78c", "8675c96"), (None, "unknown")])
def test_the_reports_commit_keeps_its_mark_of_a_changed_tree(tmp_path, capsys, commit, shown):
    """A step timed in a tree that differed from its commit was named by the commit alone
    ("-dirty" cut off with the rest of the hash), and a report without one as "None"."""
    report = tmp_path / "step.json"
    report.write_text(json.dumps({"model": "2012", "batch": 32,
                                  "reference_images_per_second": 64.0, "commit": commit}))
    assert scaling.main(["--report", str(report), "--machines", "1"]) == 0
    text = capsys.readouterr().out
    assert f"(64.0 images/s at batch 32, commit {shown})." in text
    assert text.rstrip().endswith(" at 1 machine.")   # not "1 machines"
