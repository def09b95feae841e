"""The CUDA kernels against the reference backend, op by op: through the emulator in every run
(small and odd shapes), and on a GPU when there is one (also AlexNet's per-tower shapes at batch
128). Every kernel output is poisoned with NaN before the kernel runs, inputs are fresh random
numbers. A float32 kernel must be as close to the float64 reference as the reference's own float32
computation is (within a factor, see assert_as_accurate); a float64 kernel must agree to
round-off and pass the finite-difference checks itself.
"""
import contextlib
import functools
import platform
import re
import subprocess
import types

import numpy as np
import pytest

from convnet import alexnet, graph
from convnet.backend import reference
from convnet.backend.cuda import CudaBackend
from convnet.backend.cuda.conv import (SIDES, TARGET_BLOCKS, WINOGRAD_TILES, pass_plan,
                                      winograd_applies)
from convnet.backend.cuda.launch import Emulated, Launcher, build, c_type
from convnet.backend.cuda.elementwise import bias_gradient_slices
from convnet.backend.reference.elementwise import _mix32
from convnet.norm_params import NormParams
from convnet.shapes import conv_output_size
import draws
from gradcheck import check_gradients, projection_loss
from targets import (KERNEL_TARGETS, SEQUENTIAL_SUM_FLOOR, WINOGRAD_FLOORS, kernel_backend,
                     program_on_emulate_h, skip_large_on_emulator)

CODE = NormParams(size=5, k=2.0, alpha=1e-4, beta=0.75, alpha_convention="per-term")
PAPER = NormParams(size=5, k=2.0, alpha=1e-4, beta=0.75, alpha_convention="paper")
STRONG = NormParams(size=3, k=1.0, alpha=0.3, beta=0.75, alpha_convention="paper")
SAMEMAP = NormParams(size=5, k=1.0, alpha=1e-3, beta=0.75, alpha_convention="per-term")

FLOAT32_ERROR_FACTOR = 10    # kernel's error ≤ this × the reference's own float32 error ...
FLOAT32_FLOOR = 2e-6         # ... or this fraction of the output's scale, whichever is larger
FLOAT64_TOLERANCE = 1e-12    # float64 kernels against the float64 reference, relative to scale


@pytest.fixture(params=KERNEL_TARGETS)
def backend(request):
    return _backend(request.param)


@functools.cache
def _backend(target):
    return kernel_backend(target)


def call(backend, op, *args, **kwargs):
    """Run one op on the kernels with host arrays in and out; outputs as a tuple of NumPy arrays."""
    device_args = [backend.from_host(a) if isinstance(a, np.ndarray) else a for a in args]
    result = getattr(backend, op)(*device_args, **kwargs)
    result = result if isinstance(result, tuple) else (result,)
    return tuple(np.asarray(backend.to_host(r)) if not isinstance(r, (int, float)) else
                 np.asarray(r) for r in result)


def reference_call(op, *args, **kwargs):
    result = getattr(reference, op)(*args, **kwargs)
    return tuple(np.asarray(r) for r in (result if isinstance(result, tuple) else (result,)))


def as_dtype(args, dtype):
    return [a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a
            for a in args]


# Ops whose every output is a sum of products of their array arguments, one factor from each.
SUMS_OF_PRODUCTS = {"conv_forward", "conv_backward_input", "conv_backward_filters",
                    "bias_backward"}
# Outputs that are a log-probability's negative, −((z − m) − log s) (softmax.cu), by op and index.
LOG_LOSSES = {("softmax_logloss", 1)}
NORM_BACKWARDS = {"crossmap_norm_backward", "samemap_norm_backward"}


def output_scale(op, index, args, exact, kwargs):
    """The size float32 rounding is measured against: the output's largest magnitude, or for a
    sum of products, the root-sum-square of its terms, √(Σ term²) (the op on the arguments
    squared), where that is larger: the partial sums a kernel rounds grow that large even where
    the whole sum cancels (one filter's bias gradient, a random sum of its row). A log-loss's
    scale is at least 1: log s rounds by a few ulp of 1 where s is near 1, and may (a GPU's exp
    errs by up to an ulp, as the emulator's does), whatever the loss, 0 for a single class. A
    normalization's gradient is the difference of two terms, g·d^(−β) and 2cβ·a·Σ g·b/d
    (reference/norm.py), each as inexact as d^(−β) (__powf on a GPU): its scale is the larger
    term's, where they cancel."""
    scale = float(np.abs(exact).max())
    if op in SUMS_OF_PRODUCTS:   # one output each
        squared = [a ** 2 if isinstance(a, np.ndarray) else a for a in args]
        scale = max(scale, float(np.sqrt(reference_call(op, *squared, **kwargs)[0].max())))
    if (op, index) in LOG_LOSSES:
        scale = max(scale, 1.0)
    if op in NORM_BACKWARDS:   # one output
        dy, _, _, denoms, params = args
        first = dy * denoms ** -params.beta
        scale = max(scale, float(np.abs(first).max()), float(np.abs(first - exact).max()))
    return max(scale, 1e-30)


def assert_as_accurate(op, args, *, floor=FLOAT32_FLOOR, **kwargs):
    """The op on float64 and float32 inputs against the float64 reference (see the docstring);
    `plan`, a dict of keywords only the kernels' op takes; `floor`, the float32 error allowed
    whatever the reference's, a fraction of the output's scale (output_scale)."""
    backend, plan = kwargs.pop("backend"), kwargs.pop("plan", {})
    exact = reference_call(op, *args, **kwargs)
    single_reference = reference_call(op, *as_dtype(args, np.float32), **kwargs)
    double_kernel = call(backend, op, *args, **kwargs, **plan)
    single_kernel = call(backend, op, *as_dtype(args, np.float32), **kwargs, **plan)
    for index, (want, ref32, got64, got32) in enumerate(zip(exact, single_reference,
                                                            double_kernel, single_kernel)):
        what = f"{op} output {index}"
        assert got64.shape == want.shape and got32.shape == want.shape, what
        assert not np.isnan(got64).any() and not np.isnan(got32).any(), \
            f"{what}: NaN (an element the kernel did not write keeps the poison)"
        scale = output_scale(op, index, args, want, kwargs)
        error64 = float(np.abs(got64 - want).max())
        assert error64 <= FLOAT64_TOLERANCE * scale, f"{what}, float64: error {error64:.3e}, " \
                                                     f"scale {scale:.3e}"
        allowed = max(FLOAT32_ERROR_FACTOR * float(np.abs(ref32.astype(np.float64) - want).max()),
                      floor * scale)
        error32 = float(np.abs(got32.astype(np.float64) - want).max())
        assert error32 <= allowed, f"{what}, float32: error {error32:.3e} > allowed {allowed:.3e}"
    return double_kernel


def steps_from(want, got):
    """How far `got` lies from `want`, signed, in steps of `want`'s float type there (ulp)."""
    return ((np.asarray(got, np.longdouble) - want) / np.spacing(np.abs(want))).astype(float)


@contextlib.contextmanager
def named_on_failure(what):
    """A failure inside (a check, or an op refusing or failing) says `what` first: the drawn
    shape behind it."""
    try:
        yield
    except Exception as error:
        raise AssertionError(f"{what}: {type(error).__name__}: {error}") from error


# ---- convolution --------------------------------------------------------------------------

# (channels, size of the square input, images, filters, filter size, stride, pad)
FULL_TILES = (128, 4, 4, 120, 3, 1, 1)   # full tiles in every pass
CONV_CASES = [
    (3, 14, 3, 5, 5, 4, 0),     # conv1's kind: stride 4, the last window overhangs by 3
    (5, 9, 1, 7, 3, 1, 1),      # batch 1, padding, channels and filters off the tile
    (7, 8, 3, 9, 5, 2, 2),      # a stride that does not divide the input, padding 2
    (4, 6, 2, 70, 3, 1, 1),     # more filters than one tile holds (two of 48)
    (2, 12, 8, 3, 3, 1, 1),     # enough positions for a filter gradient in several slices
    # Batches of 4 and 8: the kernels' 16-byte loads along the images (conv.cu)
    (3, 15, 4, 8, 5, 4, 0),     # conv1's kind: stride 4 and an overhang
    # Tiles along the filters or channels (conv.py tile_side): 48, 64 or 128, whichever pads least
    (6, 7, 4, 130, 3, 2, 2),    # three tiles of 48 filters; a strided gather with padding
    (130, 4, 8, 6, 3, 1, 1),    # three tiles of 48 channels, ten full tiles of taps
    (60, 5, 4, 60, 3, 1, 1),    # tiles of 64 in every pass
    FULL_TILES,
    # Each tile's scalar loads too (a batch of 3), and filters of 1 and 11 (conv1's)
    (60, 5, 3, 62, 3, 1, 1),    # tiles of 64 in every pass
    (128, 4, 3, 120, 1, 1, 0),  # full tiles in every pass, 1 × 1 filters
    (3, 19, 4, 8, 11, 4, 2),    # conv1's filter size and stride, padding 2
    # Images and channels in 16-byte groups, the weights' rows not (5 filters; 3·3·5 along the
    # input gradient's k): forward and the input gradient must take their scalar loops, whose
    # 16-byte loads would be misaligned (a GPU faults; a host may read the right values)
    (8, 6, 4, 5, 3, 1, 1),
]


def alexnet_cases(kind):
    """The default network's tower-a layers of one type, with their per-image input shapes."""
    model = alexnet.build_model("2012")
    shapes = graph.input_shapes(model)
    return [(layer, shapes[layer.name][0]) for layer in model.layers
            if isinstance(layer, kind) and layer.tower == "a"]


LARGE = pytest.mark.large   # AlexNet's real shapes: see skip_if_large
ALEXNET_CONVS = [pytest.param((shape[0], shape[1], 128, layer.channels, layer.filter_size,
                               layer.stride, layer.pad), marks=LARGE, id=layer.name)
                 for layer, shape in alexnet_cases(alexnet.Conv)]


def conv_inputs(rng, case):
    channels, size, images, filters, filter_size, stride, pad = case
    x = rng.normal(size=(channels, size, size, images))
    w = rng.normal(size=(channels, filter_size, filter_size, filters))
    out = reference.conv_forward(x, w, stride=stride, pad=pad)
    return x, w, rng.normal(size=out.shape)


def skip_if_large(request):
    """A `large` case on the emulator is skipped unless asked (targets.skip_large_on_emulator)."""
    if request.node.get_closest_marker("large"):
        skip_large_on_emulator(request.node.callspec.params["backend"])


@pytest.mark.parametrize("case", CONV_CASES + ALEXNET_CONVS)
def test_conv(backend, case, rng, request):
    skip_if_large(request)
    channels, size, images, filters, filter_size, stride, pad = case
    x, w, dy = conv_inputs(rng, case)
    sums = dict(backend=backend, floor=SEQUENTIAL_SUM_FLOOR)
    assert_as_accurate("conv_forward", (x, w), stride=stride, pad=pad, **sums)
    assert_as_accurate("conv_backward_input", (dy, w), input_size=size, stride=stride, pad=pad,
                       **sums)
    first = assert_as_accurate("conv_backward_filters", (dy, x), filter_size=filter_size,
                               stride=stride, pad=pad, **sums)
    again = call(backend, "conv_backward_filters", dy, x, filter_size=filter_size, stride=stride,
                 pad=pad)
    assert np.array_equal(first[0], again[0]), "the filter gradient differs between two runs"
    assert_as_accurate("bias_backward", (dy,), backend=backend)


