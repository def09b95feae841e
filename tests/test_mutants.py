"""tools/mutants.py: its catalogue follows the sources (each mutant's text is in its file exactly
once, so no entry goes stale unseen), and the tool tells a killed mutant from a surviving one
in a copy of the checkout, leaving the checkout alone."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import mutants  # noqa: E402


@pytest.mark.parametrize("mutant", mutants.CATALOGUE, ids=lambda mutant: mutant.name)
def test_each_mutant_changes_one_place_of_its_file(mutant):
    with open(os.path.join(ROOT, mutant.path)) as handle:
        assert handle.read().count(mutant.old) == 1
    assert mutant.new != mutant.old
    assert mutant.tests and all(os.path.isfile(os.path.join(ROOT, test)) for test in mutant.tests)


def test_mutant_names_are_unique():
    names = [mutant.name for mutant in mutants.CATALOGUE]
    assert len(names) == len(set(names))


def test_a_mutant_the_tests_notice_is_killed_and_one_they_cannot_survives():
    shapes = "convnet/shapes.py"
    with open(os.path.join(ROOT, shapes)) as handle:
        before = handle.read()
    cases = [
        mutants.Mutant("floor-rule", shapes,
                       "return 1 + _ceil_div(2 * pad + size - filter_size, stride)",
                       "return 1 + (2 * pad + size - filter_size) // stride",
                       ("tests/test_shapes.py",)),
        mutants.Mutant("docstring", shapes, "Output-size rules of cuda-convnet",
                       "Output-size rules", ("tests/test_shapes.py",)),
        mutants.Mutant("stale", shapes, "a line that is not there", "x", ("tests/test_shapes.py",))]
    records = mutants.run(cases, seed=0, report=lambda line: None)
    assert [(r["name"], r["result"]) for r in records] == [
        ("floor-rule", "killed"), ("docstring", "survived"), ("stale", "error")]
    assert records[0]["by"] == "tests/test_shapes.py::test_alexnet_sizes_follow_cuda_convnet"
    assert records[2]["by"] == f"its text occurs 0 times in {shapes}"
    with open(os.path.join(ROOT, shapes)) as handle:
        assert handle.read() == before
