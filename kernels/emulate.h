// The CUDA emulator: what the kernels of this folder need from CUDA, for the host compiler, so
// that the same .cu sources run on a machine with no GPU (the Python module convnet._emulator,
// built from kernels/emulator.cpp; driven by convnet/backend/cuda/launch.py).
//
// Execution model: a launch runs its blocks one after another; each block's threads are fibers
// that run in thread order, each until it returns or reaches __syncthreads(). When every
// thread of the block waits at the barrier, all resume, in thread order again. A thread that
// returns while others wait at a barrier is an error here (undefined behaviour on a GPU), so the
// emulator catches the divergent barriers a GPU might forgive.
//
// Shuffled order (Block::shuffle(seed)): the blocks of each launch, and the threads of each
// stretch between barriers, run in a fresh random order instead. A GPU promises no order, so a
// kernel whose results change with it has a race: threads that share memory without a barrier
// between the write and the read, or blocks that depend on each other.
//
// A switch between fibers (Context below): on x86-64 (System V, ELF), a few instructions that save
// and restore the registers a call must keep; elsewhere, with CONVNET_EMULATOR_UCONTEXT defined,
// or in a build for shadow stacks (-fcf-protection=full or return, whose check a return to
// another fiber's stack would fail; kernels/build.py turns them off), ucontext's swapcontext,
// which also sets the signal mask, a system call at each switch (a block of 256 threads with 9
// barriers makes 5,000: the kernels' tests ran mostly in the kernel of the OS).
//
// Under AddressSanitizer (the module convnet._emulator_asan), the scheduler tells it of every
// switch between its stack and a fiber's, so that it knows which stack is in use, and, with
// ucontext, keeps it from clearing a fiber's stack guards at each switch (its swapcontext hook
// clears the whole stack that uc_stack names), so that a kernel's local arrays stay guarded after
// a barrier.
//
// What is emulated: threadIdx, blockIdx, blockDim, gridDim; __syncthreads(); __shared__ (a
// function-local static: one copy per kernel instantiation, which is one block's shared memory
// because blocks do not overlap); the qualifiers; __align__, float4 and __umulhi. No warps: a
// GPU-only warp-level path must sit behind CONVNET_EMULATOR with a block-level fallback
// (common.cuh).
#pragma once

#if defined(__x86_64__) && defined(__LP64__) && defined(__ELF__) && \
    !(defined(__CET__) && (__CET__ & 2)) && !defined(CONVNET_EMULATOR_UCONTEXT)
#define CONVNET_STACK_SWITCH 1
#else
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>   // with common_interface_defs.h's fiber calls
#define CONVNET_ASAN 1
#endif

#include <cstdint>
#include <algorithm>
#include <exception>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace emu {

inline dim3 threadIdx, blockIdx, blockDim, gridDim;

#ifdef CONVNET_STACK_SWITCH
inline constexpr const char* kFiberSwitch = "x86-64 stack switch";

// convnet_switch_stack(save, load) pushes the registers the System V ABI has a call keep (rbx,
// rbp, r12 to r15; not MXCSR nor the x87 control word, which no kernel changes: the fibers share
// them) on the current stack, stores the stack pointer in *save, and returns on the stack at
// `load`, where an earlier call, or start_fiber, left them. Top-level asm, into which no compiler
// option puts code (a naked function gets -fstack-protector-all's canary store, or
// -finstrument-functions' call, before its first push); in a COMDAT group, so that any number of
// translation units may include it.
asm(".pushsection .text.convnet_switch_stack,\"axG\",@progbits,convnet_switch_stack,comdat\n"
    ".globl convnet_switch_stack\n .hidden convnet_switch_stack\n"
    ".type convnet_switch_stack,@function\nconvnet_switch_stack:\n"
    "push %rbp\n push %rbx\n push %r12\n push %r13\n push %r14\n push %r15\n"
    "mov %rsp, (%rdi)\n mov %rsi, %rsp\n"
    "pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbx\n pop %rbp\n ret\n"
    ".size convnet_switch_stack, .-convnet_switch_stack\n .popsection\n");
extern "C" void convnet_switch_stack(void** save, void* load);

struct Context {
  void* stack_pointer = nullptr;
};

