"""Convolution on the CUDA kernels of kernels/conv.cu (implicit GEMMs) and kernels/winograd.cu
(Winograd's F(2×2, 3×3) and F(4×4, 3×3) for 3 × 3 filters at stride 1); the formulas and layout
of convnet/backend/reference/conv.py, cuda-convnet's output size (convnet/shapes.py).

Each pass is a product of rows × columns summed over a depth k (conv.cu lists them), or with
Winograd's algorithm (m + 2)² such products between elementwise transforms (winograd.cu), for
output tiles of m × m. Its plan (`pass_plan`) fixes, from the shapes alone:
  algorithm  "implicit" (conv.cu), or "winograd" where the filters are 3 × 3 at stride 1 and
          padding at most 2 (conv3, conv4 and conv5): the backend's preference
          (CudaBackend(conv_algorithm=...), train's --conv-algorithm; DEFAULT_ALGORITHM where it
          names none) where it serves, else the implicit GEMM; tools/bench_kernels.py times both
  tile    the tile's side along the filters (forward, filter gradient) or the input channels
          (input gradient), one of SIDES: the one whose tiles pad the extent least, the wider
          where two pad it alike (in the default network: 48 for the 48 filters of conv1 and the
          3 and 48 input channels of conv1 and conv2; 64 for the 192 filters of conv3 and conv4
          and the 192 input channels of conv4 and conv5; 128 for 128); the kernel is told which
          tile its grid was made for
  splits  slices of the depth, one grid layer each, where the product has too few tiles to fill
          the GPU (every filter gradient, which reduces over all output positions; at batch 128
          also conv3's input gradient and conv5's forward pass); the slices' partial products
          are added in slice order by a second kernel
  winograd_tile  Winograd's m (WINOGRAD_TILES: 2 or 4), the one that does fewer multiplications
          over the pass's output, (m + 2)² a tile, the smaller where they tie (its transforms
          round less): 4 for AlexNet's 13 × 13 (16 tiles, 576 multiplications a channel and
          filter, against 49 tiles and 784); None for the implicit GEMM
Since the plan depends only on the shapes and the preference, the result has the same bits on
every run. The ops take `algorithm`, `tile`, `splits` and `winograd_tile` to override the plan
(tools/bench_kernels.py times the alternatives); the plan they run is then pass_plan's with the
same overrides.
"""
import numbers
from typing import NamedTuple

from convnet.backend import CONV_ALGORITHMS
from convnet.shapes import ceil_div, check_conv_operands, check_input_gradient, conv_output_size

from .checks import MAX_ELEMENTS, check_arrays, i32, launch_elementwise, require, u32
from .launch import MAX_GRID, TILES

# Depths are split while the grid stays within this many blocks: two waves of an H100 (132
# multiprocessors, 2 blocks each). A constant, not the device's count, so that the result has the
# same bits on every GPU.
TARGET_BLOCKS = 528
MIN_SLICE_STEPS = 16       # ... but each slice keeps at least this many kConvTileK steps

# What a pass runs where the caller names no algorithm: the implicit GEMMs, until a GPU run of
# tools/bench_kernels.py has timed Winograd's against them on conv3, conv4 and conv5.
DEFAULT_ALGORITHM = "implicit"
WINOGRAD_TILES = (TILES["kWinogradSmallTile"], TILES["kWinogradLargeTile"])
WINOGRAD_TAPS = TILES["kWinogradTaps"]   # the filter size Winograd's kernels serve


class Plan(NamedTuple):
    tile: int     # the tile's side along the filters or channels
    splits: int   # slices of the depth ...
    slice: int    # ... of this many k each (a multiple of kConvTileK), the last perhaps fewer
    grid: tuple   # (tiles of columns, tiles of rows, splits × products)
    algorithm: str = "implicit"
    winograd_tile: int = None   # Winograd's m; None for the implicit GEMM


# The kernels' tile sides along the filters or channels, narrowest first.
SIDES = (TILES["kConvNarrowestTile"], TILES["kConvNarrowTile"], TILES["kConvTile"])


def tile_side(extent):
    """The side of the tile along a product's filters or channels: the one whose tiles pad the
    extent least, the wider where two pad it alike (a wider tile reloads the other operand less
    often)."""
    return min(SIDES, key=lambda side: (ceil_div(extent, side) * side, -side))


