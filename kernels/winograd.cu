// Convolutions of 3 × 3 filters at stride 1 by Winograd's minimal filtering F(2×2, 3×3) (Lavin
// and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016), a plan of conv3, conv4 and
// conv5 beside conv.cu's implicit GEMMs (Python launchers: convnet/backend/cuda/conv.py).
//
// Layout as conv.cu: x, dx (C, H, W, N), y, dy (F, OH, OW, N), w, dw (C, 3, 3, F). Outputs come
// in 2 × 2 tiles, tiles_h × tiles_w = ⌈OH/2⌉ × ⌈OW/2⌉ of them per image, the tile (ty, tx) reading
// the 4 × 4 input rows 2·ty − pad … 2·ty − pad + 3 (columns likewise; zeros outside x). The
// tiles' positions p = (ty, tx, n), images innermost, P = tiles_h · tiles_w · N of them.
//
// Along one axis, with d 4 inputs, g 3 taps, y 2 outputs (y_a = Σ_i g_i · d_{a+i}):
//   y = Aᵀ [(G g) ⊙ (Bᵀ d)]        Bᵀ = | 1  0 −1  0 |   G = | 1    0    0  |   Aᵀ = | 1 1  1  0 |
//                                       | 0  1  1  0 |       | ½    ½    ½  |        | 0 1 −1 −1 |
//                                       | 0 −1  1  0 |       | ½   −½    ½  |
//                                       | 0  1  0 −1 |       | 0    0    1  |
// and in two, a tile's 16 points ξ: Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A. Summed over channels, each
// point is a product over the channels (conv.cu's gemm_tile), the transforms are elementwise:
//   forward          u[ξ][c][f] = (G w[c,·,·,f] Gᵀ)_ξ          winograd_filters, flip 0
//                    v[ξ][c][p] = (Bᵀ d_p B)_ξ, d_p x's tile  winograd_inputs
//                    m[ξ][f][p] = Σ_c u[ξ][c][f] · v[ξ][c][p]  winograd_product
//                    y's tile p = Aᵀ m[·][f][p] A              winograd_outputs
//   input gradient   the forward pass of dy with the filters turned by 180° and channels and
//                    filters swapped (w'[f, i, j, c] = w[c, 2 − i, 2 − j, f], flip 1), padding
//                    2 − pad: dx[c, h, w] = Σ_{f,i,j} w[c, i, j, f] ·
//                                             dy[f, h + pad − i, w + pad − j]
//   filter gradient  dw[c,·,·,f] = Gᵀ [Σ_p (Bᵀ d_p B) ⊙ (A e_p Aᵀ)] G, e_p dy's 2 × 2 tile (zeros
//                    past dy's edge): from y_a = Σ_i g_i d_{a+i}, dg_i = Σ_a e_a d_{a+i} =
//                    Σ_ξ G_ξi (Bᵀd)_ξ (A e)_ξ. The sum over p is winograd_filter_product's
//                    depth, split into slices as conv.cu's filter gradient (deterministic).
// F(2×2, 3×3) does 16 multiplications per 4 outputs and channel where direct convolution does
// 36; its transforms' coefficients are 0, ±1 and ±½, so its rounding error is that of a few more
// additions.
//
// Restrictions (asserted by the launchers): filters 3 × 3, stride 1, pad ≤ 2; every array,
// the transformed ones 16 · (C or F) · P elements, < 2³¹ elements; the products' restrictions
// are gemm_tile's (conv.cu), their grids (tiles of columns, tiles of rows, 16 · splits) with
// blockIdx.z = slice · 16 + ξ.
#include "conv.cu"

