"""The whole network on the CUDA kernels against the reference network, tensor by tensor: every
layer's output of a training forward pass and every gradient of the backward pass. Through the
emulator: both scaled-down presets in float64 (agreement to round-off), with the paper's
ablations too, and in float32. On a GPU (and on the emulator where asked:
targets.skip_large_on_emulator), the full default network in float32 at batch 16; on a GPU, a
scaled-down one on the kernels as NVRTC compiles them. In float32, within the reference's own
float32 error."""
import numpy as np
import pytest

from convnet import alexnet
from convnet.alexnet import DATA
from convnet.backend import get_backend
from convnet.backend.cuda import conv
from convnet.backend.cuda.launch import build
from convnet.network import Network
from networks import make_active, replay_on_reference
from targets import (KERNEL_TARGETS, SEQUENTIAL_SUM_FLOOR, WINOGRAD_FLOORS, kernel_backend,
                     require_gpu, skip_large_on_emulator)


def run_step(backend, model, params, images, labels, dtype, *, gradients=True, replays_in=()):
    """Loss, layer outputs and (unless told not to) gradients of one training pass, and for
    each dtype of `replays_in` the reference's gradients in it on this pass's side of every kink
    (see replay_on_reference)."""
    network = Network(model, backend, dtype=dtype, seed=5,
                      params={k: v.astype(dtype) for k, v in params.items()})
    result = network.forward(images.astype(dtype), labels, train=True, step=7)
    outputs = {name: np.asarray(backend.to_host(value)) for name, value in network.outputs.items()
               if name != DATA}
    replays = [replay_on_reference(network, replay_dtype) for replay_dtype in replays_in]
    grads = {name: np.asarray(backend.to_host(value))
             for name, value in network.backward(input_grad=True).items()} if gradients else None
    return result.loss, outputs, grads, [replay.backward(input_grad=True) for replay in replays]


def compare(kind, got, want, tolerance_of):
    for name, exact in want.items():
        scale = max(float(np.abs(exact).max()), 1e-30)
        error = float(np.abs(got[name].astype(np.float64) - exact).max())
        assert error <= tolerance_of(name, scale), \
            f"{kind} {name}: error {error:.3e}, scale {scale:.3e}"


def compare_float32(kind, got, exact, single, floor):
    """Float32 tensors `got` against the float64 `exact`, within ten times the reference's own
    float32 error (`single`'s), or the error of the kernels' sums (`floor` of the tensor's
    scale: targets.SEQUENTIAL_SUM_FLOOR, or WINOGRAD_FLOORS)."""
    reference_error = {name: float(np.abs(single[name].astype(np.float64) - value).max())
                       for name, value in exact.items()}
    compare(kind, got, exact, lambda name, scale: max(10 * reference_error[name], floor * scale))


@pytest.mark.parametrize("name", ["2012-small28", "paper-small28",
                                  "2012-small64+no-norm+no-overlap",
                                  "paper-small28+one-tower+no-dropout", "2012-small28+tanh"])
def test_scaled_down_network_on_the_emulator_matches_the_reference(name, rng):
    model = alexnet.build_model(name)
    network = make_active(Network(model, get_backend("reference"), dtype=np.float64), rng)
    images = rng.normal(0, 50, model.image_shape + (3,))
    labels = rng.integers(0, model.geometry.classes, 3)
    want = run_step(get_backend("reference"), model, network.params, images, labels, np.float64)
    got = run_step(kernel_backend("emulator"), model, network.params, images, labels, np.float64)
    assert got[0] == pytest.approx(want[0], rel=1e-12)
    compare("output", got[1], want[1], lambda name, scale: 1e-11 * scale)
    compare("gradient", got[2], want[2], lambda name, scale: 1e-11 * scale)