def product_plan(rows, columns, depth, *, filters_along_rows, tile=None, splits=None,
                 products=1):
    """The plan of `products` rows × columns products over `depth` in one grid, whose filters or
    channels run along their rows (forward, input gradient) or their columns (filter gradient);
    `tile` and `splits` override the choice, splits rounded to the nearest count whose slices
    are whole steps and none empty (5 slices of a depth of 64 are 4 of 16)."""
    full, step = TILES["kConvTile"], TILES["kConvTileK"]
    require(min(rows, columns, depth) > 0,
            f"conv product of {rows} × {columns} over {depth}: every size must be positive")
    for name, value in (("tile", tile), ("splits", splits)):
        require(value is None or isinstance(value, numbers.Integral),
                f"conv {name} {value!r}: an integer")
    side = rows if filters_along_rows else columns
    tile = tile_side(side) if tile is None else tile
    require(tile in SIDES, f"conv tile {tile}: the kernels' tiles are {SIDES}")
    tile_rows, tile_columns = (tile, full) if filters_along_rows else (full, tile)
    tiles = (ceil_div(columns, tile_columns), ceil_div(rows, tile_rows))
    if splits is None:
        most = ceil_div(depth, step * MIN_SLICE_STEPS)
        splits = max(1, min(TARGET_BLOCKS // (tiles[0] * tiles[1] * products), most))
    require(splits >= 1, f"conv splits {splits}: at least 1")
    slice_ = ceil_div(ceil_div(depth, splits), step) * step   # whole steps: the kernels need it
    splits = ceil_div(depth, slice_)                          # none empty
    return Plan(tile, splits, slice_, tiles + (products * splits,))


def winograd_applies(size, stride, pad):
    return size == WINOGRAD_TAPS and stride == 1 and 0 <= pad <= WINOGRAD_TAPS - 1


def winograd_points(side):
    """The points of F(side × side, 3 × 3)'s transformed domain: its products per pass."""
    return (side + WINOGRAD_TAPS - 1) ** 2


def winograd_tile_grid(height, width, side):
    """Winograd's side × side tiles of a height × width output: (rows, columns) of them."""
    return ceil_div(height, side), ceil_div(width, side)


def winograd_tiles(height, width, images, side):
    """Winograd's tiles of a height × width output over all images: the products' positions."""
    tiles_h, tiles_w = winograd_tile_grid(height, width, side)
    return tiles_h * tiles_w * images


def winograd_tile_side(height, width):
    """Winograd's m for a height × width output: the fewer multiplications, the smaller m where
    they tie."""
    return min(WINOGRAD_TILES,
               key=lambda side: (winograd_points(side) * winograd_tiles(height, width, 1, side),
                                 side))


def check_algorithm(algorithm):
    require(algorithm in CONV_ALGORITHMS,
            f"conv algorithm {algorithm!r}: one of {CONV_ALGORITHMS}")


def pass_plan(pass_name, x_shape, filters, size, stride, pad, *, tile=None, splits=None,
              algorithm=None, preference=None, winograd_tile=None):
    """The plan of one pass ("forward", "backward_input" or "backward_filters") of a convolution
    of an input x_shape (C, H, W, N) by `filters` filters of size × size: each pass's product as
    conv.cu lists it, or winograd.cu's (m + 2)². `algorithm` is run as asked, and refused where
    it cannot serve; else `preference` (DEFAULT_ALGORITHM where None) where it serves, else the
    implicit GEMM. `winograd_tile` (Winograd's m) only with Winograd's algorithm."""
    if algorithm is None:
        preference = DEFAULT_ALGORITHM if preference is None else preference
        check_algorithm(preference)
        serves = preference != "winograd" or winograd_applies(size, stride, pad)
        algorithm = preference if serves else "implicit"
    check_algorithm(algorithm)
    require(algorithm != "winograd" or winograd_applies(size, stride, pad),
            f"conv algorithm winograd: 3 × 3 filters at stride 1 and padding 0 to 2; got "
            f"{size} × {size} at stride {stride}, padding {pad}")
    require(winograd_tile is None or algorithm == "winograd",
            f"conv winograd_tile {winograd_tile!r}: for algorithm winograd only, not {algorithm}")
    require(winograd_tile is None or winograd_tile in WINOGRAD_TILES,
            f"conv winograd_tile {winograd_tile!r}: the kernels' are {WINOGRAD_TILES}")
    channels, height, width, images = x_shape
    out_h = conv_output_size(height, size, stride, pad)
    out_w = conv_output_size(width, size, stride, pad)
    points = 1
    if algorithm == "winograd":
        # The input gradient is a forward pass whose output is x's size (winograd.cu).
        output = (height, width) if pass_name == "backward_input" else (out_h, out_w)
        if winograd_tile is None:
            winograd_tile = winograd_tile_side(*output)
        positions = winograd_tiles(*output, images, winograd_tile)
        rows, columns, depth = {
            "forward": (filters, positions, channels),
            "backward_input": (channels, positions, filters),
            "backward_filters": (channels, filters, positions)
        }[pass_name]
        points = winograd_points(winograd_tile)
    else:
        rows, columns, depth = {
            "forward": (filters, out_h * out_w * images, channels * size ** 2),
            "backward_input": (channels, height * width * images, size ** 2 * filters),
            "backward_filters": (channels * size ** 2, filters, out_h * out_w * images)
        }[pass_name]
    plan = product_plan(rows, columns, depth, filters_along_rows=pass_name != "backward_filters",
                        tile=tile, splits=splits, products=points)
    if algorithm == "winograd":   # refused before the transforms run, not at the products
        operands = points * max(rows, columns) * depth
        products = points * rows * columns * plan.splits   # a slice's each, where split
        require(max(operands, products) <= MAX_ELEMENTS,
                f"conv algorithm winograd: the {pass_name} pass's transformed operands hold "
                f"{operands} elements and its products {products}, past the kernels' 2³¹ − 1")
    # Said here, by what the rows count, rather than by the launcher as a grid past CUDA's limit.
    row_kind = {"forward": "filters", "backward_input": "input channels",
                "backward_filters": "input channels × filter taps"}[pass_name]
    require(plan.grid[1] <= MAX_GRID[1],
            f"conv {pass_name} pass: {rows} {row_kind} make {plan.grid[1]} tiles of rows, past "
            f"the {MAX_GRID[1]} of CUDA's grid")
    return plan._replace(algorithm=algorithm, winograd_tile=winograd_tile)


def _product(launcher, kernel, dtype, operands, out_shape, geometry, plan):
    """Run one pass's kernel by its plan: into the output, or into one partial output per slice
    that conv_sum_splits then adds in order. Winograd's products are also told their count."""
    out = launcher.empty(out_shape, dtype)
    target = out if plan.splits == 1 else launcher.empty((plan.splits,) + out_shape, dtype)
    check_arrays(kernel, target=target)
    points = () if plan.winograd_tile is None else (i32(winograd_points(plan.winograd_tile)),)
    launcher.launch(kernel, dtype, plan.grid, TILES["kConvThreads"],
                    (*operands, target, *geometry, i32(plan.slice), i32(plan.tile), *points))
    if plan.splits > 1:
        launch_elementwise(launcher, "conv_sum_splits", dtype, out.size,
                           (target, out, u32(out.size), i32(plan.splits)))
    return out


def _geometry(x_shape, filters, size, stride, pad):
    channels, height, width, images = x_shape
    out_h = conv_output_size(height, size, stride, pad)
    out_w = conv_output_size(width, size, stride, pad)
    # The kernels place a window at oy·stride − pad in an int: oy·stride stays below this.
    reach = max(height, width) + 2 * pad + stride
    require(reach <= MAX_ELEMENTS,
            f"conv stride {stride} and pad {pad} on an input of {height} × {width}: the "
            f"kernels' 32-bit window coordinates reach {reach}, past 2³¹ − 1")
    args = tuple(map(i32, (channels, height, width, images, filters, size, stride, pad, out_h,
                           out_w)))
    return out_h, out_w, args


def _winograd_filters(launcher, w, dtype, side, *, turned):
    """u[ξ][k][m] (winograd_filters) for output tiles of side × side: k = c, m = f; turned (the
    input gradient's): k = f, m = c."""
    channels, _, _, filters = w.shape
    points = winograd_points(side)
    u = launcher.empty((points, filters, channels) if turned else (points, channels, filters),
                       dtype)
    launch_elementwise(launcher, "winograd_filters", dtype, channels * filters,
                       (w, u, *map(i32, (channels, filters, turned, side))))
    return u


def _winograd_inputs(launcher, x, dtype, pad, out_h, out_w, side):
    """v[ξ][c][p] of x's tiles for an output out_h × out_w in tiles of side × side
    (winograd_inputs)."""
    channels, height, width, images = x.shape
    v = launcher.empty((winograd_points(side), channels,
                        winograd_tiles(out_h, out_w, images, side)), dtype)
    launch_elementwise(launcher, "winograd_inputs", dtype, channels * v.shape[2],
                       (x, v, *map(i32, (channels, height, width, images, pad,
                                         *winograd_tile_grid(out_h, out_w, side), side))))
    return v


def _winograd_convolution(launcher, x, u, dtype, pad, out_h, out_w, plan):
    """y (F, out_h, out_w, N) of x (C, H, W, N) by transformed filters u ((m + 2)², C, F): the
    forward pass, and the input gradient's (of dy by the turned filters)."""
    points, channels, filters = u.shape
    images, side = x.shape[3], plan.winograd_tile
    v = _winograd_inputs(launcher, x, dtype, pad, out_h, out_w, side)
    positions = v.shape[2]
    m = _product(launcher, "winograd_product", dtype, (u, v), (points, filters, positions),
                 (i32(filters), i32(positions), i32(channels)), plan)
    y = launcher.empty((filters, out_h, out_w, images), dtype)
    launch_elementwise(launcher, "winograd_outputs", dtype, filters * positions,
                       (m, y, *map(i32, (filters, out_h, out_w, images,
                                         *winograd_tile_grid(out_h, out_w, side), side))))
    return y


def conv_forward(launcher, x, w, *, stride, pad, tile=None, splits=None, algorithm=None,
                 preference=None, winograd_tile=None):
    check_conv_operands(x.shape, w.shape)
    dtype = check_arrays("conv_forward", x=x, w=w)
    images = x.shape[3]
    _, size, _, filters = w.shape
    out_h, out_w, geometry = _geometry(x.shape, filters, size, stride, pad)
    plan = pass_plan("forward", x.shape, filters, size, stride, pad, tile=tile, splits=splits,
                     algorithm=algorithm, preference=preference, winograd_tile=winograd_tile)
    if plan.algorithm == "winograd":
        u = _winograd_filters(launcher, w, dtype, plan.winograd_tile, turned=False)
        return _winograd_convolution(launcher, x, u, dtype, pad, out_h, out_w, plan)
    return _product(launcher, "conv_forward", dtype, (x, w), (filters, out_h, out_w, images),
                    geometry, plan)


def conv_backward_input(launcher, dy, w, *, input_size, stride, pad, tile=None, splits=None,
                        algorithm=None, preference=None, winograd_tile=None):
    """dL/dx (C, H, W, N), (H, W) = input_size (one int: H = W)."""
    x_shape, _, _ = check_input_gradient(dy.shape, w.shape, input_size, stride, pad)
    _, size, _, filters = w.shape
    _, _, geometry = _geometry(x_shape, filters, size, stride, pad)
    dtype = check_arrays("conv_backward_input", dy=dy, w=w)
    plan = pass_plan("backward_input", x_shape, filters, size, stride, pad, tile=tile,
                     splits=splits, algorithm=algorithm, preference=preference,
                     winograd_tile=winograd_tile)
    if plan.algorithm == "winograd":   # dy by the turned filters, padded by 2 − pad (winograd.cu)
        u = _winograd_filters(launcher, w, dtype, plan.winograd_tile, turned=True)
        return _winograd_convolution(launcher, dy, u, dtype, size - 1 - pad, *x_shape[1:3], plan)
    return _product(launcher, "conv_backward_input", dtype, (dy, w), x_shape, geometry, plan)


def conv_backward_filters(launcher, dy, x, *, filter_size, stride, pad, tile=None, splits=None,
                          algorithm=None, preference=None, winograd_tile=None):
    """dL/dw (C, kh, kw, F) from dL/dy (F, OH, OW, N) and the layer's input x."""
    filters = dy.shape[0]
    channels, _, _, images = x.shape
    out_h, out_w, geometry = _geometry(x.shape, filters, filter_size, stride, pad)
    require(dy.ndim == 4 and dy.shape[1:] == (out_h, out_w, images),
            f"conv gradient has shape {dy.shape}; the input {x.shape} gives "
            f"({filters}, {out_h}, {out_w}, {images})")
    dtype = check_arrays("conv_backward_filters", dy=dy, x=x)
    plan = pass_plan("backward_filters", x.shape, filters, filter_size, stride, pad, tile=tile,
                     splits=splits, algorithm=algorithm, preference=preference,
                     winograd_tile=winograd_tile)
    if plan.algorithm == "winograd":
        side = plan.winograd_tile
        v = _winograd_inputs(launcher, x, dtype, pad, out_h, out_w, side)
        points, _, positions = v.shape
        g = launcher.empty((points, filters, positions), dtype)
        launch_elementwise(launcher, "winograd_gradients", dtype, filters * positions,
                           (dy, g, *map(i32, (filters, out_h, out_w, images,
                                              *winograd_tile_grid(out_h, out_w, side), side))))
        m = _product(launcher, "winograd_filter_product", dtype, (v, g),
                     (points, channels, filters), (i32(channels), i32(filters), i32(positions)),
                     plan)
        dw = launcher.empty((channels, filter_size, filter_size, filters), dtype)
        launch_elementwise(launcher, "winograd_filter_gradients", dtype, channels * filters,
                           (m, dw, *map(i32, (channels, filters, side))))
        return dw
    return _product(launcher, "conv_backward_filters", dtype, (dy, x),
                    (channels, filter_size, filter_size, filters), geometry, plan)
