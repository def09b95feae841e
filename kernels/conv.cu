// Convolution: forward, gradient with respect to the input and to the filters, as implicit GEMMs
// (Python launchers: convnet/backend/cuda/conv.py).
//
// Layout (convnet/backend): x, dx (C, H, W, N) and y, dy (F, OH, OW, N), images innermost;
// filters w, dw (C, S, S, F), S the filter size. Output size: OH = 1 + ⌈(H + 2·pad − S) / stride⌉
// (cuda-convnet's rule, convnet/shapes.py); reads outside the image, through the zero
// padding on the top/left or the overhang on the bottom/right, are zeros made by the loaders,
// never padded copies.
//
// Each pass is a product C[m][n] = Σ_k A[k][m] · B[k][n] whose operands are read in place and
// whose result C is row-major (rows m, columns n):
//   forward           m = f, n = (oy, ox, n), k = (c, i, j)
//                     A = w[c,i,j,f]; B = x[c, oy·stride−pad+i, ox·stride−pad+j, n]; C → y
//   backward input    m = c, n = (h, w, n), k = (i, j, f): a gather, no atomics
//                     A = w[c,i,j,f]; B = dy[f, oy, ox, n] where h = oy·stride−pad+i (and the
//                     same for columns) has an integer solution inside the output, else 0; C → dx
//   backward filters  m = (c, i, j), n = f, k = (oy, ox, n): a reduction over every output
//                     position
//   bias gradient     elementwise.cu's bias_backward over dy's rows
// Where a product has too few tiles to fill the GPU (every filter gradient; some smaller layers'
// other passes) the launcher splits its k into slices of `slice` (blockIdx.z, `splits` of them);
// each slice writes its own partial product (splits, rows, columns) and conv_sum_splits adds them
// in slice order, so the result has the same bits every run (no atomics).
//
// A block computes a tile of C, kConvTile × kConvTile (tiles.cuh), or narrower along the filters
// or channels (the rows of forward and of the input gradient, the columns of the filter
// gradient): kConvNarrowTile or kConvNarrowestTile where those pad the extent less (48 or fewer
// filters or channels, 192); the launcher chooses and passes that side's size. It steps
// kConvTileK along k through two shared buffers: while the block multiplies one, each thread
// holds the next step's operand values in registers and stores them into the other, so one
// barrier per step suffices. The 16 × 16 threads each accumulate a sub-tile of (tile rows / 16)
// × (tile columns / 16): 8 × 8, or 4 × 8 or 3 × 8 where the rows are narrowed, 8 × 4 or 8 × 3
// where the columns are (sub_tile_index): groups of 4 rows, 4·ty + r, one group every 64 rows
// (the narrowest tile: 3 consecutive rows, 3·ty + r), and the same for columns, read from shared
// memory as 4-element vectors (shared_place).
//
// Each thread loads one group of 4 consecutive elements of each operand per step (of a narrow
// operand, only the first threads do), along the operand's contiguous axis: along m or n (the
// weights of the forward pass, every image axis n), or along k (the weights of the input
// gradient, the positions of the filter gradient). A thread's coordinate along m or n stays the
// same for the whole product, so that part of the index arithmetic is done once.
//
// Where every group of both operands is 4 contiguous elements at a 16-byte boundary (float, the
// arrays 16-byte aligned, and their contiguous extents multiples of 4: the images for the image
// axes, the filters for forward's weights, S·S·F for the input gradient's, OH·OW·N for dy along
// k), the input gradient's stride is 1 and the maps fit the table below, the kernel runs a
// product loop whose every group is one 16-byte load; else one of 4 scalar loads a group, whose
// part along k is divided by multiplication (FastDivmod) at every step. Each loop holds one path
// only (with_plan), so the fast one carries no branch and no register of the other. In the
// vector loop the window operand (the one that reads x, or gathers dy) finds the part of its
// place that depends on k in a table in shared memory that the block fills once per k
// (WindowEntry), the other operand's place is a multiply-add, an element outside the array
// (padding, overhang, past the slice or the tile) is a load from the array's start replaced by
// zeros, and the steps come in pairs so that both shared buffers' places are constants. Results
// are stored in 16-byte vectors where the columns are a multiple of 4 and the tile's columns
// come in groups of 4. Both paths run on the emulator, the vector one at batches of 4 and 8.
//
// Restrictions (asserted by the launchers): every array < 2³¹ elements; H + 2·pad + stride and
// W + 2·pad + stride < 2³¹ (a window's place, oy·stride − pad, is an int); blockDim.x =
// kConvThreads, gridDim = (tiles of n, tiles of m, splits) for the tile passed, whose side along
// the filters or channels is kConvTile, kConvNarrowTile or kConvNarrowestTile; the slice is a
// multiple of kConvTileK and splits·slice covers the depth; the output holds `splits` products
// where splits > 1.
#pragma once   // winograd.cu includes it too, for gemm_tile
#include "common.cuh"
#include "tiles.cuh"

