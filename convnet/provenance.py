"""Which code produced a result, and on what: the commit that settings, checkpoints and benchmark
reports record, and the processor and BLAS that CPU benchmarks name.

The commit is git's HEAD of the checkout convnet runs from (the folder holding the package, when
it is the top of a git work tree: an installed copy inside some other repository is not), with
"-dirty" where tracked files differ from it. A copy of the tree without its .git folder (sent to
another machine to run) names its commit through the environment variable CONVNET_COMMIT; with
neither, it is unknown (None). What a process records is running(): the commit as it was when
the process first asked.
"""
import functools
import os
import platform
import subprocess

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMIT_VARIABLE = "CONVNET_COMMIT"


def _git(checkout, *arguments):
    try:
        return subprocess.run(["git", *arguments], capture_output=True, text=True, cwd=checkout,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None


def commit(checkout=CHECKOUT):
    found = _git(checkout, "rev-parse", "--show-toplevel", "HEAD")
    lines = found.stdout.split() if found is not None and found.returncode == 0 else []
    if len(lines) != 2 or os.path.realpath(lines[0]) != os.path.realpath(checkout):
        return os.environ.get(COMMIT_VARIABLE) or None
    changed = _git(checkout, "diff", "--quiet", "HEAD", "--")
    return lines[1] + ("-dirty" if changed is None or changed.returncode else "")


@functools.cache
def running():
    """The commit of the code this process runs, read once: the modules it loaded stay what they
    were whatever happens to the checkout later, and a run saves checkpoints every epoch."""
    return commit()


def cores() -> int:
    """The cores this process may run on (its affinity: taskset, a container's cpuset), which
    os.cpu_count, the machine's, overstates."""
    return len(os.sched_getaffinity(0))


def memory() -> int:
    """Bytes of this machine's physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def processor() -> str:
    """The CPU's model name as Linux gives it (/proc/cpuinfo), else what Python knows."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas():
    """NumPy's BLAS ("scipy-openblas 0.3.31"), which sets the reference backend's speed; None
    where NumPy does not say (before 1.26). NumPy is imported here alone: the GPU checks'
    preflight reads this before the package's requirements are known to be installed."""
    import numpy
    try:
        found = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except (TypeError, KeyError):
        return None
    return f"{found.get('name')} {found.get('version')}"
