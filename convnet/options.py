"""The training command's options: torchvision-style flags, a JSON config file read first and
overridden by flags, validation with one-line errors, and the resolved settings as a dict.

Kept apart from the loop so that every command of the project (training, evaluation, figures)
parses the same flags the same way. It imports no array or HDF5 library: `python -m
convnet.options FLAGS` checks the training command's flags (and config) with the Python's standard
library alone, and exits 0 or 2 with the parser's one-line error, which make train and make
train-mpi do before their set-up, minutes on a fresh clone.
"""
import argparse
import difflib
import json
import math
import os
import sys
import threading

from convnet import alexnet
from convnet.atomic import check_writable
from convnet.backend import CONV_ALGORITHMS
from convnet.errors import open_regular, run_command, shown
from convnet.schedule import KINDS, RELEASED_2012_EPOCHS, SMALL_MODEL_EPOCHS

SCHEDULES = ("preset", *KINDS)   # preset: the one the model's preset names
# The flags' defaults: the paper's recipe, whose one source is alexnet.Recipe.
RECIPE = alexnet.Recipe()
DEFAULT_DIST_TIMEOUT = 600   # seconds a rank waits for the others before it stops the job
NAMES_NOTHING = "must name a file or folder; got ''"   # an empty path's refusal


class Parser(argparse.ArgumentParser):
    """argparse with errors in one line and exit code 2: the usage is one --help away."""

    def error(self, message):   # shown: argparse's own messages hold the arguments as typed
        self.exit(2, shown(f"{self.prog}: error: {message} (see --help)") + "\n")


def check_writable_flag(p, path, flag):
    """atomic.check_writable of a flag's file, before the work that makes it: a refusal is the
    parser's one-line error (exit code 2). None: the flag was not given."""
    if path is None:
        return
    try:
        check_writable(path, flag)
    except ValueError as error:
        p.error(str(error))


def check_output_flag(p, args, suffix):
    """A command's output file (args.output, given as -o), before the work that makes it:
    writable (check_writable_flag), named with `suffix` (so that no dataset or checkpoint is
    taken for it), and not one of the command's own input files (a picture to predict), which
    the write would replace. A refusal is the parser's one-line error (exit code 2)."""
    path = args.output
    check_writable_flag(p, path, "-o")
    if not path.lower().endswith(suffix):
        p.error(f"-o {path}: the output is a {suffix[1:].upper()} file; give a name ending "
                f"in {suffix}")
    given = replaced_input(args, path)
    if given is not None:
        p.error(f"-o {path}: the same file as the input {given}, which the output would "
                f"replace")


def replaced_input(args, path):
    """The command's input file (a value of args', but -o's) that is the file at `path`, which
    writing `path` would replace; None where there is none."""
    if not os.path.isfile(path):
        return None
    for name, value in vars(args).items():
        for given in value if isinstance(value, list) else [value]:
            if name != "output" and isinstance(given, str) and os.path.isfile(given) and \
                    os.path.samefile(given, path):
                return given
    return None


def check_counts(p, args, *names):
    """Each of the flags --NAME (args.NAME, a whole number: a batch, a count of repeats; None
    where not given) at least 1, else the parser's one-line error naming the first that is not
    (exit code 2)."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1; got {value}")


def model_choice(name: str) -> str:
    """argparse's type for a --model flag: a model's name (alexnet.MODELS, with +ablation
    suffixes), its ablations put in their recorded order."""
    try:
        return alexnet.model_name(*alexnet.split_model_name(name))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def shared_flags() -> argparse.ArgumentParser:
    """The flags every command that runs the network takes (training, prediction, figures), as
    a parent parser; check them with check_shared."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--data-path", default="data/fashion-mnist.h5",
                   help="prepared HDF5 dataset (default: %(default)s)")
    p.add_argument("-b", "--batch-size", type=int, default=RECIPE.batch_size,
                   help="global batch (default %(default)s)")
    p.add_argument("--ten-crop", action=argparse.BooleanOptionalAction, default=False,
                   help="evaluate on the paper's 10 views instead of the centre crop")
    p.add_argument("--gpus", default=None,
                   help="cpu, or GPU indices for towers a,b: 0,1 (two GPUs), 0 (one), 0,0 (one "
                        "GPU through the two-device path); default: GPU 0 if any, else cpu. "
                        "Under mpirun, srun or torchrun these are each rank's own")
    return p


def check_shared(p, args):
    check_named(p, [("--data-path", args.data_path)])
    check_counts(p, args, "batch_size")
    if args.gpus is not None and args.gpus != "cpu":
        check_gpu_indices(p, args.gpus, "cpu or ")


