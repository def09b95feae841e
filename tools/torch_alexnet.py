"""A model of convnet.alexnet built with PyTorch ops, for the benchmarks' peer measurements, and
the GPU benchmarks' shared set-up (gpu_modules, peer_settings, run_record, report_path).

Built from the same description and initial weights as ours, on NCHW tensors:
cuda-convnet's overhang as explicit right/bottom zero padding, ceil-mode max pooling,
LocalResponseNorm for the cross-map LRN (α converted to PyTorch's α/n convention, applied to each
tower's channels alone), a 5×5 sum pool for the same-map LRN, non-inverted dropout.

Two ways to hold the towers:
  grouped=False   every tower layer on its own (the CPU benchmark)
  grouped=True    each pair of tower layers (conv1a/conv1b, …) as one layer over both towers'
                  channels [a | b]: a convolution whose towers do not talk (conv2, conv4, conv5)
                  has groups=2, one whose towers read both (conv1 from the image, conv3) and the
                  FC layers have groups=1 with the weights assembled in that order: the way a
                  cuDNN-backed framework runs AlexNet on one GPU (the GPU benchmarks)
"""
import os
import platform
import re
import subprocess

import numpy as np

from convnet import alexnet, provenance
from convnet.backend.cuda.devices import cuda_devices
from convnet.backend.cuda.launch import build
from convnet.network import bias_key, weight_key
from convnet.shapes import conv_overhang


def _torch_layout(layer, value):
    """Our weight layout → PyTorch's: conv (C,kh,kw,F) → (F,C,kh,kw); FC (D,F) → (F,D)."""
    if isinstance(layer, alexnet.Conv):
        return value.transpose(3, 0, 1, 2)
    return value.T


class TorchAlexNet:
    def __init__(self, model, params, torch, *, device="cpu", grouped=False):
        self.torch, self.grouped = torch, grouped
        self.params = {}     # name → leaf tensor (what the optimizer updates)
        self.steps = []      # (output name, function of the outputs dict)
        tensor = lambda a: torch.tensor(np.ascontiguousarray(a), device=device,  # noqa: E731
                                        requires_grad=True)
        layers = {layer.name: layer for layer in model.layers}
        done = set()
        for layer in model.layers:
            if layer.name in done:
                continue
            partner = self._partner(layer, layers) if grouped else None
            members = [layer] if partner is None else [layer, partner]
            done.update(member.name for member in members)
            self._add(members, params, tensor)

    @staticmethod
    def _partner(layer, layers):
        """Tower b's twin of a tower-a layer (conv1a → conv1b), if there is one."""
        if layer.tower != "a" or not layer.name.endswith("a"):
            return None
        twin = layers.get(layer.name[:-1] + "b")
        return twin if twin is not None and type(twin) is type(layer) else None

    def _merged_name(self, name):
        """The tensor that holds `name` in this network: a grouped pair's stem, or the name."""
        if not self.grouped or name == alexnet.DATA or name[-1] not in "ab":
            return name
        stem = name[:-1]
        return stem if any(s == stem for s, _ in self.steps) else name

    def _add(self, members, params, tensor):
        torch, F = self.torch, self.torch.nn.functional
        layer = members[0]
        name = layer.name[:-1] if len(members) == 2 else layer.name
        # Every member reads the same tensors (merged), in the first member's order.
        sources = [self._merged_name(source) for source in layer.inputs]
        sources = list(dict.fromkeys(sources))
        groups = 1
        if len(members) == 2 and isinstance(layer, alexnet.Conv) and \
                members[1].inputs != layer.inputs and len(layer.inputs) == 1:
            groups = 2                     # each tower reads its own half
        weight = bias = None
        if isinstance(layer, (alexnet.Conv, alexnet.FullyConnected)):
            def position(source):   # where the source's channels sit in the merged input
                merged = self._merged_name(source)
                return sources.index(merged), source[-1] if merged != source else ""
            rows = [np.concatenate([_torch_layout(member, params[weight_key(member.name, source)])
                                    for source in sorted(member.inputs, key=position)], axis=1)
                    for member in members]
            weight = tensor(np.concatenate(rows, axis=0))
            bias = tensor(np.concatenate([params[bias_key(m.name)] for m in members]))
            self.params[f"{name}/weight"], self.params[f"{name}/bias"] = weight, bias
        halves = len(members)
        activation = {None: lambda y: y, "relu": torch.relu, "tanh": torch.tanh}[layer.activation]

        def run(outputs):
            inputs = [outputs[source] for source in sources]
            if isinstance(layer, alexnet.Conv):
                x = torch.cat(inputs, dim=1) if len(inputs) > 1 else inputs[0]
                extra = conv_overhang(x.shape[-1], layer.filter_size, layer.stride, layer.pad)
                x = F.pad(x, (layer.pad, extra, layer.pad, extra))
                y = F.conv2d(x, weight, bias, stride=layer.stride, groups=groups)
            elif isinstance(layer, alexnet.FullyConnected):
                y = F.linear(torch.cat([t.flatten(1) for t in inputs], dim=1), weight, bias)
            elif isinstance(layer, alexnet.CrossMapNorm):
                y = torch.cat([crossmap_norm(torch, part, layer.params)
                               for part in inputs[0].chunk(halves, dim=1)], dim=1)
            elif isinstance(layer, alexnet.SameMapNorm):
                y = samemap_norm(torch, inputs[0], layer.params)
            elif isinstance(layer, alexnet.MaxPool):
                y = F.max_pool2d(inputs[0], layer.size, layer.stride, ceil_mode=layer.overhang)
            elif isinstance(layer, alexnet.Dropout):
                x = inputs[0]   # non-inverted, as ours: a 0/1 mask in training, × keep in testing
                y = x * (torch.rand_like(x) < layer.keep) if outputs["train"] else x * layer.keep
            elif isinstance(layer, alexnet.SoftmaxLoss):
                y = inputs[0]   # logits; the loss is taken by the caller
            else:
                raise TypeError(f"no PyTorch rule for layer {layer.name}")
            return activation(y)
        self.steps.append((name, run))

    def forward(self, images_nchw, train):
        """Logits (N, classes) for NCHW images."""
        outputs = {alexnet.DATA: images_nchw, "train": train}
        for name, run in self.steps:
            outputs[name] = run(outputs)
        return outputs[self.steps[-1][0]]


