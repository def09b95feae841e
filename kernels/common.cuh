// Shared by every kernel source: how kernels are instantiated for float and double, and the
// math they use, the same for nvcc, NVRTC and the host compiler of the emulator (emulate.h).
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

// Math on T: the float overloads stay in single precision (powf, expf, logf).
__device__ __forceinline__ float power(float x, float y) { return powf(x, y); }
__device__ __forceinline__ double power(double x, double y) { return pow(x, y); }
__device__ __forceinline__ float exponential(float x) { return expf(x); }
__device__ __forceinline__ double exponential(double x) { return exp(x); }
__device__ __forceinline__ float logarithm(float x) { return logf(x); }
__device__ __forceinline__ double logarithm(double x) { return log(x); }

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

template <typename T>
__device__ __forceinline__ T maximum(T a, T b) { return a > b ? a : b; }
template <typename T>
__device__ __forceinline__ T minimum(T a, T b) { return a < b ? a : b; }

// Every element i < count, whatever the grid: the elementwise kernels' loop.
#define GRID_STRIDE_LOOP(i, count) \
  for (u32 i = blockIdx.x * blockDim.x + threadIdx.x; i < (count); i += blockDim.x * gridDim.x)
