// Convolutions of 3 × 3 filters at stride 1 by Winograd's minimal filtering F(m×m, 3×3), m = 2 or
// 4 (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016), a plan of conv3,
// conv4 and conv5 beside conv.cu's implicit GEMMs (Python launchers: convnet/backend/cuda/conv.py,
// which picks m and passes it to every kernel here as `outputs`).
//
// Layout as conv.cu: x, dx (C, H, W, N), y, dy (F, OH, OW, N), w, dw (C, 3, 3, F). Outputs come
// in m × m tiles, tiles_h × tiles_w = ⌈OH/m⌉ × ⌈OW/m⌉ of them per image, the tile (ty, tx) reading
// the α × α input rows m·ty − pad … m·ty − pad + α − 1 (columns likewise; zeros outside x),
// α = m + 2. The tiles' positions p = (ty, tx, n), images innermost, P = tiles_h · tiles_w · N of
// them.
//
// Along one axis, with d α inputs, g 3 taps, y m outputs (y_a = Σ_i g_i · d_{a+i}):
//   y = Aᵀ [(G g) ⊙ (Bᵀ d)], the matrices of each m below (the transforms' structs), and in two, a
// tile's α² points ξ: Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A. Summed over channels, each point is a
// product over the channels (conv.cu's gemm_tile), the transforms are elementwise:
//   forward          u[ξ][c][f] = (G w[c,·,·,f] Gᵀ)_ξ          winograd_filters, flip 0
//                    v[ξ][c][p] = (Bᵀ d_p B)_ξ, d_p x's tile  winograd_inputs
//                    m[ξ][f][p] = Σ_c u[ξ][c][f] · v[ξ][c][p]  winograd_product
//                    y's tile p = Aᵀ m[·][f][p] A              winograd_outputs
//   input gradient   the forward pass of dy with the filters turned by 180° and channels and
//                    filters swapped (w'[f, i, j, c] = w[c, 2 − i, 2 − j, f], flip 1), padding
//                    2 − pad: dx[c, h, w] = Σ_{f,i,j} w[c, i, j, f] ·
//                                             dy[f, h + pad − i, w + pad − j]
//   filter gradient  dw[c,·,·,f] = Gᵀ [Σ_p (Bᵀ d_p B) ⊙ (A e_p Aᵀ)] G, e_p dy's m × m tile (zeros
//                    past dy's edge): from y_a = Σ_i g_i d_{a+i}, dg_i = Σ_a e_a d_{a+i} =
//                    Σ_ξ G_ξi (Bᵀd)_ξ (A e)_ξ. The sum over p is winograd_filter_product's
//                    depth, split into slices as conv.cu's filter gradient (deterministic).
// F(2×2, 3×3) does 16 multiplications per 4 outputs and channel where direct convolution does
// 36, its transforms' coefficients 0, ±1 and ±½, so its rounding error is that of a few more
// additions. F(4×4, 3×3) does 36 per 16 outputs (144 direct) on smaller transformed arrays
// where the output's side is not much past a multiple of 4 (AlexNet's 13: 16 tiles of 4 × 4, 49
// of 2 × 2), at the price of coefficients up to 8 and 1/24, and so of a larger rounding error.
//
// Restrictions (asserted by the launchers): filters 3 × 3, stride 1, pad ≤ 2; `outputs`
// kWinogradSmallTile or kWinogradLargeTile; every array, the transformed ones α² · (C or F) · P
// elements, < 2³¹ elements; the products' restrictions are gemm_tile's (conv.cu), their grids
// (tiles of columns, tiles of rows, α² · splits) with blockIdx.z = slice · α² + ξ.
#include "conv.cu"

constexpr int kTap = kWinogradTaps;   // the filter size Winograd's plan serves (tiles.cuh)

// The 1-D transforms of F(m, 3), `in` → `out`, α = m + 2 points (0, ±1, ±2 … and ∞):
//   G (filter)  3 taps → α points          Bᵀ (input)      α inputs → α points
//   Aᵀ (output) α points → m outputs        A (gradient)    m output gradients → α points
//   Gᵀ (filter gradient) α points → 3 tap gradients
template <int kOutputs> struct FilterTransform;
template <int kOutputs> struct InputTransform;
template <int kOutputs> struct OutputTransform;
template <int kOutputs> struct GradientTransform;
template <int kOutputs> struct FilterGradientTransform;

