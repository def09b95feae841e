"""Training speed of the default network on one GPU, against the same network in PyTorch (cuDNN,
FP32 with TF32 off, each pair of tower convolutions as one with groups=2 where the towers do not
talk: tools/torch_alexnet.py) in the same run.

    python tools/bench_train.py [--gpus 0 0,0] [--conv-algorithms implicit winograd]
                                [--model 2012] [--batch 128] [--repeats 20]
                                [--json bench/results/FILE.json]

Each --gpus placement is measured (as `python -m convnet.train --gpus` reads it), with each
convolution algorithm as train's --conv-algorithm (Winograd's where it serves: conv3-5): 0, both
towers on GPU 0 on one stream; 0,0, the two-device path on one GPU (a stream per tower, copies at
the crossings); 0,1 where there are two GPUs. The first placement with the first algorithm is the
headline figure. A step is what the trainer does per batch: the batch copied from host memory,
forward, backward, the SGD update, and the loss and top-1 and top-5 errors read to the host (ours
in the forward pass; PyTorch's after its update, where torchvision's training loop reads them).
Each step is timed with CUDA events on tower a's stream (tower b's stream joins it before the stop
event), after 3 warm-up steps, on a fresh random batch; the median is reported, as images/s and as
the projected wall time of 90 epochs of ILSVRC-2012's 1,281,167 training images. The breakdown
times each layer's forward and backward on its own (fresh random inputs of its shapes, the layer's
own parameters) with both towers on the first placement's first GPU and the first algorithm, and
lists them with their share of the sum. The JSON report (by default
bench/results/train-DEVICE.json) records the device, versions, the peer's settings, the commit and
the kernels hash; it is written as each figure comes ("complete" is false until the end), so a run
cut short keeps what it measured. A timed run with a loss that is not finite (ours or PyTorch's)
stops the benchmark: its time is not a result.
"""
import math
import os
import statistics
import sys

import numpy as np

from convnet import alexnet, graph, options
from convnet.atomic import atomic_json
from convnet.backend import CONV_ALGORITHMS
from convnet.backend.cuda.launch import DETERMINISTIC_CUBLAS_WORKSPACE
from convnet.errors import run_command
from convnet.layers import IMPLEMENTATIONS, Context
from convnet.network import Network, bias_key, dropout_key, initial_parameters, weight_key
from convnet.replicas.shard import BatchPart
from convnet.solver import SGD
from convnet.train import select_placement
from torch_alexnet import TorchAlexNet, gpu_modules, recipe_sgd, report_path, run_record

WARMUP = 3
IMAGENET_TRAIN_IMAGES = 1_281_167
EPOCHS = 90


def median_ms(record, repeats, start, stop, elapsed):
    """Median of `repeats` timed calls of record(), after WARMUP untimed ones; record is timed
    between the start and stop events (it draws its own fresh inputs before start)."""
    for _ in range(WARMUP):
        record(lambda: None, lambda: None)
    times = []
    for _ in range(repeats):
        record(start.record, stop.record)
        stop.synchronize()
        times.append(elapsed(start, stop))
    return statistics.median(times)


def random_images(rng, shape):
    """A fresh batch of pixel-like values (s.d. 50), drawn in float32: drawing in float64 and
    converting took about a second per batch of 128 at 224 pixels, over 100 times a run."""
    images = rng.standard_normal(shape, dtype=np.float32)
    images *= 50
    return images


def our_step(placement, model, params, batch):
    network = Network(model, placement, seed=0, params={k: v.copy() for k, v in params.items()})
    tower_a, *others = placement.distinct_backends()
    solver = SGD.of_recipe(model)
    velocity = solver.momentum_buffers(network)
    rng = np.random.default_rng()
    steps = iter(range(10 ** 9))
    losses = []

    def record(begin, end):
        images = random_images(rng, model.image_shape + (batch,))
        labels = rng.integers(0, model.geometry.classes, batch)
        with tower_a.context():    # events record on the current stream: tower a's
            begin()
        for other in others:       # tower b starts after the start event, not before
            other.launcher.wait(tower_a.launcher.event())
        losses.append(network.forward(images, labels, train=True, step=next(steps)).loss)
        solver.step(network, network.backward(), velocity)
        for other in others:       # the step ends when both towers' streams are done
            tower_a.launcher.wait(other.launcher.event())
        with tower_a.context():
            end()
    return network, record, losses