constexpr int kConvThreadsAlong = 16;   // threads along m, and along n
constexpr int kConvGroupStride = 4 * kConvThreadsAlong;   // between a thread's groups of 4
// Shared tile rows are this many elements longer than the tile: a warp that stores along k
// (8 values of k × 16 of m) then spreads over 32 banks; 4 keeps rows 16-byte aligned.
constexpr int kConvRowPad = 4;
static_assert(kConvThreadsAlong * kConvThreadsAlong == kConvThreads, "16 × 16 threads");
static_assert(kConvTile % kConvGroupStride == 0 && kConvNarrowTile % kConvGroupStride == 0,
              "each thread's sub-tile is whole groups of 4");
static_assert(kConvNarrowestTile % kConvThreadsAlong == 0 && kConvNarrowestTile % 4 == 0,
              "the narrowest tile: whole rows for every thread, whole groups of 4 to load");
static_assert(kConvTileK * kConvTile == 4 * kConvThreads,
              "each thread loads one group of 4 of a full tile's operand per step");

// Four consecutive elements, one 16-byte access for float: the caller has checked that the
// address is 16-byte aligned (shared tiles always are).
template <typename T>
__device__ __forceinline__ void load4(const T* source, T* values) {
  for (int i = 0; i < 4; ++i) values[i] = source[i];
}
__device__ __forceinline__ void load4(const float* source, float* values) {
  const float4 v = *reinterpret_cast<const float4*>(source);
  values[0] = v.x, values[1] = v.y, values[2] = v.z, values[3] = v.w;
}
template <typename T>
__device__ __forceinline__ void store4(T* target, const T* values) {
  for (int i = 0; i < 4; ++i) target[i] = values[i];
}
__device__ __forceinline__ void store4(float* target, const float* values) {
  *reinterpret_cast<float4*>(target) = make_float4(values[0], values[1], values[2], values[3]);
}
template <typename T>
__device__ __forceinline__ void zero4(T* values) {
  for (int i = 0; i < 4; ++i) values[i] = T(0);
}
// The value at offset `at` of `array`, or 4 values from there on; zeros where at < 0 (the
// padding, the overhang, a pixel that no output reads through the tap).
template <typename T>
__device__ __forceinline__ T load_or_zero(const T* array, int at) {
  return at < 0 ? T(0) : array[at];
}
// The 4 values are read from the array's start where at < 0, and replaced by zeros: a load
// and a select, no branch around the load (the array's first 4 elements exist and are 16-byte
// aligned wherever a kernel loads a group as one vector).
template <typename T>
__device__ __forceinline__ void load4_or_zero(const T* array, int at, T* values) {
  load4(array + (at < 0 ? 0 : at), values);
  for (int i = 0; i < 4; ++i) values[i] = at < 0 ? T(0) : values[i];
}
// Four consecutive elements of row `row` of a row-major array `length` wide, from `column` on:
// zeros from column `end` (≤ length) on, and for a row past `rows`; one 16-byte load where
// kVector (the kernel has checked vectorizable).
template <bool kVector, typename T>
__device__ __forceinline__ void load_row4(const T* array, int length, int row, int rows,
                                          int column, int end, T (&v)[4]) {
  const bool inside = row < rows && column < end;
  const int at = inside ? row * length + column : 0;   // < 2³¹ inside: the launchers check
  if constexpr (kVector) {
    load4_or_zero(array, inside ? at : -1, v);
  } else {
    if (!inside) return zero4(v);
    for (int i = 0; i < 4; ++i) v[i] = column + i < end ? array[at + i] : T(0);
  }
}
// Whether groups of 4 along an axis `extent` long, starting at multiples of 4, are 16-byte
// aligned vectors of `array`: float only (double groups are 32 bytes, loaded as scalars).
template <typename T>
__device__ __forceinline__ bool vectorizable(const T* array, int extent) {
  return sizeof(T) == 4 && extent % 4 == 0 && reinterpret_cast<size_t>(array) % 16 == 0;
}

// The group of 4 this thread loads per step of an operand kExtent wide (along m or n) loaded
// along k or along m/n: its first k (relative to the step) and its coordinate along m or n
// (relative to the tile). A narrow tile's operand needs only the first threads.
template <bool kAlongK, int kExtent>
__device__ __forceinline__ int group_k() {
  return kAlongK ? threadIdx.x % (kConvTileK / 4) * 4 : threadIdx.x / (kExtent / 4);
}
template <bool kAlongK, int kExtent>
__device__ __forceinline__ int group_extent() {
  return kAlongK ? threadIdx.x / (kConvTileK / 4) : threadIdx.x % (kExtent / 4) * 4;
}
template <int kExtent>
__device__ __forceinline__ bool loads_a_group() {
  return threadIdx.x < kConvTileK * kExtent / 4;
}

