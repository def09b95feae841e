// Launch geometry shared by the kernels and their Python launchers (convnet/backend/cuda/launch.py
// reads the `constexpr int` lines of this file), so each figure has one source.
#pragma once

// Threads per block of the elementwise, normalization, pooling and softmax kernels.
constexpr int kThreads = 256;

// Convolution as an implicit GEMM (conv.cu): a block computes a kConvTileM × kConvTileN tile of
// the product, kConvTileK deep per step, each thread kConvThreadM × kConvThreadN of it.
constexpr int kConvTileM = 128;
constexpr int kConvTileN = 128;
constexpr int kConvTileK = 8;
constexpr int kConvThreadM = 8;
constexpr int kConvThreadN = 8;
constexpr int kConvThreads = (kConvTileM / kConvThreadM) * (kConvTileN / kConvThreadN);
// Blocks of the convolution kernels that share a multiprocessor: ptxas keeps them within 128
// registers a thread, so that two fit (one block alone hides memory latency poorly).
constexpr int kConvBlocksPerSM = 2;
