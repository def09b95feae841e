"""tools/gpu_steps.sh, the step runner of make gpu-check and make gpu-train: each step stops at
its own limit or at the budget's end, whichever comes first, later steps still run, and a step
with under 15 s of the budget left is skipped; every outcome is a line of steps.txt. An extra
step's outcome leaves the exit status alone, a step on request runs only where STEPS names it;
a BUDGET that is not whole seconds stops it first.
The set-up leaves out an install of sources already installed, make gpu-check's GPU tests
step names every test file that holds GPU tests, and make gpu-train trains in OUT (going on from a
run folder an earlier call brought back); without a GPU for its Python either script stops
first, in one line."""
import os
import re
import shutil
import subprocess

import pytest

STEPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "gpu_steps.sh")


def run_steps(tmp_path, budget, script, only=None):
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out))
    env.pop("BUDGET", None)
    env.pop("STEPS", None)
    if budget is not None:
        env["BUDGET"] = str(budget)
    if only is not None:
        env["STEPS"] = only
    completed = subprocess.run(["bash", "-c", f'source "{STEPS}"\n{script}\nexit "$failed"'],
                               env=env, capture_output=True, text=True, timeout=60)
    lines = (out / "steps.txt").read_text().splitlines()
    return completed.returncode, {line.split()[0]: line for line in lines}, out


def seconds(line):
    return int(re.search(r"exit +\d+ +(\d+)s", line).group(1))


def test_a_step_stops_at_its_own_limit_and_the_next_still_runs(tmp_path):
    status, steps, out = run_steps(tmp_path, 100, """
step slow "$out/log" 2 sleep 30
step quick "$out/log" 60 echo done""")
    assert status == 1
    assert re.search(r"exit 124 .*\(limit 2s, \d+s were left\)", steps["slow"])
    assert seconds(steps["slow"]) <= 4
    assert re.search(r"exit +0 ", steps["quick"])
    log = (out / "log").read_text()
    assert "== slow: sleep 30" in log and log.endswith("done\n")


def test_the_budget_bounds_every_step_and_skips_what_it_cannot_hold(tmp_path):
    # Bash's SECONDS counts from the script's start; setting it stands for the time spent.
    status, steps, _ = run_steps(tmp_path, 100, """
SECONDS=80
step bounded "$out/log" 600 true
SECONDS=85
step last "$out/log" 60 true
SECONDS=90
step after "$out/log" 60 true""")
    assert status == 1
    assert re.search(r"exit +0 .*\(limit 20s, 20s were left\)", steps["bounded"])
    assert re.search(r"exit +0 .*\(limit 15s, 15s were left\)", steps["last"])
    assert "skipped: no time left of 100s" in steps["after"]


def test_all_steps_passing_exit_zero(tmp_path):
    status, steps, _ = run_steps(tmp_path, 100, 'step one "$out/log" 10 true')
    assert status == 0 and re.search(r"exit +0 ", steps["one"])


def test_a_second_call_starts_its_own_list_of_steps(tmp_path):
    """A warm machine's second call writes into the same OUT: steps.txt lists its steps only."""
    run_steps(tmp_path, 100, 'step first "$out/log" 10 true')
    _, steps, _ = run_steps(tmp_path, 100, 'step second "$out/log" 10 true')
    assert list(steps) == ["second"]


def test_steps_run_with_the_gpu_required_and_the_tree_on_the_path(tmp_path, monkeypatch):
    """A GPU test that skips for want of a GPU fails on the GPU machine; the tools find convnet
    in the tree; a step cut off at its limit has written its output as it went."""
    monkeypatch.setenv("PYTHONPATH", "elsewhere")
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
    monkeypatch.delenv("CONVNET_REQUIRE_GPU", raising=False)
    _, _, out = run_steps(tmp_path, 100, 'step environment "$out/log" 10 env')
    variables = dict(line.split("=", 1) for line in (out / "log").read_text().splitlines()[1:]
                     if "=" in line)
    assert variables["CONVNET_REQUIRE_GPU"] == variables["PYTHONUNBUFFERED"] == "1"
    assert variables["PYTHONPATH"] == f"{os.getcwd()}:elsewhere"


