"""The kernels under AddressSanitizer. The plain emulator runs a kernel on the arrays it is given
and checks no bounds: a read one element past an array's end that changes no result (such as a
vector load's spare lanes) goes unseen, and a write there may corrupt a neighbour silently. The
emulator's AddressSanitizer build (convnet._emulator_asan, kernels/emulator.cpp) gives every
kernel copies of its arrays that end where they end, and guards the __shared__ arrays and the
local ones, so such an access ends the process with a report naming the kernel's source line;
so does a 16-byte vector access at an address not a multiple of 16, on which a GPU faults.
Here the kernel tests run again on that build, and planted faults of each kind show that it is
caught."""
import ctypes
import importlib.util
import os
import re
import subprocess
import sys
import textwrap

import pytest

from convnet.backend.cuda import launch
from convnet.backend.cuda.launch import asan_environment, build, load_emulator
from targets import program_on_emulate_h

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
# Every kernel op by op, the networks on the kernels, and the two-device path (the network's own
# launches, views of its arrays among them).
KERNEL_TESTS = ["tests/test_kernels.py", "tests/test_kernels_network.py", "tests/test_placement.py"]


@pytest.fixture(scope="module")
def asan_env():
    """The environment of a Python on the AddressSanitizer emulator; the module must be built
    wherever the compiler has the sanitizers (its build is optional only for compilers without)."""
    variables = asan_environment()
    if variables is None:
        pytest.skip("gcc lacks a sanitizer runtime the emulator's AddressSanitizer build links "
                    "(libasan, libubsan), so that build is not made here")
    module = f"convnet.{build.EMULATOR_ASAN_MODULE}"
    # Found, not imported: importing it without the sanitizer's runtime would end this process.
    assert importlib.util.find_spec(module) is not None, \
        f"{module} was not built, though gcc has the sanitizer: see pip install's output"
    return dict(os.environ, **variables)


def run_python(env, code):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)


def source_line(name, statement):
    """'kernels/NAME:N', N the line of `statement` in that file (the report names it so)."""
    with open(os.path.join(ROOT, "kernels", name), encoding="utf-8") as file:
        lines = [n for n, line in enumerate(file, 1) if statement in line]
    assert len(lines) == 1, f"{statement!r} is not one line of {name}"
    return f"kernels/{name}:{lines[0]}"


def test_the_kernel_tests_pass_on_the_asan_emulator(asan_env, rng):
    seed = int(rng.integers(2 ** 32))
    completed = subprocess.run(
        # --capture=sys: the sanitizer's report goes to file descriptor 2, which pytest's
        # default capture would keep from the output of a process the report ends.
        [sys.executable, "-m", "pytest", "-v", "--capture=sys", "-p", "no:cacheprovider",
         "-m", "not gpu", *KERNEL_TESTS], capture_output=True, text=True, cwd=ROOT, timeout=900,
        env=dict(asan_env, CONVNET_TEST_SEED=str(seed)))
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-6000:]
    assert "CUDA kernels: emulator (AddressSanitizer) (fibers by " in output
    assert "AddressSanitizer:" not in completed.stderr
    passed = int(re.search(r"(\d+) passed", output).group(1))
    assert passed >= 100, output[-2000:]


# Each plants one fault in a launch made directly (no launcher checks what it is given): an input
# one element short of the count, the same as a view into a longer array, and twice the threads a
# kernel's __shared__ array holds. `correct` is the same launch done right.
PLANTED = {
    "past an array's end": ("heap-buffer-overflow", "elementwise.cu",
                            "out[i] = maximum(x[i], T(0));", """
        x = np.ones(9 if fault else 10, np.float32)
        out = np.empty(10, np.float32)
        emulator.launch("relu_forward<float>", (1, 1, 1), (256, 1, 1), (x, out, np.uint32(10)))
        """),
    "past a view's end": ("heap-buffer-overflow", "elementwise.cu",
                          "out[i] = maximum(x[i], T(0));", """
        longer = np.ones(20, np.float32)
        out = np.empty(10, np.float32)
        emulator.launch("relu_forward<float>", (1, 1, 1), (256, 1, 1),
                        (longer[:9] if fault else longer[:10], out, np.uint32(10)))
        """),
    "past a __shared__ array's end": ("global-buffer-overflow", "elementwise.cu",
                                      "partial[threadIdx.x] = sum;", """
        threads = 2 * 256 if fault else 256
        dy = np.ones(512, np.float32)
        out = np.empty(1, np.float32)
        emulator.launch("bias_backward<float>", (1, 1, 1), (threads, 1, 1),
                        (dy, out, np.uint32(512), np.uint32(512)))
        """),
}


@pytest.mark.parametrize("case", PLANTED)
def test_a_planted_out_of_bounds_access_is_reported_with_its_line(asan_env, case):
    kind, source, statement, launch_code = PLANTED[case]
    code = "import numpy as np\nfrom convnet.backend.cuda.launch import Emulated\n" \
           "emulator = Emulated().module\nfault = {}\n" + textwrap.dedent(launch_code) + \
           "print('launched')\n"
    correct = run_python(asan_env, code.format(False))
    assert correct.returncode == 0 and "launched" in correct.stdout, correct.stderr[-3000:]
    faulty = run_python(asan_env, code.format(True))
    assert faulty.returncode != 0 and "launched" not in faulty.stdout
    assert f"ERROR: AddressSanitizer: {kind}" in faulty.stderr, faulty.stderr[-3000:]
    assert f"SUMMARY: AddressSanitizer: {kind} {source_line(source, statement)}" in faulty.stderr


