"""The benchmarks' PyTorch peer (tools/torch_alexnet.py) computes our network: its test-mode
probabilities match the reference backend's, with the towers separate and grouped. Needs
PyTorch (make bench-cpu installs it); skipped with the reason where it is missing."""
import sys
from pathlib import Path

import numpy as np
import pytest

from convnet import alexnet
from convnet.backend import get_backend
from convnet.network import Network
from networks import make_active

torch = pytest.importorskip("torch", reason="PyTorch is not installed (make bench-cpu installs it)")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from torch_alexnet import TorchAlexNet  # noqa: E402


@pytest.mark.parametrize("name", ["2012-small28", "paper-small28", "2012-small64",
                                  "2012-small64+no-norm+no-overlap",
                                  "paper-small28+one-tower+no-dropout", "paper-small28+tanh"])
@pytest.mark.parametrize("grouped", [False, True], ids=["separate", "grouped"])
def test_peer_matches_the_reference(name, grouped, rng):
    model = alexnet.build_model(name)
    network = make_active(Network(model, get_backend("reference"), dtype=np.float32), rng)
    images = rng.normal(0, 50, model.image_shape + (4,)).astype(np.float32)
    ours = network.forward(images, None, train=False).probs
    peer = TorchAlexNet(model, network.params, torch, grouped=grouped)
    with torch.no_grad():
        logits = peer.forward(torch.from_numpy(np.ascontiguousarray(images.transpose(3, 0, 1, 2))),
                              train=False)
    theirs = torch.softmax(logits, dim=1).numpy().T
    assert np.abs(ours - theirs).max() <= 1e-4 * np.abs(theirs).max()
