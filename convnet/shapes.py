"""Output-size rules of cuda-convnet, the one place the network and every backend take them from
(and the extent of a dropout mask, which both backends check alike).

Convolution: out = 1 + ceil((2·pad + size − filter) / stride). The first window starts `pad`
pixels before the image; the last may run past the bottom/right edge (conv1 on 224 with an 11×11
filter at stride 4 overhangs by 3 pixels) and reads zeros there.

Pooling: out = ceil((size − window) / stride) + 1. The last window may overhang the bottom/right
edge; it takes the maximum over the pixels that exist. Without overhang (the paper's
non-overlapping ablation, convnet.alexnet.ABLATIONS): out = floor((size − window) / stride) + 1,
only whole windows, and the pixels past the last one are read by none.
"""
import math
import numbers


def ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def _check_integers(what, **sizes):
    """A float size would give a float output size, and a TypeError deep in a backend."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{what} needs integer sizes; got {name}={value!r}")


def check_conv_operands(x_shape, w_shape):
    """ValueError unless x (C, H, W, N) and square filters (C, S, S, F) go together."""
    if len(x_shape) != 4 or len(w_shape) != 4:
        raise ValueError(f"conv expects x (C,H,W,N) and filters (C,kh,kw,F); "
                         f"got shapes {tuple(x_shape)} and {tuple(w_shape)}")
    if x_shape[0] != w_shape[0]:
        raise ValueError(f"conv input has {x_shape[0]} channels but filters expect {w_shape[0]}")
    if w_shape[1] != w_shape[2]:
        raise ValueError(f"conv filters must be square; got {w_shape[1]}x{w_shape[2]}")


def check_input_gradient(dy_shape, w_shape, input_size, stride, pad):
    """conv_backward_input's operands: dy (F, OH, OW, N), square filters (C, S, S, F) and
    input_size, the input's (rows, columns), or one int for a square input. Returns the
    input's shape (C, H, W, N) and the output's sides; a ValueError unless dy is the output of
    such an input."""
    height, width = input_size if isinstance(input_size, (tuple, list)) else (input_size,) * 2
    if len(dy_shape) != 4:
        raise ValueError(f"conv gradient must be (F,OH,OW,N); got shape {tuple(dy_shape)}")
    x_shape = (w_shape[0] if len(w_shape) == 4 else 0, height, width, dy_shape[3])
    check_conv_operands(x_shape, w_shape)
    out_h, out_w = (conv_output_size(side, w_shape[1], stride, pad) for side in (height, width))
    if tuple(dy_shape) != (w_shape[3], out_h, out_w, dy_shape[3]):
        raise ValueError(f"conv gradient has shape {tuple(dy_shape)}; an input of {height} × "
                         f"{width} with filter {w_shape[1]}, stride {stride}, pad {pad} gives "
                         f"({w_shape[3]}, {out_h}, {out_w}, {dy_shape[3]})")
    return x_shape, out_h, out_w


def conv_output_size(size: int, filter_size: int, stride: int, pad: int) -> int:
    _check_integers("convolution", size=size, filter=filter_size, stride=stride, pad=pad)
    if size < 1 or filter_size < 1 or stride < 1 or pad < 0:
        raise ValueError(f"convolution needs size, filter and stride >= 1 and pad >= 0; "
                         f"got size={size}, filter={filter_size}, stride={stride}, pad={pad}")
    if filter_size > size + 2 * pad:
        raise ValueError(f"a {filter_size}-pixel filter does not fit a {size}-pixel input "
                         f"padded by {pad}")
    return 1 + ceil_div(2 * pad + size - filter_size, stride)


def conv_overhang(size: int, filter_size: int, stride: int, pad: int) -> int:
    """Zero pixels the last window reads past the bottom/right edge (at least 0)."""
    out = conv_output_size(size, filter_size, stride, pad)
    return max(0, (out - 1) * stride + filter_size - size - pad)


def pool_output_size(size: int, window: int, stride: int, *, overhang: bool = True) -> int:
    _check_integers("pooling", size=size, window=window, stride=stride)
    if size < 1 or window < 1 or stride < 1:
        raise ValueError(f"pooling needs size, window and stride >= 1; "
                         f"got size={size}, window={window}, stride={stride}")
    if window > size:
        raise ValueError(f"a {window}-pixel pooling window does not fit a {size}-pixel input")
    if not overhang:
        return (size - window) // stride + 1
    return ceil_div(size - window, stride) + 1


def dropout_mask_extent(shape, keep, key, start, total):
    """ValueError unless a dropout mask of `shape` (images last) can be drawn: images
    [start, start + shape[-1]) of a `total`-image batch (None: the whole), `keep` in (0, 1] and a
    32-bit `key`. Returns (units per image, images, total)."""
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"dropout keep probability must be in (0, 1]; got {keep}")
    if not 0 <= key < 2 ** 32:
        raise ValueError(f"dropout key must be a 32-bit unsigned integer; got {key}")
    if len(shape) == 0:
        raise ValueError("dropout mask of shape (): the images run along its last axis")
    images = shape[-1]
    total = images if total is None else total
    if not (0 <= start and start + images <= total):
        raise ValueError(f"dropout mask of images [{start}, {start + images}) does not lie in a "
                         f"batch of {total}")
    return math.prod(shape[:-1]), images, total