def check_named(p, flags):
    """The parser's error for the first (flag, path) of `flags` whose path is empty: it names
    nothing, and would be taken for the current folder or fail deep inside a library."""
    for flag, path in flags:
        if path == "":
            p.error(f"{flag} {NAMES_NOTHING}")


def named_path(path: str) -> str:
    """argparse's type for an argument that names a file or folder: '' refused as check_named
    refuses it, in argparse's error naming the argument (the checkpoints of predict, ensemble
    and the figures)."""
    if path == "":
        raise argparse.ArgumentTypeError(NAMES_NOTHING)
    return path


def check_gpu_indices(p, gpus, other=""):
    """--gpus `gpus` names one or two GPU indices (`other`: what else the flag takes)."""
    parts = gpus.split(",")
    if len(parts) > 2 or not all(part.isascii() and part.isdigit() for part in parts):
        p.error(f"--gpus must be {other}one or two GPU indices like 0,1; got {gpus!r}")


def parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m convnet.train", parents=[shared_flags()],
        description="Train AlexNet with the paper's recipe; towers on one or two GPUs or the CPU.")
    p.add_argument("-c", "--config", metavar="FILE", action="append",
                   help="JSON file of settings (keys as the long flags, without the dashes "
                        "and with underscores), read first; given again, each file's settings "
                        "override those of the files before it; flags given on the command "
                        "line override them all")
    p.add_argument("--conv-algorithm", choices=CONV_ALGORITHMS, default=None,
                   help="the CUDA kernels' convolution algorithm where it serves: implicit "
                        "(GEMMs, every layer) or winograd (3 × 3 filters at stride 1: conv3-5); "
                        "default: convnet/backend/cuda/conv.py's DEFAULT_ALGORITHM")
    p.add_argument("--model", default="auto", type=lambda name: name if name == "auto"
                   else model_choice(name),
                   help="one of " + ", ".join(alexnet.MODELS) + ", optionally with +ablation "
                        "suffixes; auto (default) picks the 2012 preset whose input fits the "
                        "dataset's images")
    p.add_argument("--ablation", nargs="*", choices=alexnet.ABLATIONS, default=[],
                   metavar="NAME",
                   help="the paper's ablations, applied to --model: " +
                        "; ".join(f"{name}: {what}" for name, what in alexnet.ABLATIONS.items())
                        .replace("%", "%%"))   # argparse formats help with %
    p.add_argument("--epochs", type=int, default=None,
                   help=f"epochs to train (default: {RELEASED_2012_EPOCHS} for full-size models, "
                        f"as the 2012 run; {SMALL_MODEL_EPOCHS} for scaled-down ones)")
    p.add_argument("--lr", type=float, default=RECIPE.weight_lr,
                   help="weight learning rate (default %(default)s)")
    p.add_argument("--momentum", type=float, default=RECIPE.momentum,
                   help="SGD momentum on weights and biases (default %(default)s)")
    p.add_argument("--wd", "--weight-decay", dest="wd", type=float, default=RECIPE.weight_decay,
                   help="weight decay on weights, not biases (default %(default)s)")
    p.add_argument("--lr-schedule", choices=SCHEDULES, default="preset",
                   help="preset (default): the 2012 run's epochs for the 2012 preset, the "
                        "plateau rule for paper; or one of them explicitly, or steps")
    p.add_argument("--lr-steps", type=int, nargs="*", default=[],
                   help="with --lr-schedule steps: epochs at which every rate is divided by 10")
    p.add_argument("-j", "--workers", type=int, default=None,
                   help="the loader's threads, which crop, flip and colour the batches "
                        "(default: every core this process may use)")
    p.add_argument("--output-dir", default=None,
                   help="where logs and checkpoints go (default: runs/<model>)")
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="auto|PATH",
                   help="continue from a checkpoint: PATH, or auto (the output folder's last.h5, "
                        "else its best.h5, else its logs alone: the run starts again)")
    p.add_argument("--weights", metavar="PATH",
                   help="start a new run from a checkpoint's weights (a file, or a run "
                        "folder: its best.h5), to fine-tune: each parameter this model shares "
                        "with the checkpoint's (tower, layer, input and shape) is copied, the "
                        "others drawn as a new run draws them; momentum and schedule start "
                        "afresh. A run that resumes its own checkpoint (--resume auto) goes on "
                        "from that instead")
    p.add_argument("--test-only", action=argparse.BooleanOptionalAction, default=False,
                   help="evaluate the --resume checkpoint (or the --weights, or the initial "
                        "weights) and stop")
    p.add_argument("--seed", type=int, default=0, help="decides weights, data order, "
                                                       "augmentation and dropout (default 0)")
    p.add_argument("--print-freq", type=int, default=50,
                   help="steps between log lines (default 50)")
    p.add_argument("--dist-timeout", type=float, default=DEFAULT_DIST_TIMEOUT,
                   metavar="SECONDS",
                   help="with several ranks: how long one rank waits for the others before it "
                        "stops the job as hung (default %(default)g)")
    return p


