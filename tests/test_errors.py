"""Names in what the commands print (convnet.errors.shown): one line whatever a name holds, no
terminal driven by it, and no command that fails on a name or a character its output cannot
encode."""
import os
import subprocess
import sys

import numpy as np
import pytest

from convnet import options, train as train_module
from convnet.data import dataset
from convnet.errors import shown
from tiny_run import write_logs_alone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("name, expected", [
    ("plain é.h5", "plain é.h5"),                       # text, UTF-8 or not, as it is
    ("a\nb\tc\x1b[31m\x7f\x85\u2028.h5", "a\\nb\\tc\\x1b[31m\\x7f\\x85\\u2028.h5"),
    (os.fsdecode(b"bad\xff.h5"), "bad\\xff.h5"),        # a name's byte that is not UTF-8
    (b"bad\xff\n.h5", "bad\\xff\\n.h5"),                # the name as bytes
    ("lone\ud800.h5", "lone\\ud800.h5"),                # a JSON file's \ud800: no byte of a name
    ("already\\n shown\\xff", "already\\n shown\\xff"),  # shown text: a backslash is kept
])
def test_a_name_is_shown_on_one_line_and_shown_text_as_it_is(name, expected):
    assert shown(name) == expected
    assert shown(shown(name)) == expected       # a name shown twice is escaped once


def test_standard_output_escapes_what_its_encoding_lacks():
    """A command's output holding a character its standard output's encoding lacks (the × of
    convnet.summary's shapes under PYTHONIOENCODING=ascii) writes it escaped, as standard error
    does, rather than stopping on a UnicodeEncodeError."""
    result = subprocess.run([sys.executable, "-m", "convnet.summary", "--model", "2012-small28"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120,
                            env=dict(os.environ, PYTHONIOENCODING="ascii"))
    assert (result.returncode, result.stderr) == (0, "")
    assert "input 3\\xd728\\xd728, 10 classes" in result.stdout.splitlines()[0]


def test_argument_and_config_errors_show_their_names_on_one_line(tmp_path, capsys):
    """argparse's own messages hold the arguments as typed, a config's unknown keys as its
    JSON spells them: each name shown (convnet.errors.shown), the error one line."""
    with pytest.raises(SystemExit):
        options.parse(["run\n" + os.fsdecode(b"\xff")])
    assert capsys.readouterr().err == ("python -m convnet.train: error: unrecognized arguments: "
                                       "run\\n\\xff (see --help)\n")
    config = tmp_path / "c\x1b.json"
    config.write_text('{"\\u001b[31mred": 1, "a\\nb": 2, "\\ud800": 3}')
    with pytest.raises(SystemExit):
        options.parse(["-c", str(config)])
    assert capsys.readouterr().err == (f"python -m convnet.train: error: --config {tmp_path}/"
                                       f"c\\x1b.json: unknown settings \\x1b[31mred, a\\nb, "
                                       f"\\ud800 (see --help)\n")


def test_a_config_value_that_no_file_name_can_hold_is_refused(tmp_path, capsys):
    """JSON's \\ud800 alone is no character and no byte of a name: one line, not a traceback
    where the path is first used; \\udcff, as settings.json records a name's byte 0xff, is
    that byte."""
    config = tmp_path / "c.json"
    config.write_text('{"data_path": "x\\ud800.h5"}')
    with pytest.raises(SystemExit):
        options.parse(["-c", str(config)])
    assert capsys.readouterr().err == (f"python -m convnet.train: error: --config {config}: "
                                       f"data_path holds \"x\\ud800.h5\": a surrogate escape "
                                       f"(\\uD800 to \\uDFFF) that stands for no byte of a "
                                       f"file name (\\uDC80 to \\uDCFF do) (see --help)\n")
    config.write_text('{"data_path": "bad\\udcff.h5", "lr_steps": [2]}')
    assert options.parse(["-c", str(config)]).data_path == os.fsdecode(b"bad\xff.h5")


def test_the_runs_lines_show_its_names(tmp_path, rng, capsys):
    """Names in what a run prints (its dataset, its folder, the checkpoint it resumes, the
    weights it starts from) are shown on one line, as its errors are."""
    data = tmp_path / os.fsdecode(b"set\xff\n.h5")
    dataset.write(data, name="t", train_images=rng.integers(0, 256, (8, 32, 32, 3), np.uint8),
                  train_labels=np.zeros(8), val_images=np.zeros((4, 32, 32, 3), np.uint8),
                  val_labels=np.zeros(4), class_ids=list("ab"), class_names=list("ab"))
    out = tmp_path / "run\x1b[31m"
    write_logs_alone(out)
    common = ["--data-path", str(data), "-b", "4", "--gpus", "cpu", "--output-dir", str(out)]
    assert train_module.main([*common, "--epochs", "1", "--resume", "auto"]) == 0
    said = capsys.readouterr()
    assert said.err.startswith(f"note: --resume auto found no checkpoint in {tmp_path}/"
                               f"run\\x1b[31m: the run starts again from step 0")
    assert said.out.splitlines()[0] == (f"training 2012-small28 on {tmp_path}/set\\xff\\n.h5 "
                                        f"(cpu) for 1 epoch; output in {tmp_path}/run\\x1b[31m")
    assert train_module.main([*common, "--epochs", "2", "--resume", "auto",
                              "--weights", str(out)]) == 0
    said = capsys.readouterr()
    assert said.out.startswith(f"resumed from {tmp_path}/run\\x1b[31m/last.h5 at epoch 1")
    assert f"note: --weights {tmp_path}/run\\x1b[31m left unused" in said.err
    assert train_module.main([*common[:-1], str(tmp_path / "tuned"), "--epochs", "1",
                              "--weights", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"weights from {tmp_path}/run\\x1b[31m/best.h5: ")