// The geometry every pass shares.
struct ConvShape {
  int channels, height, width, images, filters, size, stride, pad, out_height, out_width;
};

// The input windows: x[c, oy·stride − pad + i, ox·stride − pad + j, n] for the tap (c, i, j) and
// the output position (oy, ox, n); both are read as A of the filter gradient and B of forward.
struct Windows {
  struct Tap { int channel, i, j; };
  struct Position { int top, left, image; };   // top = oy·stride − pad, left likewise
  ConvShape s;
  FastDivmod per_channel, size, images, out_width;
  __device__ explicit Windows(const ConvShape& shape)
      : s(shape), per_channel(shape.size * shape.size), size(shape.size), images(shape.images),
        out_width(shape.out_width) {}
  __device__ __forceinline__ Tap tap(int k) const {
    const int channel = per_channel.div(k), within = per_channel.mod(k, channel);
    const int i = size.div(within);
    return {channel, i, size.mod(within, i)};
  }
  __device__ __forceinline__ Position position(int p) const {
    const int pixel = images.div(p), image = images.mod(p, pixel);
    const int oy = out_width.div(pixel), ox = out_width.mod(pixel, oy);
    return {oy * s.stride - s.pad, ox * s.stride - s.pad, image};
  }
  // The element's offset in x, or −1 where it lies in the padding or the overhang.
  __device__ __forceinline__ int offset(const Tap& t, const Position& q) const {
    const int h = q.top + t.i, w = q.left + t.j;
    if (static_cast<u32>(h) >= static_cast<u32>(s.height) ||
        static_cast<u32>(w) >= static_cast<u32>(s.width))
      return -1;
    return ((t.channel * s.height + h) * s.width + w) * s.images + q.image;
  }
};

// The vector loops' window operands (forward's B, the input gradient's B, the filter gradient's
// A) find the part of an element's place that depends on k alone in a table in shared memory:
// dividing k into its coordinates, the same for every thread that loads at that k (32 threads or
// more), is done once per block for each k, and a step's load costs one shared read, two bounds
// and an addition. An entry holds the offset that k adds, and k's two coordinates a, b, which
// with the thread's own a0, b0 (WindowReader) give the element's row and column in the array
// read: the element exists where 0 ≤ a0 + a < rows and 0 ≤ b0 + b < columns, else it is a zero
// of the padding, the overhang or the gather. The table is a ring of two chunks of kConvTableK
// entries (gemm_tile fills them: each thread one entry per chunk).
struct WindowEntry {
  int offset;
  short a, b;
};
constexpr int kConvTableK = kConvThreads;
// A coordinate that puts an element past every row: entries past the slice, threads past the
// tile. The vector loops run only where every row, column, filter size, padding and stride is
// small enough for it (windows_fit_table): an entry's coordinates, a tap's i, j (< size) or a
// window's top, left (in [−pad, height + pad + stride)), then fit a short and stay below
// kNowhere less a row; a larger stride would wrap a window's top past the map into it.
constexpr short kNowhere = 0x4000;
__device__ __forceinline__ bool windows_fit_table(const ConvShape& s) {
  return s.height <= 4096 && s.width <= 4096 && s.size <= 1024 && s.pad <= 1024 &&
         s.stride <= 1024;
}
__device__ __forceinline__ WindowEntry* conv_window_table() {
  __shared__ __align__(8) WindowEntry table[2 * kConvTableK];
  return table;
}
struct WindowReader {
  int a0, b0, rows, columns, base;
  // The element's offset, or −1 where there is none.
  __device__ __forceinline__ int offset(const WindowEntry& e) const {
    const int a = a0 + e.a, b = b0 + e.b;
    return static_cast<u32>(a) < static_cast<u32>(rows) &&
                   static_cast<u32>(b) < static_cast<u32>(columns)
               ? base + e.offset
               : -1;
  }
};

// The operands, each as this thread sees it: it knows the thread's coordinate along m or n, and
// fetch(k, k_end, v) loads the thread's group at k. kVector: the kernel found every operand of
// the pass vectorizable (and the windows fit the table), so each group is one 16-byte load (or
// zeros). A window operand is kTabled in the vector loops: entry(k) gives its table's entry for
// k, and fetch_tabled(entry, v) loads by it.

