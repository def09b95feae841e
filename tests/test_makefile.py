"""The Makefile, whose two commands README gives a new user: `make help` lists every target, and
the set-up picks the CuPy of the driver's CUDA where nvidia-smi lists a GPU (make train then
trains by the GPU's config), none elsewhere. Make only prints its recipes here (-n), with a fake
nvidia-smi, or none, on a PATH of its own: the machine's own GPU, if any, plays no part."""
import ast
import os
import re
import shutil
import subprocess
import sys

import pytest

import imagetree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What the Makefile runs here besides nvidia-smi: its $(shell ...) reading the driver, and help.
# A $(shell ...) needing a tool missing from this list would read as empty: add it here.
SHELL_TOOLS = ("sed", "awk", "head", "grep")
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(
    MAKE is None or not all(map(shutil.which, SHELL_TOOLS)),
    reason=f"make or one of {', '.join(SHELL_TOOLS)} is not installed")


def make(tmp_path, *arguments, nvidia_smi=None, status=0):
    """`make` in the checkout with PATH holding only SHELL_TOOLS and `nvidia_smi`, a bash script
    standing in for it (None: no nvidia-smi at all); its printout (stderr where it must exit
    with another `status` than 0)."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in SHELL_TOOLS:
        (tools / tool).symlink_to(shutil.which(tool))
    if nvidia_smi is not None:
        (tools / "nvidia-smi").write_text("#!/bin/bash\n" + nvidia_smi)
        (tools / "nvidia-smi").chmod(0o755)
    completed = subprocess.run([MAKE, *arguments], cwd=ROOT, capture_output=True, text=True,
                               env=dict(os.environ, PATH=str(tools)), timeout=60)
    assert completed.returncode == status, completed.stderr
    return completed.stdout if status == 0 else completed.stderr


def driver(cuda_version, capabilities=("9.0",)):
    """nvidia-smi as a driver of `cuda_version` answers: -L lists one GPU, the query of compute
    capabilities gives one line per GPU, the bare call prints the table whose header names the
    CUDA version."""
    return f"""if [ "$1" = -L ]; then echo 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)'; exit 0; fi
