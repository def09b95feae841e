"""Training on the GPU: one SGD step of the full default network on the CUDA backend against the
same step on the reference backend, with both towers on one GPU (`--gpus 0`), through the
two-device path on one GPU (`--gpus 0,0`: two streams, explicit copies) and on two GPUs
(`--gpus 0,1`, where there are two); the bytes crossing towers against the analytic figure;
the two-device path on one GPU repeating itself bit for bit; and the loader's page-locked batch
blocks left alone while their copy to the GPU may run. Skipped, with the reason, without a GPU
(or, for 0,1, without a second one)."""
import numpy as np
import pytest

from convnet import alexnet
from convnet.backend import get_backend
from convnet.network import Network
from convnet.solver import SGD
from convnet.backend.cuda.devices import cuda_devices
from convnet.data.loader import Buffers
from convnet.train import select_placement
from networks import replay_on_reference
from targets import require_gpu
from test_placement import analytic_exchange

pytestmark = [pytest.mark.gpu, pytest.mark.large]


def one_step(placement, model, params, images, labels, *, replay=False):
    """Loss and parameters after one SGD step on `placement`; with `replay`, also the parameters
    after the reference's float32 step on this pass's side of every kink (see
    replay_on_reference), else None."""
    network = Network(model, placement, seed=4,
                      params={key: value.copy() for key, value in params.items()})
    loss = network.forward(images, labels, train=True, step=3).loss
    reference = replay_on_reference(network, np.float32) if replay else None
    for stepping in [network] + ([reference] if replay else []):
        solver = SGD(0.01, 2.0, 0.9, 5e-4)
        solver.step(stepping, stepping.backward(), solver.momentum_buffers(stepping))
    return loss, network.to_host(network.params), network.placement, \
        reference.params if replay else None


@pytest.mark.parametrize("gpus", ["0", "0,0", "0,1"])
def test_one_training_step_on_the_gpu_matches_the_reference(gpus, rng):
    require_gpu()
    if gpus == "0,1" and cuda_devices()[0] < 2:
        pytest.skip("GPU test skipped: --gpus 0,1 needs two GPUs; this machine has one")
    model = alexnet.build_model("2012")
    reference = get_backend("reference")
    params = Network(model, reference, seed=4).params
    images = rng.normal(0, 50, model.image_shape + (32,)).astype(np.float32)
    labels = rng.integers(0, model.geometry.classes, 32)
    want_loss = Network(model, reference, seed=4, params=params).forward(
        images, labels, train=True, step=3).loss
    placement, device = select_placement(gpus)
    print(f"towers on: {device}")
    assert placement.shared == (gpus == "0")
    # Against the reference's step on the GPU pass's side of every kink: the GPU's float32
    # puts a few units of the full network across a kink from the reference's.
    got_loss, got, placement, want = one_step(placement, model, params, images, labels,
                                              replay=True)
    assert got_loss == pytest.approx(want_loss, rel=1e-4)
    for key, value in want.items():
        change = np.abs(value - params[key]).max()     # the step's own size sets the tolerance
        np.testing.assert_allclose(got[key], value, rtol=0, atol=1e-6 + 1e-3 * change,
                                   err_msg=key)
    expected = analytic_exchange(model.geometry, 32, 4)
    assert sum(transfer.nbytes for transfer in placement.log) == 2 * sum(expected.values())


def test_the_two_device_path_on_one_gpu_repeats_bit_for_bit(rng):
    """--gpus 0,0 twice on the same batch: the kernels are deterministic and the crossings are
    ordered by events, so a race between the towers' streams would show as differing bits."""
    require_gpu()
    model = alexnet.build_model("2012")
    params = Network(model, get_backend("reference"), seed=4).params
    images = rng.normal(0, 50, model.image_shape + (32,)).astype(np.float32)
    labels = rng.integers(0, model.geometry.classes, 32)
    runs = [one_step(select_placement("0,0")[0], model, params, images, labels)
            for _ in range(2)]
    assert runs[0][0] == runs[1][0]
    for key, value in runs[0][1].items():
        np.testing.assert_array_equal(runs[1][1][key], value, err_msg=key)


def test_a_batch_block_is_not_reused_while_its_copy_to_the_gpu_may_run(rng):
    """The loader's batches are views of page-locked blocks, copied to the GPU asynchronously;
    a block is handed out again once nothing refers to it, and CuPy refers to the source of a
    copy until the copy is done. A full batch of the default network (77 MB), and at once the
    next batch written over whatever block take() gives: the copy on the GPU is the first."""
    require_gpu()
    model = alexnet.build_model("2012")
    buffers, backend = Buffers(), get_backend("cuda")
    batch = buffers.take(model.image_shape + (128,))
    batch[...] = rng.normal(0, 50, batch.shape)
    expected = batch.copy()
    on_gpu = backend.from_host(batch)
    del batch
    buffers.take(model.image_shape + (128,))[...] = -1.0
    np.testing.assert_array_equal(backend.to_host(on_gpu), expected)


def test_blocks_let_go_give_their_page_locked_memory_back(rng):
    """release_free gives what it drops back to the system, not to CuPy's pool of page-locked
    memory, which would keep it for its next allocation; a block in use stays."""
    require_gpu()
    import cupy
    buffers, pool = Buffers(), cupy.get_default_pinned_memory_pool()
    kept = buffers.take((1 << 20,))
    kept[...] = 7.0
    buffers.take((1 << 20,))   # dropped at once
    buffers.release_free()
    assert len(buffers.blocks) == 1 and pool.n_free_blocks() == 0
    assert (kept == 7.0).all()
