"""tools/mutants.py: its catalogue follows the sources (each mutant's text is in its file exactly
once, so no entry goes stale unseen), and the tool tells a killed mutant from a surviving one
in a copy of the checkout, leaving the checkout alone."""
import contextlib
import json
import os
import re
import signal
import sys
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import mutants  # noqa: E402


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
        return handle.read()


@pytest.mark.parametrize("mutant", mutants.CATALOGUE, ids=lambda mutant: mutant.name)
def test_each_mutant_changes_one_place_of_its_file(mutant):
    assert read(mutant.path).count(mutant.old) == 1
    assert mutant.new != mutant.old
    assert mutant.tests and all(os.path.isfile(os.path.join(ROOT, test)) for test in mutant.tests)


def test_mutant_names_are_unique():
    names = [mutant.name for mutant in mutants.CATALOGUE]
    assert len(names) == len(set(names))


@pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, ".git")),
                    reason="the tool copies a git checkout's files, and this tree is none (the "
                           "tool's own copy, which runs this file for the tool's own mutants)")
def test_each_mutant_is_run_on_its_own_build_and_the_checkout_is_left_alone():
    """Two mutants of the augmenter in a row, each killed by its own test (a module built in
    the same second as its source was once taken for up to date, and the second mutant ran on
    the first one's build); then the loader's tests pass on the rebuilt augmenter; a mutant the
    tests notice, one they cannot, one whose text is gone."""
    catalogue = {mutant.name: mutant for mutant in mutants.CATALOGUE}
    shapes, loader = "convnet/shapes.py", "convnet/data/loader.py"
    untouched = {path: read(path) for path in (shapes, loader, catalogue["au-order"].path)}
    cases = [
        catalogue["au-order"], catalogue["au-bounds"],
        mutants.Mutant("loader-docstring", loader, "The data loader:", "The loader:",
                       ("tests/test_loader.py",)),
        mutants.Mutant("floor-rule", shapes,
                       "return 1 + ceil_div(2 * pad + size - filter_size, stride)",
                       "return 1 + (2 * pad + size - filter_size) // stride",
                       ("tests/test_shapes.py",)),
        mutants.Mutant("docstring", shapes, "Output-size rules of cuda-convnet",
                       "Output-size rules", ("tests/test_shapes.py",)),
        mutants.Mutant("stale", shapes, "a line that is not there", "x", ("tests/test_shapes.py",))]
    records = mutants.run(cases, seed=0, report=lambda line: None)
    assert [(r["name"], r["result"], r["by"]) for r in records] == [
        ("au-order", "killed",
         "tests/test_loader.py::test_augmenter_equals_numpy_float32_exactly[1.0]"),
        ("au-bounds", "killed", "tests/test_loader.py::test_augmenter_refuses_bad_arguments"),
        ("loader-docstring", "survived", None),
        ("floor-rule", "killed", "tests/test_shapes.py::test_alexnet_sizes_follow_cuda_convnet"),
        ("docstring", "survived", None),
        ("stale", "error", f"its text occurs 0 times in {shapes}")]
    assert {path: read(path) for path in untouched} == untouched


def test_a_mutant_rebuilds_the_modules_its_file_goes_into_and_its_tests_load():
    """setup.py's modules by their sources: a kernel goes into both emulator builds, the
    AddressSanitizer one loaded only by its own tests or an environment asking for it."""
    sources = mutants.extension_sources(ROOT)
    plain, asan, augmenter = "convnet._emulator", "convnet._emulator_asan", "convnet._augment"
    assert set(sources) == {plain, asan, augmenter}

    def modules(path, tests, **env):
        return mutants.modules_built_from(mutants.Mutant("any", path, "a", "b", tests),
                                          sources, env)
    assert modules("kernels/pool.cu", ("tests/test_kernels.py",)) == {plain}
    assert modules("kernels/emulate.h", ("tests/test_kernels.py", mutants.ASAN_TESTS)) == \
        {plain, asan}
    assert modules("kernels/common.cuh", ("tests/test_kernels.py",), CONVNET_EMULATOR="asan") \
        == {plain, asan}
    assert modules("kernels/augment.cpp", ("tests/test_loader.py",)) == {augmenter}
    assert modules("convnet/shapes.py", ("tests/test_shapes.py",)) == set()
    # Only the tests the tool names load the AddressSanitizer build.
    loading = sorted(f"tests/{name}" for name in os.listdir(os.path.join(ROOT, "tests"))
                     if name.endswith(".py") and name != "test_mutants.py"
                     and "asan" in read(f"tests/{name}"))
    assert loading == [mutants.ASAN_TESTS]


def test_tests_that_fail_without_a_mutant_stop_the_tool(tmp_path):
    """A test that fails on the unmutated copy would 'kill' every mutant naming its file."""
    (tmp_path / "test_broken.py").write_text("def test_passes():\n    pass\n\n\n"
                                               "def test_fails():\n    assert False\n")
    case = mutants.Mutant("any", "x.py", "a", "b", ("test_broken.py",))
    with pytest.raises(RuntimeError, match=r"without any mutant, the tests fail in the copy "
                                           r"\(exit status 1: test_broken.py::test_fails\)"):
        mutants.check_baseline(tmp_path, [case], mutants.environment_of_tests(tmp_path, 0, None))


