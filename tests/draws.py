"""Shapes and parameters drawn at random, shared by the reference's and the kernels' random-shape
tests: each run draws its own from the rng fixture's seed (printed; CONVNET_TEST_SEED replays
it), so that the suite reaches, run after run, the cases no fixed list names."""
from convnet.backend.cuda.launch import TILES
from convnet.norm_params import NormParams

DRAWS = 20                                # cases per random-shape test
MAX_NORM_SIZE = TILES["kMaxNormSize"]     # the widest window the normalization kernels take
MAX_POOL_SIZE = 5


def activation_shape(rng, *, channels=40, side=16, images=(1, 2, 3, 4, 5, 8, 9)):
    """(C, H, W, N): H and W apart, batches at and off the kernels' vector widths."""
    return (int(rng.integers(1, channels)), int(rng.integers(1, side)),
            int(rng.integers(1, side)), int(rng.choice(images)))


def conv_window(rng, *, side, filter_sizes=range(1, 12), strides=range(1, 5), pads=range(4),
                square=True):
    """(height, width, filter size, stride, padding): one of each given that the input allows,
    its sides under `side`; square, or (square=False) rows and columns apart half the time."""
    while True:
        filter_size, stride, pad = (int(rng.choice(v)) for v in (filter_sizes, strides, pads))
        height = int(rng.integers(1, side))
        width = height if square or rng.random() < 0.5 else int(rng.integers(1, side))
        if min(height, width) + 2 * pad >= filter_size:
            return height, width, filter_size, stride, pad


def norm_params(rng):
    """Any odd window up to MAX_NORM_SIZE, k, alpha and beta around the paper's, either
    convention of alpha."""
    return NormParams(size=int(rng.choice(range(1, MAX_NORM_SIZE + 1, 2))),
                      k=float(rng.choice([0.5, 1.0, 2.0])),
                      alpha=float(rng.choice([1e-4, 1e-2, 0.3])),
                      beta=float(rng.choice([0.5, 0.75, 1.0])),
                      alpha_convention=str(rng.choice(["paper", "per-term"])))


def pool_window(rng, shape):
    """(size, stride, overhang) for an input `shape`: a window that fits its rows and columns,
    a stride up to the window's side (the kernels' restriction), either edge rule."""
    size = int(rng.integers(1, min(MAX_POOL_SIZE, *shape[1:3]) + 1))
    return size, int(rng.integers(1, size + 1)), bool(rng.random() < 0.5)


def pool_input(rng, shape):
    """(x, ties): half of the time small integers, whose ties each take their windows' whole
    gradient, else normal numbers."""
    ties = bool(rng.random() < 0.5)
    return (rng.integers(0, 3, shape).astype(float) if ties else rng.normal(size=shape)), ties
