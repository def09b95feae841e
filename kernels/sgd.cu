// The paper's SGD update (convnet/solver.py), in place (launcher: convnet/backend/cuda/sgd.py), in
// the reference's order of operations (convnet/backend/reference/sgd.py), each rounded to T on its
// own (mul_rn, sub_rn, add_rn: no fused multiply-add), so that it gives the reference's bits:
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
    T velocity = mul_rn(v[i], momentum);
    velocity = sub_rn(velocity, mul_rn(decay_lr, w[i]));
    velocity = sub_rn(velocity, mul_rn(lr, grad[i]));
    v[i] = velocity;
    w[i] = add_rn(w[i], velocity);
  }
}
CONVNET_INSTANTIATE(sgd_update)
