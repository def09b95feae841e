// The data loader's pixel work (Python module convnet._augment; driven by convnet/data/loader.py).
//
// Layout: images uint8 (N, S, S, 3), RGB innermost, as stored in the HDF5 file;
//         out float32 (3, C, C, n), images innermost: the layout of the whole network
//         (convnet/backend/__init__.py), so the batch goes to the GPU as it is.
//
// For output image i (source image index[i], crop corner (y_i, x_i), mirror flip_i):
//   out[c][y][x][i] = ((float(images[index[i]][y_i + y][x_i + x'][c]) − mean[y][x][c])
//                       + colour[i][c]) / divisor,        x' = flip_i ? C − 1 − x : x
// mean is the mean image's crop (the released code's central one), colour the image's PCA
// offset Σ_k p_k α_k σ_k, divisor 1.1 for the released code's convention (1: no division).
// Every operation is one float32 operation in that order, with no fused multiply-add
// (-ffp-contract=off in setup.py), so the result equals NumPy's float32 arithmetic bit for bit.
//
// Work is split across threads by output rows y; each output value is computed by exactly one
// thread from the same inputs, so the batch does not depend on the number of threads. The random
// draws (offsets, flips, α) are made by the caller, once per batch, from the batch's seed.
// The GIL is released while the threads run, so Python prepares the next batch meanwhile.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace py = pybind11;

namespace {

constexpr int kImageBlock = 16;  // images per pass: their values are written 64 bytes at a time

struct Job {
  const uint8_t* images;
  const int64_t* index;
  const int32_t* offsets;
  const uint8_t* flips;
  const float* colour;
  const float* mean;  // planar: (3, C, C)
  float* out;
  int64_t n, size, crop;
  float divisor;
};

// Output rows [y_begin, y_end): for each block of images and channel, each image's row is
// computed along x (contiguous, so the compiler vectorizes it) into `planar`, then transposed
// into the images-innermost output.
template <bool kDivide>
void rows(const Job& job, int64_t y_begin, int64_t y_end) {
  const int64_t n = job.n, crop = job.crop, size = job.size;
  std::vector<float> planar(kImageBlock * crop);
  for (int64_t y = y_begin; y < y_end; ++y) {
    for (int64_t i0 = 0; i0 < n; i0 += kImageBlock) {
      const int64_t count = std::min<int64_t>(kImageBlock, n - i0);
      for (int64_t c = 0; c < 3; ++c) {
        const float* mean = job.mean + (c * crop + y) * crop;
        for (int64_t k = 0; k < count; ++k) {
          const int64_t i = i0 + k;
          const int64_t row = job.offsets[2 * i] + y, column = job.offsets[2 * i + 1];
          const uint8_t* source = job.images + ((job.index[i] * size + row) * size + column) * 3 + c;
          float* values = planar.data() + k * crop;
          if (job.flips[i]) {
            for (int64_t x = 0; x < crop; ++x) values[x] = static_cast<float>(source[(crop - 1 - x) * 3]);
          } else {
            for (int64_t x = 0; x < crop; ++x) values[x] = static_cast<float>(source[x * 3]);
          }
          const float colour = job.colour[3 * i + c], divisor = job.divisor;
          for (int64_t x = 0; x < crop; ++x) {
            float value = values[x] - mean[x];
            value = value + colour;
            if (kDivide) value = value / divisor;
            values[x] = value;
          }
        }
        float* out = job.out + (c * crop + y) * crop * n + i0;
        for (int64_t x = 0; x < crop; ++x) {
          for (int64_t k = 0; k < count; ++k) out[x * n + k] = planar[k * crop + x];
        }
      }
    }
  }
}

template <typename T>
const T* data_of(const py::array& array, const char* name, std::vector<int64_t> shape) {
  if (!py::isinstance<py::array_t<T>>(array) || !(array.flags() & py::array::c_style)) {
    throw std::invalid_argument(std::string(name) + ": wrong dtype or not C-contiguous");
  }
  if (array.ndim() != static_cast<py::ssize_t>(shape.size())) {
    throw std::invalid_argument(std::string(name) + ": wrong number of dimensions");
  }
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] >= 0 && array.shape(d) != shape[d]) {
      throw std::invalid_argument(std::string(name) + ": wrong shape");
    }
  }
  return static_cast<const T*>(array.data());
}

void augment(const py::array& images, const py::array& index, const py::array& offsets,
             const py::array& flips, const py::array& colour, const py::array& mean,
             double divisor, py::array& out, int threads) {
  if (images.ndim() != 4 || out.ndim() != 4) {
    throw std::invalid_argument("images must be (N, S, S, 3) and out (3, C, C, n)");
  }
  const int64_t total = images.shape(0), size = images.shape(1);
  const int64_t crop = out.shape(1), n = out.shape(3);
  Job job;
  job.images = data_of<uint8_t>(images, "images", {-1, size, size, 3});
  job.index = data_of<int64_t>(index, "index", {n});
  job.offsets = data_of<int32_t>(offsets, "offsets", {n, 2});
  job.flips = data_of<uint8_t>(flips, "flips", {n});
  job.colour = data_of<float>(colour, "colour", {n, 3});
  const float* mean_interleaved = data_of<float>(mean, "mean", {crop, crop, 3});
  std::vector<float> mean_planar(3 * crop * crop);
  for (int64_t p = 0; p < crop * crop; ++p) {
    for (int64_t c = 0; c < 3; ++c) mean_planar[c * crop * crop + p] = mean_interleaved[3 * p + c];
  }
  job.mean = mean_planar.data();
  data_of<float>(out, "out", {3, crop, crop, n});
  if (!out.writeable()) throw std::invalid_argument("out: not writeable");
  job.out = static_cast<float*>(out.mutable_data());
  job.n = n, job.size = size, job.crop = crop;
  job.divisor = static_cast<float>(divisor);
  if (crop < 1 || crop > size) throw std::invalid_argument("crop does not fit the images");
  for (int64_t i = 0; i < n; ++i) {  // every read stays inside its image
    const int64_t y = job.offsets[2 * i], x = job.offsets[2 * i + 1];
    if (job.index[i] < 0 || job.index[i] >= total || y < 0 || x < 0 || y + crop > size ||
        x + crop > size) {
      throw std::out_of_range("image " + std::to_string(i) + ": index or crop offset outside "
                              "the images");
    }
  }
  threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, crop)));
  const bool divide = job.divisor != 1.0f;
  py::gil_scoped_release release;
  auto work = [&job, divide](int64_t begin, int64_t end) {
    divide ? rows<true>(job, begin, end) : rows<false>(job, begin, end);
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) {
    pool.emplace_back(work, crop * t / threads, crop * (t + 1) / threads);
  }
  work(0, crop / threads);
  for (auto& thread : pool) thread.join();
}

}  // namespace

PYBIND11_MODULE(_augment, module) {
  module.doc() = "The data loader's crop, mirror, mean subtraction and colour noise (see "
                 "kernels/augment.cpp).";
  module.def("augment", &augment, py::arg("images").noconvert(), py::arg("index").noconvert(),
             py::arg("offsets").noconvert(), py::arg("flips").noconvert(),
             py::arg("colour").noconvert(), py::arg("mean").noconvert(), py::arg("divisor"),
             py::arg("out").noconvert(), py::arg("threads"),
             "Fill out (3, C, C, n) float32 from images (N, S, S, 3) uint8; see the source.");
}