def test_steps_runs_the_set_up_and_the_steps_it_names_only(tmp_path):
    """A later call runs what an earlier one left out; the steps it leaves out are listed and
    leave the exit status alone, the set-up's always run."""
    status, steps, out = run_steps(tmp_path, 100, """
check_steps check tests memcheck racecheck
step build "$out/log" 10 true
step tests "$out/log" 10 false
step memcheck "$out/log" 10 echo memcheck ran
step racecheck "$out/log" 10 true""", only="memcheck racecheck")
    assert status == 0
    assert list(steps) == ["build", "tests", "memcheck", "racecheck"]
    assert steps["tests"] == "tests          not asked for (STEPS=memcheck racecheck)"
    assert all(re.search(r"exit +0 ", steps[name]) for name in ("build", "memcheck", "racecheck"))
    assert "memcheck ran" in (out / "log").read_text()


def test_steps_naming_no_step_of_the_script_stops_it_first(tmp_path):
    """A misspelt name would otherwise run nothing and pass."""
    out = tmp_path / "out"
    completed = subprocess.run(
        ["bash", "-c", f'source "{STEPS}"\ncheck_steps memcheck racecheck\necho ran'],
        env=dict(os.environ, OUT=str(out), STEPS="memchek"), capture_output=True, text=True,
        timeout=60)
    assert completed.returncode == 2 and completed.stdout == ""
    assert completed.stderr.endswith("STEPS names 'memchek', which is none of its steps: "
                                     "memcheck racecheck\n")


def test_the_default_budget_is_one_device_call(tmp_path):
    status, steps, _ = run_steps(tmp_path, None, 'step one "$out/log" 600 true')
    assert status == 0 and "(limit 560s, 560s were left)" in steps["one"]


def test_an_extra_step_leaves_the_exit_status_alone(tmp_path):
    status, steps, _ = run_steps(tmp_path, 100, """
extra tuning "$out/log" 10 false
SECONDS=90
extra more "$out/log" 10 true""")
    assert status == 0
    assert re.search(r"exit +1 ", steps["tuning"]) and "skipped" in steps["more"]
    status, steps, _ = run_steps(tmp_path, 100, """
step check "$out/log" 10 false
extra tuning "$out/log" 10 true""")
    assert status == 1


def test_a_step_on_request_runs_only_where_steps_names_it(tmp_path):
    """Listed, and the exit status left alone, where STEPS does not name it; where it does, a
    step like any other, whose failure fails the call."""
    script = """
check_steps check synccheck
step check "$out/log" 10 true
on_request synccheck "$out/log" 10 false"""
    status, steps, _ = run_steps(tmp_path, 100, script)
    assert status == 0
    assert steps["synccheck"] == 'synccheck      only on request (STEPS="synccheck")'
    status, steps, _ = run_steps(tmp_path, 100, script, only="synccheck")
    assert status == 1 and re.search(r"exit +1 ", steps["synccheck"])
    assert steps["check"] == "check          not asked for (STEPS=synccheck)"


@pytest.mark.parametrize("budget", ["abc", "7m", "400.5", "-5"])
def test_a_budget_not_in_whole_seconds_is_refused_before_any_step(tmp_path, budget):
    completed = subprocess.run(["bash", "-c", f'source "{STEPS}"\nstep one "$out/log" 10 true'],
                               env=dict(os.environ, OUT=str(tmp_path), BUDGET=budget),
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2
    assert completed.stderr == f"tools/gpu_steps.sh: BUDGET must be whole seconds; got '{budget}'\n"
    assert not (tmp_path / "log").exists()


def test_the_gpu_tests_step_names_every_file_that_holds_gpu_tests():
    tests = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(tests, "..", "tools", "gpu_check.sh")) as file:
        script = file.read()
    command = re.search(r"^step gpu-tests (?:.*\\\n)*.*$", script, re.MULTILINE).group(0)
    named = set(re.findall(r"tests/(test_\w+\.py)", command))
    holding = set()
    for name in os.listdir(tests):
        if name.startswith("test_") and name.endswith(".py") and name != "test_gpu_steps.py":
            with open(os.path.join(tests, name), encoding="utf-8") as file:
                if re.search(r"pytest\.mark\.gpu|KERNEL_TARGETS", file.read()):
                    holding.add(name)
    assert named == holding