def check_float32_network(backend, model, params, rng, batch, floor=SEQUENTIAL_SUM_FLOOR):
    """One float32 training pass on `backend` against the float64 reference, tensor by tensor
    (compare_float32)."""
    images = rng.normal(0, 50, model.image_shape + (batch,))
    labels = rng.integers(0, model.geometry.classes, batch)
    reference = get_backend("reference")
    exact = run_step(reference, model, params, images, labels, np.float64, gradients=False)
    single = run_step(reference, model, params, images, labels, np.float32, gradients=False)
    got = run_step(backend, model, params, images, labels, np.float32,
                   replays_in=(np.float64, np.float32))
    assert got[0] == pytest.approx(exact[0], rel=1e-4)
    # Outputs are continuous in the inputs: against the reference's.
    compare_float32("output", got[1], exact[1], single[1], floor)
    # Gradients jump where a unit crosses a kink, and the backend's float32 crosses others than
    # the reference's: against the reference on the backend's side of every kink.
    on_its_sides, single_on_its_sides = got[3]
    compare_float32("gradient", got[2], on_its_sides, single_on_its_sides, floor)


@pytest.mark.parametrize("name", ["2012-small28", "paper-small28"])
def test_scaled_down_network_in_float32_on_the_emulator(name, rng):
    model = alexnet.build_model(name)
    params = make_active(Network(model, get_backend("reference"), dtype=np.float64), rng).params
    check_float32_network(kernel_backend("emulator"), model, params, rng, batch=3)


@pytest.mark.parametrize("side", conv.WINOGRAD_TILES)
def test_scaled_down_network_by_winograd_on_the_emulator(side, rng, monkeypatch):
    """conv3, conv4 and conv5 (3 × 3 filters at stride 1) by Winograd's algorithm in output tiles
    of side × side (the launcher's choice for their 6 × 6 is 2), the others by the implicit
    GEMMs: in float64 to round-off, in float32 as the reference's own error or Winograd's."""
    monkeypatch.setattr(conv, "winograd_tile_side", lambda height, width: side)
    model = alexnet.build_model("2012-small28")
    backend = kernel_backend("emulator", conv_algorithm="winograd")
    network = make_active(Network(model, get_backend("reference"), dtype=np.float64), rng)
    images = rng.normal(0, 50, model.image_shape + (4,))
    labels = rng.integers(0, model.geometry.classes, 4)
    want = run_step(get_backend("reference"), model, network.params, images, labels, np.float64)
    got = run_step(backend, model, network.params, images, labels, np.float64)
    assert got[0] == pytest.approx(want[0], rel=1e-12)
    compare("output", got[1], want[1], lambda name, scale: 1e-11 * scale)
    compare("gradient", got[2], want[2], lambda name, scale: 1e-11 * scale)
    check_float32_network(backend, model, network.params, rng, batch=4,
                          floor=WINOGRAD_FLOORS[side])


@pytest.mark.large
@pytest.mark.parametrize("target", KERNEL_TARGETS)
@pytest.mark.parametrize("conv_algorithm", [None, "winograd"])
def test_default_network_matches_the_reference(target, conv_algorithm, rng):
    skip_large_on_emulator(target)
    backend = kernel_backend(target, conv_algorithm=conv_algorithm)
    model = alexnet.build_model("2012")
    params = Network(model, get_backend("reference"), dtype=np.float64, seed=11).params
    # By Winograd's algorithm, conv3-5's 13 × 13 outputs run in tiles of 4 × 4 (conv.py), whose
    # error reaches every later layer's output and, through conv3's input gradient, every
    # gradient.
    floor = SEQUENTIAL_SUM_FLOOR if conv_algorithm is None else WINOGRAD_FLOORS[4]
    check_float32_network(backend, model, params, rng, batch=16, floor=floor)


@pytest.mark.gpu
def test_scaled_down_network_on_the_gpu_through_nvrtc(rng, monkeypatch, tmp_path):
    """The backend's way where the fatbin cannot serve (here: the folder it looks in holds none):
    NVRTC compiles the kernels at run time, and the network on them matches the reference."""
    require_gpu()
    monkeypatch.setattr(build, "DEFAULT_OUTPUT", str(tmp_path))
    backend = get_backend("cuda", poison=True)
    assert backend.name == "cuda (nvrtc (no fatbin: run make kernels))"
    model = alexnet.build_model("2012-small28")
    params = make_active(Network(model, get_backend("reference"), dtype=np.float64), rng).params
    check_float32_network(backend, model, params, rng, batch=16)