# A kernel's local array read one past its end, before or after a barrier, on emulate.h's fibers,
# by either of its switches: the sanitizer must know each fiber's stack, and its swapcontext hook
# would clear a fiber's stack guards at every switch (emulate.h keeps it from that), so a fault
# after a barrier would go unseen. At -O0 (the later -O counts), the frame a finished fiber leaves
# guarded reaches into the words the next block's start writes (emulate.h clears them).
LOCAL_ARRAY_PROGRAM = r"""
#include "emulate.h"
#include <cstdio>
#include <cstdlib>
volatile int last = 3;
int sink;
__attribute__((noinline)) void use(int* values) { sink += values[0]; }
void kernel(bool after_barrier) {
  int values[4] = {1, 2, 3, 4};
  use(values);
  if (after_barrier) __syncthreads();
  sink += values[last];
}
int main(int argc, char** argv) {
  const bool after_barrier = argv[1][0] == '1';
  if (argv[2][0] == '1') last = 4;   // the fault
  for (int launch = 0; launch < 3; ++launch)
    emu::Block::instance().run_grid(dim3(2), dim3(8), [=] { kernel(after_barrier); });
  std::puts("finished");
}
"""


@pytest.fixture(scope="module", params=[[], ["-O0"], ["-DCONVNET_EMULATOR_UCONTEXT"]],
                ids=["default switch", "default switch at -O0", "ucontext"])
def local_array_program(asan_env, tmp_path_factory, request):
    return program_on_emulate_h(tmp_path_factory.mktemp("fibers"), LOCAL_ARRAY_PROGRAM,
                                [*build.EMULATOR_ASAN_FLAGS, *request.param])


def run_without_and_with_the_fault(program, *args):
    """(correct, faulty): the completed runs of a planted-fault program, its last argument 0
    then 1."""
    return [subprocess.run([str(program), *map(str, args), str(fault)], capture_output=True,
                           text=True, timeout=60,
                           env=dict(os.environ, ASAN_OPTIONS=launch.ASAN_OPTIONS))
            for fault in (0, 1)]


@pytest.mark.parametrize("after_barrier", [False, True], ids=["before", "after"])
def test_a_local_array_overflow_is_reported_before_and_after_a_barrier(local_array_program,
                                                                       after_barrier):
    correct, faulty = run_without_and_with_the_fault(local_array_program, int(after_barrier))
    assert correct.returncode == 0 and "finished" in correct.stdout, correct.stderr[-3000:]
    assert faulty.returncode != 0 and "finished" not in faulty.stdout
    assert "ERROR: AddressSanitizer: stack-buffer-overflow" in faulty.stderr, faulty.stderr[-3000:]
    line = LOCAL_ARRAY_PROGRAM.splitlines().index("  sink += values[last];") + 1
    assert re.search(rf"SUMMARY: AddressSanitizer: stack-buffer-overflow \S*program\.cpp:{line} ",
                     faulty.stderr), faulty.stderr[-3000:]


# A 16-byte vector load (float4, as conv.cu's vector loops make) from an address that is not a
# multiple of 16: a GPU faults on it ("misaligned address"), where the host's loads may just
# read, so the AddressSanitizer build checks alignment too and ends the process at the first.
MISALIGNED_PROGRAM = r"""
#include "emulate.h"
#include <cstdio>
alignas(16) float values[8] = {1, 2, 3, 4, 5, 6, 7, 8};
volatile int first = 0;
float sink;
void kernel() {
  const float4 group = *reinterpret_cast<const float4*>(values + first);
  sink += group.x + group.w;
}
int main(int argc, char** argv) {
  if (argv[1][0] == '1') first = 1;   // the fault
  emu::Block::instance().run_grid(dim3(1), dim3(4), [] { kernel(); });
  std::puts("finished");
}
"""


def test_a_planted_misaligned_vector_load_is_reported_with_its_line(asan_env, tmp_path):
    program = program_on_emulate_h(tmp_path, MISALIGNED_PROGRAM, build.EMULATOR_ASAN_FLAGS)
    correct, faulty = run_without_and_with_the_fault(program)
    assert correct.returncode == 0 and "finished" in correct.stdout, correct.stderr[-3000:]
    assert faulty.returncode != 0 and "finished" not in faulty.stdout
    line = MISALIGNED_PROGRAM.splitlines().index(
        "  const float4 group = *reinterpret_cast<const float4*>(values + first);") + 1
    assert re.search(rf"program\.cpp:{line}:\d+: runtime error: .*misaligned address .*"
                     rf"requires 16 byte alignment", faulty.stderr), faulty.stderr[-3000:]


@pytest.mark.skipif(hasattr(ctypes.CDLL(None), "__asan_init"),
                    reason="this Python started with AddressSanitizer's runtime loaded")
def test_the_asan_emulator_without_its_runtime_is_one_clear_error(monkeypatch):
    with pytest.raises(RuntimeError, match=r"needs AddressSanitizer's runtime loaded first: run "
                                           r"Python with LD_PRELOAD="):
        load_emulator("asan")
    with pytest.raises(ValueError, match="the emulator's builds are '' .plain. and 'asan'"):
        load_emulator("msan")
    monkeypatch.setenv("CONVNET_EMULATOR", "asan")
    with pytest.raises(RuntimeError, match="runtime loaded first"):
        launch.Emulated()