# (x's shape (C, H, W, N), filters, filter size, stride, pad) with H ≠ W: the network's maps are
# square, so only these tell the kernels' rows from their columns. The first is 3 × 3 at stride
# 1, which Winograd's algorithm serves too.
NON_SQUARE_CONVS = [((3, 9, 6, 2), 4, 3, 1, 1),
                    ((3, 11, 15, 4), 8, 5, 4, 0)]   # stride 4, overhang, 16-byte loads


@pytest.mark.parametrize("x_shape, filters, filter_size, stride, pad", NON_SQUARE_CONVS)
def test_conv_of_a_non_square_input(backend, x_shape, filters, filter_size, stride, pad, rng):
    x = rng.normal(size=x_shape)
    w = rng.normal(size=(x_shape[0], filter_size, filter_size, filters))
    dy = rng.normal(size=reference.conv_forward(x, w, stride=stride, pad=pad).shape)
    assert dy.shape[1] != dy.shape[2]
    plans = [({}, SEQUENTIAL_SUM_FLOOR)] + [
        (plan, WINOGRAD_FLOORS[plan["winograd_tile"]]) for plan in WINOGRAD_PLANS
        if winograd_applies(filter_size, stride, pad)]
    for plan, floor in plans:
        sums = dict(backend=backend, plan=plan, floor=floor)
        assert_as_accurate("conv_forward", (x, w), stride=stride, pad=pad, **sums)
        assert_as_accurate("conv_backward_input", (dy, w), input_size=x_shape[1:3], stride=stride,
                           pad=pad, **sums)
        assert_as_accurate("conv_backward_filters", (dy, x), filter_size=filter_size,
                           stride=stride, pad=pad, **sums)


def test_conv_filter_gradient_at_a_stride_past_the_window_tables_coordinates(backend, rng):
    """A stride of 2¹⁶ puts the second window's top at row 65536, past the map, which the vector
    loop's table would keep as a short (0, inside it), reading channel c + 16's first row for
    channel c's. Past its bounds (windows_fit_table) the kernel takes the scalar loads. Only the
    first window lies in the map, so dw is that window's products alone (the reference cannot
    pad so far)."""
    x = rng.normal(size=(17, 4096, 1, 4)).astype(np.float32)   # float, batch 4: the vector loop
    dy = rng.normal(size=(2, 2, 1, 4)).astype(np.float32)
    dw = call(backend, "conv_backward_filters", dy, x, filter_size=1, stride=2 ** 16, pad=0)[0]
    first_window = np.einsum("fn,cn->cf", dy[:, 0, 0].astype(np.float64),
                             x[:, 0, 0].astype(np.float64))
    np.testing.assert_allclose(dw[:, 0, 0], first_window, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op, arguments, sizes", [
    ("conv_forward", ((1, 8, 8, 2), (1, 3, 3, 2)), {"stride": 2.0, "pad": 0}),
    ("conv_forward", ((1, 8, 8, 2), (1, 3, 3, 2)), {"stride": 1, "pad": 0.5}),
    ("conv_backward_filters", ((2, 3, 3, 2), (1, 8, 8, 2)), {"filter_size": 3, "stride": 2.0,
                                                              "pad": 0}),
    ("conv_backward_input", ((2, 3, 3, 2), (1, 3, 3, 2)), {"input_size": 8, "stride": 2.0,
                                                            "pad": 0}),
    ("maxpool_forward", ((1, 8, 8, 2),), {"size": 3, "stride": 2.0})])
def test_a_float_stride_or_padding_is_refused_by_name(backend, op, arguments, sizes):
    """A float stride gave a float output size: a TypeError inside the launcher (or, in the
    reference, a float shape). Both refuse it, naming it, before any work."""
    wrong = next(f"{name}={value!r}" for name, value in sizes.items()
                 if not isinstance(value, int))
    arrays = [np.zeros(shape) for shape in arguments]
    for run in (lambda: reference_call(op, *arrays, **sizes),
                lambda: call(backend, op, *arrays, **sizes)):
        with pytest.raises(ValueError, match=rf"needs integer sizes; got {re.escape(wrong)}"):
            run()


@pytest.mark.parametrize("stride, pad", [(2 ** 31, 0), (1, 2 ** 31), (2 ** 30, 2 ** 29)])
def test_conv_refuses_windows_past_the_kernels_32_bit_coordinates(backend, stride, pad):
    """A window's place oy·stride − pad is an int in the kernels: a stride or padding that would
    take it past 2³¹ − 1 is refused by name, in every pass, before any kernel argument is made.
    (The input gradient checks dy against the input first: no dy is the 2³² + 6 rows of the
    padded case.)"""
    x, w = np.zeros((1, 8, 8, 4)), np.zeros((1, 3, 3, 2))
    message = rf"conv stride {stride} and pad {pad} on an input of 8 × 8: the kernels' 32-bit"
    with pytest.raises(ValueError, match=message):
        call(backend, "conv_forward", x, w, stride=stride, pad=pad)
    with pytest.raises(ValueError, match=message):
        call(backend, "conv_backward_filters", np.zeros((2, 3, 3, 4)), x, filter_size=3,
             stride=stride, pad=pad)
    dy = np.zeros((2, 2, 2, 4))   # the output of the large stride's two windows a side
    with pytest.raises(ValueError, match=message if pad == 0 else
                       r"conv gradient has shape \(2, 2, 2, 4\); an input of 8 × 8"):
        call(backend, "conv_backward_input", dy, w, input_size=8, stride=stride, pad=pad)


class PlanRecorder(Launcher):
    """Notes each launch's kernel, grid and arguments, and runs nothing."""
    path = "recorder"

    def __init__(self):
        super().__init__()
        self.launches = []

    def launch(self, kernel, dtype, grid, block, args):
        self.launches.append((kernel, grid, args))


CONV_PASSES = ("conv_forward", "conv_backward_input", "conv_backward_filters")
CONV_PASS_NAMES = ("forward", "backward_input", "backward_filters")   # conv.pass_plan's


def record_conv_launches(case, conv_algorithm=None, **plan):
    """(kernel, grid, args) of every launch of the case's three passes (with `plan`'s overrides)
    on a backend preferring `conv_algorithm`, launched on nothing."""
    channels, size, images, filters, filter_size, stride, pad = case
    recorder = PlanRecorder()
    backend = CudaBackend(recorder, conv_algorithm=conv_algorithm)
    x, w = np.empty((channels, size, size, images)), np.empty((channels, filter_size,
                                                               filter_size, filters))
    y = backend.conv_forward(x, w, stride=stride, pad=pad, **plan)
    backend.conv_backward_input(y, w, input_size=size, stride=stride, pad=pad, **plan)
    backend.conv_backward_filters(y, x, filter_size=filter_size, stride=stride, pad=pad, **plan)
    return recorder.launches


def conv_plans(case, **plan):
    """{pass: (tile, splits)} the launchers run for the case (with `plan`'s overrides): the
    kernels' last argument is the tile, the grid's third size the slices."""
    return {kernel: (int(args[-1]), grid[2]) for kernel, grid, args in
            record_conv_launches(case, **plan) if kernel in CONV_PASSES}


def test_conv_cases_cover_narrow_and_full_tiles_and_split_depths_in_every_pass():
    plans = [conv_plans(case) for case in CONV_CASES]
    for kernel in CONV_PASSES:
        assert {plan[kernel][0] for plan in plans} == set(SIDES), kernel
        splits = {plan[kernel][1] for plan in plans}
        assert 1 in splits and max(splits) > 1, kernel


def test_conv_plans_chosen_by_the_caller_are_run_as_given_or_refused():
    case = FULL_TILES
    for tile in SIDES:
        assert set(conv_plans(case, tile=tile, splits=3).values()) == {(tile, 3)}
    # 5 slices of whole steps of 8 would leave one empty: the nearest count that does not
    assert conv_plans((64, 2, 4, 3, 1, 1, 0), splits=5)["conv_forward"][1] == 4
    for plan, complaint in (({"tile": 32}, "tiles are"), ({"splits": 0}, "at least 1"),
                            ({"splits": 2.5}, "an integer")):
        with pytest.raises(ValueError, match=complaint):
            conv_plans(case, **plan)


@pytest.mark.parametrize("tile", SIDES)
@pytest.mark.parametrize("splits", [1, 3])
def test_conv_plans_chosen_by_the_caller_agree_with_the_reference(backend, tile, splits, rng):
    """tools/bench_kernels.py times plans other than the launchers' own."""
    case = FULL_TILES
    channels, size, images, filters, filter_size, stride, pad = case
    x, w, dy = conv_inputs(rng, case)
    plan = dict(tile=tile, splits=splits)
    sums = dict(backend=backend, plan=plan, floor=SEQUENTIAL_SUM_FLOOR)
    assert_as_accurate("conv_forward", (x, w), stride=stride, pad=pad, **sums)
    assert_as_accurate("conv_backward_input", (dy, w), input_size=size, stride=stride, pad=pad,
                       **sums)
    assert_as_accurate("conv_backward_filters", (dy, x), filter_size=filter_size, stride=stride,
                       pad=pad, **sums)


# conv.cu's vector loops read each k's window entry from a ring of two chunks of kConvTableK
# (256) entries, refilled chunk by chunk: in one slice (splits=1), this case's 576 k (forward,
# input gradient) and 1024 (filter gradient) pass through three and four chunks.
DEEP_SLICE = (64, 16, 4, 64, 3, 1, 1)


def test_conv_slices_deeper_than_two_chunks_of_the_window_table(backend, rng):
    case = DEEP_SLICE
    x, w, dy = conv_inputs(rng, case)
    channels, size, images, filters, filter_size, stride, pad = case
    sums = dict(backend=backend, plan=dict(splits=1), floor=SEQUENTIAL_SUM_FLOOR)
    assert_as_accurate("conv_forward", (x, w), stride=stride, pad=pad, **sums)
    assert_as_accurate("conv_backward_input", (dy, w), input_size=size, stride=stride, pad=pad,
                       **sums)
    assert_as_accurate("conv_backward_filters", (dy, x), filter_size=filter_size, stride=stride,
                       pad=pad, **sums)


