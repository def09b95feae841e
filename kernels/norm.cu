// Response normalization, cross-map and same-map, forward and backward (Python launchers:
// convnet/backend/cuda/norm.py).
//
// Layout: x, y, denoms, dy, dx (C, H, W, N), images innermost; consecutive threads read
// consecutive images. Same-map: one thread per element. Cross-map: one thread per pixel (h, w, n)
// that walks its channels in order, keeping the last kSize values that entered the window in
// registers, so each element's square (forward) or dy·y/d (backward, a division) is computed
// once, not once for every window that holds it; the window's size is a template parameter
// (with_window_size), since registers cannot be indexed at run time.
// Formulas (convnet/backend/reference/norm.py), W(p) the centred window of odd `size` around p,
// clipped at the edges: over channels c ± size/2 (cross-map), or over rows and columns
// h ± size/2, w ± size/2 of the same channel (same-map):
//   forward    d_p = k + coefficient · Σ_{q∈W(p)} x_q²,   y_p = x_p · d_p^(−β)
//   backward   dx_q = dy_q · d_q^(−β) − 2·coefficient·β · x_q · Σ_{p∈W(q)} dy_p · y_p / d_p
// (the window is symmetric, so p ∈ W(q) exactly when q ∈ W(p)).
// Restrictions (asserted by the launchers): size odd; cross-map size ≤ kMaxCrossMapSize;
// C·H·W·N < 2³¹.
#include "common.cuh"
#include "tiles.cuh"

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

template <typename T>
__device__ __forceinline__ void samemap_forward(const T* __restrict__ x, T* __restrict__ y,
                                                T* __restrict__ denoms, int channels, int height,
                                                int width, int images, int size, T k,
                                                T coefficient, T beta) {
  const u32 count = channels * height * width * images;
  auto square = [x](u32 j) { return x[j] * x[j]; };
  GRID_STRIDE_LOOP_AT(i, at, count, height, width, images) {
    const T d = k + coefficient * samemap_sum<T>(at, i, height, width, images, size, square);
    denoms[i] = d;
    y[i] = x[i] * power(d, -beta);
  }
}

template <typename T>
__device__ __forceinline__ void samemap_backward(const T* __restrict__ dy,
                                                 const T* __restrict__ x,
                                                 const T* __restrict__ y,
                                                 const T* __restrict__ denoms,
                                                 T* __restrict__ dx, int channels, int height,
                                                 int width, int images, int size, T coefficient,
                                                 T beta) {
  const u32 count = channels * height * width * images;
  auto spread = [dy, y, denoms](u32 j) { return dy[j] * y[j] / denoms[j]; };
  GRID_STRIDE_LOOP_AT(i, at, count, height, width, images) {
    const T sum = samemap_sum<T>(at, i, height, width, images, size, spread);
    dx[i] = dy[i] * power(denoms[i], -beta) - T(2) * coefficient * beta * x[i] * sum;
  }
}

template <int kValue>
struct WindowSize { static constexpr int value = kValue; };
// body(WindowSize<size>()) for an odd size ≤ kMaxCrossMapSize.
template <int kSize = kMaxCrossMapSize, typename Body>
__device__ __forceinline__ void with_window_size(int size, Body body) {
  if constexpr (kSize > 1) {
    if (size < kSize) return with_window_size<kSize - 2>(size, body);
  }
  body(WindowSize<kSize>());
}

// The last kSize values along a thread's channels: window[j] is channel c − kSize/2 + j's (zero
// outside the channels) once channel c + kSize/2 has entered.
template <typename T, int kSize>
struct ChannelWindow {
  T values[kSize] = {};
  __device__ __forceinline__ void enter(T value) {
    for (int j = 0; j + 1 < kSize; ++j) values[j] = values[j + 1];
    values[kSize - 1] = value;
  }
  __device__ __forceinline__ T sum() const {   // in channel order
    T total = values[0];
    for (int j = 1; j < kSize; ++j) total += values[j];
    return total;
  }
};

