"""`make kernels`: nvcc builds every kernel of the sources for every target it supports, the
ptxas report parses, no float kernel spills; the names the CUDA backend looks up all resolve.
NVRTC, the backend's way where the fatbin cannot serve, compiles the same sources too."""
import ctypes
import glob
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from convnet.backend.cuda.conv import SIDES
from convnet.backend.cuda.launch import build
from convnet.errors import NOT_REGULAR

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import sass_loops  # noqa: E402


def test_demangle_reads_the_kernels_names():
    assert build.demangle("_Z12conv_forwardIfEvPKT_S2_PS0_iiiiiiiiii") == "conv_forward<float>"
    assert build.demangle("_Z5scaleIdEvPKT_S0_PS0_j") == "scale<double>"
    assert build.demangle("__internal_accurate_pow") is None


def test_ptxas_report_attributes_callee_spills_to_their_kernel():
    text = """ptxas info    : Compiling entry function '_Z5scaleIfEvPKT_S0_PS0_j' for 'sm_90'
ptxas info    : Function properties for _Z5scaleIfEvPKT_S0_PS0_j
    8 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 31 registers, used 1 barriers, 1024 bytes smem, 8 bytes cumulative stack size
ptxas info    : Function properties for __internal_accurate_pow
    0 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads
"""
    (record,) = build.parse_ptxas(text)
    assert (record["kernel"], record["arch"], record["registers"], record["shared_bytes"]) == \
        ("scale<float>", "sm_90", 31, 1024)
    assert build.spills(record) == 12


# cuobjdump -sass as it lists two kernels: scale<float> with a loop nested in another, a loop
# with no FFMA and the self-branch that ends every function; scale<double>, past 64 KiB, with
# three loops from one address, each nested in the next.
SASS = """
\tcode for sm_90
\t\tFunction : _Z5scaleIfEvPKT_S0_PS0_j
\t.headerflags\t@"EF_CUDA_SM90 EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)"
        /*0000*/                   MOV R1, c[0x0][0x28] ;          /* 0x00000a00ff017624 */
        /*0010*/             @!P3 LDG.E.128.CONSTANT R8, [R2.64] ;  /* 0x000000040208a981 */
        /*0020*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;   /* 0x0000000000007b1d */
        /*0030*/                   LDS.64 R4, [R3] ;               /* 0x0000000003047984 */
        /*0040*/                   FFMA R5, R4, R8, R5 ;           /* 0x0000000804057223 */
        /*0050*/                   FFMA R6, R4, R9, R6 ;           /* 0x0000000904067223 */
        /*0060*/              @P0 BRA 0x30 ;                       /* 0xfffffffc00000947 */
        /*0070*/                   FFMA R7, R8, R9, R7 ;           /* 0x0000000908077223 */
        /*0080*/                   IADD3 R2, R2, 0x4, RZ ;         /* 0x0000000402027810 */
        /*0090*/                   ISETP.NE.AND P1, PT, R2, R10, PT ;  /* 0x0000000a0200720c */
        /*00a0*/             @!P1 BRA 0x10 ;                       /* 0xfffffff000009947 */
        /*00b0*/                   IADD3 R11, R11, 0x1, RZ ;       /* 0x000000010b0b7810 */
        /*00c0*/              @P2 BRA 0xb0 ;                       /* 0xfffffffc00002947 */
        /*00d0*/                   STG.E [R12.64], R5 ;            /* 0x000000050c007986 */
        /*00e0*/                   EXIT ;                          /* 0x000000000000794d */
        /*00f0*/                   BRA 0xf0;                       /* 0xfffffff000007947 */
\t\t..........

\t\tFunction : _Z5scaleIdEvPKT_S0_PS0_j
        /*fff0*/                   DFMA R4, R2, R2, R4 ;           /* 0x000000020204722b */
        /*10000*/                  FFMA R6, R2, R2, R6 ;           /* 0x0000000202067223 */
        /*10010*/             @P0 BRA 0xfff0 ;                     /* 0xfffffffc00000947 */
        /*10020*/             @P1 BRA 0xfff0 ;                     /* 0xfffffffc00001947 */
        /*10030*/             @P2 BRA 0xfff0 ;                     /* 0xfffffffc00002947 */
        /*10040*/                  EXIT ;                          /* 0x000000000000794d */
"""
CODE = sass_loops.functions(SASS)


