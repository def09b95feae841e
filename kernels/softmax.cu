// Softmax, multinomial log-loss and top-k ranks (Python launchers: convnet/backend/cuda/softmax.py).
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
//   softmax_ranks      ranks (2, N): ranks[0][n] = g = #{j : p_j > p_label} and
//                      ranks[1][n] = e = #{j : p_j = p_label}, the label among them (none where
//                      p_label is NaN); the launcher takes them to the host for the reference's
//                      top-k error, 1 − clamp((k − g) / e, 0, 1) (ties broken at random)
// Restrictions (asserted by the launchers): K ≥ 1 and K·N < 2³¹; labels in [0, K), contiguous.
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
softmax_ranks(const T* __restrict__ probs, const int* __restrict__ labels,
              int* __restrict__ ranks, int classes, int images) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= images) return;
  const T label_prob = probs[labels[n] * images + n];
  int greater = 0, equal = 0;
  for (int k = 0; k < classes; ++k) {
    const T prob = probs[k * images + n];
    greater += prob > label_prob;
    equal += prob == label_prob;
  }
  ranks[n] = greater;
  ranks[images + n] = equal;
}
CONVNET_INSTANTIATE(softmax_ranks)
