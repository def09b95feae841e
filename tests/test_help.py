"""Every command of the project answers --help: its usage, exit code 0 (argparse formats each
flag's help only then, so a help text it cannot format fails nowhere else)."""
import os
import subprocess
import sys

import pytest

from convnet.figures.__main__ import FIGURES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = [
    ["-m", "convnet.train"], ["-m", "convnet.summary"], ["-m", "convnet.predict"],
    ["-m", "convnet.ensemble"], ["-m", "convnet.figures"], ["-m", "convnet.options"],
    *(["-m", "convnet.figures", figure] for figure in FIGURES),
    ["-m", "convnet.data.prepare"], ["-m", "convnet.data.ilsvrc"],
    ["-m", "convnet.data.fashion_mnist"], ["kernels/build.py"], ["tools/bench_cpu_step.py"],
    ["tools/bench_data.py"], ["tools/bench_kernels.py"], ["tools/bench_train.py"],
    ["tools/sass_loops.py"], ["tools/scaling.py"], ["tools/compare_runs.py"], ["tools/mutants.py"],
    ["tools/report_tables.py"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help(command):
    result = subprocess.run([sys.executable, *command, "--help"], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:"), result.stdout[:200]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_where_the_locale_is_not_utf8(command, not_utf8):
    """The project's own text (kernels/tiles.cuh, read on import of the CUDA backend) is UTF-8
    whatever the user's locale."""
    result = subprocess.run([sys.executable, *command, "--help"], capture_output=True, cwd=ROOT,
                            env=not_utf8, timeout=120)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert result.stdout.startswith(b"usage:"), result.stdout[:200]


def test_the_list_holds_every_command():
    """Each file with a main guard (or a package's __main__.py) is in COMMANDS."""
    listed = set()
    for command in COMMANDS:
        if command[0] == "-m":
            path = command[1].replace(".", "/")
            listed.add(f"{path}/__main__.py" if os.path.isdir(os.path.join(ROOT, path))
                       else f"{path}.py")
        else:
            listed.add(command[0])
    found = set()
    for folder in ("convnet", "kernels", "tools"):
        for directory, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                path = os.path.join(directory, name)
                if name.endswith(".py") and (
                        name == "__main__.py" or
                        '__name__ == "__main__"' in open(path, encoding="utf-8").read()):
                    found.add(os.path.relpath(path, ROOT))
    assert found == listed


BENCHMARKS = ["tools/bench_cpu_step.py", "tools/bench_data.py", "tools/bench_kernels.py",
              "tools/bench_train.py"]


@pytest.mark.parametrize("tool", BENCHMARKS)
def test_a_benchmarks_report_that_cannot_be_written_is_refused_before_it_runs(tool, tmp_path):
    result = subprocess.run([sys.executable, tool, "--json", str(tmp_path)], capture_output=True,
                            text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (f"{os.path.basename(tool)}: error: --json {str(tmp_path)!r}: must "
                             f"name a file, not a folder (see --help)\n")


@pytest.mark.parametrize("flags,message", [
    (["tools/bench_train.py", "--gpus", "0", "cpu"],
     "--gpus must be one or two GPU indices like 0,1; got 'cpu'"),
    (["tools/bench_cpu_step.py", "--batch", "0"], "--batch must be at least 1; got 0"),
    (["tools/bench_data.py", "--batch", "0"], "--batch must be at least 1; got 0"),
    (["tools/bench_data.py", "--jpegs", "-3"], "--jpegs must be at least 1; got -3"),
    (["tools/bench_kernels.py", "--batch", "0"], "--batch must be at least 1; got 0"),
    (["tools/bench_kernels.py", "--repeats", "-1"], "--repeats must be at least 1; got -1"),
    (["tools/bench_train.py", "--batch", "-128"], "--batch must be at least 1; got -128"),
    (["tools/bench_train.py", "--repeats", "0"], "--repeats must be at least 1; got 0"),
    (["tools/bench_data.py", "--crop", "40", "--size", "32"], "--crop 40 must not exceed --size 32"),
    (["tools/bench_data.py", "--images", "7", "--batch", "8"],
     "--batch 8 must not exceed --images 7: a batch is drawn from the file's images"),
])
def test_a_benchmarks_flags_that_cannot_work_are_refused(flags, message):
    result = subprocess.run([sys.executable, *flags], capture_output=True, text=True, cwd=ROOT,
                            timeout=120)
    assert result.returncode == 2
    assert result.stderr == f"{os.path.basename(flags[0])}: error: {message} (see --help)\n"
