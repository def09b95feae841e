"""Time one CPU training step (forward, backward, SGD update) of a model on the reference backend
and, when PyTorch is importable, of the same network in PyTorch, in the same run.

The PyTorch network (tools/torch_alexnet.py) is built from the same description and the same
initial weights, its two towers as separate tensors. Before timing, both networks' test-mode
probabilities for one batch are compared; the timing is refused if they disagree.

    python tools/bench_cpu_step.py [--model 2012] [--batch 32] [--repeats 5] [--json FILE]
"""
import platform
import statistics
import sys
import time

import numpy as np

from convnet import alexnet, options, provenance
from convnet.atomic import atomic_json
from convnet.backend import get_backend
from convnet.errors import run_command
from convnet.network import Network, initial_parameters
from convnet.solver import SGD
from torch_alexnet import TorchAlexNet, recipe_sgd


def make_batch(model, batch, rng):
    images = rng.normal(0.0, 60.0, model.image_shape + (batch,)).astype(np.float32)
    labels = rng.integers(0, model.geometry.classes, batch)
    return images, labels


def time_steps(draw, step, repeats):
    """Median seconds of step(*draw()) over `repeats` runs, after one untimed warm-up
    (first-touch allocations, BLAS thread start-up). Each run's inputs are drawn afresh before
    its clock starts: drawing a batch of 32 at 224 pixels took 0.1-0.3 s, up to a tenth of a
    step on 2 cores, in both networks' times."""
    step(*draw())
    times = []
    for _ in range(repeats):
        inputs = draw()
        start = time.perf_counter()
        step(*inputs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def reference_step(model, params, batch, rng):
    network = Network(model, get_backend("reference"), seed=0,
                      params={key: value.copy() for key, value in params.items()})
    solver = SGD.of_recipe(model)
    velocity = solver.momentum_buffers(network)
    counter = iter(range(10 ** 9))

    def draw():
        return make_batch(model, batch, rng)

    def step(images, labels):
        network.forward(images, labels, train=True, step=next(counter))
        solver.step(network, network.backward(), velocity)
    return network, draw, step


def torch_step(model, params, batch, rng, torch):
    network = TorchAlexNet(model, params, torch)
    optimizer = recipe_sgd(torch, network, model)

    def draw():   # in PyTorch's layout, NCHW, as its loader would give them
        images, labels = make_batch(model, batch, rng)
        return (torch.from_numpy(np.ascontiguousarray(images.transpose(3, 0, 1, 2))),
                torch.from_numpy(labels))

    def step(images, labels):
        logits = network.forward(images, train=True)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return network, draw, step


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
    parser = options.Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=alexnet.DEFAULT_MODEL, type=options.model_choice)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    options.check_counts(parser, args, "batch", "repeats")
    options.check_writable_flag(parser, args.json, "--json")   # before the benchmark

    model = alexnet.build_model(args.model)
    params = initial_parameters(model, seed=0, dtype=np.float32)
    rng = np.random.default_rng()
    report = {"model": args.model, "batch": args.batch, "repeats": args.repeats,
              "cpu": provenance.processor(), "cores": provenance.cores(),
              "python": platform.python_version(), "numpy": np.__version__,
              "blas": provenance.blas(), "commit": provenance.running()}

    reference, draw, step = reference_step(model, params, args.batch, rng)
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(provenance.cores())
        torch_network, draw_torch, step_torch = torch_step(model, params, args.batch, rng, torch)
        difference = check_agreement(model, reference, torch_network, rng, torch)
        report.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                      probability_max_relative_difference=difference)
        print(f"agreement check: test-mode probabilities differ by {difference:.2e} (relative)")
        if difference > 1e-3:
            print(f"error: the reference and PyTorch networks disagree ({difference:.2e}); "
                  f"not timing", file=sys.stderr)
            return 1

    seconds = time_steps(draw, step, args.repeats)
    report["reference_images_per_second"] = args.batch / seconds
    print(f"reference backend: {seconds * 1e3:8.1f} ms per step, "
          f"{args.batch / seconds:8.1f} images/s  ({args.model}, batch {args.batch}, "
          f"median of {args.repeats})")
    if torch is None:
        print("PyTorch is not importable: no comparison (pip install torch==2.13.0)")
    else:
        torch_seconds = time_steps(draw_torch, step_torch, args.repeats)
        ratio = torch_seconds / seconds
        report.update(torch_images_per_second=args.batch / torch_seconds, ratio=ratio)
        print(f"PyTorch {torch.__version__} CPU: {torch_seconds * 1e3:8.1f} ms per step, "
              f"{args.batch / torch_seconds:8.1f} images/s")
        print(f"ratio reference / PyTorch: {ratio:.2f}x  (target >= 0.5x)")
    if args.json:
        atomic_json(args.json, report, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
