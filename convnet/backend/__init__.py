"""Backends: each provides every op in `OPS` with the same signature.

Tensor layout, the same in every backend and through the whole network (cuda-convnet's):
  activations   (channels, rows, columns, images)   images innermost, so one pixel of a batch
                (features, images) for FC layers     is contiguous and the batch is the GEMM's
                                                     innermost dimension
  conv filters  (input channels, rows, columns, filters)   an "inputs × outputs" matrix
  FC weights    (input features, output features)           likewise
  biases        (output channels,)
"""
import importlib

# The backend interface. A backend is a module or object providing all of these (and `xp`, its
# array module). context() is the device context (and stream) its arrays live in: the ops enter
# it themselves, code that hands arrays to another library (a replicas engine) enters it.
OPS = (
    "conv_forward", "conv_backward_input", "conv_backward_filters",
    "add_bias", "bias_backward",
    "relu_forward", "relu_backward", "tanh_forward", "tanh_backward",
    "crossmap_norm_forward", "crossmap_norm_backward",
    "samemap_norm_forward", "samemap_norm_backward",
    "maxpool_forward", "maxpool_backward",
    "dropout_mask", "apply_mask", "scale", "add",
    "fc_forward", "fc_backward_input", "fc_backward_weights",
    "softmax", "softmax_logloss", "softmax_logloss_backward", "topk_errors",
    "sgd_update",
    "to_host", "from_host", "context",
)

# name → (module, factory in it or None when the module itself is the backend)
BACKENDS = {
    "reference": ("convnet.backend.reference", None),
    # options: device_id, poison, own_stream, conv_algorithm
    "cuda": ("convnet.backend.cuda", "gpu_backend"),
    "emulator": ("convnet.backend.cuda", "emulator_backend"),  # options: poison, conv_algorithm
}
# The CUDA backend's convolution algorithms (convnet/backend/cuda/conv.py): here, which imports
# no array library, so that the training flags can be checked before the set-up installs one.
CONV_ALGORITHMS = ("implicit", "winograd")


def get_backend(name: str, **options):
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}")
    module_name, factory = BACKENDS[name]
    module = importlib.import_module(module_name)
    backend = getattr(module, factory)(**options) if factory else module
    missing = [op for op in OPS if not hasattr(backend, op)]
    if missing:
        raise ImportError(f"backend {name!r} lacks ops {missing}")
    return backend
