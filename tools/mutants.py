"""Mutation testing: does the test suite notice a line of the sources made wrong?

    python tools/mutants.py [--only NAME ...] [--json FILE] [--seed N] [--list]

Each mutant of the catalogue below replaces one exact piece of a source file by a plausible
mistake (a bound off by one, a constant of the paper's changed, a step left out) and names the test
files that should fail on it. The tool copies the checkout (its tracked and untracked files, not
the ignored ones, plus the built extension modules) into a temporary folder, and there, for each
mutant: applies it, rebuilds the extension modules its file goes into (setup.py's build, the
project's own flags; the emulator's AddressSanitizer build only for the tests that load it),
runs pytest on the named files, stopping at the first failure, and undoes it. A mutant is killed
when a test fails, crashes, runs past 15 minutes or can no longer be imported; one the tests
pass survives, and the suite has a gap there. The checkout itself is never touched. Before any
mutant, the named test files run once on the unmutated copy (the baseline): a test that fails
there would kill every mutant that names its file whatever the mutant did, so the tool stops and
names it. The copy has no .git: it names the checkout's commit to the tests through
CONVNET_COMMIT (convnet/provenance.py).

Every entry's `old` text must occur exactly once in its file: tests/test_mutants.py checks that
in every test run, so the catalogue follows the sources. Mutants that no test can tell from the
original (a tile the kernel computes the same either way) are left out; so is what only a GPU
shows. The tests' random seed is fixed (--seed), so a run can be repeated.

Prints one line per mutant and writes a JSON report (commit, seed, each mutant's result, the
test that killed it, seconds); exits 1 when a mutant survived or could not be run (its text
not found, a mistake the compiler refuses), 2 when the tool could not run at all (a baseline
that fails among them). About an hour on 2 cores for the whole catalogue.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from convnet import options, provenance  # noqa: E402
from convnet.atomic import atomic_json  # noqa: E402
from convnet.backend.cuda.launch import build as kernel_build  # noqa: E402

TEST_SECONDS = 900
BASELINE_SECONDS = 3600   # every named test file once, unmutated


class Mutant(NamedTuple):
    name: str
    path: str     # relative to the checkout
    old: str      # exactly once in the file
    new: str
    tests: tuple  # test files, the likeliest to fail first


def checkout_files(root):
    """The files a copy needs: tracked and untracked but not ignored (git), and the built
    extension modules."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=root, capture_output=True, text=True,
                            check=True).stdout
    files = [name for name in listed.split("\0")
             if name and os.path.isfile(os.path.join(root, name))]   # not a deleted one
    modules = [os.path.join("convnet", name) for name in os.listdir(os.path.join(root, "convnet"))
               if name.endswith(".so")]
    return files + modules


def copy_checkout(root, target):
    for name in checkout_files(root):
        os.makedirs(os.path.dirname(os.path.join(target, name)), exist_ok=True)
        shutil.copy2(os.path.join(root, name), os.path.join(target, name))


# setup.py's extension modules, read by setuptools in the copy: with --list, each one's name and
# the files it is built from (sources and depends) as JSON; else a build of the ones named, every
# one compiled again: setuptools' up-to-date check compares whole seconds, and a mutant and its
# undoing often fall in the same one.
EXTENSIONS_SCRIPT = """
import json, sys
import setuptools
from distutils.core import run_setup
dist = run_setup("setup.py", stop_after="init")
if sys.argv[1:] == ["--list"]:
    print(json.dumps({e.name: [*e.sources, *e.depends] for e in dist.ext_modules}))
else:
    dist.ext_modules = [e for e in dist.ext_modules if e.name in sys.argv[1:]]
    build = dist.get_command_obj("build_ext")
    build.inplace = build.force = 1
    dist.run_command("build_ext")
"""
# The emulator's AddressSanitizer build is loaded only under CONVNET_EMULATOR=asan, which these
# tests set (and an environment may): a mutant of a kernel whose tests are others leaves it be.
ASAN_TESTS = "tests/test_emulator_asan.py"


def _extensions_script(folder, *arguments):
    ran = subprocess.run([sys.executable, "-c", EXTENSIONS_SCRIPT, *arguments], cwd=folder,
                         capture_output=True, text=True)
    if ran.returncode:
        errors = [line for line in ran.stderr.splitlines() if "error" in line]
        raise RuntimeError((errors or ran.stderr.splitlines() or ["no message"])[0])
    return ran.stdout


def extension_sources(folder):
    """{module name: the files it is built from, relative to the checkout}."""
    return {name: {os.path.normpath(path) for path in paths}
            for name, paths in json.loads(_extensions_script(folder, "--list")).items()}


def build_extensions(folder, modules):
    """The extension modules named, compiled again in place from the copy's sources."""
    if modules:
        _extensions_script(folder, *sorted(modules))


def modules_built_from(mutant, sources, env):
    """The extension modules the mutant's file goes into and its tests can load."""
    asan_loaded = ASAN_TESTS in mutant.tests or env.get("CONVNET_EMULATOR") == "asan"
    return {name for name, paths in sources.items() if mutant.path in paths
            and (asan_loaded or name != f"convnet.{kernel_build.EMULATOR_ASAN_MODULE}")}


def failures(output):
    """The tests pytest's summary names as failed or in error, in its order."""
    return [line.split(" - ")[0].split(" ", 1)[1] for line in output.splitlines()
            if line.startswith(("FAILED ", "ERROR "))]


def environment_of_tests(folder, seed, commit):
    """The tests' environment in the copy. No bytecode: Python trusts a .pyc whose source has
    the same size and whole-second time, which a mutant and its undoing often have."""
    return {**os.environ, "CONVNET_TEST_SEED": str(seed), "PYTHONPATH": folder,
            "PYTHONDONTWRITEBYTECODE": "1", provenance.COMMIT_VARIABLE: commit or ""}


