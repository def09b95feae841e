// The CUDA emulator's Python module, convnet._emulator: every kernel of kernels/all.cu compiled
// for the host against emulate.h, launched by name with NumPy arrays for pointers.
//
//   launch(name, grid, block, args)   name "kernel<float>" or "kernel<double>"; grid and block
//                                     3-tuples; args a tuple in the kernel's parameter order
//   kernels()                         the registered names
//   fiber_switch                      how a block's threads switch at a barrier (emulate.h)
//   flushes_float_denormals           whether float kernels flush denormals here (below)
//   shuffle(seed)                     later launches run their blocks, and their threads between
//                                     barriers, in a random order from this seed; None: in order
//                                     (emulate.h: a result that changes with it is a race)
//
// Built with AddressSanitizer (kernels/build.py EMULATOR_ASAN_FLAGS), the module is
// convnet._emulator_asan: the arrays a kernel gets are then copies in allocations of their own
// (LaunchArrays; not those that overlap another argument), so that a read or write past an
// array's end, or past a __shared__ or local array's, is reported with the kernel's source line.
// Python must load the sanitizer's runtime first (LD_PRELOAD; convnet/backend/cuda/launch.py).
//
// A float kernel runs as on a GPU, whose float arithmetic flushes denormals (kernels/build.py's
// --ftz=true; CuPy's NVRTC likewise): its launch sets the host's flush-to-zero and
// denormals-are-zero modes (x86-64's MXCSR FTZ and DAZ; AArch64's FPCR.FZ, which does both) and
// restores them after. A double kernel keeps denormals, as a GPU's double arithmetic does. The
// fibers of a launch share the mode (emulate.h switches no floating-point state).
//
// Arguments are converted by the kernel's own signature, as strictly as a GPU needs them: a
// pointer T* takes a C-contiguous NumPy array of exactly T's dtype (writeable unless const T*),
// a scalar takes a NumPy scalar of exactly its type (np.int32 for int, np.float32 for float...),
// since a GPU kernel reads a Python int or float of the wrong width as garbage. So the Python
// launch code that works here passes the right types on a GPU too.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <new>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "emulate.h"

#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

#ifndef CONVNET_EMULATOR_MODULE
#define CONVNET_EMULATOR_MODULE _emulator
#endif

namespace py = pybind11;

namespace convnet_emulator {

using Launch = std::function<void(dim3, dim3, const py::tuple&)>;

std::map<std::string, Launch>& registry() {
  static std::map<std::string, Launch> kernels;
  return kernels;
}

std::string describe(const py::handle& value) {
  return py::str(py::type::of(value).attr("__name__")).cast<std::string>();
}

// The memory a launch's kernel reads and writes for each array argument. Without
// AddressSanitizer, the array's own. With it, a copy in an allocation of its own that ends where
// the array ends, written back after the launch, so that an access past the end is reported also
// where the array is a view into a larger buffer. The copy keeps the address's place within 16
// bytes, which decides the kernels' vector loads; the bytes before it are poisoned as far as the
// sanitizer's 8-byte granules allow. Arguments that are the same memory share one copy; an array
// that overlaps another argument otherwise keeps its own memory, since copies could not keep
// their writes consistent.
class LaunchArrays {
 public:
  explicit LaunchArrays([[maybe_unused]] const py::tuple& args) {
#ifdef CONVNET_ASAN
    for (const py::handle& value : args) {
      if (py::isinstance<py::array>(value)) ranges_.push_back(range(value.cast<py::array>()));
    }
#endif
  }

  void* place(const py::array& array, bool writeable) {
    void* own = writeable ? const_cast<py::array&>(array).mutable_data()
                          : const_cast<void*>(array.data());
#ifdef CONVNET_ASAN
    const Range mine = range(array);
    for (const Range& other : ranges_) {
      if (other != mine && other.first < mine.second && mine.first < other.second) return own;
    }
    for (Copy& copy : copies_) {
      if (copy.range == mine) {
        copy.writeable = copy.writeable || writeable;
        return copy.data;
      }
    }
    const size_t offset = mine.first % kAlignment, bytes = mine.second - mine.first;
    std::unique_ptr<char[], Free> storage(
        static_cast<char*>(::operator new[](offset + bytes, std::align_val_t{kAlignment})));
    char* data = storage.get() + offset;
    std::memcpy(data, own, bytes);
    ASAN_POISON_MEMORY_REGION(storage.get(), offset);
    copies_.push_back({mine, writeable, data, std::move(storage)});
    return data;
#else
    return own;
#endif
  }

