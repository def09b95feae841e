"""Tests that read the real Fashion-MNIST: Debian's package, which `make test` installs."""
import os

import pytest

from convnet.data import fashion_mnist

INSTALLED = os.path.isdir(fashion_mnist.DEBIAN_SOURCE)
MISSING = "Debian package dataset-fashion-mnist not installed (make test installs it)"
needs_fashion_mnist = pytest.mark.skipif(not INSTALLED, reason=MISSING)
