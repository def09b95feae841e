"""`python -m convnet.ensemble`: one network's figures are the training command's evaluation of
it; several networks' average is the mean of their softmax outputs, computed here crop by crop;
bad inputs are one line with exit code 2."""
import csv
import json
import errno
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

from convnet import ensemble, train
from convnet.data import dataset
from convnet.data.loader import Loader
from convnet.inference import DEFAULT_RUN
from convnet.trainer import Evaluation, evaluate
from readme import shown_commands
from tiny_run import CROP, active_network, direct_outputs, make_tiny_run, save_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def trained(tmp_path, rng):
    return make_tiny_run(tmp_path, rng)


def parse(text):
    """[(name, (loss, top-1, top-5, images))] from the command's lines."""
    figures = []
    for line in text.splitlines():
        name, rest = line.rsplit(": loss ", 1)
        loss, top1, top5 = rest.split(", ")
        top5, images = top5.split(" over ")
        figures.append((name, (float(loss), float(top1.split()[-1].rstrip("%")),
                               float(top5.split()[-1].rstrip("%")), int(images.split()[0]))))
    return figures


@pytest.mark.parametrize("ten_crop", [False, True], ids=["centre", "ten-crop"])
def test_one_network_scores_as_the_training_command_evaluates_it(trained, capsys, ten_crop):
    flags = ["--ten-crop"] if ten_crop else []
    assert ensemble.main([str(trained.run), "--data-path", str(trained.data), "--gpus", "cpu",
                          "-b", "5", *flags]) == 0
    figures = parse(capsys.readouterr().out)
    views = "10 views" if ten_crop else "centre crop"
    assert [name for name, _ in figures] == [str(trained.run / "best.h5"),
                                             f"average of 1 ({views}, val)"]
    model = trained.network.model
    loader = Loader(trained.data, crop=CROP, seed=0, colour_noise_convention=model.colour_noise,
                    crop_draw=model.crop_draw)
    expected = evaluate(trained.network, loader, 5, ten_crop)
    for _, (loss, top1, top5, images) in figures:
        assert (top1, top5, images) == (round(expected.top1 * 100, 2),
                                        round(expected.top5 * 100, 2), expected.images)
        assert loss == pytest.approx(expected.loss, abs=1e-4)


def expected_figures(probs, labels):
    """(loss, top-1 %, top-5 %) written out: an image's top-k error is the chance that its
    label misses the top k when ties are broken at random, 1 − clamp((k − g) / e, 0, 1) with
    g classes more probable than its label and e as probable (the label among them)."""
    label_probs = probs[np.arange(len(labels)), labels]
    greater = (probs > label_probs[:, None]).sum(axis=1)
    equal = (probs == label_probs[:, None]).sum(axis=1)

    def error(k):
        return 100 * (1 - np.clip((k - greater) / equal, 0, 1)).mean()
    return -np.log(label_probs).mean(), error(1), error(5)


def test_the_average_is_the_mean_of_the_softmax_outputs(trained, rng, capsys, tmp_path):
    second = active_network(rng, "paper-small28")   # another preset: members may differ
    save_checkpoint(second, tmp_path / "second.h5")
    report = tmp_path / "report" / "ensemble.json"
    assert ensemble.main([str(trained.run), str(tmp_path / "second.h5"), "--data-path",
                          str(trained.data), "--gpus", "cpu", "--ten-crop", "-o",
                          str(report)]) == 0
    figures = parse(capsys.readouterr().out)
    probs = [direct_outputs(network, trained.val, trained.mean, ten_crop=True)[0]
             for network in (trained.network, second)]
    expected = [expected_figures(p, trained.val_labels) for p in (*probs, (probs[0] + probs[1]) / 2)]
    for (_, (loss, top1, top5, images)), (want_loss, want_top1, want_top5) in zip(figures,
                                                                                   expected):
        assert images == len(trained.val_labels)
        assert (top1, top5) == (round(want_top1, 2), round(want_top5, 2))
        assert loss == pytest.approx(want_loss, abs=1e-4)
    written = json.loads(report.read_text())
    assert [member["checkpoint"] for member in written["members"]] == [
        str(trained.run / "best.h5"), str(tmp_path / "second.h5")]
    for member, (want_loss, want_top1, want_top5) in zip(written["members"], expected):
        assert (member["top1"] * 100, member["top5"] * 100) == pytest.approx((want_top1,
                                                                              want_top5))
        assert member["loss"] == pytest.approx(want_loss, rel=1e-6)
    assert (written["split"], written["views"], written["images"]) == ("val", "10 views",
                                                                      len(trained.val_labels))
    assert written["average"]["top1"] * 100 == pytest.approx(expected[2][1])
    assert written["average"]["loss"] == pytest.approx(expected[2][0], rel=1e-6)
    assert written["commit"]