// Pixel p's channels: element c is at c·map_size + p.
template <typename T, int kSize>
__device__ __forceinline__ void crossmap_forward(const T* __restrict__ x, T* __restrict__ y,
                                                 T* __restrict__ denoms, int channels,
                                                 u32 map_size, T k, T coefficient, T beta) {
  constexpr int kHalf = kSize / 2;
  GRID_STRIDE_LOOP(p, map_size) {
    ChannelWindow<T, kSize> squares, values;   // values: x, for the window's centre
    for (int c = 0; c < kHalf; ++c) {
      const T v = c < channels ? x[c * map_size + p] : T(0);
      squares.enter(v * v);
      values.enter(v);
    }
    for (int c = 0; c < channels; ++c) {
      const T v = c + kHalf < channels ? x[(c + kHalf) * map_size + p] : T(0);
      squares.enter(v * v);
      values.enter(v);
      const T d = k + coefficient * squares.sum();
      const u32 i = c * map_size + p;
      denoms[i] = d;
      y[i] = values.values[kHalf] * power(d, -beta);
    }
  }
}

template <typename T, int kSize>
__device__ __forceinline__ void crossmap_backward(const T* __restrict__ dy,
                                                  const T* __restrict__ x,
                                                  const T* __restrict__ y,
                                                  const T* __restrict__ denoms,
                                                  T* __restrict__ dx, int channels, u32 map_size,
                                                  T coefficient, T beta) {
  constexpr int kHalf = kSize / 2;
  GRID_STRIDE_LOOP(p, map_size) {
    ChannelWindow<T, kSize> spreads;   // dy·y/d
    const auto spread = [&](int c) {
      const u32 i = c * map_size + p;
      return c < channels ? dy[i] * y[i] / denoms[i] : T(0);
    };
    for (int c = 0; c < kHalf; ++c) spreads.enter(spread(c));
    for (int c = 0; c < channels; ++c) {
      spreads.enter(spread(c + kHalf));
      const u32 i = c * map_size + p;
      dx[i] = dy[i] * power(denoms[i], -beta) - T(2) * coefficient * beta * x[i] * spreads.sum();
    }
  }
}

// One thread per pixel: the launcher's count is H·W·N.
template <typename T>
__global__ void __launch_bounds__(kThreads, kWalkingBlocksPerSM)
crossmap_norm_forward(const T* __restrict__ x, T* __restrict__ y, T* __restrict__ denoms,
                      int channels, int height, int width, int images, int size, T k,
                      T coefficient, T beta) {
  with_window_size(size, [&](auto window) {
    crossmap_forward<T, decltype(window)::value>(x, y, denoms, channels, height * width * images,
                                                 k, coefficient, beta);
  });
}
CONVNET_INSTANTIATE(crossmap_norm_forward)

template <typename T>
__global__ void __launch_bounds__(kThreads, kWalkingBlocksPerSM)
samemap_norm_forward(const T* __restrict__ x, T* __restrict__ y, T* __restrict__ denoms,
                     int channels, int height, int width, int images, int size, T k,
                     T coefficient, T beta) {
  samemap_forward<T>(x, y, denoms, channels, height, width, images, size, k, coefficient, beta);
}
CONVNET_INSTANTIATE(samemap_norm_forward)

// One thread per pixel: the launcher's count is H·W·N.
template <typename T>
__global__ void __launch_bounds__(kThreads, kWalkingBlocksPerSM)
crossmap_norm_backward(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ y,
                       const T* __restrict__ denoms, T* __restrict__ dx, int channels, int height,
                       int width, int images, int size, T coefficient, T beta) {
  with_window_size(size, [&](auto window) {
    crossmap_backward<T, decltype(window)::value>(dy, x, y, denoms, dx, channels,
                                                  height * width * images, coefficient, beta);
  });
}
CONVNET_INSTANTIATE(crossmap_norm_backward)

template <typename T>
__global__ void __launch_bounds__(kThreads, kWalkingBlocksPerSM)
samemap_norm_backward(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ y,
                      const T* __restrict__ denoms, T* __restrict__ dx, int channels, int height,
                      int width, int images, int size, T coefficient, T beta) {
  samemap_backward<T>(dy, x, y, denoms, dx, channels, height, width, images, size, coefficient,
                      beta);
}
CONVNET_INSTANTIATE(samemap_norm_backward)