# Winograd's plan (conv.py, winograd.cu): 3 × 3 filters at stride 1 and padding 0 to 2, output
# sides odd (a last tile half outside) and even, batches of 1 and 3 (scalar loads) and 4 and 8
# (vector loads), every tile side and split depths in both of its products; each case for each
# output tile m.
WINOGRAD = {"algorithm": "winograd"}
WINOGRAD_PLANS = [dict(WINOGRAD, winograd_tile=side) for side in WINOGRAD_TILES]
WINOGRAD_PLAN_IDS = [f"F({side}x{side})" for side in WINOGRAD_TILES]
WINOGRAD_CASES = [
    (5, 9, 1, 7, 3, 1, 1),      # batch 1, an output of 9: a last row and column of tiles half out
    (4, 6, 3, 70, 3, 1, 0),     # padding 0, two tiles of 48 filters; the input gradient's pad 2
    (6, 7, 4, 9, 3, 1, 2),      # padding 2: an output of 9, the input gradient's padding 0
    (130, 4, 8, 6, 3, 1, 1),    # three tiles of 48 channels (input and filter gradients)
    (60, 5, 4, 60, 3, 1, 1),    # tiles of 64 in every product
    FULL_TILES,                 # full tiles of 128
    (2, 24, 8, 3, 3, 1, 1),     # a filter gradient over enough tiles for several slices
    (2, 20, 4, 3, 3, 1, 0),     # padding 0: the input gradient's 400 positions, 324 forward
]
ALEXNET_WINOGRAD = [param for param, (layer, _) in zip(ALEXNET_CONVS, alexnet_cases(alexnet.Conv))
                    if winograd_applies(layer.filter_size, layer.stride, layer.pad)]


@pytest.mark.parametrize("plan", WINOGRAD_PLANS, ids=WINOGRAD_PLAN_IDS)
@pytest.mark.parametrize("case", WINOGRAD_CASES + ALEXNET_WINOGRAD)
def test_conv_by_winograd(backend, case, plan, rng, request):
    skip_if_large(request)
    channels, size, images, filters, filter_size, stride, pad = case
    x, w, dy = conv_inputs(rng, case)
    sums = dict(backend=backend, plan=plan, floor=WINOGRAD_FLOORS[plan["winograd_tile"]])
    assert_as_accurate("conv_forward", (x, w), stride=stride, pad=pad, **sums)
    assert_as_accurate("conv_backward_input", (dy, w), input_size=size, stride=stride, pad=pad,
                       **sums)
    first = assert_as_accurate("conv_backward_filters", (dy, x), filter_size=filter_size,
                               stride=stride, pad=pad, **sums)
    again = call(backend, "conv_backward_filters", dy, x, filter_size=filter_size, stride=stride,
                 pad=pad, **plan)
    assert np.array_equal(first[0], again[0]), "the filter gradient differs between two runs"


def test_winograd_tile_is_the_one_of_fewer_multiplications():
    """m = 4 where its (m + 2)² = 36 points a tile, over fewer tiles, multiply less than m = 2's
    16 (AlexNet's 13: 16 tiles against 49); m = 2 where they tie (5 and 6: 9 tiles against 4) or
    a 4 × 4 tile would mostly lie outside. The input gradient's output is the input."""
    def side(pass_name, size, pad=1):
        return pass_plan(pass_name, (8, size, size, 2), 8, 3, 1, pad,
                         algorithm="winograd").winograd_tile
    sizes = (1, 2, 3, 4, 5, 6, 7, 13)
    assert [side("forward", size) for size in sizes] == [2, 2, 4, 4, 2, 2, 4, 4]
    assert side("forward", 6, pad=0) == 4 and side("backward_filters", 6, pad=0) == 4   # 4 × 4
    assert side("backward_input", 6, pad=0) == 2                                        # 6 × 6
    assert pass_plan("forward", (8, 13, 13, 2), 8, 3, 1, 1).winograd_tile is None


# ---- shapes drawn at random: each run its own (the rng fixture's seed replays them) ---------

# Extents at and around every tile side, and small ones: a tile padded by one, full or one short.
RANDOM_EXTENTS = sorted({1, 2, 3, 5, 7, 16, 96} | {side + d for side in SIDES for d in (-1, 0, 1)})
# The most multiply-adds a drawn pass does (its tiles pad small extents and do more): 20 draws
# took 3 to 5 s on the emulator on this project's 2-core machine.
RANDOM_MOST_MULTIPLY_ADDS = 3_000_000
# The windows Winograd's algorithm takes (conv.winograd_applies).
WINOGRAD_WINDOWS = dict(filter_sizes=(3,), strides=(1,), pads=range(3))


def random_conv_case(rng):
    """(case as CONV_CASES, plan): any filter size, stride and padding the shapes allow, a third
    of them Winograd's 3 × 3 at stride 1 (its output tile drawn); the plan's tile and slices the
    launcher's or drawn."""
    while True:
        winograd = rng.random() < 1 / 3
        size, _, filter_size, stride, pad = draws.conv_window(
            rng, side=24, **(WINOGRAD_WINDOWS if winograd else {}))
        images = int(rng.choice([1, 2, 3, 4, 5, 8, 12, 16]))
        channels, filters = (int(e) for e in rng.choice(RANDOM_EXTENTS, 2))
        out = conv_output_size(size, filter_size, stride, pad)
        if channels * filters * out ** 2 * images * filter_size ** 2 <= RANDOM_MOST_MULTIPLY_ADDS:
            break
    plan = dict(WINOGRAD, winograd_tile=int(rng.choice(WINOGRAD_TILES))) if winograd else {}
    if rng.random() < 0.5:
        plan["tile"] = int(rng.choice(SIDES))
    if rng.random() < 0.5:
        plan["splits"] = int(rng.integers(1, 6))
    return (channels, size, images, filters, filter_size, stride, pad), plan


def test_conv_of_random_shapes(backend, rng):
    """Shapes past the fixed cases' choices: each failure names its case and plan."""
    for _ in range(draws.DRAWS):
        case, plan = random_conv_case(rng)
        channels, size, images, filters, filter_size, stride, pad = case
        x, w, dy = conv_inputs(rng, case)
        floor = WINOGRAD_FLOORS[plan["winograd_tile"]] if plan.get("algorithm") else \
            SEQUENTIAL_SUM_FLOOR
        sums = dict(backend=backend, plan=plan, floor=floor)
        with named_on_failure(f"case {case}, plan {plan}"):
            assert_as_accurate("conv_forward", (x, w), stride=stride, pad=pad, **sums)
            assert_as_accurate("conv_backward_input", (dy, w), input_size=size, stride=stride,
                               pad=pad, **sums)
            assert_as_accurate("conv_backward_filters", (dy, x), filter_size=filter_size,
                               stride=stride, pad=pad, **sums)
            assert_as_accurate("bias_backward", (dy,), backend=backend)


WINOGRAD_PRODUCTS = ("winograd_product", "winograd_filter_product")


