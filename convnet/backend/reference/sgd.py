"""The SGD update of the paper, the reference, in place:
  v ← momentum·v − weight_decay·lr·w − lr·grad ;  w ← w + v
grad is the batch-averaged gradient; biases are updated with weight_decay = 0.
"""


def sgd_update(w, v, grad, *, lr, momentum, weight_decay):
    if not (w.shape == v.shape == grad.shape):
        raise ValueError(f"SGD update needs weights, momentum and gradient of one shape; "
                         f"got {w.shape}, {v.shape}, {grad.shape}")
    dtype = w.dtype.type
    v *= dtype(momentum)
    v -= dtype(weight_decay * lr) * w
    v -= dtype(lr) * grad
    w += v
