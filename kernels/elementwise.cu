// Elementwise ops and the bias gradient (Python launchers: convnet/backend/cuda/elementwise.py).
//
// Layout: any array, flat in row-major order; a bias runs along axis 0, so element i of an array
// of `count` elements with `inner` elements per channel belongs to channel i / inner.
// Formulas (those of convnet/backend/reference/elementwise.py and conv.py):
//   add_bias        out[i] = y[i] + bias[i / inner]
//   relu_forward    out[i] = max(x[i], 0), a NaN kept (common.cuh: maximum)
//   relu_backward   out[i] = y[i] > 0 ? dy[i] : 0           (y the ReLU's output)
//   tanh_forward    out[i] = tanh(x[i])
//   tanh_backward   out[i] = dy[i] · (1 − y[i] · y[i])       (y the tanh's output)
//   dropout_mask    mask[i] = (mix(g ^ mix(key)) >> 8) < threshold,  threshold = round(keep·2²⁴),
//                   g = (i / images)·total + start + i % images: element i's index in the mask of
//                   the whole `total`-image batch, of which this array holds images [start,
//                   start + images) (images innermost; g = i for a whole batch)
//   apply_mask      out[i] = x[i] · mask[i]
//   scale           out[i] = x[i] · factor
//   add             out[i] = x[i] + y[i]
//   bias_backward   out[c·S + s] = Σ dy[c·inner + i] over slice s of each row, i in
//                   [s·slice, (s+1)·slice) ∩ [0, inner): block (c, s), S = gridDim.y slices; in a
//                   fixed order (a tree over the block's threads), so the same bits every run.
//                   The launcher sums long rows in slices, then the slices by a second launch.
// Restrictions (asserted by the launchers): count < 2³¹ (for dropout_mask, the whole batch's
// count too); for bias_backward gridDim = (channels ≥ 1, slices); the grid-stride loops take any
// grid.
#include "common.cuh"
#include "tiles.cuh"

template <typename T>
__global__ void __launch_bounds__(kThreads)
add_bias(const T* __restrict__ y, const T* __restrict__ bias, T* __restrict__ out, u32 count,
         u32 inner) {
  const FastDivmod per_channel(inner);
  GRID_STRIDE_LOOP(i, count) out[i] = y[i] + bias[per_channel.div(i)];
}
CONVNET_INSTANTIATE(add_bias)

template <typename T>
__global__ void __launch_bounds__(kThreads)
relu_forward(const T* __restrict__ x, T* __restrict__ out, u32 count) {
  GRID_STRIDE_LOOP(i, count) out[i] = maximum(x[i], T(0));
}
CONVNET_INSTANTIATE(relu_forward)

template <typename T>
__global__ void __launch_bounds__(kThreads)
relu_backward(const T* __restrict__ dy, const T* __restrict__ y, T* __restrict__ out, u32 count) {
  GRID_STRIDE_LOOP(i, count) out[i] = y[i] > T(0) ? dy[i] : T(0);
}
CONVNET_INSTANTIATE(relu_backward)

template <typename T>
__global__ void __launch_bounds__(kThreads)
tanh_forward(const T* __restrict__ x, T* __restrict__ out, u32 count) {
  GRID_STRIDE_LOOP(i, count) out[i] = hyperbolic_tangent(x[i]);
}
CONVNET_INSTANTIATE(tanh_forward)

template <typename T>
__global__ void __launch_bounds__(kThreads)
tanh_backward(const T* __restrict__ dy, const T* __restrict__ y, T* __restrict__ out, u32 count) {
  GRID_STRIDE_LOOP(i, count) out[i] = dy[i] * (T(1) - y[i] * y[i]);
}
CONVNET_INSTANTIATE(tanh_backward)

// The 32-bit avalanche hash of convnet/backend/reference/elementwise.py (wrapping products).
__device__ __forceinline__ u32 mix32(u32 h) {
  h ^= h >> 16;
  h *= 0x7FEB352Du;
  h ^= h >> 15;
  h *= 0x846CA68Bu;
  return h ^ (h >> 16);
}

// T is unused by the formula; the mask is uint8 for both instantiations.
template <typename T>
__global__ void __launch_bounds__(kThreads)
dropout_mask(u8* __restrict__ mask, u32 count, u32 images, u32 start, u32 total, u32 key,
             u32 threshold) {
  const u32 mixed_key = mix32(key);
  const FastDivmod by_images(images);
  GRID_STRIDE_LOOP(i, count) {
    const int pixel = by_images.div(i);
    const u32 whole = pixel * total + start + by_images.mod(i, pixel);
    mask[i] = (mix32(whole ^ mixed_key) >> 8) < threshold;
  }
}
CONVNET_INSTANTIATE(dropout_mask)

template <typename T>
__global__ void __launch_bounds__(kThreads)
apply_mask(const T* __restrict__ x, const u8* __restrict__ mask, T* __restrict__ out, u32 count) {
  GRID_STRIDE_LOOP(i, count) out[i] = x[i] * T(mask[i]);
}
CONVNET_INSTANTIATE(apply_mask)

template <typename T>
__global__ void __launch_bounds__(kThreads)
scale(const T* __restrict__ x, T factor, T* __restrict__ out, u32 count) {
  GRID_STRIDE_LOOP(i, count) out[i] = x[i] * factor;
}
CONVNET_INSTANTIATE(scale)

template <typename T>
__global__ void __launch_bounds__(kThreads)
add(const T* __restrict__ x, const T* __restrict__ y, T* __restrict__ out, u32 count) {
  GRID_STRIDE_LOOP(i, count) out[i] = x[i] + y[i];
}
CONVNET_INSTANTIATE(add)

// Σ of one slice of one row per block (blockIdx.x = the row, blockIdx.y = the slice), in a fixed
// order: each thread sums a strided part, then a shared-memory tree halves the partial sums.
template <typename T>
__global__ void __launch_bounds__(kThreads)
bias_backward(const T* __restrict__ dy, T* __restrict__ out, u32 inner, u32 slice) {
  __shared__ T partial[kThreads];
  const T* row = dy + static_cast<size_t>(blockIdx.x) * inner;
  const u32 begin = blockIdx.y * slice;
  const u32 end = inner - begin < slice ? inner : begin + slice;
  T sum = 0;
  for (u32 i = begin + threadIdx.x; i < end; i += kThreads) sum += row[i];
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.x) < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[static_cast<size_t>(blockIdx.x) * gridDim.y + blockIdx.y] = partial[0];
}
CONVNET_INSTANTIATE(bias_backward)
