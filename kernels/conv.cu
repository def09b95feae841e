// Convolution: forward, gradient with respect to the input and to the filters, as implicit GEMMs
// (Python launchers: convnet/backend/cuda/conv.py).
//
// Layout (convnet/backend): x, dx (C, H, W, N) and y, dy (F, OH, OW, N), images innermost;
// filters w, dw (C, S, S, F), S the filter size. Output size: OH = (H + pad − S) / stride + 1
// rounded up (cuda-convnet's rule, convnet/shapes.py); reads outside the image, through the zero
// padding on the top/left or the overhang on the bottom/right, are zeros made by the loaders,
// never padded copies.
//
// Each pass is a product C[m][n] = Σ_k A[k][m] · B[k][n] whose operands are read in place:
//   forward           m = f, n = (oy, ox, n), k = (c, i, j)
//                     A = w[c,i,j,f]; B = x[c, oy·stride−pad+i, ox·stride−pad+j, n]; C → y
//   backward input    m = c, n = (h, w, n), k = (i, j, f): a gather, no atomics
//                     A = w[c,i,j,f]; B = dy[f, oy, ox, n] where h = oy·stride−pad+i (and the
//                     same for columns) has an integer solution inside the output, else 0; C → dx
//   backward filters  m = (c, i, j), n = f, k = (oy, ox, n): a reduction over every output
//                     position, split into `splits` slices of k (blockIdx.z); each slice writes
//                     its own partial (splits, C·S·S, F) and conv_sum_splits adds them in slice
//                     order, so the result has the same bits every run (no atomics)
//   bias gradient     elementwise.cu's bias_backward over dy's rows
// A block computes a kConvTileM × kConvTileN tile of C (tiles.cuh), stepping kConvTileK along k
// through shared memory; thread (ty, tx) accumulates rows ty + 16·a and columns tx + 16·b, so
// consecutive threads write consecutive images. The loaders read along the operand's contiguous
// axis: along m or n, or along k where that is the contiguous one (kContiguousInK).
// Restrictions (asserted by the launchers): every array < 2³¹ elements; blockDim.x =
// kConvThreads, gridDim = (tiles of n, tiles of m, splits).
//
// Performance caveat: a plain shared-memory tiling with no double buffering or vector loads; the
// tile shape in tiles.cuh is where tuning starts (bench with tools/bench_kernels.py).
#include "common.cuh"
#include "tiles.cuh"

constexpr int kConvRowsPerThread = kConvTileM / kConvThreadM;   // threads along m
constexpr int kConvColumnsPerThread = kConvTileN / kConvThreadN;  // threads along n
// Shared tile rows are this many elements longer than the tile: a warp that stores along k
// (kContiguousInK: 8 values of k × 4 of m) then spreads over 32 banks instead of 4.
constexpr int kConvRowPad = 4;

// Loads a kConvTileK × kExtent tile of an operand into shared memory, zeros outside the problem.
template <typename T, int kExtent, bool kContiguousInK, typename Operand>
__device__ __forceinline__ void load_tile(T (&tile)[kConvTileK][kExtent + kConvRowPad],
                                          const Operand& operand, int k0, int k_end, int base,
                                          int extent) {
  constexpr int kElements = kConvTileK * kExtent;
  for (int e = threadIdx.x; e < kElements; e += kConvThreads) {
    const int kk = kContiguousInK ? e % kConvTileK : e / kExtent;
    const int mm = kContiguousInK ? e / kConvTileK : e % kExtent;
    const int k = k0 + kk, m = base + mm;
    tile[kk][mm] = (k < k_end && m < extent) ? operand(k, m) : T(0);
  }
}

// The tile of C at (m0, n0), summed over k in [k_begin, k_end); store(m, n, value) per element.
template <typename T, bool kAContiguousInK, bool kBContiguousInK, typename A, typename B,
          typename Store>
__device__ __forceinline__ void gemm_tile(const A& a, const B& b, const Store& store, int rows,
                                          int columns, int k_begin, int k_end) {
  __shared__ T a_tile[kConvTileK][kConvTileM + kConvRowPad];
  __shared__ T b_tile[kConvTileK][kConvTileN + kConvRowPad];
  const int m0 = blockIdx.y * kConvTileM, n0 = blockIdx.x * kConvTileN;
  const int tx = threadIdx.x % kConvColumnsPerThread, ty = threadIdx.x / kConvColumnsPerThread;
  T sum[kConvThreadM][kConvThreadN] = {};
  for (int k0 = k_begin; k0 < k_end; k0 += kConvTileK) {
    load_tile<T, kConvTileM, kAContiguousInK>(a_tile, a, k0, k_end, m0, rows);
    load_tile<T, kConvTileN, kBContiguousInK>(b_tile, b, k0, k_end, n0, columns);
    __syncthreads();
    for (int kk = 0; kk < kConvTileK; ++kk) {
      T a_values[kConvThreadM], b_values[kConvThreadN];
      for (int r = 0; r < kConvThreadM; ++r) a_values[r] = a_tile[kk][ty + r * kConvRowsPerThread];
      for (int s = 0; s < kConvThreadN; ++s) b_values[s] = b_tile[kk][tx + s * kConvColumnsPerThread];
      for (int r = 0; r < kConvThreadM; ++r)
        for (int s = 0; s < kConvThreadN; ++s) sum[r][s] += a_values[r] * b_values[s];
    }
    __syncthreads();
  }
  for (int r = 0; r < kConvThreadM; ++r) {
    const int m = m0 + ty + r * kConvRowsPerThread;
    if (m >= rows) continue;
    for (int s = 0; s < kConvThreadN; ++s) {
      const int n = n0 + tx + s * kConvColumnsPerThread;
      if (n < columns) store(m, n, sum[r][s]);
    }
  }
}