// F(2, 3):  Bᵀ = | 1  0 −1  0 |   G = | 1    0    0  |   Aᵀ = | 1 1  1  0 |
//                | 0  1  1  0 |       | ½    ½    ½  |        | 0 1 −1 −1 |
//                | 0 −1  1  0 |       | ½   −½    ½  |
//                | 0  1  0 −1 |       | 0    0    1  |
template <>
struct FilterTransform<2> {
  template <typename T>
  __device__ __forceinline__ static void apply(const T (&g)[3], T (&u)[4]) {
    u[0] = g[0];
    u[1] = (g[0] + g[1] + g[2]) * T(0.5);
    u[2] = (g[0] - g[1] + g[2]) * T(0.5);
    u[3] = g[2];
  }
};
template <>
struct InputTransform<2> {
  template <typename T>
  __device__ __forceinline__ static void apply(const T (&d)[4], T (&v)[4]) {
    v[0] = d[0] - d[2];
    v[1] = d[1] + d[2];
    v[2] = d[2] - d[1];
    v[3] = d[1] - d[3];
  }
};
template <>
struct OutputTransform<2> {
  template <typename T>
  __device__ __forceinline__ static void apply(const T (&m)[4], T (&y)[2]) {
    y[0] = m[0] + m[1] + m[2];
    y[1] = m[1] - m[2] - m[3];
  }
};
template <>
struct GradientTransform<2> {
  template <typename T>
  __device__ __forceinline__ static void apply(const T (&e)[2], T (&g)[4]) {
    g[0] = e[0];
    g[1] = e[0] + e[1];
    g[2] = e[0] - e[1];
    g[3] = -e[1];
  }
};
template <>
struct FilterGradientTransform<2> {
  template <typename T>
  __device__ __forceinline__ static void apply(const T (&m)[4], T (&g)[3]) {
    g[0] = m[0] + (m[1] + m[2]) * T(0.5);
    g[1] = (m[1] - m[2]) * T(0.5);
    g[2] = (m[1] + m[2]) * T(0.5) + m[3];
  }
};