def torch_step(torch, model, params, batch, *, device="cuda", rng=None):
    """(network, record, losses) as our_step's, for the peer on `device` ("cpu" in the tests,
    which pass the rng that draws the batches)."""
    network = TorchAlexNet(model, params, torch, device=device, grouped=True)
    optimizer = recipe_sgd(torch, network, model)
    rng = np.random.default_rng() if rng is None else rng
    losses = []

    def record(begin, end):
        images = random_images(rng, (batch,) + model.image_shape)
        labels = torch.from_numpy(rng.integers(0, model.geometry.classes, batch))
        begin()
        labels = labels.to(device, non_blocking=True)
        logits = network.forward(torch.from_numpy(images).to(device, non_blocking=True),
                                 train=True)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # What torchvision's training loop reads on the host every step for its log, as our
        # trainer does in its forward pass: the loss, and the batch's top-1 and top-5 hits (read,
        # each a wait for the GPU, as there; the benchmark keeps only the loss).
        with torch.no_grad():
            hits = logits.topk(5, dim=1).indices == labels[:, None]
            losses.append(loss.item())
            hits[:, 0].sum().item(), hits.any(dim=1).sum().item()
        end()
    return network, record, losses


def check_losses(who, losses):
    """A step timed must be a step that works: every loss of the timed steps (after the
    WARMUP untimed ones) finite."""
    timed = losses[WARMUP:]
    bad = [index for index, loss in enumerate(timed) if not math.isfinite(float(loss))]
    if bad:
        raise SystemExit(f"bench_train: {who}: the loss of timed step {bad[0]} is "
                         f"{float(timed[bad[0]])}; its time is not a result")


def layer_breakdown(cupy, backend, network, model, batch, repeats):
    """[(layer, pass, ms)]: each layer's forward, and backward, alone on fresh random inputs,
    in the backend's context (its device and stream: the events record there)."""
    with backend.context():
        return _layer_breakdown(cupy, backend, network, model, batch, repeats)


def _layer_breakdown(cupy, backend, network, model, batch, repeats):
    shapes = graph.input_shapes(model)
    labels = np.random.default_rng().integers(0, model.geometry.classes, batch)
    part = BatchPart.of_whole(batch)
    start, stop = cupy.cuda.Event(), cupy.cuda.Event()
    rows = []
    for index, layer in enumerate(model.layers):
        implementation = IMPLEMENTATIONS[type(layer)]
        weights = [network.params[weight_key(layer.name, source)] for source in layer.inputs
                   if weight_key(layer.name, source) in network.params]
        bias = network.params.get(bias_key(layer.name))
        context = Context(train=True, labels=labels, dropout_key=dropout_key(0, 0, index),
                          part=part)

        def inputs():
            return [cupy.random.standard_normal(shape + (batch,), dtype=np.float32)
                    for shape in shapes[layer.name]]
        state = {}

        def forward(begin, end):
            x = inputs()
            begin()
            output, saved = implementation.forward(backend, layer, x, weights, bias, context)
            end()
            state.update(x=x, output=output, saved=saved)

        def backward(begin, end):
            forward(lambda: None, lambda: None)
            dy = cupy.random.standard_normal(state["output"].shape, dtype=np.float32)
            begin()
            implementation.backward(backend, layer, dy, state["x"], state["output"],
                                    state["saved"], weights,
                                    [tensor != alexnet.DATA for tensor in layer.inputs])
            end()
        for name, record in (("forward", forward), ("backward", backward)):
            rows.append((layer.name, name, median_ms(record, repeats, start, stop,
                                                     cupy.cuda.get_elapsed_time)))
    return rows