// The 1-D transforms, `in` → `out`.
struct FilterTransform {   // G: 3 taps → 4 points
  template <typename T>
  __device__ __forceinline__ static void apply(const T (&g)[3], T (&u)[4]) {
    u[0] = g[0];
    u[1] = (g[0] + g[1] + g[2]) * T(0.5);
    u[2] = (g[0] - g[1] + g[2]) * T(0.5);
    u[3] = g[2];
  }
};
struct InputTransform {   // Bᵀ: 4 inputs → 4 points
  template <typename T>
  __device__ __forceinline__ static void apply(const T (&d)[4], T (&v)[4]) {
    v[0] = d[0] - d[2];
    v[1] = d[1] + d[2];
    v[2] = d[2] - d[1];
    v[3] = d[1] - d[3];
  }
};
struct OutputTransform {   // Aᵀ: 4 points → 2 outputs
  template <typename T>
  __device__ __forceinline__ static void apply(const T (&m)[4], T (&y)[2]) {
    y[0] = m[0] + m[1] + m[2];
    y[1] = m[1] - m[2] - m[3];
  }
};
struct GradientTransform {   // A: 2 output gradients → 4 points
  template <typename T>
  __device__ __forceinline__ static void apply(const T (&e)[2], T (&g)[4]) {
    g[0] = e[0];
    g[1] = e[0] + e[1];
    g[2] = e[0] - e[1];
    g[3] = -e[1];
  }
};
struct FilterGradientTransform {   // Gᵀ: 4 points → 3 tap gradients
  template <typename T>
  __device__ __forceinline__ static void apply(const T (&m)[4], T (&g)[3]) {
    g[0] = m[0] + (m[1] + m[2]) * T(0.5);
    g[1] = (m[1] - m[2]) * T(0.5);
    g[2] = (m[1] + m[2]) * T(0.5) + m[3];
  }
};

// out = M · in · Mᵀ for the 1-D transform M: every column of `in`, then every row of the result.
template <typename Transform, int kIn, int kOut, typename T>
__device__ __forceinline__ void transform_2d(const T (&in)[kIn][kIn], T (&out)[kOut][kOut]) {
  T columns_done[kOut][kIn];
  for (int column = 0; column < kIn; ++column) {
    T line[kIn], mapped[kOut];
    for (int r = 0; r < kIn; ++r) line[r] = in[r][column];
    Transform::apply(line, mapped);
    for (int r = 0; r < kOut; ++r) columns_done[r][column] = mapped[r];
  }
  for (int row = 0; row < kOut; ++row) Transform::apply(columns_done[row], out[row]);
}

constexpr int kTap = 3;   // the filter size Winograd's plan serves
static_assert(kWinogradTile == 4, "F(2×2, 3×3): 4 × 4 input tiles");

// A tile's 16 points to or from 16 arrays of `count` elements each, one after another (point ξ's
// array first), at element i of each.
template <typename T>
__device__ __forceinline__ void store_points(const T (&points)[kWinogradTile][kWinogradTile],
                                             T* out, u32 count, u32 i) {
  for (int point = 0; point < kWinogradPoints; ++point)
    out[point * count + i] = points[point / kWinogradTile][point % kWinogradTile];
}
template <typename T>
__device__ __forceinline__ void load_points(const T* in, u32 count, u32 i,
                                            T (&points)[kWinogradTile][kWinogradTile]) {
  for (int point = 0; point < kWinogradPoints; ++point)
    points[point / kWinogradTile][point % kWinogradTile] = in[point * count + i];
}

// The kSide × kSide window of channel c of a (C, H, W, N) array from row `top` and column `left`
// of image n, zeros where it lies outside the array.
template <int kSide, typename T>
__device__ __forceinline__ void load_window(const T* array, const Coordinates& at, int top,
                                            int left, int height, int width, int images,
                                            T (&window)[kSide][kSide]) {
  for (int a = 0; a < kSide; ++a)
    for (int b = 0; b < kSide; ++b) {
      const int h = top + a, w = left + b;
      const bool inside = static_cast<u32>(h) < static_cast<u32>(height) &&
                          static_cast<u32>(w) < static_cast<u32>(width);
      window[a][b] = inside ? array[((at.c * height + h) * width + w) * images + at.n] : T(0);
    }
}

