"""The benchmarks' PyTorch peer (tools/torch_alexnet.py) computes our network: its test-mode
probabilities match the reference backend's, with the towers separate and grouped; its optimizer
follows the recipe; a GPU benchmark runs it in FP32 without TF32. A GPU benchmark's ratio to the
peer means something only if the peer does the same work.

Each check runs with tests/numpy_torch.py, a NumPy stand-in for the PyTorch ops the peer calls,
and again with PyTorch where it is installed (make bench-cpu installs it; skipped with the
reason elsewhere), where the stand-in's ops are checked against PyTorch's own. With PyTorch,
the GPU benchmarks' peers (tools/bench_kernels.py's ops, tools/bench_train.py's step) also run as
written but on the CPU, against the reference backend."""
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from convnet import alexnet
from convnet.backend import get_backend
from convnet.network import Network, initial_parameters
from convnet.solver import SGD
from networks import make_active
from numpy_torch import numpy_torch
from stand_in_cupy import stand_in_cupy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import bench_cpu_step  # noqa: E402
import bench_kernels  # noqa: E402
import bench_train  # noqa: E402
import torch_alexnet  # noqa: E402
from torch_alexnet import TorchAlexNet, from_ours, recipe_sgd  # noqa: E402

try:
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None,
                                 reason="PyTorch is not installed (make bench-cpu installs it)")
TORCHES = [pytest.param(numpy_torch, id="numpy"),
           pytest.param(torch, id="pytorch", marks=needs_torch)]


@pytest.mark.parametrize("peer_torch", TORCHES)
@pytest.mark.parametrize("name", ["2012-small28", "paper-small28", "2012-small64",
                                  "2012-small64+no-norm+no-overlap",
                                  "paper-small28+one-tower+no-dropout", "paper-small28+tanh"])
@pytest.mark.parametrize("grouped", [False, True], ids=["separate", "grouped"])
def test_peer_matches_the_reference(name, grouped, peer_torch, rng):
    model = alexnet.build_model(name)
    network = make_active(Network(model, get_backend("reference"), dtype=np.float32), rng)
    images = rng.normal(0, 50, model.image_shape + (4,)).astype(np.float32)
    ours = network.forward(images, None, train=False).probs
    peer = TorchAlexNet(model, network.params, peer_torch, grouped=grouped)
    with peer_torch.no_grad():
        logits = peer.forward(
            peer_torch.from_numpy(np.ascontiguousarray(images.transpose(3, 0, 1, 2))),
            train=False)
    theirs = peer_torch.softmax(logits, dim=1).numpy().T
    assert np.abs(ours - theirs).max() <= 1e-4 * np.abs(theirs).max()


@pytest.mark.parametrize("name", ["2012-small28", "paper-small28"])
def test_peer_matches_the_reference_layer_by_layer(name, rng):
    """Every layer's output, not just the probabilities, where a softmax of a few classes might
    hide a response normalization's constants (α, k, β, the window, each tower's channels alone)
    being off: in float64 the peer's layers equal ours to rounding. A grouped layer holds both
    towers' channels [a | b]."""
    model = alexnet.build_model(name)
    network = make_active(Network(model, get_backend("reference"), dtype=np.float64), rng)
    images = rng.normal(0, 50, model.image_shape + (3,))
    network.forward(images, None, train=False)
    ours = dict(network.outputs)
    for grouped in (False, True):
        peer = TorchAlexNet(model, network.params, numpy_torch, grouped=grouped)
        outputs = {alexnet.DATA: numpy_torch.from_numpy(images.transpose(3, 0, 1, 2)),
                   "train": False}
        for step, run in peer.steps:
            outputs[step] = run(outputs)
            expected = ours.get(step)
            if expected is None:   # a grouped pair
                expected = np.concatenate([ours[step + "a"], ours[step + "b"]])
            if step == model.layers[-1].name:   # the peer's logits, our probabilities
                outputs[step] = numpy_torch.softmax(outputs[step], dim=1)
            theirs = np.moveaxis(np.asarray(outputs[step]), 0, -1)
            np.testing.assert_allclose(theirs, expected, rtol=1e-9,
                                       atol=1e-9 * np.abs(expected).max(),
                                       err_msg=f"{name} {step} grouped={grouped}")