// A row-major (depth, extent) array, one row per k, read along its extent: forward's A, w[k, f]
// (k = (c, i, j)), and both operands of winograd.cu's forward and input-gradient products.
template <typename T, bool kVector>
struct KRows {
  static constexpr bool kTabled = false;
  const T* array;
  int extent, e;   // e: this thread's first element along the extent
  __device__ KRows(const T* array_, int extent_, int e_) : array(array_), extent(extent_), e(e_) {}
  __device__ __forceinline__ void fetch(int k, int k_end, T (&v)[4]) const {
    load_row4<kVector>(array, extent, k, k_end, e, extent, v);
  }
};

// Forward's B: the window values at positions p (loaded along p) for the tap k. Tabled: the 4
// positions are 4 images of one pixel, (top, left) + (i, j) its row and column in x.
template <typename T, bool kVector>
struct ForwardWindows {
  static constexpr bool kTabled = kVector;
  const T* x;
  Windows geometry;
  int p, positions;   // p: this thread's first position
  Windows::Position first;
  WindowReader reader;
  __device__ ForwardWindows(const T* x_, const ConvShape& s, int p_)
      : x(x_), geometry(s), p(p_), positions(s.out_height * s.out_width * s.images),
        first(geometry.position(p_ < positions ? p_ : 0)),
        reader{p_ < positions ? first.top : kNowhere, first.left, s.height, s.width,
               (first.top * s.width + first.left) * s.images + first.image} {}
  __device__ __forceinline__ WindowEntry entry(int k) const {
    const Windows::Tap t = geometry.tap(k);
    const ConvShape& s = geometry.s;
    return {((t.channel * s.height + t.i) * s.width + t.j) * s.images, static_cast<short>(t.i),
            static_cast<short>(t.j)};
  }
  __device__ __forceinline__ void fetch_tabled(const WindowEntry& e, T (&v)[4]) const {
    load4_or_zero(x, reader.offset(e), v);
  }
  __device__ __forceinline__ void fetch(int k, int k_end, T (&v)[4]) const {
    if (k >= k_end || p >= positions) return zero4(v);
    const Windows::Tap tap = geometry.tap(k);
    for (int i = 0; i < 4; ++i) {
      const bool inside = p + i < positions;
      v[i] = load_or_zero(x, inside ? geometry.offset(tap, geometry.position(p + i)) : -1);
    }
  }
};

// A row-major (rows, length) array read along its rows, one row per thread: the input gradient's
// A, w[c, k] with k = (i, j, f), and the filter gradient's B, dy[f, k] with k = (oy, ox, n).
template <typename T, bool kVector>
struct RowsAlongK {
  static constexpr bool kTabled = false;
  const T* array;
  int rows, length, row;   // row: this thread's
  __device__ RowsAlongK(const T* array_, int rows_, int length_, int row_)
      : array(array_), rows(rows_), length(length_), row(row_) {}
  __device__ __forceinline__ void fetch(int k, int k_end, T (&v)[4]) const {
    load_row4<kVector>(array, length, row, rows, k, k_end, v);
  }
};

// The input gradient's B: dy[f, oy, ox, n] for the tap k = (i, j, f) and input pixels q = (h, w,
// n) (loaded along q), where h + pad − i = oy·stride (columns likewise), else 0. Tabled (stride
// 1 only): the 4 pixels are 4 images of one (h, w), (h + pad, w + pad) − (i, j) = (oy, ox).
template <typename T, bool kVector>
struct GatheredGradients {
  static constexpr bool kTabled = kVector;
  const T* dy;
  ConvShape s;
  FastDivmod filters, size, stride, images, width;
  int q, pixels;   // q: this thread's first input pixel
  struct Pixel { int row, column, image; };   // h + pad, w + pad, n
  Pixel first;
  WindowReader reader;
  __device__ GatheredGradients(const T* dy_, const ConvShape& shape, int q_)
      : dy(dy_), s(shape), filters(shape.filters), size(shape.size), stride(shape.stride),
        images(shape.images), width(shape.width), q(q_),
        pixels(shape.height * shape.width * shape.images), first(pixel(q_ < pixels ? q_ : 0)),
        reader{q_ < pixels ? first.row : kNowhere, first.column, shape.out_height,
               shape.out_width,
               (first.row * shape.out_width + first.column) * shape.images + first.image} {}
  __device__ __forceinline__ Pixel pixel(int at) const {
    const int spot = images.div(at), image = images.mod(at, spot);
    const int row = width.div(spot);
    return {row + s.pad, width.mod(spot, row) + s.pad, image};
  }
  // The element's offset in dy, or −1 where no output position reads this pixel through the tap.
  __device__ __forceinline__ int offset(int f, int i, int j, const Pixel& at) const {
    int oy = at.row - i, ox = at.column - j;
    if (oy < 0 || ox < 0) return -1;
    if (s.stride > 1) {
      const int oy_whole = stride.div(oy), ox_whole = stride.div(ox);
      if (stride.mod(oy, oy_whole) || stride.mod(ox, ox_whole)) return -1;
      oy = oy_whole, ox = ox_whole;
    }
    if (oy >= s.out_height || ox >= s.out_width) return -1;
    return ((f * s.out_height + oy) * s.out_width + ox) * s.images + at.image;
  }
  __device__ __forceinline__ WindowEntry entry(int k) const {
    const int tap = filters.div(k), f = filters.mod(k, tap);
    const int i = size.div(tap), j = size.mod(tap, i);
    return {((f * s.out_height - i) * s.out_width - j) * s.images, static_cast<short>(-i),
            static_cast<short>(-j)};
  }
  __device__ __forceinline__ void fetch_tabled(const WindowEntry& e, T (&v)[4]) const {
    load4_or_zero(dy, reader.offset(e), v);
  }
  __device__ __forceinline__ void fetch(int k, int k_end, T (&v)[4]) const {
    if (k >= k_end || q >= pixels) return zero4(v);
    const int tap = filters.div(k), f = filters.mod(k, tap);
    const int i = size.div(tap), j = size.mod(tap, i);
    for (int e = 0; e < 4; ++e)
      v[e] = load_or_zero(dy, q + e < pixels ? offset(f, i, j, pixel(q + e)) : -1);
  }
};

