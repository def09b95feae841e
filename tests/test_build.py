"""`make kernels`: nvcc builds every kernel of the sources for every target it supports, the
ptxas report parses, no float kernel spills; the names the CUDA backend looks up all resolve."""
import json
import os
import shutil

import pytest

from convnet.backend.cuda.launch import build


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


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
def test_nvcc_builds_every_kernel_without_float_spills(tmp_path):
    manifest = build.build(str(tmp_path))
    expected = {f"{name}<{t}>" for name in build.kernel_names() for t in ("float", "double")}
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