@pytest.mark.parametrize("plan", WINOGRAD_PLANS, ids=WINOGRAD_PLAN_IDS)
def test_winograd_cases_cover_every_tile_side_and_split_depths_in_both_products(plan):
    plans = {}
    for case in WINOGRAD_CASES:
        for kernel, grid, args in record_conv_launches(case, **plan):
            if kernel in WINOGRAD_PRODUCTS:   # ..., tile, points
                plans.setdefault(kernel, set()).add((int(args[-2]), grid[2] // int(args[-1])))
    assert set(plans) == set(WINOGRAD_PRODUCTS)
    for kernel, seen in plans.items():
        assert {tile for tile, _ in seen} == set(SIDES), kernel
        assert {splits > 1 for _, splits in seen} == {False, True}, kernel


def test_a_backend_preferring_winograd_runs_it_where_it_serves_and_the_gemms_elsewhere():
    launched = {}
    for case in (FULL_TILES, CONV_CASES[0], CONV_CASES[2]):   # 3 × 3/1; 5 × 5/4; 5 × 5/2
        launches = record_conv_launches(case, conv_algorithm="winograd")
        launched[case[4], case[5]] = {kernel for kernel, _, _ in launches}
    assert set(WINOGRAD_PRODUCTS) <= launched[3, 1] and not launched[3, 1] & set(CONV_PASSES)
    for shape in ((5, 4), (5, 2)):
        assert set(CONV_PASSES) <= launched[shape] and not launched[shape] & set(WINOGRAD_PRODUCTS)
    with pytest.raises(ValueError, match="one of"):
        CudaBackend(PlanRecorder(), conv_algorithm="fft")


def test_plans_split_the_depth_only_as_far_as_the_grid_has_room():
    """Slices of the depth add blocks where the tiles leave the GPU idle (TARGET_BLOCKS): a pass
    split in slices keeps its whole grid, Winograd's (m + 2)² products counted, within that."""
    split = 0
    for layer, image_shape in alexnet_cases(alexnet.Conv):
        shape = (*image_shape, 128)
        winograd = winograd_applies(layer.filter_size, layer.stride, layer.pad)
        for plan in [{}] + (WINOGRAD_PLANS if winograd else []):
            for pass_name in CONV_PASS_NAMES:
                chosen = pass_plan(pass_name, shape, layer.channels, layer.filter_size,
                                   layer.stride, layer.pad, **plan)
                if chosen.splits > 1:
                    split += 1
                    assert np.prod(chosen.grid) <= TARGET_BLOCKS, (layer.name, plan, pass_name)
    assert split >= 3


# The default network's plans at batch 128 ({layer: (tile, splits) of the forward pass, the
# input gradient, the filter gradient}, Winograd's for each output tile m, the launcher's m being
# 4 for all three layers), as conv.py describes them: a plan decides the order of the sums, so
# the results' bits, and the times bench/results reports.
DEFAULT_PLANS = {
    "implicit": {"conv1a": [(48, 1), (48, 1), (48, 176)], "conv2a": [(128, 1), (48, 1), (128, 52)],
                 "conv3a": [(64, 1), (128, 3), (64, 19)], "conv4a": [(64, 1), (64, 1), (64, 12)],
                 "conv5a": [(128, 3), (64, 1), (128, 37)]},
    "winograd, m = 2": {"conv3a": [(64, 1), (128, 1), (64, 11)],
                        "conv4a": [(64, 1), (64, 1), (64, 5)],
                        "conv5a": [(128, 1), (64, 1), (128, 16)]},
    "winograd, m = 4": {"conv3a": [(64, 1), (128, 1), (64, 4)],
                        "conv4a": [(64, 1), (64, 1), (64, 2)],
                        "conv5a": [(128, 1), (64, 1), (128, 7)]}}


def test_the_default_networks_plans_are_the_documented_ones():
    plans = {name: {} for name in DEFAULT_PLANS}
    launchers_sides = set()
    for layer, image_shape in alexnet_cases(alexnet.Conv):
        window = (layer.filter_size, layer.stride, layer.pad)
        plan = functools.partial(pass_plan, x_shape=(*image_shape, 128), filters=layer.channels,
                                 size=layer.filter_size, stride=layer.stride, pad=layer.pad)
        plans["implicit"][layer.name] = [plan(name)[:2] for name in CONV_PASS_NAMES]
        if winograd_applies(*window):
            for side in WINOGRAD_TILES:
                plans[f"winograd, m = {side}"][layer.name] = [
                    plan(name, algorithm="winograd", winograd_tile=side)[:2]
                    for name in CONV_PASS_NAMES]
            launchers_sides |= {plan(name, algorithm="winograd").winograd_tile
                                for name in CONV_PASS_NAMES}
    assert plans == DEFAULT_PLANS
    assert launchers_sides == {4}


def shaped(shape, dtype=np.float32):
    """An array's shape, size and type without its memory: operands too large to allocate here."""
    return types.SimpleNamespace(shape=shape, ndim=len(shape), size=int(np.prod(shape)),
                                 dtype=np.dtype(dtype),
                                 flags=types.SimpleNamespace(c_contiguous=True))


class ShapeRecorder(PlanRecorder):
    def empty(self, shape, dtype):
        return shaped(shape, dtype)


def test_a_plan_whose_partial_outputs_pass_the_kernels_indices_is_refused():
    """An output of 2³⁰ elements fits the kernels' 32-bit indices; its two slices' partial
    outputs (a plan tools/bench_kernels.py --plans asks for) hold 2³¹, and are refused."""
    backend = CudaBackend(ShapeRecorder())
    x, w = shaped((3, 66, 66, 4096)), shaped((3, 3, 3, 64))
    assert backend.conv_forward(x, w, stride=1, pad=0, splits=1).size == 2 ** 30
    with pytest.raises(ValueError, match="conv_forward: target has 2147483648 elements, past"):
        backend.conv_forward(x, w, stride=1, pad=0, splits=2)


def test_a_filter_gradient_of_more_taps_than_the_grid_holds_is_refused_by_its_taps():
    """2²⁰ channels × 9 taps are 73728 tiles of 128 rows: past CUDA's 65535 rows of blocks. The
    refusal names the channels and taps, not a grid the caller never chose."""
    backend = CudaBackend(ShapeRecorder())
    x, dy = shaped((2 ** 20, 8, 8, 1)), shaped((2, 8, 8, 1))
    with pytest.raises(ValueError, match=r"conv backward_filters pass: 9437184 input channels × "
                                         r"filter taps make 73728 tiles of rows, past the 65535"):
        backend.conv_backward_filters(dy, x, filter_size=3, stride=1, pad=1)


def test_winograd_refuses_operands_past_the_kernels_indices():
    """Each output tile's transformed operands, (m + 2)² × positions × channels, and products,
    (m + 2)² × filters × positions, are refused before any transform runs: m = 2's operands
    16 × (49 · 11000) × 256 elements; its products 16 × 384 × (49 · 8000), where m = 4's,
    36 × 384 × (16 · 8000), fit; m = 4's 36 × 384 × (16 · 10000)."""
    with pytest.raises(ValueError, match="transformed operands hold 2207744000 elements and its "
                                         "products 551936000, past"):
        pass_plan("forward", (256, 13, 13, 11000), 64, 3, 1, 1, algorithm="winograd",
                  winograd_tile=2)
    with pytest.raises(ValueError, match="operands hold 1605632000 elements and its products "
                                         "2408448000, past"):
        pass_plan("forward", (256, 13, 13, 8000), 384, 3, 1, 1, algorithm="winograd",
                  winograd_tile=2)
    assert pass_plan("forward", (256, 13, 13, 8000), 384, 3, 1, 1,
                     algorithm="winograd").winograd_tile == 4
    with pytest.raises(ValueError, match="operands hold 1474560000 elements and its products "
                                         "2211840000, past"):
        pass_plan("forward", (256, 13, 13, 10000), 384, 3, 1, 1, algorithm="winograd")


@pytest.mark.parametrize("case, complaint", [
    ((3, 14, 3, 5, 5, 4, 0),
     "3 × 3 filters at stride 1 and padding 0 to 2; got 5 × 5 at stride 4"),
    ((3, 9, 2, 4, 3, 2, 1), "got 3 × 3 at stride 2"),
    ((3, 9, 2, 4, 3, 1, 3), "padding 3")])
def test_winograd_refuses_what_it_cannot_compute(case, complaint):
    with pytest.raises(ValueError, match=complaint):
        record_conv_launches(case, **WINOGRAD)
    with pytest.raises(ValueError, match=r"conv winograd_tile 3: the kernels' are \(2, 4\)"):
        record_conv_launches(FULL_TILES, **WINOGRAD, winograd_tile=3)
    with pytest.raises(ValueError, match="conv winograd_tile 4: for algorithm winograd only, not "
                                         "implicit"):
        record_conv_launches(FULL_TILES, winograd_tile=4)
    with pytest.raises(ValueError, match="one of"):
        record_conv_launches(FULL_TILES, algorithm="fft")


@pytest.mark.parametrize("case", CONV_CASES[:3])
def test_conv_float64_kernels_pass_finite_differences(backend, case, rng):
    channels, size, images, filters, filter_size, stride, pad = case
    x, w, projection = conv_inputs(rng, case)
    forward = lambda: call(backend, "conv_forward", x, w, stride=stride, pad=pad)[0]  # noqa: E731
    analytic = {
        "x": call(backend, "conv_backward_input", projection, w, input_size=size, stride=stride,
                  pad=pad)[0],
        "w": call(backend, "conv_backward_filters", projection, x, filter_size=filter_size,
                  stride=stride, pad=pad)[0]}
    check_gradients(projection_loss(forward, projection), {"x": x, "w": w}, analytic, rng,
                    samples=12).assert_ok()


# ---- response normalization ---------------------------------------------------------------

NORM_CASES = [(3, 5, 5, 2), (7, 4, 4, 1), (16, 3, 3, 3), (2, 2, 2, 5),
              (3, 7, 4, 2), (2, 3, 6, 1)]   # H ≠ W: rows and columns told apart


@pytest.mark.parametrize("kind", ["crossmap", "samemap"])
@pytest.mark.parametrize("params", [CODE, PAPER, STRONG, SAMEMAP],
                         ids=["code", "paper", "strong", "cnorm2"])
@pytest.mark.parametrize("shape", NORM_CASES)
def test_norm(backend, kind, params, shape, rng):
    x = rng.normal(0, 30 if params in (CODE, PAPER) else 1, shape)
    y, denoms = assert_as_accurate(f"{kind}_norm_forward", (x, params), backend=backend)
    dy = rng.normal(size=shape)
    assert_as_accurate(f"{kind}_norm_backward", (dy, x, y, denoms, params), backend=backend)


@pytest.mark.parametrize("kind", ["crossmap", "samemap"])
@pytest.mark.parametrize("size", [1, 7, 9])
def test_norm_takes_every_window_size_it_is_built_for(backend, kind, size, rng):
    """norm.cu compiles its kernels for each odd window up to kMaxNormSize (9); test_norm covers
    3 and 5. Shapes with more and fewer channels, rows and columns than the window."""
    params = NormParams(size=size, k=2.0, alpha=1e-2, beta=0.75, alpha_convention="paper")
    for shape in ((12, 11, 10, 4), (4, 2, 3, 2)):
        x = rng.normal(0, 3, shape)
        y, denoms = assert_as_accurate(f"{kind}_norm_forward", (x, params), backend=backend)
        assert_as_accurate(f"{kind}_norm_backward", (rng.normal(size=shape), x, y, denoms,
                                                      params), backend=backend)


@pytest.mark.parametrize("kind", ["crossmap", "samemap"])
def test_norm_refuses_a_window_it_is_not_built_for(backend, kind):
    params = NormParams(size=11, k=2.0, alpha=1e-2, beta=0.75, alpha_convention="paper")
    x = backend.from_host(np.ones((12, 2, 2, 2), np.float32))
    with pytest.raises(ValueError, match="windows of at most 9; got size 11"):
        getattr(backend, f"{kind}_norm_forward")(x, params)


ALEXNET_NORMS = [pytest.param(layer, (*shape, 128), marks=LARGE, id=layer.name)
                 for kind in (alexnet.CrossMapNorm, alexnet.SameMapNorm)
                 for layer, shape in alexnet_cases(kind)]


@pytest.mark.parametrize("layer, shape", ALEXNET_NORMS)
def test_norm_alexnet_shapes(backend, layer, shape, rng, request):
    skip_if_large(request)
    kind = "crossmap" if isinstance(layer, alexnet.CrossMapNorm) else "samemap"
    x = np.maximum(rng.normal(0, 30, shape), 0)   # what follows a ReLU
    y, denoms = assert_as_accurate(f"{kind}_norm_forward", (x, layer.params), backend=backend)
    assert_as_accurate(f"{kind}_norm_backward", (rng.normal(size=shape), x, y, denoms,
                                                 layer.params), backend=backend)


def test_norm_of_random_shapes(backend, rng):
    """Any channels, rows, columns and batch, every window the kernels are built for, either
    convention of alpha, inputs signed or as after a ReLU."""
    for _ in range(draws.DRAWS):
        shape, params = draws.activation_shape(rng), draws.norm_params(rng)
        kind = str(rng.choice(["crossmap", "samemap"]))
        x = rng.normal(0, float(rng.choice([1, 3, 30])), shape)
        x = np.maximum(x, 0) if rng.random() < 0.5 else x
        with named_on_failure(f"{kind}, shape {shape}, {params}"):
            y, denoms = assert_as_accurate(f"{kind}_norm_forward", (x, params), backend=backend)
            assert_as_accurate(f"{kind}_norm_backward", (rng.normal(size=shape), x, y, denoms,
                                                         params), backend=backend)


def test_emulated_norm_power_errs_as_the_gpus_may(backend, rng):
    """The normalization's d^(−β) is __powf on a GPU, 2^(−β·log2 d) through approximate log2 and
    exp2 (kernels/common.cuh, fast_power); the emulator computes the same formula with the CUDA
    Programming Guide's bound on each error put on its host's log2f and exp2f, so that test_norm's
    tolerances, run in CI on the emulator, hold for the GPU's error. Against the formula on
    exact-rounding functions (NumPy's in float32, from the kernel's own d), the emulator's outputs
    lie typically a step or more away, where the host's formula would lie at the same float. On a
    GPU, test_norm measures __powf itself."""
    if not isinstance(backend.launcher, Emulated):
        pytest.skip("the emulator's model of __powf; test_norm measures the GPU's own")
    for kind in ("crossmap", "samemap"):
        x = rng.normal(0, 30, (8, 6, 6, 4)).astype(np.float32)
        y, denoms = call(backend, f"{kind}_norm_forward", x, CODE)
        rounded_once = x * np.exp2(-np.float32(CODE.beta) * np.log2(denoms))
        steps = steps_from(rounded_once, y)
        assert np.median(np.abs(steps)) >= 1, f"{kind}: the emulator's power is all but exact"


@pytest.mark.parametrize("kind", ["crossmap", "samemap"])
def test_norm_float64_kernels_pass_finite_differences(backend, kind, rng):
    x = rng.normal(0, 1, (6, 4, 4, 2))
    projection = rng.normal(size=x.shape)
    y, denoms = call(backend, f"{kind}_norm_forward", x, STRONG)
    analytic = {"x": call(backend, f"{kind}_norm_backward", projection, x, y, denoms, STRONG)[0]}
    forward = lambda: call(backend, f"{kind}_norm_forward", x, STRONG)[0]  # noqa: E731
    check_gradients(projection_loss(forward, projection), {"x": x}, analytic, rng,
                    samples=24).assert_ok()


# ---- max pooling --------------------------------------------------------------------------

# (shape, size, stride, overhang); without overhang, the pixels past the last whole window.
POOL_CASES = [((3, 7, 7, 2), 3, 2, True), ((3, 8, 8, 3), 3, 2, True), ((2, 6, 5, 1), 2, 2, True),
              ((4, 9, 9, 2), 3, 1, True), ((2, 9, 6, 2), 3, 2, True), ((2, 7, 9, 3), 2, 2, False),
              ((3, 8, 8, 2), 3, 2, False)]
ALEXNET_POOLS = [pytest.param((*shape, 128), layer.size, layer.stride, layer.overhang,
                              marks=LARGE, id=layer.name)
                 for layer, shape in alexnet_cases(alexnet.MaxPool)]


@pytest.mark.parametrize("shape, size, stride, overhang", POOL_CASES + ALEXNET_POOLS)
def test_pool(backend, shape, size, stride, overhang, rng, request):
    skip_if_large(request)
    x = rng.normal(size=shape)
    (y,) = assert_as_accurate("maxpool_forward", (x,), size=size, stride=stride,
                              overhang=overhang, backend=backend)
    assert_as_accurate("maxpool_backward", (rng.normal(size=y.shape), x, y), size=size,
                       stride=stride, overhang=overhang, backend=backend)


def test_pool_of_random_shapes(backend, rng):
    """Any shape, window and stride up to the window's side, either edge rule, inputs with and
    without ties (draws.pool_input)."""
    for _ in range(draws.DRAWS):
        shape = draws.activation_shape(rng)
        size, stride, overhang = draws.pool_window(rng, shape)
        x, ties = draws.pool_input(rng, shape)
        with named_on_failure(f"shape {shape}, size {size}, stride {stride}, "
                              f"overhang {overhang}, ties {ties}"):
            (y,) = assert_as_accurate("maxpool_forward", (x,), size=size, stride=stride,
                                      overhang=overhang, backend=backend)
            assert_as_accurate("maxpool_backward", (rng.normal(size=y.shape), x, y), size=size,
                               stride=stride, overhang=overhang, backend=backend)


def test_pool_ties_follow_the_reference(backend, rng):
    """Small integers make many ties: each tied maximum gets its window's whole gradient."""
    x = rng.integers(0, 3, (3, 8, 8, 2)).astype(np.float64)
    y = reference.maxpool_forward(x, size=3, stride=2)
    dy = rng.normal(size=y.shape)
    want = reference.maxpool_backward(dy, x, y, size=3, stride=2)
    got = call(backend, "maxpool_backward", dy, x, y, size=3, stride=2)[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 7, 7, 2), (2, 8, 8, 2)])