def crossmap_norm(torch, x, params):
    """Cross-map response normalization of NCHW x by PyTorch's local_response_norm, whose α is
    divided by the window's terms: ours per term times the window."""
    return torch.nn.functional.local_response_norm(
        x, params.size, alpha=params.coefficient(params.size) * params.size, beta=params.beta,
        k=params.k)


def samemap_norm(torch, x, params):
    """Same-map response normalization of NCHW x: the window's sum of squares as a zero-padded
    average pool (count_include_pad) times the window's terms, clipped at the map's edges as
    ours is."""
    terms = params.size ** 2
    window_sum = torch.nn.functional.avg_pool2d(x * x, params.size, stride=1,
                                                padding=params.size // 2,
                                                count_include_pad=True) * terms
    return x * (params.k + params.coefficient(terms) * window_sum) ** -params.beta


def from_ours(torch, array, device):
    """Our array (CuPy or NumPy) as a PyTorch tensor on `device`, in PyTorch's layout:
    (C,H,W,N) → NCHW, (F,N) → (N,F), a vector as it is; contiguous, as a PyTorch op's input
    would be."""
    tensor = torch.as_tensor(array, device=device)
    if tensor.dim() == 4:
        tensor = tensor.permute(3, 0, 1, 2)
    elif tensor.dim() == 2:
        tensor = tensor.T
    return tensor.contiguous()


def recipe_sgd(torch, network, model):
    """torch.optim.SGD with the model's recipe: weight decay on weights only, the preset's bias
    learning-rate multiplier, momentum."""
    recipe = model.recipe
    weights = [p for k, p in network.params.items() if not k.endswith("/bias")]
    biases = [p for k, p in network.params.items() if k.endswith("/bias")]
    return torch.optim.SGD([
        {"params": weights, "lr": recipe.weight_lr, "weight_decay": recipe.weight_decay},
        {"params": biases, "lr": recipe.weight_lr * model.preset.bias_lr_multiplier,
         "weight_decay": 0.0}], momentum=recipe.momentum)


def gpu_modules(tool):
    """(cupy, torch) for a GPU benchmark: exits with one line when CuPy or a GPU is missing;
    torch is None when PyTorch is not importable, else set to FP32 without TF32, cuDNN choosing
    its fastest algorithms."""
    why_none = cuda_devices()[1]
    if why_none:   # no CuPy, no driver, one too old for this CuPy, or no device
        raise SystemExit(f"{tool}: needs a CUDA GPU through CuPy: {why_none}")
    import cupy
    try:
        import torch
    except ImportError:
        return cupy, None
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    return cupy, torch


def peer_settings(torch):
    """How the PyTorch peer ran, for the reports (None without PyTorch)."""
    if torch is None:
        return None
    return {"torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_benchmark": torch.backends.cudnn.benchmark}


def driver_release():
    """The NVIDIA driver's release ("580.159.03"), as nvidia-smi reports it; None without it.
    CUDA's own driver version (13000) says only which CUDA the driver serves."""
    try:
        listed = subprocess.run(["nvidia-smi", "--query-gpu=driver_version",
                                 "--format=csv,noheader"], capture_output=True, text=True,
                                timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = listed.stdout.split()
    return lines[0] if listed.returncode == 0 and lines else None


def run_record(cupy, torch, launcher):
    """What a GPU benchmark's report says of its run, beside its figures: the device, the driver
    and versions, the peer's settings, the commit, the kernels' hash and where they came from."""
    device = cupy.cuda.Device()
    runtime = cupy.cuda.runtime
    return {"device": runtime.getDeviceProperties(device.id)["name"].decode(),
            "compute_capability": device.compute_capability,
            "driver": runtime.driverGetVersion(), "driver_release": driver_release(),
            "cuda_runtime": runtime.runtimeGetVersion(), "cupy": cupy.__version__,
            "peer": peer_settings(torch), "python": platform.python_version(),
            "commit": provenance.running(), "kernels_hash": build.source_hash(),
            "kernels_from": launcher.path}


RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench",
                       "results")


def report_path(tool, device_name):
    """A GPU benchmark's report where no --json names one: bench/results/TOOL-DEVICE.json."""
    device = re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-")
    return os.path.join(RESULTS, f"{tool}-{device}.json")
