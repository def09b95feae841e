"""Figure 3: the learned conv1 kernels, tower a's rows above tower b's (48 each, 11×11×3, in the
default network), as one PNG of exact pixels (Pillow; no plotting library in between).

Each kernel w (3, f, f) is contrast-normalized the same way, by one of:
  per-kernel (default)  (w − min w) / (max w − min w), so every kernel spans black to white
  shared                the same with min and max over every kernel of both towers, so that
                        kernels can be compared in strength
then scaled to 0–255 and rounded, its R, G, B from input channels 0, 1, 2. Each kernel pixel
becomes a zoom × zoom block; kernels are zoom pixels apart, the towers 4·zoom, on white.
"""
import math

import numpy as np
from PIL import Image

from convnet import alexnet
from convnet.atomic import atomic_path
from convnet.backend import get_backend
from convnet.checkpoint import load_network
from convnet.figures import add_output_flag, checkpoint_output
from convnet.inference import add_checkpoint_flag, checkpoint_file
from convnet.network import weight_key

HELP = "Figure 3: the learned conv1 kernels, tower a above tower b"
INFERENCE = False           # reads the weights only: no dataset, no backend flags
SCALES = ("per-kernel", "shared")
KERNEL_PIXELS = 44      # the default zoom makes each kernel about this wide (11 × 4)
# The largest --zoom: the default network's figure is then 6176×2432 pixels (45 MB in memory).
MAX_ZOOM = 32
TOWER_GAP = 4           # the space between the towers, in kernel gaps


def add_arguments(p):
    add_checkpoint_flag(p)
    p.add_argument("--scale", choices=SCALES, default="per-kernel",
                   help="contrast normalization: per-kernel (default) or shared by all kernels")
    p.add_argument("--columns", type=int, default=16, help="kernels per row (default 16)")
    p.add_argument("--zoom", type=int, default=None,
                   help=f"pixels per kernel pixel, at most {MAX_ZOOM} (default: about "
                        f"{KERNEL_PIXELS} pixels a kernel)")
    add_output_flag(p, "filters")


def check(p, args):
    for flag, value in (("--columns", args.columns), ("--zoom", args.zoom)):
        if value is not None and value < 1:
            p.error(f"{flag} must be at least 1; got {value}")
    if args.zoom is not None and args.zoom > MAX_ZOOM:
        p.error(f"--zoom must be at most {MAX_ZOOM}; got {args.zoom}")


def first_layer_kernels(network):
    """[kernels (3, f, f, n)] of the convolutions that read the image (conv1a, conv1b), in
    tower order; layout: input channels, rows, columns, filters."""
    layers = sorted((layer for layer in network.model.layers
                     if isinstance(layer, alexnet.Conv) and layer.inputs == (alexnet.DATA,)),
                    key=lambda layer: alexnet.TOWERS.index(layer.tower))
    keys = [weight_key(layer.name, alexnet.DATA) for layer in layers]
    host = network.to_host({key: network.params[key] for key in keys})
    return [host[key] for key in keys]


def normalize(kernels, scale):
    """Every kernel of `kernels` [(3, f, f, n)] mapped to [0, 1] (see the module docstring)."""
    if scale == "shared":
        low = min(k.min() for k in kernels)
        high = max(k.max() for k in kernels)
        return [(k - low) / max(high - low, np.finfo(k.dtype).tiny) for k in kernels]
    out = []
    for k in kernels:
        low = k.min(axis=(0, 1, 2), keepdims=True)
        span = k.max(axis=(0, 1, 2), keepdims=True) - low
        out.append((k - low) / np.maximum(span, np.finfo(k.dtype).tiny))
    return out


def grid(kernels, *, scale="per-kernel", columns=16, zoom=4):
    """The figure's pixels, (H, W, 3) uint8: each tower's kernels [(3, f, f, n)] in rows of
    `columns`, the towers one below the other."""
    gap = zoom   # between kernels: one kernel pixel
    channels, size = kernels[0].shape[0], kernels[0].shape[1]
    if channels != 3:
        raise ValueError(f"kernels read {channels} channels; the figure shows RGB kernels")
    columns = min(columns, max(k.shape[3] for k in kernels))
    cell = size * zoom + gap
    rows = [math.ceil(k.shape[3] / columns) for k in kernels]
    height = gap + sum(r * cell for r in rows) + (len(kernels) - 1) * (TOWER_GAP - 1) * gap
    width = gap + columns * cell
    image = np.full((height, width, 3), 255, np.uint8)
    top = gap
    for normalized, tower_rows in zip(normalize(kernels, scale), rows):
        pixels = np.rint(normalized * 255).astype(np.uint8)          # (3, f, f, n)
        for i in range(pixels.shape[3]):
            row, column = divmod(i, columns)
            y, x = top + row * cell, gap + column * cell
            block = pixels[:, :, :, i].transpose(1, 2, 0)              # (f, f, 3)
            image[y:y + size * zoom, x:x + size * zoom] = \
                block.repeat(zoom, axis=0).repeat(zoom, axis=1)
        top += tower_rows * cell + (TOWER_GAP - 1) * gap
    return image


def run(args):
    network, _ = load_network(checkpoint_file(args.checkpoint), get_backend("reference"))
    path = checkpoint_output(args, "filters")
    kernels = first_layer_kernels(network)
    zoom = args.zoom or max(1, round(KERNEL_PIXELS / kernels[0].shape[1]))
    pixels = grid(kernels, scale=args.scale, columns=args.columns, zoom=zoom)
    with atomic_path(path, ".png") as temporary:
        Image.fromarray(pixels).save(temporary, format="PNG")
    counts = " and ".join(str(k.shape[3]) for k in kernels)
    return path, (pixels.shape[1], pixels.shape[0]), f"{counts} first-layer kernels", 0