// A context that starts `entry` on `stack` at the next switch to it, from the stack's 16-byte
// aligned top down: a null return address for entry (which never returns), entry's address for
// the switch's ret, and zeros for the six registers it pops. entry so begins with the stack
// aligned as a call leaves it. Under AddressSanitizer, the guards the fiber's last run left there
// (entry never returns to clear its frame's) are cleared first.
inline void start_fiber(Context& context, std::vector<char>& stack, void (*entry)()) {
  constexpr int kSavedRegisters = 6, kFrameWords = kSavedRegisters + 2;
  const uintptr_t top = reinterpret_cast<uintptr_t>(stack.data() + stack.size()) & ~uintptr_t{15};
  void** frame = reinterpret_cast<void**>(top) - kFrameWords;
#ifdef CONVNET_ASAN
  ASAN_UNPOISON_MEMORY_REGION(frame, kFrameWords * sizeof(void*));
#endif
  std::fill(frame, frame + kFrameWords, nullptr);
  frame[kSavedRegisters] = reinterpret_cast<void*>(entry);
  context.stack_pointer = frame;
}

inline void switch_fiber(Context& from, Context& to) {
  convnet_switch_stack(&from.stack_pointer, to.stack_pointer);
}
#else
inline constexpr const char* kFiberSwitch = "ucontext";

struct Context {
  ucontext_t state;
};

inline void start_fiber(Context& context, std::vector<char>& stack, void (*entry)()) {
  getcontext(&context.state);
  context.state.uc_stack.ss_sp = stack.data();
  context.state.uc_stack.ss_size = stack.size();
  context.state.uc_link = nullptr;
  makecontext(&context.state, entry, 0);
#ifdef CONVNET_ASAN
  context.state.uc_stack.ss_size = 0;   // swapcontext does not read it; the sanitizer's hook
#endif                                  // would clear the stack's guards at each switch
}

inline void switch_fiber(Context& from, Context& to) { swapcontext(&from.state, &to.state); }
#endif

// One block's fibers and the scheduler that runs them.
class Block {
 public:
  static Block& instance() {
    static Block block;
    return block;
  }

  template <typename Body>
  void run_grid(dim3 grid, dim3 block, Body body) {
    const uint64_t threads = uint64_t{block.x} * block.y * block.z;
    const uint64_t blocks_per_layer = uint64_t{grid.x} * grid.y;
    const uint64_t blocks = blocks_per_layer * grid.z;
    if (threads == 0 || threads > 1024 || blocks == 0) {
      throw std::invalid_argument("launch: bad grid or block size");
    }
    gridDim = grid;
    blockDim = block;
    body_ = &body;
    call_ = [](void* f) { (*static_cast<Body*>(f))(); };
    fibers_.resize(threads);
    const std::vector<uint64_t> shuffled = shuffled_order(blocks);
    try {
      for (uint64_t i = 0; i < blocks; ++i) {
        const uint64_t b = shuffled.empty() ? i : shuffled[i];
        blockIdx = dim3(b % grid.x, b / grid.x % grid.y, b / blocks_per_layer);
        run_block(static_cast<unsigned>(threads));
      }
    } catch (...) {
      abandon_fibers();
      throw;
    }
  }

  // seed < 0: blocks and threads in order; else shuffled, from this seed on.
  void shuffle(long long seed) {
    shuffled_ = seed >= 0;
    if (shuffled_) random_.seed(static_cast<std::mt19937_64::result_type>(seed));
  }

  void barrier() {
    fibers_[current_].state = kAtBarrier;
    leave_fiber(false);
    switch_fiber(fibers_[current_].context, scheduler_);
    entered_fiber();
  }

 private:
  enum State { kRunnable, kAtBarrier, kDone };
  static constexpr size_t kStackBytes = 64 * 1024;
  static constexpr uint64_t kMostShuffled = uint64_t{1} << 24;

  struct Fiber {
    Context context;
    std::vector<char> stack = std::vector<char>(kStackBytes);
    State state = kRunnable;
    void* fake_stack = nullptr;   // AddressSanitizer's, kept while the fiber waits at a barrier
  };

  // An exception may not cross the fiber's first frame: it is kept and rethrown by the scheduler.
  // The last switch leaves the fiber for good: the next block starts it afresh.
  [[noreturn]] static void entry() {
    Block& self = instance();
    self.entered_fiber();
    try {
      self.call_(self.body_);
    } catch (...) {
      self.error_ = std::current_exception();
    }
    Fiber& fiber = self.fibers_[self.current_];
    fiber.state = kDone;
    self.leave_fiber(true);
    switch_fiber(fiber.context, self.scheduler_);
    __builtin_unreachable();
  }

