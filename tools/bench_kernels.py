"""Time every CUDA kernel pass at the default network's per-tower shapes (batch 128) on a GPU,
against cuDNN through PyTorch (TF32 off) and the device's measured copy bandwidth, in one run.

    python tools/bench_kernels.py [conv|norm|pool|elementwise ...] [--model 2012] [--batch 128]
                                  [--repeats 25] [--plans] [--check-only]
                                  [--json bench/results/FILE.json]

With op families named, only their cases run (all of them by default). A convolution pass that
Winograd's algorithm serves (3 × 3 filters at stride 1: conv3, conv4, conv5) is timed by it too,
on a row of its own ("by Winograd", in the launcher's output tiles m × m, 4 × 4 at 13 × 13; the
launcher's plan, convnet/backend/cuda/conv.py, is still the implicit GEMM's), with the
convolutions' total against cuDNN both ways. With --plans, each convolution pass is also timed
under other plans than the launcher's (the other tile sides, and fewer or more slices of its
depth, for each algorithm that serves it and, for Winograd's, each m), and the fastest is
reported: what tuning the launcher's choice would gain.

Per case: the median of `repeats` runs, each timed with CUDA events around the op alone, after 3
warm-up runs, on inputs drawn afresh for every run (3 sets, cycled). Before each run a write
over 64 times the L2 cache evicts the inputs and keeps the GPU busy while Python queues the run,
so the events time the GPU's work, not the launch overhead (a run whose queueing outlasted the
flush is counted as host-bound in the report). A layer that reads both towers (conv3) is timed
as the network runs it, one convolution per tower's input and their sum, against cuDNN's one
convolution over all the input channels. Convolutions report GFLOP/s (2 × the direct
convolution's multiply-adds, whatever the algorithm: Winograd's is an effective rate) and the
percent of the FP32 peak (FP32 units per SM × SMs × 2 × the boost clock CuPy reports); the
memory-bound ops report GB/s counting each input read once and each output written once, against
a device-to-device copy measured in the same run (bytes read plus written). With PyTorch
importable, the same op in PyTorch on NCHW tensors of the same sizes is timed the same way: the
"peer", cuDNN for the convolutions (TF32 off; its own inputs, conv1's overhang as 3 more zero
columns and rows), for every other op PyTorch's own on our op's inputs (normalization's and
pooling's backward passes through its autograd, the ReLU's and tanh's as its autograd computes
them, its dropout, its fused SGD); the ratio is the peer's time / ours (above 1: ours is
faster). Every case (and plan) is first run once on a backend whose outputs start as NaN: one
that fails or leaves an output not finite is reported and not timed, the others are, and the
exit status is 1 (agreement with the reference is checked by the GPU tests, which make
gpu-check runs first).

The JSON report (by default bench/results/kernels-DEVICE.json) records the device, driver, CUDA
and CuPy versions, the peer's settings (PyTorch, cuDNN, TF32 off), the commit, the hash of
kernels/ (kernels/build.py source_hash), where the kernels came from (fatbin or NVRTC), the copy
bandwidth and every case. It is rewritten after every case, "complete" false until the last, so
a run cut short keeps what it timed.
"""
import functools
import statistics
import sys
import time

import numpy as np

from convnet import alexnet, graph, options
from convnet.atomic import atomic_json
from convnet.backend import get_backend
from convnet.backend.cuda import conv
from convnet.errors import run_command
from convnet.layers import activation_op
from convnet.shapes import conv_overhang
from torch_alexnet import (crossmap_norm, from_ours, gpu_modules, report_path, run_record,
                           samemap_norm)

FAMILIES = ("conv", "norm", "pool", "elementwise")
WINOGRAD = {"algorithm": "winograd"}
WARMUP = 3
INPUT_SETS = 3
COPY_ELEMENTS = 2 ** 28   # 1 GiB: far past the L2 cache
# H100: 3.2 GB, about a millisecond to write: longer than Python takes to queue a pass of several
# launches (Winograd's transforms and products, conv3's two convolutions and their sum), which
# 16 times might not be.
FLUSH_L2_TIMES = 64
FP32_UNITS_PER_SM = {7: 64, 8: 64, 9: 128}        # by major capability; 8.6, 8.7, 8.9 below
FP32_UNITS_BY_CAPABILITY = {86: 128, 87: 128, 89: 128}


