"""`python -m convnet.train`: train AlexNet with the paper's recipe (see --help).

With no arguments it trains the scaled-down 2012 model on the prepared Fashion-MNIST
(data/fashion-mnist.h5) with the 2012 preset's recipe, on GPU 0 if there is one, else on the CPU;
`make train` runs the measured default run's settings (configs/fashion-mnist.json, -gpu.json on
a GPU). Settings resolved from flags and --config are written to
<output-dir>/settings.json (not by a run that only evaluates: --test-only, or a run resumed with
its epochs done, which leaves a run's settings as they were);
logs and checkpoints go beside them (see convnet.trainer).

The same command runs as N data-parallel replicas under mpirun -n N or srun (convnet.replicas):
-b stays the global batch, each rank trains on its share, only rank 0 prints and writes files.
Errors decided by the flags and the environment are the same on every rank and rank 0 reports
them; an error on some ranks only is reported by the lowest such rank before training, and
during training ends the whole job (MPI's abort), so no rank is left waiting.
"""
import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
import types

import numpy as np

from convnet import alexnet, checkpoint, options, provenance, stopping
from convnet.alexnet import TOWERS
from convnet.atomic import LockHeld, atomic_json, exclusive_lock, nearest_existing
from convnet.backend import get_backend
from convnet.backend.cuda.conv import DEFAULT_ALGORITHM
from convnet.backend.cuda.devices import CUPY_INSTALL, NO_CUPY, cuda_devices
from convnet.backend.cuda.launch import DETERMINISTIC_CUBLAS_WORKSPACE
from convnet.data.loader import Loader
from convnet.data.dataset import Dataset, DatasetError
from convnet.errors import (INTERRUPTED_STATUS, PIPE_CLOSED_STATUS, OutputClosed, OutputFailed,
                            counted, one_line, run_command, shown, stop_signal)
from convnet.network import Network
from convnet.placement import Placement
from convnet.replicas import engines, nccl
from convnet.replicas.engines import ReplicasDiverged, abort_job, mpi_world, node_rank
from convnet.replicas.launch import SINGLE, LaunchError, rank_gpus
from convnet.replicas.launch import from_environment as launch_from_environment
from convnet.replicas.watchdog import Watchdog
from convnet.schedule import RELEASED_2012_EPOCHS, SMALL_MODEL_EPOCHS, Rates, Schedule
from convnet.trainer import (EPOCHS_CSV, LOG, SETTINGS, NonFiniteLoss, RunFolderError, Trainer,
                             batches_into, evaluate, views_name, writing)

LOCK = ".lock"   # in a run's folder: held by the run training there (holding)
# The files whose presence says a run trained in a folder (convnet.trainer), which a new run
# there would replace (its settings.json and .lock go with them, and say nothing alone).
RUN_FILES = (checkpoint.LAST, checkpoint.BEST, EPOCHS_CSV, LOG)


class UsageError(Exception):
    """A setting that cannot work; reported in one line with exit code 2."""


def choose_model(name, ablations, dataset: Dataset) -> alexnet.Model:
    """The named model, or with "auto" the 2012-preset model whose crop is 7/8 of the dataset's
    stored size (224 of 256, 28 of 32), with `ablations` added; its class count is the
    dataset's."""
    if name == "auto":
        fits = [m for m, (geometry, preset) in alexnet.MODELS.items() if preset == "2012"
                and alexnet.GEOMETRIES[geometry].image_size * 8 == dataset.image_size * 7]
        if not fits:
            raise UsageError(f"--model auto: no model takes crops of {dataset.image_size}-pixel "
                             f"images; name one with --model")
        name = fits[0]
    base, named = alexnet.split_model_name(name)
    model = alexnet.build_model(alexnet.model_name(base, named + tuple(ablations)),
                                classes=dataset.classes)
    check_fits(model, dataset, f"--model {model.name}")
    return model


def check_fits(model, dataset: Dataset, source):
    """A UsageError where `model` (from `source`: a flag, a checkpoint) cannot read the
    dataset's images: a crop larger than they are, or another number of classes."""
    if model.geometry.image_size > dataset.image_size:
        raise UsageError(f"{source} needs {model.geometry.image_size}-pixel crops but "
                         f"{dataset.path} holds {dataset.image_size}-pixel images")
    if model.geometry.classes != dataset.classes:
        raise UsageError(f"{source} classifies {model.geometry.classes} classes but dataset "
                         f"{dataset.path} has {dataset.classes}")


def idle_device_note(model, placement) -> str | None:
    """A note where a tower's own device gets no layer (a one-tower model on --gpus 0,1)."""
    idle = sorted(set(TOWERS) - {layer.tower for layer in model.layers})
    if not idle or placement.shared:
        return None
    return (f"note: {model.name} has no tower {', '.join(idle)}, so its device does nothing in "
            f"this run; --gpus with one index runs the model on one GPU")


