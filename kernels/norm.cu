// Response normalization, cross-map and same-map, forward and backward (Python launchers:
// convnet/backend/cuda/norm.py).
//
// Layout: x, y, denoms, dy, dx (C, H, W, N), images innermost; one thread per element, so
// consecutive threads read consecutive images.
// Formulas (convnet/backend/reference/norm.py), W(p) the centred window of odd `size` around p,
// clipped at the edges: over channels c ± size/2 (cross-map), or over rows and columns
// h ± size/2, w ± size/2 of the same channel (same-map):
//   forward    d_p = k + coefficient · Σ_{q∈W(p)} x_q²,   y_p = x_p · d_p^(−β)
//   backward   dx_q = dy_q · d_q^(−β) − 2·coefficient·β · x_q · Σ_{p∈W(q)} dy_p · y_p / d_p
// (the window is symmetric, so p ∈ W(q) exactly when q ∈ W(p)).
// Restrictions (asserted by the launchers): size odd; C·H·W·N < 2³¹.
#include "common.cuh"
#include "tiles.cuh"

// Σ over the cross-map window of element i of f(j), j the neighbour's flat index.
template <typename T, typename F>
__device__ __forceinline__ T crossmap_sum(const Coordinates& at, u32 i, int channels, int map_size,
                                         int size, F f) {
  const int first = maximum(at.c - size / 2, 0), last = minimum(at.c + size / 2, channels - 1);
  T sum = 0;
  for (int c = first; c <= last; ++c) sum += f(i + (c - at.c) * map_size);
  return sum;
}

// Σ over the same-map window of element i of f(j).
template <typename T, typename F>
__device__ __forceinline__ T samemap_sum(const Coordinates& at, u32 i, int height, int width,
                                         int images, int size, F f) {
  const int top = maximum(at.h - size / 2, 0), bottom = minimum(at.h + size / 2, height - 1);
  const int left = maximum(at.w - size / 2, 0), right = minimum(at.w + size / 2, width - 1);
  T sum = 0;
  for (int h = top; h <= bottom; ++h)
    for (int w = left; w <= right; ++w) sum += f(i + ((h - at.h) * width + (w - at.w)) * images);
  return sum;
}

template <typename T, bool kCrossMap>
__device__ __forceinline__ void norm_forward(const T* __restrict__ x, T* __restrict__ y,
                                             T* __restrict__ denoms, int channels, int height,
                                             int width, int images, int size, T k,
                                             T coefficient, T beta) {
  const u32 count = channels * height * width * images;
  auto square = [x](u32 j) { return x[j] * x[j]; };
  GRID_STRIDE_LOOP_AT(i, at, count, height, width, images) {
    const T sum = kCrossMap
        ? crossmap_sum<T>(at, i, channels, height * width * images, size, square)
        : samemap_sum<T>(at, i, height, width, images, size, square);
    const T d = k + coefficient * sum;
    denoms[i] = d;
    y[i] = x[i] * power(d, -beta);
  }
}

template <typename T, bool kCrossMap>
__device__ __forceinline__ void norm_backward(const T* __restrict__ dy, const T* __restrict__ x,
                                              const T* __restrict__ y,
                                              const T* __restrict__ denoms, T* __restrict__ dx,
                                              int channels, int height, int width, int images,
                                              int size, T coefficient, T beta) {
  const u32 count = channels * height * width * images;
  auto spread = [dy, y, denoms](u32 j) { return dy[j] * y[j] / denoms[j]; };
  GRID_STRIDE_LOOP_AT(i, at, count, height, width, images) {
    const T sum = kCrossMap
        ? crossmap_sum<T>(at, i, channels, height * width * images, size, spread)
        : samemap_sum<T>(at, i, height, width, images, size, spread);
    dx[i] = dy[i] * power(denoms[i], -beta) - T(2) * coefficient * beta * x[i] * sum;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads, kWalkingBlocksPerSM)
crossmap_norm_forward(const T* __restrict__ x, T* __restrict__ y, T* __restrict__ denoms,
                      int channels, int height, int width, int images, int size, T k,
                      T coefficient, T beta) {
  norm_forward<T, true>(x, y, denoms, channels, height, width, images, size, k, coefficient, beta);
}
CONVNET_INSTANTIATE(crossmap_norm_forward)

template <typename T>
__global__ void __launch_bounds__(kThreads, kWalkingBlocksPerSM)
samemap_norm_forward(const T* __restrict__ x, T* __restrict__ y, T* __restrict__ denoms,
                     int channels, int height, int width, int images, int size, T k,
                     T coefficient, T beta) {
  norm_forward<T, false>(x, y, denoms, channels, height, width, images, size, k, coefficient,
                         beta);
}
CONVNET_INSTANTIATE(samemap_norm_forward)

template <typename T>
__global__ void __launch_bounds__(kThreads, kWalkingBlocksPerSM)
crossmap_norm_backward(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ y,
                       const T* __restrict__ denoms, T* __restrict__ dx, int channels, int height,
                       int width, int images, int size, T coefficient, T beta) {
  norm_backward<T, true>(dy, x, y, denoms, dx, channels, height, width, images, size, coefficient,
                         beta);
}
CONVNET_INSTANTIATE(crossmap_norm_backward)

template <typename T>
__global__ void __launch_bounds__(kThreads, kWalkingBlocksPerSM)
samemap_norm_backward(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ y,
                      const T* __restrict__ denoms, T* __restrict__ dx, int channels, int height,
                      int width, int images, int size, T coefficient, T beta) {
  norm_backward<T, false>(dy, x, y, denoms, dx, channels, height, width, images, size,
                          coefficient, beta);
}
CONVNET_INSTANTIATE(samemap_norm_backward)