def test_peer_optimizer_follows_the_recipe():
    """Weight decay on the weights alone, the preset's bias learning rate, the recipe's
    momentum: a peer stepping without momentum or decay would do less work per step."""
    model = alexnet.build_model("2012-small28")
    network = Network(model, get_backend("reference"), dtype=np.float32)
    peer = TorchAlexNet(model, network.params, numpy_torch)
    optimizer = recipe_sgd(numpy_torch, peer, model)
    weights, biases = optimizer.param_groups
    recipe = model.recipe
    assert optimizer.momentum == recipe.momentum
    assert (weights["lr"], weights["weight_decay"]) == (recipe.weight_lr, recipe.weight_decay)
    assert (biases["lr"], biases["weight_decay"]) == (
        recipe.weight_lr * model.preset.bias_lr_multiplier, 0.0)
    assert len(weights["params"]) == len(biases["params"]) == sum(
        isinstance(layer, (alexnet.Conv, alexnet.FullyConnected)) for layer in model.layers)
    assert all(parameter.ndim == 1 for parameter in biases["params"])
    assert all(parameter.ndim >= 2 for parameter in weights["params"])


@pytest.mark.parametrize("count, driver, why", [
    (0, 13000, "CuPy finds no CUDA device"),
    (None, 0, "CuPy is installed but this machine has no NVIDIA driver")])
def test_gpu_benchmarks_without_a_usable_gpu_stop_in_one_line_saying_why(monkeypatch, count,
                                                                         driver, why):
    """CuPy that sees no device, or cannot reach a driver: the benchmark stops before its first
    GPU call with the reason (not CUDA's 'driver version is insufficient' where there is no
    driver at all, nor a traceback later where the count is 0)."""
    def device_count():
        if count is None:
            raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is "
                               "insufficient for CUDA runtime version")
        return count
    runtime = types.SimpleNamespace(getDeviceCount=device_count, driverGetVersion=lambda: driver,
                                    runtimeGetVersion=lambda: 13020)
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(
        __version__="14.2.0", cuda=types.SimpleNamespace(runtime=runtime)))
    with pytest.raises(SystemExit) as stopped:
        torch_alexnet.gpu_modules("bench_kernels")
    assert str(stopped.value) == f"bench_kernels: needs a CUDA GPU through CuPy: {why}"


def test_gpu_benchmarks_run_the_peer_in_fp32_without_tf32(monkeypatch):
    """TF32 would let cuDNN and cuBLAS round the peer's operands to 10 bits of mantissa on
    tensor cores: a faster peer than our FP32 kernels, and a ratio that compares unlike work."""
    cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 1)))
    backends = types.SimpleNamespace(   # PyTorch's defaults: TF32 convolutions, FP32 products
        cudnn=types.SimpleNamespace(allow_tf32=True, benchmark=False, version=lambda: 91000),
        cuda=types.SimpleNamespace(matmul=types.SimpleNamespace(allow_tf32=False)))
    fake_torch = types.SimpleNamespace(backends=backends, __version__="2.13.0")
    assert torch_alexnet.peer_settings(fake_torch) == {   # the report says what is set
        "torch": "2.13.0", "cudnn": 91000, "cudnn_allow_tf32": True,
        "matmul_allow_tf32": False, "cudnn_benchmark": False}
    backends.cuda.matmul.allow_tf32 = True   # as an earlier import may have left it
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    assert torch_alexnet.gpu_modules("bench_train") == (cupy, fake_torch)
    assert torch_alexnet.peer_settings(fake_torch) == {
        "torch": "2.13.0", "cudnn": 91000, "cudnn_allow_tf32": False,
        "matmul_allow_tf32": False, "cudnn_benchmark": True}
    monkeypatch.setitem(sys.modules, "torch", None)   # not importable
    assert torch_alexnet.gpu_modules("bench_train") == (cupy, None)
    assert torch_alexnet.peer_settings(None) is None


