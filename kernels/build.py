"""How the CUDA kernels are compiled: the one place for sources, targets and options, and the
`make kernels` command.

    python kernels/build.py [--output-dir kernels/build] [--nvcc PATH] [--force]

compiles kernels/all.cu with nvcc into a fatbin with SASS for each target architecture this
nvcc supports, plus PTX for the lowest of them (which the driver compiles for newer GPUs), and
writes into the output folder:
  convnet.fatbin     loaded by the CUDA backend (convnet/backend/cuda/launch.py)
  manifest.json      nvcc's version, the architectures built and skipped (with the reason), the
                     hash of the kernel sources the fatbin was built from, and each kernel's
                     mangled name ("conv_forward<float>" → "_Z12conv_forwardIfEv…")
  ptxas-report.txt   registers, shared memory, stack and spills of every kernel on every
                     architecture, with the callees (such as pow) whose frames ptxas reports
It fails when a float kernel spills registers; double kernels (used by gradient checks) may.
Written atomically: a failed build leaves the previous fatbin in place. Where the fatbin there
was built from the current sources by the same nvcc with the same options and architectures
(its manifest says), nothing is built (--force builds anyway).

Everything else that compiles the kernels reads its options from here: the CUDA backend's NVRTC
path (nvrtc_options()) and setup.py's emulator extensions (EMULATOR_FLAGS, EMULATOR_ASAN_FLAGS).
This file imports only the standard library, so setup.py can load it before anything is
installed.
"""
import argparse
import concurrent.futures
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

KERNELS = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(KERNELS, "all.cu")
DEFAULT_OUTPUT = os.path.join(KERNELS, "build")
FATBIN, MANIFEST, REPORT = "convnet.fatbin", "manifest.json", "ptxas-report.txt"

TARGET_ARCHS = (70, 80, 86, 89, 90)   # Volta, Ampere (A100, consumer), Ada, Hopper
LANGUAGE = ["-std=c++17"]
# CuPy compiles NVRTC code with -ftz=true whatever it is given; the fatbin flushes denormals
# likewise, so that both GPU paths treat float32 denormals alike (their bits may still differ
# where nvcc and the installed NVRTC, of other CUDA versions, fuse other multiply-adds).
NVCC_OPTIONS = LANGUAGE + ["-O3", "-lineinfo", "-Xptxas=-v", "--ftz=true"]
# The host compile of the same sources (kernels/emulator.cpp); it fuses no multiply-add. On x86-64,
# return addresses unguarded by a shadow stack, whatever the compiler's default (Ubuntu's guards
# them): emulate.h switches fibers by returning on another stack, and with them asked for it
# falls back to swapcontext, a system call at each switch.
EMULATOR_FLAGS = ["-O2", "-DNDEBUG", "-ffp-contract=off"] + \
    (["-fcf-protection=branch"] if platform.machine() in ("x86_64", "AMD64") else [])
# Its AddressSanitizer build, the module convnet._emulator_asan (tests/test_emulator_asan.py):
# every access past an array's end, or a __shared__ array's, is reported with its source line
# (-g1: line tables only); so is a 16-byte vector access (float4) at an address that is not a
# multiple of 16, on which a GPU faults where the host's loads may not (the undefined-behaviour
# sanitizer's alignment check, made to end the process as the GPU would). At -O1 (the later -O
# counts) it compiles in half the time of -O2. The sanitizers go to the link too.
EMULATOR_ASAN_MODULE = "_emulator_asan"
EMULATOR_SANITIZERS = ["-fsanitize=address,alignment", "-fno-sanitize-recover=alignment"]
EMULATOR_ASAN_FLAGS = EMULATOR_FLAGS + ["-O1", "-g1", *EMULATOR_SANITIZERS,
                                        "-fno-omit-frame-pointer",
                                        f"-DCONVNET_EMULATOR_MODULE={EMULATOR_ASAN_MODULE}"]


def source_files():
    """Every file the kernels are built from, sorted: the .cu, .cuh and .h files of kernels/."""
    return sorted(os.path.join(KERNELS, name) for name in os.listdir(KERNELS)
                  if name.endswith((".cu", ".cuh", ".h")))


