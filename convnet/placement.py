"""Placement: which backend runs each tower, and the one path by which a tensor crosses towers.

Every cross-tower read goes through `Placement.transfer`, which moves the tensor to the reading
layer's tower and records a Transfer (layer, tensor, source, destination, direction, bytes). The
network's forward pass sends activations this way and its backward pass sends their gradients
back, so the log proves where the towers communicate.

Two kinds of placement:
  shared     one backend runs both towers (`--gpus cpu`, `--gpus 0`): a crossing is the identity
             on the array, recorded like any other
  per tower  each tower has a backend of its own (`--gpus 0,1`; `--gpus 0,0`, two streams of one
             GPU; two emulators on the CPU): a crossing is a copy made by the receiving backend
             (`receive(array, sender)`), ordered against both towers' work by events, so the
             towers' work runs concurrently between the crossings
"""
from dataclasses import dataclass

from convnet.alexnet import TOWERS


@dataclass(frozen=True)
class Transfer:
    layer: str       # the layer that reads the tensor on the destination tower
    tensor: str      # the layer whose output crosses (its gradient, going backward)
    source: str
    dest: str
    direction: str   # "forward" or "backward"
    nbytes: int


class Placement:
    def __init__(self, backends):
        """backends: one backend for both towers, or {tower: backend}."""
        if not isinstance(backends, dict):
            backends = {tower: backends for tower in TOWERS}
        if set(backends) != set(TOWERS):
            raise ValueError(f"placement needs a backend for towers {TOWERS}; got "
                             f"{sorted(backends)}")
        self.backends = dict(backends)
        self.shared = len({id(backend) for backend in self.backends.values()}) == 1
        self.log: list[Transfer] = []
        if not self.shared:   # fails here, not mid-step, on backends that cannot exchange
            for tower, backend in self.backends.items():
                if not hasattr(backend, "receive"):
                    raise ValueError(f"tower {tower}: backend {backend.name} cannot hold a tower "
                                     f"of its own (it has no receive); share one backend")
            self.routes = {(source, dest): self.backends[dest].route_from(self.backends[source])
                           for source in TOWERS for dest in TOWERS if source != dest}

    @classmethod
    def of(cls, backend_or_placement) -> "Placement":
        if isinstance(backend_or_placement, Placement):
            return backend_or_placement
        return cls(backend_or_placement)

    def distinct_backends(self) -> list:
        """Each backend once, in tower order."""
        seen = {}
        for tower in TOWERS:
            seen.setdefault(id(self.backends[tower]), self.backends[tower])
        return list(seen.values())

    def transfer(self, array, *, layer, tensor, source, dest, direction):
        if source == dest:
            raise ValueError(f"{tensor} → {layer} is not a cross-tower read (both on {source})")
        self.log.append(Transfer(layer, tensor, source, dest, direction, array.nbytes))
        if self.shared:
            return array
        return self.backends[dest].receive(array, self.backends[source])

    def clear_log(self):
        self.log.clear()

    def bytes_moved(self, direction=None):
        return sum(t.nbytes for t in self.log if direction in (None, t.direction))