  // After the launch, also one that failed part way (as the plain build leaves its writes): the
  // copies' contents into the arrays they stand for.
  ~LaunchArrays() {
#ifdef CONVNET_ASAN
    for (const Copy& copy : copies_) {
      if (copy.writeable) {
        std::memcpy(reinterpret_cast<void*>(copy.range.first), copy.data,
                    copy.range.second - copy.range.first);
      }
    }
#endif
  }

#ifdef CONVNET_ASAN
 private:
  using Range = std::pair<uintptr_t, uintptr_t>;   // [first byte, past the last)
  static constexpr size_t kAlignment = 16;
  struct Free {
    void operator()(char* pointer) const {
      ::operator delete[](pointer, std::align_val_t{kAlignment});
    }
  };
  struct Copy {
    Range range;
    bool writeable;
    char* data;
    std::unique_ptr<char[], Free> storage;
  };

  static Range range(const py::array& array) {
    const auto first = reinterpret_cast<uintptr_t>(array.data());
    return {first, first + static_cast<size_t>(array.nbytes())};
  }

  std::vector<Range> ranges_;
  std::vector<Copy> copies_;
#endif
};

// While it lives, float arithmetic on this thread flushes denormal inputs and results to zero.
class FlushDenormals {
 public:
#if defined(__x86_64__)
  static constexpr bool kAvailable = true;
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | kFlushToZero | kDenormalsAreZero); }
  ~FlushDenormals() { _mm_setcsr(saved_); }

 private:
  static constexpr unsigned kFlushToZero = 1u << 15, kDenormalsAreZero = 1u << 6;
  unsigned saved_;
#elif defined(__aarch64__)
  static constexpr bool kAvailable = true;
  FlushDenormals() : saved_(fpcr()) { set_fpcr(saved_ | kFlushToZero); }
  ~FlushDenormals() { set_fpcr(saved_); }

 private:
  static constexpr uint64_t kFlushToZero = uint64_t{1} << 24;
  static uint64_t fpcr() {
    uint64_t value;
    asm volatile("mrs %0, fpcr" : "=r"(value));
    return value;
  }
  static void set_fpcr(uint64_t value) { asm volatile("msr fpcr, %0" : : "r"(value) : "memory"); }
  uint64_t saved_;
#else
  static constexpr bool kAvailable = false;   // denormals kept: tests say so and skip
#endif
};

// Argument `index` of the kernel, converted to the parameter type P.
template <typename P>
P convert(const py::handle& value, size_t index, LaunchArrays& arrays) {
  const std::string where = "argument " + std::to_string(index) + ": ";
  if constexpr (std::is_pointer_v<P>) {
    using Element = std::remove_const_t<std::remove_pointer_t<P>>;
    if (!py::isinstance<py::array>(value)) {
      throw py::type_error(where + "expected a NumPy array, got " + describe(value));
    }
    auto array = py::reinterpret_borrow<py::array>(value);
    if (!array.dtype().is(py::dtype::of<Element>())) {
      throw py::type_error(where + "expected an array of " +
                           py::str(py::dtype::of<Element>()).cast<std::string>() + ", got " +
                           py::str(array.dtype()).cast<std::string>());
    }
    if (!(array.flags() & py::array::c_style)) {
      throw py::value_error(where + "the array is not C-contiguous");
    }
    constexpr bool writeable = !std::is_const_v<std::remove_pointer_t<P>>;
    if (writeable && !array.writeable()) throw py::value_error(where + "the array is read-only");
    return static_cast<P>(arrays.place(array, writeable));
  } else {
    const auto dtype = py::dtype::of<P>();
    // Looked up once and never released: a static py::object would outlive the interpreter.
    static const py::handle numpy_generic =
        py::object(py::module_::import("numpy").attr("generic")).release();
    if (!py::isinstance(value, numpy_generic) || !value.attr("dtype").cast<py::dtype>().is(dtype)) {
      throw py::type_error(where + "expected a NumPy " + py::str(dtype).cast<std::string>() +
                           " scalar, got " + describe(value));
    }
    return value.cast<P>();
  }
}

