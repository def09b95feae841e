// Shared by every kernel source: how kernels are instantiated for float and double, the math
// they use, and their loops' index arithmetic, the same for nvcc, NVRTC and the host compiler of
// the emulator (emulate.h).
//
// Every kernel is a template on its element type T (float, or double for gradient checks) and is
// instantiated for both by CONVNET_INSTANTIATE(kernel) after its definition:
//   nvcc (make kernels)   explicit instantiations, found in the fatbin by their mangled names
//   NVRTC                 the same; CuPy looks the names up from "kernel<float>" expressions
//   emulator              also registers "kernel<float>" and "kernel<double>" with the Python
//                         module, whose launcher converts arguments by the kernel's signature
// Kernels use only static shared memory, so a launch needs no shared-memory size.
#pragma once

#define CONVNET_INSTANTIATE_TYPES(kernel)                    \
  template __global__ decltype(kernel<float>) kernel<float>; \
  template __global__ decltype(kernel<double>) kernel<double>;

#ifdef CONVNET_EMULATOR
#include <cmath>
#include <cstring>
#include <type_traits>
#include "emulate.h"
#define CONVNET_INSTANTIATE(kernel)                                   \
  CONVNET_INSTANTIATE_TYPES(kernel)                                   \
  static const ::convnet_emulator::Registration kernel##_registration( \
      #kernel, &kernel<float>, &kernel<double>);
#else
#define CONVNET_INSTANTIATE(kernel) CONVNET_INSTANTIATE_TYPES(kernel)
#endif

// Integer types with the same width on the host and the device (NVRTC has no <cstdint>).
typedef unsigned int u32;
typedef unsigned char u8;

// Math on T: the float overloads stay in single precision (expf, logf, tanhf). The GPU rounds
// these less exactly than the host: the CUDA Programming Guide (Mathematical Functions) bounds
// expf and exp2f within 2 ulp, logf 1 and tanhf 2, the doubles' exp, log and tanh 1 and pow 2,
// where the host's are all but exact. On the emulator, gpu_rounded moves the host's result by the
// whole bound, up or down as a hash of the argument says (the same every run), so that the tests'
// tolerances, run in CI on the emulator, hold for the GPU's worst error and not only for the
// host's; on the GPU it is the result itself.
#ifdef CONVNET_EMULATOR
template <typename T> inline T gpu_error_sign(T argument) {   // +1 or -1
  using Bits = std::conditional_t<sizeof(T) == 4, u32, unsigned long long>;
  Bits bits;
  std::memcpy(&bits, &argument, sizeof bits);
  return (bits * Bits(0x9E3779B97F4A7C15ull)) >> (8 * sizeof bits - 1) ? T(1) : T(-1);
}
template <typename T> inline T gpu_rounded(T value, int ulps, T argument) {
  if (value == T(0) || !std::isfinite(value)) return value;
  const T toward = gpu_error_sign(argument) * T(INFINITY);
  for (int step = 0; step < ulps; ++step) value = std::nextafter(value, toward);
  return value;
}
#else
template <typename T> __device__ __forceinline__ T gpu_rounded(T value, int, T) { return value; }
#endif
__device__ __forceinline__ float exponential(float x) { return gpu_rounded(expf(x), 2, x); }
__device__ __forceinline__ double exponential(double x) { return gpu_rounded(exp(x), 1, x); }
__device__ __forceinline__ float logarithm(float x) { return gpu_rounded(logf(x), 1, x); }
__device__ __forceinline__ double logarithm(double x) { return gpu_rounded(log(x), 1, x); }
__device__ __forceinline__ float hyperbolic_tangent(float x) { return gpu_rounded(tanhf(x), 2, x); }
__device__ __forceinline__ double hyperbolic_tangent(double x) { return gpu_rounded(tanh(x), 1, x); }
// x^y for x > 0, as cuda-convnet's response normalization computes its d^(−β) in float: __powf,
// 2^(y·log2 x) through the multiprocessor's approximate log2 and exp2, a few instructions where
// powf takes about 65 (which would make the normalization bound by its instructions, not its
// memory). The Guide bounds it through that formula: __log2f within 2 ulp, or an absolute 2^-22
// for x in [0.5, 2], then exp2f's 2 ulp; the emulator computes the formula with those errors put
// on the host's log2f and exp2f. Double stays pow.
#ifdef CONVNET_EMULATOR
inline float fast_power(float x, float y) {
  const float log2_x = log2f(x);
  const float gpu_log2_x = x >= 0.5f && x <= 2.0f
                               ? log2_x + gpu_error_sign(x) * std::ldexp(1.0f, -22)
                               : gpu_rounded(log2_x, 2, x);
  const float exponent = y * gpu_log2_x;
  return gpu_rounded(exp2f(exponent), 2, exponent);
}
#else
__device__ __forceinline__ float fast_power(float x, float y) { return __powf(x, y); }
#endif
__device__ __forceinline__ double fast_power(double x, double y) {
  return gpu_rounded(pow(x, y), 2, x);
}