def test_pool_of_all_ties_follows_the_reference(backend, shape, rng):
    """Every value tied (dead ReLU units): each element gets the gradient of every window it
    lies in, up to the last row and column, whose windows overhang or not."""
    x = np.zeros(shape)
    y = reference.maxpool_forward(x, size=3, stride=2)
    dy = rng.normal(size=y.shape)
    want = reference.maxpool_backward(dy, x, y, size=3, stride=2)
    got = call(backend, "maxpool_backward", dy, x, y, size=3, stride=2)[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_pool_float64_kernels_pass_finite_differences(backend, rng):
    x = rng.normal(size=(2, 7, 7, 2))    # continuous values: no ties
    projection = rng.normal(size=reference.maxpool_forward(x, size=3, stride=2).shape)
    y = call(backend, "maxpool_forward", x, size=3, stride=2)[0]
    analytic = {"x": call(backend, "maxpool_backward", projection, x, y, size=3, stride=2)[0]}
    forward = lambda: call(backend, "maxpool_forward", x, size=3, stride=2)[0]  # noqa: E731
    check_gradients(projection_loss(forward, projection), {"x": x}, analytic, rng, samples=30,
                    step_around_kinks=True).assert_ok(max_kink_fraction=0.1)


# ---- elementwise, softmax, SGD --------------------------------------------------------------

def alexnet_elementwise_shapes():
    """Tower a's outputs of conv1 (the largest activation) and fc6 at batch 128, and fc6's
    weights from one tower's input (the largest parameter): where the elementwise kernels and
    the SGD update run at their biggest."""
    model = alexnet.build_model("2012")
    infos, inputs = graph.analyze(model), graph.input_shapes(model)
    conv1 = next(layer for layer in model.layers if isinstance(layer, alexnet.Conv))
    fc6 = next(layer for layer in model.layers if isinstance(layer, alexnet.FullyConnected))
    outputs = [pytest.param(infos[layer.name].output_shape + (128,), marks=LARGE,
                            id=f"{layer.name} output") for layer in (conv1, fc6)]
    weights = pytest.param((int(np.prod(inputs[fc6.name][0])), fc6.units), marks=LARGE,
                           id=f"{fc6.name} weights")
    return outputs, weights


ALEXNET_ACTIVATIONS, ALEXNET_FC_WEIGHTS = alexnet_elementwise_shapes()


@pytest.mark.parametrize("shape", [(5, 3, 3, 7), (10, 300), (1, 1)] + ALEXNET_ACTIVATIONS)
def test_elementwise(backend, shape, rng, request):
    skip_if_large(request)
    check_elementwise(backend, shape, rng)


def check_elementwise(backend, shape, rng):
    """Every elementwise op of the step, and the dropout mask, on one shape."""
    x = rng.normal(size=shape)
    bias = rng.normal(size=shape[0])
    assert_as_accurate("add_bias", (x, bias), backend=backend)
    assert_as_accurate("bias_backward", (x,), backend=backend)
    for activation in alexnet.ACTIVATIONS:
        (y,) = assert_as_accurate(f"{activation}_forward", (x,), backend=backend)
        assert_as_accurate(f"{activation}_backward", (rng.normal(size=shape), y), backend=backend)
    assert_as_accurate("scale", (x, 0.5), backend=backend)
    assert_as_accurate("add", (x, rng.normal(size=shape)), backend=backend)
    key = int(rng.integers(2 ** 32))
    mask = call(backend, "dropout_mask", shape, 0.5, key)[0]
    np.testing.assert_array_equal(mask, reference.dropout_mask(shape, 0.5, key))
    assert_as_accurate("apply_mask", (x, mask), backend=backend)


@pytest.mark.parametrize("shape", [(3, 10007), (2, 5, 5, 700)])
def test_bias_gradient_of_long_rows_in_slices(backend, shape, rng):
    """Rows long enough to be summed in slices, then the slices (elementwise.py)."""
    assert bias_gradient_slices(shape[0], int(np.prod(shape[1:]))) > 1
    dy = rng.normal(size=shape)
    first = assert_as_accurate("bias_backward", (dy,), backend=backend)
    assert np.array_equal(first[0], call(backend, "bias_backward", dy)[0]), "differs between runs"


def test_biases_of_empty_rows_and_no_channels(backend):
    """Rows of no values (a batch of no images) sum to zeros and take biases as the reference
    does; no channels at all is no bias gradient: refused, as the reference refuses it; nor is a
    mean loss of no images."""
    empty_rows = np.zeros((3, 0, 2))
    np.testing.assert_array_equal(call(backend, "bias_backward", empty_rows)[0], np.zeros(3))
    assert call(backend, "add_bias", empty_rows, np.ones(3))[0].shape == (3, 0, 2)
    assert call(backend, "add_bias", np.zeros((0, 5)), np.ones(0))[0].shape == (0, 5)
    with pytest.raises(ValueError, match=r"bias_backward expects at least one channel; "
                                         r"got shape \(0, 5\)"):
        call(backend, "bias_backward", np.zeros((0, 5)))
    with pytest.raises(ValueError, match=r"softmax_logloss needs at least one image for a mean "
                                         r"loss; got shape \(10, 0\)"):
        call(backend, "softmax_logloss", np.zeros((10, 0)), np.zeros(0, np.int64))


def test_dropout_mask_of_a_part_of_the_batch(backend, rng):
    """Images [start, start + n) of a bigger batch: the reference's whole-batch mask there."""
    total, key = int(rng.integers(2, 40)), int(rng.integers(2 ** 32))
    start = int(rng.integers(0, total))
    n = int(rng.integers(0, total - start + 1))
    mask = call(backend, "dropout_mask", (3, 5, n), 0.5, key, start=start, total=total)[0]
    np.testing.assert_array_equal(mask, reference.dropout_mask((3, 5, total), 0.5,
                                                               key)[..., start:start + n])


def test_dropout_mask_at_its_threshold(backend, rng):
    """An element whose hash's 24 high bits equal the threshold is dropped (below it keeps):
    keep is set so that element 0 sits there, a case random keys hit once in 2²⁴."""
    high_bits = 0
    while not high_bits:   # a key whose element 0 has a threshold to sit on
        key = int(rng.integers(2 ** 32))
        high_bits = int(_mix32(np.uint32(0) ^ _mix32(np.uint32(key)))) >> 8
    keep = high_bits / 2 ** 24
    mask = call(backend, "dropout_mask", (2, 3), keep, key)[0]
    assert mask[0, 0] == 0
    np.testing.assert_array_equal(mask, reference.dropout_mask((2, 3), keep, key))
    assert call(backend, "dropout_mask", (2, 3), 1.0, key)[0].all()
    # keep·2²⁴ = high bits + 0.6 rounds to a threshold above element 0 (truncating would not)
    keep = (high_bits + 0.6) / 2 ** 24
    assert call(backend, "dropout_mask", (2, 3), keep, key)[0][0, 0] == 1
    assert reference.dropout_mask((2, 3), keep, key)[0, 0] == 1


# a keep of 0 would drop every unit: both backends take keep in (0, 1] and 32-bit keys, and a
# shape with an axis of images (shape () was an IndexError)
@pytest.mark.parametrize("shape,keep,key", [((2, 2), 0.0, 1), ((2, 2), 1.5, 1), ((2, 2), 0.5, -1),
                                            ((2, 2), 0.5, 2 ** 32), ((), 0.5, 1)])
def test_dropout_mask_refuses_what_the_reference_refuses(backend, shape, keep, key):
    with pytest.raises(ValueError) as refused:
        reference.dropout_mask(shape, keep, key)
    with pytest.raises(ValueError, match=re.escape(str(refused.value))):
        call(backend, "dropout_mask", shape, keep, key)


def test_dropout_mask_of_a_part_is_bounded_by_its_whole_batch(backend):
    """One image's part of a mask whose whole batch holds 2³¹ elements: the kernel's indices
    (unit · total + image) reach past 2³¹ − 1 though the part is small. Refused before any
    memory is taken."""
    with pytest.raises(ValueError, match="dropout mask of 2147483648 elements exceeds 2³¹ − 1"):
        call(backend, "dropout_mask", (2 ** 16, 1), 0.5, 1, start=0, total=2 ** 15)


def test_dropout_mask_at_fc_size(backend, rng):
    key = int(rng.integers(2 ** 32))
    mask = call(backend, "dropout_mask", (2048, 128), 0.5, key)[0]
    np.testing.assert_array_equal(mask, reference.dropout_mask((2048, 128), 0.5, key))
    assert 0.45 < mask.mean() < 0.55


# (10, 300): more images than one block's threads, a thread per image
@pytest.mark.parametrize("classes, images", [(10, 7), (1000, 3), (1000, 128), (10, 300)])
def test_softmax(backend, classes, images, rng):
    check_softmax(backend, classes, images, rng)


def check_softmax(backend, classes, images, rng):
    """Softmax with and without the log-loss, its gradient and the top-1 and top-5 errors. Each
    image's sum of its exponentials is a thread's sequential sum over the classes, where the
    reference's NumPy sums pairwise (targets.SEQUENTIAL_SUM_FLOOR)."""
    logits = rng.normal(0, 5, (classes, images))
    labels = rng.integers(0, classes, images)
    sums = dict(backend=backend, floor=SEQUENTIAL_SUM_FLOOR)
    probs, loss = assert_as_accurate("softmax_logloss", (logits, labels), **sums)
    assert_as_accurate("softmax", (logits,), **sums)
    assert_as_accurate("softmax_logloss_backward", (probs, labels), backend=backend)
    for dtype in (np.float64, np.float32):
        got = getattr(backend, "topk_errors")(backend.from_host(probs.astype(dtype)),
                                              labels, (1, 5))
        assert got == reference.topk_errors(probs.astype(dtype), labels, (1, 5))


def test_elementwise_and_softmax_of_random_shapes(backend, rng):
    """Sizes off every vector width and block size: outputs of two dimensions (fully connected)
    and four (convolutional), and any number of classes and images."""
    for _ in range(draws.DRAWS // 2):
        dimensions = rng.integers(1, 24, 4) if rng.random() < 0.5 else rng.integers(1, 600, 2)
        shape = tuple(int(d) for d in dimensions)
        with named_on_failure(f"shape {shape}"):
            check_elementwise(backend, shape, rng)
        classes, images = int(rng.integers(1, 1200)), int(rng.integers(1, 300))
        with named_on_failure(f"{classes} classes, {images} images"):
            check_softmax(backend, classes, images, rng)


def test_launchers_refuse_what_their_kernels_would_read_past(backend, rng):
    """A label past the classes or not a whole number, a gradient of another shape than the
    convolution's output or the normalization's input, filters that are not square, an input to
    normalize that is not 4-D: the kernels would read outside the arrays (or a label cut to a
    class), so the launchers refuse them."""
    probs = rng.random((10, 4))
    for op, args in (("softmax_logloss", (probs,)), ("softmax_logloss_backward", (probs,)),
                     ("topk_errors", (probs,))):
        with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\); got 0..10"):
            call(backend, op, *args, np.array([0, 3, 10, 2]))
        with pytest.raises(ValueError, match="labels must be integers; got float64"):
            call(backend, op, *args, np.array([0, 3.7, 9, 2]))
    w = rng.normal(size=(3, 3, 3, 4))
    x = rng.normal(size=(3, 8, 8, 2))
    wrong = rng.normal(size=(4, 7, 6, 2))   # (4, 6, 6, 2) is the output of 8 by 3 at stride 1
    with pytest.raises(ValueError, match=r"conv gradient has shape \(4, 7, 6, 2\)"):
        call(backend, "conv_backward_input", wrong, w, input_size=8, stride=1, pad=0)
    with pytest.raises(ValueError, match=r"conv gradient has shape \(4, 7, 6, 2\)"):
        call(backend, "conv_backward_filters", wrong, x, filter_size=3, stride=1, pad=0)
    with pytest.raises(ValueError, match="conv filters must be square; got 3x5"):
        call(backend, "conv_backward_input", rng.normal(size=(4, 6, 6, 2)),
             rng.normal(size=(3, 3, 5, 4)), input_size=8, stride=1, pad=0)
    x = np.maximum(rng.normal(size=(6, 5, 5, 2)), 0)
    wrong = rng.normal(size=(6, 5, 5, 3))   # one image more than x
    for kind, params in (("crossmap", CODE), ("samemap", SAMEMAP)):
        y, denoms = call(backend, f"{kind}_norm_forward", x, params)
        with pytest.raises(ValueError, match=rf"{kind}_norm_backward: shapes \(6, 5, 5, 3\) and "
                                             rf"\(6, 5, 5, 2\) differ"):
            call(backend, f"{kind}_norm_backward", wrong, x, y, denoms, params)
        with pytest.raises(ValueError, match=r"expects x \(C,H,W,N\); got shape \(6, 5, 10\)"):
            call(backend, f"{kind}_norm_forward", x.reshape(6, 5, 10), params)


def test_softmax_refuses_scores_of_no_class(backend):
    """Each image's maximum starts at its first class, which a (0, N) array does not have."""
    labels = np.zeros(4, np.int64)
    for op, args in (("softmax", ()), ("softmax_logloss", (labels,)),
                     ("softmax_logloss_backward", (labels,)), ("topk_errors", (labels,))):
        with pytest.raises(ValueError, match=rf"{op} expects at least one class; "
                                             rf"got shape \(0, 4\)"):
            call(backend, op, np.zeros((0, 4)), *args)


def test_softmax_takes_labels_of_any_strides(backend, rng):
    """Labels that are a strided view (every other one of a longer array), of the kernels' own
    int32 (which no conversion copies), are read as their values, not as the memory from their
    first on."""
    logits = rng.normal(size=(10, 6))
    every_other = rng.integers(0, 10, 12, dtype=np.int32)[::2]
    labels = every_other.copy()
    probs = call(backend, "softmax", logits)[0]
    for op, args in (("softmax_logloss", (logits,)), ("softmax_logloss_backward", (probs,)),
                     ("topk_errors", (probs,))):
        for strided, whole in zip(call(backend, op, *args, every_other),
                                  call(backend, op, *args, labels)):
            np.testing.assert_array_equal(strided, whole)


def test_softmax_of_logits_far_apart(backend, rng):
    """Logits spread over hundreds, around 200: exp overflows or underflows in float32 unless
    the maximum is subtracted first, and p = exp(z − (m + log s)) would round log s to the ulp
    of m (a float32 error of about 1e-5 at m = 200; exp((z − m) − log s) keeps it)."""
    logits = (rng.normal(0, 60, (10, 64)) + 200).astype(np.float32)
    # Image k's largest logit, 1000 above the rest, at class k: the first, the last and each
    # between, so a maximum that missed a class would overflow.
    logits[np.arange(10), np.arange(10)] += 1000
    probs = call(backend, "softmax", logits)[0]
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=0), 1, rtol=1e-5)
    assert_as_accurate("softmax", (logits.astype(np.float64),), backend=backend)
    labels = rng.integers(0, 10, 64)
    assert_as_accurate("softmax_logloss", (logits.astype(np.float64), labels), backend=backend)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_infinity_go_through_as_in_the_reference(backend, dtype, rng):
    """A NaN reaches the loss through ReLU and max pooling (first, middle or last in its
    window), and the softmax's probabilities and loss, and infinities pass as the reference
    passes them, so that the run's check of its loss sees what the reference would: a kernel
    that dropped a NaN would hide a diverged network."""
    x = rng.normal(size=(2, 7, 7, 3)).astype(dtype)
    x[0, 0, 0, 0] = x[1, 3, 3, 1] = x[0, 6, 6, 2] = np.nan
    x[1, 0, 0, 0], x[1, 6, 5, 2] = np.inf, -np.inf
    for op, kwargs in (("relu_forward", {}),
                       ("maxpool_forward", {"size": 3, "stride": 2})):
        got, want = call(backend, op, x, **kwargs)[0], reference_call(op, x, **kwargs)[0]
        np.testing.assert_array_equal(got, want, err_msg=op)
        assert np.isnan(want).any(), op
    logits = rng.normal(size=(10, 4)).astype(dtype)
    logits[3, 1] = np.nan
    probs, loss = call(backend, "softmax_logloss", logits, np.zeros(4, np.int64))
    assert np.isnan(probs[:, 1]).all() and np.isfinite(np.delete(probs, 1, axis=1)).all()
    assert np.isnan(loss)


