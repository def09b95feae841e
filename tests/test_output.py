"""Standard output that fails, as every command meets it (convnet.errors.run_command): a full
disk is one line naming standard output and exit status 2; a reader gone (| head) ends the
command quietly with 141, as a C tool; a standard output closed from the start (>&-) is refused
where the output is the result. No traceback, and files written before stay whole. The commands
run as a user starts them, with Python's output buffered (PYTHONUNBUFFERED unset) and not."""
import errno
import io
import os
import signal
import subprocess
import sys
from contextlib import closing

import numpy as np
import pytest

import convnet
from convnet import errors
from convnet.data import dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FULL = "error: standard output: No space left on device\n"


class RefusingStream(io.StringIO):
    """A standard output whose writes fail with `number` once `after` characters are in."""

    def __init__(self, number, after=0):
        super().__init__()
        self.number, self.after = number, after

    def write(self, text):
        if self.tell() + len(text) > self.after:
            raise OSError(self.number, os.strerror(self.number))
        return super().write(text)


@pytest.mark.parametrize("number, status, said", [(errno.ENOSPC, 2, FULL),
                                                  (errno.EPIPE, 141, "")])
def test_a_refused_write_stops_the_command_in_one_line_or_quietly(number, status, said,
                                                                   monkeypatch, capsys):
    stream = RefusingStream(number, after=6)
    monkeypatch.setattr(sys, "stdout", stream)
    went_on = []

    def main():
        print("first")
        print("second")       # refused: the command stops here
        went_on.append(True)
        return 0
    assert errors.run_command(main) == status
    assert went_on == [] and stream.getvalue() == "first\n" and sys.stdout is stream
    assert capsys.readouterr().err == said


def test_writes_after_a_failure_go_nowhere_and_raise_nothing(monkeypatch, capsys):
    """A command that takes the failure for its own (its cleanup, a report of it) is not
    stopped again by its next write."""
    monkeypatch.setattr(sys, "stdout", RefusingStream(errno.ENOSPC))

    def main():
        try:
            print("result")
        except errors.OutputFailed:
            pass
        print("more", flush=True)
        return 3
    assert errors.run_command(main) == 3
    assert capsys.readouterr().err == ""


def test_a_ctrl_c_the_command_lets_through_is_one_line_and_exit_130(capsys):
    """make bench-data, bench-cpu, scaling...: a Ctrl-C printed a traceback of where it came."""
    def main():
        print("half the figures")
        raise KeyboardInterrupt
    try:
        status = errors.run_command(main)
    except KeyboardInterrupt:   # a failure, not the end of this test run
        pytest.fail("the Ctrl-C came out of run_command, a traceback")
    assert status == 130
    assert capsys.readouterr() == ("half the figures\n",
                                   "interrupted: each file it wrote is whole or as it was\n")


LOADING = ("import signal, sys\n"
           "sys.argv[:] = ['-m']   # as Python names a command while it finds its module\n"
           "import convnet\n"
           "signal.raise_signal(signal.SIGINT)   # a Ctrl-C while the command's modules load\n"
           "print('loaded')\n")


@pytest.mark.parametrize("how", ["Ctrl-C", "Ctrl-C ignored", "standard error closed"])
def test_a_ctrl_c_while_a_command_loads_is_one_line_and_exit_130(how):
    """python -m convnet.<command>: a Ctrl-C before the command runs is its one line, not a
    traceback of the import it came in (with standard error closed, 2>&-, still exit 130); one
    the command was started with ignored (a script's background job) stays ignored."""
    def start():
        signal.signal(signal.SIGINT, signal.SIG_IGN if how == "Ctrl-C ignored" else
                      signal.default_int_handler)
        if how == "standard error closed":
            os.close(2)
    result = subprocess.run([sys.executable, "-c", LOADING], stdout=subprocess.PIPE,
                            stderr=None if how == "standard error closed" else subprocess.PIPE,
                            text=True, preexec_fn=start, timeout=120)
    said = {"Ctrl-C": (130, "", "interrupted: before the work, of which nothing was written\n"),
            "Ctrl-C ignored": (0, "loaded\n", ""), "standard error closed": (130, "", None)}
    assert (result.returncode, result.stdout, result.stderr) == said[how]


MISSING = ("import sys\n"
           "sys.argv[:] = ['-m']   # as Python names a command while it finds its module\n"
           "import convnet\n"
           "import {module}\n")


@pytest.mark.parametrize("module, said", [
    ("scipy_of_no_install", "error: scipy_of_no_install is not installed for {python}: run the "
                            "command with the project's Python, .venv/bin/python (make setup "
                            "makes it), or pip install -e . for this one\n"),
    ("convnet.no_such_module", "Traceback"),   # the project's own: a fault of its, shown whole
    ("numpy.no_such_module", "Traceback")])    # of a package installed: a fault, not an install