def test_sass_loops_names_a_fatbin_that_is_missing_or_a_folder(tmp_path):
    with pytest.raises(SystemExit, match="does not exist: run make kernels"):
        sass_loops.disassemble(str(tmp_path / "none.fatbin"), "sm_90")
    with pytest.raises(SystemExit, match=f"{tmp_path} is a folder, not a fatbin"):
        sass_loops.disassemble(str(tmp_path), "sm_90")
    # A device was called a folder.
    with pytest.raises(SystemExit) as refused:
        sass_loops.disassemble(os.devnull, "sm_90")
    assert str(refused.value) == f"tools/sass_loops.py: {os.devnull}: {NOT_REGULAR}"


def test_sass_loops_refuses_a_kernel_the_fatbin_does_not_hold(monkeypatch, capsys):
    """A misspelt --kernel listed nothing and exited 0, as a kernel without loops would."""
    monkeypatch.setattr(sass_loops, "disassemble", lambda fatbin, arch: SASS)
    with pytest.raises(SystemExit) as refused:
        sass_loops.main(["--kernel", "scale<float>", "--kernel", "scale<flaot>"])
    assert refused.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.endswith("error: --kernel scale<flaot>: no such kernel in the sm_90 code "
                                 f"of {sass_loops.build.DEFAULT_OUTPUT}/{sass_loops.build.FATBIN} "
                                 "(names as 'conv_forward<float>': kernels/build/manifest.json "
                                 "lists them) (see --help)\n")
    sass_loops.main(["--kernel", "scale<float>", "--min-ffma", "3"])
    assert capsys.readouterr().out == "scale<float>\n  loop 0x10-0xa0: 6 instructions, FFMA 1 " \
        "(17%); BAR 1, LDG.128 1\n"


def test_sass_loops_lists_each_loops_own_instructions_under_its_kernel():
    """tools/sass_loops.py on a listing of known loops: each loop's own instructions (its nested
    loops' left to them, listed under it, outermost first), the FFMA share, the memory
    instructions by width, predicates and modifiers stripped; loops whose FFMA, nested ones'
    counted once, are fewer than min_ffma left out; only the kernels asked for."""
    outer = "  loop 0x10-0xa0: 6 instructions, FFMA 1 (17%); BAR 1, LDG.128 1"
    inner = "    loop 0x30-0x60: 4 instructions, FFMA 2 (50%); LDS.64 1"
    assert sass_loops.report(CODE, ["scale<float>"]) == ["scale<float>", outer, inner]
    assert sass_loops.report(CODE, ["scale<float>"], min_ffma=3) == ["scale<float>", outer]
    assert sass_loops.report(CODE, ["scale<float>"], min_ffma=0) == [
        "scale<float>", outer, inner, "  loop 0xb0-0xc0: 2 instructions, FFMA 0 (0%)",
        "  loop 0xf0-0xf0: 1 instructions, FFMA 0 (0%)"]
    assert sass_loops.report(CODE) == [
        "scale<float>", outer, inner, "scale<double>",
        "  loop 0xfff0-0x10030: 1 instructions, FFMA 0 (0%)",
        "    loop 0xfff0-0x10020: 1 instructions, FFMA 0 (0%)",
        "      loop 0xfff0-0x10010: 3 instructions, FFMA 1 (33%)"]
    assert sass_loops.report(CODE, ["scale<double>"], min_ffma=2) == []