// The filter gradient's A: the window values of the tap m = (c, i, j) at positions k (loaded
// along k). Tabled: 4 positions are 4 images of one pixel, (top, left) + (i, j) its row and
// column in x.
template <typename T, bool kVector>
struct FilterWindows {
  static constexpr bool kTabled = kVector;
  const T* x;
  Windows geometry;
  int m, taps;   // m: this thread's tap
  Windows::Tap tap;
  WindowReader reader;
  __device__ FilterWindows(const T* x_, const ConvShape& s, int m_)
      : x(x_), geometry(s), m(m_), taps(s.channels * s.size * s.size),
        tap(geometry.tap(m_ < taps ? m_ : 0)),
        reader{m_ < taps ? tap.i : kNowhere, tap.j, s.height, s.width,
               ((tap.channel * s.height + tap.i) * s.width + tap.j) * s.images} {}
  __device__ __forceinline__ WindowEntry entry(int k) const {
    const Windows::Position q = geometry.position(k);
    return {(q.top * geometry.s.width + q.left) * geometry.s.images + q.image,
            static_cast<short>(q.top), static_cast<short>(q.left)};
  }
  __device__ __forceinline__ void fetch_tabled(const WindowEntry& e, T (&v)[4]) const {
    load4_or_zero(x, reader.offset(e), v);
  }
  __device__ __forceinline__ void fetch(int k, int k_end, T (&v)[4]) const {
    if (m >= taps || k >= k_end) return zero4(v);
    for (int i = 0; i < 4; ++i)
      v[i] = load_or_zero(x, k + i < k_end ? geometry.offset(tap, geometry.position(k + i))
                                           : -1);
  }
};

// A thread's sub-tile along a tile side kExtent long: where kExtent is a multiple of 64, groups of
// 4 consecutive elements, one group every 64; else (the narrowest tile) 3 consecutive ones.
template <int kExtent>
constexpr bool kGroupsOf4 = kExtent % kConvGroupStride == 0;
static_assert(kConvNarrowestTile == 3 * kConvThreadsAlong, "the narrowest tile: 3 per thread");

// Element i of thread t's sub-tile: its place along the tile side.
template <int kExtent>
__device__ __forceinline__ int sub_tile_index(int t, int i) {
  if constexpr (kGroupsOf4<kExtent>) return i / 4 * kConvGroupStride + 4 * t + i % 4;
  else return 3 * t + i;
}

// Where element e of a tile side sits in its shared row: in place, or for the narrowest tile in
// the first 3 of every 4 places, so that a thread reads its 3 as one 16-byte vector (the 4th
// place is never written nor used). kSharedRow: the row's length, padded.
template <int kExtent>
__device__ __forceinline__ int shared_place(int e) {
  if constexpr (kGroupsOf4<kExtent>) return e;
  else return e / 3 * 4 + e % 3;
}
template <int kExtent>
constexpr int kSharedRow = (kGroupsOf4<kExtent> ? kExtent : kExtent / 3 * 4) + kConvRowPad;

// A thread's group of 4 into a shared tile: 4 values of m (or n) at one k, or 4 values of k.
template <bool kAlongK, int kExtent, typename T>
__device__ __forceinline__ void stash(T (*tile)[kSharedRow<kExtent>], const T (&v)[4]) {
  const int k = group_k<kAlongK, kExtent>(), e = group_extent<kAlongK, kExtent>();
  if constexpr (kAlongK) {
    for (int i = 0; i < 4; ++i) tile[k + i][shared_place<kExtent>(e)] = v[i];
  } else if constexpr (kGroupsOf4<kExtent>) {
    store4(&tile[k][e], v);
  } else {
    for (int i = 0; i < 4; ++i) tile[k][shared_place<kExtent>(e + i)] = v[i];
  }
}

