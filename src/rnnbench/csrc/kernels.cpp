// The SIMD level float32 runs at (generic, AVX2 + FMA or AVX-512: the best this CPU has, or a lower
// one chosen with set_float_kernels) and the table of kernels (Ops) a loop gets for it.

#include "rnnbench.h"

namespace rnnbench_cpu {

const char* const kLevelNames[] = {"generic", "avx2+fma", "avx512"};
std::atomic<int> g_level{-1};  // -1: the best available

int best_level() {
#ifdef RNNBENCH_X86
  if (cpu_has_avx512()) return kAVX512;
  if (cpu_has_avx2()) return kAVX2;
#endif
  return kGeneric;
}
int level() {
  const int l = g_level.load(std::memory_order_relaxed);
  return l < 0 ? best_level() : l;
}

template <> Ops<float> ops<float>(int cap) {
  Ops<float> o;
#ifdef RNNBENCH_X86
  const int l = std::min(level(), cap);
  if (l >= kAVX512) {
    o.matvec = matvec_avx512;
    o.matmul = matmul_avx512;
    o.axpy = axpy_avx512;
    o.bernoulli_row = bernoulli_row_avx512;
    o.sigmoid = sigmoid_avx512;
    o.tanh = tanh_avx512;
  } else if (l >= kAVX2) {
    o.matvec = matvec_avx2;
    o.matmul = matmul_rows<float, matvec_avx2>;
    o.axpy = axpy_avx2;
    o.bernoulli_row = bernoulli_row_avx2;
    o.sigmoid = sigmoid_avx2;
    o.tanh = tanh_avx2;
  }
#endif
  return o;
}

// Which kernels float32 uses here ("avx512", "avx2+fma" or "generic"), for logs and benchmarks.
std::string float_kernels() { return kLevelNames[level()]; }

// Choose the level ("auto": the best this CPU has; or one it has: "avx512", "avx2+fma"/"avx2",
// "generic"); returns the setting before ("auto" or a level).  For tests and benchmarks of one level
// against another.
std::string set_float_kernels(const std::string& name) {
  const int was = g_level.load(std::memory_order_relaxed);
  const char* const short_names[] = {"generic", "avx2", "avx512"};
  const std::string before = was < 0 ? "auto" : short_names[was];
  int l = -1;
  if (name == "generic") l = kGeneric;
  else if (name == "avx2" || name == "avx2+fma") l = kAVX2;
  else if (name == "avx512") l = kAVX512;
  else TORCH_CHECK(name == "auto", "unknown float kernels '", name, "': expected auto, avx512, avx2 or generic");
  TORCH_CHECK(l <= best_level(), "this CPU cannot run the ", name, " kernels (its best: ", kLevelNames[best_level()], ")");
  g_level.store(l, std::memory_order_relaxed);
  return before;
}

}  // namespace rnnbench_cpu