def test_float32_denormals_flush_to_zero_as_on_a_gpu_and_float64_ones_stay(backend):
    """A GPU's float arithmetic flushes denormal inputs and results to zero, keeping the sign (the
    fatbin's --ftz=true; CuPy's NVRTC always), its double arithmetic keeps them; the emulator's
    float launches flush as the GPU's do, so that CI computes the GPU's float32 bits where a value
    falls below the smallest normal number (the reference keeps them)."""
    if isinstance(backend.launcher, Emulated) and not backend.launcher.module.flushes_float_denormals:
        pytest.skip(f"the emulator cannot flush denormals on {platform.machine()}: "
                    f"it knows x86-64's MXCSR and AArch64's FPCR (kernels/emulator.cpp)")
    for dtype, flushes in ((np.float32, True), (np.float64, False)):
        smallest = np.finfo(dtype).smallest_normal
        x = np.array([smallest, -smallest, 3 * smallest, 4 * smallest], dtype)
        halves = x / dtype(2)      # denormal, denormal, normal, normal
        (halved,) = call(backend, "scale", x, 0.5)
        (summed,) = call(backend, "add", halves, halves)
        if flushes:
            # Results below the smallest normal flush (output), and so do the denormal halves a
            # sum reads (input), whose sum would be normal.
            for got, want in ((halved, [0, -0.0, 1.5 * smallest, 2 * smallest]),
                              (summed, [0, -0.0, 3 * smallest, 4 * smallest])):
                np.testing.assert_array_equal(got, np.array(want, dtype))
                np.testing.assert_array_equal(np.signbit(got), [False, True, False, False])
        else:
            np.testing.assert_array_equal(halved, halves)
            np.testing.assert_array_equal(summed, x)
        # The host's own arithmetic keeps them, before the launches and after.
        assert (halves[:2] != 0).all() and (x / dtype(2) == halves).all()


@pytest.mark.parametrize("dtype, bound", [(np.float32, 2), (np.float64, 1)])
def test_tanh_rounds_within_the_gpus_bound_and_the_emulator_at_it(backend, dtype, bound, rng):
    """CUDA's tanhf lies within 2 ulp of the correctly rounded result and its tanh within 1 (the
    CUDA Programming Guide's bounds, which kernels/common.cuh cites); the emulator moves its host's
    result by the whole bound, up for some arguments and down for others (gpu_rounded), so that
    the tests it runs in CI hold for the GPU's worst error, not just for the host's all but exact
    one. Measured in steps of the element type from tanh computed in long double. Where the host
    rounds correctly, as it does for most arguments, the emulator's result lies the bound away;
    elsewhere the host's own error adds to it, so on the emulator only the GPU's bound is checked
    as the typical distance."""
    x = rng.uniform(-2, 2, 4096).astype(dtype)
    (got,) = call(backend, "tanh_forward", x)
    exact = np.tanh(x.astype(np.longdouble))
    steps = steps_from(exact.astype(dtype), got)
    if isinstance(backend.launcher, Emulated):
        assert np.median(np.abs(steps)) == bound, f"{dtype.__name__}: typically off by " \
                                                   f"{np.median(np.abs(steps))} steps"
        assert (steps == bound).any() and (steps == -bound).any(), \
            f"{dtype.__name__}: the emulator's tanh is not moved by {bound} steps both ways"
    else:
        assert np.abs(steps).max() <= bound, f"{dtype.__name__}: off by {np.abs(steps).max()} steps"