if [ "$1" = --query-gpu=compute_cap ]; then printf '%s\\n' {' '.join(capabilities)}; exit 0; fi
echo '+-----------------------------------------------------------------------------------------+'
echo '| NVIDIA-SMI 575.57.08             Driver Version: 575.57.08      CUDA Version: {cuda_version}     |'
echo '|-----------------------------------------+------------------------+----------------------+'
"""


def setup_extras():
    """The extras setup.py declares (its setup() call's extras_require keys)."""
    with open(os.path.join(ROOT, "setup.py")) as handle:
        tree = ast.parse(handle.read())
    call = next(node for node in ast.walk(tree) if isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "setup")
    extras = next(keyword.value for keyword in call.keywords if keyword.arg == "extras_require")
    return {ast.literal_eval(key) for key in extras.keys}


@pytest.mark.parametrize("nvidia_smi, extras, config", [
    (None, "test", "fashion-mnist"),
    ("exit 9", "test", "fashion-mnist"),           # an nvidia-smi that finds no GPU or driver
    (driver("11.8"), "test", "fashion-mnist"),     # a driver too old for either CuPy
    (driver("12.4"), "test,cuda12", "fashion-mnist-gpu"),
    (driver("13.0"), "test,cuda", "fashion-mnist-gpu"),
    (driver("14.1"), "test,cuda", "fashion-mnist-gpu"),
    (driver("13.0", ["7.5"]), "test,cuda", "fashion-mnist-gpu"),        # Turing: CUDA 13's
    (driver("13.0", ["7.0"]), "test,cuda12", "fashion-mnist-gpu"),      # Volta: CUDA 12's
    (driver("13.0", ["9.0", "7.0"]), "test,cuda12", "fashion-mnist-gpu"),
    (driver("12.4", ["7.0"]), "test,cuda12", "fashion-mnist-gpu"),
    (driver("13.0", ["[N/A]"]), "test,cuda", "fashion-mnist-gpu"),     # none to read: CUDA 13's
], ids=["no nvidia-smi", "nvidia-smi fails", "CUDA 11", "CUDA 12", "CUDA 13", "CUDA 14",
        "CUDA 13 Turing", "CUDA 13 Volta", "CUDA 13 Hopper and Volta", "CUDA 12 Volta",
        "CUDA 13 capability unknown"])
def test_the_setup_installs_the_cupy_of_the_drivers_cuda_and_train_takes_its_config(
        tmp_path, nvidia_smi, extras, config):
    printed = make(tmp_path, "-n", "--always-make", "setup", "train", nvidia_smi=nvidia_smi)
    installs = re.findall(r"pip install -e '\.\[([^]]*)\]'", printed)
    assert installs == [extras], printed
    assert set(extras.split(",")) <= setup_extras()
    assert f"convnet.train -c configs/{config}.json" in printed, printed
    assert os.path.exists(os.path.join(ROOT, "configs", f"{config}.json"))


def test_help_lists_every_target_once_with_what_it_does(tmp_path):
    """Every target of the first .PHONY line: a later one holds steps of those targets."""
    with open(os.path.join(ROOT, "Makefile"), encoding="utf-8") as handle:
        phony = re.search(r"^\.PHONY: (.*)$", handle.read(), re.MULTILINE).group(1).split()
    listed = re.findall(r"^  make (\S+) +(\S.*)$", make(tmp_path, "--no-print-directory", "help"),
                        re.MULTILINE)
    assert sorted(target for target, _ in listed) == sorted(phony)


@pytest.mark.parametrize("ranks", ["0", "-1", "two", ""])
def test_train_mpi_refuses_a_rank_count_that_is_not_one_or_more(tmp_path, ranks):
    """Before any recipe: 0 divided the cores by zero, -1 ran one process, a word reached the
    shell's arithmetic."""
    said = make(tmp_path, "-n", "train-mpi", f"RANKS={ranks}", status=2)
    assert said.endswith(f"*** RANKS must be a whole number of ranks, 1 or more; got '{ranks}'.  "
                         f"Stop.\n"), said


@pytest.mark.parametrize("target", ["train", "train-mpi"])
@pytest.mark.parametrize("flags, error", [
    ("--epocs 3", "unrecognized arguments: --epocs 3"),
    ("--lr -1", "--lr must be positive; got -1.0"),
    ("--gpus 0,1,2", "--gpus must be cpu or one or two GPU indices like 0,1; got '0,1,2'"),
])
def test_a_bad_training_flag_stops_make_before_the_set_up(tmp_path, target, flags, error):
    """The set-up took minutes on a fresh clone before the run refused a typo. The check runs on
    the standard library alone: python -S has no site-packages, so no NumPy or h5py."""
    venv = tmp_path / "venv"
    said = make(tmp_path, "--no-print-directory", target, f"PYTHON={sys.executable} -S",
                f"VENV={venv}", f"ARGS={flags}", status=2)
    assert said.splitlines()[0] == f"python -m convnet.train: error: {error} (see --help)", said
    assert not venv.exists()


@pytest.mark.parametrize("nvidia_smi, config", [(None, "fashion-mnist"),
                                                (driver("13.0"), "fashion-mnist-gpu")],
                         ids=["CPU", "GPU"])
@pytest.mark.parametrize("target", ["train", "train-mpi"])
@pytest.mark.parametrize("flags", ["--epochs 3", "--help"])
def test_the_default_runs_flags_pass_their_check_and_it_prints_nothing(
        tmp_path, nvidia_smi, config, target, flags):
    """Checked with the config the run takes (train-mpi's: the CPU's), and --help left for the
    run itself to print."""
    printed = make(tmp_path, "--no-print-directory", f"{target}-flags",
                   f"PYTHON={sys.executable} -S", f"ARGS={flags}", nvidia_smi=nvidia_smi)
    echo, = printed.splitlines()   # make's echo of the check: nothing else
    config = "fashion-mnist" if target == "train-mpi" else config
    assert f"-m convnet.options -c configs/{config}.json " in echo, echo
    assert echo.endswith(f" {flags} >/dev/null"), echo


@pytest.mark.parametrize("imagenet", [None, "", "  "])
def test_imagenet_without_its_folder_stops_before_the_set_up(tmp_path, imagenet):
    """A fresh clone's set-up took minutes before the recipe said IMAGENET was missing."""
    said = make(tmp_path, "-n", "imagenet", *([] if imagenet is None else [f"IMAGENET={imagenet}"]),
                status=2)
    assert said.endswith("*** IMAGENET is not set: make imagenet IMAGENET=/path/to/ILSVRC2012, "
                         "the folder holding train/ and val/.  Stop.\n"), said


@pytest.mark.parametrize("root, flags, error", [
    ("nowhere", "", "error: {tmp_path}/nowhere: no such folder"),
    ('my "odd" `dir`', "", 'error: {tmp_path}/my "odd" `dir`: no such folder'),
    ("tree", "--size 0", "error: --size 0: must be a positive number of pixels"),
    ("tree", "--sise 8", "python -m convnet.data.prepare: error: unrecognized arguments: --sise 8 "
                         "(see --help)"),
])
def test_a_bad_imagenet_folder_or_flag_stops_make_before_the_set_up(tmp_path, rng, root, flags,
                                                                    error):
    """What prepare refuses before its work (a wrong folder, a typo in ARGS) it refused after a
    fresh clone's set-up of minutes. Checked on the standard library alone: python -S."""
    imagetree.build(str(tmp_path / "tree"), rng, per_class=1, val_per_class=1)
    venv = tmp_path / "venv"
    said = make(tmp_path, "--no-print-directory", "imagenet", f"IMAGENET={tmp_path / root}",
                f"PYTHON={sys.executable} -S", f"VENV={venv}", f"ARGS={flags}", status=2)
    assert said.splitlines()[0] == error.format(tmp_path=tmp_path), said
    assert not venv.exists()


def test_an_imagenet_folder_prepare_takes_passes_its_check_and_it_prints_nothing(tmp_path, rng):
    tree = tmp_path / "my tree"
    imagetree.build(str(tree), rng, per_class=1, val_per_class=1)
    printed = make(tmp_path, "--no-print-directory", "imagenet-flags", f"IMAGENET={tree}",
                   f"PYTHON={sys.executable} -S", "ARGS=--size 16")
    assert printed == (f'{sys.executable} -S -m convnet.data.ilsvrc "$IMAGENET" --output '
                       f'data/imagenet.h5 --size 16 >/dev/null\n')


def test_targets_pass_a_path_with_spaces_and_their_extra_flags(tmp_path):
    printed = make(tmp_path, "-n", "imagenet", "IMAGENET=/data/my images", "bench-cpu",
                   "bench-data", "MODEL=paper", "ARGS=--batch 8")
    assert 'convnet.data.prepare "$IMAGENET" --output data/imagenet.h5' in printed
    assert "tools/bench_data.py --batch 8\n" in printed
    # the model checked before PyTorch is downloaded
    check, install, bench = (printed.index(text) for text in (
        "convnet.summary --model paper", "pip install -q torch", "bench_cpu_step.py --model paper "
                                                                 "--batch 8"))
    assert check < install < bench


def test_make_mutants_starts_each_mutants_tests_with_its_killer_in_the_committed_reports(
        tmp_path):
    printed = make(tmp_path, "-n", "mutants").replace("\\\n", " ").split()
    tool = printed.index("tools/mutants.py")
    assert printed[tool + 1] == "--killers-first"
    reports = printed[tool + 2:printed.index("--json")]
    committed = os.listdir(os.path.join(ROOT, "bench", "results"))
    assert sorted(reports) == sorted(f"bench/results/{name}" for name in committed
                                     if name.startswith("mutants") and name.endswith(".json"))
    assert printed[printed.index("--json") + 1] == "bench/results/mutants.json"

