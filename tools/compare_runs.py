"""Finished training runs side by side, grouped by model (the paper's ablations are model-name
suffixes, convnet.alexnet.ABLATIONS): each model's last-epoch validation top-1 error at every
seed, their mean, and its difference from the model without ablations run with the same seeds
(the mean of the differences seed by seed: the same seed gives both runs the same data order);
beside them the mean last-epoch training and validation losses, whose gap shows overfitting.

    python tools/compare_runs.py runs/ablation-*            # run folders (--output-dir)
    python tools/compare_runs.py bench/results/ablation-*-settings.json

A run is a settings.json and the epochs.csv beside it (in a folder, or as NAME-settings.json and
NAME-epochs.csv). Runs compared must share the recipe (RECIPE: data, as `differs` says, batch,
epochs, rates, schedule, evaluation views; not the device or the number of replicas, which
change only the rounding) and have finished their epochs; two runs of one model and seed are
refused. Prints a Markdown table.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from convnet import options  # noqa: E402
from convnet.alexnet import ABLATIONS, split_model_name  # noqa: E402
from convnet.errors import open_regular, run_command, shown  # noqa: E402
from convnet.figures.curves import read_epochs  # noqa: E402
from convnet.train import UsageError  # noqa: E402
from convnet.trainer import EPOCHS_CSV, SETTINGS  # noqa: E402

# The settings that make runs comparable: all but the model, the seed and where things went.
RECIPE = ("data_path", "batch_size", "epochs", "lr", "momentum", "wd", "lr_schedule", "lr_steps",
          "ten_crop")


def run_files(path):
    """(settings.json, epochs.csv) of a run folder or of a NAME-settings.json file."""
    if os.path.isdir(path):
        return os.path.join(path, SETTINGS), path
    if not os.path.lexists(path):
        raise UsageError(f"{path}: no such run folder or file")
    if not path.endswith(SETTINGS):
        raise UsageError(f"{path}: neither a run folder nor a file named *{SETTINGS}")
    return path, path[:-len(SETTINGS)] + EPOCHS_CSV


def read_run(path):
    """{"path", "model", "seed", "recipe", "epochs"} of the run at `path`."""
    settings_path, epochs_path = run_files(path)
    try:
        with open_regular(settings_path) as handle:
            settings = json.load(handle)
    except OSError as error:
        raise UsageError(f"{settings_path}: cannot read it ({error.strerror})") from None
    except ValueError:
        raise UsageError(f"{settings_path}: not JSON") from None
    if not isinstance(settings, dict):
        raise UsageError(f"{settings_path}: not the training command's settings (not a JSON "
                         f"object)")
    missing = [key for key in ("model", "seed", *RECIPE) if key not in settings]
    if missing:
        raise UsageError(f"{settings_path}: not the training command's settings (no "
                         f"{', '.join(missing)})")
    model, seed = settings["model"], settings["seed"]
    if not isinstance(model, str):
        raise UsageError(f"{settings_path}: model {json.dumps(model)} is not a model's name")
    try:
        split_model_name(model)
    except ValueError as error:
        raise UsageError(f"{settings_path}: {error}") from None
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise UsageError(f"{settings_path}: seed {json.dumps(seed)} is not a whole number")
    planned = settings["epochs"]
    if not isinstance(planned, int) or isinstance(planned, bool) or planned < 1:
        raise UsageError(f"{settings_path}: epochs {json.dumps(planned)} is not a number of "
                         f"epochs")
    epochs = read_epochs(epochs_path)
    finished = len(epochs["epoch"])
    if finished < planned:
        raise UsageError(f"{path}: {finished} of its {planned} epochs finished; compare "
                         f"finished runs")
    if finished > planned:
        raise UsageError(f"{path}: {finished} epochs in its epochs.csv, more than the {planned} "
                         f"its settings name")
    dataset = settings.get("dataset")
    return {"path": path, "model": settings["model"], "seed": settings["seed"],
            "recipe": {key: recipe_value(key, settings[key]) for key in RECIPE},
            "dataset": dataset if isinstance(dataset, dict) else None, "epochs": epochs}


def recipe_value(key, value):
    """A setting as runs of one recipe share it: the dataset's path as written, but for
    spellings of one path (./data/x.h5 and data/x.h5)."""
    return os.path.normpath(value) if key == "data_path" and isinstance(value, str) else value


def differs(key, run, other) -> bool:
    """Whether two runs differ in recipe setting `key`. The data: by the dataset as both runs'
    settings record it (name, sizes, the labels' digest, the stored side: the same file however
    its path was typed, and from which folder), else, where one's settings were written before
    they recorded it, by its path (recipe_value)."""
    if key == "data_path" and run["dataset"] is not None and other["dataset"] is not None:
        return run["dataset"] != other["dataset"]
    return run["recipe"][key] != other["recipe"][key]


def compare(runs):
    """[(model, {seed: top-1 error}, mean error, mean difference from the base model at the
    seeds both ran or None, mean train loss, mean validation loss)], the base model first, then
    in the order of ABLATIONS."""
    by_model = {}
    for run in runs:
        differing = [key for key in RECIPE if differs(key, run, runs[0])]
        if differing:
            raise UsageError(f"runs {runs[0]['path']} and {run['path']} differ in "
                             f"{', '.join(differing)}; compare runs of one recipe")
        seeds = by_model.setdefault(run["model"], {})
        if run["seed"] in seeds:
            raise UsageError(f"two runs of {run['model']} with seed {run['seed']} (the "
                             f"second: {run['path']})")
        seeds[run["seed"]] = run["epochs"]
    bases = {split_model_name(model)[0] for model in by_model}
    if len(bases) > 1:
        raise UsageError(f"runs of different base models ({', '.join(sorted(bases))}); "
                         f"compare one model and its ablations")
    base, = bases
    base_errors = final_errors(by_model.get(base, {}))
    order = list(ABLATIONS)
    rows = []
    for model in sorted(by_model, key=lambda name: [order.index(a)
                                                    for a in split_model_name(name)[1]]):
        seeds = dict(sorted(by_model[model].items()))
        errors = final_errors(seeds)
        shared = [seed for seed in errors if seed in base_errors] if model != base else []
        difference = float(np.mean([errors[s] - base_errors[s] for s in shared])) \
            if shared else None
        rows.append((model, errors, float(np.mean(list(errors.values()))), difference,
                     float(np.mean([epochs["train_loss"][-1] for epochs in seeds.values()])),
                     float(np.mean([epochs["val_loss"][-1] for epochs in seeds.values()]))))
    return rows


def final_errors(seeds):
    """{seed: last-epoch validation top-1 error} of one model's runs, given {seed: epochs}."""
    return {seed: epochs["val_top1"][-1] for seed, epochs in seeds.items()}


def table(rows):
    lines = ["| model | top-1 error (seed) | mean | vs. base, same seeds | train loss | val loss |",
             "|---|---|---|---|---|---|"]
    for model, errors, mean, difference, train_loss, val_loss in rows:
        by_seed = ", ".join(f"{100 * error:.2f}% ({seed})" for seed, error in errors.items())
        versus = "" if difference is None else f"{100 * difference:+.2f}"
        lines.append(f"| `{model}` | {by_seed} | {100 * mean:.2f}% | {versus} | "
                     f"{train_loss:.3f} | {val_loss:.3f} |")
    return "\n".join(lines)


def main(argv=None):
    p = options.Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", metavar="RUN", type=options.named_path,
                   help=f"a run folder, or a NAME-{SETTINGS} with its NAME-epochs.csv")
    args = p.parse_args(argv)
    try:
        print(table(compare([read_run(path) for path in args.runs])))
    except UsageError as error:
        print(f"error: {shown(str(error))}", file=sys.stderr)   # one line whatever the names
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