def source_hash():
    """sha256 over the kernel sources' names and contents: which source a binary came from."""
    digest = hashlib.sha256()
    for path in source_files():
        digest.update(os.path.basename(path).encode() + b"\0")
        with open(path, "rb") as file:
            digest.update(file.read() + b"\0")
    return digest.hexdigest()


def nvrtc_options():
    """The options of the backend's NVRTC compile, the sources' hash among them as a macro that no
    kernel reads: all.cu only includes the other files, and CuPy's compile cache, keyed on the
    source text and the options, would otherwise serve kernels built from older sources."""
    return LANGUAGE + [f"-I{KERNELS}", f"-DCONVNET_SOURCES={source_hash()[:16]}"]


def kernel_names():
    """The kernel templates of the sources, from their CONVNET_INSTANTIATE(name) lines."""
    names = []
    for path in source_files():
        with open(path, encoding="utf-8") as file:
            names += re.findall(r"^CONVNET_INSTANTIATE\((\w+)\)", file.read(), re.MULTILINE)
    return sorted(names)


def kernel_instances():
    """Every instantiation of the kernels, "name<float>" and "name<double>": the names the CUDA
    backend launches, and NVRTC's name expressions."""
    return [f"{name}<{t}>" for name in kernel_names() for t in ("float", "double")]


def demangle(mangled):
    """'_Z12conv_forwardIfEv…' → 'conv_forward<float>': the kernels are global templates on one
    type, float or double, so the Itanium name is _Z <length><name> I <f|d> E …"""
    match = re.match(r"_Z(\d+)", mangled)
    if not match:
        return None
    start = match.end()
    name = mangled[start:start + int(match.group(1))]
    rest = mangled[start + len(name):]
    types = {"If": "float", "Id": "double"}
    return f"{name}<{types[rest[:2]]}>" if rest[:2] in types and rest[2:3] == "E" else None


def parse_ptxas(text):
    """ptxas -v output → one record per (entry, arch): registers, shared bytes, stack, spills,
    and the callees ptxas reported after it."""
    records, current = [], None
    lines = iter(text.splitlines())
    for line in lines:
        entry = re.search(r"Compiling entry function '(\w+)' for '(sm_\d+)'", line)
        if entry:
            current = {"mangled": entry.group(1), "kernel": demangle(entry.group(1)),
                       "arch": entry.group(2), "registers": 0, "shared_bytes": 0,
                       "stack_bytes": 0, "spill_stores": 0, "spill_loads": 0, "callees": []}
            records.append(current)
            continue
        properties = re.search(r"Function properties for (\S+)", line)
        if properties and current is not None:
            frame = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, "
                              r"(\d+) bytes spill loads", next(lines, ""))
            stack, stores, loads = (int(value) for value in frame.groups()) if frame else (0, 0, 0)
            if properties.group(1) == current["mangled"]:
                current.update(stack_bytes=stack, spill_stores=stores, spill_loads=loads)
            else:
                current["callees"].append({"name": properties.group(1), "stack_bytes": stack,
                                           "spill_stores": stores, "spill_loads": loads})
            continue
        used = re.search(r"Used (\d+) registers(.*)", line)
        if used and current is not None:
            current["registers"] = int(used.group(1))
            shared = re.search(r"(\d+) bytes smem", used.group(2))
            current["shared_bytes"] = int(shared.group(1)) if shared else 0
    return records


def spills(record):
    return record["spill_stores"] + record["spill_loads"] + sum(
        callee["spill_stores"] + callee["spill_loads"] for callee in record["callees"])


