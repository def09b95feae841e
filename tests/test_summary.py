import json
import subprocess
import sys

import pytest

from convnet import summary


def run(*args):
    return subprocess.run([sys.executable, "-m", "convnet.summary", *args], capture_output=True,
                          text=True)


def test_default_table():
    result = run()
    assert result.returncode == 0, result.stderr
    assert "total parameters 60,965,224; forward multiply-adds 724.4 M per image" in result.stdout
    assert "training images: crop draw per-chunk-32, colour noise sqrt-eigenvalue-div-1.1" in \
        result.stdout
    for line in ("conv3a   pool2b   b     a         86,528     86,528",
                 "fc8      drop7b   b     a          8,192      8,192"):
        assert line in result.stdout


def test_json_matches_the_table():
    result = run("--json", "--model", "paper")
    data = json.loads(result.stdout)
    assert data["model"] == "paper" and data["total_parameters"] == 60_965_224
    assert data["total_multiply_adds"] == 724_406_816
    assert [t["layer"] for t in data["transfers"]] == \
        ["conv3a", "conv3b", "fc6a", "fc6b", "fc7a", "fc7b", "fc8"]
    assert data["transfer_bytes_per_image"] == 2 * 234_496


@pytest.mark.parametrize("name", ["2012-small28", "paper-small64"])
def test_every_model_renders(name, capsys):
    assert summary.main(["--model", name]) == 0
    assert f"model {name}" in capsys.readouterr().out


def test_the_augmentation_ablations_show_in_what_training_reads(capsys):
    assert summary.main(["--model", "paper-small28+no-crop-flip+no-colour-noise"]) == 0
    assert "training images: crop draw centre, colour noise none" in capsys.readouterr().out


def test_unknown_model_is_a_one_line_error():
    result = run("--model", "vgg16")
    assert result.returncode == 2
    assert "unknown model 'vgg16'" in result.stderr.strip().splitlines()[-1]


def test_a_reader_that_stops_early_ends_it_quietly():
    """`| head`: the pipe closed before the table is written; no traceback, 128 + SIGPIPE."""
    process = subprocess.Popen([sys.executable, "-m", "convnet.summary"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    process.stdout.close()            # before the interpreter has even started writing
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 141
    assert stderr == ""


def test_the_layer_table_names_each_layers_kind_tower_inputs_and_counts(capsys):
    """A row per layer: its kind (with its activation), tower, inputs, output shape, parameters
    and multiply-adds, in the header's order; the two LRNs by their own names."""
    assert summary.main(["--model", "2012"]) == 0
    out = capsys.readouterr().out
    for line in ("conv1a   conv               a     data             48×55×55             17,472 "
                 "   52,707,600",
                 "rnorm1b  cross-map LRN      b     conv1b           48×55×55                  0 "
                 "            0",
                 "cnorm2a  same-map LRN       a     rnorm2a          128×27×27                 0 "
                 "            0",
                 "conv3b   conv + relu        b     pool2a,pool2b    192×13×13           442,560 "
                 "   74,760,192",
                 "fc6b     fc + relu          b     pool3a,pool3b    2048             18,876,416 "
                 "   18,874,368"):
        assert line in out.splitlines()
