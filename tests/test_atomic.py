"""Atomic writes (convnet/atomic.py): what a killed writer leaves, and the order of the syncs."""
import json
import os
import subprocess
import sys
import textwrap

from convnet import atomic


def killed_writer(folder, target):
    """Runs a process killed (SIGKILL: no cleanup runs) while it writes `target` atomically;
    returns its process id, now ended."""
    script = textwrap.dedent(f"""
        import os, signal
        from convnet.atomic import atomic_path
        print(os.getpid(), flush=True)
        with atomic_path({target!r}, ".json") as temporary:
            with open(temporary, "w") as file:
                file.write('{{"half": ')
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=folder, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == -9, result.stderr[-2000:]
    return int(result.stdout)


def test_a_killed_writes_file_goes_at_the_next_write_of_its_target(tmp_path):
    target = tmp_path / "settings.json"
    atomic.atomic_json(target, {"epoch": 1})
    pid = killed_writer(tmp_path, "settings.json")
    leftovers = [name for name in os.listdir(tmp_path) if name != "settings.json"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".partial-settings.json@")
    assert f":{pid}-" in leftovers[0]
    assert json.loads(target.read_text()) == {"epoch": 1}   # the good file stays in place

    atomic.atomic_json(target, {"epoch": 2})
    assert os.listdir(tmp_path) == ["settings.json"]
    assert json.loads(target.read_text()) == {"epoch": 2}


def test_a_running_writers_file_and_another_targets_stay(tmp_path):
    """A write removes only its own target's leftovers, and not those of a process still running
    (a writer of the same file elsewhere, here this process)."""
    killed_writer(tmp_path, "other.json")
    others = os.listdir(tmp_path)
    running = atomic._partial_prefix(str(tmp_path / "settings.json")) + f"{os.getpid()}-x.json"
    (tmp_path / running).write_text("being written")
    atomic.atomic_json(tmp_path / "settings.json", {})
    assert sorted(os.listdir(tmp_path)) == sorted(others + [running, "settings.json"])


def test_the_file_reaches_the_disk_before_the_rename_and_the_rename_before_the_return(
        tmp_path, monkeypatch):
    events = []
    sync, replace = os.fsync, os.replace

    def fsync(handle):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{handle}")))
        sync(handle)

    def rename(source, target):
        events.append(("replace", str(target)))
        replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", rename)
    target = tmp_path / "report.json"
    atomic.atomic_json(target, {"a": 1})
    assert [kind for kind, _ in events] == ["fsync", "replace", "fsync"]
    assert os.path.basename(events[0][1]).startswith(".partial-report.json@")
    assert events[1:] == [("replace", str(target)), ("fsync", str(tmp_path))]


def test_a_written_file_has_the_modes_of_a_plain_open(tmp_path):
    """Readable as any file the user writes (the umask's), not the temporary file's 0600."""
    umask = os.umask(0o022)
    try:
        atomic.atomic_json(tmp_path / "settings.json", {})
    finally:
        os.umask(umask)
    assert os.stat(tmp_path / "settings.json").st_mode & 0o777 == 0o644