// Thread t's sub-tile values of one row of a shared tile, in 16-byte reads.
template <int kExtent, typename T>
__device__ __forceinline__ void load_sub_tile(const T* row, int t, T* values) {
  if constexpr (kGroupsOf4<kExtent>) {
    for (int g = 0; g < kExtent / kConvGroupStride; ++g)
      load4(row + g * kConvGroupStride + 4 * t, values + 4 * g);
  } else {
    T group[4];
    load4(row + 4 * t, group);
    for (int i = 0; i < 3; ++i) values[i] = group[i];
  }
}

// The group at k of an operand: through the table where it is tabled (k's entry in the ring).
template <typename Op, typename T>
__device__ __forceinline__ void fetch_group(const Op& op, int k, int k_begin, int k_end,
                                            const WindowEntry* table, T (&v)[4]) {
  if constexpr (Op::kTabled) {
    op.fetch_tabled(table[static_cast<u32>(k - k_begin) % (2 * kConvTableK)], v);
  } else {
    op.fetch(k, k_end, v);
  }
}

// Both operands' double-buffered shared tiles, sized for full tiles; one array for every tile
// shape, so that a kernel holding both shapes allocates it once.
template <typename T>
__device__ __forceinline__ T* conv_shared_tiles() {
  __shared__ __align__(16) T tiles[2 * 2 * kConvTileK * (kConvTile + kConvRowPad)];
  return tiles;
}

// c[m][n] (row-major, `columns` wide) for the block's kRows × kColumns tile, summed over the
// block's slice of k: [z·slice, min((z + 1)·slice, depth)) for z = slice_index, into layer
// blockIdx.z of c (rows × columns each; the convolutions' grids have a layer per slice,
// winograd.cu's one per slice and point). a and b are the operands as seen by this thread (they
// know its group's m or n).
template <typename T, int kRows, int kColumns, bool kAAlongK, bool kBAlongK, typename A,
          typename B>
