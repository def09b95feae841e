"""Placement: which backend runs each tower, and the one path by which a tensor crosses towers.

Every cross-tower read goes through the Placement in two halves: `send`, where the tensor is
made, records a Transfer (layer, tensor, source, destination, direction, bytes) and hands back a
Crossing; `receive`, where the reading layer reads it, turns that into the tensor on the reading
layer's tower. The network's forward pass sends activations this way and its backward pass sends
their gradients back, so the log proves where the towers communicate.

Two kinds of placement:
  shared     one backend runs both towers (`--gpus cpu`, `--gpus 0`): a crossing is the identity
             on the array, recorded like any other
  per tower  each tower has a backend of its own (`--gpus 0,1`; `--gpus 0,0`, two streams of one
             GPU; two emulators on the CPU): a crossing is a copy that the receiving backend
             makes when its layer reads the tensor, after an event the sending backend recorded
             when it made it (`send(array, receiver)`, `receive(parcel)`). So neither tower
             waits for the other's later work: conv3b reads pool2a without waiting for conv3a,
             which tower a queued in between, and the towers' work runs concurrently between
             the crossings
"""
from dataclasses import dataclass

from convnet.alexnet import TOWERS


@dataclass(frozen=True)
class Crossing:
    """A tensor sent to tower `dest`: the array itself on a shared backend, else the sending
    backend's parcel."""
    dest: str
    parcel: object


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
                if not hasattr(backend, "send"):
                    raise ValueError(f"tower {tower}: backend {backend.name} cannot hold a tower "
                                     f"of its own (it cannot send or receive); share one "
                                 f"backend")
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

    def send(self, array, *, layer, tensor, source, dest, direction) -> Crossing:
        """`array`, just made on tower `source`, on its way to `layer` on tower `dest`."""
        if source == dest:
            raise ValueError(f"{tensor} → {layer} is not a cross-tower read (both on {source})")
        self.log.append(Transfer(layer, tensor, source, dest, direction, array.nbytes))
        if self.shared:
            return Crossing(dest, array)
        return Crossing(dest, self.backends[source].send(array, self.backends[dest]))

    def receive(self, crossing: Crossing):
        """The sent tensor on its destination tower."""
        if self.shared:
            return crossing.parcel
        return self.backends[crossing.dest].receive(crossing.parcel)