def format_report(records):
    lines = [f"{'kernel':34} {'arch':6} {'regs':>5} {'smem B':>7} {'stack B':>8} "
             f"{'spill st':>9} {'spill ld':>9}"]
    for record in sorted(records, key=lambda r: (r["kernel"] or r["mangled"], r["arch"])):
        lines.append(f"{record['kernel'] or record['mangled']:34} {record['arch']:6} "
                     f"{record['registers']:5d} {record['shared_bytes']:7d} "
                     f"{record['stack_bytes']:8d} {record['spill_stores']:9d} "
                     f"{record['spill_loads']:9d}")
        for callee in record["callees"]:
            lines.append(f"  calls {callee['name']:26} {'':6} {'':5} {'':7} "
                         f"{callee['stack_bytes']:8d} {callee['spill_stores']:9d} "
                         f"{callee['spill_loads']:9d}")
    return "\n".join(lines) + "\n"


def run(command):
    return subprocess.run(command, capture_output=True, text=True)


def supported_archs(nvcc):
    listed = run([nvcc, "--list-gpu-code"])
    if listed.returncode != 0:
        raise SystemExit(f"kernels/build.py: {nvcc} --list-gpu-code failed: {listed.stderr.strip()}")
    return {int(code[3:]) for code in listed.stdout.split() if re.fullmatch(r"sm_\d+", code)}


def gencode(arch, code):
    return f"-gencode=arch=compute_{arch},code={code}_{arch}"


def compile_images(nvcc, archs, directory):
    """nvcc's run for each architecture's SASS (sm_A.cubin) and for the PTX of the lowest
    (compute_A.ptx), at once, one process each: each run's ptxas report is its own output, in the
    order of archs, so the report parses as that of one nvcc run."""
    commands = [[nvcc, "-cubin", *NVCC_OPTIONS, gencode(arch, "sm"), SOURCE,
                 "-o", os.path.join(directory, f"sm_{arch}.cubin")] for arch in archs]
    commands.append([nvcc, "-ptx", *NVCC_OPTIONS, gencode(archs[0], "compute"), SOURCE,
                     "-o", os.path.join(directory, f"compute_{archs[0]}.ptx")])
    for command in commands:
        print(" ".join(command))
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(run, commands))


def fatbinary_command(nvcc, archs, directory, output):
    """The fatbinary command nvcc itself would run to bundle the images of compile_images (its
    --dryrun of the one-process build, whose options, such as the PTX's compile flags for the
    driver, it knows best), given those images and `output`."""
    one_run = [nvcc, "-fatbin", *NVCC_OPTIONS, *(gencode(arch, "sm") for arch in archs),
               gencode(archs[0], "compute"), SOURCE, "-o", output, "--dryrun"]
    listed = run(one_run)
    lines = [line[3:] for line in (listed.stdout + listed.stderr).splitlines()
             if line.startswith("#$ fatbinary ")]
    if listed.returncode != 0 or len(lines) != 1:
        raise SystemExit(f"kernels/build.py: nvcc --dryrun listed no fatbinary command "
                         f"({listed.stderr.strip()[-300:]})")
    options = [option for option in shlex.split(lines[0])
               if not option.startswith(("--image3=", "--create="))]
    # nvcc runs the fatbinary beside itself, whatever the PATH holds
    beside = os.path.join(os.path.dirname(shutil.which(nvcc) or nvcc), "fatbinary")
    options[0] = beside if os.access(beside, os.X_OK) else options[0]
    images = [f"--image3=kind=elf,sm={arch},file={os.path.join(directory, f'sm_{arch}.cubin')}"
              for arch in archs]
    images.append(f"--image3=kind=ptx,sm={archs[0]},"
                  f"file={os.path.join(directory, f'compute_{archs[0]}.ptx')}")
    command = [options[0], f"--create={output}", *options[1:], *images]
    print(" ".join(command))
    return command


def require_success(result, what):
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"kernels/build.py: {what} failed; the previous fatbin, if any, is kept")


def write_atomically(path, data):
    """convnet.atomic's rename in small: this script runs before convnet (and h5py) can be
    imported, from setup.py too."""
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".partial-")
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(handle, 0o666 & ~umask)   # mkstemp's 0600 would outlive the rename
    with os.fdopen(handle, "wb") as file:
        file.write(data if isinstance(data, bytes) else data.encode())
    os.replace(temporary, path)