// u[ξ][k][m] (16 × C·F): flip 0 (forward) k = c, m = f of w[c, ·, ·, f]; flip 1 (input gradient)
// k = f, m = c of the turned filter w[c, 2 − i, 2 − j, f]. A thread per (c, f), f fastest.
template <typename T>
__global__ void __launch_bounds__(kThreads)
winograd_filters(const T* __restrict__ w, T* __restrict__ u, int channels, int filters,
                 int flip) {
  const u32 count = channels * filters;
  GRID_STRIDE_LOOP(i, count) {
    const int c = i / filters, f = i % filters;
    T g[kTap][kTap], t[kWinogradTile][kWinogradTile];
    for (int a = 0; a < kTap; ++a)
      for (int b = 0; b < kTap; ++b) {
        const int row = flip ? kTap - 1 - a : a, column = flip ? kTap - 1 - b : b;
        g[a][b] = w[((c * kTap + row) * kTap + column) * filters + f];
      }
    transform_2d<FilterTransform>(g, t);
    store_points(t, u, count, flip ? f * channels + c : i);
  }
}
CONVNET_INSTANTIATE(winograd_filters)

// v[ξ][c][p] (16 × C·P) = Bᵀ d B of the tile d = x[c, 2·ty − pad + a, 2·tx − pad + b, n].
// A thread per (c, ty, tx, n): consecutive threads read and write consecutive images.
template <typename T>
__global__ void __launch_bounds__(kThreads)
winograd_inputs(const T* __restrict__ x, T* __restrict__ v, int channels, int height, int width,
                int images, int pad, int tiles_h, int tiles_w) {
  const u32 count = static_cast<u32>(channels) * tiles_h * tiles_w * images;
  GRID_STRIDE_LOOP_AT(i, at, count, tiles_h, tiles_w, images) {
    T d[kWinogradTile][kWinogradTile], t[kWinogradTile][kWinogradTile];
    load_window(x, at, 2 * at.h - pad, 2 * at.w - pad, height, width, images, d);
    transform_2d<InputTransform>(d, t);
    store_points(t, v, count, i);
  }
}
CONVNET_INSTANTIATE(winograd_inputs)

// y[f, 2·ty + a, 2·tx + b, n] = (Aᵀ m[·][f][p] A)[a][b], for the outputs inside y (every output
// is in exactly one tile). A thread per (f, ty, tx, n).
template <typename T>
__global__ void __launch_bounds__(kThreads)
winograd_outputs(const T* __restrict__ m, T* __restrict__ y, int filters, int out_height,
                 int out_width, int images, int tiles_h, int tiles_w) {
  const u32 count = static_cast<u32>(filters) * tiles_h * tiles_w * images;
  GRID_STRIDE_LOOP_AT(i, at, count, tiles_h, tiles_w, images) {
    T points[kWinogradTile][kWinogradTile], out[2][2];
    load_points(m, count, i, points);
    transform_2d<OutputTransform>(points, out);
    for (int a = 0; a < 2; ++a)
      for (int b = 0; b < 2; ++b) {
        const int h = 2 * at.h + a, w = 2 * at.w + b;
        if (h < out_height && w < out_width)
          y[((at.c * out_height + h) * out_width + w) * images + at.n] = out[a][b];
      }
  }
}
CONVNET_INSTANTIATE(winograd_outputs)

// g[ξ][f][p] (16 × F·P) = A e Aᵀ of dy's tile e = dy[f, 2·ty + a, 2·tx + b, n] (a, b < 2; zeros
// past dy's edge). A thread per (f, ty, tx, n).
template <typename T>
__global__ void __launch_bounds__(kThreads)
winograd_gradients(const T* __restrict__ dy, T* __restrict__ g, int filters, int out_height,
                   int out_width, int images, int tiles_h, int tiles_w) {
  const u32 count = static_cast<u32>(filters) * tiles_h * tiles_w * images;
  GRID_STRIDE_LOOP_AT(i, at, count, tiles_h, tiles_w, images) {
    T e[2][2], t[kWinogradTile][kWinogradTile];
    load_window(dy, at, 2 * at.h, 2 * at.w, out_height, out_width, images, e);
    transform_2d<GradientTransform>(e, t);
    store_points(t, g, count, i);
  }
}
CONVNET_INSTANTIATE(winograd_gradients)