def flag_names(dests) -> list:
    """The first name of the training command's flag for each setting of `dests` that is one
    (-j for workers)."""
    first = {action.dest: action.option_strings[0] for action in parser()._actions
             if action.option_strings}
    return [first[dest] for dest in dests if dest in first]


def long_flags() -> dict:
    """The training command's settings → the first long name of their flag (--batch-size for
    batch_size): how notes and errors name a setting."""
    return {action.dest: next(flag for flag in action.option_strings if flag.startswith("--"))
            for action in parser()._actions if action.option_strings}


def config_keys(p) -> dict:
    """A config's keys, each flag's long names without their dashes and with underscores for
    hyphens (wd and weight_decay for --wd/--weight-decay), → the setting they name; a switch's
    --no- form is its false, not a key."""
    return {name[2:].replace("-", "_"): action.dest for action in p._actions
            for name in action.option_strings
            if name.startswith("--") and action.dest not in ("help", "config")
            and not (isinstance(action, argparse.BooleanOptionalAction)
                     and name.startswith("--no-"))}


MAX_CONFIG_BYTES = 1 << 20


def _each_key_once(pairs):
    """A JSON object's pairs as a dict; ValueError where a key comes twice (JSON keeps the last,
    which would hide the first)."""
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"{key!r} is set twice")
        seen.add(key)
    return dict(pairs)


def _check_one_key_each(p, config, keys, path):
    """A parser error where two of the config's keys name one setting (wd, weight_decay)."""
    for dest in set(keys.values()):
        named = sorted(key for key in config if keys[key] == dest)
        if len(named) > 1:
            p.error(f"--config {path}: {' and '.join(named)} name one setting; keep one")


def config_flags(p, config, keys, path):
    """A config's settings as the flags that say the same, so that argparse checks their types
    and choices as it checks flags: true for a switch is the flag, a list for a flag of several
    values, null the default."""
    def scalar(value):
        return isinstance(value, (int, float, str)) and not isinstance(value, bool)

    actions = {action.dest: action for action in p._actions}
    flags = []
    for key, value in config.items():
        action = actions[keys[key]]
        flag = action.option_strings[-1]
        if value is None:
            continue
        switch = isinstance(action, argparse.BooleanOptionalAction)
        optional = action.nargs == "?"   # --resume: the flag alone, or with a value
        if switch:
            kind, valid = "true or false", isinstance(value, bool)
        elif optional:
            kind, valid = "true, false or a string", isinstance(value, bool) or scalar(value)
        elif action.nargs in ("*", "+"):
            kind, valid = "a list of values", isinstance(value, list) and all(map(scalar, value))
        else:
            kind, valid = "a number or a string", scalar(value)
        if not valid:
            p.error(f"--config {path}: {key} must be {kind}; got {json.dumps(value)}")
        if not all(map(encodable, value if isinstance(value, list) else [value])):
            p.error(f"--config {path}: {key} holds {json.dumps(value)}: a surrogate escape "
                    f"(\\uD800 to \\uDFFF) that stands for no byte of a file name (\\uDC80 to "
                    f"\\uDCFF do)")
        if switch or (optional and isinstance(value, bool)):
            flags += [action.option_strings[0]] if value else []   # --ten-crop, not --no-…
        elif isinstance(value, list):
            flags += [flag, *map(str, value)]
        else:   # one token: a value that starts with "-" is the value, not another flag
            flags += [f"{flag}={value}"]
    return flags


def encodable(value) -> bool:
    """Whether a config's value can be a flag's: not a string holding a surrogate that stands
    for no byte of a file name (JSON's \\ud800; \\udcff, as settings.json records a name's
    byte 0xff, can)."""
    if not isinstance(value, str):
        return True
    try:
        os.fsencode(value)
    except UnicodeEncodeError:
        return False
    return True


def read_config(p, path, keys) -> dict:
    """The settings of config file `path`, each a key of `keys`: else a parser error naming
    the file."""
    try:
        with open_regular(path, encoding="utf-8") as handle:
            text = handle.read(MAX_CONFIG_BYTES + 1)   # /dev/zero would never end
        if len(text) > MAX_CONFIG_BYTES:
            raise ValueError(f"over {MAX_CONFIG_BYTES >> 20} MiB: not a config")
        config = json.loads(text, object_pairs_hook=_each_key_once)
    except OSError as error:
        p.error(f"--config {path}: cannot read it ({error.strerror})")
    except ValueError as error:
        p.error(f"--config {path}: cannot read it as JSON ({error})")
    if not isinstance(config, dict):
        p.error(f"--config {path}: must hold a JSON object of settings")
    unknown = sorted(set(config) - set(keys))
    if unknown:
        named = [f"{key} (did you mean {close[0]}?)" if close else key for key, close in
                 ((key, difflib.get_close_matches(key, keys, n=1)) for key in unknown)]
        p.error(f"--config {path}: unknown setting{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(named)}")
    _check_one_key_each(p, config, keys, path)
    return config


