"""The instruction mix of the CUDA kernels' loops, read from the machine code (SASS) of the fatbin
that `make kernels` built: no GPU needed.

    python tools/sass_loops.py [--arch sm_90] [--kernel conv_forward<float>] [--min-ffma 1]
                               [--fatbin kernels/build/convnet.fatbin]

A Hopper or Ampere multiprocessor's four schedulers each issue one instruction per clock, and a
warp's FFMA is one of them, so in a loop bound by its multiply-adds the FFMA share of the
instructions one trip issues caps the fraction of FP32 peak it can reach; everything else in the
loop (address arithmetic, loads into registers and shared memory, the barrier) is what a faster
loop has to cut. Counts are static: each loop's own instructions once (a nested loop's are
listed under it, with its own trip count to be multiplied in), every branch of it included, so
a loop whose branches skip work issues fewer per trip than listed.

A loop is the span from a backward branch's target to the branch. The SASS comes from
cuobjdump: the CUDA toolkit's, or the nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm wheels'
(in the test extras).
"""
import collections
import glob
import importlib.util
import os
import sys
import re
import shutil
import subprocess

from convnet import options
from convnet.backend.cuda.launch import build   # kernels/build.py: the fatbin, the kernels' names
from convnet.errors import NOT_REGULAR, run_command, shown

INSTRUCTION = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
BRANCH_TARGET = re.compile(r"\bBRA\b.*?\b0x([0-9a-f]+)\b")


def cuobjdump():
    """The cuobjdump on PATH, or the one the nvidia-cuda-cuobjdump wheel installs (with
    nvidia-cuda-nvdisasm's nvdisasm, which it runs)."""
    found = shutil.which("cuobjdump")
    if found:
        return found
    spec = importlib.util.find_spec("nvidia")
    for folder in spec.submodule_search_locations if spec else ():
        for candidate in sorted(glob.glob(os.path.join(folder, "cu*", "bin", "cuobjdump"))):
            return candidate
    raise SystemExit("tools/sass_loops.py: cuobjdump not found: install the CUDA toolkit or "
                     "pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm")


def disassemble(fatbin, arch):
    """cuobjdump -sass of the fatbin's code for `arch` ("sm_90")."""
    if not os.path.exists(fatbin):
        raise SystemExit(f"tools/sass_loops.py: {shown(fatbin)} does not exist: run make kernels")
    if os.path.isdir(fatbin):
        raise SystemExit(f"tools/sass_loops.py: {shown(fatbin)} is a folder, not a fatbin")
    if not os.path.isfile(fatbin):
        raise SystemExit(f"tools/sass_loops.py: {shown(fatbin)}: {NOT_REGULAR}")
    tool = cuobjdump()
    # cuobjdump runs nvdisasm, which the wheels install beside it
    path = os.pathsep.join((os.path.dirname(tool), os.environ.get("PATH", "")))
    dumped = subprocess.run([tool, "-sass", "-arch", arch, fatbin], capture_output=True,
                            text=True, env=dict(os.environ, PATH=path))
    if dumped.returncode != 0 or "Function :" not in dumped.stdout:
        raise SystemExit(f"tools/sass_loops.py: no {arch} code in {shown(fatbin)} "
                         f"({dumped.stderr.strip() or 'cuobjdump listed no function'})")
    return dumped.stdout


def functions(sass):
    """{kernel: [(address, instruction)]} of cuobjdump -sass output, each kernel by its
    demangled name, as the manifest lists it ('conv_forward<float>'; the mangled name where
    build.demangle gives none)."""
    found = {}
    for block in re.split(r"\n\s*Function : ", sass)[1:]:
        mangled = block.split("\n", 1)[0].strip()
        found[build.demangle(mangled) or mangled] = [(int(address, 16), text) for address, text in INSTRUCTION.findall(block)]
    return found


def opcode(instruction):
    """'@!P0 LDG.E.128.CONSTANT R8, …' → 'LDG.128': the operation, its width where it has one,
    without the predicate and the other modifiers."""
    words = re.sub(r"^@!?U?P\w+\s+", "", instruction).split()
    parts = words[0].split(".")
    return parts[0] + (".128" if "128" in parts[1:] else ".64" if "64" in parts[1:] else "")


def loops(instructions):
    """[(start, end)] address spans of the loops, outermost first where they nest."""
    addresses = {address for address, _ in instructions}
    spans = set()
    for address, text in instructions:
        target = BRANCH_TARGET.search(text)
        if target and int(target.group(1), 16) <= address and int(target.group(1), 16) in addresses:
            spans.add((int(target.group(1), 16), address))
    return sorted(spans, key=lambda span: (span[0], -span[1]))


def loop_mix(instructions, span, inner):
    """Counter of the opcodes in `span` outside the spans of `inner` (its nested loops)."""
    start, end = span
    return collections.Counter(
        opcode(text) for address, text in instructions
        if start <= address <= end and not any(s <= address <= e for s, e in inner))


def report(code, kernels=None, min_ffma=1):
    """Lines describing each loop (with at least min_ffma FFMA, itself or nested) of each
    kernel of `code` (functions') or of `kernels`: own instructions, FFMA share, memory and
    barrier instructions."""
    lines = []
    for name, instructions in code.items():
        if kernels and name not in kernels:
            continue
        spans = loops(instructions)
        header = False
        for span in spans:
            within = [s for s in spans if s != span and span[0] <= s[0] and s[1] <= span[1]]
            nested = [s for s in within
                      if not any(o != s and o[0] <= s[0] and s[1] <= o[1] for o in within)]
            mix = loop_mix(instructions, span, nested)
            total_ffma = mix["FFMA"] + sum(loop_mix(instructions, s, []).get("FFMA", 0)
                                            for s in nested)
            if total_ffma < min_ffma:
                continue
            if not header:
                lines.append(name)
                header = True
            depth = sum(1 for s in spans if s != span and s[0] <= span[0] and span[1] <= s[1])
            count = sum(mix.values())
            memory = ", ".join(f"{op} {mix[op]}" for op in sorted(mix)
                               if op.split(".")[0] in ("LDG", "LDS", "STS", "STG", "BAR", "LDC"))
            lines.append(f"{'  ' * (depth + 1)}loop {span[0]:#x}-{span[1]:#x}: {count} "
                         f"instructions, FFMA {mix['FFMA']} ({100 * mix['FFMA'] / count:.0f}%)"
                         f"{'; ' + memory if memory else ''}")
    return lines


def main(argv=None):
    parser = options.Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="sm_90")
    parser.add_argument("--kernel", action="append",
                        help="a kernel as 'conv_forward<float>' (repeatable; default: every one)")
    parser.add_argument("--min-ffma", type=int, default=1,
                        help="list loops with at least this many FFMA, nested ones included "
                             "(default 1; 0 lists every loop)")
    parser.add_argument("--fatbin", default=os.path.join(build.DEFAULT_OUTPUT, build.FATBIN))
    args = parser.parse_args(argv)
    code = functions(disassemble(args.fatbin, args.arch))
    for kernel in args.kernel or ():   # a misspelt name would list nothing, and pass
        if kernel not in code:
            parser.error(f"--kernel {shown(kernel)}: no such kernel in the {args.arch} code of "
                         f"{shown(args.fatbin)} (names as 'conv_forward<float>': "
                         f"kernels/build/manifest.json lists them)")
    print("\n".join(report(code, args.kernel, args.min_ffma)))


if __name__ == "__main__":
    sys.exit(run_command(main))