template <bool kFlush, typename... Params, size_t... I>
void call(void (*kernel)(Params...), dim3 grid, dim3 block, const py::tuple& args,
          std::index_sequence<I...>) {
  LaunchArrays arrays(args);
  std::tuple<Params...> converted{convert<Params>(args[I], I, arrays)...};
  std::optional<FlushDenormals> flush;
  if constexpr (kFlush) flush.emplace();
  emu::Block::instance().run_grid(grid, block, [&] { std::apply(kernel, converted); });
}

// Registers `kernel`; kFlush: its float arithmetic flushes denormals, as a GPU's does.
template <bool kFlush, typename... Params>
void add(const std::string& name, void (*kernel)(Params...)) {
  registry()[name] = [name, kernel](dim3 grid, dim3 block, const py::tuple& args) {
    if (args.size() != sizeof...(Params)) {
      throw py::type_error(name + " takes " + std::to_string(sizeof...(Params)) +
                           " arguments, got " + std::to_string(args.size()));
    }
    call<kFlush>(kernel, grid, block, args, std::index_sequence_for<Params...>{});
  };
}

struct Registration {
  template <typename FloatKernel, typename DoubleKernel>
  Registration(const char* name, FloatKernel float_kernel, DoubleKernel double_kernel) {
    add<true>(std::string(name) + "<float>", float_kernel);
    add<false>(std::string(name) + "<double>", double_kernel);
  }
};

}  // namespace convnet_emulator

// The kernels get internal linkage: AddressSanitizer guards the storage of a function's static
// variables only then, and each __shared__ array is one (emulate.h), of a template, which would
// otherwise be a COMDAT symbol that it leaves unguarded. Their headers come first, outside.
#define CONVNET_EMULATOR
#include <cmath>
namespace {
#include "all.cu"
}  // namespace

namespace {

dim3 to_dim3(const std::tuple<unsigned, unsigned, unsigned>& value) {
  return dim3(std::get<0>(value), std::get<1>(value), std::get<2>(value));
}

// Shared memory is static and the scheduler one: launches must not overlap, nor a change of order
// a launch.
std::mutex& one_launch_at_a_time() {
  static std::mutex mutex;
  return mutex;
}

void launch(const std::string& name, const std::tuple<unsigned, unsigned, unsigned>& grid,
            const std::tuple<unsigned, unsigned, unsigned>& block, const py::tuple& args) {
  const auto found = convnet_emulator::registry().find(name);
  if (found == convnet_emulator::registry().end()) {
    throw py::key_error("the emulator has no kernel " + name);
  }
  std::lock_guard<std::mutex> lock(one_launch_at_a_time());
  found->second(to_dim3(grid), to_dim3(block), args);
}

}  // namespace

PYBIND11_MODULE(CONVNET_EMULATOR_MODULE, module) {
  module.doc() = "The CUDA kernels of kernels/all.cu run on the host (see kernels/emulate.h).";
  module.def("launch", &launch, py::arg("name"), py::arg("grid"), py::arg("block"),
             py::arg("args"), "Run kernel `name` over grid × block threads; see the source.");
  module.def(
      "shuffle",
      [](std::optional<long long> seed) {
        if (seed && *seed < 0) throw py::value_error("shuffle: the seed must be ≥ 0 or None");
        std::lock_guard<std::mutex> lock(one_launch_at_a_time());
        emu::Block::instance().shuffle(seed.value_or(-1));
      },
      py::arg("seed"), "Run blocks and threads in a random order from `seed` (None: in order).");
  module.attr("fiber_switch") = emu::kFiberSwitch;
  module.attr("flushes_float_denormals") = convnet_emulator::FlushDenormals::kAvailable;
  module.def("kernels", [] {
    std::vector<std::string> names;
    for (const auto& entry : convnet_emulator::registry()) names.push_back(entry.first);
    return names;
  });
}