def parse(argv=None) -> argparse.Namespace:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = parser()
    args = p.parse_args(argv)
    if args.config:
        keys = config_keys(p)
        merged = {}   # setting → (key, value) of the last file that sets it (null: the default)
        for path in args.config:
            check_named(p, [("--config", path)])
            config = read_config(p, path, keys)
            from_config = config_flags(p, config, keys, path)
            command, p.prog = p.prog, f"{p.prog} --config {path}"
            _check_values(p, p.parse_args(from_config))   # the file's own errors name the file
            p.prog = command
            merged.update({keys[key]: (key, value) for key, value in config.items()})
        from_configs = config_flags(p, dict(merged.values()), keys, args.config[-1])
        args = p.parse_args(from_configs + argv)   # flags given on the command line win
    _check_values(p, args)
    _check_combinations(p, args)
    args.typed = typed_settings(argv)
    return args


def typed_settings(argv) -> tuple:
    """The settings the command line names itself, not a config's or the defaults, sorted: a
    resumed run's checkpoint records its length, which only a typed --epochs overrides."""
    p = parser()
    for action in p._actions:
        action.default = argparse.SUPPRESS
    return tuple(sorted(vars(p.parse_args(argv))))


MAX_WORKERS = 1024   # the loader's threads: far more than any machine's cores


def _check_values(p, args):
    """Each setting on its own."""
    check_shared(p, args)
    check_counts(p, args, "epochs", "print_freq", "workers")
    if args.workers is not None and args.workers > MAX_WORKERS:
        p.error(f"--workers must be at most {MAX_WORKERS}; got {args.workers}")
    if args.seed < 0:
        p.error(f"--seed must not be negative; got {args.seed}")
    for flag, value in (("--lr", args.lr), ("--momentum", args.momentum), ("--wd", args.wd),
                        ("--dist-timeout", args.dist_timeout)):
        if not math.isfinite(value):
            p.error(f"{flag} must be a finite number; got {value}")
    if args.dist_timeout <= 0:
        p.error(f"--dist-timeout must be positive; got {args.dist_timeout}")
    if args.dist_timeout > threading.TIMEOUT_MAX:
        p.error(f"--dist-timeout must be at most {threading.TIMEOUT_MAX:.0f} s, the longest "
                f"wait a thread can make; got {args.dist_timeout:g}")
    if args.lr <= 0:
        p.error(f"--lr must be positive; got {args.lr}")
    if not 0 <= args.momentum < 1:
        p.error(f"--momentum must be in [0, 1); got {args.momentum}")
    if args.wd < 0:
        p.error(f"--wd must not be negative; got {args.wd}")
    if any(epoch < 1 for epoch in args.lr_steps):
        p.error(f"--lr-steps are epochs after which the rates drop, each at least 1; got "
                f"{' '.join(map(str, args.lr_steps))}")
    twice = sorted({epoch for epoch in args.lr_steps if args.lr_steps.count(epoch) > 1})
    if twice:   # the rates drop once there, not once for each naming
        p.error(f"--lr-steps {' '.join(map(str, args.lr_steps))}: epoch {twice[0]} named twice")
    check_named(p, [("--output-dir", args.output_dir), ("--resume", args.resume),
                    ("--weights", args.weights)])


def _check_combinations(p, args):
    """Settings that contradict each other, once the flags have overridden the config."""
    if args.weights and args.resume not in (None, "auto"):
        p.error("--weights starts a new run and --resume PATH continues one: give one of them")
    if args.lr_schedule == "steps" and not args.lr_steps:
        p.error("--lr-schedule steps needs --lr-steps EPOCH [EPOCH ...]")
    in_model = () if args.model == "auto" else alexnet.split_model_name(args.model)[1]
    for ablation in args.ablation:   # as a model name's +ablation named twice is
        if ablation in in_model:
            p.error(f"--ablation {ablation}: --model {args.model} has it already")
        if args.ablation.count(ablation) > 1:
            p.error(f"--ablation {ablation}: named twice")


def check(argv=None) -> int:
    """The training command's flags (and config) checked, and nothing run: 0, else parse's
    one-line error and exit status 2."""
    parse(argv)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(check, output_required=False))   # output: --help's alone