def main(argv=None):
    parser = options.Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", nargs="+", default=["0", "0,0"],
                        help="placements to measure, as train's --gpus (default: 0 0,0)")
    parser.add_argument("--conv-algorithms", nargs="+", choices=CONV_ALGORITHMS,
                        default=list(CONV_ALGORITHMS),
                        help="convolution algorithms to measure each placement with, as "
                             "train's --conv-algorithm (default: all)")
    parser.add_argument("--model", default=alexnet.DEFAULT_MODEL, type=options.model_choice,
                        help="the network to time (default: %(default)s, the default network)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", help="write the report here (default: "
                                       "bench/results/train-DEVICE.json)")
    args = parser.parse_args(argv)
    options.check_counts(parser, args, "batch", "repeats")
    for gpus in args.gpus:
        options.check_gpu_indices(parser, gpus)
    options.check_writable_flag(parser, args.json, "--json")   # before the benchmark
    # 0,0 runs the towers' products on concurrent streams under a fixed cuBLAS workspace, which
    # must be set before the process's first product makes the handle: every placement is timed
    # under it.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", DETERMINISTIC_CUBLAS_WORKSPACE)
    cupy, torch = gpu_modules("bench_train")
    model = alexnet.build_model(args.model)
    params = initial_parameters(model, seed=0, dtype=np.float32)
    # The breakdown runs every layer on one backend: towers on one GPU, one stream.
    single, _ = select_placement(args.gpus[0].split(",")[0],
                                 conv_algorithm=args.conv_algorithms[0])
    backend = single.backends["a"]
    report = {
        **run_record(cupy, torch, backend.launcher), "model": model.name, "batch": args.batch, "repeats": args.repeats,
        "complete": False, "placements": []}
    path = args.json or report_path("train", report["device"])
    placements = report["placements"]
    for gpus in args.gpus:
        for algorithm in args.conv_algorithms:
            placement, where = select_placement(gpus, conv_algorithm=algorithm)
            network, ours, losses = our_step(placement, model, params, args.batch)
            with placement.backends["a"].context():
                start, stop = cupy.cuda.Event(), cupy.cuda.Event()
            step_ms = median_ms(ours, args.repeats, start, stop, cupy.cuda.get_elapsed_time)
            check_losses(f"--gpus {gpus} --conv-algorithm {algorithm}", losses)
            placements.append({"gpus": gpus, "conv_algorithm": algorithm, "placement": where,
                               "step_ms": step_ms,
                               "images_per_second": args.batch / (step_ms * 1e-3)})
            print(f"--gpus {gpus} --conv-algorithm {algorithm} ({where}): {step_ms:.2f} ms per "
                  f"step of {args.batch}, {placements[-1]['images_per_second']:.0f} images/s")
            atomic_json(path, report)   # each figure as it comes, should the run be cut short
    ours_ms = placements[0]["step_ms"]
    hours = EPOCHS * IMAGENET_TRAIN_IMAGES / placements[0]["images_per_second"] / 3600
    report.update(step_ms=ours_ms, images_per_second=placements[0]["images_per_second"],
                  projected_90_epoch_hours=hours)
    print(f"{report['device']}, kernels from {report['kernels_from']}: --gpus "
          f"{placements[0]['gpus']} --conv-algorithm {placements[0]['conv_algorithm']}, {EPOCHS} "
          f"ImageNet epochs in {hours:.1f} h")
    if torch is not None:
        _, peer, losses = torch_step(torch, model, params, args.batch)
        torch_start = torch.cuda.Event(enable_timing=True)
        torch_stop = torch.cuda.Event(enable_timing=True)
        peer_ms = median_ms(peer, args.repeats, torch_start, torch_stop,
                            lambda a, b: a.elapsed_time(b))
        check_losses("PyTorch", losses)
        report.update(torch_step_ms=peer_ms, torch_images_per_second=args.batch / (peer_ms * 1e-3),
                      ratio_torch_over_ours=peer_ms / ours_ms)
        for entry in placements:
            entry["ratio_torch_over_ours"] = peer_ms / entry["step_ms"]
        print(f"PyTorch {torch.__version__} (cuDNN {torch.backends.cudnn.version()}, TF32 off, "
              f"groups=2): "
              f"{peer_ms:.2f} ms per step; ratio {peer_ms / ours_ms:.2f}x for --gpus "
              f"{placements[0]['gpus']} --conv-algorithm {placements[0]['conv_algorithm']}, "
              f"{peer_ms / min(entry['step_ms'] for entry in placements):.2f}x for the fastest "
              f"(target ≥ 1.0, goal 1.3)")
        atomic_json(path, report)
    breakdown_network = Network(model, single, seed=0, params=params)
    rows = layer_breakdown(cupy, backend, breakdown_network, model, args.batch, args.repeats)
    total = sum(ms for _, _, ms in rows)
    print(f"{'layer':10} {'pass':9} {'ms':>8} {'share':>6}")
    for layer, name, ms in rows:
        print(f"{layer:10} {name:9} {ms:8.3f} {100 * ms / total:5.1f}%")
    report["layers"] = [{"layer": layer, "pass": name, "ms": ms} for layer, name, ms in rows]
    report["complete"] = True
    atomic_json(path, report)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(run_command(main))