def stand_in_tree(tmp_path):
    """A tree with the files install_and_build reads, and a stand-in for the GPU machine's Python
    that notes each command line in `calls` (and, for convnet.train, the files of its
    --output-dir) and succeeds (convnet.train: with the status STAND_IN_TRAIN_STATUS gives):
    (tree, calls, python)."""
    tree, calls, python = tmp_path / "tree", tmp_path / "calls", tmp_path / "python"
    for name in ("setup.py", "pyproject.toml", "kernels/a.cpp", "kernels/a.h", "kernels/a.cu",
                 "kernels/a.cuh", "kernels/build/ptxas-report.txt"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(name)
    python.write_text(f"""#!/bin/bash
echo "$*" >>"{calls}"
if [ "$2" = convnet.train ]; then
  while [ "$1" != --output-dir ]; do shift; done
  echo "run folder: $(ls "$2" | tr '\\n' ' ')" >>"{calls}"
  exit "${{STAND_IN_TRAIN_STATUS:-0}}"
fi
""")
    python.chmod(0o755)
    return tree, calls, python


def test_an_install_of_the_same_extension_sources_is_left_out(tmp_path):
    """install_and_build on a warm machine: the install runs where the extension sources (any
    of them) differ from those the last install here built, and is left out where they are the
    same and the last install succeeded."""
    tree, calls, python = stand_in_tree(tmp_path)

    def install_and_build():
        out = tmp_path / "out"
        completed = subprocess.run(["bash", "-c", f'source "{STEPS}"\ninstall_and_build\n'
                                                  f'exit "$failed"'],
                                   cwd=tree, env=dict(os.environ, OUT=str(out),
                                                      GPU_PYTHON=str(python)),
                                   capture_output=True, text=True, timeout=60)
        installs = [line for line in calls.read_text().splitlines()
                    if line.startswith("-m pip install")]
        return completed.returncode, (out / "steps.txt").read_text(), len(installs)

    status, steps, installs = install_and_build()
    assert status == 0 and installs == 1 and re.search(r"^install +exit +0", steps, re.MULTILINE)
    assert re.search(r"^preflight +exit +0", steps, re.MULTILINE)
    status, steps, installs = install_and_build()
    assert status == 0 and installs == 1 and "install        up to date" in steps
    for name in ("setup.py", "pyproject.toml", "kernels/a.cpp", "kernels/a.h", "kernels/a.cu",
                 "kernels/a.cuh"):
        (tree / name).write_text("changed")
        status, steps, more = install_and_build()
        assert status == 0 and more == installs + 1, name
        installs = more
        status, steps, more = install_and_build()
        assert status == 0 and more == installs and "install        up to date" in steps, name
    # The same sources, but modules that no longer import: installed again.
    python.write_text(f"""#!/bin/bash
echo "$*" >>"{calls}"
[ "$2" != "import convnet._augment, convnet._emulator" ]
""")
    status, steps, more = install_and_build()
    assert status == 0 and more == installs + 1
    installs = more
    # An install that fails leaves no record: the next call installs again.
    python.write_text(f"""#!/bin/bash
echo "$*" >>"{calls}"
[ "$2" != pip ]
""")
    (tree / "setup.py").write_text("changed again")
    for attempt in (1, 2):
        status, steps, more = install_and_build()
        assert status == 1 and more == installs + attempt
        assert re.search(r"^install +exit +1", steps, re.MULTILINE)


GPU_TRAIN = os.path.join(os.path.dirname(STEPS), "gpu_train.sh")


def run_gpu_train(tmp_path, with_data=False, **env):
    tree, calls, python = stand_in_tree(tmp_path)
    if with_data:
        (tree / "data").mkdir()
        (tree / "data" / "fashion-mnist.h5").write_text("converted before")
    out = tmp_path / "out"
    completed = subprocess.run(["bash", GPU_TRAIN, "--epochs", "2"], cwd=tree,
                               env=dict(os.environ, OUT=str(out), GPU_PYTHON=str(python), **env),
                               capture_output=True, text=True, timeout=60)
    return completed, calls.read_text() if calls.exists() else "", out


def test_gpu_train_trains_in_the_reports_folder(tmp_path):
    # A call cut off at its limit brings back only what is under OUT: the run's checkpoints too.
    completed, calls, out = run_gpu_train(tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert (f"-m convnet.train -c configs/fashion-mnist-gpu.json --output-dir {out}/run "
            f"--resume auto --epochs 2\nrun folder: \n") in calls
    assert "-m convnet.data.fashion_mnist" in calls   # no data/fashion-mnist.h5 in the tree


def test_gpu_train_converts_from_the_folder_it_is_given_only_where_the_data_is_missing(tmp_path):
    # A GPU machine has no Debian package: the IDX files travel with the call, and their folder
    # must reach the converter.
    completed, calls, _ = run_gpu_train(tmp_path / "missing", FASHION_MNIST_DIR=".gpu/fm")
    assert completed.returncode == 0, completed.stderr
    assert ("-m convnet.data.fashion_mnist --source .gpu/fm --output data/fashion-mnist.h5\n"
            in calls)
    completed, calls, _ = run_gpu_train(tmp_path / "present", with_data=True,
                                        FASHION_MNIST_DIR=".gpu/fm")
    assert completed.returncode == 0, completed.stderr
    assert "convnet.data.fashion_mnist" not in calls and "-m convnet.train" in calls


def test_gpu_train_exits_with_the_failure_of_its_training(tmp_path):
    completed, _, out = run_gpu_train(tmp_path, STAND_IN_TRAIN_STATUS="3")
    assert completed.returncode == 1
    assert re.search(r"^train +exit +3", (out / "steps.txt").read_text(), re.MULTILINE)


def test_gpu_train_goes_on_from_a_run_brought_back(tmp_path):
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    for name in ("settings.json", "last.h5", "epochs.csv"):
        (earlier / name).write_text(name)
    completed, calls, out = run_gpu_train(tmp_path, RUN_DIR=str(earlier))
    assert completed.returncode == 0, completed.stderr
    assert "run folder: epochs.csv last.h5 settings.json \n" in calls
    assert (out / "run" / "last.h5").read_text() == "last.h5"


def test_gpu_train_refuses_a_run_dir_with_no_checkpoint_before_any_step(tmp_path):
    (tmp_path / "empty").mkdir()
    completed, calls, out = run_gpu_train(tmp_path, RUN_DIR=str(tmp_path / "empty"))
    assert completed.returncode == 2 and calls == ""
    assert completed.stderr == (f"tools/gpu_train.sh: RUN_DIR '{tmp_path}/empty' is not a run "
                                f"folder to go on from (no last.h5), or cannot be copied\n")


GPU_CHECK = os.path.join(os.path.dirname(STEPS), "gpu_check.sh")


def test_gpu_check_runs_every_step_in_order_and_leaves_the_reports_it_lists(tmp_path):
    """tools/gpu_check.sh as `make gpu-check` runs it on the GPU machine, with stand-ins for that
    machine's Python (which writes each --json report), compute-sanitizer and ncu: every step in
    the order of what it tells; the sanitizer's steps alone with CONVNET_SANITIZER set (every
    array its own allocation, tests/conftest.py); the two steps for tuning (ncu, the other plans'
    timings) failing without failing the check; OUT holding the reports the header lists."""
    tree, calls, python = stand_in_tree(tmp_path)
    python.write_text(f"""#!/bin/bash
echo "${{CONVNET_SANITIZER:+sanitized: }}$*" >>"{calls}"
case "$*" in *--plans*) status=4;; *) status=0;; esac
while [ $# -gt 0 ]; do
  if [ "$1" = --json ]; then echo '{{}}' >"$2"; fi
  shift
done
exit $status
""")
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "compute-sanitizer").write_text(f'#!/bin/bash\necho "compute-sanitizer $1 $2 $3 $4" '
                                             f'>>"{calls}"\nshift 4\nexec "$@"\n')
    (tools / "ncu").write_text(f'#!/bin/bash\necho "ncu" >>"{calls}"\nexit 3\n')
    for tool in ("compute-sanitizer", "ncu"):
        (tools / tool).chmod(0o755)
    out = tmp_path / "out"

    def gpu_check(**env):
        completed = subprocess.run(["bash", GPU_CHECK], cwd=tree, capture_output=True, text=True,
                                   env=dict(os.environ, OUT=str(out), GPU_PYTHON=str(python),
                                            PATH=f"{tools}:{os.environ['PATH']}", **env),
                                   timeout=60)
        assert completed.returncode == 0, completed.stderr
        return (out / "steps.txt").read_text().splitlines(), calls.read_text().splitlines()

    def sanitized(lines, tools):
        """Each tool's run of the kernel tests, and no other run under the sanitizer."""
        for tool in tools:
            at = lines.index(f"compute-sanitizer --tool {tool} --error-exitcode 1")
            assert lines[at + 1] == ("sanitized: -m pytest -v -m gpu and not large -k not "
                                     "finite_differences and not random_shapes "
                                     "tests/test_kernels.py")
        assert sum(line.startswith("sanitized: ") for line in lines) == len(tools), lines

    steps, lines = gpu_check()
    on_request = [f'{tool:<14} only on request (STEPS="{tool}")'
                  for tool in ("synccheck", "initcheck")]
    assert steps[8:10] == on_request
    assert [(step.split()[0], step.split()[2]) for step in steps[:8] + steps[10:]] == [
        ("preflight", "0"), ("install", "0"), ("build", "0"), ("gpu-tests", "0"),
        ("bench-kernels", "0"), ("bench-train", "0"), ("memcheck", "0"), ("racecheck", "0"),
        ("ncu", "3"), ("bench-plans", "4")]
    sanitized(lines, ("memcheck", "racecheck"))
    with open(GPU_CHECK) as script:
        header = script.read().split("set -u")[0]
    listed = re.findall(r"^#   (\S+) ", header, re.MULTILINE)
    assert f"Reports in $OUT, {len(listed)} files" in header
    assert sorted(path.name for path in out.iterdir()) == sorted(listed)
    # A later call for the checks run on request: those alone after the set-up (its install
    # left out: the last one built the same sources).
    calls.unlink()
    steps, lines = gpu_check(STEPS="synccheck initcheck")
    assert [step.split()[0] for step in steps if re.search(r"exit +0 ", step)] == [
        "preflight", "build", "synccheck", "initcheck"]
    sanitized(lines, ("synccheck", "initcheck"))


@pytest.mark.parametrize("script", [GPU_CHECK, GPU_TRAIN], ids=["gpu-check", "gpu-train"])
def test_a_python_that_sees_no_gpu_stops_either_script_with_one_line_before_any_step(
        tmp_path, script):
    """make gpu-check or gpu-train on a machine without a GPU (or with GPU_PYTHON lacking CuPy):
    every step failed, the install tried on this machine's Python, and nothing said why."""
    tree, calls, python = stand_in_tree(tmp_path)
    python.write_text(f"""#!/bin/bash
echo "$*" >>"{calls}"
echo 'Traceback (most recent call last):' >&2
echo "ModuleNotFoundError: No module named 'cupy'" >&2
exit 1
""")
    out = tmp_path / "out"
    completed = subprocess.run(["bash", script], cwd=tree, capture_output=True, text=True,
                               env=dict(os.environ, OUT=str(out), GPU_PYTHON=str(python)),
                               timeout=60)
    said = (f"{script}: {python} sees no GPU (ModuleNotFoundError: No module named 'cupy'): run "
            f"it on a GPU machine, GPU_PYTHON naming its Python with CuPy\n")
    assert (completed.returncode, completed.stdout, completed.stderr) == (2, "", said)
    assert (out / "steps.txt").read_text() == said
    assert calls.read_text().count("\n") == 1   # the question, and no step after it


@pytest.mark.parametrize("answer, why", [("exit 3", "exit status 3"),
                                          ("sleep 5", "no answer within 60 s")])
def test_a_python_that_says_nothing_or_hangs_is_named_for_what_it_did(tmp_path, answer, why):
    """The probe's reason where the Python printed nothing: its exit status, or its silence
    past the bound (a stand-in timeout ends it, as the real one would after 60 s)."""
    tree, calls, python = stand_in_tree(tmp_path)
    python.write_text(f"#!/bin/bash\n{answer}\n")
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    (bin_folder / "timeout").write_text(   # the real one, its bound 0.5 s in place of 60
        f"#!/bin/bash\nshift 2; exec {shutil.which('timeout')} --kill-after=1 0.5 \"$@\"\n")
    (bin_folder / "timeout").chmod(0o755)
    completed = subprocess.run(
        ["bash", GPU_CHECK], cwd=tree, capture_output=True, text=True, timeout=60,
        env=dict(os.environ, OUT=str(tmp_path / "out"), GPU_PYTHON=str(python),
                 PATH=f"{bin_folder}:{os.environ['PATH']}"))
    assert (completed.returncode, completed.stderr) == (
        2, f"{GPU_CHECK}: {python} sees no GPU ({why}): run it on a GPU machine, GPU_PYTHON "
           f"naming its Python with CuPy\n")
