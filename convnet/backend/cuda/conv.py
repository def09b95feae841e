"""Convolution on the CUDA kernels of kernels/conv.cu (implicit GEMMs); the formulas and layout
of convnet/backend/reference/conv.py, cuda-convnet's output size (convnet/shapes.py).

Each product runs in kConvTile-square tiles, narrowed to kConvNarrowTile along the filters or
input channels where that leaves less of the last tile idle (48 and 192 of them: conv1, conv2's
input, conv3 and conv4); the kernel is told which tile its grid was made for.

The filter gradient reduces over every output position; it is split into slices of positions
(one grid layer each) so that small layers still fill the GPU, and the slices' partial sums are
added in slice order by a second kernel. The split depends only on the shapes, so the result has
the same bits on every run.
"""
from convnet.shapes import conv_output_size

from .checks import ceil_div, check_arrays, elementwise_grid, i32, require, u32
from .launch import TILES

# Filter-gradient slices are added while the grid stays within this many blocks: two waves of an
# H100 (132 multiprocessors, 2 blocks each). A constant, not the device's count, so that the
# result has the same bits on every GPU.
TARGET_BLOCKS = 528
MIN_SLICE_STEPS = 16       # ... but each slice keeps at least this many kConvTileK steps


def _check(op, x_shape, w):
    require(len(x_shape) == 4 and w.ndim == 4,
            f"conv expects x (C,H,W,N) and filters (C,kh,kw,F); got shapes {x_shape} and {w.shape}")
    require(x_shape[0] == w.shape[0],
            f"conv input has {x_shape[0]} channels but filters expect {w.shape[0]}")
    require(w.shape[1] == w.shape[2], f"conv filters must be square; got {w.shape[1]}x{w.shape[2]}")


def _geometry(x_shape, filters, size, stride, pad):
    channels, height, width, images = x_shape
    out_h = conv_output_size(height, size, stride, pad)
    out_w = conv_output_size(width, size, stride, pad)
    args = tuple(map(i32, (channels, height, width, images, filters, size, stride, pad, out_h,
                           out_w)))
    return out_h, out_w, args


def tile_side(extent):
    """The side of the tile along a product's filters or channels: narrow where the last full
    tile would be at most half used."""
    full, narrow = TILES["kConvTile"], TILES["kConvNarrowTile"]
    return narrow if 0 < extent % full <= narrow else full


def _grid(rows, columns, tile_rows, tile_columns, splits=1):
    return ceil_div(columns, tile_columns), ceil_div(rows, tile_rows), splits


def conv_forward(launcher, x, w, *, stride, pad):
    _check("conv_forward", x.shape, w)
    dtype = check_arrays("conv_forward", x, w)
    channels, _, _, images = x.shape
    filters = w.shape[3]
    out_h, out_w, args = _geometry(x.shape, filters, w.shape[1], stride, pad)
    y = launcher.empty((filters, out_h, out_w, images), dtype)
    check_arrays("conv_forward", y)
    tile_rows = tile_side(filters)
    launcher.launch("conv_forward", dtype,
                    _grid(filters, out_h * out_w * images, tile_rows, TILES["kConvTile"]),
                    TILES["kConvThreads"], (x, w, y, *args, i32(tile_rows)))
    return y


def conv_backward_input(launcher, dy, w, *, input_size, stride, pad):
    """dL/dx (C, H, W, N) with H = W = input_size."""
    channels, size, _, filters = w.shape
    images = dy.shape[3]
    x_shape = (channels, input_size, input_size, images)
    _check("conv_backward_input", x_shape, w)
    out_h, out_w, args = _geometry(x_shape, filters, size, stride, pad)
    require(dy.shape == (filters, out_h, out_w, images),
            f"conv gradient has shape {dy.shape}; an input of {input_size} with filter {size}, "
            f"stride {stride}, pad {pad} gives ({filters}, {out_h}, {out_w}, {images})")
    dtype = check_arrays("conv_backward_input", dy, w)
    dx = launcher.empty(x_shape, dtype)
    check_arrays("conv_backward_input", dx)
    tile_rows = tile_side(channels)
    launcher.launch("conv_backward_input", dtype,
                    _grid(channels, input_size ** 2 * images, tile_rows, TILES["kConvTile"]),
                    TILES["kConvThreads"], (dy, w, dx, *args, i32(tile_rows)))
    return dx


def filter_gradient_slices(taps, filters, positions):
    """(splits, slice): the reduction over `positions` cut into `splits` slices of `slice`."""
    tiles_n, tiles_m, _ = _grid(taps, filters, TILES["kConvTile"], tile_side(filters))
    step = TILES["kConvTileK"]
    most = ceil_div(positions, step * MIN_SLICE_STEPS)
    splits = max(1, min(TARGET_BLOCKS // (tiles_m * tiles_n), most))
    slice_ = ceil_div(ceil_div(positions, splits), step) * step
    return ceil_div(positions, slice_), slice_


def conv_backward_filters(launcher, dy, x, *, filter_size, stride, pad):
    """dL/dw (C, kh, kw, F) from dL/dy (F, OH, OW, N) and the layer's input x."""
    filters = dy.shape[0]
    channels, _, _, images = x.shape
    out_h, out_w, args = _geometry(x.shape, filters, filter_size, stride, pad)
    require(dy.ndim == 4 and dy.shape[1:] == (out_h, out_w, images),
            f"conv gradient has shape {dy.shape}; the input {x.shape} gives "
            f"({filters}, {out_h}, {out_w}, {images})")
    dtype = check_arrays("conv_backward_filters", dy, x)
    taps = channels * filter_size ** 2
    splits, slice_ = filter_gradient_slices(taps, filters, out_h * out_w * images)
    require(slice_ % TILES["kConvTileK"] == 0,   # the kernel's 4-element loads along k need it
            f"conv_backward_filters: slice {slice_} is not a multiple of {TILES['kConvTileK']}")
    shape = (channels, filter_size, filter_size, filters)
    dw = launcher.empty(shape, dtype)
    partial = dw if splits == 1 else launcher.empty((splits,) + shape, dtype)
    check_arrays("conv_backward_filters", partial)
    tile_columns = tile_side(filters)
    launcher.launch("conv_backward_filters", dtype,
                    _grid(taps, filters, TILES["kConvTile"], tile_columns, splits),
                    TILES["kConvThreads"], (dy, x, partial, *args, i32(slice_), i32(tile_columns)))
    if splits > 1:
        launcher.launch("conv_sum_splits", dtype, elementwise_grid(dw.size), TILES["kThreads"],
                        (partial, dw, u32(dw.size), i32(splits)))
    return dw