@needs_torch
def test_the_tf32_switches_the_peer_sets_are_in_force_in_pytorch(monkeypatch):
    """The installed PyTorch, from its defaults (TF32 convolutions): after gpu_modules, its
    own answers say FP32 throughout, the per-operation precisions of PyTorch 2.9 on (beside the
    allow_tf32 flags the peer sets) included."""
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(cuda=types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))))
    switches = {(torch.backends.cudnn, "allow_tf32"): True,
                (torch.backends.cuda.matmul, "allow_tf32"): False,
                (torch.backends.cudnn, "benchmark"): False}
    saved = {key: getattr(*key) for key in switches}
    try:
        for (module, name), default in switches.items():
            setattr(module, name, default)
        assert torch_alexnet.gpu_modules("bench_train")[1] is torch
        assert not torch._C._get_cudnn_allow_tf32() and not torch._C._get_cublas_allow_tf32()
        assert torch.get_float32_matmul_precision() == "highest"
        per_operation = [torch.backends.cuda.matmul, getattr(torch.backends.cudnn, "conv", None)]
        assert "tf32" not in [getattr(module, "fp32_precision", None) for module in per_operation]
    finally:   # as the other tests found it
        for (module, name), value in saved.items():
            setattr(module, name, value)


def test_driver_release_is_nvidia_smis_answer_or_none(monkeypatch):
    """One line per GPU, the same release on each; a failing nvidia-smi prints its complaint on
    stdout, which is no release."""
    def answering(code, text):
        return lambda *args, **kwargs: types.SimpleNamespace(returncode=code, stdout=text)
    monkeypatch.setattr(torch_alexnet.subprocess, "run", answering(0, "580.159.03\n580.159.03\n"))
    assert torch_alexnet.driver_release() == "580.159.03"
    monkeypatch.setattr(torch_alexnet.subprocess, "run", answering(
        9, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n"))
    assert torch_alexnet.driver_release() is None


def test_default_report_path_names_the_device_in_lower_case_words():
    """bench/results/TOOL-DEVICE.json, the device's name without spaces or capitals."""
    expected = Path(__file__).resolve().parents[1] / "bench" / "results" / \
        "train-nvidia-h100-80gb-hbm3.json"
    assert Path(torch_alexnet.report_path("train", "NVIDIA H100 80GB HBM3")) == expected


# -- the stand-in's ops against PyTorch's -------------------------------------------------------
def _same(name, *arguments, **options):
    ours = getattr(numpy_torch.nn.functional, name)(*arguments, **options)
    theirs = getattr(torch.nn.functional, name)(
        *(torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in arguments), **options)
    np.testing.assert_allclose(np.asarray(ours), theirs.numpy(), rtol=1e-10, atol=1e-10,
                               err_msg=f"{name} {options}")


@needs_torch
def test_the_stand_in_ops_are_pytorchs(rng):
    x = rng.standard_normal((2, 6, 7, 8))
    _same("pad", x, (1, 2, 0, 3))
    for groups in (1, 2):
        w = rng.standard_normal((4, 6 // groups, 3, 3))
        _same("conv2d", x, w, rng.standard_normal(4), stride=2, groups=groups)
    _same("linear", x.reshape(2, -1), rng.standard_normal((5, 6 * 7 * 8)), rng.standard_normal(5))
    for size in (1, 3, 5, 9):
        _same("local_response_norm", x * 10, size, alpha=0.3, beta=0.75, k=2.0)
    for include in (True, False):
        _same("avg_pool2d", x, 3, stride=1, padding=1, count_include_pad=include)
    for ceil_mode in (True, False):
        for kernel, stride in ((3, 2), (2, 2), (3, 3)):
            _same("max_pool2d", x, kernel, stride, ceil_mode=ceil_mode)
    halves = numpy_torch.from_numpy(x).chunk(2, dim=1)
    assert [np.asarray(h).tolist() for h in halves] == [
        h.numpy().tolist() for h in torch.from_numpy(x).chunk(2, dim=1)]


# -- the GPU benchmarks' peers, run by PyTorch on the CPU, against the reference ---------------
def _ours(tensor):
    """A peer's NCHW tensor in our layout (C, H, W, N), in float64."""
    return tensor.detach().numpy().transpose(1, 2, 3, 0).astype(np.float64)


def _kernel_case_outputs(cases, case):
    """(the peer's output, ours) for one case of tools/bench_kernels.py, on the same numbers.
    A memory-bound op's peer is given our op's inputs, as the benchmark gives them; ours runs
    on them in float64, and both outputs are compared in PyTorch's layout. A dropout's mask is
    PyTorch's own: there ours is what its mask keeps of the input (PyTorch's dropout is
    inverted: x / keep). A convolution's peer draws its own inputs, one convolution over all
    the towers' channels; ours runs on them in our layout. Its input carries zeros past the
    edge where ours pads (conv1's overhang); ours reads it without them, and the peer's input
    gradient there is dropped."""
    run, prepare = case["torch"]
    if case["kind"] != "conv":
        inputs = case["inputs"]()
        theirs = run(*prepare(*inputs)).detach().numpy()
        if case["pass"] == "dropout mask + apply":
            kept = theirs != 0
            assert 0.3 < kept.mean() < 0.7, f"{case['layer']}: keeps {kept.mean():.2f}, not half"
            return theirs, np.where(kept, from_ours(torch, inputs[0], "cpu").numpy() / 0.5, 0)
        copies = [np.asarray(array, np.float64) for array in inputs]
        result = case["ours"](*copies)    # None from the SGD update, which updates the weights
        ours = copies[0] if result is None else result[0] if isinstance(result, tuple) else result
        return theirs, from_ours(torch, ours, "cpu").numpy()
    inputs = prepare(*case["inputs"]())
    shapes = cases.shapes[case["layer"].split()[0]]
    towers, size = len(shapes), shapes[0][1]
    if case["pass"] == "forward":
        x, weights = inputs
    else:
        dy, x, weights = inputs
    with torch.no_grad():
        x[:, :, size:] = 0
        x[:, :, :, size:] = 0
    xs = np.split(_ours(x)[:, :size, :size], towers)
    ws = np.split(weights.detach().numpy().transpose(1, 2, 3, 0).astype(np.float64), towers)
    if case["pass"] == "forward":
        return _ours(run(x, weights)), case["ours"](*xs, *ws)
    theirs = run(dy, x, weights)
    wanted = 0 if case["pass"] == "backward input" else 1
    assert [gradient is None for gradient in theirs] == [index != wanted for index in range(3)], \
        f"{case['layer']} {case['pass']}: the peer computes other gradients than ours"
    if case["pass"] == "backward input":
        return _ours(theirs[0])[:, :size, :size], np.concatenate(case["ours"](_ours(dy), *ws))
    return (theirs[1].numpy().transpose(1, 2, 3, 0),
            np.concatenate(case["ours"](_ours(dy), *xs)))


@needs_torch
@pytest.mark.parametrize("name", ["2012", "paper-small64", "2012-small28+no-overlap"])
def test_the_kernel_benchmarks_peers_compute_our_ops(name):
    """Every op tools/bench_kernels.py times, timed in PyTorch too (cuDNN's convolution passes,
    each gradient of aten.convolution_backward alone as ours; PyTorch's normalization, max
    pooling and elementwise ops, their backward passes through its autograd; its fused SGD),
    run as the benchmark runs it but on the CPU, computes what our op computes, on the same
    numbers: a peer doing other work (a larger image, other constants) makes its ratio
    meaningless. The default network at its own sizes (conv1's 3-pixel overhang, every pool's);
    small64's other preset (no same-map normalization); pools without overhang."""
    cases = bench_kernels.Cases(stand_in_cupy(), torch, get_backend("reference"), 2, name,
                                torch_device="cpu")
    checked = set()
    for case in cases.all():
        where = f"{name} {case['layer']} {case['pass']}"
        assert case["torch"] is not None, f"{where}: no peer"
        theirs, ours = _kernel_case_outputs(cases, case)
        assert theirs.shape == ours.shape, where
        np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-5 * np.abs(ours).max(),
                                   err_msg=where)
        checked.add((case["layer"].split()[0].rstrip("0123456789ab"), case["pass"]))
    assert {("conv", "backward input"), ("rnorm", "backward"), ("pool", "backward"),
            ("conv", "relu backward"), ("conv", "tanh backward"), ("conv", "bias gradient"),
            ("fc", "dropout mask + apply"), ("fc", "softmax"), ("fc", "SGD update")} <= checked
    assert (("cnorm", "backward") in checked) == ("paper" not in name)


def _reference_steps(model, params, batches):
    """The reference's training step from `params` on each (images NCHW, labels) in turn, as
    the trainer takes it: (the network after, the losses)."""
    network = Network(model, get_backend("reference"), seed=0,
                      params={key: value.copy() for key, value in params.items()})
    solver = SGD.of_recipe(model)
    velocity = solver.momentum_buffers(network)
    losses = []
    for step, (images, labels) in enumerate(batches):
        losses.append(network.forward(np.ascontiguousarray(images.transpose(1, 2, 3, 0)),
                                      labels, train=True, step=step).loss)
        solver.step(network, network.backward(), velocity)
    return network, losses


def _assert_same_changes(model, params, ours, peer, grouped, where):
    """Every weight and bias of the peer moved from `params` as ours did."""
    assembled = lambda weights: TorchAlexNet(model, weights, numpy_torch,   # noqa: E731
                                             grouped=grouped).params
    before, after = assembled(params), assembled(ours.params)
    assert after.keys() == peer.params.keys()
    for key, tensor in peer.params.items():
        change = np.asarray(after[key]) - before[key]
        np.testing.assert_allclose(tensor.detach().numpy() - before[key], change, rtol=1e-3,
                                   atol=1e-3 * np.abs(change).max(), err_msg=f"{where} {key}")


@needs_torch
@pytest.mark.parametrize("name", ["2012-small28+no-dropout", "paper-small28+no-dropout"])
def test_the_training_benchmarks_peer_steps_as_we_do(name):
    """tools/bench_train.py's PyTorch step (towers grouped, cross-entropy, the recipe's SGD), run
    on the CPU, against the reference's training step from the same weights on the same batches:
    the same losses, and the same change of every weight and bias over two steps (the second
    carries the first's momentum). Dropout's masks are random: the models here have none.
    (The default network in float32 is no test of this: a max-pooling window there holds two
    values 1e-6 apart whose order float32's rounding turns, and its gradient goes elsewhere.)"""
    model = alexnet.build_model(name)
    params = initial_parameters(model, seed=0, dtype=np.float32)

    class Recorded:   # the batches the peer draws, to give ours the same
        def __init__(self):
            self.rng, self.drawn = np.random.default_rng(5), []

        def standard_normal(self, *args, **kwargs):
            self.drawn.append(self.rng.standard_normal(*args, **kwargs))
            return self.drawn[-1]

        def integers(self, *args, **kwargs):
            self.drawn.append(self.rng.integers(*args, **kwargs))
            return self.drawn[-1]
    batches = Recorded()
    peer, record, peer_losses = bench_train.torch_step(torch, model, params, 4, device="cpu",
                                                       rng=batches)
    for _ in range(2):
        record(lambda: None, lambda: None)
    ours, losses = _reference_steps(model, params, zip(batches.drawn[::2], batches.drawn[1::2]))
    np.testing.assert_allclose([float(loss) for loss in peer_losses], losses, rtol=1e-5)
    _assert_same_changes(model, params, ours, peer, True, name)


@needs_torch
def test_the_cpu_benchmarks_peer_steps_as_we_do():
    """tools/bench_cpu_step.py's PyTorch step (towers apart) the same way: what its agreement
    check does not see, the backward pass and the update."""
    model = alexnet.build_model("2012-small28+no-dropout")
    params = initial_parameters(model, seed=0, dtype=np.float32)
    peer, draw, step = bench_cpu_step.torch_step(model, params, 4, np.random.default_rng(5),
                                                 torch)
    batches = [draw() for _ in range(2)]
    for images, labels in batches:
        step(images, labels)
    ours, _ = _reference_steps(model, params, [(images.numpy(), labels.numpy())
                                               for images, labels in batches])
    _assert_same_changes(model, params, ours, peer, False, model.name)
