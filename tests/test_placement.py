"""The communication pattern: over one training step, the towers exchange exactly the analytic
number of bytes, and only at conv3, fc6, fc7 and fc8, forward and backward. The two-device path
(a backend per tower, copies at the crossings) gives the same step as one backend for both,
bit for bit; on the CPU two emulators stand in for the two devices."""
import contextlib
import types

import numpy as np
import pytest

from convnet import alexnet
from convnet import network as network_module
from convnet.alexnet import DATA, TOWERS
from convnet.backend import get_backend
from convnet.backend.cuda import CudaBackend
from convnet.backend.cuda.launch import Emulated, Gpu
from convnet.network import Network
from convnet.placement import Placement
from convnet.solver import SGD
from convnet.summary import summarize
from convnet.trainer import forward_views
from networks import make_active


def analytic_exchange(geometry, images, itemsize):
    """Bytes per direction per cross-tower read, from the geometry by hand: conv3 reads the
    other tower's pool2 (C2 × S2 × S2), fc6 its pool3 (C5 × S3 × S3), fc7 and fc8 its dropout
    output (fc_units)."""
    def conv(size, shape):
        return 1 + -(-(2 * shape.pad + size - shape.filter_size) // shape.stride)

    def pool(size):
        return -(-(size - geometry.pool_size) // geometry.pool_stride) + 1

    c1, c2, c3, c4, c5 = geometry.convs
    pool2 = pool(conv(pool(conv(geometry.image_size, c1)), c2))
    pool3 = pool(conv(conv(conv(pool2, c3), c4), c5))
    per_image = {"conv3a": c2.channels * pool2 ** 2, "conv3b": c2.channels * pool2 ** 2,
                 "fc6a": c5.channels * pool3 ** 2, "fc6b": c5.channels * pool3 ** 2,
                 "fc7a": geometry.fc_units, "fc7b": geometry.fc_units, "fc8": geometry.fc_units}
    return {layer: n * images * itemsize for layer, n in per_image.items()}


@pytest.mark.parametrize("name", ["2012-small28", "paper-small64"])
def test_one_training_step_moves_the_analytic_bytes_at_four_points(name, rng):
    model = alexnet.build_model(name)
    network = Network(model, get_backend("reference"), seed=2)
    placement = network.placement
    images = rng.normal(0, 50, model.image_shape + (3,)).astype(np.float32)
    labels = rng.integers(0, model.geometry.classes, 3)
    solver = SGD(0.01, 2.0, 0.9, 5e-4)
    network.forward(images, labels, train=True, step=0)
    solver.step(network, network.backward(), solver.momentum_buffers(network))

    expected = analytic_exchange(model.geometry, 3, 4)
    for direction in ("forward", "backward"):
        moved = {}
        for transfer in placement.log:
            if transfer.direction == direction:
                assert transfer.layer not in moved, f"{transfer.layer} crossed twice"
                moved[transfer.layer] = transfer.nbytes
                assert transfer.source != transfer.dest
        assert moved == expected, direction
    fc8 = [t for t in placement.log if t.layer == "fc8"]
    assert [(t.tensor, t.source, t.dest, t.direction) for t in fc8] == \
        [("drop7b", "b", "a", "forward"), ("drop7b", "a", "b", "backward")]


def test_default_model_exchange_per_image():
    """The full network's figure, per image in float32: 2 × (86,528 + 18,432 + 8,192) + 8,192
    bytes each way, by hand and by the summary from the graph's cross-tower edges."""
    expected = analytic_exchange(alexnet.build_model().geometry, 1, 4)
    assert sum(expected.values()) == 234_496
    assert summarize(alexnet.build_model())["transfer_bytes_per_image"] == 2 * 234_496


def test_placement_rejects_a_same_tower_transfer():
    with pytest.raises(ValueError, match="not a cross-tower"):
        Placement(get_backend("reference")).send(np.zeros(2), layer="conv2a", tensor="pool1a",
                                                 source="a", dest="a", direction="forward")


def test_a_placement_needs_a_backend_for_every_tower():
    """A tower left without a backend would fail at its first layer, mid-step; an unknown tower
    is a typing mistake."""
    emulator = get_backend("emulator")
    with pytest.raises(ValueError, match=r"needs a backend for towers \('a', 'b'\); got \['a'\]"):
        Placement({"a": emulator})
    with pytest.raises(ValueError, match=r"got \['a', 'b', 'c'\]"):
        Placement({"a": emulator, "b": get_backend("emulator"), "c": emulator})


def test_a_tower_of_its_own_needs_a_backend_that_can_receive():
    with pytest.raises(ValueError, match="tower a: backend reference cannot hold a tower"):
        Placement({"a": get_backend("reference"), "b": get_backend("emulator")})


class OutsideOps(np.ndarray):
    """An array of a Guarded backend. NumPy arithmetic on it fails: on a GPU, arithmetic outside
    the backend's ops would run outside the tower's device and stream, unordered against its
    kernels."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        raise AssertionError(f"{ufunc.__name__} on a backend array outside the backend's ops")


def _wrap(value, owner):
    """Arrays as OutsideOps views that know the backend (the tower) they belong to."""
    if isinstance(value, tuple):
        return tuple(_wrap(each, owner) for each in value)
    if not isinstance(value, np.ndarray):
        return value
    view = value.view(OutsideOps)
    view.owner = owner
    return view


def _check_owner(backend, op, values):
    """Every array handed to a tower's op or copy is that tower's: on GPUs another's would be
    on another device, or unordered on another stream."""
    for value in values:
        if isinstance(value, (tuple, list)):
            _check_owner(backend, op, value)
        elif getattr(value, "owner", backend) is not backend:
            raise AssertionError(f"{op} on {backend.name} given another tower's array")


def _unwrap(value):
    if isinstance(value, (tuple, list)):
        return type(value)(map(_unwrap, value))
    return value.view(np.ndarray) if isinstance(value, OutsideOps) else value


class Guarded:
    """A backend whose arrays refuse arithmetic outside its ops (OutsideOps) and ops of
    another tower's backend, and which knows when its context is entered."""

    def __init__(self, backend, name):
        self.inner, self.xp, self.name = backend, backend.xp, name
        self.entered = 0

    def __getattr__(self, op):
        function = getattr(self.inner, op)

        def guarded(*args, **kwargs):
            _check_owner(self, op, (*args, *kwargs.values()))
            return _wrap(function(*map(_unwrap, args),
                                  **{key: _unwrap(value) for key, value in kwargs.items()}),
                         self)
        return guarded

    def send(self, array, receiver):
        _check_owner(self, "send", (array,))
        return self.inner.send(_unwrap(array), receiver.inner)

    def receive(self, parcel):
        return _wrap(self.inner.receive(parcel), self)

    def route_from(self, sender):
        return self.inner.route_from(sender.inner)

    def to_host(self, array):
        _check_owner(self, "to_host", (array,))
        return _unwrap(self.inner.to_host(_unwrap(array)))

    @contextlib.contextmanager
    def context(self):
        with self.inner.context():
            self.entered += 1
            try:
                yield
            finally:
                self.entered -= 1


def one_step(placement, model, params, images, labels):
    """Loss, every layer's output, every gradient (the input's too), the parameters after one SGD
    step, and then the evaluation's softmax and fc7 features averaged over two views, all on
    the host."""
    network = Network(model, placement, dtype=np.float64, seed=3,
                      params={key: value.copy() for key, value in params.items()})
    result = network.forward(images, labels, train=True, step=5)
    outputs = {name: np.array(network.layer_backend(name).to_host(value))
               for name, value in network.outputs.items()}
    def handed_over(tower, grads):   # a replicas engine queues its sums in the tower's context
        assert getattr(network.backend(tower), "entered", 1), f"tower {tower} outside its context"
        return grads
    grads = network.backward(input_grad=True, gradients_ready=handed_over)
    data_grad = np.array(network.backend("a").to_host(grads.pop(DATA)))
    host_grads = network.to_host(grads)
    solver = SGD(0.01, 2.0, 0.9, 5e-4)
    solver.step(network, grads, solver.momentum_buffers(network))
    features = ("fc7a", "fc7b")
    probs, hidden = forward_views(network, [images, images[:, ::-1]], features)
    evaluation = {"probs": network.output_backend.to_host(probs),
                  **{name: network.layer_backend(name).to_host(value)
                     for name, value in zip(features, hidden)}}
    return result.loss, outputs, dict(host_grads, data=data_grad), \
        network.to_host(network.params), evaluation


def test_towers_on_two_devices_take_the_same_step_as_on_one(rng):
    """Two emulators (each tower on its own) against one emulator running both towers: the same
    kernels in the same order, so every tensor agrees bit for bit, and the crossings carry the
    same bytes. The two are guarded: all arithmetic on their arrays goes through their ops, as
    it must where each tower has its own device or stream."""
    model = alexnet.build_model("2012-small28")
    params = make_active(Network(model, get_backend("reference"), dtype=np.float64), rng).params
    images = rng.normal(0, 50, model.image_shape + (3,))
    labels = rng.integers(0, model.geometry.classes, 3)
    shared = Placement(get_backend("emulator", poison=True))
    per_tower = Placement({tower: Guarded(get_backend("emulator", poison=True), f"tower {tower}")
                           for tower in TOWERS})
    assert not per_tower.shared and per_tower.routes[("b", "a")] == "host copy"
    want = one_step(shared, model, params, images, labels)
    got = one_step(per_tower, model, params, images, labels)
    assert got[0] == want[0]
    for got_part, want_part in zip(got[1:], want[1:]):
        assert got_part.keys() == want_part.keys()
        for key in want_part:
            np.testing.assert_array_equal(got_part[key], want_part[key], err_msg=key)
    assert per_tower.log == shared.log


def test_a_crossing_between_towers_of_their_own_hands_over_a_copy(rng):
    per_tower = Placement({"a": get_backend("emulator"), "b": get_backend("emulator")})
    sent = rng.normal(size=(4, 3, 3, 2)).astype(np.float32)
    received = per_tower.receive(per_tower.send(sent, layer="conv3a", tensor="pool2b",
                                                source="b", dest="a", direction="forward"))
    np.testing.assert_array_equal(received, sent)
    assert not np.shares_memory(received, sent)
    assert [(t.direction, t.nbytes) for t in per_tower.log] == [("forward", sent.nbytes)]


def test_a_one_tower_model_leaves_the_second_device_alone(rng):
    """The paper's one-GPU net (+one-tower) on a placement with a device per tower: the second
    is never asked for anything (not even the batch), nothing crosses, and the step is the one
    taken on a single device."""
    model = alexnet.build_model("2012-small28+one-tower")
    params = make_active(Network(model, get_backend("reference"), dtype=np.float64), rng).params
    images = rng.normal(0, 50, model.image_shape + (3,))
    labels = rng.integers(0, model.geometry.classes, 3)
    idle = get_backend("emulator")
    asked = []
    idle.launcher.context = lambda: asked.append("context") or contextlib.nullcontext()
    per_tower = Placement({"a": get_backend("emulator", poison=True), "b": idle})
    results = []
    for placement in (per_tower, Placement(get_backend("emulator", poison=True))):
        network = Network(model, placement, dtype=np.float64, seed=3,
                          params={key: value.copy() for key, value in params.items()})
        loss = network.forward(images, labels, train=True, step=5).loss
        grads = network.backward(input_grad=True)
        SGD(0.01, 2.0, 0.9, 5e-4).step(network, grads, SGD(0.01, 2.0, 0.9, 5e-4)
                                       .momentum_buffers(network))
        results.append((loss, network.to_host(network.params)))
    assert asked == [] and per_tower.log == []
    (loss, params_after), (want_loss, want_params) = results
    assert loss == want_loss
    for key, value in want_params.items():
        np.testing.assert_array_equal(params_after[key], value, err_msg=key)


class Recorded(Emulated):
    """An emulator that also keeps what a GPU stream would be given, in order: each launch and
    copy, with the layer and pass it belongs to, and with a vector clock: for each launcher,
    how many of its items this one comes after, through the stream's order and the waits for
    other launchers' events. Its events are such clocks. A copy, and any item queued outside a
    layer's own forward or backward (the gradient's sums and the activation before a layer's
    backward), is pending: it goes to the next layer this launcher runs."""

    def __init__(self, clock):
        super().__init__()
        self.clock = clock    # .tag: (layer, pass) being queued, or None
        self.items = []       # [tag, vector clock]
        self.after = {}       # launcher → how many of its items the next item here comes after

    def _queue(self, tag):
        self.after[self] = len(self.items) + 1
        self.items.append([tag, dict(self.after)])

    def launch(self, kernel, dtype, grid, block, args):
        self._queue(self.clock.tag)
        super().launch(kernel, dtype, grid, block, args)

    def event(self):
        return dict(self.after)

    def wait(self, event):
        for launcher, count in event.items():
            self.after[launcher] = max(self.after.get(launcher, 0), count)

    def _unpack(self, parcel):
        self._queue(None)
        return super()._unpack(parcel)

    def claim_pending(self, tag):
        for item in self.items:
            if item[0] is None:
                item[0] = tag


class Tagged:
    """A layer implementation that tags what it queues, and what its launcher has pending."""

    def __init__(self, implementation, clock):
        self.implementation, self.clock = implementation, clock

    def forward(self, ops, layer, *args):
        ops.launcher.claim_pending((layer.name, "forward"))
        self.clock.tag = (layer.name, "forward")   # the activation after it is its too
        return self.implementation.forward(ops, layer, *args)

    def backward(self, ops, layer, *args):
        ops.launcher.claim_pending((layer.name, "backward"))
        self.clock.tag = (layer.name, "backward")
        try:
            return self.implementation.backward(ops, layer, *args)
        finally:
            self.clock.tag = None


def test_the_towers_wait_for_each_other_only_where_a_tensor_crosses(rng, monkeypatch):
    """The order a GPU would keep, read from what the two towers' launchers are given: every
    layer that reads the other tower's tensor comes after that tensor's layer (forward; and the
    tensor's gradient after the reading layer, backward), and nothing else orders the towers:
    no work of a layer's half on one tower waits for its other half, as it would if a crossing
    waited for all the sender had queued so far (conv3b's read of pool2a for conv3a, which
    tower a queued in between)."""
    clock = types.SimpleNamespace(tag=None)
    monkeypatch.setattr(network_module, "IMPLEMENTATIONS",
                        {kind: Tagged(implementation, clock)
                         for kind, implementation in network_module.IMPLEMENTATIONS.items()})
    model = alexnet.build_model("2012-small28")
    launchers = {tower: Recorded(clock) for tower in TOWERS}
    network = Network(model, Placement({tower: CudaBackend(launcher)
                                        for tower, launcher in launchers.items()}), seed=3)
    images = rng.normal(0, 50, model.image_shape + (3,)).astype(np.float32)
    network.forward(images, rng.integers(0, model.geometry.classes, 3), train=True, step=0)
    network.backward()

    items = {}   # (layer, pass) → [(launcher, index, vector clock)]
    for launcher in launchers.values():
        for index, (tag, after) in enumerate(launcher.items):
            items.setdefault(tag, []).append((launcher, index, after))

    def waits_for(later, earlier):
        """Whether some item of `later` comes after some item of `earlier`."""
        return any(after.get(launcher, 0) > index for launcher, index, _ in items[earlier]
                   for _, _, after in items[later])

    def comes_after(later, earlier):
        """Whether the first item of `later` comes after every item of `earlier`."""
        _, _, first = items[later][0]
        return all(first.get(launcher, 0) > index for launcher, index, _ in items[earlier])

    towers = {layer.name: layer.tower for layer in model.layers}
    crossings = [(layer.name, tensor) for layer in model.layers for tensor in layer.inputs
                 if tensor != DATA and towers[tensor] != layer.tower]
    assert {reader for reader, _ in crossings} == {"conv3a", "conv3b", "fc6a", "fc6b", "fc7a",
                                                   "fc7b", "fc8"}
    for reader, tensor in crossings:
        assert comes_after((reader, "forward"), (tensor, "forward")), (reader, tensor)
        assert comes_after((tensor, "backward"), (reader, "backward")), (reader, tensor)
    halves = [(name, name[:-1] + "b") for name in towers if name.endswith("a") and
              name[:-1] + "b" in towers]
    assert len(halves) == 15
    for direction in ("forward", "backward"):
        for a, b in halves:
            assert not waits_for((b, direction), (a, direction)), (b, "waits for", a, direction)
            assert not waits_for((a, direction), (b, direction)), (a, "waits for", b, direction)


class FakeCuda:
    """The CuPy calls of Gpu's crossings (launch.py: send, receive, their copies and holds),
    each logged in the order the host makes them: enough to read, without a GPU, which stream
    each copy and wait goes to, which event marks what, and how long each array is held."""

    def __init__(self, peer_access):
        self.log, self.peer_access, self.serial = [], peer_access, 0
        self.device, self.peers_enabled = None, []   # (device, peer) as CuPy's call was made
        fake = self

        class Event:
            def __init__(self, disable_timing=False):
                fake.serial += 1
                self.id, self.done = fake.serial, False

            def record(self, stream=None):
                fake.log.append(("record", self.id, stream.ptr))

        class Runtime:
            memcpyDeviceToHost, memcpyHostToDevice, memcpyDeviceToDevice = "D2H", "H2D", "D2D"

            @staticmethod
            def memcpyAsync(dst, src, nbytes, kind, stream):
                fake.log.append(("copy", kind, src, dst, nbytes, stream))

            @staticmethod
            def memcpyPeerAsync(dst, dst_device, src, src_device, nbytes, stream):
                fake.log.append(("copy", f"peer {src_device}→{dst_device}", src, dst, nbytes,
                                 stream))

            @staticmethod
            def deviceCanAccessPeer(device, peer):
                return fake.peer_access

            @staticmethod
            def _deviceEnsurePeerAccess(peer):
                fake.peers_enabled.append((fake.device, peer))

        self.cuda = types.SimpleNamespace(Event=Event, runtime=Runtime)
        self.empty_pinned = lambda shape, dtype: np.zeros(shape, dtype)

    def empty(self, shape, dtype):
        return FakeDeviceArray(np.zeros(shape, dtype))


class FakeDeviceArray:
    def __init__(self, values):
        self.values, self.shape, self.dtype = values, values.shape, values.dtype
        self.flags, self.nbytes = values.flags, values.nbytes
        self.data = types.SimpleNamespace(ptr=values.ctypes.data)


class FakeStream(contextlib.nullcontext):
    def __init__(self, ptr, log):
        super().__init__()
        self.ptr, self.log = ptr, log

    def wait_event(self, event):
        self.log.append(("wait", event.id, self.ptr))


class FakeDevice:
    def __init__(self, device_id, fake):
        self.id, self.fake = device_id, fake

    def __enter__(self):
        self.outer, self.fake.device = self.fake.device, self.id

    def __exit__(self, *exception):
        self.fake.device = self.outer


def fake_gpu(fake, device_id, stream_ptr):
    gpu = Gpu.__new__(Gpu)   # Gpu's crossings without its module loading
    gpu.poison, gpu.xp, gpu._cupyx = False, fake, fake
    gpu.device = FakeDevice(device_id, fake)
    gpu.stream = FakeStream(stream_ptr, fake.log)
    gpu._routes, gpu._held = {}, []
    return gpu


@pytest.mark.parametrize("devices, peer_access, route", [
    ((0, 0), False, "between streams of one GPU"), ((0, 1), True, "peer-to-peer"),
    ((0, 1), False, "staged through pinned host memory")])
def test_a_gpu_crossing_waits_for_the_sent_tensor_and_holds_what_its_copies_read(
        devices, peer_access, route):
    """Gpu's send and receive through a logging stand-in for CuPy: the receiver's stream waits
    for the event the sender recorded when it sent the tensor (after the staged way's copy to
    host memory, on the sender's stream), and only then copies, on its own stream; the source
    of each copy (the array, or the pinned buffer) is held until an event after that copy is
    done, and let go once it is."""
    fake = FakeCuda(peer_access)
    sender, receiver = fake_gpu(fake, devices[0], 11), fake_gpu(fake, devices[1], 22)
    assert receiver.route_from(sender) == route
    # peer-to-peer: access enabled both ways, each on its device, through CuPy's call that
    # takes access already enabled (and clears the error the second enable leaves behind)
    assert fake.peers_enabled == ([(1, 0), (0, 1)] if route == "peer-to-peer" else [])
    array = FakeDeviceArray(np.arange(6, dtype=np.float32).reshape(2, 3))
    parcel = sender.send(array, receiver)
    fake.log.append(("the sender queues more work",))
    out = receiver.receive(parcel)
    assert out.shape == (2, 3) and out.dtype == np.float32
    log = fake.log
    steps = [entry[0] for entry in log]
    if route.startswith("staged"):
        buffer = parcel.payload
        assert log[0] == ("copy", "D2H", array.data.ptr, buffer.ctypes.data, 24, 11)
        assert log[1][:1] == ("record",) and log[1][2] == 11      # the D2H's hold
        assert log[2] == ("record", parcel.ready.id, 11)          # ready: after the D2H
        source = buffer.ctypes.data
        assert [kept for _, kept in sender._held] == [buffer]
    else:
        assert log[0] == ("record", parcel.ready.id, 11)
        source = array.data.ptr
        assert parcel.payload is array and sender._held == []
    first = steps.index("the sender queues more work")
    wait, copy, hold = log[first + 1:]
    assert wait == ("wait", parcel.ready.id, 22)
    kind = {"between streams of one GPU": "D2D", "peer-to-peer": "peer 0→1"}.get(route, "H2D")
    assert copy == ("copy", kind, source, out.data.ptr, 24, 22)
    assert hold[0] == "record" and hold[2] == 22
    (held_until, kept), = receiver._held
    assert held_until.id == hold[1] and kept is parcel.payload
    held_until.done = True   # the next hold lets go of what a finished copy read
    receiver.receive(sender.send(FakeDeviceArray(np.zeros(2, np.float32)), receiver))
    assert all(other is not kept for _, other in receiver._held)


class Entered(Emulated):
    """An emulator that refuses a launch outside its context: on a GPU, where the context
    selects the device and stream, that launch would run on another."""

    depth = 0

    @contextlib.contextmanager
    def context(self):
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def launch(self, kernel, dtype, grid, block, args):
        assert self.depth, f"{kernel} launched outside its launcher's context"
        super().launch(kernel, dtype, grid, block, args)


def test_every_kernel_of_a_training_step_runs_in_its_towers_context(rng):
    model = alexnet.build_model("2012-small28")
    network = Network(model, Placement({tower: CudaBackend(Entered()) for tower in TOWERS}),
                      seed=3)
    images = rng.normal(0, 50, model.image_shape + (3,)).astype(np.float32)
    network.forward(images, rng.integers(0, model.geometry.classes, 3), train=True, step=0)
    solver = SGD(0.01, 2.0, 0.9, 5e-4)
    solver.step(network, network.backward(), solver.momentum_buffers(network))
    forward_views(network, [images])