  void resume(unsigned t) {
    current_ = t;
    threadIdx = dim3(t % blockDim.x, t / blockDim.x % blockDim.y, t / (blockDim.x * blockDim.y));
#ifdef CONVNET_ASAN
    void* scheduler_fake_stack = nullptr;
    __sanitizer_start_switch_fiber(&scheduler_fake_stack, fibers_[t].stack.data(),
                                   fibers_[t].stack.size());
#endif
    switch_fiber(scheduler_, fibers_[t].context);
#ifdef CONVNET_ASAN
    __sanitizer_finish_switch_fiber(scheduler_fake_stack, nullptr, nullptr);
#endif
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

  // AddressSanitizer's side of a fiber's switches (nothing without it): on arrival, learn the
  // scheduler's stack; on leaving, name it, and end the fiber's own record when it is done.
  void entered_fiber() {
#ifdef CONVNET_ASAN
    __sanitizer_finish_switch_fiber(fibers_[current_].fake_stack, &scheduler_stack_,
                                    &scheduler_stack_bytes_);
#endif
  }

  void leave_fiber([[maybe_unused]] bool done) {
#ifdef CONVNET_ASAN
    __sanitizer_start_switch_fiber(done ? nullptr : &fibers_[current_].fake_stack,
                                   scheduler_stack_, scheduler_stack_bytes_);
#endif
  }

  // 0 .. count−1 in a random order when shuffling, else nothing (in order).
  std::vector<uint64_t> shuffled_order(uint64_t count) {
    if (!shuffled_) return {};
    if (count > kMostShuffled) {
      throw std::invalid_argument("launch: " + std::to_string(count) +
                                  " blocks are too many to shuffle");
    }
    std::vector<uint64_t> indices(count);
    std::iota(indices.begin(), indices.end(), uint64_t{0});
    std::shuffle(indices.begin(), indices.end(), random_);
    return indices;
  }

  void run_block(unsigned threads) {
    for (unsigned t = 0; t < threads; ++t) {
      Fiber& fiber = fibers_[t];
      start_fiber(fiber.context, fiber.stack, &Block::entry);
      fiber.state = kRunnable;
      fiber.fake_stack = nullptr;
    }
    for (;;) {
      const std::vector<uint64_t> shuffled = shuffled_order(threads);
      for (unsigned i = 0; i < threads; ++i)
        resume(shuffled.empty() ? i : static_cast<unsigned>(shuffled[i]));
      unsigned done = 0;
      for (unsigned t = 0; t < threads; ++t) done += fibers_[t].state == kDone;
      if (done == threads) return;
      if (done != 0) {
        throw std::runtime_error(
            "block (" + std::to_string(blockIdx.x) + "," + std::to_string(blockIdx.y) + "," +
            std::to_string(blockIdx.z) + "): " + std::to_string(done) + " of " +
            std::to_string(threads) + " threads returned while the others wait at __syncthreads()");
      }
      for (unsigned t = 0; t < threads; ++t) fibers_[t].state = kRunnable;
    }
  }

  // After a failed launch, the fibers left at a barrier never return: their frames' guards stay on
  // the stacks the next launch reuses, and are cleared here (a finished fiber leaves only entry's
  // frame guarded, which start_fiber clears where it writes). (With the sanitizer's
  // detect_stack_use_after_return, their fake stacks are not freed: a failed launch leaks them.)
  void abandon_fibers() {
#ifdef CONVNET_ASAN
    for (Fiber& fiber : fibers_) ASAN_UNPOISON_MEMORY_REGION(fiber.stack.data(), fiber.stack.size());
#endif
  }

  std::vector<Fiber> fibers_;
  Context scheduler_;
  unsigned current_ = 0;
  void* body_ = nullptr;
  void (*call_)(void*) = nullptr;
  std::exception_ptr error_;
#ifdef CONVNET_ASAN
  const void* scheduler_stack_ = nullptr;
  size_t scheduler_stack_bytes_ = 0;
#endif
  bool shuffled_ = false;
  std::mt19937_64 random_;
};

}  // namespace emu

using emu::blockDim;
using emu::blockIdx;
using emu::gridDim;
using emu::threadIdx;

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __syncthreads() ::emu::Block::instance().barrier()
#define __align__(bytes) __attribute__((aligned(bytes)))

struct alignas(16) float4 {
  float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline unsigned __umulhi(unsigned a, unsigned b) {
  return static_cast<unsigned>((static_cast<uint64_t>(a) * b) >> 32);
}