def test_a_package_the_python_lacks_is_one_line_naming_the_python_to_use(module, said):
    """python -m convnet.<command> by the system's Python, not the project's .venv: one line,
    not a traceback ending in ModuleNotFoundError; exit status 1."""
    result = subprocess.run([sys.executable, "-c", MISSING.format(module=module)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith(said.format(python=sys.executable))


def test_a_command_running_takes_ctrl_c_as_python_does(monkeypatch):
    """Once a command runs (run_command), the loading's handler has given way to Python's, which
    raises KeyboardInterrupt where the command is (training defers it to its next step)."""
    monkeypatch.setattr(signal, "signal",
                        lambda number, handler: handlers.update({number: handler}))
    handlers = {}
    monkeypatch.setattr(signal, "getsignal", lambda number: convnet.stopped_while_loading)
    assert errors.run_command(lambda: 0) == 0
    assert handlers == {signal.SIGINT: signal.default_int_handler}


def test_a_closed_standard_output_is_refused_where_it_holds_the_results(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdout", None)
    assert errors.run_command(lambda: 0) == 2
    assert capsys.readouterr().err == ("error: standard output is closed (>&-): the results "
                                       "would go nowhere\n")
    assert errors.run_command(lambda: 7, output_required=False) == 7


def command(*arguments, stdout, buffered, cwd=ROOT, stderr=subprocess.PIPE):
    environment = dict(os.environ)
    environment.pop("PYTHONUNBUFFERED", None)
    if not buffered:
        environment["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen([sys.executable, *arguments], stdout=stdout, stderr=stderr,
                            text=True, cwd=cwd, env=environment)


SUMMARY = ("-m", "convnet.summary")
SCALING = ("tools/scaling.py", "--step-seconds", "0.05", "--batch", "128")


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("arguments", [SUMMARY, SCALING], ids=["summary", "scaling"])
def test_commands_on_a_full_disk_and_a_closed_pipe(arguments, buffered):
    with open("/dev/full", "w") as full:
        process = command(*arguments, stdout=full, buffered=buffered)
        assert (process.wait(timeout=120), process.stderr.read()) == (2, FULL)
    process = command(*arguments, stdout=subprocess.PIPE, buffered=buffered)
    process.stdout.close()   # | head that has read all it wants
    assert (process.wait(timeout=120), process.stderr.read()) == (141, "")


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
def test_a_full_disk_that_takes_the_error_line_too_still_ends_with_2(buffered):
    """The line cannot be written either: the status is still 2, not the 120 of the
    interpreter's flush at exit failing on the line it still held."""
    with open("/dev/full", "w") as full:
        assert command(*SUMMARY, stdout=full, stderr=full, buffered=buffered).wait(120) == 2


def test_a_command_started_with_standard_output_closed_is_refused():
    process = subprocess.run([sys.executable, *SUMMARY], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=120,
                             preexec_fn=lambda: os.close(1))
    assert (process.returncode, process.stderr) == (2, "error: standard output is closed (>&-): "
                                                       "the results would go nowhere\n")


def test_training_whose_reader_has_gone_stops_with_its_epoch_kept(tmp_path, rng):
    """The epoch's line is told after its checkpoint is written: a reader that stops after the
    run's first line (| head -1) stops the run there, quietly, and --resume goes on from the
    epoch. A full disk from the start stops it at its first line, in one line."""
    data = tmp_path / "set.h5"
    dataset.write(data, name="t", train_images=rng.integers(0, 256, (8, 32, 32, 3), np.uint8),
                  train_labels=np.zeros(8), val_images=np.zeros((4, 32, 32, 3), np.uint8),
                  val_labels=np.zeros(4), class_ids=list("ab"), class_names=list("ab"))
    run = tmp_path / "run"
    flags = ("-m", "convnet.train", "--data-path", str(data), "-b", "4", "--gpus", "cpu",
             "--output-dir", str(run))
    process = command(*flags, "--epochs", "3", stdout=subprocess.PIPE, buffered=False,
                      cwd=tmp_path)
    assert process.stdout.readline().startswith("training ")
    process.stdout.close()
    assert (process.wait(timeout=300), process.stderr.read()) == (141, "")
    resumed = subprocess.run([sys.executable, *flags, "--epochs", "1", "--resume"],
                             capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "the run has done its 1 epoch" in resumed.stdout
    with open("/dev/full", "w") as full:
        process = command(*flags[:-1], str(tmp_path / "other"), "--epochs", "1", stdout=full,
                          buffered=False, cwd=tmp_path)
        assert (process.wait(timeout=300), process.stderr.read()) == (2, FULL)


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
def test_prepare_on_a_full_disk_keeps_its_dataset(tmp_path, rng, buffered):
    """prepare's summary goes through the standard output run_command checks: a full disk is
    its one line and exit status 2, the dataset written before it whole."""
    import imagetree
    imagetree.build(str(tmp_path / "tree"), rng, per_class=1, val_per_class=1)
    output = tmp_path / "o.h5"
    with open("/dev/full", "w") as full:
        process = command("-m", "convnet.data.prepare", str(tmp_path / "tree"), "--output",
                          str(output), "--size", "32", "--workers", "1", stdout=full,
                          buffered=buffered)
        assert (process.wait(timeout=300), process.stderr.read()) == (2, FULL)
    with closing(dataset.Dataset(output)) as written:
        assert written.size("train") == 8
