// Launch geometry shared by the kernels and their Python launchers (convnet/backend/cuda/launch.py
// reads the `constexpr int` lines of this file), so each figure has one source.
#pragma once

// Threads per block of the elementwise, normalization, pooling and softmax kernels.
constexpr int kThreads = 256;
// Blocks of kThreads that the normalization and pooling kernels, whose loops carry their
// elements' coordinates (common.cuh), leave room for on a multiprocessor: with it ptxas allows
// them up to 64 registers, where it would otherwise squeeze them into 32 (and
// samemap_norm_backward then spills).
constexpr int kWalkingBlocksPerSM = 4;
// The normalization kernels are built for the odd window sizes up to this one (norm.cu: a
// thread keeps its window in registers, so each size is compiled on its own).
constexpr int kMaxNormSize = 9;

// Convolution as implicit GEMMs (conv.cu): a block computes a kConvTile × kConvTile tile of the
// product, or a narrower one along the filters or channels (the rows of forward and of the input
// gradient, the columns of the filter gradient) where its tiles pad them less (conv1's 48 filters
// and 3 channels, conv2's 48 channels, the 192 filters of conv3 and conv4 and channels of conv4
// and conv5), kConvTileK deep per step, with 16 × 16 threads.
constexpr int kConvTile = 128;
constexpr int kConvNarrowTile = 64;
constexpr int kConvNarrowestTile = 48;
constexpr int kConvTileK = 8;
constexpr int kConvThreads = 256;
// Blocks of the convolution kernels that share a multiprocessor: ptxas keeps them within 128
// registers a thread, so that two fit (one block alone hides memory latency poorly).
constexpr int kConvBlocksPerSM = 2;

// Winograd's F(m × m, 3 × 3) (winograd.cu), for an output tile of side m, one of these: an
// (m + 2) × (m + 2) input tile per output tile, so (m + 2)² points of the transformed domain, each
// its own product: the products' grids have (m + 2)² layers a slice. Its filters are
// kWinogradTaps × kWinogradTaps.
constexpr int kWinogradTaps = 3;
constexpr int kWinogradSmallTile = 2;
constexpr int kWinogradLargeTile = 4;