// The geometry every pass shares.
struct ConvShape {
  int channels, height, width, images, filters, size, stride, pad, out_height, out_width;
};

// x[c, oy·stride − pad + i, ox·stride − pad + j, n] for k = (c, i, j) and p = (oy, ox, n),
// zero outside the image.
template <typename T>
__device__ __forceinline__ T input_window(const T* __restrict__ x, const ConvShape& s, int k,
                                          int p) {
  const int j = k % s.size, i = k / s.size % s.size, c = k / (s.size * s.size);
  const int n = p % s.images, ox = p / s.images % s.out_width, oy = p / (s.images * s.out_width);
  const int h = oy * s.stride - s.pad + i, w = ox * s.stride - s.pad + j;
  if (h < 0 || h >= s.height || w < 0 || w >= s.width) return T(0);
  return x[((static_cast<size_t>(c) * s.height + h) * s.width + w) * s.images + n];
}

template <typename T>
__global__ void __launch_bounds__(kConvThreads)
conv_forward(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, int channels,
             int height, int width, int images, int filters, int size, int stride, int pad,
             int out_height, int out_width) {
  const ConvShape s{channels, height, width, images, filters, size, stride, pad, out_height,
                    out_width};
  const int positions = out_height * out_width * images;
  auto a = [w, filters](int k, int f) { return w[static_cast<size_t>(k) * filters + f]; };
  auto b = [x, s](int k, int p) { return input_window(x, s, k, p); };
  auto store = [y, positions](int f, int p, T value) {
    y[static_cast<size_t>(f) * positions + p] = value;
  };
  gemm_tile<T, false, false>(a, b, store, filters, positions, 0, channels * size * size);
}
CONVNET_INSTANTIATE(conv_forward)

template <typename T>
__global__ void __launch_bounds__(kConvThreads)
conv_backward_input(const T* __restrict__ dy, const T* __restrict__ w, T* __restrict__ dx,
                    int channels, int height, int width, int images, int filters, int size,
                    int stride, int pad, int out_height, int out_width) {
  const int pixels = height * width * images;
  // k = (i, j, f), f innermost: A[k][c] = w[c, i, j, f] is contiguous along k.
  auto a = [w, filters, size](int k, int c) {
    return w[(static_cast<size_t>(c) * size * size + k / filters) * filters + k % filters];
  };
  auto b = [=](int k, int q) -> T {
    const int f = k % filters, tap = k / filters, j = tap % size, i = tap / size;
    const int n = q % images, col = q / images % width, row = q / (images * width);
    const int oy_scaled = row + pad - i, ox_scaled = col + pad - j;
    if (oy_scaled < 0 || ox_scaled < 0 || oy_scaled % stride || ox_scaled % stride) return T(0);
    const int oy = oy_scaled / stride, ox = ox_scaled / stride;
    if (oy >= out_height || ox >= out_width) return T(0);
    return dy[((static_cast<size_t>(f) * out_height + oy) * out_width + ox) * images + n];
  };
  auto store = [dx, pixels](int c, int q, T value) {
    dx[static_cast<size_t>(c) * pixels + q] = value;
  };
  gemm_tile<T, true, false>(a, b, store, channels, pixels, 0, size * size * filters);
}
CONVNET_INSTANTIATE(conv_backward_input)

// Slice blockIdx.z of the reduction over positions: k in [z·slice, min((z+1)·slice, positions)).
template <typename T>
__global__ void __launch_bounds__(kConvThreads)
conv_backward_filters(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ partial,
                      int channels, int height, int width, int images, int filters, int size,
                      int stride, int pad, int out_height, int out_width, int slice) {
  const ConvShape s{channels, height, width, images, filters, size, stride, pad, out_height,
                    out_width};
  const int positions = out_height * out_width * images, taps = channels * size * size;
  auto a = [x, s](int p, int k) { return input_window(x, s, k, p); };
  auto b = [dy, positions](int p, int f) { return dy[static_cast<size_t>(f) * positions + p]; };
  T* out = partial + static_cast<size_t>(blockIdx.z) * taps * filters;
  auto store = [out, filters](int k, int f, T value) {
    out[static_cast<size_t>(k) * filters + f] = value;
  };
  const int k_begin = blockIdx.z * slice;
  gemm_tile<T, true, true>(a, b, store, taps, filters, k_begin,
                           minimum(k_begin + slice, positions));
}
CONVNET_INSTANTIATE(conv_backward_filters)

// dw[i] = Σ_{z < splits} partial[z][i], in slice order.
template <typename T>
__global__ void __launch_bounds__(kThreads)
conv_sum_splits(const T* __restrict__ partial, T* __restrict__ dw, u32 count, int splits) {
  GRID_STRIDE_LOOP(i, count) {
    T sum = partial[i];
    for (int z = 1; z < splits; ++z) sum += partial[static_cast<size_t>(z) * count + i];
    dw[i] = sum;
  }
}
CONVNET_INSTANTIATE(conv_sum_splits)
