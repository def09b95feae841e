"""The commit that settings, checkpoints and benchmark reports record: git's HEAD, marked dirty
where tracked files changed; CONVNET_COMMIT in a copy of the tree without git; else unknown."""
import os
import subprocess

from convnet import provenance


def git(directory, *arguments):
    return subprocess.run(["git", "-c", "user.name=convnet", "-c", "user.email=convnet@localhost",
                           *arguments], cwd=directory, check=True, capture_output=True,
                          text=True).stdout.strip()


def repository_of_one_file(folder):
    """A repository in `folder` whose one commit holds tracked.txt; returns that commit."""
    git(folder, "init", "-q")
    (folder / "tracked.txt").write_text("one\n")
    git(folder, "add", "tracked.txt")
    git(folder, "commit", "-q", "-m", "first")
    return git(folder, "rev-parse", "HEAD")


def test_the_commit_is_heads_and_dirty_only_where_tracked_files_changed(tmp_path, monkeypatch):
    monkeypatch.setenv(provenance.COMMIT_VARIABLE, "not-read-in-a-checkout")
    head = repository_of_one_file(tmp_path)
    (tmp_path / "untracked.txt").write_text("an output\n")
    assert provenance.commit(tmp_path) == head
    (tmp_path / "tracked.txt").write_text("two\n")
    assert provenance.commit(tmp_path) == head + "-dirty"


def test_a_copy_without_git_names_its_commit_through_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(provenance.COMMIT_VARIABLE, raising=False)
    assert provenance.commit(tmp_path) is None
    monkeypatch.setenv(provenance.COMMIT_VARIABLE, "0123abc")
    assert provenance.commit(tmp_path) == "0123abc"


def test_a_copy_inside_another_repository_is_not_given_that_repositorys_commit(tmp_path,
                                                                                monkeypatch):
    monkeypatch.delenv(provenance.COMMIT_VARIABLE, raising=False)
    git(tmp_path, "init", "-q")
    git(tmp_path, "commit", "-q", "--allow-empty", "-m", "another project")
    (tmp_path / "site-packages").mkdir()
    assert provenance.commit(tmp_path / "site-packages") is None


def test_this_package_reports_the_checkout_it_runs_from():
    """Its HEAD where the package runs from a git checkout; in a copy without .git (as
    tools/mutants.py makes), the commit the environment names."""
    if not os.path.exists(os.path.join(provenance.CHECKOUT, ".git")):
        assert provenance.commit() == (os.environ.get(provenance.COMMIT_VARIABLE) or None)
        return
    head = git(provenance.CHECKOUT, "rev-parse", "HEAD")
    assert provenance.commit() in (head, head + "-dirty")


def test_a_staged_change_is_dirty_too(tmp_path):
    """Dirty is against HEAD, not the index: a change added but not committed is not HEAD's
    code."""
    head = repository_of_one_file(tmp_path)
    (tmp_path / "tracked.txt").write_text("two\n")
    git(tmp_path, "add", "tracked.txt")
    assert provenance.commit(tmp_path) == head + "-dirty"


def test_a_diff_that_cannot_run_counts_as_dirty(tmp_path, monkeypatch):
    """Where git names HEAD but cannot say whether tracked files changed (it timed out), the
    commit is not claimed clean."""
    head = repository_of_one_file(tmp_path)
    real = provenance._git
    monkeypatch.setattr(provenance, "_git", lambda checkout, *arguments:
                        None if arguments[0] == "diff" else real(checkout, *arguments))
    assert provenance.commit(tmp_path) == head + "-dirty"


def test_an_empty_commit_variable_is_an_unknown_commit(tmp_path, monkeypatch):
    """tools/mutants.py passes CONVNET_COMMIT="" when it knows no commit: unknown, not ""."""
    monkeypatch.setenv(provenance.COMMIT_VARIABLE, "")
    assert provenance.commit(tmp_path) is None


def test_a_process_records_the_commit_it_started_with(monkeypatch):
    """running() is read once: a commit made while a run goes on does not relabel its later
    checkpoints."""
    first = provenance.running()
    monkeypatch.setattr(provenance, "commit", lambda checkout=provenance.CHECKOUT: "abc-later")
    assert provenance.running() == first