def run_tests(folder, files, env, seconds, *, first_failure_only):
    """pytest on `files` in the copy: (exit status, output), or None past `seconds`. In a
    session of its own, so that a timeout ends the tests' children too (loader threads'
    processes, mpiexec, training runs)."""
    tests = subprocess.Popen([sys.executable, "-m", "pytest", *(["-x"] * first_failure_only),
                              "-q", "-p", "no:cacheprovider", *files], cwd=folder, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    try:
        output, _ = tests.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(tests.pid, signal.SIGKILL)
        tests.communicate()
        return None
    return tests.returncode, output


def check_baseline(folder, mutants, env):
    """RuntimeError naming the tests that fail on the unmutated copy, if any."""
    files = sorted({name for mutant in mutants for name in mutant.tests})
    ran = run_tests(folder, files, env, BASELINE_SECONDS, first_failure_only=False)
    if ran is None:
        raise RuntimeError(f"without any mutant, the tests ran past {BASELINE_SECONDS} s in the "
                           f"copy")
    status, output = ran
    if status:
        raise RuntimeError(f"without any mutant, the tests fail in the copy (exit status "
                           f"{status}: {', '.join(failures(output)) or output[-300:]}); a kill "
                           f"would tell nothing")


def run_mutant(folder, mutant, env, modules):
    """{name, path, result: killed | survived | error, by: the failing test (or how it ended),
    seconds}, the extension `modules` built from the mutated file first; the file is restored
    whatever happens (the modules are not: see run)."""
    path = os.path.join(folder, mutant.path)
    with open(path, encoding="utf-8") as handle:
        original = handle.read()
    start = time.perf_counter()
    try:
        result, by = _try(folder, path, original, mutant, env, modules)
    finally:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(original)
    return {"name": mutant.name, "path": mutant.path, "result": result, "by": by,
            "seconds": round(time.perf_counter() - start, 1)}


def _try(folder, path, original, mutant, env, modules):
    if original.count(mutant.old) != 1:
        return "error", f"its text occurs {original.count(mutant.old)} times in {mutant.path}"
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(original.replace(mutant.old, mutant.new))
    if modules:
        try:
            build_extensions(folder, modules)
        except RuntimeError as error:   # a mistake the compiler refuses tells nothing of tests
            return "error", f"does not compile: {error}"
    ran = run_tests(folder, mutant.tests, env, TEST_SECONDS, first_failure_only=True)
    if ran is None:
        return "killed", f"tests ran past {TEST_SECONDS} s"
    status, output = ran
    failed = next(iter(failures(output)), None)
    # pytest: 0 all passed; 1 a test failed; 2 with an ERROR line, a test file that no longer
    # imports; negative, a signal (a crash). Anything else is pytest's own trouble.
    if status == 0:
        return "survived", None
    if status == 1 or status < 0 or (status == 2 and failed):
        return "killed", failed or f"exit status {status}"
    return "error", f"pytest exit status {status}: {output[-300:]}"


def run(mutants, seed, report=print, commit=None):
    """The mutants one after another in one copy of the checkout, after the baseline
    (check_baseline): the records, in the mutants' order. Each mutant's file is restored after
    it, and the extension modules a mutant was built into are built again from the restored
    sources before the next mutant that does not build them itself. The copy starts from the
    checkout's built modules, as its own tests do; `commit` is the checkout's (default:
    provenance.running())."""
    records = []
    with tempfile.TemporaryDirectory(prefix="convnet-mutants-") as folder:
        copy_checkout(ROOT, folder)
        env = environment_of_tests(folder, seed, commit or provenance.running())
        check_baseline(folder, mutants, env)
        sources = extension_sources(folder)
        built_from_mutant = set()
        for mutant in mutants:
            modules = modules_built_from(mutant, sources, env)
            build_extensions(folder, built_from_mutant - modules)
            built_from_mutant = modules
            outcome = run_mutant(folder, mutant, env, modules)
            records.append(outcome)
            report(f"{outcome['result']:8} {mutant.name:24} {outcome['seconds']:6.1f} s  "
                   f"{outcome['by'] or ''}")
    return records


def main(argv=None):
    p = options.Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", metavar="NAME", help="these mutants only")
    p.add_argument("--json", metavar="FILE", help="write the report here")
    p.add_argument("--seed", type=int, default=0, help="the tests' random seed (default 0)")
    p.add_argument("--list", action="store_true", help="list the catalogue and stop")
    args = p.parse_args(argv)
    mutants = CATALOGUE
    if args.only:
        unknown = sorted(set(args.only) - {m.name for m in CATALOGUE})
        if unknown:
            p.error(f"no mutant named {', '.join(unknown)} (see --list)")
        mutants = [m for m in CATALOGUE if m.name in args.only]
    if args.list:
        for mutant in mutants:
            print(f"{mutant.name:24} {mutant.path}")
        return 0
    if args.seed < 0:
        p.error(f"--seed must be at least 0; got {args.seed}")
    options.check_writable_flag(p, args.json, "--json")
    commit = provenance.running()   # now: the checkout is copied next, whatever changes later
    try:
        records = run(mutants, args.seed, commit=commit)
    except (RuntimeError, subprocess.CalledProcessError) as error:   # no build tools, no git
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts = {result: sum(r["result"] == result for r in records)
              for result in ("killed", "survived", "error")}
    print(", ".join(f"{count} {result}" for result, count in counts.items()))
    if args.json:
        atomic_json(args.json, {"commit": commit, "seed": args.seed, **counts,
                                "mutants": records}, indent=2)
    return 0 if counts["survived"] == counts["error"] == 0 else 1


# ---- the catalogue -------------------------------------------------------------------------

KERNELS = ("tests/test_kernels.py", "tests/test_kernels_network.py", "tests/test_placement.py")
MODEL = ("tests/test_alexnet.py", "tests/test_network.py", "tests/test_summary.py",
         "tests/test_shapes.py", "tests/test_norm.py", "tests/test_pool.py", "tests/test_conv.py",
         "tests/test_softmax.py", "tests/test_elementwise.py", "tests/test_sgd.py",
         "tests/test_fc.py", "tests/test_gradcheck.py", "tests/test_torch_peer.py")
SCHEDULE = ("tests/test_schedule.py", "tests/test_trainer.py", "tests/test_train_cli.py")
TRAINING = ("tests/test_trainer.py", "tests/test_train_cli.py", "tests/test_checkpoint.py",
            "tests/test_ensemble.py")
LOADER = ("tests/test_loader.py",)
ATOMIC = ("tests/test_atomic.py",)
BENCH = ("tests/test_bench_kernels.py", "tests/test_bench_train.py")
DATA = ("tests/test_dataset.py", "tests/test_prepare.py", "tests/test_loader.py",
        "tests/test_fashion_mnist.py")
PLACEMENT = ("tests/test_replicas.py", "tests/test_placement.py", "tests/test_network.py")
INFERENCE = ("tests/test_figures.py", "tests/test_ensemble.py", "tests/test_alexnet.py")
TOOLS = ("tests/test_compare_runs.py", "tests/test_scaling.py")
PEER = ("tests/test_torch_peer.py",)
MAKEFILE = ("tests/test_makefile.py",)
GPU_STEPS = ("tests/test_gpu_steps.py",)

CATALOGUE = [
    Mutant('divmod-shift', 'kernels/common.cuh',
           'shift = log2_ceiling - 1;',
           'shift = log2_ceiling;', KERNELS),
    Mutant('advance-carry-h', 'kernels/common.cuh',
           'const int carry_h = w >= width;',
           'const int carry_h = w > width;', KERNELS),
    Mutant('advance-carry-c', 'kernels/common.cuh',
           'const int carry_c = h >= height;',
           'const int carry_c = h > height;', KERNELS),
    Mutant('maximum-drops-nan', 'kernels/common.cuh',
           'return a > b || a != a ? a : b;', 'return a > b ? a : b;', KERNELS),
    Mutant('relu-fwd-drops-nan', 'kernels/elementwise.cu',
           'out[i] = maximum(x[i], T(0));', 'out[i] = x[i] > T(0) ? x[i] : T(0);', KERNELS),
    Mutant('softmax-grid-floor', 'convnet/backend/cuda/softmax.py',
           'return max(1, ceil_div(images, TILES["kThreads"]))',
           'return max(1, images // TILES["kThreads"])', KERNELS),
    Mutant('softmax-label-bound', 'convnet/backend/cuda/softmax.py',
           'require(0 <= low and high < classes,', 'require(0 <= low and high <= classes,',
           KERNELS),
    Mutant('conv-splits-ignore-products', 'convnet/backend/cuda/conv.py',
           'splits = max(1, min(TARGET_BLOCKS // (tiles[0] * tiles[1] * products), most))',
           'splits = max(1, min(TARGET_BLOCKS // (tiles[0] * tiles[1]), most))', KERNELS),
    Mutant('winograd-size-check', 'convnet/backend/cuda/conv.py',
           'transformed = POINTS * max(rows, columns) * depth',
           'transformed = max(rows, columns) * depth', KERNELS),
    Mutant('conv-dy-shape-unchecked', 'convnet/backend/cuda/conv.py',
           '    require(dy.shape == (filters, out_h, out_w, images),', '    require(dy.ndim == 4,',
           KERNELS),
    Mutant('pool-bwd-ox-last', 'kernels/pool.cu',
           'const int ox_last = minimum(by_stride.div(w), out_width - 1);',
           'const int ox_last = minimum(by_stride.div(w), out_width);', KERNELS),
    Mutant('bench-conv-flops-one-tower', 'tools/bench_kernels.py',
           'flops = 2 * channels * s * s * f * y_shape[1] * y_shape[2] * n',
           'flops = 2 * c * s * s * f * y_shape[1] * y_shape[2] * n', BENCH),
    Mutant('bench-copy-read-only', 'tools/bench_kernels.py',
           '    return 2 * source.nbytes / (milliseconds * 1e-3)',
           '    return source.nbytes / (milliseconds * 1e-3)', BENCH),
    Mutant('bench-pool-bwd-bytes', 'tools/bench_kernels.py',
           '"bytes": 2 * in_bytes + 2 * out_bytes,', '"bytes": in_bytes + 2 * out_bytes,', BENCH),
    Mutant('bench-train-hours', 'tools/bench_train.py',
           'hours = EPOCHS * IMAGENET_TRAIN_IMAGES / placements[0]["images_per_second"] / 3600',
           'hours = EPOCHS * IMAGENET_TRAIN_IMAGES / placements[0]["images_per_second"] / 60',
           BENCH),
    Mutant('bench-train-rate-ms', 'tools/bench_train.py',
           '"images_per_second": args.batch / (step_ms * 1e-3)})',
           '"images_per_second": args.batch / step_ms})', BENCH),
    Mutant('bench-train-ratio-inverted', 'tools/bench_train.py',
           'ratio_torch_over_ours=peer_ms / ours_ms)',
           'ratio_torch_over_ours=ours_ms / peer_ms)', ('tests/test_bench_train.py',)),
    Mutant('bench-train-entry-ratio-first', 'tools/bench_train.py',
           'entry["ratio_torch_over_ours"] = peer_ms / entry["step_ms"]',
           'entry["ratio_torch_over_ours"] = peer_ms / ours_ms', ('tests/test_bench_train.py',)),
    Mutant('bench-train-mean-not-median', 'tools/bench_train.py',
           'return statistics.median(times)',
           'return statistics.mean(times)', ('tests/test_bench_train.py',)),
    Mutant('bench-train-peer-rate-ms', 'tools/bench_train.py',
           'torch_images_per_second=args.batch / (peer_ms * 1e-3),',
           'torch_images_per_second=args.batch / peer_ms,', ('tests/test_bench_train.py',)),
    Mutant('peer-no-groups', 'tools/torch_alexnet.py',
           '            groups = 2                     # each tower reads its own half',
           '            groups = 1', PEER),
    Mutant('peer-no-overhang', 'tools/torch_alexnet.py',
           'x = F.pad(x, (layer.pad, extra, layer.pad, extra))',
           'x = F.pad(x, (layer.pad, layer.pad, layer.pad, layer.pad))', PEER),
    Mutant('peer-overhang-top-left', 'tools/torch_alexnet.py',
           'x = F.pad(x, (layer.pad, extra, layer.pad, extra))',
           'x = F.pad(x, (layer.pad + extra, layer.pad, layer.pad + extra, layer.pad))', PEER),
    Mutant('peer-lrn-alpha-per-term', 'tools/torch_alexnet.py',
           'alpha=p.coefficient(p.size) *\n                                                     p.size,',
           'alpha=p.coefficient(p.size),', PEER),
    Mutant('peer-lrn-k-default', 'tools/torch_alexnet.py',
           'beta=p.beta, k=p.k)',
           'beta=p.beta, k=1.0)', PEER),
    Mutant('peer-lrn-across-towers', 'tools/torch_alexnet.py',
           'for part in inputs[0].chunk(halves, dim=1)], dim=1)',
           'for part in [inputs[0]]], dim=1)', PEER),
    Mutant('peer-samemap-pad-excluded', 'tools/torch_alexnet.py',
           'count_include_pad=True) * p.size ** 2',
           'count_include_pad=False) * p.size ** 2', PEER),
    Mutant('peer-samemap-terms', 'tools/torch_alexnet.py',
           'y = x * (p.k + p.coefficient(p.size ** 2) * window_sum) ** -p.beta',
           'y = x * (p.k + p.coefficient(p.size) * window_sum) ** -p.beta', PEER),
    Mutant('peer-pool-always-ceil', 'tools/torch_alexnet.py',
           'ceil_mode=layer.overhang)',
           'ceil_mode=True)', PEER),
    Mutant('peer-dropout-test-unscaled', 'tools/torch_alexnet.py',
           'if outputs["train"] else x * layer.keep',
           'if outputs["train"] else x', PEER),
    Mutant('peer-tanh-as-relu', 'tools/torch_alexnet.py',
           '{None: lambda y: y, "relu": torch.relu, "tanh": torch.tanh}',
           '{None: lambda y: y, "relu": torch.relu, "tanh": torch.relu}', PEER),
    Mutant('peer-filters-transposed', 'tools/torch_alexnet.py',
           'return value.transpose(3, 0, 1, 2)',
           'return value.transpose(3, 0, 2, 1)', PEER),
    Mutant('peer-sgd-decays-biases', 'tools/torch_alexnet.py',
           '"weight_decay": 0.0}], momentum=recipe.momentum)',
           '"weight_decay": recipe.weight_decay}], momentum=recipe.momentum)', PEER),
    Mutant('peer-sgd-bias-lr', 'tools/torch_alexnet.py',
           '"lr": recipe.weight_lr * model.preset.bias_lr_multiplier,',
           '"lr": recipe.weight_lr,', PEER),
    Mutant('peer-sgd-no-momentum', 'tools/torch_alexnet.py',
           '"weight_decay": 0.0}], momentum=recipe.momentum)',
           '"weight_decay": 0.0}])', PEER),
    Mutant('peer-tf32-convolutions', 'tools/torch_alexnet.py',
           '    torch.backends.cudnn.allow_tf32 = False\n',
           '', PEER),
    Mutant('peer-tf32-products', 'tools/torch_alexnet.py',
           '    torch.backends.cuda.matmul.allow_tf32 = False\n',
           '', PEER),
    Mutant('peer-cudnn-no-benchmark', 'tools/torch_alexnet.py',
           '    torch.backends.cudnn.benchmark = True\n',
           '', PEER),
    Mutant('peer-settings-matmul-from-cudnn', 'tools/torch_alexnet.py',
           '"matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,',
           '"matmul_allow_tf32": torch.backends.cudnn.allow_tf32,', PEER),
    Mutant('peer-report-path-raw-name', 'tools/torch_alexnet.py',
           'return os.path.join(RESULTS, f"{tool}-{device}.json")',
           'return os.path.join(RESULTS, f"{tool}-{device_name}.json")', PEER),
    Mutant('peer-driver-release-unchecked', 'tools/torch_alexnet.py',
           'return lines[0] if listed.returncode == 0 and lines else None',
           'return lines[-1] if lines else None', PEER),
    Mutant('pool-fwd-overhang', 'kernels/pool.cu',
           'minimum(top + size, height)',
           'minimum(top + size, height - 1)', KERNELS),
    Mutant('pool-bwd-first', 'kernels/pool.cu',
           'const int oy_first = h < size ? 0 : by_stride.div(h - size) + 1;',
           'const int oy_first = h < size ? 0 : by_stride.div(h - size);', KERNELS),
    Mutant('pool-bwd-first-x', 'kernels/pool.cu',
           'const int ox_first = w < size ? 0 : by_stride.div(w - size) + 1;',
           'const int ox_first = w <= size ? 0 : by_stride.div(w - size) + 1;', KERNELS),
    Mutant('pool-bwd-last', 'kernels/pool.cu',
           'minimum(by_stride.div(h), out_height - 1)',
           'minimum(by_stride.div(h), out_height - 2)', KERNELS),
    Mutant('pool-bwd-first-cond', 'kernels/pool.cu',
           'const int oy_first = h < size ? 0',
           'const int oy_first = h < stride ? 0', KERNELS),
    Mutant('norm-right', 'kernels/norm.cu',
           'right = minimum(half, width - 1 - w);',
           'right = minimum(half, width - w);', KERNELS),
    Mutant('norm-left', 'kernels/norm.cu',
           'left = -minimum(half, w),',
           'left = -minimum(half, w + 1),', KERNELS),
    Mutant('norm-enter-end', 'kernels/norm.cu',
           'window[kSize - 1] = t < line.length ?',
           'window[kSize - 1] = t <= line.length ?', KERNELS),
    Mutant('norm-rowsum-cols', 'kernels/norm.cu',
           'if (line.left + j <= line.right)',
           'if (line.left + j < line.right)', KERNELS),
    Mutant('norm-bwd-factor', 'kernels/norm.cu',
           '- T(2) * coefficient * beta * x[i] * sum',
           '- coefficient * beta * x[i] * sum', KERNELS),
    Mutant('norm-walk-prefill', 'kernels/norm.cu',
           'for (int t = 0; t < kHalf; ++t) enter(t);',
           'for (int t = 1; t < kHalf; ++t) enter(t);', KERNELS),
    Mutant('bias-tree', 'kernels/elementwise.cu',
           'for (int half = kThreads / 2; half > 0; half /= 2)',
           'for (int half = kThreads / 2; half > 1; half /= 2)', KERNELS),
    Mutant('bias-slice-end', 'kernels/elementwise.cu',
           'const u32 end = inner - begin < slice ? inner : begin + slice;',
           'const u32 end = inner - begin < slice ? inner : begin + slice - 1;', KERNELS),
    Mutant('dropout-whole', 'kernels/elementwise.cu',
           'const u32 whole = pixel * total + start',
           'const u32 whole = pixel * images + start', KERNELS),
    Mutant('dropout-key', 'kernels/elementwise.cu',
           'mask[i] = (mix32(whole ^ mixed_key) >> 8) < threshold;',
           'mask[i] = (mix32(whole ^ key) >> 8) < threshold;', KERNELS),
    Mutant('mix32-shift', 'kernels/elementwise.cu',
           'h ^= h >> 15;',
           'h ^= h >> 14;', KERNELS),
    Mutant('relu-bwd', 'kernels/elementwise.cu',
           'out[i] = y[i] > T(0) ? dy[i] : T(0);',
           'out[i] = y[i] >= T(0) ? dy[i] : T(0);', KERNELS),
    Mutant('softmax-max-skip', 'kernels/softmax.cu',
           'for (int k = 1; k < classes; ++k) top =',
           'for (int k = 2; k < classes; ++k) top =', KERNELS),
    Mutant('softmax-logsum', 'kernels/softmax.cu',
           '__device__ T operator()(int k) const { return (logits[k * images + n] - top) - log_sum; }',
           '__device__ T operator()(int k) const { return logits[k * images + n] - (top + log_sum); }', KERNELS),
    Mutant('softmax-better', 'kernels/softmax.cu',
           'count += probs[k * images + n] > label_prob;',
           'count += probs[k * images + n] >= label_prob && k != labels[n];', KERNELS),
    Mutant('sgd-order', 'kernels/sgd.cu',
           '    velocity = sub_rn(velocity, mul_rn(decay_lr, w[i]));\n    velocity = sub_rn(velocity, mul_rn(lr, grad[i]));',
           '    velocity = sub_rn(velocity, mul_rn(lr, grad[i]));\n    velocity = sub_rn(velocity, mul_rn(decay_lr, w[i]));', KERNELS),
    Mutant('conv-offset-h', 'kernels/conv.cu',
           'if (static_cast<u32>(h) >= static_cast<u32>(s.height) ||',
           'if (static_cast<u32>(h) > static_cast<u32>(s.height) ||', KERNELS),
    Mutant('conv-rowload-end', 'kernels/conv.cu',
           'for (int i = 0; i < 4; ++i) v[i] = column + i < end ? array[at + i] : T(0);',
           'for (int i = 0; i < 4; ++i) v[i] = column + i <= end ? array[at + i] : T(0);', KERNELS),
    Mutant('conv-kend', 'kernels/conv.cu',
           'const int k_begin = slice_index * slice, k_end = minimum(k_begin + slice, depth);',
           'const int k_begin = slice_index * slice, k_end = k_begin + slice;', KERNELS),
    Mutant('conv-store-rows', 'kernels/conv.cu',
           '    if (m >= rows) continue;\n',
           '    if (m > rows) continue;\n', KERNELS),
    Mutant('conv-sum-splits', 'kernels/conv.cu',
           'for (int z = 1; z < splits; ++z) sum +=',
           'for (int z = 1; z + 1 < splits; ++z) sum +=', KERNELS),
    Mutant('conv-fill-end', 'kernels/conv.cu',
           '    if (k < k_end) {\n      if constexpr (A::kTabled)',
           '    if (k <= k_end) {\n      if constexpr (A::kTabled)', KERNELS),
    Mutant('conv-vector-extent', 'kernels/conv.cu',
           'return sizeof(T) == 4 && extent % 4 == 0 &&',
           'return sizeof(T) == 4 && extent % 2 == 0 &&', KERNELS),
    Mutant('conv-bwdin-stride', 'kernels/conv.cu',
           'vectorizable(dy, images) && stride == 1 &&',
           'vectorizable(dy, images) &&', KERNELS),
    # Misaligned 16-byte loads: the plain emulator crashes on them where its compiler emits an
    # aligned load; the AddressSanitizer build reports them whatever the compiler.
    Mutant('conv-bwdin-vector-rows', 'kernels/conv.cu',
           'vector = vectorizable(w, depth) &&', 'vector = vectorizable(w, channels) &&',
           KERNELS + (ASAN_TESTS,)),
    Mutant('conv-fwd-vector-rows', 'kernels/conv.cu',
           'vectorizable(w, filters) && vectorizable(x, images)',
           'vectorizable(w, channels) && vectorizable(x, images)', KERNELS + (ASAN_TESTS,)),
    Mutant('conv-store-vector', 'kernels/conv.cu',
           'if (vector && n < columns) {',
           'if (vector && n < columns + 4) {', KERNELS),
    Mutant('conv-more', 'kernels/conv.cu',
           'const bool more = k0 + kConvTileK < k_end;',
           'const bool more = k0 + 2 * kConvTileK < k_end;', KERNELS),
    Mutant('conv-table-ring', 'kernels/conv.cu',
           'table[static_cast<u32>(k - k_begin) % (2 * kConvTableK)]',
           'table[static_cast<u32>(k - k_begin) % kConvTableK]', KERNELS),
    Mutant('conv-chunk-fill', 'kernels/conv.cu',
           'if (chunk > k_begin) fill((chunk - k_begin) / kConvTableK + 1);',
           'if (chunk > k_begin + kConvTableK) fill((chunk - k_begin) / kConvTableK + 1);', KERNELS),
    Mutant('wino-filter-t', 'kernels/winograd.cu',
           'u[2] = (g[0] - g[1] + g[2]) * T(0.5);',
           'u[2] = (g[0] + g[1] - g[2]) * T(0.5);', KERNELS),
    Mutant('wino-out-bound', 'kernels/winograd.cu',
           'if (h < out_height && w < out_width)',
           'if (h <= out_height && w < out_width)', KERNELS),
    Mutant('wino-window-signed', 'kernels/winograd.cu',
           'const bool inside = static_cast<u32>(h) < static_cast<u32>(height) &&',
           'const bool inside = h < height &&', KERNELS),
    Mutant('wino-flip-store', 'kernels/winograd.cu',
           'store_points(t, u, count, flip ? f * channels + c : i);',
           'store_points(t, u, count, i);', KERNELS),
    Mutant('wino-grad-edge', 'kernels/winograd.cu',
           'load_window(dy, at, 2 * at.h, 2 * at.w, out_height, out_width, images, e);',
           'load_window(dy, at, 2 * at.h, 2 * at.w, out_height + 1, out_width, images, e);', KERNELS),
    Mutant('wino-fgrad-t', 'kernels/winograd.cu',
           'g[1] = (m[1] - m[2]) * T(0.5);',
           'g[1] = (m[1] - m[2]) * T(0.25);', KERNELS),
    Mutant('em-barrier-noop', 'kernels/emulate.h',
           '  void barrier() {\n    fibers_[current_].state = kAtBarrier;',
           '  void barrier() {\n    return;\n    fibers_[current_].state = kAtBarrier;', KERNELS),
    Mutant('em-partial-return', 'kernels/emulate.h',
           '      if (done != 0) {\n        throw',
           '      if (false) {\n        throw', KERNELS),
    Mutant('em-switch-registers', 'kernels/emulate.h',
           'pop %r13\\n pop %r12', 'pop %r12\\n pop %r13', KERNELS),
    Mutant('emu-strided-array-taken', 'kernels/emulator.cpp',
           '    if (!(array.flags() & py::array::c_style)) {\n      throw py::value_error(where + "the array is not C-contiguous");\n    }\n',
           '', KERNELS),
    Mutant('emu-read-only-written', 'kernels/emulator.cpp',
           'if (writeable && !array.writeable()) throw', 'if (false) throw', KERNELS),
    Mutant('emu-scalar-width-unchecked', 'kernels/emulator.cpp',
           'if (!py::isinstance(value, numpy_generic) || !value.attr("dtype").cast<py::dtype>().is(dtype)) {',
           'if (!py::isinstance(value, numpy_generic)) {', KERNELS),
    Mutant('ck-contiguous', 'convnet/backend/cuda/checks.py',
           '        if not array.flags.c_contiguous:\n',
           '        if False:\n', KERNELS),
    Mutant('ck-dtype', 'convnet/backend/cuda/checks.py',
           '        if array.dtype != dtype:\n',
           '        if False:\n', KERNELS),
    Mutant('pl-bytes', 'convnet/placement.py',
           'self.log.append(Transfer(layer, tensor, source, dest, direction, array.nbytes))',
           'self.log.append(Transfer(layer, tensor, source, dest, direction, array.size))', PLACEMENT),
    Mutant('pl-tower-missing', 'convnet/placement.py',
           'if set(backends) != set(TOWERS):',
           'if not set(backends) <= set(TOWERS):', ('tests/test_placement.py',)),
    Mutant('pl-wait-all', 'convnet/backend/cuda/launch.py',
           '        self.wait(parcel.ready)\n',
           '        self.wait(parcel.sender.event())\n', ("tests/test_placement.py",)),
    Mutant('pl-no-wait', 'convnet/backend/cuda/launch.py',
           '        self.wait(parcel.ready)\n',
           '        pass\n', ("tests/test_placement.py",)),
    Mutant('pl-ready-early', 'convnet/backend/cuda/launch.py',
           '        payload = self._pack(array, route)\n'
           '        return Parcel(payload, self.event(), route, self)',
           '        ready = self.event()\n'
           '        return Parcel(self._pack(array, route), ready, route, self)',
           ("tests/test_placement.py",)),
    Mutant('pl-hold-source', 'convnet/backend/cuda/launch.py',
           '        self._hold(parcel.payload)\n', '', ("tests/test_placement.py",)),
    Mutant('pl-hold-buffer', 'convnet/backend/cuda/launch.py',
           '        self._hold(buffer)   # written by the copy until then\n', '',
           ("tests/test_placement.py",)),
    Mutant('pl-hold-forever', 'convnet/backend/cuda/launch.py',
           'for done, kept in self._held if not done.done]',
           'for done, kept in self._held]', ("tests/test_placement.py",)),
    Mutant('sh-part', 'convnet/replicas/shard.py',
           'start = total * self.rank // self.world',
           'start = (total * self.rank + self.world - 1) // self.world', PLACEMENT),
    Mutant('sh-negative-count', 'convnet/replicas/shard.py',
           '0 <= self.start and 0 <= self.count and ',
           '0 <= self.start and ', ('tests/test_replicas.py',)),
    Mutant('pool-stride-check', 'convnet/backend/cuda/pool.py',
           'require(1 <= stride <= size,',
           'require(1 <= stride,', KERNELS),
    Mutant('au-flip', 'kernels/augment.cpp',
           'values[x] = static_cast<float>(source[(crop - 1 - x) * 3]);',
           'values[x] = static_cast<float>(source[(crop - 2 - x + (x == crop - 1)) * 3]);', LOADER),
    Mutant('au-order', 'kernels/augment.cpp',
           '            float value = values[x] - mean[x];\n            value = value + colour;',
           '            float value = values[x] + colour;\n            value = value - mean[x];', LOADER),
    Mutant('au-thread-split', 'kernels/augment.cpp',
           'work(0, crop / threads);',
           'work(0, crop / threads - (threads > 1));', LOADER),
    Mutant('au-block', 'kernels/augment.cpp',
           'const int64_t count = std::min<int64_t>(kImageBlock, n - i0);',
           'const int64_t count = std::min<int64_t>(kImageBlock - 1, n - i0);', LOADER),
    Mutant('au-bounds', 'kernels/augment.cpp',
           'x + crop > size) {',
           'x + crop > size + 1) {', LOADER),
    Mutant('lrn-size', 'convnet/alexnet.py',
           'crossmap = NormParams(size=5,',
           'crossmap = NormParams(size=3,', MODEL),
    Mutant('lrn-k', 'convnet/alexnet.py',
           'crossmap = NormParams(size=5, k=2.0,',
           'crossmap = NormParams(size=5, k=1.0,', MODEL),
    Mutant('lrn-alpha', 'convnet/alexnet.py',
           'k=2.0, alpha=1e-4, beta=0.75',
           'k=2.0, alpha=1e-3, beta=0.75', MODEL),
    Mutant('lrn-beta', 'convnet/alexnet.py',
           'k=2.0, alpha=1e-4, beta=0.75',
           'k=2.0, alpha=1e-4, beta=0.5', MODEL),
    Mutant('samemap-alpha', 'convnet/alexnet.py',
           'samemap = NormParams(size=5, k=1.0, alpha=1e-3',
           'samemap = NormParams(size=5, k=1.0, alpha=1e-4', MODEL),
    Mutant('samemap-convention', 'convnet/alexnet.py',
           'beta=0.75, alpha_convention="per-term")',
           'beta=0.75, alpha_convention="paper")', MODEL),
    Mutant('preset-std', 'convnet/alexnet.py',
           '"2012": Preset("2012", "per-term", True, True, 0.03, 2.0,',
           '"2012": Preset("2012", "per-term", True, True, 0.01, 2.0,', MODEL),
    Mutant('preset-biaslr', 'convnet/alexnet.py',
           '"2012": Preset("2012", "per-term", True, True, 0.03, 2.0,',
           '"2012": Preset("2012", "per-term", True, True, 0.03, 1.0,', MODEL),
    Mutant('paper-order', 'convnet/alexnet.py',
           '"paper": Preset("paper", "paper", False, False,',
           '"paper": Preset("paper", "paper", True, False,', MODEL),
    Mutant('fc-units', 'convnet/alexnet.py',
           'ConvShape(128, 3, 1, 1)), fc_units=2048)',
           'ConvShape(128, 3, 1, 1)), fc_units=2049)', MODEL),
    Mutant('conv3-channels', 'convnet/alexnet.py',
           'ConvShape(192, 3, 1, 1), ConvShape(192, 3, 1, 1),\n                                    ConvShape(128, 3, 1, 1)), fc_units=2048)',
           'ConvShape(193, 3, 1, 1), ConvShape(192, 3, 1, 1),\n                                    ConvShape(128, 3, 1, 1)), fc_units=2048)', MODEL),
    Mutant('dropout-keep', 'convnet/alexnet.py',
           'yield Dropout(name=f"drop6{t}", inputs=(f"fc6{t}",), tower=t, keep=0.5)',
           'yield Dropout(name=f"drop6{t}", inputs=(f"fc6{t}",), tower=t, keep=0.6)', MODEL),
    Mutant('conv1-bias', 'convnet/alexnet.py',
           'init_std=0.01, bias_init=0.0)\n        pool1_input',
           'init_std=0.01, bias_init=1.0)\n        pool1_input', MODEL),
    Mutant('conv5-bias', 'convnet/alexnet.py',
           'init_std=conv345_std, bias_init=unit_bias)\n        yield MaxPool(name=f"pool3{t}"',
           'init_std=conv345_std, bias_init=0.0)\n        yield MaxPool(name=f"pool3{t}"', MODEL),
    Mutant('conv3-bias', 'convnet/alexnet.py',
           'init_std=conv345_std, bias_init=0.0)\n        yield Conv(name=f"conv4{t}"',
           'init_std=conv345_std, bias_init=1.0)\n        yield Conv(name=f"conv4{t}"', MODEL),
    Mutant('fc8-std', 'convnet/alexnet.py',
           'tower="a", units=geometry.classes, init_std=0.01,',
           'tower="a", units=geometry.classes, init_std=0.005,', MODEL),
    Mutant('fc6-std', 'convnet/alexnet.py',
           'activation=unit, units=fc_units, init_std=0.01, bias_init=unit_bias)\n        if dropout:\n            yield Dropout(name=f"drop6',
           'activation=unit, units=fc_units, init_std=0.005, bias_init=unit_bias)\n        if dropout:\n            yield Dropout(name=f"drop6', MODEL),
    Mutant('conv1-std', 'convnet/alexnet.py',
           'channels=c1.channels, filter_size=c1.filter_size, stride=c1.stride, pad=c1.pad,\n                   init_std=0.01,',
           'channels=c1.channels, filter_size=c1.filter_size, stride=c1.stride, pad=c1.pad,\n                   init_std=0.02,', MODEL),
    Mutant('conv4-crosstower', 'convnet/alexnet.py',
           'yield Conv(name=f"conv4{t}", inputs=(f"conv3{t}",)',
           'yield Conv(name=f"conv4{t}", inputs=every_tower("conv3")', MODEL),
    Mutant('conv3-owntower', 'convnet/alexnet.py',
           'yield Conv(name=f"conv3{t}", inputs=every_tower("pool2")',
           'yield Conv(name=f"conv3{t}", inputs=(f"pool2{t}",)', MODEL),
    Mutant('recipe-momentum', 'convnet/alexnet.py',
           'momentum: float = 0.9',
           'momentum: float = 0.95', MODEL + SCHEDULE),
    Mutant('recipe-wd', 'convnet/alexnet.py',
           'weight_decay: float = 0.0005',
           'weight_decay: float = 0.0001', MODEL + SCHEDULE),
    Mutant('recipe-lr', 'convnet/alexnet.py',
           'weight_lr: float = 0.01',
           'weight_lr: float = 0.02', MODEL + SCHEDULE),
    Mutant('no-overlap-overhang', 'convnet/alexnet.py',
           'pool = dict(size=geometry.pool_stride, stride=geometry.pool_stride, overhang=False)',
           'pool = dict(size=geometry.pool_stride, stride=geometry.pool_stride)', MODEL),
    Mutant('one-tower-c5', 'convnet/alexnet.py',
           'c5 = replace(c5, channels=c5.channels * len(TOWERS))',
           'c5 = replace(c5, channels=c5.channels)', MODEL),
    Mutant('tanh-bias', 'convnet/alexnet.py',
           '("tanh", 0.0) if "tanh" in ablations',
           '("tanh", 1.0) if "tanh" in ablations', MODEL),
    Mutant('solver-bias-decay', 'convnet/solver.py',
           'weight_decay=0.0 if spec.is_bias else self.weight_decay',
           'weight_decay=self.weight_decay', MODEL + SCHEDULE),
    Mutant('solver-layer-scale', 'convnet/solver.py',
           'return self.weight_lr * self.layer_lr_scale.get(spec.layer, 1.0)',
           'return self.weight_lr', MODEL + SCHEDULE),
    Mutant('solver-frozen', 'convnet/solver.py',
           '        if spec.layer in self.frozen_layers:\n            return 0.0\n',
           '', MODEL + SCHEDULE),
    Mutant('solver-frozen-steps', 'convnet/solver.py',
           '            if spec.layer in self.frozen_layers:\n                continue\n',
           '', MODEL + SCHEDULE),
    Mutant('solver-take-scale', 'convnet/solver.py',
           '        self.layer_lr_scale = dict(rates.layer_lr_scale)\n',
           '', SCHEDULE),
    Mutant('solver-take-frozen', 'convnet/solver.py',
           '        self.frozen_layers = tuple(rates.frozen_layers)\n',
           '', SCHEDULE),
    Mutant('sched-2012-ratio', 'convnet/schedule.py',
           'self.initial_weight_lr / RELEASED_2012_LR', '1.0', SCHEDULE),
    Mutant('sched-2012-freeze', 'convnet/schedule.py',
           'if conv1_lr == 0.0:', 'if False:', SCHEDULE),
    Mutant('sched-bias-div', 'convnet/schedule.py',
           '        self.rates.bias_lr /= 10\n',
           '', SCHEDULE),
    Mutant('sched-patience', 'convnet/schedule.py',
           'if self.epochs_without_improvement >= self.patience',
           'if self.epochs_without_improvement > self.patience', SCHEDULE),
    Mutant('sched-improved', 'convnet/schedule.py',
           'validation_error < self.best_error',
           'validation_error <= self.best_error', SCHEDULE),
    Mutant('sched-2012-epoch', 'convnet/schedule.py',
           '(51, 0.0001, None, True)',
           '(50, 0.0001, None, True)', SCHEDULE),
    Mutant('sched-2012-conv1', 'convnet/schedule.py',
           '(67, None, 1e-5, False)',
           '(67, None, 1e-4, False)', SCHEDULE),
    Mutant('sched-2012-noise', 'convnet/schedule.py',
           '(67, None, 1e-5, False)',
           '(67, None, 1e-5, True)', SCHEDULE),
    Mutant('sched-max-drops', 'convnet/schedule.py',
           'and self.drops < self.max_drops',
           'and self.drops <= self.max_drops', SCHEDULE),
    Mutant('loader-alpha', 'convnet/data/loader.py',
           'ALPHA_STD = 0.1',
           'ALPHA_STD = 0.01', DATA),
    Mutant('loader-divisor', 'convnet/data/loader.py',
           'CODE_DIVISOR = 1.1',
           'CODE_DIVISOR = 1.0', DATA),
    Mutant('loader-sigma', 'convnet/data/loader.py',
           'sigma = eigenvalues / PIXEL_RANGE if convention == PAPER_NOISE else',
           'sigma = np.sqrt(eigenvalues) if convention == PAPER_NOISE else', DATA),
    Mutant('loader-eigenvalue-units', 'convnet/data/loader.py',
           'eigenvalues / PIXEL_RANGE if',
           'eigenvalues if', DATA),
    Mutant('loader-chunk', 'convnet/data/loader.py',
           '"per-chunk-32": 32,',
           '"per-chunk-32": 16,', DATA),
    Mutant('loader-corner', 'convnet/data/loader.py',
           '[(0, 0), (0, far), (far, 0), (far, far)]',
           '[(0, 0), (0, far), (far, 0), (far, far - 1)]', DATA),
    Mutant('loader-flip-p', 'convnet/data/loader.py',
           'flips = np.repeat(rng.random(draws) < 0.5, every)[:n]',
           'flips = np.repeat(rng.random(draws) < 0.3, every)[:n]', DATA),
    Mutant('loader-offset-max', 'convnet/data/loader.py',
           'rng.integers(0, limit + 1, (draws, 2))',
           'rng.integers(0, limit, (draws, 2))', DATA),
    Mutant('loader-mean-margin', 'convnet/data/loader.py',
           'self.mean[margin:margin + crop, margin:margin + crop]',
           'self.mean[0:crop, 0:crop]', DATA),
    Mutant('ref-norm-window', 'convnet/backend/reference/norm.py',
           'for offset in range(1, size // 2 + 1):',
           'for offset in range(1, size // 2):', MODEL + KERNELS),
    Mutant('ref-samemap-terms', 'convnet/backend/reference/norm.py',
           '    return _forward(x, params, params.coefficient(params.size ** 2), _samemap_sum)',
           '    return _forward(x, params, params.coefficient(params.size), _samemap_sum)', MODEL + KERNELS),
    Mutant('ref-norm-window-wraps', 'convnet/backend/reference/norm.py',
           '        if offset >= length:\n            break\n',
           '', ('tests/test_norm.py',)),
    Mutant('ref-pool-inf', 'convnet/backend/reference/pool.py',
           'constant_values=-np.inf',
           'constant_values=0', MODEL + KERNELS),
    Mutant('ref-sgd-decay', 'convnet/backend/reference/sgd.py',
           'v -= dtype(weight_decay * lr) * w',
           'v -= dtype(weight_decay) * w', MODEL + KERNELS),
    Mutant('ref-topk-ties', 'convnet/backend/reference/softmax.py',
           'better = (probs > label_probs).sum(axis=0)',
           'better = (probs >= label_probs).sum(axis=0) - 1', MODEL + KERNELS),
    Mutant('ref-softmax-negative-label', 'convnet/backend/reference/softmax.py',
           'labels.min() < 0 or ',
           '', ('tests/test_softmax.py',)),
    Mutant('ref-shape-pool', 'convnet/shapes.py',
           '    return ceil_div(size - window, stride) + 1',
           '    return (size - window) // stride + 1', MODEL + KERNELS),
    Mutant('dropout-test-scale', 'convnet/layers.py',
           'return ops.scale(x, layer.keep), None',
           'return x, None', MODEL + SCHEDULE),
    Mutant('tr-views-scale', 'convnet/trainer.py',
           'return (ops.scale(probs, 1.0 / len(views)),',
           'return (probs,', TRAINING),
    Mutant('tr-loss-floor', 'convnet/trainer.py',
           'np.maximum(label_probs, 1e-30)',
           'np.maximum(label_probs, 1e-3)', TRAINING),
    Mutant('tr-eval-top5', 'convnet/trainer.py',
           'return Evaluation(loss_sum / count, top1 / count, top5 / count, int(count))',
           'return Evaluation(loss_sum / count, top1 / count, top1 / count, int(count))', TRAINING),
    Mutant('tr-best-before-update', 'convnet/trainer.py',
           '            improved = self.schedule.improves(validation.top1)   # best.h5\'s test\n'
           '            self.schedule.epoch_finished(self.epoch, validation.top1)\n',
           '            self.schedule.epoch_finished(self.epoch, validation.top1)\n'
           '            improved = self.schedule.improves(validation.top1)\n', TRAINING),
    Mutant('tr-truncate', 'convnet/trainer.py',
           'json.loads(line)["step"] <= self.step',
           'json.loads(line)["step"] < self.step', TRAINING),
    Mutant('tr-truncate-csv', 'convnet/trainer.py',
           'or int(line.split(",")[0]) <= self.epoch)',
           'or int(line.split(",")[0]) < self.epoch)', TRAINING),
    Mutant('tr-resume-velocity', 'convnet/trainer.py',
           '        self.velocity = self.network.place(velocity)\n',
           '', TRAINING),
    Mutant('tr-resume-step', 'convnet/trainer.py',
           'self.epoch, self.step = state["epoch"], state["step"]',
           'self.epoch, self.step = state["epoch"], 0', TRAINING),
    Mutant('tr-resume-best', 'convnet/trainer.py',
           '        self.schedule = Schedule.from_state(state["schedule"])\n',
           '        self.schedule = Schedule.from_state({**state["schedule"], "best_error": None})\n',
           TRAINING),
    Mutant('tr-nan-inf', 'convnet/trainer.py',
           '        if not math.isfinite(loss):\n            raise NonFiniteLoss(f"loss became',
           '        if math.isnan(loss):\n            raise NonFiniteLoss(f"loss became', TRAINING),
    Mutant('tr-cut-line', 'convnet/trainer.py',
           'if line.endswith(b"\\n") and _kept(keep, line)]',
           'if _kept(keep, line)]', TRAINING),
    Mutant('train-new-run-overwrites', 'convnet/train.py',
           'if args.resume is None:\n        raise UsageError(f"{holds}: add --resume',
           'if False:\n        raise UsageError(f"{holds}: add --resume', TRAINING),
    Mutant('train-auto-without-last', 'convnet/train.py',
           'for name in (checkpoint.LAST, checkpoint.BEST):', 'for name in (checkpoint.LAST,):',
           TRAINING),
    Mutant('train-resume-elsewhere', 'convnet/train.py',
           'if args.resume != "auto" and os.path.exists(args.resume) and not os.path.samefile(',
           'if False and not os.path.samefile(', TRAINING),
    Mutant('train-logs-cut-before-weights', 'convnet/train.py',
           '    note = lr_steps_note(args, trainer.schedule, epochs) \\\n',
           '    if args.resume and not args.test_only:\n'
           '        trainer.go_on_from(resumed)\n'
           '    note = lr_steps_note(args, trainer.schedule, epochs) \\\n', TRAINING),
    Mutant('train-trains-with-unchecked', 'convnet/train.py',
           'check_goes_on_as_trained(resumed, trainer.trained_with, trainer.trains_with())',
           'pass', TRAINING),
    Mutant('tr-old-state-refused', 'convnet/trainer.py',
           '- {"started_from", "epochs",\n                                                           *TRAINS_WITH})',
           '- {"started_from", "epochs"})', TRAINING),
    Mutant('ckpt-commit-required', 'convnet/checkpoint.py',
           'return str(file.attrs.get("commit", ""))', 'return str(file.attrs["commit"])',
           TRAINING),
    Mutant('tr-trained-with-dropped', 'convnet/trainer.py',
           'self.trained_with = {key: state[key] for key in TRAINS_WITH if key in state}',
           'self.trained_with = {}', TRAINING),
    Mutant('train-resume-notes-unsaid', 'convnet/train.py',
           'for note in resume_notes(resumed, trainer.schedule, epochs):', 'for note in ():',
           TRAINING),
    Mutant('sched-old-state-unfrozen', 'convnet/schedule.py',
           'in rates.get("layer_lr_scale", {}).items() if factor == 0]',
           'in rates.get("layer_lr_scale", {}).items() if False]', SCHEDULE),
    Mutant('train-evaluating-goes-on', 'convnet/train.py',
           'trains = not args.test_only and trainer.epoch < epochs',
           'trains = not args.test_only', TRAINING),
    Mutant('tr-go-on-no-copy', 'convnet/trainer.py',
           'if path is not None and not (os.path.exists(last) and os.path.samefile(path, last)):',
           'if False:', TRAINING),
    Mutant('atomic-h5-on-disk', 'convnet/atomic.py',
           'memory = {"driver": "core", "backing_store": False} if in_memory else {}',
           'memory = {}', TRAINING),
    Mutant('dataset-label-range', 'convnet/data/dataset.py',
           'if len(labels) and not 0 <= labels.min() <= labels.max() < classes:',
           'if len(labels) and not 0 <= labels.min() <= labels.max() <= classes:', DATA),
    Mutant('tr-loss-sum', 'convnet/trainer.py',
           'loss_sum += loss * n',
           'loss_sum += loss', TRAINING),
    Mutant('tr-csv-bias', 'convnet/trainer.py',
           '"bias_lr": self.solver.weight_lr * self.solver.bias_lr_multiplier,',
           '"bias_lr": self.solver.weight_lr,', TRAINING),
    Mutant('tr-last-before-best', 'convnet/trainer.py',
           'checkpoint.save(best if improved else last, self.network, self.velocity,\n'
           '                                self.state())\n'
           '                if improved:\n'
           '                    checkpoint.copy(best, last)',
           'checkpoint.save(last, self.network, self.velocity,\n'
           '                                self.state())\n'
           '                if improved:\n'
           '                    checkpoint.copy(last, best)', TRAINING),
    Mutant('tr-best-not-copied', 'convnet/trainer.py',
           '                    checkpoint.copy(best, last)\n', '                    pass\n',
           TRAINING),
    Mutant('train-restart-unnoted', 'convnet/train.py',
           'if key in before and before[key] != settings[key]]', 'if False]', TRAINING),
    Mutant('inf-one-unreadable-twice', 'convnet/inference.py',
           'if not readable and len(failed) == 1:', 'if False:', INFERENCE),
    Mutant('train-resume-default-epochs', 'convnet/train.py',
           'if "epochs" not in args.typed:   # it goes on to the epochs it was training to',
           'if False:', TRAINING),
    Mutant('fig-cache-foreign-replaced', 'convnet/figures/neighbours.py',
           'if "fingerprint" in file.attrs and "features" in file:', 'if True:', INFERENCE),
    Mutant('net-dropout-key-per-step', 'convnet/network.py',
           'SeedSequence([seed, step, layer_index])', 'SeedSequence([seed, step])', MODEL),
    Mutant('net-init-one-stream', 'convnet/network.py',
           'default_rng([seed, zlib.crc32(spec.key.encode())])', 'default_rng([seed])', MODEL),
    Mutant('sched-patience-not-reset', 'convnet/schedule.py',
           '                self.drops += 1\n                self.epochs_without_improvement = 0\n',
           '                self.drops += 1\n', SCHEDULE),
    Mutant('tr-colour-noise-always', 'convnet/trainer.py',
           'self.schedule.rates.colour_noise, self.replicas.shard)', 'True, self.replicas.shard)',
           TRAINING),
    Mutant('tr-validation-centre-only', 'convnet/trainer.py',
           'validation = evaluate(self.network, self.data, self.batch_size, self.ten_crop,',
           'validation = evaluate(self.network, self.data, self.batch_size, False,', TRAINING),
    Mutant('tr-features-summed', 'convnet/trainer.py',
           '[layer_ops.scale(f, 1.0 / len(views)) for f, layer_ops',
           '[f for f, layer_ops', TRAINING),
    Mutant('train-preset-always-2012', 'convnet/train.py',
           'kind = "2012" if model.preset.name == "2012" else "plateau"', 'kind = "2012"',
           TRAINING),
    Mutant('train-bias-rate-fixed', 'convnet/train.py',
           'args.lr * model.preset.bias_lr_multiplier', 'args.lr * 2.0', TRAINING),
    Mutant('train-mid-run-exit-1', 'convnet/train.py',
           '            if replicas.world == 1:\n                return 2\n'
           '            replicas.abort(2)',
           '            if replicas.world == 1:\n                return 1\n'
           '            replicas.abort(2)', TRAINING),
    Mutant('inf-oserror-traceback', 'convnet/inference.py',
           '    except OSError as error:\n        where',
           '    except ConnectionError as error:\n        where', INFERENCE),
    Mutant('at-mode-0600', 'convnet/atomic.py',
           'os.fchmod(handle, 0o666 & ~umask)', 'umask', ATOMIC),
    Mutant('prep-draft-quarter', 'convnet/data/prepare.py',
           'image.draft("RGB", (size, size))', 'image.draft("RGB", (size // 2, size // 2))', DATA),
    Mutant('prep-fingerprint-no-size', 'convnet/data/prepare.py',
           'sha256(f"{size} {BLOCK}".encode())', 'sha256(f"{BLOCK}".encode())', DATA),
    Mutant('aug-index-one-past', 'kernels/augment.cpp',
           'job.index[i] >= total', 'job.index[i] > total', LOADER),
    Mutant('tr-seed-check', 'convnet/trainer.py',
           'if state["seed"] != self.network.seed:',
           'if False:', TRAINING),
    Mutant('tr-val-nonfinite', 'convnet/trainer.py',
           'if not math.isfinite(validation.loss):',
           'if False:', TRAINING),
    Mutant('tr-schedule-error', 'convnet/trainer.py',
           'self.schedule.epoch_finished(self.epoch, validation.top1)',
           'self.schedule.epoch_finished(self.epoch, training.top1)', TRAINING),
    Mutant('tr-print-freq', 'convnet/trainer.py',
           'if self.step % self.print_freq == 0:',
           'if self.step % self.print_freq == 1:', TRAINING),
    Mutant('ck-complete', 'convnet/checkpoint.py',
           'ours = file.attrs.get("format") == FORMAT and file.attrs.get("complete", False)',
           'ours = file.attrs.get("format") == FORMAT', TRAINING),
    Mutant('ck-fletcher', 'convnet/checkpoint.py',
           'data=arrays[spec.key],\n                                    fletcher32=True)',
           'data=arrays[spec.key])', TRAINING),
    Mutant('at-no-cleanup', 'convnet/atomic.py',
           '        if temporary is not None and os.path.exists(temporary):\n'
           '            os.unlink(temporary)\n',
           '        pass\n', TRAINING),
    Mutant('at-leftovers-kept', 'convnet/atomic.py',
           '    _remove_leftovers(folder, prefix)\n', '', ATOMIC),
    Mutant('at-unsynced', 'convnet/atomic.py',
           '        _sync(temporary)\n', '', ATOMIC),
    Mutant('at-folder-sync-strict', 'convnet/atomic.py',
           '        if error.errno not in FOLDER_SYNC_UNOFFERED:\n            raise\n',
           '        raise\n', ATOMIC),
    Mutant('at-temporary-named', 'convnet/atomic.py',
           'return filename is None or os.path.basename', 'return filename is not None and '
           'os.path.basename', ATOMIC),
    Mutant('at-live-removed', 'convnet/atomic.py',
           'if writer.isdigit() and not _running(int(writer)):', 'if writer.isdigit():', ATOMIC),
    Mutant('st-cov-sign', 'convnet/data/dataset.py',
           '(int(self.rgb_outer[i, j]) * pixels - sums[i] * sums[j])',
           '(int(self.rgb_outer[i, j]) * pixels + sums[i] * sums[j])', DATA),
    Mutant('st-mean-count', 'convnet/data/dataset.py',
           'mean = (self.pixel_sum / self.count).astype(np.float32)',
           'mean = (self.pixel_sum / (self.count + 1)).astype(np.float32)', DATA),
    Mutant('st-merge-outer', 'convnet/data/dataset.py',
           '        self.rgb_outer += other.rgb_outer\n',
           '', DATA),
    Mutant('pr-centre', 'convnet/data/prepare.py',
           'left, top = (width - side) / 2, (height - side) / 2',
           'left, top = 0, 0', DATA),
    Mutant('pr-resample', 'convnet/data/prepare.py',
           'square = image.resize((size, size), Image.BILINEAR,',
           'square = image.resize((size, size), Image.NEAREST,', DATA),
    Mutant('pr-convert', 'convnet/data/prepare.py',
           '                image = image.convert("RGB")\n',
           '                pass\n', DATA),
    Mutant('pr-stats-check', 'convnet/data/prepare.py',
           'if statistics.count != attrs["train_count"]:',
           'if False:', DATA),
    Mutant('pr-blocks-check', 'convnet/data/prepare.py',
           'for _, block in blocks[:int(attrs["blocks_done"])]',
           'for _, block in blocks[:int(attrs["blocks_done"]) + 1]', DATA),
    Mutant('pr-stop-waiting', 'convnet/data/prepare.py',
           'if stopped():\n                raise KeyboardInterrupt',
           'if False:\n                raise KeyboardInterrupt', DATA),
    Mutant('pr-stop-start', 'convnet/data/prepare.py',
           'raise KeyboardInterrupt from None   # a SIGTERM', 'raise   # a SIGTERM', DATA),
    Mutant('pr-space-check', 'convnet/data/prepare.py',
           'if free < needed:', 'if False:', DATA),
    Mutant('pr-half-message', 'convnet/data/prepare.py',
           'except (EOFError, OSError):   # OSError', 'except EOFError:   # OSError', DATA),
    Mutant('pr-worker-signals', 'convnet/data/prepare.py',
           'signal.signal(signal.SIGINT, signal.SIG_IGN)', 'pass', DATA),
    Mutant('pr-stop-broken', 'convnet/data/prepare.py',
           'if stop.signal is not None:\n                    raise KeyboardInterrupt from None',
           'if False:\n                    raise KeyboardInterrupt from None', DATA),
    Mutant('inf-top-k', 'convnet/inference.py',
           'def top_k(probs, k):',
           'def top_k(probs, k):\n    k = max(1, k - 1)', INFERENCE),
    Mutant('fits-crop-unchecked', 'convnet/train.py',
           'if model.geometry.image_size > dataset.image_size:', 'if False:', INFERENCE),
    Mutant('config-long-names-only-dests', 'convnet/options.py',
           'return {name[2:].replace("-", "_"): action.dest for action in p._actions',
           'return {action.dest: action.dest for action in p._actions', TRAINING),
    Mutant('config-two-keys-for-one', 'convnet/options.py',
           '        if len(named) > 1:\n', '        if False:\n', TRAINING),
    Mutant('stats-exact-block-from-start', 'convnet/data/dataset.py',
           'block = pixels[start:start + EXACT_FLOAT_PIXELS]', 'block = pixels[start:EXACT_FLOAT_PIXELS]',
           DATA),
    Mutant('mpi-world-unchecked', 'convnet/replicas/engines.py',
           'if launch.world is not None and comm.Get_size() != launch.world:', 'if False:',
           PLACEMENT),
    Mutant('predict-top-ignored', 'convnet/predict.py',
           'top_k(probs, args.top)', 'top_k(probs, 5)', INFERENCE),
    Mutant('ensemble-members-report-shuffled', 'convnet/ensemble.py',
           'for inference, result in zip(members, results)]',
           'for inference, result in zip(members, results[::-1])]', INFERENCE),
    Mutant('neighbours-cache-ignores-views', 'convnet/figures/neighbours.py',
           'list(inference.feature_layers), inference.ten_crop]', 'list(inference.feature_layers)]',
           INFERENCE),
    Mutant('predictions-miss-any-top5', 'convnet/figures/predictions.py',
           'missed = truth is not None and best[n, 0] != truth',
           'missed = truth is not None and truth not in best[n]', INFERENCE),
    Mutant('curves-percent-on-loss', 'convnet/figures/curves.py',
           'for ax in axes[1:3]:', 'for ax in axes[0:2]:', INFERENCE),
    Mutant('filters-shared-low-of-one-tower', 'convnet/figures/filters.py',
           'low = min(k.min() for k in kernels)', 'low = kernels[0].min()', INFERENCE),
    Mutant('compare-best-epoch', 'tools/compare_runs.py',
           'epochs["val_top1"][-1] for seed', 'epochs["val_top1"].min() for seed', TOOLS),
    Mutant('scaling-step-inverted', 'tools/scaling.py',
           'return report["batch"] / rate, report["batch"], (',
           'return rate / report["batch"], report["batch"], (', TOOLS),
    Mutant('net-input-grad-always', 'convnet/network.py',
           'needed = [tensor != DATA or input_grad for tensor in layer.inputs]',
           'needed = [True for tensor in layer.inputs]', MODEL),
    Mutant('net-place-on-tower-a', 'convnet/network.py',
           'return {key: self.backend(self._spec_towers[key]).from_host(value)',
           'return {key: self.backend("a").from_host(value)', PLACEMENT),
    Mutant('net-to-host-on-tower-a', 'convnet/network.py',
           'np.asarray(self.backend(self._spec_towers[key]).to_host(value))',
           'np.asarray(self.backend("a").to_host(value))', PLACEMENT),
    Mutant('net-hand-over-outside-context', 'convnet/network.py',
           'with self.backend(layer.tower).context():', 'with self.backend("a").context():',
           PLACEMENT),
    Mutant('net-topk-swapped', 'convnet/network.py',
           'self.output_backend.topk_errors(probs, labels, (1, 5))',
           'self.output_backend.topk_errors(probs, labels, (5, 1))', MODEL),
    Mutant('net-trace-kept', 'convnet/network.py',
           '        self._trace = None\n        if input_grad:', '        if input_grad:', MODEL),
    Mutant('cuda-op-outside-context', 'convnet/backend/cuda/__init__.py',
           '            with self.launcher.context():\n                return function(',
           '            if True:\n                return function(', PLACEMENT),
    Mutant('bytes-moved-either-way', 'convnet/placement.py',
           'if direction in (None, t.direction)', 'if direction is None or t.direction',
           PLACEMENT),
    Mutant('graph-two-inputs-to-one', 'convnet/graph.py',
           'if len(input_shapes) != 1:', 'if len(input_shapes) < 1:', MODEL),
    Mutant('cuda-add-by-size', 'convnet/backend/cuda/elementwise.py',
           'require(x.shape == y.shape, f"{kernel}: arrays', 'require(x.size == y.size, f"{kernel}: arrays',
           KERNELS),
    Mutant('ref-add-any-dtype', 'convnet/backend/reference/elementwise.py',
           'if x.shape != y.shape or x.dtype != y.dtype:', 'if x.shape != y.shape:', MODEL),
    Mutant('writable-check-makes-folder', 'convnet/atomic.py',
           '    folder = nearest_existing(os.path.dirname(os.path.abspath(path)))\n',
           '    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)\n'
           '    folder = nearest_existing(os.path.dirname(os.path.abspath(path)))\n', ATOMIC),
    Mutant('fashion-labels-of-other-images', 'convnet/data/fashion_mnist.py',
           'return np.repeat(padded[..., None], 3, axis=3), labels',
           'return np.repeat(padded[..., None], 3, axis=3), labels[::-1]', DATA),
    Mutant('inf-negative-index-taken', 'convnet/inference.py',
           'bad = [i for i in indices if not 0 <= i < count]',
           'bad = [i for i in indices if not i < count]', INFERENCE),
    Mutant('inf-top-k-ties-reversed', 'convnet/inference.py',
           'return np.argsort(-probs, axis=1, kind="stable")[:, :k]',
           'return np.argsort(probs, axis=1, kind="stable")[:, ::-1][:, :k]', INFERENCE),
    Mutant('stop-request-outlives-its-block', 'convnet/stopping.py',
           '        signal.signal(signal.SIGINT, previous)\n        _requested = False\n',
           '        signal.signal(signal.SIGINT, previous)\n', TRAINING),
    Mutant('stop-handler-set-in-any-thread', 'convnet/stopping.py',
           'if previous is not signal.default_int_handler or \\\n'
           '            threading.current_thread() is not threading.main_thread():',
           'if previous is not signal.default_int_handler:', TRAINING),
    Mutant('cuda-dropout-threshold-truncated', 'convnet/backend/cuda/elementwise.py',
           'threshold = min(round(keep * 2 ** 24), 2 ** 24)',
           'threshold = min(int(keep * 2 ** 24), 2 ** 24)', KERNELS),
    Mutant('ref-dropout-threshold-truncated', 'convnet/backend/reference/elementwise.py',
           'threshold = np.uint32(min(round(keep * 2 ** 24), 2 ** 24))',
           'threshold = np.uint32(min(int(keep * 2 ** 24), 2 ** 24))', KERNELS),
    Mutant('ref-dropout-mask-broadcast', 'convnet/backend/reference/elementwise.py',
           'if mask.shape != x.shape:',
           'if False:', ('tests/test_elementwise.py',)),
    Mutant('ref-dropout-counter-unchecked', 'convnet/backend/reference/elementwise.py',
           'if features * total >= 2 ** 32:',
           'if False:', ('tests/test_elementwise.py',)),
    Mutant('cuda-dropout-keep-zero', 'convnet/backend/cuda/elementwise.py',
           'require(0.0 < keep <= 1.0,', 'require(0.0 <= keep <= 1.0,', KERNELS),
    Mutant('cuda-norm-shapes-unchecked', 'convnet/backend/cuda/norm.py',
           '    for array in arrays:\n        require(array.shape == x.shape',
           '    for array in ():\n        require(array.shape == x.shape', KERNELS),
    Mutant('cuda-norm-any-ndim', 'convnet/backend/cuda/norm.py',
           'require(x.ndim == 4,', 'require(x.ndim >= 2,', KERNELS),
    Mutant('ck-load-in-files-dtype', 'convnet/checkpoint.py',
           'return file[name][()].astype(network.dtype, copy=False)', 'return file[name][()]',
           TRAINING),
    Mutant('ref-conv-dy-rows-unchecked', 'convnet/backend/reference/conv.py',
           'if out_h != conv_output_size(input_size, filter_size, stride, pad):', 'if False:',
           MODEL),
    Mutant('ref-conv-overhang-rows-only', 'convnet/backend/reference/conv.py',
           'if pad or end_h or end_w:',
           'if pad or end_h:', ('tests/test_conv.py',)),
    Mutant('ref-conv-dw-gradient-shape-unchecked', 'convnet/backend/reference/conv.py',
           'if dy.shape[1:] != (out_h, out_w, x.shape[3]):',
           'if False:', ('tests/test_conv.py',)),
    Mutant('tr-keep-undecodable', 'convnet/trainer.py',
           'return keep(line.decode())', 'return keep(line.decode(errors="replace"))', TRAINING),
    Mutant('tr-keep-reads-a-pipe', 'convnet/trainer.py',
           '                refuse_unless_regular(path)\n', '', ("tests/test_train_cli.py",)),
    Mutant('ds-group-as-array', 'convnet/data/dataset.py',
           'if not isinstance(stored, h5py.Dataset):', 'if False:', DATA),
    Mutant('fig-filters-place-before-checkpoint', 'convnet/figures/filters.py',
           '    network = load_network(in_run(args.checkpoint), get_backend("reference"))   # '
           'seconds\n    path = checkpoint_output(args, "filters")\n',
           '    path = checkpoint_output(args, "filters")\n    network = load_network(in_run('
           'args.checkpoint), get_backend("reference"))\n', INFERENCE),
    Mutant('ds-labels-any-number', 'convnet/data/dataset.py',
           'if images.dtype != np.uint8 or labels.dtype.kind not in "iu":',
           'if images.dtype != np.uint8 or labels.dtype.kind not in "iuf":', DATA),
    Mutant('ds-statistics-any-dtype', 'convnet/data/dataset.py',
           'if array.shape != shape or array.dtype.kind != "f":', 'if array.shape != shape:',
           DATA),
    Mutant('ds-fractional-labels-written', 'convnet/data/dataset.py',
           'if not np.array_equal(labels, np.trunc(labels)):', 'if False:', DATA),
    Mutant('train-restart-reads-a-pipe', 'convnet/train.py',
           'if not os.path.isfile(path):   # none', 'if not os.path.exists(path):   # none',
           ("tests/test_train_cli.py",)),
    Mutant('sum-kinds-lrn', 'convnet/summary.py',
           'alexnet.CrossMapNorm: "cross-map LRN"',
           'alexnet.CrossMapNorm: "same-map LRN"', ('tests/test_summary.py',)),
    Mutant('sum-render-cols', 'convnet/summary.py',
           'f"{layer[\'parameters\']:>12,} {layer[\'multiply_adds\']:>13,}"',
           'f"{layer[\'multiply_adds\']:>12,} {layer[\'parameters\']:>13,}"',
           ('tests/test_summary.py',)),
    Mutant('sum-render-activation', 'convnet/summary.py',
           'kind = layer["type"] + (f" + {layer[\'activation\']}" if layer["activation"] else "")',
           'kind = layer["type"]', ('tests/test_summary.py',)),
    Mutant('sum-render-tower', 'convnet/summary.py',
           'f"{layer[\'name\']:<8} {kind:<18} {layer[\'tower\']:<5} "',
           'f"{layer[\'name\']:<8} {kind:<18} {\'a\':<5} "', ('tests/test_summary.py',)),
    Mutant('shape-pad-fit', 'convnet/shapes.py',
           'if filter_size > size + 2 * pad:',
           'if filter_size > size + pad:', ('tests/test_shapes.py',)),
    Mutant('shape-pool-fit', 'convnet/shapes.py',
           'if window > size:',
           'if window >= size:', ('tests/test_shapes.py',)),
    Mutant('shape-conv-overhang-pad', 'convnet/shapes.py',
           'return max(0, (out - 1) * stride + filter_size - size - pad)',
           'return max(0, (out - 1) * stride + filter_size - size)', ('tests/test_shapes.py',)),
    Mutant('sched-scaled-epochs', 'convnet/schedule.py',
           'return round(self.scale * RELEASED_2012_EPOCHS)',
           'return int(self.scale * RELEASED_2012_EPOCHS)', ('tests/test_schedule.py',)),
    Mutant('prov-diff-head', 'convnet/provenance.py',
           '"diff", "--quiet", "HEAD", "--"',
           '"diff", "--quiet", "--"', ('tests/test_provenance.py',)),
    Mutant('prov-dirty-none', 'convnet/provenance.py',
           '"-dirty" if changed is None or changed.returncode',
           '"-dirty" if changed is not None and changed.returncode', ('tests/test_provenance.py',)),
    Mutant('prov-env-empty', 'convnet/provenance.py',
           'return os.environ.get(COMMIT_VARIABLE) or None',
           'return os.environ.get(COMMIT_VARIABLE)', ('tests/test_provenance.py',)),
    Mutant('prov-cache', 'convnet/provenance.py',
           '@functools.cache\ndef running',
           'def running', ('tests/test_provenance.py',)),
    Mutant('scal-gbps-check', 'tools/scaling.py',
           'if min(args.machines) < 1 or min(args.gbps) <= 0:',
           'if min(args.machines) < 1:', ('tests/test_scaling.py',)),
    Mutant('scal-machines-check', 'tools/scaling.py',
           'if min(args.machines) < 1 or min(args.gbps) <= 0:',
           'if min(args.gbps) <= 0:', ('tests/test_scaling.py',)),
    Mutant('scal-closing-max', 'tools/scaling.py',
           '+ f" at {max(machines)} machines."',
           '+ f" at {machines[-1]} machines."', ('tests/test_scaling.py',)),
    Mutant('cmp-seed-bool', 'tools/compare_runs.py',
           'if not isinstance(seed, int) or isinstance(seed, bool):',
           'if not isinstance(seed, int):', ('tests/test_compare_runs.py',)),
    Mutant('cmp-recipe-momentum', 'tools/compare_runs.py',
           '"lr", "momentum", "wd",',
           '"lr", "wd",', ('tests/test_compare_runs.py',)),
    Mutant('load-crop-eq', 'convnet/data/loader.py',
           'if not 0 < crop <= self.image_size:',
           'if not 0 < crop < self.image_size:', ('tests/test_loader.py',)),
    Mutant('load-in-memory-boundary', 'convnet/data/loader.py',
           'self.in_memory = stored <= in_memory_bytes',
           'self.in_memory = stored < in_memory_bytes', ('tests/test_loader.py',)),
    Mutant('launch-world0', 'convnet/replicas/launch.py',
           'if "WORLD_SIZE" in environ and _integer(environ, "WORLD_SIZE") != 1:',
           'if "WORLD_SIZE" in environ and _integer(environ, "WORLD_SIZE") > 1:',
           ('tests/test_replicas.py',)),
    Mutant('eng-who-plural', 'convnet/replicas/engines.py',
           'if differ.size > 1 else f"rank {ranks} disagrees"',
           'if differ.size > 2 else f"rank {ranks} disagrees"', ('tests/test_replicas.py',)),
    Mutant('wd-timeout-zero', 'convnet/replicas/watchdog.py',
           'if timeout <= 0:',
           'if timeout < 0:', ('tests/test_replicas.py',)),
    Mutant('wd-twice-the-timeout', 'convnet/replicas/watchdog.py',
           'self._wait = (what, time.monotonic() + self.timeout)',
           'self._wait = (what, time.monotonic() + 2 * self.timeout)', ('tests/test_replicas.py',)),
    Mutant('launch-srun-two-tasks', 'convnet/replicas/launch.py',
           'if tasks.isdigit() and int(tasks) > 1:',
           'if tasks.isdigit() and int(tasks) > 2:', ('tests/test_replicas.py',)),
    Mutant('launch-one-gpu-short', 'convnet/replicas/launch.py',
           'if first + block > visible:',
           'if first + block > visible + 1:', ('tests/test_replicas.py',)),
    Mutant('eng-checksum-last-array', 'convnet/replicas/engines.py',
           'checksum = zlib.crc32(np.ascontiguousarray(array).view(np.uint8), checksum)',
           'checksum = zlib.crc32(np.ascontiguousarray(array).view(np.uint8))',
           ('tests/test_replicas.py',)),
    Mutant('nccl-waits-before-the-copies', 'convnet/replicas/nccl.py',
           '            grads = {key: self.cupy.ascontiguousarray(grad) for key, grad in '
           'grads.items()}\n            self._after_compute(tower)   # after the copies above, if any\n',
           '            self._after_compute(tower)\n            grads = {key: '
           'self.cupy.ascontiguousarray(grad) for key, grad in grads.items()}\n',
           ('tests/test_replicas.py',)),
    Mutant('nccl-no-wait-for-compute', 'convnet/replicas/nccl.py',
           'self.streams[tower].wait_event(written)', 'None', ('tests/test_replicas.py',)),
    Mutant('nccl-float64-as-float32', 'convnet/replicas/nccl.py',
           'np.dtype(np.float64): nccl.NCCL_FLOAT64', 'np.dtype(np.float64): nccl.NCCL_FLOAT32',
           ('tests/test_replicas.py',)),
    Mutant('nccl-stream-per-tower', 'convnet/replicas/nccl.py',
           'if device not in device_streams:', 'if True:', ('tests/test_replicas.py',)),
    Mutant('nccl-rank-for-world', 'convnet/replicas/nccl.py',
           'nccl.NcclCommunicator(world, unique_ids[tower], rank)',
           'nccl.NcclCommunicator(rank, unique_ids[tower], world)', ('tests/test_replicas.py',)),
    Mutant('nccl-wait-one-tower', 'convnet/replicas/nccl.py',
           '        with self.watchdog.waiting("summing the gradients"):\n'
           '            for tower in TOWERS:',
           '        with self.watchdog.waiting("summing the gradients"):\n'
           '            for tower in TOWERS[:1]:', ('tests/test_replicas.py',)),
    Mutant('nccl-sum-read-before-the-wait', 'convnet/replicas/nccl.py',
           '            with self.watchdog.waiting("a sum over the ranks"):\n'
           '                self.streams["a"].synchronize()\n            return buffer.get()',
           '            summed = buffer.get()\n'
           '            with self.watchdog.waiting("a sum over the ranks"):\n'
           '                self.streams["a"].synchronize()\n            return summed',
           ('tests/test_replicas.py',)),
    Mutant('nccl-sum-on-tower-b', 'convnet/replicas/nccl.py',
           '        with self.cupy.cuda.Device(self.devices["a"]):\n'
           '            buffer = self.cupy.asarray',
           '        with self.cupy.cuda.Device(self.devices["b"]):\n'
           '            buffer = self.cupy.asarray', ('tests/test_replicas.py',)),
    Mutant('pred-indices-wanted', 'convnet/figures/predictions.py',
           'wanted = len(candidates) if args.indices else args.count',
           'wanted = args.count', ('tests/test_figures.py',)),
    Mutant('pred-break-gt', 'convnet/figures/predictions.py',
           'if len(kept) >= wanted:',
           'if len(kept) > wanted:', ('tests/test_figures.py',)),
    Mutant('pred-ylim', 'convnet/figures/predictions.py',
           'bars.set_ylim(len(classes) - 0.5, -0.5)',
           'bars.set_ylim(-0.5, len(classes) - 0.5)', ('tests/test_figures.py',)),
    Mutant('nb-indices-count', 'convnet/figures/neighbours.py',
           'chosen = chosen if args.indices else chosen[:args.count]',
           'chosen = chosen[:args.count]', ('tests/test_figures.py',)),
    Mutant('nb-clip', 'convnet/figures/neighbours.py',
           'square = np.concatenate([best_square, np.maximum(square, 0)], axis=1)',
           'square = np.concatenate([best_square, square], axis=1)', ('tests/test_figures.py',)),
    Mutant('nb-neighbours-check', 'convnet/figures/neighbours.py',
           'if args.neighbours < 1:',
           'if args.neighbours < 0:', ('tests/test_figures.py',)),
    Mutant('fig-short-name', 'convnet/figures/__init__.py',
           'return first if len(first) <= limit else first[:limit - 1] + "…"',
           'return first if len(first) < limit else first[:limit - 1] + "…"',
           ('tests/test_figures.py',)),
    Mutant('fig-interp', 'convnet/figures/__init__.py',
           'interpolation="nearest" if image.shape[0] < 128 else "antialiased"',
           'interpolation="antialiased"', ('tests/test_figures.py',)),
    Mutant('te-threshold-check', 'convnet/figures/training_error.py',
           'if not 0 < args.threshold < 1:',
           'if not 0 < args.threshold <= 1:', ('tests/test_figures.py',)),
    Mutant('cur-no-steps', 'convnet/figures/curves.py',
           '    if not os.path.exists(os.path.join(folder, LOG)):\n        return np.zeros(0), np.zeros(0)\n',
           '', ('tests/test_figures.py',)),
    Mutant('cur-colours', 'convnet/figures/curves.py',
           'colours = [f"C{i % 10}" for i in range(len(runs))]',
           'colours = ["C0" for i in range(len(runs))]', ('tests/test_figures.py',)),
    Mutant('filt-columns-min', 'convnet/figures/filters.py',
           '    columns = min(columns, max(k.shape[3] for k in kernels))\n',
           '', ('tests/test_figures.py',)),
    Mutant('inf-isfile', 'convnet/inference.py',
           '            if not os.path.isfile(path):\n                failed.append((path, "not a file"))\n                continue\n',
           '', ('tests/test_figures.py',)),
    Mutant('opt-momentum-1', 'convnet/options.py',
           'if not 0 <= args.momentum < 1:',
           'if not 0 <= args.momentum <= 1:', ('tests/test_train_cli.py',)),
    Mutant('opt-wd-neg', 'convnet/options.py',
           '    if args.wd < 0:\n',
           '    if False:\n', ('tests/test_train_cli.py',)),
    Mutant('opt-dist-timeout', 'convnet/options.py',
           'if args.dist_timeout <= 0:',
           'if args.dist_timeout < 0:', ('tests/test_train_cli.py',)),
    Mutant('opt-print-freq', 'convnet/options.py',
           'for flag, value in (("--epochs", args.epochs), ("--print-freq", args.print_freq),',
           'for flag, value in (("--epochs", args.epochs),', ('tests/test_train_cli.py',)),
    Mutant('opt-gpus-three', 'convnet/options.py',
           'if len(parts) > 2 or not all',
           'if len(parts) > 3 or not all', ('tests/test_train_cli.py',)),
    Mutant('opt-output-suffix-case', 'convnet/options.py',
           'if not path.lower().endswith(suffix):',
           'if not path.endswith(suffix):', ('tests/test_train_cli.py',)),
    Mutant('opt-bool-scalar', 'convnet/options.py',
           'return isinstance(value, (int, float, str)) and not isinstance(value, bool)',
           'return isinstance(value, (int, float, str))', ('tests/test_train_cli.py',)),
    Mutant('train-fits-eq', 'convnet/train.py',
           'if model.geometry.image_size > dataset.image_size:',
           'if model.geometry.image_size >= dataset.image_size:', ('tests/test_train_cli.py',)),
    Mutant('fm-count-mismatch', 'convnet/data/fashion_mnist.py',
           '    if len(images) != len(labels):\n',
           '    if False:\n', ('tests/test_fashion_mnist.py',)),
    Mutant('fm-class-names-swapped', 'convnet/data/fashion_mnist.py',
           '"Sneaker", "Bag", "Ankle boot")',
           '"Bag", "Sneaker", "Ankle boot")', ('tests/test_fashion_mnist.py',)),
    Mutant('ck-write-commit-none', 'convnet/checkpoint.py',
           'file.attrs["commit"] = provenance.running() or ""',
           'file.attrs["commit"] = provenance.running()', ('tests/test_checkpoint.py',)),
    Mutant('ds-result-eig-clip', 'convnet/data/dataset.py',
           'return mean, np.maximum(eigenvalues, 0.0), eigenvectors',
           'return mean, eigenvalues, eigenvectors', ('tests/test_dataset.py',)),
    Mutant('ds-labels-no-lower-bound', 'convnet/data/dataset.py',
           'if len(labels) and not 0 <= labels.min() <= labels.max() < classes:',
           'if len(labels) and not labels.max() < classes:', ('tests/test_dataset.py',)),
    Mutant('ds-chunk-empty', 'convnet/data/dataset.py',
           'chunks=(max(1, min(chunk_images(size), len(images))), size,',
           'chunks=(min(chunk_images(size), len(images)), size,', ('tests/test_dataset.py',)),
    Mutant('norm-window-of-one-refused', 'convnet/norm_params.py',
           'if self.size < 1 or self.size % 2 != 1:',
           'if self.size <= 1 or self.size % 2 != 1:', ('tests/test_norm.py',)),
    Mutant('ref-fc-depth-unchecked', 'convnet/backend/reference/fc.py',
           'x.ndim != 2 or w.ndim != 2 or x.shape[0] != w.shape[0]',
           'x.ndim != 2 or w.ndim != 2', ('tests/test_fc.py',)),
    Mutant('cuda-fc-depth-unchecked', 'convnet/backend/cuda/fc.py',
           'x.ndim == 2 and w.ndim == 2 and x.shape[0] == w.shape[0]',
           'x.ndim == 2 and w.ndim == 2', KERNELS),
    Mutant('cuda-fc-dtypes-unchecked', 'convnet/backend/cuda/fc.py',
           '    check_arrays("fully-connected", x, w)\n', '', KERNELS),
    Mutant('te-ylim-first-run', 'convnet/figures/training_error.py',
           'ax.set_ylim(0, min(1.0, max(float(curve.max()) for curve in curves) * 1.05))',
           'ax.set_ylim(0, min(1.0, float(curves[0].max()) * 1.05))', ('tests/test_figures.py',)),
    Mutant('te-log-from-any-step', 'convnet/figures/training_error.py',
           'np.array_equal(steps, np.arange(1, len(steps) + 1))',
           'np.array_equal(steps, np.arange(len(steps)) + steps[0])', ('tests/test_figures.py',)),
    Mutant('rendezvous-unresolvable-retried', 'convnet/replicas/rendezvous.py',
           '        except socket.gaierror:\n            raise\n', '', ('tests/test_replicas.py',)),
    Mutant('rendezvous-short-payload', 'convnet/replicas/rendezvous.py',
           '        if not chunk:\n            raise RendezvousError(f"{waiting}: the connection closed early")\n',
           '        if not chunk:\n            break\n', ('tests/test_replicas.py',)),
    Mutant('rendezvous-silent-peer-waits-forever', 'convnet/replicas/rendezvous.py',
           'connection.settimeout(_left(deadline))\n                peer',
           'connection.settimeout(None)\n                peer', ('tests/test_replicas.py',)),
    Mutant('bench-cpu-batch-unchecked', 'tools/bench_cpu_step.py',
           'if args.batch < 1 or args.repeats < 1:', 'if args.repeats < 1:',
           ('tests/test_help.py',)),
    Mutant('bench-cpu-agreement-loose', 'tools/bench_cpu_step.py',
           'if difference > 1e-3:',
           'if difference > 1e-2:', ('tests/test_bench_cpu.py',)),
    Mutant('bench-cpu-ratio-inverted', 'tools/bench_cpu_step.py',
           'ratio = torch_seconds / seconds',
           'ratio = seconds / torch_seconds', ('tests/test_bench_cpu.py',)),
    Mutant('bench-cpu-rate-per-step', 'tools/bench_cpu_step.py',
           'report["reference_images_per_second"] = args.batch / seconds',
           'report["reference_images_per_second"] = 1 / seconds', ('tests/test_bench_cpu.py',)),
    Mutant('build-archs-not-compared', 'kernels/build.py',
           '            and manifest.get("archs") == [f"sm_{arch}" for arch in archs]\n', '',
           ('tests/test_build.py',)),
    Mutant('build-report-not-required', 'kernels/build.py',
           '            and os.path.exists(os.path.join(output_dir, REPORT)))', ')',
           ('tests/test_build.py',)),
    Mutant('build-nvrtc-no-source-hash', 'kernels/build.py',
           'return LANGUAGE + [f"-I{KERNELS}", f"-DCONVNET_SOURCES={source_hash()[:16]}"]',
           'return LANGUAGE + [f"-I{KERNELS}"]', ('tests/test_build.py',)),
    Mutant('build-no-alignment-check', 'kernels/build.py',
           '"-fsanitize=address,alignment"', '"-fsanitize=address"', (ASAN_TESTS,)),
    Mutant('build-no-ftz', 'kernels/build.py',
           'NVCC_OPTIONS = LANGUAGE + ["-O3", "-lineinfo", "-Xptxas=-v", "--ftz=true"]',
           'NVCC_OPTIONS = LANGUAGE + ["-O3", "-lineinfo", "-Xptxas=-v"]',
           ('tests/test_build.py',)),
    Mutant('bench-data-per-core-from-memory', 'tools/bench_data.py',
           'per_core = rates[False, 1]', 'per_core = rates[True, 1]',
           ('tests/test_bench_data.py',)),
    Mutant('bench-data-check-without-division', 'tools/bench_data.py',
           ' + colour[i]) / np.float32(1.1)', ' + colour[i])', ('tests/test_bench_data.py',)),
    Mutant('bench-data-batches-per-second', 'tools/bench_data.py',
           '        count += len(labels)\n',
           '        count += 1\n', ('tests/test_bench_data.py',)),
    Mutant('bench-data-warm-up-timed', 'tools/bench_data.py',
           'first, _, _ = next(batches)',
           'first, _, _ = next(data.train_batches(0, args.batch, True))',
           ('tests/test_bench_data.py',)),
    Mutant('bench-fp32-peak-no-fma', 'tools/bench_kernels.py',
           '* units * 2 * clock_hz', '* units * clock_hz', BENCH),
    Mutant('bench-hopper-fp32-units', 'tools/bench_kernels.py',
           'FP32_UNITS_PER_SM = {7: 64, 8: 64, 9: 128}',
           'FP32_UNITS_PER_SM = {7: 64, 8: 64, 9: 64}', BENCH),
    Mutant('bench-norm-fwd-bytes', 'tools/bench_kernels.py',
           '"bytes": 3 * nbytes,', '"bytes": 2 * nbytes,', BENCH),
    Mutant('bench-activation-bwd-bytes', 'tools/bench_kernels.py',
           '"bytes": 12 * count,', '"bytes": 8 * count,', BENCH),
    Mutant('bench-sgd-bytes', 'tools/bench_kernels.py',
           '"bytes": 5 * wbytes,', '"bytes": 3 * wbytes,', BENCH),
    Mutant('bench-percent-of-copy-units', 'tools/bench_kernels.py',
           'record["percent_of_copy"] = 100 * record["gb_s"] * 1e9 / bandwidth',
           'record["percent_of_copy"] = 100 * record["gb_s"] / bandwidth', BENCH),
    Mutant('bench-winograd-row-no-rates', 'tools/bench_kernels.py',
           '    record.update(rates)\n    if host_bound:', '    if host_bound:', BENCH),
    Mutant('bench-families-ignored', 'tools/bench_kernels.py',
           'chosen = set(args.families or FAMILIES)', 'chosen = set(FAMILIES)', BENCH),
    Mutant('bench-check-any-finite', 'tools/bench_kernels.py',
           'not bool(poisoned.xp.isfinite(output).all())',
           'not bool(poisoned.xp.isfinite(output).any())', BENCH),
    Mutant('bench-host-bound-inverted', 'tools/bench_kernels.py',
           'host_bound += queued > self.flush_ms', 'host_bound += queued < self.flush_ms', BENCH),
    Mutant('bench-report-at-end-only', 'tools/bench_kernels.py',
           '        atomic_json(args.json, report)   # each case',
           '        pass   # each case', BENCH),
    Mutant('bench-check-every-plan', 'tools/bench_kernels.py',
           'if plans and case["kind"] == "conv":', 'if case["kind"] == "conv":', BENCH),
    Mutant('bench-peer-ratio-inverted', 'tools/bench_kernels.py',
           'record["ratio_peer_over_ours"] = record["peer_ms"] / ours',
           'record["ratio_peer_over_ours"] = ours / record["peer_ms"]', BENCH),
    Mutant('bench-winograd-ratio-inverted', 'tools/bench_kernels.py',
           'record["ratio_peer_over_ours"] = peer_ms / record["ms"]',
           'record["ratio_peer_over_ours"] = record["ms"] / peer_ms', BENCH),
    Mutant('bench-conv-total-ratio-inverted', 'tools/bench_kernels.py',
           'report["conv_total_ratio"] = peer_total / sum(c["ms"] for c in convs)',
           'report["conv_total_ratio"] = sum(c["ms"] for c in convs) / peer_total', BENCH),
    Mutant('conv-tile-ties-narrower', 'convnet/backend/cuda/conv.py',
           '(ceil_div(extent, side) * side, -side)', '(ceil_div(extent, side) * side, side)',
           KERNELS),
    Mutant('conv-target-blocks-halved', 'convnet/backend/cuda/conv.py',
           'TARGET_BLOCKS = 528', 'TARGET_BLOCKS = 264', KERNELS),
    Mutant('conv-partial-outputs-unchecked', 'convnet/backend/cuda/conv.py',
           '    check_arrays(kernel, target)\n', '', KERNELS),
    Mutant('conv-bwd-input-filters-unchecked', 'convnet/backend/cuda/conv.py',
           '    check_conv_operands(x_shape, w.shape)\n', '', KERNELS),
    Mutant('conv-empty-product-allowed', 'convnet/backend/cuda/conv.py',
           'require(min(rows, columns, depth) > 0,', 'require(min(rows, columns, depth) >= 0,',
           KERNELS),
    Mutant('winograd-bwd-input-output-positions', 'convnet/backend/cuda/conv.py',
           '"backward_input": (channels, winograd_tiles(height, width, images), filters),',
           '"backward_input": (channels, winograd_tiles(out_h, out_w, images), filters),',
           KERNELS),
    Mutant('sass-negated-predicate-kept', 'tools/sass_loops.py',
           'words = re.sub(r"^@!?U?P\\w+\\s+", "", instruction).split()',
           'words = re.sub(r"^@U?P\\w+\\s+", "", instruction).split()', ("tests/test_build.py",)),
    Mutant('sass-64-bit-width-dropped', 'tools/sass_loops.py',
           '(".128" if "128" in parts[1:] else ".64" if "64" in parts[1:] else "")',
           '(".128" if "128" in parts[1:] else "")', ("tests/test_build.py",)),
    Mutant('sass-loops-inner-first', 'tools/sass_loops.py',
           'return sorted(spans, key=lambda span: (span[0], -span[1]))', 'return sorted(spans)',
           ("tests/test_build.py",)),
    Mutant('sass-nested-counted-twice', 'tools/sass_loops.py',
           '            nested = [s for s in within\n'
           '                      if not any(o != s and o[0] <= s[0] and s[1] <= o[1] '
           'for o in within)]',
           '            nested = within', ("tests/test_build.py",)),
    Mutant('sass-count-whole-kernel', 'tools/sass_loops.py',
           '            count = sum(mix.values())', '            count = len(instructions)',
           ("tests/test_build.py",)),
    Mutant('sass-shared-memory-unlisted', 'tools/sass_loops.py',
           'if op.split(".")[0] in ("LDG", "LDS", "STS", "STG", "BAR", "LDC"))',
           'if op.split(".")[0] in ("LDG", "STG"))', ("tests/test_build.py",)),
    Mutant('sass-min-ffma-exclusive', 'tools/sass_loops.py',
           'if total_ffma < min_ffma:', 'if total_ffma <= min_ffma:', ("tests/test_build.py",)),
    Mutant('sass-addresses-four-digits', 'tools/sass_loops.py',
           'INSTRUCTION = re.compile(r"/\\*([0-9a-f]{4,})\\*/\\s+(.*?)\\s*;")',
           'INSTRUCTION = re.compile(r"/\\*([0-9a-f]{4})\\*/\\s+(.*?)\\s*;")',
           ("tests/test_build.py",)),
    Mutant('steps-skip-at-15-left', 'tools/gpu_steps.sh',
           'if [ "$left" -lt 15 ]; then', 'if [ "$left" -le 15 ]; then',
           GPU_STEPS),
    Mutant('steps-failure-returns-0', 'tools/gpu_steps.sh',
           '  [ "$status" -eq 0 ] || failed=1\n  return "$status"',
           '  [ "$status" -eq 0 ] || failed=1\n  return 0', GPU_STEPS),
    Mutant('steps-gpu-not-required', 'tools/gpu_steps.sh',
           'export CONVNET_REQUIRE_GPU=1', 'CONVNET_REQUIRE_GPU=1', GPU_STEPS),
    Mutant('steps-tree-last-on-path', 'tools/gpu_steps.sh',
           'export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}',
           'export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD', GPU_STEPS),
    Mutant('steps-list-appended', 'tools/gpu_steps.sh',
           ': >"$out/steps.txt"\n', '', GPU_STEPS),
    Mutant('steps-hash-misses-sources', 'tools/gpu_steps.sh',
           'cat setup.py pyproject.toml kernels/*.cpp kernels/*.h kernels/*.cu kernels/*.cuh',
           'cat setup.py kernels/*.cu kernels/*.cuh', GPU_STEPS),
    Mutant('steps-output-buffered', 'tools/gpu_steps.sh',
           '  PYTHONUNBUFFERED=1 timeout', '  timeout', GPU_STEPS),
    Mutant('steps-extra-clears-failure', 'tools/gpu_steps.sh',
           '  failed=$failed_before', '  failed=0', GPU_STEPS),
    Mutant('steps-install-import-unchecked', 'tools/gpu_steps.sh',
           '"$python" -c "import convnet._augment, convnet._emulator" 2>/dev/null; then',
           'true; then', GPU_STEPS),
    Mutant('steps-stamp-appended', 'tools/gpu_steps.sh',
           'echo "$sources" >"$install_stamp"', 'echo "$sources" >>"$install_stamp"',
           GPU_STEPS),
    Mutant('mutants-error-passes', 'tools/mutants.py',
           '    return 0 if counts["survived"] == counts["error"] == 0 else 1\n',
           '    return 0 if counts["survived"] == 0 else 1\n', ("tests/test_mutants.py",)),
    Mutant('mutants-only-ignored', 'tools/mutants.py',
           '        mutants = [m for m in CATALOGUE if m.name in args.only]\n',
           '        mutants = CATALOGUE\n', ("tests/test_mutants.py",)),
    Mutant('em-shuffle-seed-0-in-order', 'kernels/emulate.h',
           'shuffled_ = seed >= 0;', 'shuffled_ = seed > 0;', ("tests/test_kernels.py",)),
    Mutant('emu-non-array-pointer-taken', 'kernels/emulator.cpp',
           '    if (!py::isinstance<py::array>(value)) {\n'
           '      throw py::type_error(where + "expected a NumPy array, got " + describe(value));\n'
           '    }\n', '', ("tests/test_kernels.py",)),
    Mutant('emu-const-input-must-be-writeable', 'kernels/emulator.cpp',
           'constexpr bool writeable = !std::is_const_v<std::remove_pointer_t<P>>;',
           'constexpr bool writeable = true;', ("tests/test_kernels.py",)),
    Mutant('backend-lacking-an-op-loads', 'convnet/backend/__init__.py',
           '    if missing:\n        raise ImportError', '    if False:\n        raise ImportError',
           ("tests/test_network.py",)),
    Mutant('backend-unknown-name-unchecked', 'convnet/backend/__init__.py',
           '    if name not in BACKENDS:\n', '    if False:\n', ("tests/test_network.py",)),
    Mutant('cuda-sgd-shapes-by-size', 'convnet/backend/cuda/sgd.py',
           'require(w.shape == v.shape == grad.shape,', 'require(w.size == v.size == grad.size,',
           ("tests/test_kernels.py",)),
    Mutant('cuda-sgd-decay-unscaled', 'convnet/backend/cuda/sgd.py',
           't(weight_decay * lr)', 't(weight_decay)', ("tests/test_kernels.py",)),
    Mutant('figures-shared-flags-unchecked', 'convnet/figures/__main__.py',
           '    if module.INFERENCE:\n        options.check_shared(command, args)\n', '',
           INFERENCE),
    Mutant('figures-output-any-suffix', 'convnet/figures/__main__.py',
           'options.check_output_flag(command, args, "output", "-o", ".png")',
           'options.check_output_flag(command, args, "output", "-o", "")', INFERENCE),
    Mutant('figures-unreadable-images-exit-0', 'convnet/figures/__main__.py',
           '        return status\n', '        return 0\n', INFERENCE),
    Mutant('figures-output-unchecked-before-work', 'convnet/figures/__main__.py',
           '    if getattr(args, "output", None) is not None:', '    if False:', INFERENCE),
    Mutant('gpu-check-sanitizer-in-the-pool', 'tools/gpu_check.sh',
           'CONVNET_SANITIZER=1 step "$tool"', 'step "$tool"', GPU_STEPS),
    Mutant('gpu-check-sanitizer-errors-pass', 'tools/gpu_check.sh',
           '--error-exitcode 1', '--error-exitcode 0', GPU_STEPS),
    Mutant('gpu-check-ncu-fails-the-check', 'tools/gpu_check.sh',
           'extra ncu "$out/ncu.txt"', 'step ncu "$out/ncu.txt"', GPU_STEPS),
    Mutant('gpu-check-plans-fail-the-check', 'tools/gpu_check.sh',
           'extra bench-plans "$out/bench.txt"', 'step bench-plans "$out/bench.txt"', GPU_STEPS),
    Mutant('gpu-check-train-report-in-the-tree', 'tools/gpu_check.sh',
           '--json "$out/bench-train.json"', '--json bench/results/bench-train.json', GPU_STEPS),
    Mutant('gpu-train-data-folder-dropped', 'tools/gpu_train.sh',
           '${FASHION_MNIST_DIR:+--source "$FASHION_MNIST_DIR"} ', '', GPU_STEPS),
    Mutant('gpu-train-converts-over-the-data', 'tools/gpu_train.sh',
           'if [ ! -e data/fashion-mnist.h5 ]; then', 'if true; then', GPU_STEPS),
    Mutant('gpu-train-failure-passes', 'tools/gpu_train.sh', 'exit "$failed"', 'exit 0',
           GPU_STEPS),
    Mutant('make-cuda12-extra-for-later-drivers', 'Makefile',
           "awk '$$1 == 12 {print \",cuda12\"}", "awk '$$1 >= 12 {print \",cuda12\"}", MAKEFILE),
    Mutant('make-cuda13-driver-no-cupy', 'Makefile',
           '$$1 >= 13 {print ",cuda"}', '$$1 > 13 {print ",cuda"}', MAKEFILE),
    Mutant('make-cuda-version-first-digit', 'Makefile',
           r"sed -n 's/.*CUDA Version: *\([0-9][0-9]*\).*/\1/p'",
           r"sed -n 's/.*CUDA Version: *\([0-9]\).*/\1/p'", MAKEFILE),
    Mutant('make-gpu-config-everywhere', 'Makefile',
           'TRAIN_CONFIG := configs/fashion-mnist$(if $(CUDA_EXTRA),-gpu).json',
           'TRAIN_CONFIG := configs/fashion-mnist-gpu.json', MAKEFILE),
    Mutant('make-help-drops-hyphenated-targets', 'Makefile',
           "@grep -E '^[a-z-]+:.*## '", "@grep -E '^[a-z]+:.*## '", MAKEFILE),
    Mutant('setup-cuda12-extra-renamed', 'setup.py',
           '"cuda12": ["cupy-cuda12x>=13.0"]', '"cuda-12": ["cupy-cuda12x>=13.0"]', MAKEFILE),
    Mutant('errors-one-line-keeps-newlines', 'convnet/errors.py',
           'return " ".join(str(error).split())', 'return str(error)',
           ("tests/test_checkpoint.py",)),
]

if __name__ == "__main__":
    sys.exit(main())