def up_to_date(output_dir, version, archs):
    """The manifest of the fatbin in output_dir where it was built from the current sources by
    this nvcc version with these options and architectures, else None."""
    try:
        with open(os.path.join(output_dir, MANIFEST)) as file:
            manifest = json.load(file)
    except (OSError, ValueError):
        return None
    same = (manifest.get("source_hash") == source_hash() and manifest.get("nvcc") == version
            and manifest.get("options") == NVCC_OPTIONS
            and manifest.get("archs") == [f"sm_{arch}" for arch in archs]
            and os.path.exists(os.path.join(output_dir, FATBIN))
            and os.path.exists(os.path.join(output_dir, REPORT)))
    return manifest if same else None


def build(output_dir, nvcc="nvcc", force=False):
    try:
        reported = run([nvcc, "--version"]).stdout
        version = "nvcc " + re.search(r"release ([\d.]+, V[\d.]+)", reported).group(1)
    except FileNotFoundError:
        raise SystemExit("kernels/build.py: nvcc not found on PATH; install the CUDA toolkit (the "
                         "CUDA backend can still compile the kernels through NVRTC at run time)")
    available = supported_archs(nvcc)
    archs = [arch for arch in TARGET_ARCHS if arch in available]
    skipped = {f"sm_{arch}": f"{version} cannot compile for it" for arch in TARGET_ARCHS
               if arch not in available}
    if not archs:
        raise SystemExit(f"kernels/build.py: {version} supports none of sm_{TARGET_ARCHS}")
    os.makedirs(output_dir, exist_ok=True)
    fatbin = os.path.join(output_dir, FATBIN)
    built = up_to_date(output_dir, version, archs)
    if built and not force:
        print(f"{fatbin} is up to date: built by {version} from these sources (hash "
              f"{built['source_hash'][:12]}) with these options; --force builds it again")
        return built
    partial = fatbin + ".partial"
    with tempfile.TemporaryDirectory(dir=output_dir, prefix=".images-") as images:
        compiled = compile_images(nvcc, archs, images)
        for result in compiled:
            require_success(result, "nvcc")
        require_success(run(fatbinary_command(nvcc, archs, images, partial)), "fatbinary")
    records = parse_ptxas("".join(result.stdout + result.stderr for result in compiled))
    write_atomically(os.path.join(output_dir, REPORT), format_report(records))
    spilling = sorted({f"{r['kernel']} on {r['arch']}" for r in records
                       if r["kernel"] and r["kernel"].endswith("<float>") and spills(r)})
    if spilling:
        os.remove(partial)
        raise SystemExit(f"kernels/build.py: float kernels spill registers: {', '.join(spilling)} "
                         f"(see {os.path.join(output_dir, REPORT)})")
    names = {r["kernel"]: r["mangled"] for r in records if r["kernel"]}
    expected = set(kernel_instances())
    if set(names) != expected:
        raise SystemExit(f"kernels/build.py: the fatbin's kernels {sorted(names)} differ from the "
                         f"sources' {sorted(expected)}")
    manifest = {"nvcc": version, "archs": [f"sm_{arch}" for arch in archs],
                "ptx": f"compute_{archs[0]}", "skipped": skipped, "source_hash": source_hash(),
                "options": NVCC_OPTIONS, "mangled_names": dict(sorted(names.items()))}
    os.replace(partial, fatbin)
    write_atomically(os.path.join(output_dir, MANIFEST), json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {fatbin}: {len(names)} kernels for {', '.join(manifest['archs'])} + PTX "
          f"{manifest['ptx']}; report in {os.path.join(output_dir, REPORT)}")
    for arch, reason in skipped.items():
        print(f"skipped {arch}: {reason}")
    return manifest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", default=DEFAULT_OUTPUT)
    parser.add_argument("--nvcc", default=os.environ.get("NVCC", "nvcc"),
                        help="the nvcc to build with, where it is not the one on PATH "
                             "(default: $NVCC, else nvcc)")
    parser.add_argument("--force", action="store_true",
                        help="build even where the fatbin is up to date")
    args = parser.parse_args(argv)
    build(args.output_dir, args.nvcc, args.force)


if __name__ == "__main__":
    main()