def test_the_kernels_are_listed_where_the_locale_is_not_utf8(not_utf8):
    """NVRTC's list of kernels (the backend's way without a fatbin) and make kernels' read the
    sources, whose comments hold UTF-8 (×), whatever the user's locale."""
    listed = subprocess.run(
        [sys.executable, "-c", "from convnet.backend.cuda.launch import build; "
         "print(*build.kernel_instances())"], capture_output=True, env=not_utf8, timeout=60)
    assert listed.returncode == 0, listed.stderr.decode(errors="replace")
    assert listed.stdout.decode().split() == build.kernel_instances()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(folder, manifest) of one nvcc build of every kernel, shared by the tests that read it."""
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not on PATH")
    folder = tmp_path_factory.mktemp("kernels")
    return folder, build.build(str(folder))


def test_nvcc_builds_every_kernel_without_float_spills(built):
    tmp_path, manifest = built
    expected = set(build.kernel_instances())
    assert set(manifest["mangled_names"]) == expected
    assert manifest["archs"] and manifest["source_hash"] == build.source_hash()
    assert set(manifest["archs"]) | set(manifest["skipped"]) == \
        {f"sm_{arch}" for arch in build.TARGET_ARCHS}
    with open(tmp_path / build.MANIFEST) as file:
        assert json.load(file) == manifest
    report = (tmp_path / build.REPORT).read_text()
    for name in expected:
        assert name in report
    assert os.path.getsize(tmp_path / build.FATBIN) > 0
    umask = os.umask(0)
    os.umask(umask)
    for name in (build.MANIFEST, build.REPORT, build.FATBIN):   # not mkstemp's 0600
        assert os.stat(tmp_path / name).st_mode & 0o777 == 0o666 & ~umask, name


def test_a_build_of_unchanged_sources_builds_nothing(built, capsys, tmp_path):
    """make kernels, or make gpu-check's second call on a warm machine, after a build of the
    same sources by the same nvcc and options: the fatbin stays; another source or option is
    a new build."""
    folder, manifest = built
    before = os.path.getmtime(folder / build.FATBIN)
    assert build.build(str(folder)) == manifest
    assert "is up to date" in capsys.readouterr().out
    assert os.path.getmtime(folder / build.FATBIN) == before
    version, archs = manifest["nvcc"], [int(arch[3:]) for arch in manifest["archs"]]
    assert build.up_to_date(str(folder), version, archs) == manifest
    for key, other in (("source_hash", "0" * 64), ("options", ["-O0"])):
        changed = tmp_path / key
        shutil.copytree(folder, changed)
        (changed / build.MANIFEST).write_text(json.dumps(dict(manifest, **{key: other})))
        assert build.up_to_date(str(changed), version, archs) is None, key
    assert build.up_to_date(str(folder), "nvcc 99.0", archs) is None
    assert build.up_to_date(str(folder), version, archs + [100]) is None   # a target added
    no_report = tmp_path / "no-report"
    shutil.copytree(folder, no_report)
    os.remove(no_report / build.REPORT)
    assert build.up_to_date(str(no_report), version, archs) is None


def test_each_conv_product_loop_holds_one_load_path(built):
    """conv.cu's with_plan: the 16-byte loads and the scalar ones are in loops of their own, for
    every tile, so the fast loop carries nothing of the other (tools/sass_loops.py, from the
    SASS of the newest architecture built); Winograd's products alike."""
    folder, manifest = built
    code = sass_loops.functions(sass_loops.disassemble(str(folder / build.FATBIN),
                                                       manifest["archs"][-1]))
    for kernel in ("conv_forward<float>", "conv_backward_input<float>",
                   "conv_backward_filters<float>", "winograd_product<float>",
                   "winograd_filter_product<float>"):
        lines = [line for line in sass_loops.report(code, [kernel], min_ffma=1)[1:]
                 if "LDG" in line]   # the product loops: those that load the next step
        vector = [line for line in lines if "LDG.128" in line]
        scalar = [line for line in lines if re.search(r"LDG \d", line)]
        assert len(vector) == len(scalar) == len(SIDES), (kernel, lines)
        assert not set(vector) & set(scalar), (kernel, lines)


def test_the_fatbins_float_arithmetic_flushes_denormals_as_nvrtcs(built):
    """CuPy compiles NVRTC code with -ftz=true whatever it is given; the fatbin's float
    arithmetic flushes denormals too (NVCC_OPTIONS), so both GPU paths compute the same bits.
    Its PTX is for the lowest architecture built, as the manifest says."""
    folder, manifest = built
    ptx = subprocess.run([sass_loops.cuobjdump(), "-ptx", str(folder / build.FATBIN)],
                         capture_output=True, text=True, check=True).stdout
    assert re.findall(r"^\.target (sm_\d+)", ptx, re.MULTILINE) == \
        [manifest["ptx"].replace("compute_", "sm_")]
    operations = re.findall(r"\b(?:add|sub|mul|fma|div)(?:\.\w+)*\.f32\b", ptx)
    assert operations and all(".ftz." in operation for operation in operations), \
        sorted(set(operations))


