// Overlapping max pooling, forward and backward (Python launchers: convnet/backend/cuda/pool.py).
//
// Layout: x, dx (C, H, W, N); y, dy (C, OH, OW, N); images innermost, one thread per element.
// OH = ceil((H − size)/stride) + 1 (cuda-convnet's rule, convnet/shapes.py): the last window may
// overhang the bottom/right edge and then covers only the pixels that exist; or, without
// overhang, floor((H − size)/stride) + 1, whole windows only (the launchers pass OH and OW).
//   forward    y[c,oy,ox,n] = max over rows oy·stride … oy·stride+size−1 (< H) and the same for
//              columns of x[c,·,·,n]
//   backward   the reference's tie-inclusive rule, as a gather with no atomics: each input
//              collects, from every window that contains it, that window's gradient when it
//              equals the window's maximum:
//              dx[c,h,w,n] = Σ_{oy,ox: (h,w) ∈ window} dy[c,oy,ox,n] · [x[c,h,w,n] = y[c,oy,ox,n]]
// Restrictions (asserted by the launchers): C·H·W·N < 2³¹; size ≥ stride ≥ 1 (windows cover
// the input); size ≤ H and W (every window's first pixel, which forward reads unchecked, exists).
#include "common.cuh"
#include "tiles.cuh"

template <typename T>
__global__ void __launch_bounds__(kThreads, kWalkingBlocksPerSM)
maxpool_forward(const T* __restrict__ x, T* __restrict__ y, int channels, int height, int width,
                int images, int out_height, int out_width, int size, int stride) {
  const u32 count = channels * out_height * out_width * images;
  GRID_STRIDE_LOOP_AT(i, at, count, out_height, out_width, images) {
    const int top = at.h * stride, left = at.w * stride;
    const int bottom = minimum(top + size, height), right = minimum(left + size, width);
    const T* map = x + static_cast<size_t>(at.c) * height * width * images + at.n;
    T best = map[(top * width + left) * images];
    for (int h = top; h < bottom; ++h)
      for (int w = left; w < right; ++w) best = maximum(best, map[(h * width + w) * images]);
    y[i] = best;
  }
}
CONVNET_INSTANTIATE(maxpool_forward)

template <typename T>
__global__ void __launch_bounds__(kThreads, kWalkingBlocksPerSM)
maxpool_backward(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ y,
                 T* __restrict__ dx, int channels, int height, int width, int images,
                 int out_height, int out_width, int size, int stride) {
  const u32 count = channels * height * width * images;
  const FastDivmod by_stride(stride);
  GRID_STRIDE_LOOP_AT(i, at, count, height, width, images) {
    const int h = at.h, w = at.w;
    // Windows containing row h: oy·stride ≤ h < oy·stride + size.
    const int oy_first = h < size ? 0 : by_stride.div(h - size) + 1;
    const int oy_last = minimum(by_stride.div(h), out_height - 1);
    const int ox_first = w < size ? 0 : by_stride.div(w - size) + 1;
    const int ox_last = minimum(by_stride.div(w), out_width - 1);
    // 32-bit offsets: every array is < 2³¹ elements (the launchers check)
    const int map = at.c * out_height * out_width * images + at.n;
    const T value = x[i];
    T sum = 0;
    UNROLL(1)   // one or two windows along each axis in AlexNet: no unrolled copies
    for (int oy = oy_first; oy <= oy_last; ++oy) {
      const int row = map + oy * out_width * images;
      UNROLL(1)
      for (int ox = ox_first; ox <= ox_last; ++ox) {
        const int o = row + ox * images;
        if (value == y[o]) sum += dy[o];
      }
    }
    dx[i] = sum;
  }
}
CONVNET_INSTANTIATE(maxpool_backward)
