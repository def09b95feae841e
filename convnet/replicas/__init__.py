"""Data-parallel replicas: several processes, each training one copy of the two-tower model on
its share of every global batch, averaging gradients each step through an existing engine.

  launch.py      who this process is (rank, world size, local rank) from the MPI, SLURM or
                 torchrun-style environment; which GPUs a rank takes
  shard.py       which images of a global batch are this rank's (Shard, BatchPart)
  engines.py     the communication interface (Replicas) and its engines: one process alone,
                 MPI over NumPy arrays (the CPU backend), and connect(), which picks one
                 of them for a launch on the CPU
  nccl.py        the NCCL engine over CuPy arrays (the CUDA backend), and its connect()
  rendezvous.py  the NCCL unique id handed from rank 0 to the others over TCP, where no MPI
                 launched the job
  watchdog.py    stops a rank that waits on the others for too long (a peer died or hangs)

The contract that makes N replicas train like one process with the same global batch B:
  - every rank starts from the same weights (a pure function of the seed, or the same
    checkpoint; checked by checksum at the start and after every epoch);
  - rank r of W takes images [⌊B·r/W⌋, ⌊B·(r+1)/W⌋) of each global batch, with the global
    batch's augmentation draws and dropout-mask elements for those images;
  - each rank's loss gradient is scaled by (its images / B) and the gradients are summed over
    the ranks, so the sum is the gradient of the global batch's mean loss (exact in real
    arithmetic, for any split, also for an epoch's shorter last batch);
  - every rank then makes the same SGD update.
Only rank 0 prints, logs and writes checkpoints; a checkpoint holds no rank count.
"""
from convnet.replicas.shard import BatchPart, Shard

__all__ = ["BatchPart", "Shard"]