__device__ __forceinline__ void gemm_tile(const A& a, const B& b, T* __restrict__ c, int rows,
                                          int columns, int depth, int slice, int slice_index) {
  const int k_begin = slice_index * slice, k_end = minimum(k_begin + slice, depth);
  using ATile = T[kConvTileK][kSharedRow<kRows>];
  using BTile = T[kConvTileK][kSharedRow<kColumns>];
  T* shared = conv_shared_tiles<T>();
  ATile* a_tile = reinterpret_cast<ATile*>(shared);   // [buffer][k][m]
  BTile* b_tile = reinterpret_cast<BTile*>(shared + 2 * kConvTileK * kSharedRow<kRows>);
  constexpr int kThreadM = kRows / kConvThreadsAlong, kThreadN = kColumns / kConvThreadsAlong;
  // A full tile's 8 × 8 sums and the step fully unrolled would need more than 128 registers;
  // a narrow tile's 4 × 8 or 3 × 8 leave room for it.
  constexpr int kStepUnroll = kThreadM * kThreadN > 32 ? 2 : kConvTileK;
  const int tx = threadIdx.x % kConvThreadsAlong, ty = threadIdx.x / kConvThreadsAlong;
  const int a_k = group_k<kAAlongK, kRows>(), b_k = group_k<kBAlongK, kColumns>();
  const bool a_loads = loads_a_group<kRows>(), b_loads = loads_a_group<kColumns>();
  // The window operand's table (vector loops): chunks 0 and 1 first, the next ones below.
  WindowEntry* table = conv_window_table();
  const auto fill = [&](int chunk) {
    const int k = k_begin + chunk * kConvTableK + threadIdx.x;
    WindowEntry e{0, kNowhere, kNowhere};
    if (k < k_end) {
      if constexpr (A::kTabled) e = a.entry(k);
      if constexpr (B::kTabled) e = b.entry(k);
    }
    table[chunk % 2 * kConvTableK + threadIdx.x] = e;
  };
  constexpr bool kTables = A::kTabled || B::kTabled;
  static_assert(!(A::kTabled && B::kTabled), "one table: one window operand per pass");
  if constexpr (kTables) {
    fill(0);
    fill(1);
    __syncthreads();
  }
  T a_next[4], b_next[4];
  if (a_loads) {
    fetch_group(a, k_begin + a_k, k_begin, k_end, table, a_next);
    stash<kAAlongK, kRows>(a_tile[0], a_next);
  }
  if (b_loads) {
    fetch_group(b, k_begin + b_k, k_begin, k_end, table, b_next);
    stash<kBAlongK, kColumns>(b_tile[0], b_next);
  }
  __syncthreads();

  T sum[kThreadM][kThreadN] = {};
  // One step from k0, multiplying shared buffer kBuffer while the other fills: steps come in
  // pairs, so that each buffer's place is a constant of its code.
  const auto step = [&](int k0, auto buffer) {
    constexpr int kBuffer = decltype(buffer)::value;
    const bool more = k0 + kConvTileK < k_end;
    // The next step's values travel while this step multiplies.
    if (more && a_loads) fetch_group(a, k0 + kConvTileK + a_k, k_begin, k_end, table, a_next);
    if (more && b_loads) fetch_group(b, k0 + kConvTileK + b_k, k_begin, k_end, table, b_next);
    UNROLL(kStepUnroll)
    for (int kk = 0; kk < kConvTileK; ++kk) {
      T a_values[kThreadM], b_values[kThreadN];
      load_sub_tile<kRows>(a_tile[kBuffer][kk], ty, a_values);
      load_sub_tile<kColumns>(b_tile[kBuffer][kk], tx, b_values);
      for (int r = 0; r < kThreadM; ++r)
        for (int s = 0; s < kThreadN; ++s) sum[r][s] += a_values[r] * b_values[s];
    }
    // The other buffer: every thread finished reading it before the last barrier.
    if (more && a_loads) stash<kAAlongK, kRows>(a_tile[kBuffer ^ 1], a_next);
    if (more && b_loads) stash<kBAlongK, kColumns>(b_tile[kBuffer ^ 1], b_next);
    __syncthreads();
  };
  const auto steps = [&](int begin, int end) {   // begin − k_begin: an even number of steps
    for (int k0 = begin; k0 < end; k0 += 2 * kConvTileK) {
      step(k0, Constant<0>());
      if (k0 + kConvTileK < end) step(k0 + kConvTileK, Constant<1>());
    }
  };
  if constexpr (kTables) {
    // Chunk m's first step fills chunk m + 1 into the slot of chunk m − 1, whose last reader (the
    // fetch for the step before) finished before the last barrier; chunk m + 1's first reader
    // comes a chunk later.
    static_assert(kConvTableK % (2 * kConvTileK) == 0, "chunks of whole pairs of steps");
    for (int chunk = k_begin; chunk < k_end; chunk += kConvTableK) {
      if (chunk > k_begin) fill((chunk - k_begin) / kConvTableK + 1);
      steps(chunk, minimum(chunk + kConvTableK, k_end));
    }
  } else {
    steps(k_begin, k_end);
  }

  const int m0 = blockIdx.y * kRows, n0 = blockIdx.x * kColumns;
  c += static_cast<size_t>(blockIdx.z) * rows * columns;
  const bool vector = vectorizable(c, columns);
  for (int r = 0; r < kThreadM; ++r) {
    const int m = m0 + sub_tile_index<kRows>(ty, r);
    if (m >= rows) continue;
    T* row = c + static_cast<size_t>(m) * columns;
    if constexpr (kColumns % kConvGroupStride == 0) {
      for (int g = 0; g < kThreadN / 4; ++g) {
        const int n = n0 + g * kConvGroupStride + 4 * tx;
        const T* values = &sum[r][4 * g];
        if (vector && n < columns) {
          store4(row + n, values);
        } else {
          for (int s = 0; s < 4; ++s)
            if (n + s < columns) row[n + s] = values[s];
        }
      }
    } else {
      for (int s = 0; s < kThreadN; ++s) {
        const int n = n0 + sub_tile_index<kColumns>(tx, s);
        if (n < columns) row[n] = sum[r][s];
      }
    }
  }
}

template <typename Vector, typename Body>
__device__ __forceinline__ void with_side(int side, Vector vector, Body& body) {
  if (side == kConvNarrowestTile) return body(Constant<kConvNarrowestTile>(), vector);
  if (side == kConvNarrowTile) return body(Constant<kConvNarrowTile>(), vector);
  body(Constant<kConvTile>(), vector);
}
// body(Constant<side>(), Constant<vector>()) for the tile side the launcher's grid was made for
// (kConvNarrowestTile, kConvNarrowTile or kConvTile) and whether every operand of the pass is
// vectorizable (float only): a product loop of its own for each, holding only its own loads.
template <typename T, typename Body>
__device__ __forceinline__ void with_plan(int side, bool vector, Body body) {
  if constexpr (sizeof(T) == 4) {
    if (vector) return with_side(side, Constant<true>(), body);
  }
  with_side(side, Constant<false>(), body);
}

