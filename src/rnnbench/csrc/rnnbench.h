// Shared declarations of the fused CPU extension, which rnnbench/fused.py compiles from csrc/*.cpp.
//
// Held here: the generic element-wise kernels (any CPU, float32 and float64, templates), the
// float32 SIMD kernels' declarations (simd_avx2.cpp, simd_avx512.cpp), the table of kernels a loop
// runs (Ops, filled for the SIMD level in use: kernels.cpp), the recurrent weights' layout and the
// per-step product the recurrences share, and the operators every other file defines (registered
// as torch.ops.rnnbench.* in ops.cpp).
//
// The fused recurrences of the paper's cells run forward and hand-derived backward over a whole
// sequence.  The input projection (W x + b for every step) and the weight gradients are bulk
// matrix products done by the caller (rnnbench/fused.py); these files only run the time loop.
//
// Shapes: xw (T, R, G*H) pre-activations from the input, h0/c0 (R, H), U (H, G*H) recurrent
// weights (columns grouped by gate), P (3, H) peepholes.  Everything contiguous, same dtype.
// Gate order: tanh [a]; gru [z, r, n]; lstm [i, f, g, o].
//
// Stacked members (several models of one architecture trained side by side, rnnbench/stack.py):
// U (K, H, G*H) and P (K, 3, H) hold K members' weights, and the R rows of xw/h0/c0 are K
// blocks of R/K rows, member by member.
//
// At the paper's batch of one sequence a step multiplies one row per member by a small matrix:
// a library call costs more in overhead than the arithmetic.  Up to kSmallRows rows per member
// the whole step therefore runs on raw pointers in these files (a register-blocked row-times-matrix
// product and vectorized sigmoid/tanh, AVX-512 or AVX2+FMA where the CPU has them, chosen at run
// time), and all steps of one member run before the next member's (its weights stay in L1; the
// LSTM forward runs step by step where all members' weights fit in L2, which measured faster for
// it); with more rows the products are BLAS calls and only the element-wise work is done here.
// Float64 uses the C library's exp/tanh (the equivalence tests run in float64); float32 uses the
// polynomial approximations of simd_*.cpp (within 2 ulp of the C library's).

#pragma once

#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define RNNBENCH_X86 1
#endif

#ifdef RNNBENCH_X86
// The float32 SIMD kernels compile each under its own target attribute (the files need no flags of
// their own): a CPU without AVX-512 runs the AVX2 ones, a CPU without AVX2 the generic ones.
#define AVX2 __attribute__((target("avx2,fma")))
#define AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")))
#endif