def test_the_fatbins_ptx_assembles_for_newer_gpus_without_float_spills(built, tmp_path):
    """A GPU of a major architecture newer than any the fatbin holds machine code for (Blackwell:
    sm_100, sm_120) runs its PTX, which the driver compiles as the kernels load: ptxas, doing
    what the driver's compiler would, assembles it for the first of each such architecture it
    knows, every kernel, with no float kernel spilling there."""
    folder, manifest = built
    newest = max(int(arch[3:]) for arch in manifest["archs"]) // 10
    known = build.supported_archs("nvcc")
    targets = sorted(min(arch for arch in known if arch // 10 == major)
                     for major in {arch // 10 for arch in known if arch // 10 > newest})
    if not targets or shutil.which("ptxas") is None:
        pytest.skip(f"nvcc's ptxas knows no architecture newer than sm_{newest}x")
    dump = subprocess.run([sass_loops.cuobjdump(), "-ptx", str(folder / build.FATBIN)],
                          capture_output=True, text=True, check=True).stdout
    ptx = tmp_path / "kernels.ptx"
    ptx.write_text(dump[dump.index(".version"):])
    runs = [subprocess.Popen(["ptxas", "-v", f"-arch=sm_{arch}", str(ptx), "-o", os.devnull],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for arch in targets]
    for arch, run in zip(targets, runs):
        report = run.communicate()[0]
        assert run.returncode == 0, report
        records = [record for record in build.parse_ptxas(report) if record["kernel"]]
        assert sorted(record["kernel"] for record in records) == \
            sorted(build.kernel_instances()), arch
        assert not [record["kernel"] for record in records
                    if record["kernel"].endswith("<float>") and build.spills(record)], arch


def test_nvrtc_options_change_with_every_kernel_source(tmp_path, monkeypatch):
    """CuPy caches NVRTC's kernels by all.cu's text and the options; all.cu only includes the
    other sources, so an edit of one of them must change the options, or the cache would serve
    kernels of the old sources."""
    copy = tmp_path / "kernels"
    shutil.copytree(build.KERNELS, copy, ignore=shutil.ignore_patterns("build", "__pycache__"))
    monkeypatch.setattr(build, "KERNELS", str(copy))
    before = build.nvrtc_options()
    assert f"-I{copy}" in before
    with open(copy / "common.cuh", "a") as file:
        file.write("// an edit\n")
    assert build.nvrtc_options() != before


def nvrtc_library(major):
    """libnvrtc of CUDA `major` from its nvidia-cuda-nvrtc wheel (the test extra has CUDA 13's
    and 12's), with its builtins library loaded first: NVRTC opens that by name, which finds it
    loaded where no search path would."""
    spec = importlib.util.find_spec("nvidia")
    found = [path for folder in (spec.submodule_search_locations if spec else ())
             for path in glob.glob(os.path.join(folder, "*", "lib", f"libnvrtc.so.{major}"))]
    if not found:
        pytest.skip(f"CUDA {major}'s NVRTC is not installed: pip install -e '.[test]'")
    library = os.path.dirname(found[0])
    for builtins in glob.glob(os.path.join(library, f"libnvrtc-builtins.so.{major}.*")):
        ctypes.CDLL(builtins, mode=ctypes.RTLD_GLOBAL)
    return ctypes.CDLL(found[0])


# NVRTC's own note on the oldest architecture it still compiles for, not about the sources.
DEPRECATED_ARCHITECTURE = "nvrtc: warning: Architectures prior to '<compute/sm>_75' are deprecated"


# What CuPy 14 adds to a RawModule's options when it compiles through NVRTC (cupy/cuda/
# compiler.py): flushing float32 denormals, unannotated code as device code (without which CUDA
# 12's NVRTC takes the lambdas the convolutions define for host code, and refuses them), and the
# GPU's architecture (added in the test).
CUPY_NVRTC_OPTIONS = ["-ftz=true", "--device-as-default-execution-space"]


@pytest.mark.parametrize("major, arch", [(13, 90), (12, 70), (12, 90)])
def test_nvrtc_compiles_every_kernel_as_the_backend_asks(major, arch):
    """The source, options and name expressions of the backend's NVRTC path (launch.py), plus
    what CuPy adds, through the NVRTC of CuPy's CUDA 13 build and of its CUDA 12 build (which CUDA
    12 drivers and Volta GPUs take: their only path to the kernels): it compiles without a
    warning, and every expression lowers to the kernel nvcc's fatbin holds under that name."""
    nvrtc = nvrtc_library(major)
    with open(build.SOURCE, "rb") as file:
        source = file.read()
    program = ctypes.c_void_p()
    assert nvrtc.nvrtcCreateProgram(ctypes.byref(program), source, b"all.cu", 0, None,
                                    None) == 0
    expressions = build.kernel_instances()
    for expression in expressions:
        assert nvrtc.nvrtcAddNameExpression(program, expression.encode()) == 0
    options = [*build.nvrtc_options(), *CUPY_NVRTC_OPTIONS, f"-arch=sm_{arch}"]
    compiled = nvrtc.nvrtcCompileProgram(
        program, len(options), (ctypes.c_char_p * len(options))(*map(str.encode, options)))
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(program, log)
    said = [line for line in log.value.decode().splitlines()
            if line.strip() and not line.startswith(DEPRECATED_ARCHITECTURE)]
    assert compiled == 0 and not said, log.value.decode()
    lowered = {}
    for expression in expressions:
        name = ctypes.c_char_p()
        assert nvrtc.nvrtcGetLoweredName(program, expression.encode(), ctypes.byref(name)) == 0
        lowered[expression] = name.value.decode()
    nvrtc.nvrtcDestroyProgram(ctypes.byref(program))
    assert {expression: build.demangle(name) for expression, name in lowered.items()} == \
        {expression: expression for expression in expressions}
