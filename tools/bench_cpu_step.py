"""Time one CPU training step (forward, backward, SGD update) of a model on the reference backend
and, when PyTorch is importable, of the same network in PyTorch, in the same run.

The PyTorch network is built from the same description (convnet.alexnet) and the same initial
weights: two towers as separate tensors, cuda-convnet's overhang as explicit right/bottom padding,
ceil-mode pooling, LocalResponseNorm for the cross-map LRN (with α converted to PyTorch's α/n
convention) and a 5×5 sum pool for the same-map LRN. Before timing, both networks' test-mode
probabilities for one batch are compared; the timing is refused if they disagree.

    python tools/bench_cpu_step.py [--model 2012] [--batch 32] [--repeats 5] [--json FILE]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

from convnet import alexnet, graph
from convnet.backend import get_backend
from convnet.network import Network, bias_key, initial_parameters, weight_key
from convnet.shapes import conv_overhang
from convnet.solver import SGD


def make_batch(model, batch, rng):
    images = rng.normal(0.0, 60.0, model.image_shape + (batch,)).astype(np.float32)
    labels = rng.integers(0, model.geometry.classes, batch)
    return images, labels


def time_steps(step, repeats):
    step()  # warm-up: first-touch allocations, BLAS thread start-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def reference_step(model, params, batch, rng):
    network = Network(model, get_backend("reference"), seed=0,
                      params={key: value.copy() for key, value in params.items()})
    recipe = model.recipe
    solver = SGD(recipe.weight_lr, model.preset.bias_lr_multiplier, recipe.momentum,
                 recipe.weight_decay)
    velocity = solver.momentum_buffers(network)
    counter = iter(range(10 ** 9))

    def step():
        images, labels = make_batch(model, batch, rng)
        network.forward(images, labels, train=True, step=next(counter))
        solver.step(network, network.backward(), velocity)
    return network, step


class TorchNetwork:
    """The model's layers executed with PyTorch ops on NCHW tensors."""

    def __init__(self, model, params, torch):
        self.torch, self.model = torch, model
        self.infos = graph.analyze(model)
        self.params = {}
        for key, value in params.items():
            layer, source = key.split("/")
            info = self.infos[layer]
            if source == "bias":
                array = value
            elif isinstance(info.layer, alexnet.Conv):
                array = value.transpose(3, 0, 1, 2)          # (C,kh,kw,F) → (F,C,kh,kw)
            else:
                array = value.T                               # (D,F) → (F,D)
            self.params[key] = torch.tensor(np.ascontiguousarray(array), requires_grad=True)

    def forward(self, images_nchw, train):
        torch, F = self.torch, self.torch.nn.functional
        outputs = {alexnet.DATA: images_nchw}
        for layer in self.model.layers:
            inputs = [outputs[name] for name in layer.inputs]
            if isinstance(layer, alexnet.Conv):
                size = inputs[0].shape[-1]
                extra = conv_overhang(size, layer.filter_size, layer.stride, layer.pad)
                x = torch.cat(inputs, dim=1)
                x = F.pad(x, (layer.pad, extra, layer.pad, extra))
                weight = torch.cat([self.params[weight_key(layer.name, s)] for s in layer.inputs],
                                   dim=1)
                y = F.conv2d(x, weight, self.params[bias_key(layer.name)], stride=layer.stride)
            elif isinstance(layer, alexnet.FullyConnected):
                x = torch.cat([t.flatten(1) for t in inputs], dim=1)
                weight = torch.cat([self.params[weight_key(layer.name, s)] for s in layer.inputs],
                                   dim=1)
                y = F.linear(x, weight, self.params[bias_key(layer.name)])
            elif isinstance(layer, alexnet.CrossMapNorm):
                p = layer.params
                y = F.local_response_norm(inputs[0], p.size, alpha=p.coefficient(p.size) * p.size,
                                          beta=p.beta, k=p.k)
            elif isinstance(layer, alexnet.SameMapNorm):
                p, x = layer.params, inputs[0]
                window_sum = F.avg_pool2d(x * x, p.size, stride=1, padding=p.size // 2,
                                          count_include_pad=True) * p.size ** 2
                y = x * (p.k + p.coefficient(p.size ** 2) * window_sum) ** -p.beta
            elif isinstance(layer, alexnet.MaxPool):
                y = F.max_pool2d(inputs[0], layer.size, layer.stride, ceil_mode=True)
            elif isinstance(layer, alexnet.Dropout):
                # Non-inverted, as ours: a 0/1 mask in training, × keep in testing.
                x = inputs[0]
                y = x * (torch.rand_like(x) < layer.keep) if train else x * layer.keep
            elif isinstance(layer, alexnet.SoftmaxLoss):
                y = inputs[0]   # logits; the loss is taken by the caller
            else:
                raise TypeError(f"no PyTorch rule for layer {layer.name}")
            outputs[layer.name] = torch.relu(y) if layer.activation == "relu" else y
        return outputs[self.model.output_layer.name]