namespace rnnbench_cpu {

constexpr int64_t kSmallRows = 8;

// ---------------------------------------------------------------- element-wise math, generic
template <typename T> inline T sigm(T x) { return T(1) / (T(1) + std::exp(-x)); }

// o[0:N] = x[0:N] + h[0:H] @ U[0:H, 0:N] (row stride ldu); x may be null (zero) or equal to o.
template <typename T>
void matvec_generic(T* o, const T* x, const T* __restrict__ h, const T* __restrict__ U, int64_t H, int64_t N,
                    int64_t ldu) {
  for (int64_t j = 0; j < N; ++j) o[j] = x ? x[j] : T(0);
  for (int64_t i = 0; i < H; ++i) {
    const T a = h[i];
    const T* __restrict__ u = U + i * ldu;
    for (int64_t j = 0; j < N; ++j) o[j] += a * u[j];
  }
}
template <typename T> void sigmoid_generic(T* x, int64_t n) { for (int64_t i = 0; i < n; ++i) x[i] = sigm(x[i]); }
template <typename T> void tanh_generic(T* x, int64_t n) { for (int64_t i = 0; i < n; ++i) x[i] = std::tanh(x[i]); }

template <typename T> void axpy_generic(T* __restrict__ y, const T* __restrict__ x, T a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// o[r] = x[r] + h[r] @ U row by row (row r of o/x/h at r * ldo / ldx / ldh; x may be null)
template <typename T, void (*MV)(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t)>
void matmul_rows(T* o, int64_t ldo, const T* x, int64_t ldx, const T* h, int64_t ldh, int64_t rows, const T* U,
                 int64_t H, int64_t N, int64_t ldu) {
  for (int64_t r = 0; r < rows; ++r) MV(o + r * ldo, x ? x + r * ldx : nullptr, h + r * ldh, U, H, N, ldu);
}

template <typename T> T bernoulli_row_generic(const T* l, const T* y, T* g, int64_t n) {
  T acc = T(0);
  for (int64_t i = 0; i < n; ++i) {
    const T e = std::exp(-std::abs(l[i]));
    acc += std::max(l[i], T(0)) + std::log1p(e) - y[i] * l[i];
    if (g) g[i] = (l[i] >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e)) - y[i];
  }
  return acc;
}

// The mixture-of-Gaussians output (heads.cpp): softplus(r) = r above this, torch's threshold.
constexpr double kSoftplusThreshold = 20.0;

// t = z^2/2 + log s, z, q = 1/s and sp' (softplus' of r) for n elements, yt the target tiled per component.
template <typename T>
void mixture_terms_generic(const T* mu, const T* r, const T* yt, T min_scale, int64_t n, T* t, T* z, T* q, T* sl) {
  for (int64_t i = 0; i < n; ++i) {
    const bool big = r[i] > T(kSoftplusThreshold);
    const T e = std::exp(r[i]);
    const T s = min_scale + (big ? r[i] : std::log1p(e));
    const T zi = (yt[i] - mu[i]) / s;
    t[i] = T(0.5) * zi * zi + std::log(s);
    z[i] = zi;
    q[i] = T(1) / s;
    sl[i] = big ? T(1) : e / (e + T(1));
  }
}

// RMSProp over one member's weights (rmsprop.cpp): sq = alpha sq + (1 - alpha) g^2; p = p - lr g / (sqrt(sq) + eps).
template <typename T>
void rmsprop_row(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ sq, int64_t n, T alpha, T neg_lr, T eps) {
  const T beta = T(1) - alpha;
  for (int64_t i = 0; i < n; ++i) {
    const T s = alpha * sq[i] + beta * (g[i] * g[i]);
    sq[i] = s;
    p[i] += (g[i] * neg_lr) / (std::sqrt(s) + eps);
  }
}

// ---------------------------------------------------------------- float32 SIMD kernels
// (simd_avx2.cpp and simd_avx512.cpp; call them only where the CPU has the level: cpu_has_*)
#ifdef RNNBENCH_X86
bool cpu_has_avx2();
void matvec_avx2(float* o, const float* x, const float* __restrict__ h, const float* __restrict__ U, int64_t H,
                 int64_t N, int64_t ldu);
void sigmoid_avx2(float* x, int64_t n);
void tanh_avx2(float* x, int64_t n);
float bernoulli_row_avx2(const float* __restrict__ l, const float* __restrict__ y, float* __restrict__ g, int64_t n);
void axpy_avx2(float* __restrict__ y, const float* __restrict__ x, float a, int64_t n);
void mixture_terms_avx2(const float* mu, const float* r, const float* yt, float min_scale, int64_t n, float* t,
                        float* z, float* q, float* sl);
void rmsprop_row_avx2(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ sq, int64_t n,
                      float alpha, float neg_lr, float eps);

bool cpu_has_avx512();
void matvec_avx512(float* o, const float* x, const float* __restrict__ h, const float* __restrict__ U, int64_t H,
                   int64_t N, int64_t ldu);
void matmul_avx512(float* o, int64_t ldo, const float* x, int64_t ldx, const float* h, int64_t ldh, int64_t rows,
                   const float* U, int64_t H, int64_t N, int64_t ldu);
void sigmoid_avx512(float* x, int64_t n);
void tanh_avx512(float* x, int64_t n);
float bernoulli_row_avx512(const float* __restrict__ l, const float* __restrict__ y, float* __restrict__ g, int64_t n);
void axpy_avx512(float* __restrict__ y, const float* __restrict__ x, float a, int64_t n);
void mixture_terms_avx512(const float* mu, const float* r, const float* yt, float min_scale, int64_t n, float* t,
                          float* z, float* q, float* sl);
void rmsprop_row_avx512(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ sq, int64_t n,
                        float alpha, float neg_lr, float eps);
#endif

// ---------------------------------------------------------------- the kernels a loop runs
template <typename T> struct Ops {
  T (*bernoulli_row)(const T*, const T*, T*, int64_t) = bernoulli_row_generic<T>;
  void (*matvec)(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t) = matvec_generic<T>;
  // o[r] = x[r] + h[r] @ U for the rows of one member (up to kSmallRows; see matmul_avx512)
  void (*matmul)(T*, int64_t, const T*, int64_t, const T*, int64_t, int64_t, const T*, int64_t, int64_t,
                 int64_t) = matmul_rows<T, matvec_generic<T>>;
  void (*axpy)(T*, const T*, T, int64_t) = axpy_generic<T>;
  void (*sigmoid)(T*, int64_t) = sigmoid_generic<T>;
  void (*tanh)(T*, int64_t) = tanh_generic<T>;
};
// The SIMD level float32 runs at: the best this CPU has, unless set_float_kernels chose a lower one
// (tests and benchmarks compare the levels on one machine).
enum Level { kGeneric = 0, kAVX2 = 1, kAVX512 = 2 };
int best_level();  // (kernels.cpp)
int level();

// The kernels of the level in use, or of ``cap`` where that is lower (a loop that measured slower
// with the wider kernels keeps the narrower ones).
template <typename T> Ops<T> ops(int cap = kAVX512) { return Ops<T>(); }
template <> Ops<float> ops<float>(int cap);  // (kernels.cpp)

// The kernels for a recurrence with weights U: a member's weights larger than L1 (the speech sizes,
// ~0.6 MB) stream from L2, and there the 512-bit kernels measured 0-8% slower than the 256-bit
// ones (scripts/bench_kernels.py --task speech --members 1), so those keep AVX2.
template <typename T> Ops<T> ops_for(const at::Tensor& U, int cap = kAVX512) {
  return ops<T>(U.size(-2) * U.size(-1) > 16384 ? std::min(cap, static_cast<int>(kAVX2)) : cap);
}

// Member by member, one member's rows of consecutive steps lie R rows apart: more than a page at
// the paper's sizes, where the hardware's stream prefetchers stop, so each step would wait on
// memory for its inputs (measured: +30-50% on data not in cache).  The loops fetch the rows of
// the step kPrefetchSteps ahead themselves.
constexpr int64_t kPrefetchSteps = 2;
template <typename T> inline void prefetch(const T* p, int64_t n, bool write = false) {
  const char* c = reinterpret_cast<const char*>(p);
  const int64_t bytes = n * static_cast<int64_t>(sizeof(T));
  for (int64_t o = 0; o < bytes; o += 64) {
    if (write) __builtin_prefetch(c + o, 1, 3);
    else __builtin_prefetch(c + o, 0, 3);
  }
}

// ---------------------------------------------------------------- the per-step product
inline void check(const at::Tensor& t, const char* name, int64_t dim) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.dim() == dim, name, " must have ", dim, " dimensions");
}

