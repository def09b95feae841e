"""Placement: which device holds each tower, and the one path by which a tensor crosses towers.

Every cross-tower read goes through `Placement.transfer`, which moves the tensor to the reading
layer's tower and records a Transfer (layer, tensor, source, destination, direction, bytes). The
network's forward pass sends activations this way and its backward pass sends their gradients
back, so the log proves where the towers communicate.

On the reference backend both towers are logical devices in one process: the transfer is the
identity on the array, but it is recorded like any other.
"""
from dataclasses import dataclass, field

from convnet.alexnet import TOWERS


@dataclass(frozen=True)
class Transfer:
    layer: str       # the layer that reads the tensor on the destination tower
    tensor: str      # the layer whose output crosses (its gradient, going backward)
    source: str
    dest: str
    direction: str   # "forward" or "backward"
    nbytes: int


@dataclass
class Placement:
    devices: dict[str, str] = field(default_factory=lambda: {tower: "cpu" for tower in TOWERS})
    log: list[Transfer] = field(default_factory=list)

    def __post_init__(self):
        if set(self.devices) != set(TOWERS):
            raise ValueError(f"placement needs a device for towers {TOWERS}; got {self.devices}")

    def transfer(self, array, *, layer, tensor, source, dest, direction):
        if source == dest:
            raise ValueError(f"{tensor} → {layer} is not a cross-tower read (both on {source})")
        self.log.append(Transfer(layer, tensor, source, dest, direction, array.nbytes))
        return array

    def clear_log(self):
        self.log.clear()

    def bytes_moved(self, direction=None):
        return sum(t.nbytes for t in self.log if direction in (None, t.direction))
