"""Atomic writes (convnet/atomic.py): what a killed writer leaves, and the order of the syncs."""
import errno
import json
import os
import subprocess
import sys
import textwrap

import pytest

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
    prefix = atomic._partial_prefix(str(target))
    assert len(leftovers) == 1 and leftovers[0].startswith(f"{prefix}{pid}-")
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
    assert os.path.basename(events[0][1]).startswith(atomic._partial_prefix(str(target)))
    assert events[1:] == [("replace", str(target)), ("fsync", str(tmp_path))]


def test_a_written_file_has_the_modes_of_a_plain_open(tmp_path):
    """Readable as any file the user writes (the umask's), not the temporary file's 0600."""
    umask = os.umask(0o022)
    try:
        atomic.atomic_json(tmp_path / "settings.json", {})
    finally:
        os.umask(umask)
    assert os.stat(tmp_path / "settings.json").st_mode & 0o777 == 0o644


def test_a_name_of_255_bytes_is_written(tmp_path):
    """The temporary name is short whatever the target's length."""
    target = tmp_path / ("r" * 250 + ".json")
    atomic.atomic_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1} and os.listdir(tmp_path) == [target.name]


def test_a_folder_whose_filesystem_offers_no_fsync_takes_the_write(tmp_path, monkeypatch):
    """CIFS, FUSE filesystems and Ceph refuse a folder's fsync (EINVAL, ENOTSUP): the rename is
    done, so the write stands; a file's failed fsync is still a failed write."""
    sync = os.fsync

    def folders_refused(handle):
        if os.path.isdir(os.readlink(f"/proc/self/fd/{handle}")):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        sync(handle)
    monkeypatch.setattr(os, "fsync", folders_refused)
    atomic.atomic_json(tmp_path / "a.json", {"a": 1})
    assert json.loads((tmp_path / "a.json").read_text()) == {"a": 1}

    monkeypatch.setattr(os, "fsync", lambda handle: (_ for _ in ()).throw(
        OSError(errno.EIO, os.strerror(errno.EIO))))
    with pytest.raises(OSError) as failed:
        atomic.atomic_json(tmp_path / "a.json", {"a": 2})
    assert (failed.value.errno, str(failed.value.filename)) == (errno.EIO, str(tmp_path / "a.json"))
    assert json.loads((tmp_path / "a.json").read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["a.json"]


def test_a_failed_write_names_the_file_asked_for(tmp_path):
    """A write's own error (a full disk: no file name in it) names the target, not the
    temporary file; another file's error keeps its name."""
    target = tmp_path / "out.json"
    with pytest.raises(OSError) as failed, atomic.atomic_path(target) as temporary:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert (failed.value.errno, str(failed.value.filename)) == (errno.ENOSPC, str(target))
    assert not os.path.exists(temporary)
    with pytest.raises(FileNotFoundError) as other, atomic.atomic_path(target):
        open(tmp_path / "source.json")
    assert other.value.filename == str(tmp_path / "source.json")
    # a copy that fills the disk: its error names the source, then the temporary file
    with pytest.raises(OSError) as copying, atomic.atomic_path(target) as temporary:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "source.json"),
                      None, temporary)
    assert (str(copying.value.filename), copying.value.filename2) == (str(target), None)


def test_a_name_too_long_for_its_folder_is_refused_before_the_work(tmp_path):
    """A name the filesystem cannot hold (past 255 bytes) would fail only at the rename, after
    the work: check_writable refuses it first (the file's name, or a folder's to be made), and
    the rename's own error names the file asked for, not the temporary one."""
    long = "r" * 256 + ".json"
    for path in (tmp_path / long, tmp_path / ("d" * 256) / "out.json"):
        with pytest.raises(ValueError, match=rf"^-o {path}: a name of \d+ bytes, longer than "
                                             rf"the 255 that {tmp_path} takes$"):
            atomic.check_writable(str(path), "-o")
    fits = str(tmp_path / ("r" * 250 + ".h5"))   # but not with the suffix of the work's file
    atomic.check_writable(fits, "--output")
    with pytest.raises(ValueError, match=r"a name of 261 bytes \(with \.partial\), longer than "):
        atomic.check_writable(fits, "--output", suffix=".partial")
    with pytest.raises(OSError) as failed:
        atomic.atomic_json(str(tmp_path / long), {"a": 1})
    assert (failed.value.errno, failed.value.filename) == (errno.ENAMETOOLONG,
                                                           str(tmp_path / long))
    assert os.listdir(tmp_path) == []