// y: the output, or the slices' partial outputs; tile_rows: kConvNarrowestTile, kConvNarrowTile or
// kConvTile, as the launcher's grid.
template <typename T>
__global__ void __launch_bounds__(kConvThreads, kConvBlocksPerSM)
conv_forward(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, int channels,
             int height, int width, int images, int filters, int size, int stride, int pad,
             int out_height, int out_width, int slice, int tile_rows) {
  const ConvShape s{channels, height, width, images, filters, size, stride, pad, out_height,
                    out_width};
  const bool vector =
      vectorizable(w, filters) && vectorizable(x, images) && windows_fit_table(s);
  with_plan<T>(tile_rows, vector, [&](auto rows, auto vector_loads) {
    constexpr int kRows = decltype(rows)::value;
    constexpr bool kVector = decltype(vector_loads)::value;
    const KRows<T, kVector> a(w, filters, blockIdx.y * kRows + group_extent<false, kRows>());
    const ForwardWindows<T, kVector> b(x, s,
                                       blockIdx.x * kConvTile + group_extent<false, kConvTile>());
    gemm_tile<T, kRows, kConvTile, false, false>(a, b, y, filters,
                                                  out_height * out_width * images,
                                                  channels * size * size, slice, blockIdx.z);
  });
}
CONVNET_INSTANTIATE(conv_forward)

// dx: the input gradient, or the slices' partial gradients; tile_rows: kConvNarrowestTile,
// kConvNarrowTile or kConvTile, as the launcher's grid.
template <typename T>
__global__ void __launch_bounds__(kConvThreads, kConvBlocksPerSM)
conv_backward_input(const T* __restrict__ dy, const T* __restrict__ w, T* __restrict__ dx,
                    int channels, int height, int width, int images, int filters, int size,
                    int stride, int pad, int out_height, int out_width, int slice,
                    int tile_rows) {
  const ConvShape s{channels, height, width, images, filters, size, stride, pad, out_height,
                    out_width};
  const int depth = size * size * filters;
  const bool vector = vectorizable(w, depth) && vectorizable(dy, images) && stride == 1 &&
                      windows_fit_table(s);
  with_plan<T>(tile_rows, vector, [&](auto rows, auto vector_loads) {
    constexpr int kRows = decltype(rows)::value;
    constexpr bool kVector = decltype(vector_loads)::value;
    const RowsAlongK<T, kVector> a(w, channels, depth,
                                   blockIdx.y * kRows + group_extent<true, kRows>());
    const GatheredGradients<T, kVector> b(
        dy, s, blockIdx.x * kConvTile + group_extent<false, kConvTile>());
    gemm_tile<T, kRows, kConvTile, true, false>(a, b, dx, channels, height * width * images,
                                                 depth, slice, blockIdx.z);
  });
}
CONVNET_INSTANTIATE(conv_backward_input)

// dw: the filter gradient, or the slices' partial gradients; tile_columns: kConvNarrowestTile,
// kConvNarrowTile or kConvTile, as the launcher's grid.
template <typename T>
__global__ void __launch_bounds__(kConvThreads, kConvBlocksPerSM)
conv_backward_filters(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dw,
                      int channels, int height, int width, int images, int filters, int size,
                      int stride, int pad, int out_height, int out_width, int slice,
                      int tile_columns) {
  const ConvShape s{channels, height, width, images, filters, size, stride, pad, out_height,
                    out_width};
  const int positions = out_height * out_width * images;
  const bool vector = vectorizable(x, images) && vectorizable(dy, positions) &&
                      windows_fit_table(s);
  with_plan<T>(tile_columns, vector, [&](auto columns, auto vector_loads) {
    constexpr int kColumns = decltype(columns)::value;
    constexpr bool kVector = decltype(vector_loads)::value;
    const FilterWindows<T, kVector> a(x, s,
                                      blockIdx.y * kConvTile + group_extent<true, kConvTile>());
    const RowsAlongK<T, kVector> b(dy, filters, positions,
                                   blockIdx.x * kColumns + group_extent<true, kColumns>());
    gemm_tile<T, kConvTile, kColumns, true, true>(a, b, dw, channels * size * size, filters,
                                                   positions, slice, blockIdx.z);
  });
}
CONVNET_INSTANTIATE(conv_backward_filters)

// out[i] = Σ_{z < splits} partial[z][i], in slice order.
template <typename T>
__global__ void __launch_bounds__(kThreads)
conv_sum_splits(const T* __restrict__ partial, T* __restrict__ out, u32 count, int splits) {
  GRID_STRIDE_LOOP(i, count) {
    T sum = partial[i];
    for (int z = 1; z < splits; ++z) sum += partial[static_cast<size_t>(z) * count + i];
    out[i] = sum;
  }
}
CONVNET_INSTANTIATE(conv_sum_splits)
