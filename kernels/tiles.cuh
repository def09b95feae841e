// Launch geometry shared by the kernels and their Python launchers (convnet/backend/cuda/launch.py
// reads the `constexpr int` lines of this file), so each figure has one source.
#pragma once

// Threads per block of the elementwise, normalization, pooling and softmax kernels.
constexpr int kThreads = 256;

// Convolution as implicit GEMMs (conv.cu): a block computes a kConvTile × kConvTile tile of the
// product, or kConvNarrowTile on the side of a product that has no more rows (forward, input
// gradient) or columns (filter gradient), kConvTileK deep per step, with 16 × 16 threads.
constexpr int kConvTile = 128;
constexpr int kConvNarrowTile = 64;
constexpr int kConvTileK = 8;
constexpr int kConvThreads = 256;
// Blocks of the convolution kernels that share a multiprocessor: ptxas keeps them within 128
// registers a thread, so that two fit (one block alone hides memory latency poorly).
constexpr int kConvBlocksPerSM = 2;