// F(4, 3), Lavin and Gray's:
//   Bᵀ = | 4  0 −5  0  1  0 |   G = |  1/4    0     0  |   Aᵀ = | 1 1  1 1  1 0 |
//        | 0 −4 −4  1  1  0 |       | −1/6  −1/6  −1/6 |        | 0 1 −1 2 −2 0 |
//        | 0  4 −4 −1  1  0 |       | −1/6   1/6  −1/6 |        | 0 1  1 4  4 0 |
//        | 0 −2 −1  2  1  0 |       | 1/24  1/12   1/6 |        | 0 1 −1 8 −8 1 |
//        | 0  2 −1 −2  1  0 |       | 1/24 −1/12   1/6 |
//        | 0  4  0 −5  0  1 |       |   0     0     1  |
// each written with its shared sums once.
template <>
struct FilterTransform<4> {
  template <typename T>
  __device__ __forceinline__ static void apply(const T (&g)[3], T (&u)[6]) {
    const T outer = g[0] + g[2], quarter_outer = g[0] * T(0.25) + g[2];
    u[0] = g[0] * T(0.25);
    u[1] = -(outer + g[1]) / T(6);
    u[2] = -(outer - g[1]) / T(6);
    u[3] = (quarter_outer + g[1] * T(0.5)) / T(6);
    u[4] = (quarter_outer - g[1] * T(0.5)) / T(6);
    u[5] = g[2];
  }
};
template <>
struct InputTransform<4> {
  template <typename T>
  __device__ __forceinline__ static void apply(const T (&d)[6], T (&v)[6]) {
    const T odd = d[1] + d[2], even = d[3] + d[4];           // shared by v1, v2
    const T odd_minus = d[1] - d[2], even_minus = d[4] - d[3];
    const T outer = d[4] - d[2], inner = d[3] - d[1];        // shared by v3, v4
    v[0] = T(4) * d[0] - T(5) * d[2] + d[4];
    v[1] = even - T(4) * odd;
    v[2] = even_minus + T(4) * odd_minus;
    v[3] = outer + T(2) * inner;
    v[4] = outer - T(2) * inner;
    v[5] = T(4) * d[1] - T(5) * d[3] + d[5];
  }
};
template <>
struct OutputTransform<4> {
  template <typename T>
  __device__ __forceinline__ static void apply(const T (&m)[6], T (&y)[4]) {
    const T sum12 = m[1] + m[2], difference12 = m[1] - m[2];
    const T sum34 = m[3] + m[4], difference34 = m[3] - m[4];
    y[0] = m[0] + sum12 + sum34;
    y[1] = difference12 + T(2) * difference34;
    y[2] = sum12 + T(4) * sum34;
    y[3] = difference12 + T(8) * difference34 + m[5];
  }
};
template <>
struct GradientTransform<4> {
  template <typename T>
  __device__ __forceinline__ static void apply(const T (&e)[4], T (&g)[6]) {
    const T even = e[0] + e[2], odd = e[1] + e[3];
    const T even4 = e[0] + T(4) * e[2], odd4 = T(2) * e[1] + T(8) * e[3];
    g[0] = e[0];
    g[1] = even + odd;
    g[2] = even - odd;
    g[3] = even4 + odd4;
    g[4] = even4 - odd4;
    g[5] = e[3];
  }
};
template <>
struct FilterGradientTransform<4> {
  template <typename T>
  __device__ __forceinline__ static void apply(const T (&m)[6], T (&g)[3]) {
    const T sum12 = m[1] + m[2], sum34 = m[3] + m[4];
    g[0] = m[0] * T(0.25) + (sum34 * T(0.25) - sum12) / T(6);
    g[1] = ((m[3] - m[4]) * T(0.5) - (m[1] - m[2])) / T(6);
    g[2] = (sum34 - sum12) / T(6) + m[5];
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

// body(Constant<m>()) for the output tile side m the launcher planned (kWinogradSmallTile or
// kWinogradLargeTile): each m's transforms unrolled on their own, in one kernel, whose registers
// are then the larger m's (float: 64 to 83 a thread, where m = 2 alone took 32 to 40; none spill).
template <typename Body>
__device__ __forceinline__ void with_output_tile(int outputs, Body body) {
  if (outputs == kWinogradLargeTile) return body(Constant<kWinogradLargeTile>());
  body(Constant<kWinogradSmallTile>());
}

// A tile's α² points to or from α² arrays of `count` elements each, one after another (point ξ's
// array first), at element i of each.
template <int kSide, typename T>
__device__ __forceinline__ void store_points(const T (&points)[kSide][kSide], T* out, u32 count,
                                             u32 i) {
  for (int point = 0; point < kSide * kSide; ++point)
    out[point * count + i] = points[point / kSide][point % kSide];
}
template <int kSide, typename T>
__device__ __forceinline__ void load_points(const T* in, u32 count, u32 i,
                                            T (&points)[kSide][kSide]) {
  for (int point = 0; point < kSide * kSide; ++point)
    points[point / kSide][point % kSide] = in[point * count + i];
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

// u[ξ][k][m] (α² × C·F): flip 0 (forward) k = c, m = f of w[c, ·, ·, f]; flip 1 (input gradient)
// k = f, m = c of the turned filter w[c, 2 − i, 2 − j, f]. A thread per (c, f), f fastest.
template <typename T>
__global__ void __launch_bounds__(kThreads)
winograd_filters(const T* __restrict__ w, T* __restrict__ u, int channels, int filters,
                 int flip, int outputs) {
  const u32 count = channels * filters;
  with_output_tile(outputs, [&](auto side) {
    constexpr int kOut = decltype(side)::value, kIn = kOut + kTap - 1;
    GRID_STRIDE_LOOP(i, count) {
      const int c = i / filters, f = i % filters;
      T g[kTap][kTap], t[kIn][kIn];
      for (int a = 0; a < kTap; ++a)
        for (int b = 0; b < kTap; ++b) {
          const int row = flip ? kTap - 1 - a : a, column = flip ? kTap - 1 - b : b;
          g[a][b] = w[((c * kTap + row) * kTap + column) * filters + f];
        }
      transform_2d<FilterTransform<kOut>>(g, t);
      store_points(t, u, count, flip ? f * channels + c : i);
    }
  });
}
CONVNET_INSTANTIATE(winograd_filters)

// v[ξ][c][p] (α² × C·P) = Bᵀ d B of the tile d = x[c, m·ty − pad + a, m·tx − pad + b, n].
// A thread per (c, ty, tx, n): consecutive threads read and write consecutive images.
template <typename T>
__global__ void __launch_bounds__(kThreads)
winograd_inputs(const T* __restrict__ x, T* __restrict__ v, int channels, int height, int width,
                int images, int pad, int tiles_h, int tiles_w, int outputs) {
  const u32 count = static_cast<u32>(channels) * tiles_h * tiles_w * images;
  with_output_tile(outputs, [&](auto side) {
    constexpr int kOut = decltype(side)::value, kIn = kOut + kTap - 1;
    GRID_STRIDE_LOOP_AT(i, at, count, tiles_h, tiles_w, images) {
      T d[kIn][kIn], t[kIn][kIn];
      load_window(x, at, kOut * at.h - pad, kOut * at.w - pad, height, width, images, d);
      transform_2d<InputTransform<kOut>>(d, t);
      store_points(t, v, count, i);
    }
  });
}
CONVNET_INSTANTIATE(winograd_inputs)

// y[f, m·ty + a, m·tx + b, n] = (Aᵀ m[·][f][p] A)[a][b], for the outputs inside y (every output
// is in exactly one tile). A thread per (f, ty, tx, n).
template <typename T>
__global__ void __launch_bounds__(kThreads)
winograd_outputs(const T* __restrict__ m, T* __restrict__ y, int filters, int out_height,
                 int out_width, int images, int tiles_h, int tiles_w, int outputs) {
  const u32 count = static_cast<u32>(filters) * tiles_h * tiles_w * images;
  with_output_tile(outputs, [&](auto side) {
    constexpr int kOut = decltype(side)::value, kIn = kOut + kTap - 1;
    GRID_STRIDE_LOOP_AT(i, at, count, tiles_h, tiles_w, images) {
      T points[kIn][kIn], out[kOut][kOut];
      load_points(m, count, i, points);
      transform_2d<OutputTransform<kOut>>(points, out);
      for (int a = 0; a < kOut; ++a)
        for (int b = 0; b < kOut; ++b) {
          const int h = kOut * at.h + a, w = kOut * at.w + b;
          if (h < out_height && w < out_width)
            y[((at.c * out_height + h) * out_width + w) * images + at.n] = out[a][b];
        }
    }
  });
}
CONVNET_INSTANTIATE(winograd_outputs)

// g[ξ][f][p] (α² × F·P) = A e Aᵀ of dy's tile e = dy[f, m·ty + a, m·tx + b, n] (a, b < m; zeros
// past dy's edge). A thread per (f, ty, tx, n).
template <typename T>
__global__ void __launch_bounds__(kThreads)
winograd_gradients(const T* __restrict__ dy, T* __restrict__ g, int filters, int out_height,
                   int out_width, int images, int tiles_h, int tiles_w, int outputs) {
  const u32 count = static_cast<u32>(filters) * tiles_h * tiles_w * images;
  with_output_tile(outputs, [&](auto side) {
    constexpr int kOut = decltype(side)::value, kIn = kOut + kTap - 1;
    GRID_STRIDE_LOOP_AT(i, at, count, tiles_h, tiles_w, images) {
      T e[kOut][kOut], t[kIn][kIn];
      load_window(dy, at, kOut * at.h, kOut * at.w, out_height, out_width, images, e);
      transform_2d<GradientTransform<kOut>>(e, t);
      store_points(t, g, count, i);
    }
  });
}
CONVNET_INSTANTIATE(winograd_gradients)

// dw[c, i, j, f] = (Gᵀ m[·][c][f] G)[i][j]. A thread per (c, f), f fastest.
template <typename T>
__global__ void __launch_bounds__(kThreads)
winograd_filter_gradients(const T* __restrict__ m, T* __restrict__ dw, int channels,
                          int filters, int outputs) {
  const u32 count = channels * filters;
  with_output_tile(outputs, [&](auto side) {
    constexpr int kOut = decltype(side)::value, kIn = kOut + kTap - 1;
    GRID_STRIDE_LOOP(i, count) {
      const int c = i / filters, f = i % filters;
      T points[kIn][kIn], taps[kTap][kTap];
      load_points(m, count, i, points);
      transform_2d<FilterGradientTransform<kOut>>(points, taps);
      for (int a = 0; a < kTap; ++a)
        for (int b = 0; b < kTap; ++b) dw[((c * kTap + a) * kTap + b) * filters + f] = taps[a][b];
    }
  });
}
CONVNET_INSTANTIATE(winograd_filter_gradients)

// c[ξ][m][n] = Σ_k a[ξ][k][m] · b[ξ][k][n] (forward: a = u, b = v, over the channels; input
// gradient: over the filters), into layer blockIdx.z = slice · points + ξ; tile_rows: the tile's
// side along m.
template <typename T>
__global__ void __launch_bounds__(kConvThreads, kConvBlocksPerSM)
winograd_product(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ c, int rows,
                 int columns, int depth, int slice, int tile_rows, int points) {
  const int point = blockIdx.z % points;
  a += static_cast<size_t>(point) * depth * rows;
  b += static_cast<size_t>(point) * depth * columns;
  const bool vector = vectorizable(a, rows) && vectorizable(b, columns);
  with_plan<T>(tile_rows, vector, [&](auto tile, auto vector_loads) {
    constexpr int kRows = decltype(tile)::value;
    constexpr bool kVector = decltype(vector_loads)::value;
    const KRows<T, kVector> a_rows(a, rows, blockIdx.y * kRows + group_extent<false, kRows>());
    const KRows<T, kVector> b_rows(
        b, columns, blockIdx.x * kConvTile + group_extent<false, kConvTile>());
    gemm_tile<T, kRows, kConvTile, false, false>(a_rows, b_rows, c, rows, columns, depth, slice,
                                                  blockIdx.z / points);
  });
}
CONVNET_INSTANTIATE(winograd_product)

// c[ξ][m][n] = Σ_p a[ξ][m][p] · b[ξ][n][p] (the filter gradient: a = v, m = c; b = g, n = f),
// into layer blockIdx.z = slice · points + ξ; tile_columns: the tile's side along n.
template <typename T>
__global__ void __launch_bounds__(kConvThreads, kConvBlocksPerSM)
winograd_filter_product(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ c,
                        int rows, int columns, int depth, int slice, int tile_columns,
                        int points) {
  const int point = blockIdx.z % points;
  a += static_cast<size_t>(point) * rows * depth;
  b += static_cast<size_t>(point) * columns * depth;
  const bool vector = vectorizable(a, depth) && vectorizable(b, depth);
  with_plan<T>(tile_columns, vector, [&](auto tile, auto vector_loads) {
    constexpr int kColumns = decltype(tile)::value;
    constexpr bool kVector = decltype(vector_loads)::value;
    const RowsAlongK<T, kVector> a_rows(a, rows, depth,
                                        blockIdx.y * kConvTile + group_extent<true, kConvTile>());
    const RowsAlongK<T, kVector> b_rows(b, columns, depth,
                                        blockIdx.x * kColumns + group_extent<true, kColumns>());
    gemm_tile<T, kConvTile, kColumns, true, true>(a_rows, b_rows, c, rows, columns, depth, slice,
                                                   blockIdx.z / points);
  });
}
CONVNET_INSTANTIATE(winograd_filter_product)