def test_a_ctrl_c_ends_the_tests_running_in_the_copy(tmp_path):
    """The tests run in a session of their own, which a terminal's Ctrl-C does not reach: they
    kept running (mpiexec and training runs among them) in the copy the tool then removed."""
    started = tmp_path / "pid"
    (tmp_path / "test_slow.py").write_text(
        f"import os, time\n\n\ndef test_slow():\n"
        f"    open({str(started)!r}, 'w').write(str(os.getpid()))\n    time.sleep(60)\n")

    def ctrl_c():
        while not started.exists() or not started.read_text():
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)
    # Python's own Ctrl-C handler, whatever this run inherited: a shell's background job
    # starts with SIGINT ignored, which would leave the interrupt unfelt.
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=ctrl_c, daemon=True).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            mutants.run_tests(tmp_path, ["test_slow.py"],
                              mutants.environment_of_tests(tmp_path, 0, None), 50,
                              first_failure_only=True)
        with pytest.raises(ProcessLookupError):
            os.kill(int(started.read_text()), 0)
    finally:
        signal.signal(signal.SIGINT, handler)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(started.read_text()), signal.SIGKILL)


def test_a_ctrl_c_is_one_line_and_exit_130(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(mutants, "run", interrupted)
    report = tmp_path / "mutants.json"
    try:
        status = mutants.main(["--only", mutants.CATALOGUE[0].name, "--json", str(report)])
    except KeyboardInterrupt:   # a failure, not the end of this test run
        pytest.fail("the Ctrl-C came out of main(), a traceback")
    assert status == 130
    assert capsys.readouterr().err == (f"interrupted: the checkout is as it was (the mutants ran "
                                       f"in a copy), and so is {report}\n")
    assert not report.exists()


def test_readme_gives_the_last_runs_figures():
    """README's figures for the last run of the catalogue are its committed report's."""
    report = json.loads(read("bench/results/mutants.json"))
    assert report["survived"] == report["error"] == 0   # README says all were killed
    minutes = round(sum(mutant["seconds"] for mutant in report["mutants"]) / 60)
    sentence = (f"Its last full run, at commit `{report['commit'][:7]}`, killed all "
                f"{report['killed']} mistakes the catalogue then held, in {minutes} minutes")
    assert sentence in " ".join(read("README.md").split())


@pytest.mark.parametrize("document", ["README.md", "docs/mutation-testing.md"])
def test_the_documents_count_the_catalogue_as_it_is(document):
    """The last count README and the catalogue's record give ("N entries in all") is the
    catalogue's."""
    counts = re.findall(r"(\d+)\s+entries\s+in all", read(document))
    assert counts and int(counts[-1]) == len(mutants.CATALOGUE)


@pytest.mark.parametrize("results, status", [(("killed", "killed"), 0),
                                             (("survived", "killed"), 1),
                                             (("killed", "error"), 1)])
def test_the_tool_fails_unless_every_mutant_is_killed(results, status, tmp_path, monkeypatch):
    """Exit status 1 where a mutant survived or could not be run; the report counts each result,
    of the mutants --only names, run with the seed asked for."""
    chosen = [mutant.name for mutant in mutants.CATALOGUE[-2:]]
    ran = []

    def run(catalogue, seed, commit):
        ran.append(([mutant.name for mutant in catalogue], seed))
        return [{"name": mutant.name, "result": result}
                for mutant, result in zip(catalogue, results)]
    monkeypatch.setattr(mutants, "run", run)
    report = tmp_path / "mutants.json"
    assert mutants.main(["--only", *chosen, "--seed", "7", "--json", str(report)]) == status
    assert ran == [(chosen, 7)]
    counts = json.loads(report.read_text())
    assert [counts[result] for result in ("killed", "survived", "error")] == \
        [results.count(result) for result in ("killed", "survived", "error")]
    assert counts["seed"] == 7 and len(counts["mutants"]) == 2


def test_killers_first_starts_each_mutants_tests_with_the_file_that_killed_it(tmp_path):
    """The same files, the killer's first; a mutant no report shows killed by a test of its own
    files keeps its order; of two reports, the later one named counts."""
    mutant = mutants.Mutant("m", "convnet/x.py", "a", "b", ("tests/a.py", "tests/b.py",
                                                             "tests/c.py"))
    others = [mutant._replace(name=name) for name in ("survivor", "crashed", "elsewhere", "new")]

    def report(killer):
        return {"mutants": [
            {"name": "m", "result": "killed", "by": f"{killer}::test_one[case]"},
            {"name": "survivor", "result": "survived", "by": None},
            {"name": "crashed", "result": "killed", "by": "exit status -11"},
            {"name": "elsewhere", "result": "killed", "by": "tests/z.py::test_z"}]}
    reordered = mutants.killers_first([mutant, *others], [report("tests/b.py")])
    assert reordered[0].tests == ("tests/b.py", "tests/a.py", "tests/c.py")
    assert reordered[1:] == others
    later = mutants.killers_first([mutant], [report("tests/b.py"), report("tests/c.py")])
    assert later[0].tests == ("tests/c.py", "tests/a.py", "tests/b.py")


@pytest.mark.parametrize("text, complaint", [
    (None, "No such file or directory"),
    ("{", "not a report of this tool"),
    ('{"mutants": [{"name": "m"}]}', "lacks its name, result or by")])
def test_a_report_that_cannot_order_the_tests_is_one_line_and_exit_2(text, complaint, tmp_path,
                                                                     capsys):
    path = tmp_path / "earlier.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(SystemExit) as refused:
        mutants.main(["--only", mutants.CATALOGUE[0].name, "--killers-first", str(path)])
    assert refused.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and f"--killers-first {path}: " in error and complaint in error