def device_attribute(cupy, device, name):
    """cudaDevAttr<name> of `device`, asked alone: Device.attributes asks for every attribute
    the runtime lists, and one the driver refuses would end the benchmark."""
    runtime = cupy.cuda.runtime
    return runtime.deviceGetAttribute(getattr(runtime, f"cudaDevAttr{name}"), device.id)


def fp32_peak_flops(cupy, device):
    capability = int(device.compute_capability)
    units = FP32_UNITS_BY_CAPABILITY.get(capability, FP32_UNITS_PER_SM.get(capability // 10, 64))
    clock_hz = device_attribute(cupy, device, "ClockRate") * 1e3
    return device_attribute(cupy, device, "MultiProcessorCount") * units * 2 * clock_hz


class Timer:
    """Device-event timing, the same for our ops and PyTorch's (both on the default stream).

    Before each timed run, a write over FLUSH_L2_TIMES times the L2 cache evicts the inputs, so
    that the run reads them from memory as it would in training, and keeps the GPU busy while the
    host queues the run, so that the events time the GPU's work and not the Python that launches
    it. A run whose queueing outlasted the flush left the GPU idle inside the timed span: such
    runs are counted (host_bound)."""

    def __init__(self, cupy):
        self.cupy = cupy
        l2_bytes = device_attribute(cupy, cupy.cuda.Device(), "L2CacheSize")
        self.buffer = cupy.empty(FLUSH_L2_TIMES * l2_bytes // 4, dtype=np.float32)
        self.flush_ms = float("inf")   # while the flush itself is timed
        self.flush_ms, _ = self.median_ms(self.flush, lambda: (), 5)

    def flush(self):
        self.buffer.fill(1.0)

    def median_ms(self, run, make_inputs, repeats, torch=None):
        """(median milliseconds of run(*inputs) over `repeats` timed runs after WARMUP, the
        number of host-bound runs). Inputs come from INPUT_SETS sets, redrawn when used up;
        with `torch`, PyTorch's events time the run."""
        input_sets = [make_inputs() for _ in range(INPUT_SETS)]
        for index in range(WARMUP):
            run(*input_sets[index % INPUT_SETS])
        times, host_bound = [], 0
        for index in range(repeats):
            if torch is None:
                start, stop = self.cupy.cuda.Event(), self.cupy.cuda.Event()
            else:
                start, stop = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            self.flush()
            queued = time.perf_counter()
            start.record()
            run(*input_sets[index % INPUT_SETS])
            stop.record()
            queued = (time.perf_counter() - queued) * 1e3
            stop.synchronize()
            times.append(self.cupy.cuda.get_elapsed_time(start, stop) if torch is None
                         else start.elapsed_time(stop))
            host_bound += queued > self.flush_ms
            if index % INPUT_SETS == INPUT_SETS - 1:
                input_sets = [make_inputs() for _ in range(INPUT_SETS)]
        return statistics.median(times), host_bound


def copy_bandwidth(cupy, timer, repeats):
    """Bytes read plus written per second by a device-to-device copy of COPY_ELEMENTS floats."""
    source = cupy.random.random(COPY_ELEMENTS, dtype=np.float32)
    target = cupy.empty_like(source)
    milliseconds, _ = timer.median_ms(lambda s: target.__setitem__(Ellipsis, s),
                                      lambda: (source,), repeats)
    return 2 * source.nbytes / (milliseconds * 1e-3)


class Cases:
    """Every (layer, pass) of tower a of the model named: our op, its inputs, its cost, and the
    PyTorch equivalent ("torch": (run, prepare), where prepare takes the inputs our op is given
    to run's, outside the timed run; None without PyTorch)."""

    def __init__(self, cupy, torch, backend, batch, model, torch_device="cuda"):
        self.cupy, self.torch, self.backend, self.batch = cupy, torch, backend, batch
        self.torch_device = torch_device   # where the peer's tensors live ("cpu" in the tests)
        self.model = alexnet.build_model(model)
        self.shapes = graph.input_shapes(self.model)
        self.infos = graph.analyze(self.model)

    def normal(self, shape, scale=1.0):
        return self.cupy.random.standard_normal(shape, dtype=np.float32) * np.float32(scale)

    def tensor(self, array):
        """Our input as the peer's: PyTorch's layout, on its device."""
        return from_ours(self.torch, array, self.torch_device)

    def peer(self, run, prepare=None):
        """A PyTorch peer: run(*prepare(*our op's inputs)); by default, run on our inputs in
        PyTorch's layout. None without PyTorch."""
        if self.torch is None:
            return None
        return run, prepare or (lambda *ours: tuple(self.tensor(array) for array in ours))

    def autograd_peer(self, forward):
        """The peer of a backward pass that ours takes as (dy, x, ...): PyTorch's autograd through
        `forward`, which builds its graph (the forward pass) outside the timed run."""
        def prepare(dy, x, *outputs):
            x = self.tensor(x).requires_grad_()
            return forward(x), x, self.tensor(dy)
        return self.peer(lambda y, x, dy: self.torch.autograd.grad(y, x, dy, retain_graph=True)[0],
                         prepare)

    def all(self):
        for layer in self.model.layers:
            if layer.tower != "a":
                continue
            if isinstance(layer, alexnet.Conv):
                yield from self.family("conv", self.conv(layer))
            elif isinstance(layer, (alexnet.CrossMapNorm, alexnet.SameMapNorm)):
                yield from self.family("norm", self.norm(layer))
            elif isinstance(layer, alexnet.MaxPool):
                yield from self.family("pool", self.pool(layer))
        yield from self.family("elementwise", self.elementwise())

    @staticmethod
    def family(name, cases):
        for case in cases:
            yield dict(case, family=name)

    def conv(self, layer):
        """The layer's passes as the network runs them (convnet/layers.py): a layer that reads
        both towers (conv3) convolves each tower's input with its own filters and adds the
        results, against cuDNN's one convolution of all the input channels; conv1, which reads
        the images, has no input gradient."""
        inputs = self.shapes[layer.name]
        (c, h, w), n, f = inputs[0], self.batch, layer.channels
        assert all(shape == inputs[0] for shape in inputs), "equal inputs, one plan for all"
        k, channels = len(inputs), sum(shape[0] for shape in inputs)
        s, stride, pad = layer.filter_size, layer.stride, layer.pad
        ops = self.backend
        y_shape = self.infos[layer.name].output_shape + (n,)
        flops = 2 * channels * s * s * f * y_shape[1] * y_shape[2] * n
        name = f"{layer.name} ({f'{k}×' if k > 1 else ''}{c}→{f}, {s}×{s}/{stride})"
        # cuDNN pads both sides alike: the zeros our padding puts past the bottom/right edge
        # beyond `pad` (conv1's 3; none where the overhang is the padding, conv2-5) are its input's
        beyond_pad = conv_overhang(h, s, stride, pad) - pad
        xs = lambda: tuple(self.normal((c, h, w, n)) for _ in range(k))           # noqa: E731
        ws = lambda: tuple(self.normal((c, s, s, f), 0.01) for _ in range(k))     # noqa: E731
        dy = lambda: self.normal(y_shape)                                         # noqa: E731

        def forward(*arrays, **plan):
            output = None
            for x, wt in zip(arrays[:k], arrays[k:]):
                part = ops.conv_forward(x, wt, stride=stride, pad=pad, **plan)
                output = part if output is None else ops.add(output, part)
            return output

        def backward_input(g, *weights, **plan):
            return tuple(ops.conv_backward_input(g, wt, input_size=h, stride=stride, pad=pad,
                                                 **plan) for wt in weights)

        def backward_filters(g, *images, **plan):
            return tuple(ops.conv_backward_filters(g, x, filter_size=s, stride=stride, pad=pad,
                                                   **plan) for x in images)
        passes = {"forward": (forward, lambda: xs() + ws()),
                  "backward_input": (backward_input, lambda: (dy(),) + ws()),
                  "backward_filters": (backward_filters, lambda: (dy(),) + xs())}
        if alexnet.DATA in layer.inputs:   # training never asks for the images' gradient
            del passes["backward_input"]
        for pass_key, (ours, make_inputs) in passes.items():
            pass_name = pass_key.replace("_", " ")
            plan_for = functools.partial(conv.pass_plan, pass_key, (c, h, w, n), f, s, stride,
                                         pad)
            yield {"layer": name, "pass": pass_name, "kind": "conv", "flops": flops,
                   "ours": ours, "inputs": make_inputs, "plan_for": plan_for,
                   "winograd": conv.winograd_applies(s, stride, pad),
                   "torch": self.torch_conv(pass_name, channels, h + beyond_pad, n, f, s, stride,
                                            pad)}

    def torch_conv(self, pass_name, c, size, n, f, s, stride, pad):
        torch, device = self.torch, self.torch_device
        if torch is None:
            return None
        out = (size + 2 * pad - s) // stride + 1
        x = lambda: torch.randn(n, c, size, size, device=device)      # noqa: E731
        wt = lambda: torch.randn(f, c, s, s, device=device) * 0.01    # noqa: E731
        dy = lambda: torch.randn(n, f, out, out, device=device)       # noqa: E731
        conv = torch.nn.functional.conv2d
        backward = torch.ops.aten.convolution_backward
        # Its own inputs, not ours: a layer that reads both towers is one convolution here, and
        # conv1's overhang past the padding is part of the image.
        if pass_name == "forward":
            return (lambda a, b: conv(a, b, stride=stride, padding=pad),
                    lambda *ours: (x(), wt()))
        mask = [pass_name == "backward input", pass_name == "backward filters", False]
        return (lambda g, a, b: backward(g, a, b, None, [stride] * 2, [pad] * 2, [1, 1], False,
                                         [0, 0], 1, mask), lambda *ours: (dy(), x(), wt()))

    def norm(self, layer):
        c, h, w = self.shapes[layer.name][0]
        shape = (c, h, w, self.batch)
        cross = isinstance(layer, alexnet.CrossMapNorm)
        kind = "crossmap" if cross else "samemap"
        ops, params = self.backend, layer.params
        relu = lambda: self.cupy.maximum(self.normal(shape, 30), 0)   # noqa: E731
        nbytes = 4 * int(np.prod(shape))
        torch_norm = functools.partial(crossmap_norm if cross else samemap_norm, self.torch,
                                       params=params)

        def backward_inputs():
            x = relu()
            y, denoms = getattr(ops, f"{kind}_norm_forward")(x, params)
            return self.normal(shape), x, y, denoms
        yield {"layer": f"{layer.name} ({kind} {params.size})", "pass": "forward",
               "kind": "memory", "bytes": 3 * nbytes,             # x in; y, denoms out
               "ours": lambda a: getattr(ops, f"{kind}_norm_forward")(a, params),
               "inputs": lambda: (relu(),), "torch": self.peer(torch_norm)}
        yield {"layer": f"{layer.name} ({kind} {params.size})", "pass": "backward",
               "kind": "memory", "bytes": 5 * nbytes,             # dy, x, y, denoms in; dx out
               "ours": lambda g, a, y, d: getattr(ops, f"{kind}_norm_backward")(g, a, y, d, params),
               "inputs": backward_inputs, "torch": self.autograd_peer(torch_norm)}

    def pool(self, layer):
        c, h, w = self.shapes[layer.name][0]
        shape = (c, h, w, self.batch)
        ops, size, stride, overhang = self.backend, layer.size, layer.stride, layer.overhang
        y_shape = self.infos[layer.name].output_shape
        out_bytes = 4 * c * y_shape[1] * y_shape[2] * self.batch
        in_bytes = 4 * int(np.prod(shape))
        torch_pool = lambda a: self.torch.nn.functional.max_pool2d(   # noqa: E731
            a, size, stride, ceil_mode=overhang)

        def backward_inputs():
            x = self.normal(shape)
            y = ops.maxpool_forward(x, size=size, stride=stride, overhang=overhang)
            return self.normal(y.shape), x, y

        yield {"layer": f"{layer.name} ({size}/{stride})", "pass": "forward", "kind": "memory",
               "bytes": in_bytes + out_bytes,
               "ours": lambda a: ops.maxpool_forward(a, size=size, stride=stride,
                                                     overhang=overhang),
               "inputs": lambda: (self.normal(shape),), "torch": self.peer(torch_pool)}
        yield {"layer": f"{layer.name} ({size}/{stride})", "pass": "backward", "kind": "memory",
               "bytes": 2 * in_bytes + 2 * out_bytes,
               "ours": lambda g, a, y: ops.maxpool_backward(g, a, y, size=size, stride=stride,
                                                            overhang=overhang),
               "inputs": backward_inputs, "torch": self.autograd_peer(torch_pool)}

    def elementwise(self):
        """The elementwise ops at the sizes they run at: bias and each activation (the default
        network's ReLU, the tanh ablation's tanh) on conv1's output, dropout on fc6's, the
        softmax on the last layer's, the SGD update of fc6's weights. Their peers: the PyTorch
        ops its autograd runs for the same (threshold_backward for ReLU's gradient, tanh_backward
        for tanh's), its dropout (inverted, a mask of bytes), its fused SGD."""
        ops, n, torch = self.backend, self.batch, self.torch
        first_conv = next(layer for layer in self.model.layers if isinstance(layer, alexnet.Conv))
        fcs = [layer for layer in self.model.layers
               if isinstance(layer, alexnet.FullyConnected) and layer.tower == "a"]
        conv_out = self.infos[first_conv.name].output_shape + (n,)
        fc_out = (self.infos[fcs[0].name].output_shape[0], n)
        classes = self.model.geometry.classes
        count = int(np.prod(conv_out))
        name = f"{first_conv.name} output"
        yield {"layer": name, "pass": "bias", "kind": "memory", "bytes": 8 * count,
               "ours": ops.add_bias,
               "inputs": lambda: (self.normal(conv_out), self.normal(conv_out[:1])),
               "torch": self.peer(lambda x, b: x + b,
                                  lambda x, b: (self.tensor(x), self.tensor(b).view(1, -1, 1, 1)))}
        torch_activations = {   # backward: the op PyTorch's autograd runs for the gradient
            "relu": (lambda x: torch.relu(x),
                     lambda dy, y: torch.ops.aten.threshold_backward(dy, y, 0)),
            "tanh": (lambda x: torch.tanh(x),
                     lambda dy, y: torch.ops.aten.tanh_backward(dy, y))}
        for activation in alexnet.ACTIVATIONS:
            forward, backward = torch_activations[activation]
            yield {"layer": name, "pass": f"{activation} forward", "kind": "memory",
                   "bytes": 8 * count, "ours": activation_op(ops, activation, "forward"),
                   "inputs": lambda: (self.normal(conv_out),), "torch": self.peer(forward)}
            yield {"layer": name, "pass": f"{activation} backward", "kind": "memory",
                   "bytes": 12 * count, "ours": activation_op(ops, activation, "backward"),
                   "inputs": lambda: (self.normal(conv_out), self.normal(conv_out)),
                   "torch": self.peer(backward)}
        yield {"layer": name, "pass": "bias gradient", "kind": "memory",
               "bytes": 4 * count, "ours": ops.bias_backward,
               "inputs": lambda: (self.normal(conv_out),),
               "torch": self.peer(lambda dy: dy.sum(dim=(0, 2, 3)))}
        fc_count = int(np.prod(fc_out))
        yield {"layer": f"{fcs[0].name} output", "pass": "dropout mask + apply",
               "kind": "memory", "bytes": 4 * fc_count * 2 + 2 * fc_count,   # x in, out; mask
               "ours": lambda a: ops.apply_mask(a, ops.dropout_mask(a.shape, 0.5, 12345)),
               "inputs": lambda: (self.normal(fc_out),),
               "torch": self.peer(lambda x: torch.nn.functional.dropout(x, 0.5, training=True))}
        # softmax alone: the loss's op returns the loss to the host, a wait no kernel makes
        yield {"layer": f"{fcs[-1].name} output", "pass": "softmax", "kind": "memory",
               "bytes": 4 * classes * n * 2, "ours": ops.softmax,
               "inputs": lambda: (self.normal((classes, n), 5),),
               "torch": self.peer(lambda x: torch.softmax(x, dim=1))}
        # fc6's weights from all of its inputs, as one array
        weights = (sum(int(np.prod(shape)) for shape in self.shapes[fcs[0].name]), fc_out[0])
        wbytes = 4 * int(np.prod(weights))
        lr, momentum, weight_decay = 0.01, 0.9, 5e-4

        def sgd_inputs():
            return self.normal(weights), self.normal(weights), self.normal(weights)

        def torch_sgd(w, v, grad):
            """PyTorch's fused SGD at our state: its momentum buffer is ours over −lr (it adds
            the gradient to the buffer and steps by −lr times it; ours folds lr into v)."""
            w = torch.nn.Parameter(self.tensor(w))
            w.grad = self.tensor(grad)
            optimizer = torch.optim.SGD([w], lr=lr, momentum=momentum,
                                        weight_decay=weight_decay, fused=True)
            optimizer.state[w]["momentum_buffer"] = self.tensor(v) / -lr
            return optimizer, w

        def torch_step(optimizer, w):
            optimizer.step()
            return w   # the updated weights, as ours updates its in place
        yield {"layer": f"{fcs[0].name} weights", "pass": "SGD update", "kind": "memory",
               "bytes": 5 * wbytes,            # w, v, grad in; w, v out
               "ours": lambda w, v, g: ops.sgd_update(w, v, g, lr=lr, momentum=momentum,
                                                      weight_decay=weight_decay),
               "inputs": sgd_inputs, "torch": self.peer(torch_step, torch_sgd)}


def plan_key(overrides):
    """A plan as the ops' keyword overrides ({} for the launcher's own), made hashable."""
    return tuple(sorted(overrides.items()))


def describe(overrides):
    if not overrides:
        return "the launcher's plan"
    parts = [overrides.get("algorithm", "implicit")]
    if "winograd_tile" in overrides:
        parts.append(f"m = {overrides['winograd_tile']}")
    if "tile" in overrides:
        parts += [f"tile {overrides['tile']}", f"{overrides['splits']} slices"]
    return ", ".join(parts)


def table_plans(case):
    """The plans with a row in the table: the launcher's, and Winograd's where it serves."""
    return [{}] + ([WINOGRAD] if case["kind"] == "conv" and case["winograd"] else [])


def alternative_plans(case):
    """Plans to time beside those of the table for a convolution case, as the keyword overrides
    (algorithm, tile, splits and Winograd's winograd_tile) that the launcher runs as given: for
    each algorithm that serves the case (and each of Winograd's m), every tile side, and half and
    twice its slices (1 to 3 where it has few)."""
    plans = []
    variants = [{"algorithm": "implicit"}]
    if case["winograd"]:
        variants += [{"algorithm": "winograd", "winograd_tile": side}
                     for side in conv.WINOGRAD_TILES]
    for variant in variants:
        launchers = case["plan_for"](algorithm=variant["algorithm"])
        own = case["plan_for"](**variant)
        counts = {max(1, own.splits // 2), own.splits, 2 * own.splits}
        if own.splits <= 3:
            counts |= {1, 2, 3}
        others = {case["plan_for"](**variant, tile=tile, splits=count)
                  for tile in conv.SIDES for count in counts} - {launchers}
        plans += [dict(variant, tile=other.tile, splits=other.splits) for other in sorted(others)]
    return plans


def time_plans(timer, case, repeats, launcher_ms, problems):
    """Each alternative plan's time (or its problem, untimed); prints the fastest where it
    beats the launcher's."""
    timed = []
    for plan in alternative_plans(case):
        if plan_key(plan) in problems:
            timed.append(dict(plan, not_timed=problems[plan_key(plan)]))
            continue
        run = functools.partial(case["ours"], **plan)
        timed.append(dict(plan, ms=timer.median_ms(run, case["inputs"], repeats)[0]))
    best = min((plan for plan in timed if "ms" in plan), key=lambda plan: plan["ms"],
               default=None)
    if best and best["ms"] < launcher_ms:
        plan = {key: best[key] for key in best if key != "ms"}
        print(f"{'':34} {'  a faster plan:':22} {best['ms']:9.3f}  {describe(plan)} "
              f"({launcher_ms / best['ms']:.2f}x the launcher's)")
    return timed


def check_output(case, poisoned, plans):
    """Run the case once on the poisoned backend (outputs NaN until written) under each plan of
    the table, and each of its other plans when they are to be timed: {plan_key: problem} for
    those that fail or leave an output element not finite. Agreement with the reference is the
    GPU tests' job, which make gpu-check runs before this benchmark."""
    runs = table_plans(case)
    if plans and case["kind"] == "conv":
        runs += alternative_plans(case)
    problems = {}
    for plan in runs:
        try:
            result = case["ours"](*case["inputs"](), **plan)
        except Exception as error:   # reported, and the other cases still timed
            problems[plan_key(plan)] = f"{type(error).__name__}: {error}"
        else:
            for output in (result if isinstance(result, tuple) else (result,)):
                if output is not None and not bool(poisoned.xp.isfinite(output).all()):
                    problems[plan_key(plan)] = "an output is not finite"
        if plan_key(plan) in problems:
            print(f"{case['layer']} {case['pass']} ({describe(plan)}): "
                  f"{problems[plan_key(plan)]}; not timed")
    return problems


def conv_rates(case, ms, peak):
    """GFLOP/s and percent of the FP32 peak of a convolution pass timed at `ms`, and the two as
    the table prints them."""
    gflop_s = case["flops"] / (ms * 1e-3) / 1e9
    rates = {"gflop_s": gflop_s, "percent_of_fp32_peak": 100 * gflop_s * 1e9 / peak}
    return rates, f"{gflop_s:7.0f} GF/s {rates['percent_of_fp32_peak']:4.1f}%"


def plan_record(plan):
    record = {"algorithm": plan.algorithm, "tile": plan.tile, "splits": plan.splits}
    if plan.winograd_tile is not None:
        record["winograd_tile"] = plan.winograd_tile
    return record


def winograd_row(timer, case, problems, repeats, peak, peer_ms):
    """The pass by Winograd's algorithm (its plan's record, or its problem), printed as a row."""
    record = {"plan": plan_record(case["plan_for"](algorithm="winograd"))}
    label = f"  by Winograd, m = {record['plan']['winograd_tile']}"
    if plan_key(WINOGRAD) in problems:
        record["not_timed"] = problems[plan_key(WINOGRAD)]
        print(f"{'':34} {label:22} not timed: {record['not_timed']}")
        return record
    run = functools.partial(case["ours"], **WINOGRAD)
    record["ms"], host_bound = timer.median_ms(run, case["inputs"], repeats)
    rates, rate = conv_rates(case, record["ms"], peak)
    record.update(rates)
    if host_bound:
        record["host_bound_runs"] = host_bound
    theirs = ""
    if peer_ms is not None:
        record["ratio_peer_over_ours"] = peer_ms / record["ms"]
        theirs = f"{peer_ms:9.3f} {record['ratio_peer_over_ours']:5.2f}x"
    print(f"{'':34} {label:22} {record['ms']:9.3f} {rate:>18} {theirs}")
    return record


def main(argv=None):
    parser = options.Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("families", nargs="*", metavar="FAMILY",
                        help=f"op families to time: {', '.join(FAMILIES)} (default: all)")
    parser.add_argument("--model", default=alexnet.DEFAULT_MODEL, type=options.model_choice,
                        help="whose layer shapes to time (default: %(default)s, the default "
                             "network)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--plans", action="store_true",
                        help="also time other plans of every convolution pass")
    parser.add_argument("--check-only", action="store_true",
                        help="run each case once, checking its output, and time nothing (for a "
                             "profiler: make gpu-check's ncu step)")
    parser.add_argument("--json", help="write the report here (default: "
                                       "bench/results/kernels-DEVICE.json)")
    args = parser.parse_args(argv)
    options.check_counts(parser, args, "batch", "repeats")
    unknown = set(args.families) - set(FAMILIES)
    if unknown:
        parser.error(f"unknown op families {sorted(unknown)}; choose from {', '.join(FAMILIES)}")
    options.check_writable_flag(parser, args.json, "--json")   # before the benchmark
    chosen = set(args.families or FAMILIES)
    cupy, torch = gpu_modules("bench_kernels")
    backend = get_backend("cuda")
    device = cupy.cuda.Device(0)
    peak = fp32_peak_flops(cupy, device)
    # Every case's output first: under --check-only (a profiler's run) all there is to do.
    poisoned = get_backend("cuda", poison=True)
    problems = {(check["layer"], check["pass"]): check_output(check, poisoned, args.plans)
                for check in Cases(cupy, torch, poisoned, args.batch, args.model).all()
                if check["family"] in chosen}
    failed = int(any(problems.values()))
    if args.check_only:
        return failed
    timer = Timer(cupy)
    bandwidth = copy_bandwidth(cupy, timer, args.repeats)
    report = {
        **run_record(cupy, torch, backend.launcher), "model": args.model, "batch": args.batch,
        "repeats": args.repeats, "families": sorted(chosen),
        "fp32_peak_tflops": peak / 1e12,
        "copy_bandwidth_gb_s": bandwidth / 1e9, "flush_ms": timer.flush_ms,
        "complete": False, "cases": []}
    args.json = args.json or report_path("kernels", report["device"])
    print(f"{report['device']}: kernels from {report['kernels_from']}; FP32 peak "
          f"{peak / 1e12:.1f} TFLOP/s; copy {bandwidth / 1e9:.0f} GB/s (read + write); "
          f"peer: {report['peer']}")
    print(f"{'layer':34} {'pass':22} {'ours ms':>9} {'rate':>18} {'peer ms':>9} {'ratio':>6}")
    for case in Cases(cupy, torch, backend, args.batch, args.model).all():
        if case["family"] not in chosen:
            continue
        case_problems = problems[case["layer"], case["pass"]]
        if plan_key({}) in case_problems:
            report["cases"].append({"layer": case["layer"], "pass": case["pass"],
                                    "not_timed": case_problems[plan_key({})]})
            print(f"{case['layer']:34} {case['pass']:22} not timed: {case_problems[plan_key({})]}")
            continue
        ours, host_bound = timer.median_ms(case["ours"], case["inputs"], args.repeats)
        record = {"layer": case["layer"], "pass": case["pass"], "ms": ours}
        if host_bound:
            record["host_bound_runs"] = host_bound
        if case["kind"] == "conv":
            record["plan"] = plan_record(case["plan_for"]())
            rates, rate = conv_rates(case, ours, peak)
            record.update(rates)
        else:
            record["gb_s"] = case["bytes"] / (ours * 1e-3) / 1e9
            record["percent_of_copy"] = 100 * record["gb_s"] * 1e9 / bandwidth
            rate = f"{record['gb_s']:6.0f} GB/s {record['percent_of_copy']:4.0f}%"
        theirs = ""
        if case["torch"] is not None:
            run, prepare = case["torch"]
            record["peer"] = "cuDNN" if case["kind"] == "conv" else "PyTorch"
            record["peer_ms"], peer_host_bound = timer.median_ms(
                run, lambda: prepare(*case["inputs"]()), args.repeats, torch=torch)
            if peer_host_bound:   # its time may hold the GPU idle, waiting for the host
                record["peer_host_bound_runs"] = peer_host_bound
            record["ratio_peer_over_ours"] = record["peer_ms"] / ours
            theirs = f"{record['peer_ms']:9.3f} {record['ratio_peer_over_ours']:5.2f}x"
        note = f"  ({host_bound} runs host-bound)" if host_bound else ""
        print(f"{case['layer']:34} {case['pass']:22} {ours:9.3f} {rate:>18} {theirs}{note}")
        if WINOGRAD in table_plans(case):
            record["winograd"] = winograd_row(timer, case, case_problems, args.repeats, peak,
                                              record.get("peer_ms"))
        if case["kind"] == "conv" and args.plans:
            record["other_plans"] = time_plans(timer, case, args.repeats, ours, case_problems)
        report["cases"].append(record)
        atomic_json(args.json, report)   # each case as it comes, should the run be cut short
    convs = [c for c in report["cases"] if "gflop_s" in c and "peer_ms" in c]
    if convs:
        fastest = [min(c["ms"], c.get("winograd", {}).get("ms", c["ms"])) for c in convs]
        peer_total = sum(c["peer_ms"] for c in convs)
        report["conv_total_ratio"] = peer_total / sum(c["ms"] for c in convs)
        report["conv_total_ratio_fastest_algorithm"] = peer_total / sum(fastest)
        report["conv_total_passes"] = len(convs)
        print(f"the {len(convs)} convolution passes timed against cuDNN: cuDNN / ours = "
              f"{report['conv_total_ratio']:.2f}x with the launcher's plans, "
              f"{report['conv_total_ratio_fastest_algorithm']:.2f}x with the faster algorithm "
              f"of each pass (target ≥ 1.0; each pass ≥ 0.8)")
    report["complete"] = True
    atomic_json(args.json, report)
    print(f"wrote {args.json}")
    return failed


if __name__ == "__main__":
    sys.exit(run_command(main))
