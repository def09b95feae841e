"""tools/compare_runs.py: finished runs grouped by model, their errors across seeds, and the
refusals of runs that cannot be compared."""
import csv
import glob
import json
import os
import subprocess
import sys

import pytest

from convnet.trainer import EPOCH_FIELDS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import compare_runs  # noqa: E402

RECIPE = {"data_path": "data/fashion-mnist.h5", "batch_size": 128, "epochs": 2, "lr": 0.02,
          "momentum": 0.9, "wd": 0.0005, "lr_schedule": "steps", "lr_steps": [1],
          "ten_crop": False}


def write_run(folder, model, seed, val_top1, *, train_loss=0.4, val_loss=0.3, epochs=2,
              **recipe):
    """A run folder as the trainer leaves it: settings.json and epochs.csv, its last epoch's
    validation top-1 error `val_top1`, the epochs before it lower (the last epoch counts, not
    the best)."""
    folder = str(folder)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "settings.json"), "w") as handle:
        json.dump({**RECIPE, **recipe, "model": model, "seed": seed, "output_dir": folder},
                  handle)
    with open(os.path.join(folder, "epochs.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, EPOCH_FIELDS)
        writer.writeheader()
        for epoch in range(1, epochs + 1):
            row = dict.fromkeys(EPOCH_FIELDS, 0.5)
            row.update(epoch=epoch, val_top1=val_top1 if epoch == epochs else 0.01,
                       train_loss=train_loss if epoch == epochs else 0.01,
                       val_loss=val_loss if epoch == epochs else 0.01)
            writer.writerow(row)
    return folder


def test_runs_grouped_by_model_with_the_base_first(tmp_path):
    runs = [write_run(tmp_path / "a", "2012-small28+no-norm", 1, 0.12, train_loss=0.2),
            write_run(tmp_path / "b", "2012-small28", 1, 0.10),
            write_run(tmp_path / "c", "2012-small28+no-norm", 0, 0.11, train_loss=0.4),
            write_run(tmp_path / "d", "2012-small28", 0, 0.11)]
    rows = compare_runs.compare([compare_runs.read_run(path) for path in runs])
    assert [row[0] for row in rows] == ["2012-small28", "2012-small28+no-norm"]
    (_, base_errors, base_mean, base_versus, _, _), (_, errors, mean, versus, train, val) = rows
    assert base_errors == {0: 0.11, 1: 0.10} and list(errors) == [0, 1]
    assert (base_mean, base_versus) == (pytest.approx(0.105), None)
    assert (mean, versus, train, val) == (pytest.approx(0.115), pytest.approx(0.01),
                                          pytest.approx(0.3), pytest.approx(0.3))
    lines = compare_runs.table(rows).splitlines()
    assert lines[0].startswith("| model | top-1 error (seed) | mean | vs. base, same seeds |")
    assert lines[2] == "| `2012-small28` | 11.00% (0), 10.00% (1) | 10.50% |  | 0.400 | 0.300 |"
    assert lines[3] == ("| `2012-small28+no-norm` | 11.00% (0), 12.00% (1) | 11.50% | +1.00 | "
                        "0.300 | 0.300 |")


def test_a_settings_file_without_its_epochs_file_names_that_file(tmp_path):
    """A settings file without its epochs.csv beside it: that file is missing, not a folder."""
    write_run(tmp_path / "run", "2012-small28", 0, 0.2)
    os.rename(tmp_path / "run" / "settings.json", tmp_path / "full-settings.json")
    with pytest.raises(compare_runs.UsageError) as refused:
        compare_runs.read_run(str(tmp_path / "full-settings.json"))
    assert str(refused.value) == f"run {tmp_path / 'full-epochs.csv'}: no such file"


def test_models_follow_the_order_of_ablations(tmp_path):
    names = ["2012-small28+no-dropout", "2012-small28+no-norm+one-tower", "2012-small28+one-tower",
             "2012-small28+no-norm", "2012-small28"]
    runs = [write_run(tmp_path / str(i), name, 0, 0.1) for i, name in enumerate(names)]
    rows = compare_runs.compare([compare_runs.read_run(path) for path in runs])
    assert [row[0] for row in rows] == [
        "2012-small28", "2012-small28+no-norm", "2012-small28+no-norm+one-tower",
        "2012-small28+one-tower", "2012-small28+no-dropout"]


def test_files_named_beside_each_other_are_a_run(tmp_path):
    folder = write_run(tmp_path / "run", "2012-small28", 0, 0.2)
    for name in ("settings.json", "epochs.csv"):
        os.rename(os.path.join(folder, name), tmp_path / f"full-{name}")
    run = compare_runs.read_run(str(tmp_path / "full-settings.json"))
    assert (run["model"], run["seed"], run["epochs"]["val_top1"][-1]) == ("2012-small28", 0, 0.2)


def test_differences_pair_the_runs_of_one_seed(tmp_path):
    """An ablation run at seed 1 only is compared with the base run at seed 1, not with the
    base's mean; an ablation with no seed in common gets no difference."""
    runs = [write_run(tmp_path / "a", "2012-small28", 0, 0.10),
            write_run(tmp_path / "b", "2012-small28", 1, 0.14),
            write_run(tmp_path / "c", "2012-small28+no-dropout", 1, 0.13),
            write_run(tmp_path / "d", "2012-small28+no-norm", 2, 0.13)]
    rows = compare_runs.compare([compare_runs.read_run(path) for path in runs])
    assert [(row[0], row[3]) for row in rows] == [
        ("2012-small28", None), ("2012-small28+no-norm", None),
        ("2012-small28+no-dropout", pytest.approx(-0.01))]


def test_without_the_base_model_no_differences_are_given(tmp_path):
    rows = compare_runs.compare([compare_runs.read_run(
        write_run(tmp_path / "a", "2012-small28+one-tower", 0, 0.12))])
    assert rows[0][3] is None


@pytest.mark.parametrize("second,message", [
    (dict(model="2012-small28", seed=0, val_top1=0.2),
     "two runs of 2012-small28 with seed 0 (the second: {b})"),
    (dict(model="2012-small28", seed=1, val_top1=0.2, lr=0.01),
     "runs {a} and {b} differ in lr; compare runs of one recipe"),
    (dict(model="2012-small28", seed=1, val_top1=0.2, ten_crop=True),
     "runs {a} and {b} differ in ten_crop; compare runs of one recipe"),
    (dict(model="paper-small28", seed=1, val_top1=0.2),
     "runs of different base models (2012-small28, paper-small28); compare one model and its "
     "ablations"),
])
def test_runs_that_cannot_be_compared_are_refused(tmp_path, second, message):
    runs = [write_run(tmp_path / "a", "2012-small28", 0, 0.1), write_run(tmp_path / "b", **second)]
    result = subprocess.run([sys.executable, "tools/compare_runs.py", *runs], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 2
    expected = "error: " + message.format(a=runs[0], b=runs[1])
    assert result.stderr.strip().splitlines() == [expected]


def test_unfinished_and_foreign_runs_are_refused(tmp_path):
    unfinished = write_run(tmp_path / "a", "2012-small28", 0, 0.1, epochs=1)
    with open(os.path.join(unfinished, "settings.json")) as handle:
        settings = json.load(handle)
    with open(os.path.join(unfinished, "settings.json"), "w") as handle:
        json.dump({**settings, "epochs": 3}, handle)
    with pytest.raises(compare_runs.UsageError, match="1 of its 3 epochs finished"):
        compare_runs.read_run(unfinished)
    overrun = write_run(tmp_path / "over", "2012-small28", 0, 0.1, epochs=3)
    with open(os.path.join(overrun, "settings.json")) as handle:
        over_settings = json.load(handle)
    with open(os.path.join(overrun, "settings.json"), "w") as handle:
        json.dump({**over_settings, "epochs": 2}, handle)
    with pytest.raises(compare_runs.UsageError, match="3 epochs in its epochs.csv, more than "
                                                      "the 2 its settings name"):
        compare_runs.read_run(overrun)
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(compare_runs.UsageError, match="neither a run folder nor"):
        compare_runs.read_run(str(tmp_path / "notes.txt"))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "settings.json").write_text('{"model": "2012"}')
    with pytest.raises(compare_runs.UsageError, match="not the training command's settings"):
        compare_runs.read_run(str(tmp_path / "b"))
    for changed, message in (({"model": "resnet"}, "unknown model 'resnet'"),
                             ({"model": None}, "model null is not a model's name"),
                             ({"seed": [1]}, r"seed \[1\] is not a whole number"),
                             ({"epochs": "1"}, 'epochs "1" is not a number of epochs'),
                             ({"epochs": None}, "epochs null is not a number of epochs"),
                             ({"epochs": 0}, "epochs 0 is not a number of epochs")):
        with open(os.path.join(unfinished, "settings.json"), "w") as handle:
            json.dump({**settings, **changed}, handle)
        with pytest.raises(compare_runs.UsageError, match=message):
            compare_runs.read_run(unfinished)
    (tmp_path / "b" / "settings.json").write_text('["model", "seed"]')
    with pytest.raises(compare_runs.UsageError, match=r"settings \(not a JSON object\)"):
        compare_runs.read_run(str(tmp_path / "b"))


def test_the_readme_table_of_ablations_is_the_tools_output():
    """The figures README gives for the ablation runs come from the committed runs."""
    runs = sorted(glob.glob(os.path.join(ROOT, "bench", "results", "ablation-*-settings.json")))
    table = compare_runs.table(compare_runs.compare([compare_runs.read_run(p) for p in runs]))
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        assert table in handle.read()


@pytest.mark.parametrize("key,value", [
    ("data_path", "data/other.h5"), ("batch_size", 256), ("epochs", 3), ("lr", 0.01),
    ("momentum", 0.8), ("wd", 0.0), ("lr_schedule", "plateau"), ("lr_steps", [2]),
    ("ten_crop", True)])
def test_runs_of_another_recipe_are_refused_whichever_setting_differs(tmp_path, key, value):
    second = write_run(tmp_path / "b", "2012-small28+no-norm", 0, 0.1,
                       epochs=value if key == "epochs" else RECIPE["epochs"])
    with open(os.path.join(second, "settings.json")) as handle:
        settings = json.load(handle)
    with open(os.path.join(second, "settings.json"), "w") as handle:
        json.dump({**settings, key: value}, handle)
    runs = [compare_runs.read_run(write_run(tmp_path / "a", "2012-small28", 0, 0.1)),
            compare_runs.read_run(second)]
    with pytest.raises(compare_runs.UsageError, match=f"differ in {key}; compare runs of one"):
        compare_runs.compare(runs)


def test_one_dataset_path_spelt_two_ways_is_one_recipe(tmp_path):
    """./data/x.h5 and data/x.h5 name one file: the runs compare."""
    second = write_run(tmp_path / "b", "2012-small28+no-norm", 0, 0.1)
    with open(os.path.join(second, "settings.json")) as handle:
        settings = json.load(handle)
    with open(os.path.join(second, "settings.json"), "w") as handle:
        json.dump({**settings, "data_path": "./" + RECIPE["data_path"]}, handle)
    runs = [compare_runs.read_run(write_run(tmp_path / "a", "2012-small28", 0, 0.1)),
            compare_runs.read_run(second)]
    assert [model for model, *_ in compare_runs.compare(runs)] == ["2012-small28",
                                                                    "2012-small28+no-norm"]


def test_runs_that_record_their_dataset_compare_by_it_not_by_its_path(tmp_path):
    """The same file typed from two folders (set.h5, ../set.h5) is one recipe; two files of one
    name typed alike (set.h5 in two folders) are two."""
    identity = {"name": "t", "train_images": 8, "val_images": 4, "labels_sha256": "ab",
                "image_size": 32}
    base = compare_runs.read_run(write_run(tmp_path / "a", "2012-small28", 0, 0.1,
                                           data_path="set.h5", dataset=identity))
    same = compare_runs.read_run(write_run(tmp_path / "b", "2012-small28+no-norm", 0, 0.1,
                                           data_path="../set.h5", dataset=identity))
    assert len(compare_runs.compare([base, same])) == 2
    other = compare_runs.read_run(write_run(tmp_path / "c", "2012-small28+no-norm", 0, 0.1,
                                            data_path="set.h5",
                                            dataset={**identity, "name": "other"}))
    with pytest.raises(compare_runs.UsageError, match="differ in data_path; compare runs of one"):
        compare_runs.compare([base, other])
    # settings written before they recorded the dataset: by the path, beside either kind
    older = compare_runs.read_run(write_run(tmp_path / "d", "2012-small28+no-norm", 1, 0.1,
                                            data_path="./set.h5"))
    assert len(compare_runs.compare([base, older])) == 2
    elsewhere = compare_runs.read_run(write_run(tmp_path / "e", "2012-small28+no-norm", 1, 0.1,
                                                data_path="other.h5"))
    with pytest.raises(compare_runs.UsageError, match="differ in data_path; compare runs of one"):
        compare_runs.compare([base, elsewhere])


def test_a_seed_of_true_is_not_a_whole_number(tmp_path):
    """JSON's true is Python's 1 as an int: a settings file that says true is not a run's."""
    folder = write_run(tmp_path / "a", "2012-small28", 0, 0.1)
    with open(os.path.join(folder, "settings.json")) as handle:
        settings = json.load(handle)
    with open(os.path.join(folder, "settings.json"), "w") as handle:
        json.dump({**settings, "seed": True}, handle)
    with pytest.raises(compare_runs.UsageError, match="seed true is not a whole number"):
        compare_runs.read_run(folder)


def test_a_refusal_naming_a_run_of_any_name_is_one_line(tmp_path, capsys):
    """The runs' names in the tool's error as in every command's: shown, on one line."""
    odd = write_run(tmp_path / os.fsdecode(b"a\n\xff\x1b[31m"), "2012-small28", 0, 0.1, epochs=1)
    with open(os.path.join(odd, "settings.json")) as handle:
        settings = json.load(handle)
    with open(os.path.join(odd, "settings.json"), "w") as handle:
        json.dump({**settings, "epochs": 3}, handle)
    assert compare_runs.main([odd]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path}/a\\n\\xff\\x1b[31m: 1 of its 3 epochs "
                                       f"finished; compare finished runs\n")


def test_an_empty_run_name_is_refused_as_naming_nothing(capsys):
    with pytest.raises(SystemExit) as exit_:
        compare_runs.main([""])
    assert exit_.value.code == 2
    assert "argument RUN: must name a file or folder; got ''" in capsys.readouterr().err


def test_a_run_that_is_missing_is_named_on_one_line_whatever_its_name(tmp_path):
    """A missing run was "neither a run folder nor a file named *settings.json", and a name
    holding a newline broke the error's line in two."""
    missing = tmp_path / "ablaton-no-norm"
    with pytest.raises(compare_runs.UsageError, match="ablaton-no-norm: no such run folder or "
                                                      "file$"):
        compare_runs.read_run(str(missing))
    odd = tmp_path / "a\nb"
    odd.mkdir()
    result = subprocess.run([sys.executable, "tools/compare_runs.py", str(odd)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (f"error: {tmp_path}/a\\nb/settings.json: cannot read it (No such "
                             f"file or directory)\n")