def check_output_folder(output_dir, args):
    """For a training run, the run's folder tried for writing: the folder, or where it is
    missing the nearest one above it, in which the run makes it. --test-only writes nothing,
    so it tries nothing (a read-only run folder is evaluated)."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise UsageError(f"--output-dir {output_dir}: a file, not a folder")
    if os.path.islink(output_dir) and not os.path.exists(output_dir):
        raise UsageError(f"--output-dir {output_dir}: a symbolic link to "
                         f"{os.readlink(output_dir)}, which does not exist")
    if args.test_only:
        return
    existing = nearest_existing(output_dir)
    if not os.path.isdir(existing):
        raise UsageError(f"--output-dir {output_dir}: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:   # named by the folder tried, not the probe's file never made
        # a finished run's folder, say, made read-only: evaluating it writes nothing
        holds_run = os.path.isdir(output_dir) and run_files(output_dir)
        raise UsageError(f"--output-dir {output_dir}: cannot make a file in {existing} "
                         f"({error.strerror or one_line(error)})" +
                         ("; --test-only evaluates the run it holds without writing"
                          if holds_run else "")) from None


def check_no_other_run(output_dir, args):
    """A training run is refused where another run's files are in its folder, which it would
    replace or mix its logs with: a new run (no --resume), or one resuming from a checkpoint
    of another folder. Checked once the folder is held (holding), so that a run ending
    meanwhile cannot slip its files in between."""
    found = run_files(output_dir)
    if not found:
        return
    taken = f"--output-dir {output_dir} holds a run already ({', '.join(found)})"
    if args.resume is None:
        raise UsageError(f"{taken}: add --resume to go on with it, or give another --output-dir")
    # (a --resume PATH that does not exist, or is not a file, is the loader's error to report)
    if args.resume != "auto" and os.path.isfile(args.resume) and not os.path.samefile(
            os.path.dirname(os.path.realpath(args.resume)), output_dir):
        raise UsageError(f"{taken}, and --resume {args.resume} is another folder's checkpoint: "
                         f"give --output-dir a folder of its own")


@contextlib.contextmanager
def holding(output_dir):
    """The run folder (made here) held for a training run: a second run training into it at
    the same time, whose checkpoints and logs would mix with this one's, is refused in one
    line: an exclusive_lock on a file of its own there (LOCK); where the filesystem takes no
    lock, a note says the folder goes unguarded."""
    path = os.path.join(output_dir, LOCK)
    with contextlib.ExitStack() as held:   # its own errors named, not those of the run
        with writing(path):
            os.makedirs(output_dir, exist_ok=True)
            try:
                unlocked = held.enter_context(exclusive_lock(path))
            except LockHeld:
                raise RunFolderError(f"--output-dir {output_dir}: another run is training in "
                                     f"it now; let it end, or give another --output-dir") \
                    from None
        if unlocked is not None:
            print(f"note: --output-dir {shown(output_dir)}: its filesystem takes no lock "
                  f"({unlocked.strerror}), so a second run training into it at the same time "
                  f"would not be refused", file=sys.stderr)
        yield


def run_files(output_dir):
    """The files of a run (RUN_FILES) that output_dir holds."""
    return [name for name in RUN_FILES if os.path.exists(os.path.join(output_dir, name))]


def auto_checkpoint(output_dir):
    """The checkpoint --resume auto goes on from: the folder's last.h5, else its best.h5 (a run
    stopped between its first epoch's two writes, best.h5 first), else none (logs alone, of a
    run killed in its first epoch, or stopped before its first step; or nothing: the run starts
    at step 0)."""
    for name in (checkpoint.LAST, checkpoint.BEST):
        path = os.path.join(output_dir, name)
        if os.path.exists(path):
            return path
    return None


# The settings a run restarted over logs alone is expected to share with the run it replaces.
RESTART_SETTINGS = ("model", "ablation", "data_path", "weights", "epochs", "batch_size", "lr",
                    "momentum", "wd", "lr_schedule", "lr_steps", "seed", "ten_crop")
PATH_SETTINGS = ("data_path", "weights")   # of those, the files, compared as files


def restart_note(output_dir, settings) -> str:
    """A run that --resume auto restarts over logs alone (no checkpoint) starts at step 0 with
    this command's settings: the note says so, and names those that differ from the settings
    of the run it replaces (a fine-tuning run restarted without its --weights starts from
    random weights)."""
    note = (f"note: --resume auto found no checkpoint in {output_dir}: the run starts again "
            f"from step 0")
    path = os.path.join(output_dir, SETTINGS)
    if not os.path.isfile(path):   # none (a run stopped before writing them), or a pipe
        return note                # that opening would wait on (the run's write refuses it)
    try:
        with open(path) as file:
            before = json.load(file)
    except (OSError, ValueError):   # unreadable
        return note
    if not isinstance(before, dict):   # JSON, but not settings
        return note
    flags = options.long_flags()

    def told(value):
        if isinstance(value, list):
            return " ".join(map(str, value)) or "none"
        return "none" if value is None else str(value)

    def same(key):   # a file named another way (relative, absolute) is the same file
        if key in PATH_SETTINGS and isinstance(before[key], str) and settings[key] is not None:
            return os.path.realpath(before[key]) == os.path.realpath(settings[key])
        return before[key] == settings[key]

    changed = [f"{flags[key]} (was {told(before[key])}, now {told(settings[key])})"
               for key in RESTART_SETTINGS if key in before and not same(key)]
    return note + (f", with settings other than the stopped run's: {'; '.join(changed)}"
                   if changed else "")


def lr_steps_note(args, schedule, epochs) -> str | None:
    """A note where a new run's --lr-steps do nothing: under another schedule (a config's
    steps, the schedule changed by a flag), or after its last epoch (they act if a resume
    raises --epochs: a run trained in parts). Neither is refused."""
    if args.lr_steps and schedule.kind != "steps":
        return (f"note: --lr-steps {' '.join(map(str, args.lr_steps))} left unused: the "
                f"schedule is {schedule.kind}")
    late = [epoch for epoch in args.lr_steps if epoch >= epochs]
    if not late:
        return None
    return (f"note: --lr-steps {' '.join(map(str, late))}: this run trains "
            f"{counted(epochs, 'epoch')}, so the rates drop there only if a resume raises "
            f"--epochs")


def check_dataset(dataset, test_only):
    """The dataset has classes to tell apart, and the splits the run reads hold images:
    validation always, training unless evaluating."""
    if dataset.classes < 2:
        raise DatasetError(f"dataset {dataset.path}: {dataset.classes} class; a classifier "
                           f"needs at least 2")
    for split in ("val",) if test_only else ("train", "val"):
        if dataset.size(split) == 0:
            raise DatasetError(f"dataset {dataset.path}: its {split} split holds no images")


def dataset_identity(data) -> dict:
    """What tells a dataset from another wherever its file lies: its name, its splits' sizes, a
    digest of their labels and one of its class ids (what each label means: two class subsets
    of ImageNet may share all the rest), and the side its images are stored at (prepare --size),
    of which the crops take another share."""
    labels = data.train_labels.astype("<i8").tobytes() + data.val_labels.astype("<i8").tobytes()
    return {"name": data.name, "train_images": len(data.train_labels),
            "val_images": len(data.val_labels),
            "labels_sha256": hashlib.sha256(labels).hexdigest()[:16],
            "classes_sha256": classes_digest(data.class_ids),
            "image_size": data.image_size}


def classes_digest(class_ids) -> str:
    return hashlib.sha256("\n".join(class_ids).encode()).hexdigest()[:16]


def other_dataset_note(checkpoint_path, trained_on, data):
    """Where checkpoint `checkpoint_path` was evaluated or used on another dataset than it trained
    on (`trained_on`, its record: dataset_identity's; None in older checkpoints), the note that
    says so, else None. A net trained on another dataset of as many classes (fine-tuned
    elsewhere, say) may be used with this one's names, which is worth saying; so is one of the
    same name whose class ids differ (two class subsets of ImageNet), and the same dataset
    stored at another size (prepare --size), of which the crops take another share. Older
    checkpoints record no class ids, or no size. `data`: the Loader of the dataset used."""
    trained_on = trained_on or {}
    name, size = trained_on.get("name"), trained_on.get("image_size")
    classes = trained_on.get("classes_sha256")
    if name is not None and name != data.name:
        return (f"note: checkpoint {checkpoint_path} was trained on dataset {name}, not "
                f"{data.name}; the class names are this dataset's ({data.path})")
    if classes is not None and classes != classes_digest(data.class_ids):
        return (f"note: checkpoint {checkpoint_path} was trained on a dataset {name} of other "
                f"class ids than {data.path}'s: its outputs are read as this dataset's classes, "
                f"which may not be what it learned")
    if size is not None and size != data.image_size:
        return (f"note: checkpoint {checkpoint_path} was trained on dataset {name} stored at "
                f"{size} pixels; {data.path} stores it at {data.image_size}, so each crop takes "
                f"another share of the image")
    return None


# What the trainer records a run trains with (Trainer.trains_with) → the setting it comes from.
RECIPE_SETTINGS = {"batch_size": "batch_size", "momentum": "momentum", "weight_decay": "wd"}


def check_goes_on_as_trained(path, trained_with, trains_with):
    """A resumed run trains on as its checkpoint records it trained (Trainer.trains_with), as
    --lr and the schedule go on from it: a UsageError naming every flag that would not."""
    differences, passes, ways = [], [], []   # what differs; the flags that mend it; the rest
    for key, recorded in trained_with.items():
        asked = trains_with[key]
        if key == "dataset":   # what the checkpoint records of it: older ones, no image size
            asked = {name: asked[name] for name in recorded}
        if recorded == asked:
            continue
        if key == "dataset":
            theirs, ours = ((d["name"], d["train_images"], d["val_images"])
                            for d in (recorded, asked))
            if theirs != ours:
                differ = f"not {ours[0]} ({ours[1]}, {ours[2]})"
            elif recorded["labels_sha256"] != asked["labels_sha256"]:
                differ = "not this one, whose labels differ"
            elif recorded.get("classes_sha256") != asked.get("classes_sha256"):
                differ = "not this one, whose class ids differ"
            else:
                differ = (f"stored at {recorded['image_size']} pixels, not this one, stored at "
                          f"{asked['image_size']}")
            differences.append(f"trains on dataset {theirs[0]} ({theirs[1]} training, "
                               f"{theirs[2]} validation images), {differ}")
            ways.append("give --data-path its dataset")
        elif key == "ten_crop":
            differences.append(f"validates on the {views_name(recorded)}, which picks best.h5")
            if recorded:
                passes.append("--ten-crop")
            else:
                ways.append("leave out --ten-crop")
        else:
            flag = options.long_flags()[RECIPE_SETTINGS[key]]
            differences.append(f"trains with {flag} {recorded!r}, not {asked!r}")
            passes.append(f"{flag} {recorded!r}")
    if differences:
        ways += [f"pass {' '.join(passes)}"] if passes else []
        raise UsageError(f"checkpoint {path}: its run {'; '.join(differences)}: "
                         f"{' and '.join(ways)} to go on with it")


def unused_schedule_flags(args, schedule) -> list:
    """The schedule flags typed for a resumed run that say otherwise than its checkpoint's
    schedule, which goes on: "--lr 0.5" and the like."""
    flags = (  # (flag, setting, whether it says otherwise, its value as typed)
        ("--lr", "lr", args.lr != schedule.initial_weight_lr, args.lr),
        ("--lr-schedule", "lr_schedule", args.lr_schedule not in ("preset", schedule.kind),
         args.lr_schedule),
        ("--lr-steps", "lr_steps", tuple(args.lr_steps) != schedule.step_epochs,
         " ".join(map(str, args.lr_steps))))
    return [f"{flag} {value}" for flag, key, differs, value in flags
            if key in args.typed and differs]


def resume_notes(path, schedule, epochs, args):
    """What a run going on from checkpoint `path` for `epochs` should know: schedule flags it
    leaves unused, code that changed since the checkpoint, and a 2012 schedule that keeps the
    epochs it was scaled to."""
    unused = unused_schedule_flags(args, schedule)
    if unused:
        yield (f"{', '.join(unused)} left unused: a resumed run goes on with its checkpoint's "
               f"schedule and rates")
    written, running = checkpoint.commit(path), provenance.running()
    if written and running and written != running:
        yield (f"{path} was written by commit {written}; this is {running}, and what changed "
               f"between them applies from here on")
    if schedule.kind == "2012" and schedule.scaled_epochs != epochs:
        yield (f"the 2012 schedule goes on as scaled to the run's first "
               f"{counted(schedule.scaled_epochs, 'epoch')}; training to epoch {epochs} moves "
               f"only where it stops")


def planned_epochs(recorded, schedule, default):
    """The epochs a resumed run trains to without --epochs: those its checkpoint records it was
    training to (its last start's), else (a checkpoint from before the record) those its 2012
    schedule was scaled to, else the model's default."""
    if recorded is not None:
        return recorded
    return schedule.scaled_epochs if schedule.kind == "2012" else default


def make_schedule(args, model, epochs) -> Schedule:
    rates = Rates(args.lr, args.lr * model.preset.bias_lr_multiplier)
    kind = args.lr_schedule
    if kind == "preset":
        kind = "2012" if model.preset.name == "2012" else "plateau"
    return Schedule(kind, rates, step_epochs=tuple(args.lr_steps),
                    scale=epochs / RELEASED_2012_EPOCHS, initial_weight_lr=args.lr)


def select_placement(gpus, launch=SINGLE, conv_algorithm=None):
    """(placement, device) for --gpus:
      cpu          the reference backend runs both towers
      one index    the CUDA backend runs both towers on that GPU
      two indices  a CUDA backend per tower, each on a stream of its own: towers a and b on two
                   GPUs, or (0,0) on one GPU through the same two-device path
      None         GPU 0 if there is one, else the CPU
    `device` describes it ("cpu", "gpu 0", "gpus 0,1 (peer-to-peer)"). Under a multi-rank launch
    the indices name GPUs within the rank's own block (convnet.replicas.launch.rank_gpus).
    `conv_algorithm`: the CUDA backends' preferred convolution algorithm (conv.py)."""
    if gpus != "cpu":
        count, why_none = cuda_devices()
    if gpus is None:
        gpus = "0" if count else "cpu"
        if gpus == "cpu" and shutil.which("nvidia-smi"):   # a GPU machine, by the look of it
            why_cpu = f"this machine has nvidia-smi but not CuPy; {CUPY_INSTALL}" \
                if why_none == NO_CUPY else why_none
            print(f"note: training on the CPU: {why_cpu}", file=sys.stderr)
    if gpus == "cpu":
        return Placement(get_backend("reference")), "cpu"
    indices = [int(index) for index in gpus.split(",")]
    if why_none == NO_CUPY:
        if shutil.which("nvidia-smi") is None:   # likely no driver, where CuPy would not help
            raise UsageError(f"--gpus {gpus}: CuPy is not installed and no nvidia-smi is on the "
                             f"PATH; use --gpus cpu, or where this machine has an NVIDIA GPU, "
                             f"{CUPY_INSTALL}")
        raise UsageError(f"--gpus {gpus}: CuPy is not installed; {CUPY_INSTALL}; or use "
                         f"--gpus cpu")
    if why_none:   # CuPy is here, but no driver, a driver too old for it, or no device
        raise UsageError(f"--gpus {gpus}: {why_none}; --gpus cpu runs on the CPU")
    import cupy
    devices = indices if launch.launcher == "single" else \
        rank_gpus(indices, launch.local_rank, count)
    missing = [device for device in devices if device >= count]
    if missing:
        raise UsageError(f"--gpus {gpus}: there is no GPU {missing[0]} (this machine has "
                         f"{count})")
    cupy.cuda.Device(devices[0]).use()
    if len(devices) == 1:
        return Placement(get_backend("cuda", device_id=devices[0],
                                     conv_algorithm=conv_algorithm)), f"gpu {devices[0]}"
    if devices[0] == devices[1]:
        # Both towers' GEMMs then run on concurrent streams through CuPy's one cuBLAS handle of
        # the GPU, deterministic under a fixed workspace; the handle is made at the first GEMM,
        # after this.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", DETERMINISTIC_CUBLAS_WORKSPACE)
    placement = Placement({tower: get_backend("cuda", device_id=device, own_stream=True,
                                              conv_algorithm=conv_algorithm)
                           for tower, device in zip(TOWERS, devices)})
    return placement, f"gpus {devices[0]},{devices[1]} ({placement.routes[('b', 'a')]})"


def connect_replicas(launch, placement, device, timeout):
    """The replicas engine: MPI over host arrays on the CPU, NCCL on GPUs."""
    if device == "cpu":
        return engines.connect(launch, timeout=timeout)
    return nccl.connect(launch, {tower: placement.backends[tower].launcher.device.id
                                 for tower in TOWERS}, timeout=timeout)


def progress_bar():
    """tqdm over the batches when stderr is a terminal; None (no bar) otherwise."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    def wrap(batches, description, done=0):   # the total (for the ETA): done + len(batches)
        return tqdm(batches, desc=description, unit="batch", dynamic_ncols=True, leave=False,
                    initial=done, total=done + len(batches))
    return wrap


def with_progress(batches, description):
    """`batches` behind progress_bar's bar where there is one (a terminal), else as they are."""
    progress = progress_bar()
    return batches if progress is None else progress(batches, description)


def prepare(args, placement, replicas):
    """The trainer of this run, resumed if asked: (trainer, model, epochs, output folder, the
    checkpoint resumed or None, whether the run trains: else it evaluates, the run folder held
    for a training run: an ExitStack that lets it go)."""
    dataset = Dataset(args.data_path)
    try:
        check_dataset(dataset, args.test_only)
        model = choose_model(args.model, args.ablation, dataset)
    finally:
        dataset.close()
    full_size = model.geometry.image_size == alexnet.GEOMETRIES["full"].image_size
    epochs = args.epochs or (RELEASED_2012_EPOCHS if full_size else SMALL_MODEL_EPOCHS)
    output_dir = args.output_dir or os.path.join("runs", model.name)
    # The run folder held (rank 0's, training): the caller's to let go, but where refused here.
    # A folder that exists is held before what it holds decides the run; one still to be made
    # (which holds nothing yet) at the end, once nothing has refused the run: a run refused,
    # or one that only evaluates, makes none.
    writes = replicas.rank == 0 and not args.test_only
    with contextlib.ExitStack() as held:
        def hold():
            held.enter_context(holding(output_dir))
            check_no_other_run(output_dir, args)
        if replicas.rank == 0:   # the one that writes
            check_output_folder(output_dir, args)
        held_early = writes and os.path.isdir(output_dir)
        if held_early:
            hold()
        data = Loader(args.data_path, crop=model.geometry.image_size, seed=args.seed,
                      colour_noise_convention=model.colour_noise,
                      crop_draw=model.crop_draw, threads=args.workers)
        network = Network(model, placement, seed=args.seed)
        trainer = Trainer(network, data, make_schedule(args, model, epochs),
                          batch_size=args.batch_size, momentum=args.momentum, weight_decay=args.wd,
                          output_dir=output_dir, print_freq=args.print_freq,
                          progress=progress_bar(), ten_crop=args.ten_crop, replicas=replicas,
                          dataset=dataset_identity(data))
        # the checkpoint to go on from: none for a new run, or where --resume auto finds none
        resumed = auto_checkpoint(output_dir) if args.resume == "auto" else args.resume
        if args.test_only and args.resume == "auto" and not resumed and not args.weights:
            # the initial weights' error: not what --resume asked to evaluate
            raise UsageError(f"--resume auto --test-only: {output_dir} holds no checkpoint to "
                             f"evaluate; give the run's folder with --output-dir" +
                             ("" if args.output_dir else
                              f" (this is --output-dir's default for model {model.name})"))
        if resumed:
            try:
                trainer.resume(resumed)
            except checkpoint.OtherModel as error:   # the flags that build its model
                flags = f"--model {error.recorded}" + (" without --ablation" if args.ablation
                                                       else "")
                raise UsageError(f"{error}: give {flags} to load it") from None
            except checkpoint.OtherClasses as error:   # a checkpoint of another dataset
                raise UsageError(f"checkpoint {resumed} classifies {error.recorded} classes but "
                                 f"dataset {args.data_path} has {model.geometry.classes}") \
                    from None
            except checkpoint.Unreadable as error:   # a damaged last.h5: name the other
                best = os.path.join(output_dir, checkpoint.BEST)
                if args.resume != "auto" or resumed == best or not os.path.exists(best):
                    raise
                raise checkpoint.CheckpointError(f"{error}; --resume {best} goes on from the "
                                                 f"run's best epoch instead") from None
            if "epochs" not in args.typed:   # it goes on to the epochs it was training to
                epochs = planned_epochs(trainer.target_epochs, trainer.schedule, epochs)
        trains = not args.test_only and trainer.epoch < epochs   # else it evaluates
        if not trains:
            held.close()   # it writes nothing: another run may train there meanwhile
        if resumed and not trains and replicas.rank == 0:   # evaluated: on its dataset?
            note = other_dataset_note(resumed, trainer.trained_with.get("dataset"), data)
            if note:
                print(shown(note), file=sys.stderr)
        if resumed and trains:
            check_goes_on_as_trained(resumed, trainer.trained_with, trainer.trains_with())
            if replicas.rank == 0:
                for note in resume_notes(resumed, trainer.schedule, epochs, args):
                    print(f"note: {shown(note)}", file=sys.stderr)
        if resumed:
            # the checkpoint's rates, not those of --lr and the schedule flags
            goes_on = (f"; its {trainer.schedule.kind} schedule goes on at weight rate "
                       f"{trainer.schedule.rates.weight_lr:g}") if trains else ""
            into = batches_into(trainer.so_far.batches, trainer.epoch) \
                if trainer.so_far.batches else ""   # a checkpoint a stop wrote mid-epoch
            print(f"resumed from {shown(resumed)} at epoch {trainer.epoch}, step "
                  f"{trainer.step}{f' ({into})' if into else ''}{goes_on}" if not args.test_only
                  else f"evaluating {shown(resumed)} (epoch {trainer.epoch}, step "
                       f"{trainer.step}{f', {into}' if into else ''})")
        note = lr_steps_note(args, trainer.schedule, epochs) \
            if trainer.step == 0 and not args.test_only else None
        if note and replicas.rank == 0:
            print(note, file=sys.stderr)
        if args.weights and trainer.step > 0:
            if replicas.rank == 0:
                print(f"note: --weights {shown(args.weights)} left unused: the run goes on from "
                      f"its own checkpoint", file=sys.stderr)
        elif args.weights:
            drawn = trainer.start_from_weights(checkpoint.in_run(args.weights))
            total = len(network.specs)
            if drawn and args.test_only:   # part of the network would be random numbers
                raise UsageError(f"--test-only --weights {trainer.started_from}: {len(drawn)} of "
                                 f"{total} parameter arrays are not there for this model "
                                 f"({', '.join(drawn)}), so it would evaluate random ones")
            print(f"weights from {shown(trainer.started_from)}: {total - len(drawn)} of {total} "
                  f"parameter arrays" +
                  (f"; as a new run draws them: {', '.join(drawn)}" if drawn else ""))
        if trains and writes and not held_early:
            hold()
            # The folder was missing when --resume auto looked for a checkpoint in it: files
            # there now are those of a run that made it meanwhile, which this one would restart.
            found = run_files(output_dir)
            if found:
                raise RunFolderError(f"--output-dir {output_dir}: another run made it and wrote "
                                     f"{', '.join(found)} there as this one started; run this "
                                     f"command again to go on with that run")
        return trainer, model, epochs, output_dir, resumed, trains, held.pop_all()


# Where a stop found the command, for its line (stopped_line): before anything changed, in
# training (the folder made to agree with the checkpoint it goes on from first), evaluating.
STARTING, TRAINING, EVALUATING = "starting", "training", "evaluating"


def run(args, placement, device, replicas):
    """The command's work, its ranks connected; a stop is marked with where it found it: its
    stage, and in training, where last.h5 has the run."""
    where = types.SimpleNamespace(stage=STARTING, trainer=None)
    try:
        return _run(args, placement, device, replicas, where)
    except KeyboardInterrupt as stop:
        stop.stage = where.stage
        if where.stage == TRAINING and not hasattr(stop, "saved"):   # at once: nothing saved
            stop.saved = where.trainer.saved()
        raise


def _run(args, placement, device, replicas, where):
    try:
        trainer, model, epochs, output_dir, resumed, trains, held = prepare(args, placement,
                                                                            replicas)
        error = None
    except (UsageError, DatasetError, checkpoint.CheckpointError, RunFolderError) as caught:
        error = caught      # on some ranks only, perhaps (a file one node cannot read)
    failed = replicas.first_failure(error is not None)
    if failed is not None:
        if replicas.rank == failed:
            print(f"error: {rank_prefix(replicas) if failed else ''}{shown(str(error))}",
                  file=sys.stderr)   # shown: one line whatever the names in it hold
        return 2
    with held:   # to the run's end
        replicas.check_same([json_bytes(trainer.dataset), trainer.data.mean],
                            "datasets (name, sizes, labels, class ids and mean image)")
        # The same settings may end at other epochs: a resumed run's are its checkpoint's, unless
        # --epochs is typed, which one rank may do where another has it in its config.
        replicas.check_same([json_bytes([epochs, trains])],
                            "epochs to train to (a typed --epochs, else the checkpoint's)")
        trainer.check_replicas_agree("at the start")
        # --resume auto over the logs of a run stopped before its first checkpoint
        restarts = trains and resumed is None and args.resume and bool(run_files(output_dir))
        # what the logs keep of a run going on, read before anything is written: a log that
        # cannot be read refuses the run with its files as they were
        kept = trainer.kept_log_lines() if trains and args.resume else None
        note = idle_device_note(model, placement)
        if note and replicas.rank == 0:
            print(note, file=sys.stderr)
        if device == "cpu" and "conv_algorithm" in args.typed and replicas.rank == 0:
            print(f"note: --conv-algorithm {args.conv_algorithm} left unused: it picks among the "
                  f"CUDA kernels, and the CPU's reference backend has one convolution",
                  file=sys.stderr)
        # A stop since the start, to any rank: the run's files as they were. One asked after it
        # is seen at the first step, so the settings below are this run's, training.
        stopping.check_ranks(replicas)
        if replicas.rank == 0 and trains:   # evaluating a run leaves its settings alone
            # The convolution algorithm the CUDA kernels prefer; the reference backend has one.
            conv_algorithm = None if device == "cpu" else args.conv_algorithm or DEFAULT_ALGORITHM
            settings = dict(vars(args), model=model.name, epochs=epochs, output_dir=output_dir,
                            conv_algorithm=conv_algorithm,
                            device=device, ranks=replicas.world, launcher=replicas.launcher,
                            commit=provenance.running(), schedule=trainer.schedule.kind,
                            weights=trainer.started_from, dataset=trainer.dataset)
            if trainer.step > 0:   # resumed: the checkpoint's schedule goes on, not the flags'
                schedule = trainer.schedule
                settings.update(lr=schedule.initial_weight_lr, lr_schedule=schedule.kind,
                                lr_steps=list(schedule.step_epochs))
            elif restarts:
                print(shown(restart_note(output_dir, settings)), file=sys.stderr)
            elif args.resume:   # a typo in --output-dir, or a model named otherwise, lands here
                print(f"note: --resume auto found no run in {shown(output_dir)}: a new run "
                      f"starts there", file=sys.stderr)
            settings_path = os.path.join(output_dir, SETTINGS)
            with writing(settings_path):
                atomic_json(settings_path, settings, indent=2)
        # The folder made to agree with the checkpoint, now that every rank has loaded all it
        # loads (--weights too) and the settings are written: a refusal before it changes
        # none of the run's checkpoints and logs.
        where.stage, where.trainer = TRAINING if trains else EVALUATING, trainer
        if trains and args.resume:
            note = trainer.go_on_from(resumed, kept, epochs)
            if note:
                print(shown(note), file=sys.stderr)

        if args.test_only and trainer.step == 0 and not args.weights and replicas.rank == 0:
            print("note: no checkpoint was loaded, so this evaluates the initial weights; "
                  "--resume [auto|PATH] evaluates a trained network", file=sys.stderr)
        elif not args.test_only and not trains:
            done = f"its {counted(epochs, 'epoch')}" if trainer.epoch == epochs else \
                counted(trainer.epoch, 'epoch')
            if trainer.so_far.batches:   # stopped in the epoch after
                done += f" and {batches_into(trainer.so_far.batches, trainer.epoch)}"
            if trainer.epoch != epochs:
                done += f", which --epochs {epochs} does not exceed"
            print(f"the run has done {done} (--epochs to train more); evaluating its weights",
                  flush=True)   # before the evaluation, through a pipe too
        if not trains:
            result = evaluate(trainer.network, trainer.data, args.batch_size, args.ten_crop,
                              replicas)
        else:
            ranks = f", {replicas.world} ranks" if replicas.world > 1 else ""
            # Told now, not with the first epoch's line, through a pipe too (mpiexec's, | tee)
            length = f"for {counted(epochs, 'epoch')}" if trainer.step == 0 else \
                f"to epoch {epochs} ({counted(epochs - trainer.epoch, 'epoch')} more)"
            print(f"training {model.name} on {shown(args.data_path)} ({device}{ranks}) {length}; "
                  f"output in {shown(output_dir)}", flush=True)
            result = trainer.fit(epochs)
        print(f"validation ({views_name(args.ten_crop)}): {result}")
        return 0


# What each rank of a job may set for itself: its GPUs, its node's copy of the data and its
# cores, where its config lies (the settings it holds are compared), how long it waits; and
# which of the flags it typed (`typed`, not a flag).
PER_RANK_SETTINGS = ("gpus", "data_path", "workers", "config", "dist_timeout", "typed")


def check_same_settings(replicas, args):
    """Ranks given other flags would sum gradients of other batches, or wait at other steps:
    ReplicasDiverged on every rank, before anything acts on them."""
    per_rank = ", ".join(options.flag_names(PER_RANK_SETTINGS))
    replicas.check_same([json_bytes({key: value for key, value in vars(args).items()
                                     if key not in PER_RANK_SETTINGS})],
                        f"settings (all but {per_rank})")


def json_bytes(value) -> np.ndarray:
    """A JSON value's text as bytes, for Replicas.check_same to compare across ranks."""
    return np.frombuffer(json.dumps(value, sort_keys=True, default=str).encode(), np.uint8)


def rank_prefix(replicas):
    return f"rank {replicas.rank}: " if replicas.world > 1 else ""


def rank_marked(rank, text):
    """Each line of `text` marked with the rank that says it."""
    return "".join(f"rank {rank}: {line}" for line in text.splitlines(keepends=True))


@contextlib.contextmanager
def quiet(silent):
    """Send standard output to nowhere while silent: ranks other than 0."""
    if not silent:
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def start(argv, launch):
    """This rank's flags parsed and its devices chosen: (args, placement, device, status, what
    it says on stderr), status None where it can go on, else its exit status (argparse's
    error 2 or --help's 0, a usage error's 2)."""
    said = io.StringIO()
    args = placement = device = status = None
    with contextlib.redirect_stderr(said):
        try:
            args = options.parse(argv)
            placement, device = select_placement(args.gpus, launch, args.conv_algorithm)
        except SystemExit as stop:
            status = stop.code if isinstance(stop.code, int) else 1
        except (UsageError, LaunchError) as error:
            print(f"error: {error}", file=sys.stderr)
            status = 2
    return args, placement, device, status, said.getvalue()


def agree_on_start(world, launch, status, said, timeout):
    """Under MPI, the outcome of every rank's start: (status, what to say) of the lowest rank
    that cannot go on, its lines marked with its rank, or (None, this rank's own)."""
    watchdog = Watchdog(timeout, launch.rank, end_job=functools.partial(abort_job, world))
    with watchdog.waiting("the other ranks' flags and devices"):
        outcomes = world.allgather((status, said))
    failed = next((rank for rank, (status, _) in enumerate(outcomes) if status is not None), None)
    if failed is None:
        return None, said
    status, said = outcomes[failed]
    return status, rank_marked(failed, said) if failed else said


def main(argv=None):
    try:
        launch = launch_from_environment()
    except LaunchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    leader = launch.rank == 0
    try:
        # Under MPI every rank enters MPI before anything that may fail on one rank alone (a
        # config file missing on its node, CuPy on some nodes only): the ranks then agree on
        # how their start went, where one rank's early exit would leave the others waiting
        # inside MPI for ever.
        world = mpi_world() if launch.launcher == "mpi" else None
        if world is not None:   # a collective, so here too: which of its node's GPUs it takes
            launch = dataclasses.replace(launch, local_rank=node_rank(world))
    except LaunchError as error:   # mpi4py missing: each rank says so, in case it alone lacks it
        print(f"error: {f'rank {launch.rank}: ' if launch.rank else ''}{error}", file=sys.stderr)
        return 2
    with quiet(not leader):                  # only rank 0 prints
        args, placement, device, status, said = start(argv, launch)
        if world is not None and world.Get_size() > 1:
            timeout = args.dist_timeout if args is not None else options.DEFAULT_DIST_TIMEOUT
            status, said = agree_on_start(world, launch, status, said, timeout)
        if leader and said:                  # the same flags on every rank: rank 0 reports
            sys.stderr.write(said)
        elif said and status is not None and world is None:   # torchrun-style: no agreement
            sys.stderr.write(rank_marked(launch.rank, said))
        if status is not None:
            return status
        try:
            replicas = connect_replicas(launch, placement, device, args.dist_timeout)
            check_same_settings(replicas, args)
            if args.batch_size % replicas.world:
                raise UsageError(f"--batch-size {args.batch_size} is the global batch and must "
                                 f"split evenly over the {replicas.world} ranks; use a "
                                 f"multiple of {replicas.world}")
        except (UsageError, LaunchError, ReplicasDiverged) as error:   # the same on every rank
            if leader:
                print(f"error: {error}", file=sys.stderr)
            return 2
        try:
            # The run checks its loss itself and stops on a non-finite one in one line; NumPy's
            # warnings of overflows on the way there would only add lines before it.
            with stopping.signals_stop_at_next_step(), \
                    np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                return run(args, placement, device, replicas)
        except (NonFiniteLoss, ReplicasDiverged) as error:   # global figures: the same everywhere
            if replicas.rank == 0:
                print(f"error: {error}", file=sys.stderr)
            return 2
        except (DatasetError, checkpoint.CheckpointError, RunFolderError) as error:
            print(f"error: {rank_prefix(replicas)}{shown(str(error))}", file=sys.stderr,
                  flush=True)
            if replicas.world == 1:
                return 2
            replicas.abort(2)    # this rank alone: the others are waiting for it
        except KeyboardInterrupt as stop:
            # which line tells it (stopped_line)
            stop.test_only, stop.output_dir = args.test_only, args.output_dir
            if replicas.world == 1:
                raise
            if isinstance(stop, stopping.Stopped):
                # Several ranks, stopped at the same place (stopping.check), the run saved: each
                # leaves as from a finished run, with the signal's status; rank 0 says it, first
                # (a launcher may end every rank as one leaves: torchrun does).
                if replicas.rank == 0:
                    print(stopped_line(stop), file=sys.stderr, flush=True)
                else:
                    time.sleep(INTERRUPT_GRACE)
                return 128 + stop.number
            # A second Ctrl-C the launcher passed on to each rank, wherever each was. One line:
            # rank 0's, as it ends the job, or where it waits inside MPI for a rank that left,
            # that of a rank the grace let through.
            if replicas.rank:
                time.sleep(INTERRUPT_GRACE)
            print(stopped_line(stop), file=sys.stderr, flush=True)
            replicas.abort(INTERRUPTED_STATUS)
        except (OutputFailed, OutputClosed) as error:   # rank 0's, the one that prints
            if replicas.world == 1:
                raise                                   # run_command's to tell
            with contextlib.suppress(OSError):
                if isinstance(error, OutputFailed):
                    print(f"error: {error}", file=sys.stderr, flush=True)
            replicas.abort(2 if isinstance(error, OutputFailed) else PIPE_CLOSED_STATUS)
        except BaseException:
            if replicas.world == 1:
                raise
            print(f"error: rank {replicas.rank} failed:", file=sys.stderr)
            traceback.print_exc()
            sys.stderr.flush()
            replicas.abort(1)


INTERRUPT_GRACE = 2   # seconds the other ranks leave rank 0 to say it and end the job


def stopped_line(stop):
    """What a run stopped by `stop` (a KeyboardInterrupt, perhaps a stopping.Stopped) says, by
    where it found the command (its `stage`, marked by run; none: as it started): an evaluation
    (--test-only, marked by main) wrote nothing; training says where last.h5 has the run (its
    `saved`: Trainer.saved); a run of an --output-dir given (marked by main) is named by it,
    which its --resume needs too."""
    number = stop_signal(stop)
    how = "interrupted" if number == signal.SIGINT else f"stopped by {signal.Signals(number).name}"
    if getattr(stop, "test_only", False):
        return f"{how}: --test-only writes nothing, so nothing was lost"
    stage = getattr(stop, "stage", STARTING)
    if stage == STARTING:
        return (f"{how} as it started, before it changed any checkpoint or log; the same command "
                f"starts it again")
    if stage == EVALUATING:
        return f"{how}: an evaluation writes nothing, so nothing was lost"
    saved = stop.saved
    if saved is None:
        return (f"{how} before the run's first checkpoint; the same command with --resume starts "
                f"it again")
    folder = getattr(stop, "output_dir", None)
    resume = f"--resume --output-dir {shlex.quote(shown(folder))} goes on from its" if folder \
        else "--resume goes on from"
    where = f"batch {saved.done} of {saved.batches} of epoch {saved.epoch}" if saved.done else \
        f"the end of epoch {saved.epoch - 1}"
    if saved.lost:   # at once: a second Ctrl-C
        return (f"{how} at once at step {saved.step + saved.lost}: {checkpoint.LAST} holds step "
                f"{saved.step} ({where}), and what the run did since "
                f"({counted(saved.lost, 'step')}) is lost; {resume} {checkpoint.LAST}")
    holds = "now holds" if saved.written else \
        "held already (no step since), so nothing was lost"
    return (f"{how} at step {saved.step} ({where}), which {checkpoint.LAST} {holds}; {resume} "
            f"{checkpoint.LAST} as if never stopped")


if __name__ == "__main__":   # one process's stop; several ranks abort in main
    sys.exit(run_command(main, output_required=False, stopped=stopped_line))