// dw[c, i, j, f] = (Gᵀ m[·][c][f] G)[i][j]. A thread per (c, f), f fastest.
template <typename T>
__global__ void __launch_bounds__(kThreads)
winograd_filter_gradients(const T* __restrict__ m, T* __restrict__ dw, int channels,
                          int filters) {
  const u32 count = channels * filters;
  GRID_STRIDE_LOOP(i, count) {
    const int c = i / filters, f = i % filters;
    T points[kWinogradTile][kWinogradTile], taps[kTap][kTap];
    load_points(m, count, i, points);
    transform_2d<FilterGradientTransform>(points, taps);
    for (int a = 0; a < kTap; ++a)
      for (int b = 0; b < kTap; ++b) dw[((c * kTap + a) * kTap + b) * filters + f] = taps[a][b];
  }
}
CONVNET_INSTANTIATE(winograd_filter_gradients)

// The point and the slice of this block's layer, blockIdx.z = slice · 16 + point.
__device__ __forceinline__ int winograd_point() { return blockIdx.z % kWinogradPoints; }
__device__ __forceinline__ int winograd_slice() { return blockIdx.z / kWinogradPoints; }

// c[ξ][m][n] = Σ_k a[ξ][k][m] · b[ξ][k][n] (forward: a = u, b = v, over the channels; input
// gradient: over the filters), into layer blockIdx.z; tile_rows: the tile's side along m.
template <typename T>
__global__ void __launch_bounds__(kConvThreads, kConvBlocksPerSM)
winograd_product(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ c, int rows,
                 int columns, int depth, int slice, int tile_rows) {
  a += static_cast<size_t>(winograd_point()) * depth * rows;
  b += static_cast<size_t>(winograd_point()) * depth * columns;
  const bool vector = vectorizable(a, rows) && vectorizable(b, columns);
  with_plan<T>(tile_rows, vector, [&](auto tile, auto vector_loads) {
    constexpr int kRows = decltype(tile)::value;
    constexpr bool kVector = decltype(vector_loads)::value;
    const KRows<T, kVector> a_rows(a, rows, blockIdx.y * kRows + group_extent<false, kRows>());
    const KRows<T, kVector> b_rows(
        b, columns, blockIdx.x * kConvTile + group_extent<false, kConvTile>());
    gemm_tile<T, kRows, kConvTile, false, false>(a_rows, b_rows, c, rows, columns, depth, slice,
                                                  winograd_slice());
  });
}
CONVNET_INSTANTIATE(winograd_product)

// c[ξ][m][n] = Σ_p a[ξ][m][p] · b[ξ][n][p] (the filter gradient: a = v, m = c; b = g, n = f),
// into layer blockIdx.z; tile_columns: the tile's side along n.
template <typename T>
__global__ void __launch_bounds__(kConvThreads, kConvBlocksPerSM)
winograd_filter_product(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ c,
                        int rows, int columns, int depth, int slice, int tile_columns) {
  a += static_cast<size_t>(winograd_point()) * rows * depth;
  b += static_cast<size_t>(winograd_point()) * columns * depth;
  const bool vector = vectorizable(a, depth) && vectorizable(b, depth);
  with_plan<T>(tile_columns, vector, [&](auto tile, auto vector_loads) {
    constexpr int kColumns = decltype(tile)::value;
    constexpr bool kVector = decltype(vector_loads)::value;
    const RowsAlongK<T, kVector> a_rows(a, rows, depth,
                                        blockIdx.y * kConvTile + group_extent<true, kConvTile>());
    const RowsAlongK<T, kVector> b_rows(b, columns, depth,
                                        blockIdx.x * kColumns + group_extent<true, kColumns>());
    gemm_tile<T, kConvTile, kColumns, true, true>(a_rows, b_rows, c, rows, columns, depth, slice,
                                                   winograd_slice());
  });
}
CONVNET_INSTANTIATE(winograd_filter_product)