def test_a_filesystem_that_gives_no_name_limit_is_not_refused(tmp_path, monkeypatch):
    """pathconf fails on some filesystems (EINVAL): the name's length goes unchecked, and the
    write itself says what is wrong, where anything is."""
    def unknown(path, name):
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
    monkeypatch.setattr(os, "pathconf", unknown)
    atomic.check_writable(str(tmp_path / "out.json"), "-o")


def test_an_output_is_checked_where_it_would_be_made_and_nothing_is_made(tmp_path):
    """A missing folder is judged by the nearest one above it that exists, and left unmade:
    a command refused later leaves no empty folder behind."""
    atomic.check_writable(str(tmp_path / "new" / "sub" / "out.png"), "-o")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "afile").write_text("")
    with pytest.raises(ValueError, match=f"-o .*: {tmp_path / 'afile'} is a file, not a folder"):
        atomic.check_writable(str(tmp_path / "afile" / "sub" / "out.png"), "-o")


def test_an_output_in_a_folder_its_user_may_not_write_in_is_refused(tmp_path, monkeypatch):
    """os.access as it answers another user than root for a folder made read-only (root's
    answers yes): refused before the work, naming the folder."""
    monkeypatch.setattr(atomic.os, "access", lambda path, mode: not mode & os.W_OK)
    with pytest.raises(ValueError) as refused:
        atomic.check_writable(str(tmp_path / "new" / "out.png"), "-o")
    assert str(refused.value) == f"-o {tmp_path / 'new' / 'out.png'}: {tmp_path} is not writable"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in a folder made read-only (chmod)")
def test_an_output_in_a_read_only_folder_is_refused(tmp_path):
    (tmp_path / "shared").mkdir(mode=0o555)
    try:
        with pytest.raises(ValueError) as refused:
            atomic.check_writable(str(tmp_path / "shared" / "out.png"), "-o")
    finally:
        (tmp_path / "shared").chmod(0o755)
    assert str(refused.value) == (f"-o {tmp_path / 'shared' / 'out.png'}: {tmp_path / 'shared'} "
                                  f"is not writable")


def test_a_pipe_or_a_device_is_not_replaced_by_an_output(tmp_path):
    """An output written atomically replaces its name: a pipe (or /dev/null as root) would
    become a plain file. Refused, by the early check and by the write itself."""
    pipe = tmp_path / "out.fifo"
    os.mkfifo(pipe)
    with pytest.raises(ValueError, match=f"-o {pipe}: not a regular file"):
        atomic.check_writable(str(pipe), "-o")
    with pytest.raises(OSError, match="not a regular file") as refused:
        with atomic.atomic_path(pipe):
            pytest.fail("the block ran")
    assert refused.value.filename == pipe and os.path.exists(pipe) and not pipe.is_file()
    (tmp_path / "plain").write_text("")
    os.symlink(tmp_path / "plain", tmp_path / "link")
    atomic.check_writable(str(tmp_path / "link"), "-o")   # a link to a file is a file's name


def test_a_name_not_in_utf8_is_written(tmp_path):
    target = tmp_path / os.fsdecode(b"f\xfd.json")   # as such a name comes from the command line
    with atomic.atomic_path(target) as temporary, open(temporary, "w") as file:
        file.write("{}")
    assert os.listdir(os.fsencode(tmp_path)) == [b"f\xfd.json"]


def test_a_folder_that_takes_no_new_file_is_named_by_the_target(tmp_path, monkeypatch):
    def refused(*args, **kwargs):   # what a read-only folder gives root's write too (EROFS)
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES),
                              os.path.join(kwargs["dir"], kwargs["prefix"] + "x"))
    monkeypatch.setattr(atomic.tempfile, "mkstemp", refused)
    with pytest.raises(PermissionError) as failed, atomic.atomic_path(tmp_path / "out.png"):
        pass
    assert str(failed.value.filename) == str(tmp_path / "out.png")
