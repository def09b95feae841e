"""Which images of a global batch belong to which rank.

Rank r of W takes images [⌊n·r/W⌋, ⌊n·(r+1)/W⌋) of a global batch of n images: contiguous
parts, in rank order, that cover the batch exactly once and differ in size by at most one
(equal when W divides n; possibly empty when n < W, as for an epoch's short last batch).
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class BatchPart:
    """Images [start, start + count) of a global batch of `total` images."""
    start: int
    count: int
    total: int

    def __post_init__(self):
        if not (0 <= self.start and 0 <= self.count and self.start + self.count <= self.total):
            raise ValueError(f"images [{self.start}, {self.start + self.count}) do not lie in a "
                             f"batch of {self.total}")

    @property
    def stop(self) -> int:
        return self.start + self.count

    @classmethod
    def of_whole(cls, total):
        return cls(0, total, total)


@dataclass(frozen=True)
class Shard:
    """Rank `rank` of `world`: its part of any global batch."""
    rank: int = 0
    world: int = 1

    def __post_init__(self):
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} does not lie in a world of {self.world}")

    def part(self, total) -> BatchPart:
        start = total * self.rank // self.world
        return BatchPart(start, total * (self.rank + 1) // self.world - start, total)


WHOLE = Shard()
