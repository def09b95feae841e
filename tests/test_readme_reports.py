"""README's figures against the committed reports they come from (bench/results/): the default
run's table, the 30-epoch run on the CPU, the 2-rank run and its control, the CPU step, the
loader and prepare, the scaling table, the GPU benchmarks' tables. A figure README quotes that
its report does not hold fails here; so does a report re-run without README following it."""
import csv
import glob
import json
import os
import sys

import pytest

from readme import README

ROOT = os.path.dirname(README)
RESULTS = os.path.join(ROOT, "bench", "results")
sys.path.insert(0, os.path.join(ROOT, "tools"))
import report_tables  # noqa: E402
import scaling  # noqa: E402


def readme_text():
    """README with every run of white space made one space, as a reader sees wrapped lines."""
    with open(README, encoding="utf-8") as handle:
        return " ".join(handle.read().split())


def epochs(name):
    with open(os.path.join(RESULTS, f"{name}-epochs.csv"), encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def report(name):
    with open(os.path.join(RESULTS, name), encoding="utf-8") as handle:
        return json.load(handle)


def percent(fraction):
    return f"{100 * float(fraction):.2f}%"


def test_the_default_runs_table_and_accuracy_are_its_epochs():
    rows = epochs("default-run")
    text = readme_text()
    assert ("| val top-1 error (centre crop) | "
            + " | ".join(percent(row["val_top1"]) for row in rows) + " |") in text
    assert "| seconds | " + " | ".join(f"{float(row['seconds']):.0f}" for row in rows) + " |" in text
    last = rows[-1]
    accuracy = f"{100 - 100 * float(last['val_top1']):.1f}%"
    assert f"That is {accuracy} test accuracy (top-5 error {percent(last['val_top5'])})" in text
    minutes = sum(float(row["seconds"]) for row in rows) / 60
    assert (f"6 epochs, {minutes:.1f} minutes on 2 cores) reached {accuracy} test accuracy"
            in text)   # the summary at the top


def test_the_30_epoch_run_on_the_cpu_is_its_epochs():
    rows = {int(row["epoch"]): row for row in epochs("gpu-recipe-on-cpu")}
    text = readme_text()
    last = rows[max(rows)]
    assert (f"ended at {percent(last['val_top1'])} top-1 error (centre crop): "
            f"{100 - 100 * float(last['val_top1']):.2f}%") in text
    assert (f"schedule meant for a GPU, run on the CPU, "
            f"{100 - 100 * float(last['val_top1']):.1f}%.") in text   # the summary at the top
    for epoch in (9, 20, 21, 23, 27, 30):
        assert f"{percent(rows[epoch]['val_top1'])} at {epoch}" in text


def test_the_two_rank_tables_are_the_runs_logs():
    text = readme_text()
    for label, name in (("1 process", "default-run"), ("2 ranks (`mpirun -n 2`)", "mpi-2ranks"),
                        ("1 process, one weight 1 ulp off", "ulp-control")):
        with open(os.path.join(RESULTS, f"{name}-log.jsonl"), encoding="utf-8") as handle:
            losses = {line["step"]: line["loss"] for line in map(json.loads, handle)}
        errors = [percent(row["val_top1"]) for row in epochs(name)]
        assert (f"| {label} | " + " | ".join(f"{losses[step]:.6f}"
                                             for step in (50, 100, 150, 250, 550))
                + f" | {errors[0]} | {errors[1]} |") in text
    for label, name in (("1 process", "default-run"), ("2 ranks", "mpi-2ranks")):
        assert (f"| {label} | " + " | ".join(percent(row["val_top1"]) for row in epochs(name))
                + " |") in text


def test_the_cpu_step_table_is_the_benchmarks_reports():
    text = readme_text()
    for model in ("2012", "2012-small28"):
        step = report(f"cpu-step-{model}-b32.json")
        assert (f"| `{model}` | {step['reference_images_per_second']:.1f} images/s | "
                f"{step['torch_images_per_second']:.1f} images/s | {step['ratio']:.2f}× |") in text
        assert f"one run each at `{step['commit'][:7]}`" in text


def test_the_loader_and_prepare_figures_are_the_benchmarks_report():
    data = report("data-loader-prepare.json")
    rates = {name: f"{rate:,.0f}" for name, rate in data["loader_images_per_second"].items()}
    text = readme_text()
    assert f"one run at `{data['commit'][:7]}` (`bench/results/data-loader-prepare.json`)" in text
    cores = max(int(name.split("-")[-2]) for name in rates)
    assert f"| loader, {data['batch']}-image batches, images/s | 1 thread | {cores} threads |" \
        in text
    for source, row in (("memory", "in memory"), ("file", "straight from the file"),
                        ("hdf5", "through HDF5"), ("file-cold", "straight from the file, cold"),
                        ("hdf5-cold", "through HDF5, cold")):
        assert (f"| {row} | {rates[f'{source}-1-threads']} | "
                f"{rates[f'{source}-{cores}-threads']} |") in text
    warm, cold = (data["loader_images_per_second"][f"file{kind}-{cores}-threads"]
                  / data["loader_images_per_second"][f"hdf5{kind}-{cores}-threads"]
                  for kind in ("", "-cold"))
    assert (f"Straight from the file, on {cores} threads, made {warm:.2f}× HDF5's rate warm and "
            f"{cold:.2f}× cold") in text
    assert f"the median of {data['repeats']} epochs of {data['images']:,} images" in text
    assert (f"stored {data['prepare_images_per_second_per_core']:.0f} images/s per core "
            f"({data['prepare_images_stored']} images:") in text


def test_the_scaling_table_is_the_tools_output(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)          # the default --report, as `make scaling` runs it
    assert scaling.main([]) == 0
    text = readme_text()
    for line in capsys.readouterr().out.splitlines():
        assert " ".join(line.split()) in text


# The GPU benchmarks' reports, as a GPU session commits them: none yet (no GPU has been lent)
GPU_REPORTS = sorted(os.path.basename(path) for pattern in ("kernels-*.json", "train-*.json")
                     for path in glob.glob(os.path.join(RESULTS, pattern)))


@pytest.mark.parametrize("name", GPU_REPORTS or [pytest.param(None, marks=pytest.mark.skip(
    reason="no GPU benchmark report in bench/results/ yet (kernels-*.json, train-*.json)"))])
def test_each_gpu_reports_table_is_in_readme(name):
    text = readme_text()
    for line in report_tables.tables(report(name)):
        assert " ".join(line.split()) in text, line
