"""Who this process is in a data-parallel job, read from the environment its launcher made.

  mpirun / mpiexec / srun --mpi=...   an MPI launcher: Open MPI sets OMPI_COMM_WORLD_RANK,
                                      MPICH, Intel MPI and srun --mpi=pmi2 set PMI_RANK,
                                      srun --mpi=pmix and Open MPI 5 set PMIX_RANK. MPI itself
                                      then says the rank and world size (engines.mpi_world).
  torchrun-style                      RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT
                                      (any launcher that sets them: torchrun, a job script);
                                      the NCCL ids' rendezvous listens on MASTER_PORT, or on
                                      MASTER_PORT + 1 under torchrun, whose agent holds
                                      MASTER_PORT (TORCHELASTIC_USE_AGENT_STORE=True)
  none of these                       one process, which needs no MPI and no network.

An srun step of several tasks that set none of the MPI variables was started without an MPI
plugin: each task would think it is alone, so it is refused. Every inconsistency is a
LaunchError with a one-line message naming the variable.
"""
import os
from dataclasses import dataclass

# (rank variable, world-size variable or None) of each MPI launcher's environment.
MPI_VARIABLES = (("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),   # Open MPI
                 ("PMI_RANK", "PMI_SIZE"),                            # MPICH, Intel MPI, PMI-2
                 ("PMIX_RANK", None))                                 # PMIx
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class LaunchError(Exception):
    """A job that cannot start as launched; the message says what to change."""


@dataclass(frozen=True)
class Launch:
    launcher: str                   # "single", "mpi" or "torchrun"
    rank: int                       # as the environment says (MPI's own word comes later)
    world: int | None               # None where only MPI can say (PMIx)
    local_rank: int | None = None   # within its node: LOCAL_RANK; MPI's (train.main) from MPI
    master: tuple[str, int] | None = None   # torchrun-style rendezvous address


SINGLE = Launch("single", 0, 1)


def _integer(environ, name):
    value = environ[name]
    try:
        return int(value)
    except ValueError:
        raise LaunchError(f"{name}={value!r} is not an integer") from None


def from_environment(environ=None) -> Launch:
    environ = os.environ if environ is None else environ
    for rank_name, world_name in MPI_VARIABLES:
        if rank_name in environ:
            world = _integer(environ, world_name) if world_name in environ else None
            return Launch("mpi", _integer(environ, rank_name), world)
    if "WORLD_SIZE" in environ and _integer(environ, "WORLD_SIZE") != 1:
        return _torchrun(environ)
    tasks = environ.get("SLURM_STEP_NUM_TASKS", "1")
    if tasks.isdigit() and int(tasks) > 1:
        raise LaunchError(f"srun started {tasks} tasks without an MPI plugin, so each would "
                          f"train alone: run srun --mpi=pmix (or pmi2, whichever your MPI "
                          f"supports)")
    return SINGLE


def _torchrun(environ) -> Launch:
    missing = [name for name in TORCHRUN_VARIABLES if not environ.get(name)]
    if missing:
        raise LaunchError(f"WORLD_SIZE={environ['WORLD_SIZE']} but {', '.join(missing)} "
                          f"{'is' if len(missing) == 1 else 'are'} not set: a torchrun-style "
                          f"launch needs {', '.join(TORCHRUN_VARIABLES)} (and LOCAL_RANK "
                          f"with GPUs)")
    rank, world = _integer(environ, "RANK"), _integer(environ, "WORLD_SIZE")
    if world < 1 or not 0 <= rank < world:
        raise LaunchError(f"RANK={rank} does not lie in WORLD_SIZE={world}")
    port = _integer(environ, "MASTER_PORT")
    # Under torchrun itself its agent's store already listens on MASTER_PORT: use the next.
    port += environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    if not 0 < port < 65536:
        raise LaunchError(f"MASTER_PORT={environ['MASTER_PORT']} leaves no TCP port for the "
                          f"rendezvous")
    local_rank = _integer(environ, "LOCAL_RANK") if "LOCAL_RANK" in environ else None
    return Launch("torchrun", rank, world, local_rank, (environ["MASTER_ADDR"], port))


def rank_gpus(gpus, local_rank, visible):
    """The physical GPUs of one rank. `gpus` are --gpus's indices (tower a's, tower b's), which
    name GPUs within the rank's own block of max(gpus) + 1: local rank l takes block l
    (GPU l·block + i), unless the launcher already gave each rank exactly one block of visible
    devices (srun --gpus-per-task, a per-rank CUDA_VISIBLE_DEVICES), where they stand as given."""
    block = max(gpus) + 1
    if visible == block:
        return list(gpus)
    if local_rank is None:
        raise LaunchError("LOCAL_RANK is not set: with GPUs each rank needs it to take its own")
    first = local_rank * block
    if first + block > visible:
        raise LaunchError(f"local rank {local_rank} with --gpus {','.join(map(str, gpus))} "
                          f"needs GPUs {first}..{first + block - 1}, but {visible} are visible")
    return [first + index for index in gpus]
