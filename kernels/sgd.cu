// The SGD update of SPEC.md, in place (Python launcher: convnet/backend/cuda/sgd.py), in the
// reference's order of operations (convnet/backend/reference/sgd.py):
//   v ← momentum·v ;  v ← v − decay_lr·w ;  v ← v − lr·grad ;  w ← w + v
// with decay_lr = weight_decay·lr rounded to T once on the host. Layout: w, v, grad flat, one
// shape. Restrictions: count < 2³¹.
#include "common.cuh"
#include "tiles.cuh"

template <typename T>
__global__ void __launch_bounds__(kThreads)
sgd_update(T* __restrict__ w, T* __restrict__ v, const T* __restrict__ grad, u32 count, T lr,
           T momentum, T decay_lr) {
  GRID_STRIDE_LOOP(i, count) {
    T velocity = v[i] * momentum;
    velocity = velocity - decay_lr * w[i];
    velocity = velocity - lr * grad[i];
    v[i] = velocity;
    w[i] = w[i] + velocity;
  }
}
CONVNET_INSTANTIATE(sgd_update)