def test_topk_errors_split_ties_as_the_reference(backend, rng):
    """The kernel's counts of classes above and level with the label give the reference's
    errors where ties split them: uniform probabilities (top-1 error 9/10, top-2 8/10 per
    image), a label tied with another class, a NaN label probability (an error at every k),
    and then probabilities of a few levels only, ties everywhere, at every k."""
    nan_label = np.array([[0.2, 0.5], [np.nan, 0.25], [0.8, 0.25]])
    cases = [(np.full((10, 4), 0.1), np.array([0, 3, 9, 5]), (3.6, 3.2)),
             (np.array([[0.4, 0.5], [0.4, 0.25], [0.2, 0.25]]), np.array([1, 2]), (1.5, 0.5)),
             (nan_label, np.array([1, 1]), (2, 1.5))]
    for probs, labels, errors in cases:
        for dtype in (np.float64, np.float32):
            got = backend.topk_errors(backend.from_host(probs.astype(dtype)), labels, (1, 2))
            assert got == reference.topk_errors(probs.astype(dtype), labels, (1, 2))
            assert got == pytest.approx(errors)
    for classes, images in ((10, 7), (1000, 3), (3, 300)):
        probs = rng.integers(0, 4, (classes, images)) / 4
        labels = rng.integers(0, classes, images)
        ks = tuple(range(1, classes + 1))
        for dtype in (np.float64, np.float32):
            got = backend.topk_errors(backend.from_host(probs.astype(dtype)), labels, ks)
            assert got == reference.topk_errors(probs.astype(dtype), labels, ks)


@pytest.mark.parametrize("activation", alexnet.ACTIVATIONS)
def test_elementwise_float64_kernels_pass_finite_differences(backend, activation, rng):
    """Bias, the activation and dropout's mask chained as a layer runs them, x and the bias
    pushed away from ReLU's kink: the gradients from the activation's backward kernel,
    apply_mask and bias_backward."""
    shape = (3, 4, 4, 5)
    bias = rng.normal(size=shape[0])
    x = rng.normal(size=shape)
    x += np.where(x + bias[:, None, None, None] >= 0, 0.2, -0.2)
    mask = reference.dropout_mask(shape, 0.5, int(rng.integers(2 ** 32)))

    def forward():
        y = call(backend, f"{activation}_forward", call(backend, "add_bias", x, bias)[0])[0]
        return call(backend, "apply_mask", y, mask)[0]
    projection = rng.normal(size=shape)
    activated = call(backend, f"{activation}_forward", call(backend, "add_bias", x, bias)[0])[0]
    dy = call(backend, f"{activation}_backward", call(backend, "apply_mask", projection, mask)[0],
              activated)[0]
    analytic = {"x": dy, "bias": call(backend, "bias_backward", dy)[0]}
    check_gradients(projection_loss(forward, projection), {"x": x, "bias": bias}, analytic, rng,
                    samples=30).assert_ok()


def test_softmax_float64_kernel_passes_finite_differences(backend, rng):
    logits = rng.normal(0, 3, (10, 4))
    labels = rng.integers(0, 10, 4)
    probs, _ = call(backend, "softmax_logloss", logits, labels)
    analytic = {"logits": call(backend, "softmax_logloss_backward", probs, labels)[0]}
    loss = lambda: float(call(backend, "softmax_logloss", logits, labels)[1])  # noqa: E731
    check_gradients(loss, {"logits": logits}, analytic, rng, samples=40).assert_ok()


@pytest.mark.parametrize("shape", [(50, 7)] + [ALEXNET_FC_WEIGHTS])
def test_sgd_update_gives_the_references_bits(backend, shape, rng, request):
    """Each operation rounded on its own, in the reference's order: equal, not just close."""
    skip_if_large(request)
    for dtype in (np.float64, np.float32):
        w, v, grad = (rng.normal(size=shape).astype(dtype) for _ in range(3))
        want_w, want_v = w.copy(), v.copy()
        reference.sgd_update(want_w, want_v, grad, lr=0.01, momentum=0.9, weight_decay=5e-4)
        got_w, got_v = backend.from_host(w.copy()), backend.from_host(v.copy())
        backend.sgd_update(got_w, got_v, backend.from_host(grad), lr=0.01, momentum=0.9,
                           weight_decay=5e-4)
        np.testing.assert_array_equal(backend.to_host(got_w), want_w)
        np.testing.assert_array_equal(backend.to_host(got_v), want_v)


# ---- the launchers' checks ----------------------------------------------------------------

def test_launchers_refuse_bad_arguments(backend):
    x = backend.from_host(np.zeros((3, 8, 8, 2), np.float32))
    with pytest.raises(ValueError, match="channels"):
        backend.conv_forward(x, backend.from_host(np.zeros((4, 3, 3, 5), np.float32)),
                             stride=1, pad=0)
    with pytest.raises(ValueError, match="float32"):
        backend.conv_forward(x, backend.from_host(np.zeros((3, 3, 3, 5))), stride=1, pad=0)
    with pytest.raises(ValueError, match=r"conv product of 5 × 0 over 27: every size must be "
                                         r"positive"):   # an empty batch
        backend.conv_forward(backend.from_host(np.zeros((3, 8, 8, 0), np.float32)),
                             backend.from_host(np.zeros((3, 3, 3, 5), np.float32)), stride=1,
                             pad=0)
    # the launcher's own check: a GPU would read a transposed array's memory as it lies
    with pytest.raises(ValueError, match="relu_forward: x must be C-contiguous"):
        backend.relu_forward(backend.from_host(np.zeros((4, 6), np.float32)).T)
    with pytest.raises(ValueError, match="add: y must be C-contiguous"):   # named, not the first
        backend.add(backend.from_host(np.zeros((6, 4), np.float32)),
                    backend.from_host(np.zeros((4, 6), np.float32)).T)
    with pytest.raises(TypeError, match="float32 or float64"):
        backend.relu_forward(backend.from_host(np.zeros(4, np.int32)))
    with pytest.raises(ValueError, match="stride"):
        backend.maxpool_forward(x, size=2, stride=3)
    # arrays of one size but another layout (a transposed gradient), a strided mask
    a, b = (backend.from_host(np.zeros(shape, np.float32)) for shape in ((2, 3), (3, 2)))
    with pytest.raises(ValueError, match=r"add: arrays of shapes \(2, 3\) and \(3, 2\) differ"):
        backend.add(a, b)
    with pytest.raises(ValueError, match=r"SGD update needs weights, momentum and gradient of "
                                         r"one shape; got \(2, 3\), \(2, 3\), \(3, 2\)"):
        backend.sgd_update(a, backend.from_host(np.zeros((2, 3), np.float32)), b, lr=0.01,
                           momentum=0.9, weight_decay=0.0005)
    mask = backend.from_host(np.ones((2, 6), np.uint8))[:, ::2]
    with pytest.raises(ValueError, match="the mask must be a C-contiguous uint8 array"):
        backend.apply_mask(backend.from_host(np.zeros((2, 3), np.float32)), mask)
    # the fully-connected GEMMs: another depth, or another float type, named as such
    x = backend.from_host(np.zeros((6, 2), np.float32))
    with pytest.raises(ValueError, match=r"fc_forward expects x \(D,N\) and w \(D,F\) "
                                         r"with the same D; got shapes \(6, 2\) and \(5, 3\)"):
        backend.fc_forward(x, backend.from_host(np.zeros((5, 3), np.float32)))
    with pytest.raises(ValueError, match="fc_forward: w is float64 but x is float32"):
        backend.fc_forward(x, backend.from_host(np.zeros((6, 3))))
    with pytest.raises(TypeError, match="fc_forward: x: the CUDA kernels take float32 or "
                                        "float64 arrays; got int32"):
        backend.fc_forward(*(backend.from_host(np.zeros(shape, np.int32))
                             for shape in ((6, 2), (6, 3))))
    with pytest.raises(ValueError, match=r"fc_backward_input expects dy \(F,N\) and w \(D,F\) "
                                         r"with the same F"):
        backend.fc_backward_input(x, backend.from_host(np.zeros((5, 3), np.float32)))
    # the arrays named as the op names them
    with pytest.raises(ValueError, match="maxpool_backward: y is float64 but dy is float32"):
        backend.maxpool_backward(*(backend.from_host(np.zeros(shape, dtype)) for shape, dtype in
                                   (((1, 1, 1, 1), np.float32), ((1, 3, 3, 1), np.float32),
                                    ((1, 1, 1, 1), np.float64))), size=3, stride=2)


@pytest.mark.parametrize("grid,block", [((1, 65536), 256), (2 ** 31, 256), (1, 1025),
                                        (1, (16, 16, 65))])
def test_launches_beyond_cudas_limits_are_refused_everywhere(grid, block):
    out = np.empty(4, np.float32)
    with pytest.raises(ValueError, match="exceeds CUDA's"):
        Emulated().launch("relu_forward", np.float32, grid, block,
                          (np.ones(4, np.float32), out, np.uint32(4)))


def test_emulator_checks_argument_types_as_strictly_as_a_gpu_needs():
    emulator = Emulated().module
    out = np.empty(4, np.float32)
    emulator.launch("relu_forward<float>", (1, 1, 1), (4, 1, 1),
                     (np.ones(4, np.float32), out, np.uint32(4)))
    np.testing.assert_array_equal(out, 1)
    with pytest.raises(TypeError, match="argument 2: expected a NumPy uint32 scalar, got int"):
        emulator.launch("relu_forward<float>", (1, 1, 1), (4, 1, 1),
                         (np.ones(4, np.float32), out, 4))
    with pytest.raises(TypeError, match="argument 0: expected an array of float32"):
        emulator.launch("relu_forward<float>", (1, 1, 1), (4, 1, 1),
                         (np.ones(4), out, np.uint32(4)))
    with pytest.raises(TypeError, match="argument 2: expected a NumPy uint32 scalar, got int32"):
        emulator.launch("relu_forward<float>", (1, 1, 1), (4, 1, 1),
                         (np.ones(4, np.float32), out, np.int32(4)))
    # a GPU reads a strided view's memory as it lies, and writes what NumPy was told not to
    with pytest.raises(ValueError, match="argument 0: the array is not C-contiguous"):
        emulator.launch("relu_forward<float>", (1, 1, 1), (4, 1, 1),
                         (np.ones(8, np.float32)[::2], out, np.uint32(4)))
    read_only = np.zeros(4, np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="argument 1: the array is read-only"):
        emulator.launch("relu_forward<float>", (1, 1, 1), (4, 1, 1),
                         (np.ones(4, np.float32), read_only, np.uint32(4)))
    np.testing.assert_array_equal(read_only, 0)
    emulator.launch("relu_forward<float>", (1, 1, 1), (4, 1, 1),   # const T*: read-only is fine
                     (read_only, out, np.uint32(4)))
    np.testing.assert_array_equal(out, 0)
    with pytest.raises(TypeError, match="argument 0: expected a NumPy array, got list"):
        emulator.launch("relu_forward<float>", (1, 1, 1), (4, 1, 1),
                         ([1.0] * 4, out, np.uint32(4)))
    with pytest.raises(TypeError, match="takes 3 arguments"):
        emulator.launch("relu_forward<float>", (1, 1, 1), (4, 1, 1), (out,))
    with pytest.raises(KeyError, match="no kernel"):
        emulator.launch("relu_forward<half>", (1, 1, 1), (4, 1, 1), ())
    assert "conv_forward<double>" in emulator.kernels()


