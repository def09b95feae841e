"""The reference backend: plain vectorized NumPy, float32 and float64.

It is the definition of every op (the CUDA kernels are tested against it) and the CPU training
path. Each module's docstring states its layout and formula.
"""
import contextlib

import numpy as xp  # noqa: F401  (the backend's array module)

from .conv import add_bias, bias_backward, conv_backward_filters, conv_backward_input, conv_forward
from .elementwise import (add, apply_mask, dropout_mask, relu_backward, relu_forward, scale,
                          tanh_backward, tanh_forward)
from .fc import fc_backward_input, fc_backward_weights, fc_forward
from .norm import (crossmap_norm_backward, crossmap_norm_forward, samemap_norm_backward,
                   samemap_norm_forward)
from .pool import maxpool_backward, maxpool_forward
from .sgd import sgd_update
from .softmax import softmax, softmax_logloss, softmax_logloss_backward, topk_errors

name = "reference"
to_host = from_host = xp.asarray   # arrays already live in host memory
context = contextlib.nullcontext
