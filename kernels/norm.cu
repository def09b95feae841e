// Response normalization, cross-map and same-map, forward and backward (Python launchers:
// convnet/backend/cuda/norm.py).
//
// Layout: x, y, denoms, dy, dx (C, H, W, N), images innermost; consecutive threads read
// consecutive images.
// Formulas (convnet/backend/reference/norm.py), W(p) the centred window of odd `size` around p,
// clipped at the edges: over channels c ± size/2 (cross-map), or over rows and columns
// h ± size/2, w ± size/2 of the same channel (same-map):
//   forward    d_p = k + coefficient · Σ_{q∈W(p)} x_q²,   y_p = x_p · d_p^(−β)
//   backward   dx_q = dy_q · d_q^(−β) − 2·coefficient·β · x_q · Σ_{p∈W(q)} dy_p · y_p / d_p
// (the window is symmetric, so p ∈ W(q) exactly when q ∈ W(p)).
//
// Each thread walks a line of elements (NormLine): a pixel's channels (cross-map), or a
// column's rows (same-map), and keeps in registers the last `size` values that entered the
// window along the line: an element's square (forward) or dy·y/d (backward, a division), summed
// for same-map over the window's columns of the entering row. So each is computed once for the
// walk, not once for every window that holds it. The window's size is a template parameter
// (with_window_size), since registers cannot be indexed at run time.
// Restrictions: size odd (NormParams refuses others) and ≤ kMaxNormSize (tiles.cuh), and
// C·H·W·N < 2³¹ (both asserted by the launchers).
#include "common.cuh"
#include "tiles.cuh"

// body(Constant<size>()) for an odd size ≤ kMaxNormSize.
template <int kSize = kMaxNormSize, typename Body>
__device__ __forceinline__ void with_window_size(int size, Body body) {
  if constexpr (kSize > 1) {
    if (size < kSize) return with_window_size<kSize - 2>(size, body);
  }
  body(Constant<kSize>());
}

// Thread `line`'s elements: element t is start + t·stride, t < length. Same-map adds, at each
// element, the window's columns: offsets j·images for left ≤ j ≤ right (the window's half
// clipped at the map's edges); cross-map has the one column j = 0.
struct NormLine {
  int start, stride, length, left, right, images;
  __device__ NormLine(bool cross_map, u32 line, int channels, int height, int width, int images_,
                      int half)
      : images(images_) {
    const int pixels = height * width * images_;
    if (cross_map) {   // line: a pixel (h, w, n) of H·W·N; its channels
      start = line, stride = pixels, length = channels, left = right = 0;
    } else {           // line: a column (c, w, n) of C·W·N; its rows
      const int row = width * images_, c = line / row, within = line % row, w = within / images_;
      start = c * pixels + within, stride = row, length = height;
      left = -minimum(half, w), right = minimum(half, width - 1 - w);
    }
  }
  __device__ __forceinline__ int at(int t) const { return start + t * stride; }
};

// Σ of value(i) over the window's columns of element t's row (kColumns: 1 for cross-map, the
// window's size for same-map), left to right.
template <typename T, int kColumns, typename Value>
__device__ __forceinline__ T row_sum(const NormLine& line, int t, Value value) {
  const int i = line.at(t);
  if constexpr (kColumns == 1) return value(i);
  T sum = value(i + line.left * line.images);
  for (int j = 1; j < kColumns; ++j)
    if (line.left + j <= line.right) sum += value(i + (line.left + j) * line.images);
  return sum;
}

// Walks the line: for each element t, emit(i, window sum) once element t + kSize/2 has
// entered, the sum in line order over the entered values within the window (zero outside).
template <typename T, int kSize, int kColumns, typename Value, typename Emit>
__device__ __forceinline__ void walk(const NormLine& line, Value value, Emit emit) {
  constexpr int kHalf = kSize / 2;
  T window[kSize] = {};   // window[j]: element t − kHalf + j's entered value
  const auto enter = [&](int t) {
    for (int j = 0; j + 1 < kSize; ++j) window[j] = window[j + 1];
    window[kSize - 1] = t < line.length ? row_sum<T, kColumns>(line, t, value) : T(0);
  };
  for (int t = 0; t < kHalf; ++t) enter(t);
  for (int t = 0; t < line.length; ++t) {
    enter(t + kHalf);
    T sum = window[0];
    for (int j = 1; j < kSize; ++j) sum += window[j];
    emit(line.at(t), sum);
  }
}

// The lines of a (C, H, W, N) array: H·W·N for cross-map, C·W·N for same-map.
__device__ __forceinline__ u32 norm_lines(bool cross_map, int channels, int height, int width,
                                          int images) {
  return (cross_map ? height : channels) * width * images;
}

template <typename T, bool kCrossMap>
__device__ __forceinline__ void norm_forward(const T* __restrict__ x, T* __restrict__ y,
                                             T* __restrict__ denoms, int channels, int height,
                                             int width, int images, int size, T k,
                                             T coefficient, T beta) {
  const auto square = [x](int i) { return x[i] * x[i]; };
  with_window_size(size, [&](auto window) {
    constexpr int kSize = decltype(window)::value;
    GRID_STRIDE_LOOP(line, norm_lines(kCrossMap, channels, height, width, images)) {
      const NormLine walked(kCrossMap, line, channels, height, width, images, kSize / 2);
      walk<T, kSize, kCrossMap ? 1 : kSize>(walked, square, [&](int i, T sum) {
        const T d = k + coefficient * sum;
        denoms[i] = d;
        y[i] = x[i] * fast_power(d, -beta);
      });
    }
  });
}

template <typename T, bool kCrossMap>
__device__ __forceinline__ void norm_backward(const T* __restrict__ dy, const T* __restrict__ x,
                                              const T* __restrict__ y,
                                              const T* __restrict__ denoms, T* __restrict__ dx,
                                              int channels, int height, int width, int images,
                                              int size, T coefficient, T beta) {
  const auto spread = [dy, y, denoms](int i) { return dy[i] * y[i] / denoms[i]; };
  with_window_size(size, [&](auto window) {
    constexpr int kSize = decltype(window)::value;
    GRID_STRIDE_LOOP(line, norm_lines(kCrossMap, channels, height, width, images)) {
      const NormLine walked(kCrossMap, line, channels, height, width, images, kSize / 2);
      walk<T, kSize, kCrossMap ? 1 : kSize>(walked, spread, [&](int i, T sum) {
        dx[i] = dy[i] * fast_power(denoms[i], -beta) - T(2) * coefficient * beta * x[i] * sum;
      });
    }
  });
}

// One thread per line: the launcher's count is norm_lines.
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