# ---- races: the emulator's shuffled order -------------------------------------------------

class RecordingLauncher(Emulated):
    """The emulator, noting which kernels ran."""

    def __init__(self):
        super().__init__(poison=True)
        self.launched = set()

    def launch(self, kernel, dtype, grid, block, args):
        self.launched.add(f"{kernel}<{c_type(dtype)}>")
        super().launch(kernel, dtype, grid, block, args)


def every_kernel_once(backend, rng):
    """Outputs of ops that together launch every kernel, at shapes of several blocks, tiles and
    slices, for float64 and float32."""
    outputs = []
    for dtype in (np.float64, np.float32):
        normal = lambda *shape: rng.normal(size=shape).astype(dtype)   # noqa: E731
        run = lambda op, *args, **kwargs: outputs.extend(              # noqa: E731
            call(backend, op, *args, **kwargs))
        # several slices; vector loads; every tile side; the window table's refills
        for case, plan in ([(case, {}) for case in CONV_CASES[4:]] + [(DEEP_SLICE, {"splits": 1})]
                           + [(case, plan) for case in WINOGRAD_CASES[3:]
                              for plan in WINOGRAD_PLANS]):
            channels, size, images, filters, filter_size, stride, pad = case
            x, w, dy = (array.astype(dtype) for array in conv_inputs(rng, case))
            run("conv_forward", x, w, stride=stride, pad=pad, **plan)
            run("conv_backward_input", dy, w, input_size=size, stride=stride, pad=pad, **plan)
            run("conv_backward_filters", dy, x, filter_size=filter_size, stride=stride, pad=pad,
                **plan)
        for shape in ((5, 3, 3, 7), (3, 10007)):
            x = normal(*shape)
            run("add_bias", x, normal(shape[0]))
            run("bias_backward", x)
            for activation in alexnet.ACTIVATIONS:
                run(f"{activation}_forward", x)
                run(f"{activation}_backward", normal(*shape), x)
            run("scale", x, 0.5)
            run("add", x, normal(*shape))
            mask = call(backend, "dropout_mask", shape, 0.5, 7)[0]
            run("apply_mask", x, mask)
            outputs.append(mask)
        x = np.maximum(normal(16, 7, 7, 5), 0)   # pooled: more elements than a block has threads
        for kind, params in (("crossmap", CODE), ("samemap", SAMEMAP)):
            y, denoms = call(backend, f"{kind}_norm_forward", x, params)
            run(f"{kind}_norm_backward", normal(*x.shape), x, y, denoms, params)
            outputs += [y, denoms]
        y = call(backend, "maxpool_forward", x, size=3, stride=2)[0]
        run("maxpool_backward", normal(*y.shape), x, y, size=3, stride=2)
        outputs.append(y)
        logits, labels = normal(1000, 5), rng.integers(0, 1000, 5)
        run("softmax", logits)
        probs, loss = call(backend, "softmax_logloss", logits, labels)
        run("softmax_logloss_backward", probs, labels)
        outputs += [probs, loss, np.array(backend.topk_errors(backend.from_host(probs), labels))]
        w, v = backend.from_host(normal(50, 7)), backend.from_host(normal(50, 7))
        backend.sgd_update(w, v, backend.from_host(normal(50, 7)), lr=0.01, momentum=0.9,
                           weight_decay=5e-4)
        outputs += [backend.to_host(w), backend.to_host(v)]
    return outputs


def test_every_kernel_gives_the_same_bits_whatever_order_its_blocks_and_threads_run_in(rng):
    """A GPU runs blocks, and threads between barriers, in no promised order: the emulator's
    shuffled order (emulate.h) finds a kernel that depends on it, a race."""
    launcher = RecordingLauncher()
    emulator = launcher.module
    backend = CudaBackend(launcher)
    seed = int(rng.integers(2 ** 31))
    in_order = every_kernel_once(backend, np.random.default_rng(seed))
    unused = {"dropout_mask<double>"}   # the mask's kernel does not use T: launched as float
    assert launcher.launched == set(emulator.kernels()) - unused, "a kernel not run here"
    try:
        for shuffle_seed in (1, 2):
            emulator.shuffle(shuffle_seed)
            shuffled = every_kernel_once(backend, np.random.default_rng(seed))
            for index, (want, got) in enumerate(zip(in_order, shuffled)):
                assert want.tobytes() == got.tobytes(), \
                    f"output {index} differs when the emulator shuffles (seed {shuffle_seed})"
    finally:
        emulator.shuffle(None)


@pytest.mark.parametrize("shape", [(4, 5, 5, 0), (4, 0, 5, 3)])
def test_empty_arrays_give_empty_results(backend, shape):
    x = np.zeros(shape, np.float32)
    for op, args in (("crossmap_norm_forward", (CODE,)), ("samemap_norm_forward", (SAMEMAP,))):
        y, denoms = call(backend, op, x, *args)
        assert y.shape == denoms.shape == shape
    assert call(backend, "relu_forward", x)[0].shape == shape
    if shape[1]:
        assert call(backend, "maxpool_forward", x, size=3, stride=2)[0].shape == (4, 2, 2, 0)


@pytest.mark.parametrize("most_blocks", [1, 3])
def test_grid_stride_loops_give_the_same_bits_on_a_smaller_grid(most_blocks, rng, monkeypatch):
    """With the elementwise grid capped at 1 or 3 blocks each thread walks many elements, so the
    loops' coordinates (kept up to date by additions with carries, common.cuh) cross rows,
    columns and channels: every kernel must still give the same bits."""
    from convnet.backend.cuda import checks
    backend = CudaBackend(Emulated(poison=True))
    seed = int(rng.integers(2 ** 31))
    full_grid = every_kernel_once(backend, np.random.default_rng(seed))
    monkeypatch.setattr(checks, "MAX_ELEMENTWISE_BLOCKS", most_blocks)
    small_grid = every_kernel_once(backend, np.random.default_rng(seed))
    for index, (want, got) in enumerate(zip(full_grid, small_grid)):
        assert want.tobytes() == got.tobytes(), f"output {index} differs on {most_blocks} blocks"


@pytest.mark.parametrize("grid, block", [(1, 64), (64, 1)], ids=["threads", "blocks"])
def test_shuffled_order_exposes_a_race(grid, block):
    """A kernel launched racy on purpose, its output one element past its input: in order, each
    thread (or block) reads what the one before wrote; shuffled, some read before it is written."""
    memory = np.arange(1, 66, dtype=np.float32)
    launcher = Emulated()
    emulator = launcher.module
    launcher.launch("relu_forward", np.float32, grid, block, (memory[:-1], memory[1:],
                                                              np.uint32(64)))
    np.testing.assert_array_equal(memory, 1)
    try:
        emulator.shuffle(0)   # a seed like any other
        memory = np.arange(1, 66, dtype=np.float32)
        launcher.launch("relu_forward", np.float32, grid, block, (memory[:-1], memory[1:],
                                                                  np.uint32(64)))
        assert (memory != 1).any()
    finally:
        emulator.shuffle(None)
    with pytest.raises(ValueError, match="seed"):
        emulator.shuffle(-1)


# A block sum over three barriers, run by emulate.h's fibers: as it should (mode 0); with thread 3
# returning before the barrier the others reach (mode 1: on a GPU that hangs or is undefined, and
# the emulator must say so rather than let the waiting threads go on); with thread 5 throwing
# between two barriers (mode 2). Each is followed by a launch in mode 0, which must start afresh.
FIBERS_PROGRAM = r"""
#include "emulate.h"
#include <cstdio>
#include <stdexcept>
#include <string>
int mode;
float sums[2];
void kernel() {
  __shared__ float partial[8];
  if (mode == 1 && threadIdx.x == 3) return;
  partial[threadIdx.x] = threadIdx.x + 8 * blockIdx.x;
  __syncthreads();
  for (unsigned half = 4; half > 0; half /= 2) {
    if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    if (mode == 2 && threadIdx.x == 5) throw std::logic_error("thread 5 of block " +
                                                              std::to_string(blockIdx.x));
    __syncthreads();
  }
  if (threadIdx.x == 0) sums[blockIdx.x] = partial[0];
}
void launch() {
  try {
    emu::Block::instance().run_grid(dim3(2), dim3(8), [] { kernel(); });
    std::printf("%g %g\n", sums[0], sums[1]);
  } catch (const std::exception& error) {
    std::puts(error.what());
  }
}
int main(int argc, char** argv) {
  std::puts(emu::kFiberSwitch);
  mode = argv[1][0] - '0';
  launch();
  mode = 0;
  launch();
}
"""
X86_64 = platform.machine() == "x86_64"
DEFAULT_FIBER_SWITCH = "x86-64 stack switch" if X86_64 else "ucontext"
# Options before the project's flags (a compiler's defaults) and after them, and the switch they
# give: the project's flags alone; over a compiler that guards return addresses by default
# (Ubuntu's), which they turn off; the portable switch; options that put code into every function
# (a naked function's would run before its first push); a build that asks for shadow stacks,
# which a switch by return to another stack would fail.
FIBER_BUILDS = {
    "default": ([], [], DEFAULT_FIBER_SWITCH),
    "ucontext": ([], ["-DCONVNET_EMULATOR_UCONTEXT"], "ucontext"),
    "instrumented": ([], ["-fstack-protector-all", "-finstrument-functions"],
                     DEFAULT_FIBER_SWITCH),
    **({"shadow stacks by default": (["-fcf-protection=full"], [], DEFAULT_FIBER_SWITCH),
        "shadow stacks": ([], ["-fcf-protection=full"], "ucontext")} if X86_64 else {}),
}


def test_the_emulator_module_switches_fibers_as_its_platform_allows():
    """The built module's switch: on x86-64 the stack switch, whose speed the suite's time
    assumes (swapcontext took it from 6 to 11 minutes)."""
    assert Emulated().module.fiber_switch == DEFAULT_FIBER_SWITCH


@pytest.mark.parametrize("build_name", FIBER_BUILDS)
def test_fibers_meet_at_barriers_and_a_thread_that_returns_or_throws_ends_the_launch(
        tmp_path, build_name):
    before, after, fiber_switch = FIBER_BUILDS[build_name]
    program = program_on_emulate_h(tmp_path, FIBERS_PROGRAM,
                                   [*before, *build.EMULATOR_FLAGS, *after])

    def run(mode):
        completed = subprocess.run([str(program), str(mode)], capture_output=True,
                                   text=True, timeout=60)
        assert completed.returncode == 0, completed.stderr
        return completed.stdout
    block_sums = "28 92\n"   # 0 + … + 7 and 8 + … + 15
    assert run(0) == f"{fiber_switch}\n{block_sums}{block_sums}"
    assert run(1) == (f"{fiber_switch}\nblock (0,0,0): 1 of 8 threads returned while the others "
                      f"wait at __syncthreads()\n{block_sums}")
    assert run(2) == f"{fiber_switch}\nthread 5 of block 0\n{block_sums}"