// Products, sums and differences rounded one at a time, never fused into a multiply-add (nvcc
// fuses a·b + c by default; the emulator's host compile fuses nothing, -ffp-contract=off): where
// a kernel must round as the reference does, operation by operation in T (the SGD update).
#ifdef CONVNET_EMULATOR
template <typename T> inline T mul_rn(T a, T b) { return a * b; }
template <typename T> inline T add_rn(T a, T b) { return a + b; }
template <typename T> inline T sub_rn(T a, T b) { return a - b; }
#else
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double sub_rn(double a, double b) { return __dsub_rn(a, b); }
#endif

// Unroll the next loop n times on the GPU; the emulator's host compiler decides for itself.
#ifdef CONVNET_EMULATOR
#define UNROLL(n)
#else
#define UNROLL(n) _Pragma(UNROLL_TEXT(unroll n))
#define UNROLL_TEXT(text) #text
#endif

// A value as a type: how a run-time choice (a tile side, a window size) picks a compiled variant
// of a generic lambda, which reads it back as decltype(argument)::value.
template <int kValue>
struct Constant { static constexpr int value = kValue; };

// A NaN in either wins, as in NumPy's maximum (the reference's): a NaN reaches the loss, whose
// check stops the run, where ReLU or pooling would have dropped it.
template <typename T>
__device__ __forceinline__ T maximum(T a, T b) { return a > b || a != a ? a : b; }
template <typename T>
__device__ __forceinline__ T minimum(T a, T b) { return a < b ? a : b; }

// Every element i < count, whatever the grid: the elementwise kernels' loop.
#define GRID_STRIDE_LOOP(i, count) \
  for (u32 i = blockIdx.x * blockDim.x + threadIdx.x; i < (count); i += blockDim.x * gridDim.x)

// n / d and n % d for 0 ≤ n < 2³¹ by a multiply and a shift (Granlund and Montgomery): a
// divisor fixed for the launch, set up once per thread.
struct FastDivmod {
  u32 divisor, multiplier, shift;
  __device__ explicit FastDivmod(int d) : divisor(d), multiplier(0), shift(0) {
    int log2_ceiling = 0;
    while ((1u << log2_ceiling) < divisor) ++log2_ceiling;
    if (divisor > 1) {
      const unsigned long long power = 1ull << (31 + log2_ceiling);
      multiplier = static_cast<u32>((power + divisor - 1) / divisor);
      shift = log2_ceiling - 1;
    }
  }
  __device__ __forceinline__ int div(int n) const {
    return divisor == 1 ? n : static_cast<int>(__umulhi(static_cast<u32>(n), multiplier) >> shift);
  }
  __device__ __forceinline__ int mod(int n, int quotient) const {
    return n - quotient * static_cast<int>(divisor);
  }
};

// The coordinates of element i of a (C, H, W, N) array, images innermost; H, W, N > 0.
struct Coordinates {
  int c, h, w, n;
  __device__ Coordinates(u32 i, int height, int width, int images)
      : c(i / (height * width * images)),
        h(i / (width * images) % height),
        w(i / images % width),
        n(i % images) {}
  // The coordinates `step` elements further on, given as coordinates too: a sum with carries
  // (each of step's n, w, h is less than its axis, so one carry per axis suffices).
  __device__ __forceinline__ void advance(const Coordinates& step, int height, int width,
                                          int images) {
    n += step.n;
    const int carry_w = n >= images;
    n -= carry_w * images;
    w += step.w + carry_w;
    const int carry_h = w >= width;
    w -= carry_h * width;
    h += step.h + carry_h;
    const int carry_c = h >= height;
    h -= carry_c * height;
    // in u32: past the array's end (where the loop stops) c may pass 2³¹
    c = static_cast<int>(static_cast<u32>(c) + static_cast<u32>(step.c + carry_c));
  }
};

// GRID_STRIDE_LOOP over the elements i of a (C, H, W, N) array, with `at` their coordinates:
// split once per thread, then kept up to date by additions, since a division by a number known
// only at run time costs about as much as the rest of a memory-bound kernel's work per element.
#define GRID_STRIDE_LOOP_AT(i, at, count, height, width, images)                           \
  const Coordinates at##_step(blockDim.x * gridDim.x, height, width, images);             \
  Coordinates at(blockIdx.x * blockDim.x + threadIdx.x, height, width, images);           \
  for (u32 i = blockIdx.x * blockDim.x + threadIdx.x; i < (count);                        \
       i += blockDim.x * gridDim.x, at.advance(at##_step, height, width, images))
