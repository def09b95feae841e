// The one translation unit of the CUDA kernels: `make kernels` compiles it with nvcc into
// kernels/build/convnet.fatbin, the CUDA backend compiles it through NVRTC where that fatbin
// does not serve the GPU, and kernels/emulator.cpp includes it for the host.
#include "conv.cu"
#include "elementwise.cu"
#include "norm.cu"
#include "pool.cu"
#include "sgd.cu"
#include "softmax.cu"
#include "winograd.cu"