def test_a_terminal_shows_the_networks_progress(trained, capsys, monkeypatch):
    """The figures come once every network is evaluated: meanwhile a terminal gets a progress
    bar over the networks' batches, taken in step, which knows their count (for the ETA) and
    goes over all of each network's batches."""
    shown_bars = []

    def bar(batches, description):
        shown_bars.append([description, [0, 0]])
        assert len(batches) == -(-len(trained.val_labels) // 5)   # -b 5
        for batch in batches:
            for member, (positions, _, _) in enumerate(batch):
                shown_bars[-1][1][member] += len(positions)
            yield batch
    monkeypatch.setattr(train, "progress_bar", lambda: bar)
    shutil.copyfile(trained.run / "best.h5", trained.tmp / "copy.h5")
    assert ensemble.main([str(trained.run), str(trained.tmp / "copy.h5"), "--data-path",
                          str(trained.data), "--gpus", "cpu", "-b", "5"]) == 0
    images = len(trained.val_labels)
    assert shown_bars == [["2 networks", [images, images]]]


def test_the_train_split_and_the_same_network_twice(trained, capsys):
    """The same network in two files (a copy: one file twice is refused), with a note that the
    average counts it twice (as a run's best.h5 and last.h5 may be)."""
    shutil.copyfile(trained.run / "best.h5", trained.tmp / "copy.h5")
    assert ensemble.main([str(trained.run), str(trained.tmp / "copy.h5"), "--split", "train",
                          "--data-path", str(trained.data), "--gpus", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert err == (f"note: {trained.tmp / 'copy.h5'} holds the same weights as {trained.run}: "
                   f"the average counts that network twice\n")
    figures = [numbers for _, numbers in parse(out)]
    probs = direct_outputs(trained.network, trained.train, trained.mean)[0]
    loss, top1, top5 = expected_figures(probs, trained.train_labels)
    assert figures[0] == figures[1] == figures[2]
    assert figures[2][1:] == (round(top1, 2), round(top5, 2), len(trained.train_labels))
    assert figures[2][0] == pytest.approx(loss, abs=1e-4)


def test_bad_inputs_are_one_line_with_exit_2_before_any_evaluation(trained, capsys, rng,
                                                                   tmp_path, monkeypatch):
    data = ["--data-path", str(trained.data), "--gpus", "cpu"]
    assert ensemble.main([str(trained.run), str(tmp_path / "none.h5"), *data]) == 2
    assert capsys.readouterr() == ("", f"error: checkpoint {tmp_path / 'none.h5'}: no such "
                                       f"file\n")
    # The default run's folder named as a member is a member like any other: ensemble has no
    # --checkpoint, whose default it is
    monkeypatch.chdir(tmp_path)
    assert ensemble.main([str(trained.run), DEFAULT_RUN, *data]) == 2
    assert capsys.readouterr() == ("", f"error: checkpoint {DEFAULT_RUN}: no such file\n")
    for output in (str(tmp_path), ""):   # -o is the parser's to refuse, before any checkpoint
        with pytest.raises(SystemExit) as exit_:
            ensemble.main([str(trained.run), str(tmp_path / "none.h5"), *data, "-o", output])
        assert exit_.value.code == 2
        assert f"error: -o {output!r}: must name a file, not a folder" in capsys.readouterr().err
    # A name not ending in .json: the members' checkpoints and the dataset (HDF5) among them
    for output in (str(trained.run / "best.h5"), str(trained.data)):
        kept = open(output, "rb").read()
        with pytest.raises(SystemExit) as exit_:
            ensemble.main([str(trained.run), *data, "-o", output])
        assert exit_.value.code == 2
        assert f"error: -o {output}: the output is a JSON file; give a name ending in .json" \
            in capsys.readouterr().err
        assert open(output, "rb").read() == kept

    empty = tmp_path / "empty.h5"
    dataset.write(empty, name="empty", train_images=trained.train, train_labels=trained.train_labels,
                  val_images=trained.val[:0], val_labels=trained.val_labels[:0],
                  class_ids=[f"c{i}" for i in range(10)], class_names=[str(i) for i in range(10)])
    assert ensemble.main([str(trained.run), "--data-path", str(empty), "--gpus", "cpu"]) == 2
    assert capsys.readouterr().err == f"error: dataset {empty}: its val split holds no images\n"

    diverged = active_network(rng)
    diverged.params["fc8/bias"][0] = np.nan
    save_checkpoint(diverged, tmp_path / "nan.h5")
    for members in ([trained.run, tmp_path / "nan.h5"], [tmp_path / "nan.h5", trained.run]):
        assert ensemble.main([*map(str, members), *data]) == 2
        assert capsys.readouterr() == ("", f"error: checkpoint {tmp_path / 'nan.h5'}: its "
                                           f"parameters are not all finite (a diverged "
                                           f"network)\n")
    overflowing = active_network(rng)      # finite weights whose outputs are not
    overflowing.params["fc8/drop7a"][:] = 3e38
    overflowing.params["fc8/drop7b"][:] = -3e38
    save_checkpoint(overflowing, tmp_path / "overflow.h5")
    with warnings.catch_warnings():   # one line on stderr, not NumPy's warnings before it
        warnings.simplefilter("error", RuntimeWarning)
        assert ensemble.main([str(tmp_path / "overflow.h5"), *data]) == 2
    assert capsys.readouterr().err == (f"error: checkpoint {tmp_path / 'overflow.h5'}: its outputs "
                                       f"on the val split are not all finite\n")

    for argv, message in ((["run", "-b", "0"], "--batch-size must be at least 1; got 0"),
                          (["run", "--split", "test"], "--split: invalid choice: 'test'"),
                          ([], "the following arguments are required: CHECKPOINT")):
        with pytest.raises(SystemExit) as exit_:
            ensemble.main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and message in err and err.count("\n") == 1


def test_one_checkpoint_twice_is_refused_naming_both_arguments(trained, capsys):
    """A run folder means its best.h5, and a link is the file it points to: either counted
    twice would weigh one network double in the average."""
    os.symlink(trained.run / "best.h5", trained.tmp / "link.h5")
    data = ["--data-path", str(trained.data), "--gpus", "cpu"]
    for first, second in ((trained.run, trained.run / "best.h5"),
                          (trained.tmp / "link.h5", trained.run), (trained.run, trained.run)):
        assert ensemble.main([str(first), str(second), *data]) == 2
        assert capsys.readouterr() == ("", f"error: {second}: the same checkpoint as {first}; "
                                           f"each network counts once\n")


def test_an_empty_checkpoint_name_is_the_parser_s_one_line(trained, capsys):
    for argv in ([str(trained.run), ""], [str(trained.run), "--data-path", ""]):
        with pytest.raises(SystemExit) as exit_:
            ensemble.main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1
        assert err.endswith("must name a file or folder; got '' (see --help)\n"), err
        assert "HDF5" not in err


class FailingOutput:
    """A standard output that cannot be written: a full disk, a reader gone."""
    def write(self, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def flush(self):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_the_report_is_written_before_the_lines_that_standard_output_may_lose(trained,
                                                                               monkeypatch):
    report = trained.tmp / "report.json"
    monkeypatch.setattr(sys, "stdout", FailingOutput())
    ensemble.main([str(trained.run), "--data-path", str(trained.data), "--gpus", "cpu", "-o",
                   str(report)])   # its status is the failed output's, not this test's
    monkeypatch.undo()
    written = json.loads(report.read_text())
    assert [member["checkpoint"] for member in written["members"]] == [
        str(trained.run / "best.h5")]
    assert written["average"]["images"] == len(trained.val_labels)


def test_names_that_are_not_utf8_or_hold_a_newline_are_escaped(trained, capsys, tmp_path):
    """Printed under a strict UTF-8 output (capsys's): one line; in the report as they are, for
    a script to open (JSON escapes them)."""
    odd = os.path.join(os.fsdecode(bytes(tmp_path)), os.fsdecode(b"run\xff\nB"))
    shutil.copytree(trained.run, odd)
    report = tmp_path / "report.json"
    assert ensemble.main([odd, "--data-path", str(trained.data), "--gpus", "cpu", "-o",
                          str(report)]) == 0
    shown = f"{tmp_path}/run\\xff\\nB/best.h5"
    assert [name for name, _ in parse(capsys.readouterr().out)][0] == shown
    assert json.loads(report.read_text())["members"][0]["checkpoint"] == f"{odd}/best.h5"


def test_a_report_that_cannot_be_written_loses_no_figures(trained, capsys, monkeypatch):
    """A full disk at the report: the lines are printed all the same, then its error."""
    def full_disk(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
    monkeypatch.setattr(ensemble, "atomic_json", full_disk)
    report = trained.tmp / "report.json"
    assert ensemble.main([str(trained.run), "--data-path", str(trained.data), "--gpus", "cpu",
                          "-o", str(report)]) == 2
    said = capsys.readouterr()
    assert said.out.startswith(f"{trained.run / 'best.h5'}: loss ")
    assert said.out.splitlines()[-1].startswith("average of 1 (centre crop, val): loss ")
    assert said.err == f"error: {report}: No space left on device\n"


def test_ensemble_runs_as_a_module(trained):
    result = subprocess.run([sys.executable, "-m", "convnet.ensemble", str(trained.run),
                             "--data-path", str(trained.data), "--gpus", "cpu"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(parse(result.stdout)) == 2


def test_the_readme_ensemble_lines_are_the_reports():
    """README's ensemble outputs print what the -o reports committed beside the runs hold."""
    commands = shown_commands("python -m convnet.ensemble")
    assert len(commands) == 2
    for arguments, printed in commands:
        report = json.loads(open(os.path.join(ROOT, arguments[arguments.index("-o") + 1])).read())
        members = [(member.pop("checkpoint"), Evaluation(**member))
                   for member in report["members"]]
        assert printed == [f"{name}: {result}" for name, result in members] + [
            f"average of {len(members)} ({report['views']}, {report['split']}): "
            f"{Evaluation(**report['average'])}"]
        assert [name for name, _ in members] == [os.path.join(run, "best.h5") for run
                                                 in arguments[:len(members)]]
        if report["views"] != "centre crop":
            continue
        # the members' figures are their runs' last validation, as the runs logged it
        for name, result in members:
            seed = name.split("seed")[1].split("/")[0]
            with open(os.path.join(ROOT, "bench", "results", "ensemble",
                                   f"seed{seed}-epochs.csv")) as handle:
                last = list(csv.DictReader(handle))[-1]
            assert float(last["val_top1"]) == pytest.approx(result.top1)
