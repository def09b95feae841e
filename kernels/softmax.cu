// Softmax, multinomial log-loss and top-k counts (Python launchers: convnet/backend/cuda/softmax.py).
//
// Layout: logits and probabilities (K, N), classes × images, images innermost; labels (N,) int32.
// One thread per image walks its K classes (consecutive threads read consecutive images).
// Formulas (convnet/backend/reference/softmax.py):
//   softmax            m = max_k z_k,  s = Σ_k exp(z_k − m),  p_k = exp((z_k − m) − log s)
//                      (m + log s as one number would round log s to the ulp of m: a relative
//                      error of 1e-5 in p at logits of 100)
//   softmax_logloss    the same, and losses[n] = −((z_label − m) − log s): the loss from the
//                      log-probability, finite for a confident mistake; the batch mean is
//                      bias_backward's fixed-order sum of `losses` divided by N
//   softmax_backward   grad_k = (p_k − [k = label]) / N
//   softmax_better     better[n] = #{k : p_k > p_label}: a top-k error when better ≥ k
// Restrictions (asserted by the launchers): K·N < 2³¹; labels in [0, K).
#include "common.cuh"
#include "tiles.cuh"

// Image n's log-probabilities, (z_k − top) − log_sum: top = m, log_sum = log s.
template <typename T>
struct LogSoftmax {
  const T* logits;
  int classes, images, n;
  T top, log_sum;
  __device__ LogSoftmax(const T* logits_, int classes_, int images_, int n_)
      : logits(logits_), classes(classes_), images(images_), n(n_), top(logits_[n_]) {
    for (int k = 1; k < classes; ++k) top = maximum(top, logits[k * images + n]);
    T sum = 0;
    for (int k = 0; k < classes; ++k) sum += exponential(logits[k * images + n] - top);
    log_sum = logarithm(sum);
  }
  __device__ T operator()(int k) const { return (logits[k * images + n] - top) - log_sum; }
  // Image n's probabilities, into probs (K, N).
  __device__ void write_probabilities(T* __restrict__ probs) const {
    for (int k = 0; k < classes; ++k) probs[k * images + n] = exponential((*this)(k));
  }
};

template <typename T>
__global__ void __launch_bounds__(kThreads)
softmax(const T* __restrict__ logits, T* __restrict__ probs, int classes, int images) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= images) return;
  LogSoftmax<T>(logits, classes, images, n).write_probabilities(probs);
}
CONVNET_INSTANTIATE(softmax)

template <typename T>
__global__ void __launch_bounds__(kThreads)
softmax_logloss(const T* __restrict__ logits, const int* __restrict__ labels,
                T* __restrict__ probs, T* __restrict__ losses, int classes, int images) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= images) return;
  const LogSoftmax<T> log_probs(logits, classes, images, n);
  log_probs.write_probabilities(probs);
  losses[n] = -log_probs(labels[n]);
}
CONVNET_INSTANTIATE(softmax_logloss)

template <typename T>
__global__ void __launch_bounds__(kThreads)
softmax_backward(const T* __restrict__ probs, const int* __restrict__ labels,
                 T* __restrict__ grad, int classes, int images) {
  GRID_STRIDE_LOOP(i, static_cast<u32>(classes * images)) {
    const int k = i / images, n = i % images;
    T value = probs[i];
    if (labels[n] == k) value = value - T(1);
    grad[i] = value / T(images);
  }
}
CONVNET_INSTANTIATE(softmax_backward)

template <typename T>
__global__ void __launch_bounds__(kThreads)
softmax_better(const T* __restrict__ probs, const int* __restrict__ labels,
               int* __restrict__ better, int classes, int images) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= images) return;
  const T label_prob = probs[labels[n] * images + n];
  int count = 0;
  for (int k = 0; k < classes; ++k) count += probs[k * images + n] > label_prob;
  better[n] = count;
}
CONVNET_INSTANTIATE(softmax_better)