// Weights of one model (2-d) or of K stacked members (3-d, one more leading dimension).
inline int64_t members(const at::Tensor& W, int64_t rows, const char* name, int64_t dim) {
  TORCH_CHECK(W.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(W.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(W.dim() == dim || W.dim() == dim + 1, name, " must have ", dim, " or ", dim + 1, " dimensions");
  const int64_t K = W.dim() == dim ? 1 : W.size(0);
  TORCH_CHECK(K >= 1 && rows % K == 0, name, ": ", rows, " rows cannot be split among ", K, " members");
  return K;
}

// Recurrent weights of K members, (K, Hin, ld) contiguous, of which columns [col, col + N) are used.
template <typename T> struct Weights {
  const T* data;
  int64_t K, Hin, ld, col, N;
  at::Tensor owner;  // (keeps a transposed copy alive)
};

// A copy of the (K, Hin, N) matrices m with each row padded to a whole number of 64-byte lines:
// every row then starts on a line, so that no 512-bit load of the product straddles two lines.
template <typename T> Weights<T> padded(const at::Tensor& m) {
  const int64_t K = m.dim() == 2 ? 1 : m.size(0), Hin = m.size(-2), N = m.size(-1);
  const int64_t per_line = 64 / static_cast<int64_t>(sizeof(T));
  const int64_t ld = (N + per_line - 1) / per_line * per_line;
  at::Tensor t = at::empty({K, Hin, ld}, m.options());  // (the CPU allocator aligns to 64 bytes)
  t.narrow(-1, 0, N).copy_(m.dim() == 2 ? m.unsqueeze(0) : m);
  return {t.data_ptr<T>(), K, Hin, ld, 0, N, t};
}

// Columns [col, col + N) of the recurrent weights U, (K, Hin, N), for the forward pass.
template <typename T> Weights<T> weights(const at::Tensor& U, int64_t col, int64_t N) {
  return padded<T>(U.narrow(-1, col, N));
}

// Columns [col, col + N) of U, transposed: (K, N, Hin), for the backward pass.
template <typename T> Weights<T> transposed(const at::Tensor& U, int64_t col, int64_t N) {
  return padded<T>(U.narrow(-1, col, N).transpose(-1, -2));
}

// Member k's block of W: its first used column, rows W.ld apart.
template <typename T> inline const T* member_block(const Weights<T>& W, int64_t k) {
  return W.data + k * W.Hin * W.ld + W.col;
}

// out (R, W.N), contiguous = h @ W for R rows in K member blocks; row r of h starts at h + r * ldh.
template <typename T>
void product(const Ops<T>& op, T* out, const T* h, int64_t ldh, int64_t R, const Weights<T>& W) {
  const int64_t K = W.K, BK = R / K, N = W.N, Hin = W.Hin;
  const int64_t mstride = W.Hin * W.ld;
  if (BK <= kSmallRows) {
    for (int64_t k = 0; k < K; ++k)
      op.matmul(out + k * BK * N, N, nullptr, 0, h + k * BK * ldh, ldh, BK, member_block(W, k), Hin, N, W.ld);
    return;
  }
  auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  at::Tensor o = at::from_blob(out, {K, BK, N}, opts);
  at::Tensor a = at::from_blob(const_cast<T*>(h), {K, BK, Hin}, {BK * ldh, ldh, 1}, opts);
  at::Tensor b = at::from_blob(const_cast<T*>(W.data) + W.col, {K, Hin, N}, {mstride, W.ld, 1}, opts);
  at::bmm_out(o, a, b);
}

// ---------------------------------------------------------------- the operators (torch.ops.rnnbench.*, ops.cpp)
// recurrences.cpp
at::Tensor tanh_forward(const at::Tensor& xw, const at::Tensor& h0, const at::Tensor& U);
std::tuple<at::Tensor, at::Tensor> tanh_backward(const at::Tensor& dhs, const at::Tensor& hs, const at::Tensor& U);
std::tuple<at::Tensor, at::Tensor> gru_forward(const at::Tensor& xw, const at::Tensor& h0, const at::Tensor& U);
std::tuple<at::Tensor, at::Tensor> gru_backward(const at::Tensor& dhs, const at::Tensor& hs, const at::Tensor& h0,
                                                const at::Tensor& U, const at::Tensor& gates);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_forward(
    const at::Tensor& xw, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& U, const at::Tensor& P);
std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_backward(const at::Tensor& dhs, const at::Tensor& dcs,
                                                             const at::Tensor& cs, const at::Tensor& tcs,
                                                             const at::Tensor& c0, const at::Tensor& U,
                                                             const at::Tensor& P, const at::Tensor& gates);
// sparse_proj.cpp
at::Tensor sparse_proj(const at::Tensor& W, const at::Tensor& b, const at::Tensor& rows, const at::Tensor& cols,
                       const at::Tensor& vals, int64_t T, int64_t B);
at::Tensor sparse_proj_backward(const at::Tensor& dxw, const at::Tensor& rows, const at::Tensor& cols,
                                const at::Tensor& vals, int64_t K, int64_t D);
// heads.cpp
std::tuple<at::Tensor, at::Tensor> bernoulli_nll(const at::Tensor& logits, const at::Tensor& targets, bool grad);
std::tuple<at::Tensor, at::Tensor> mixture_nll(const at::Tensor& out, const at::Tensor& targets,
                                               const at::Tensor& weight, int64_t C, double min_scale, bool grad);
// rmsprop.cpp
void rmsprop_step(at::Tensor p, const at::Tensor& g, at::Tensor sq, const at::Tensor& lr, const at::Tensor& update,
                  double alpha, double eps);
// kernels.cpp
std::string float_kernels();
std::string set_float_kernels(const std::string& name);

}  // namespace rnnbench_cpu