def torch_step(model, params, batch, rng, torch):
    network = TorchNetwork(model, params, torch)
    recipe = model.recipe
    weights = [p for k, p in network.params.items() if not k.endswith("/bias")]
    biases = [p for k, p in network.params.items() if k.endswith("/bias")]
    optimizer = torch.optim.SGD([
        {"params": weights, "lr": recipe.weight_lr, "weight_decay": recipe.weight_decay},
        {"params": biases, "lr": recipe.weight_lr * model.preset.bias_lr_multiplier,
         "weight_decay": 0.0}], momentum=recipe.momentum)

    def step():
        images, labels = make_batch(model, batch, rng)
        x = torch.from_numpy(np.ascontiguousarray(images.transpose(3, 0, 1, 2)))
        logits = network.forward(x, train=True)
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return network, step


def check_agreement(model, reference, torch_network, rng, torch):
    """Relative difference of the two networks' test-mode probabilities on one batch."""
    images, _ = make_batch(model, 8, rng)
    ours = reference.forward(images, None, train=False).probs
    with torch.no_grad():
        logits = torch_network.forward(
            torch.from_numpy(np.ascontiguousarray(images.transpose(3, 0, 1, 2))), train=False)
        theirs = torch.softmax(logits, dim=1).numpy().T
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=alexnet.DEFAULT_MODEL, choices=list(alexnet.MODELS))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.repeats < 1:
        parser.error("--batch and --repeats must be at least 1")

    model = alexnet.build_model(args.model)
    params = initial_parameters(model, seed=0, dtype=np.float32)
    rng = np.random.default_rng()
    report = {"model": args.model, "batch": args.batch, "repeats": args.repeats,
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "numpy": np.__version__, "commit": subprocess.run(
                  ["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                  cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip() or None}

    reference, step = reference_step(model, params, args.batch, rng)
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(os.cpu_count())
        torch_network, step_torch = torch_step(model, params, args.batch, rng, torch)
        difference = check_agreement(model, reference, torch_network, rng, torch)
        report.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                      probability_max_relative_difference=difference)
        print(f"agreement check: test-mode probabilities differ by {difference:.2e} (relative)")
        if difference > 1e-3:
            print(f"error: the reference and PyTorch networks disagree ({difference:.2e}); "
                  f"not timing", file=sys.stderr)
            return 1

    seconds = time_steps(step, args.repeats)
    report["reference_images_per_second"] = args.batch / seconds
    print(f"reference backend: {seconds * 1e3:8.1f} ms per step, "
          f"{args.batch / seconds:8.1f} images/s  ({args.model}, batch {args.batch}, "
          f"median of {args.repeats})")
    if torch is None:
        print("PyTorch is not importable: no comparison (pip install torch==2.13.0)")
    else:
        torch_seconds = time_steps(step_torch, args.repeats)
        ratio = torch_seconds / seconds
        report.update(torch_images_per_second=args.batch / torch_seconds, ratio=ratio)
        print(f"PyTorch {torch.__version__} CPU: {torch_seconds * 1e3:8.1f} ms per step, "
              f"{args.batch / torch_seconds:8.1f} images/s")
        print(f"ratio reference / PyTorch: {ratio:.2f}x  (target >= 0.5x)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
