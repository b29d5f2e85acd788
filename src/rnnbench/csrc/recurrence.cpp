// Fused CPU recurrences of the paper's cells: forward and hand-derived backward over a whole
// sequence.  The input projection (W x + b for every step) and the weight gradients are bulk
// matrix products done by the caller (rnnbench/fused.py); this file only runs the time loop.
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
// the whole step therefore runs on raw pointers in this file (a register-blocked row-times-matrix
// product and vectorized sigmoid/tanh, AVX-512 or AVX2+FMA where the CPU has them, chosen at run
// time), and all steps of one member run before the next member's (its weights stay in L1; the
// LSTM forward runs step by step where all members' weights fit in L2, which measured faster for
// it); with more rows the products are BLAS calls and only the element-wise work is done here.
// Float64 uses the C library's exp/tanh (the equivalence tests run in float64); float32 uses the
// polynomial approximations below (within 2 ulp of the C library's).

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

namespace {

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

// ---------------------------------------------------------------- element-wise math, AVX2 + FMA
#ifdef RNNBENCH_X86
#define AVX2 __attribute__((target("avx2,fma")))

AVX2 inline __m256i tail_mask(int64_t n) {  // the first n (< 8) lanes
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), idx);
}

// exp(x) for float lanes (Cephes expf: range reduction by ln 2, degree-6 polynomial; ~1 ulp).
AVX2 inline __m256 exp256(__m256 x) {
  // (min/max return their second operand when either is NaN: a NaN stays NaN, so divergence shows)
  x = _mm256_min_ps(_mm256_set1_ps(88.3f), _mm256_max_ps(_mm256_set1_ps(-87.3f), x));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

AVX2 inline __m256 sigmoid256(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(one, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

// tanh(x): Cephes tanhf (odd polynomial below |x| = 0.625, 1 - 2 / (exp(2|x|) + 1) above).
AVX2 inline __m256 tanh256(__m256 x) {
  const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
  __m256 ax = _mm256_andnot_ps(sign, x);
  __m256 z = _mm256_mul_ps(x, x);
  __m256 p = _mm256_set1_ps(-5.70498872745e-3f);
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954e-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531e-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036e-1f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422e-1f));
  __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
  __m256 e = exp256(_mm256_add_ps(ax, ax));
  __m256 big = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
  big = _mm256_or_ps(big, _mm256_and_ps(sign, x));  // odd
  return _mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ));
}

// x[i] = F(x[i]) in place, 8 lanes at a time and a masked tail.
template <__m256 (*F)(__m256)>
AVX2 void map_avx2(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, F(_mm256_loadu_ps(x + i)));
  if (i < n) {
    __m256i m = tail_mask(n - i);
    _mm256_maskstore_ps(x + i, m, F(_mm256_maskload_ps(x + i, m)));
  }
}

// R vectors of 8 columns (the last one ``last`` lanes wide) of o = h @ U, with P partial sums over
// the rows of U so that R * P independent chains hide the latency of the multiply-adds.
// With x, the sums start from x (the pre-activations from the input): o = x + h @ U in one pass.
template <int R, int P>
AVX2 inline void matvec_block(float* o, const float* x, const float* __restrict__ h, const float* __restrict__ U,
                              int64_t H, int64_t ldu, int64_t last) {
  __m256 acc[R * P];
  for (int q = 0; q < R * P; ++q) acc[q] = _mm256_setzero_ps();
  const __m256i tail = tail_mask(last);
  if (x) {
    for (int r = 0; r < R - 1; ++r) acc[r * P] = _mm256_loadu_ps(x + 8 * r);
    acc[(R - 1) * P] = last == 8 ? _mm256_loadu_ps(x + 8 * (R - 1)) : _mm256_maskload_ps(x + 8 * (R - 1), tail);
  }
  int64_t i = 0;
  for (; i + P <= H; i += P) {
    for (int p = 0; p < P; ++p) {
      const __m256 b = _mm256_broadcast_ss(h + i + p);
      const float* u = U + (i + p) * ldu;
      for (int r = 0; r < R - 1; ++r) acc[r * P + p] = _mm256_fmadd_ps(b, _mm256_loadu_ps(u + 8 * r), acc[r * P + p]);
      const __m256 ul = last == 8 ? _mm256_loadu_ps(u + 8 * (R - 1)) : _mm256_maskload_ps(u + 8 * (R - 1), tail);
      acc[(R - 1) * P + p] = _mm256_fmadd_ps(b, ul, acc[(R - 1) * P + p]);
    }
  }
  for (; i < H; ++i) {
    const __m256 b = _mm256_broadcast_ss(h + i);
    const float* u = U + i * ldu;
    for (int r = 0; r < R - 1; ++r) acc[r * P] = _mm256_fmadd_ps(b, _mm256_loadu_ps(u + 8 * r), acc[r * P]);
    const __m256 ul = last == 8 ? _mm256_loadu_ps(u + 8 * (R - 1)) : _mm256_maskload_ps(u + 8 * (R - 1), tail);
    acc[(R - 1) * P] = _mm256_fmadd_ps(b, ul, acc[(R - 1) * P]);
  }
  for (int r = 0; r < R; ++r) {
    __m256 v = acc[r * P];
    for (int p = 1; p < P; ++p) v = _mm256_add_ps(v, acc[r * P + p]);
    if (r < R - 1 || last == 8) _mm256_storeu_ps(o + 8 * r, v);
    else _mm256_maskstore_ps(o + 8 * r, tail, v);
  }
}

// o[0:N] = x[0:N] + h[0:H] @ U[0:H, 0:N] (row stride ldu; x null: zero; x may equal o): blocks of 8
// vectors of 8 columns, then the rest.
AVX2 void matvec_avx2(float* o, const float* x, const float* __restrict__ h, const float* __restrict__ U, int64_t H,
                      int64_t N, int64_t ldu) {
  int64_t j = 0;
  for (; j + 64 <= N; j += 64) matvec_block<8, 1>(o + j, x ? x + j : nullptr, h, U + j, H, ldu, 8);
  const int64_t rest = N - j;
  if (rest <= 0) return;
  const int64_t nv = (rest + 7) / 8, last = rest - 8 * (nv - 1);
  const float* xj = x ? x + j : nullptr;
  switch (nv) {
    case 1: matvec_block<1, 8>(o + j, xj, h, U + j, H, ldu, last); break;
    case 2: matvec_block<2, 4>(o + j, xj, h, U + j, H, ldu, last); break;
    case 3: matvec_block<3, 3>(o + j, xj, h, U + j, H, ldu, last); break;
    case 4: matvec_block<4, 2>(o + j, xj, h, U + j, H, ldu, last); break;
    case 5: matvec_block<5, 2>(o + j, xj, h, U + j, H, ldu, last); break;
    case 6: matvec_block<6, 2>(o + j, xj, h, U + j, H, ldu, last); break;
    default: matvec_block<7, 1>(o + j, xj, h, U + j, H, ldu, last); break;
  }
}

// log(x) for positive normal float lanes (Cephes logf: x = m 2^e, m in [sqrt(1/2), sqrt(2)), a
// degree-8 polynomial in m - 1; ~1 ulp).
AVX2 inline __m256 log256(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  __m256i xi = _mm256_castps_si256(x);
  __m256 e = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(xi, 23), _mm256_set1_epi32(126)));
  __m256 m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(xi, _mm256_set1_epi32(0x007fffff)),
                                                 _mm256_set1_epi32(0x3f000000)));  // in [0.5, 1)
  __m256 small = _mm256_cmp_ps(m, _mm256_set1_ps(0.707106781186547524f), _CMP_LT_OQ);
  e = _mm256_sub_ps(e, _mm256_and_ps(small, one));
  m = _mm256_sub_ps(_mm256_add_ps(m, _mm256_and_ps(small, m)), one);
  __m256 z = _mm256_mul_ps(m, m);
  __m256 y = _mm256_set1_ps(7.0376836292e-2f);
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-1.1514610310e-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(1.1676998740e-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-1.2420140846e-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(1.4249322787e-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-1.6668057665e-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(2.0000714765e-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(-2.4999993993e-1f));
  y = _mm256_fmadd_ps(y, m, _mm256_set1_ps(3.3333331174e-1f));
  y = _mm256_mul_ps(_mm256_mul_ps(y, m), z);
  y = _mm256_fmadd_ps(e, _mm256_set1_ps(-2.12194440e-4f), y);
  y = _mm256_fnmadd_ps(_mm256_set1_ps(0.5f), z, y);
  return _mm256_fmadd_ps(e, _mm256_set1_ps(0.693359375f), _mm256_add_ps(m, y));
}

// One frame's Bernoulli NLL over n outputs, sum of softplus(l) - y l, and (if g) g = sigmoid(l) - y.
AVX2 float bernoulli_row_avx2(const float* __restrict__ l, const float* __restrict__ y, float* __restrict__ g,
                              int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps(), sign = _mm256_set1_ps(-0.0f);
  __m256 acc = zero;
  for (int64_t i = 0; i < n; i += 8) {
    const __m256i m = tail_mask(n - i < 8 ? n - i : 8);
    const __m256 lv = _mm256_maskload_ps(l + i, m), yv = _mm256_maskload_ps(y + i, m);
    const __m256 e = exp256(_mm256_or_ps(lv, sign));  // exp(-|l|), in (0, 1]
    const __m256 u = _mm256_add_ps(one, e);
    const __m256 d = _mm256_sub_ps(u, one);  // log1p(e) = log(u) e / (u - 1), exact where u rounds to 1
    const __m256 lp = _mm256_blendv_ps(_mm256_div_ps(_mm256_mul_ps(log256(u), e), d), e,
                                       _mm256_cmp_ps(d, zero, _CMP_EQ_OQ));
    __m256 v = _mm256_sub_ps(_mm256_add_ps(_mm256_max_ps(lv, zero), lp), _mm256_mul_ps(yv, lv));
    acc = _mm256_add_ps(acc, _mm256_and_ps(v, _mm256_castsi256_ps(m)));
    if (g) {
      const __m256 r = _mm256_div_ps(one, u);  // sigmoid(|l|)
      const __m256 sg = _mm256_blendv_ps(_mm256_mul_ps(e, r), r, _mm256_cmp_ps(lv, zero, _CMP_GE_OQ));
      _mm256_maskstore_ps(g + i, m, _mm256_sub_ps(sg, yv));
    }
  }
  __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  s4 = _mm_hadd_ps(s4, s4);
  s4 = _mm_hadd_ps(s4, s4);
  return _mm_cvtss_f32(s4);
}

// y[0:n] += a * x[0:n]
AVX2 void axpy_avx2(float* __restrict__ y, const float* __restrict__ x, float a, int64_t n) {
  const __m256 av = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

bool cpu_has_avx2() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}

// ---------------------------------------------------------------- element-wise math, AVX-512
// The same algorithms as the AVX2 ones above, 16 lanes wide with mask registers for the tails
// (one 512-bit load feeds 16 multiply-adds: the row-times-matrix product of a batch of one is
// bound by loads), divisions replaced by the reciprocal estimate and a Newton step.  Results differ
// from the AVX2 ones in float rounding (~1 ulp).  They are written out again rather than shared
// through templates: each function compiles under its own target attribute, so that the AVX2 ones
// never contain an AVX-512 instruction (a CPU without it runs them), and GCC and clang both build it.
#define AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")))

AVX512 inline __mmask16 tail_mask16(int64_t n) {  // the first n (<= 16) lanes
  return static_cast<__mmask16>(n >= 16 ? 0xffff : (1u << n) - 1u);
}

AVX512 inline __m512 exp512(__m512 x) {
  x = _mm512_min_ps(_mm512_set1_ps(88.3f), _mm512_max_ps(_mm512_set1_ps(-87.3f), x));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

// 1 / d: the 14-bit hardware estimate and one Newton step (within ~1 ulp of the division, at a
// fraction of a 512-bit division's cost; NaN stays NaN).
AVX512 inline __m512 rcp512(__m512 d) {
  const __m512 r = _mm512_rcp14_ps(d);
  return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(1.0f)), r);
}

AVX512 inline __m512 sigmoid512(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  return rcp512(_mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

AVX512 inline __m512 tanh512(__m512 x) {
  const __m512 sign = _mm512_set1_ps(-0.0f), one = _mm512_set1_ps(1.0f);
  __m512 ax = _mm512_andnot_ps(sign, x);
  __m512 z = _mm512_mul_ps(x, x);
  __m512 p = _mm512_set1_ps(-5.70498872745e-3f);
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(2.06390887954e-2f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-5.37397155531e-2f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.33314422036e-1f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-3.33332819422e-1f));
  __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), x, x);
  __m512 e = exp512(_mm512_add_ps(ax, ax));
  __m512 big = _mm512_fnmadd_ps(_mm512_set1_ps(2.0f), rcp512(_mm512_add_ps(e, one)), one);
  big = _mm512_or_ps(big, _mm512_and_ps(sign, x));  // odd
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.625f), _CMP_LT_OQ), big, small);
}

AVX512 inline __m512 log512(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  __m512i xi = _mm512_castps_si512(x);
  __m512 e = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(xi, 23), _mm512_set1_epi32(126)));
  __m512 m = _mm512_castsi512_ps(_mm512_or_si512(_mm512_and_si512(xi, _mm512_set1_epi32(0x007fffff)),
                                                 _mm512_set1_epi32(0x3f000000)));  // in [0.5, 1)
  const __mmask16 small = _mm512_cmp_ps_mask(m, _mm512_set1_ps(0.707106781186547524f), _CMP_LT_OQ);
  e = _mm512_mask_sub_ps(e, small, e, one);
  m = _mm512_sub_ps(_mm512_mask_add_ps(m, small, m, m), one);
  __m512 z = _mm512_mul_ps(m, m);
  __m512 y = _mm512_set1_ps(7.0376836292e-2f);
  y = _mm512_fmadd_ps(y, m, _mm512_set1_ps(-1.1514610310e-1f));
  y = _mm512_fmadd_ps(y, m, _mm512_set1_ps(1.1676998740e-1f));
  y = _mm512_fmadd_ps(y, m, _mm512_set1_ps(-1.2420140846e-1f));
  y = _mm512_fmadd_ps(y, m, _mm512_set1_ps(1.4249322787e-1f));
  y = _mm512_fmadd_ps(y, m, _mm512_set1_ps(-1.6668057665e-1f));
  y = _mm512_fmadd_ps(y, m, _mm512_set1_ps(2.0000714765e-1f));
  y = _mm512_fmadd_ps(y, m, _mm512_set1_ps(-2.4999993993e-1f));
  y = _mm512_fmadd_ps(y, m, _mm512_set1_ps(3.3333331174e-1f));
  y = _mm512_mul_ps(_mm512_mul_ps(y, m), z);
  y = _mm512_fmadd_ps(e, _mm512_set1_ps(-2.12194440e-4f), y);
  y = _mm512_fnmadd_ps(_mm512_set1_ps(0.5f), z, y);
  return _mm512_fmadd_ps(e, _mm512_set1_ps(0.693359375f), _mm512_add_ps(m, y));
}

template <__m512 (*F)(__m512)>
AVX512 void map_avx512(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, F(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = tail_mask16(n - i);
    _mm512_mask_storeu_ps(x + i, m, F(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

// As matvec_block, R vectors of 16 columns (the last ``last`` lanes wide), P partial sums.
template <int R, int P>
AVX512 inline void matvec_block512(float* o, const float* x, const float* __restrict__ h, const float* __restrict__ U,
                                   int64_t H, int64_t ldu, int64_t last) {
  __m512 acc[R * P];
  for (int q = 0; q < R * P; ++q) acc[q] = _mm512_setzero_ps();
  const __mmask16 tail = tail_mask16(last);
  if (x) {
    for (int r = 0; r < R - 1; ++r) acc[r * P] = _mm512_loadu_ps(x + 16 * r);
    acc[(R - 1) * P] = _mm512_maskz_loadu_ps(tail, x + 16 * (R - 1));
  }
  int64_t i = 0;
  for (; i + P <= H; i += P) {
    for (int p = 0; p < P; ++p) {
      const __m512 b = _mm512_set1_ps(h[i + p]);
      const float* u = U + (i + p) * ldu;
      for (int r = 0; r < R - 1; ++r) acc[r * P + p] = _mm512_fmadd_ps(b, _mm512_loadu_ps(u + 16 * r), acc[r * P + p]);
      acc[(R - 1) * P + p] = _mm512_fmadd_ps(b, _mm512_maskz_loadu_ps(tail, u + 16 * (R - 1)), acc[(R - 1) * P + p]);
    }
  }
  for (; i < H; ++i) {
    const __m512 b = _mm512_set1_ps(h[i]);
    const float* u = U + i * ldu;
    for (int r = 0; r < R - 1; ++r) acc[r * P] = _mm512_fmadd_ps(b, _mm512_loadu_ps(u + 16 * r), acc[r * P]);
    acc[(R - 1) * P] = _mm512_fmadd_ps(b, _mm512_maskz_loadu_ps(tail, u + 16 * (R - 1)), acc[(R - 1) * P]);
  }
  for (int r = 0; r < R; ++r) {
    __m512 v = acc[r * P];
    for (int p = 1; p < P; ++p) v = _mm512_add_ps(v, acc[r * P + p]);
    if (r < R - 1) _mm512_storeu_ps(o + 16 * r, v);
    else _mm512_mask_storeu_ps(o + 16 * r, tail, v);
  }
}

AVX512 void matvec_avx512(float* o, const float* x, const float* __restrict__ h, const float* __restrict__ U,
                          int64_t H, int64_t N, int64_t ldu) {
  int64_t j = 0;
  for (; j + 128 <= N; j += 128) matvec_block512<8, 1>(o + j, x ? x + j : nullptr, h, U + j, H, ldu, 16);
  const int64_t rest = N - j;
  if (rest <= 0) return;
  const int64_t nv = (rest + 15) / 16, last = rest - 16 * (nv - 1);
  const float* xj = x ? x + j : nullptr;
  switch (nv) {
    case 1: matvec_block512<1, 8>(o + j, xj, h, U + j, H, ldu, last); break;
    case 2: matvec_block512<2, 4>(o + j, xj, h, U + j, H, ldu, last); break;
    case 3: matvec_block512<3, 3>(o + j, xj, h, U + j, H, ldu, last); break;
    case 4: matvec_block512<4, 2>(o + j, xj, h, U + j, H, ldu, last); break;
    case 5: matvec_block512<5, 2>(o + j, xj, h, U + j, H, ldu, last); break;
    case 6: matvec_block512<6, 2>(o + j, xj, h, U + j, H, ldu, last); break;
    case 7: matvec_block512<7, 2>(o + j, xj, h, U + j, H, ldu, last); break;
    default: matvec_block512<8, 1>(o + j, xj, h, U + j, H, ldu, last); break;
  }
}

// o[r] = x[r] + h[r] @ U for ``rows`` (<= kSmallRows) rows of one member (row r of o/x/h at r * ldo /
// ldx / ldh; x may be null, or equal o): up to 4 rows at a time share each 512-bit load of U (with
// more rows per member a BLAS call per step is faster: measured at 16 rows).
template <int NR, int NV>
AVX512 inline void matmul_tile512(float* o, int64_t ldo, const float* x, int64_t ldx, const float* __restrict__ h,
                                  int64_t ldh, const float* __restrict__ U, int64_t H, int64_t ldu, int64_t last) {
  __m512 acc[NR][NV];
  const __mmask16 tail = tail_mask16(last);
  for (int r = 0; r < NR; ++r)
    for (int v = 0; v < NV; ++v)
      acc[r][v] = x ? _mm512_maskz_loadu_ps(v == NV - 1 ? tail : 0xffff, x + r * ldx + 16 * v) : _mm512_setzero_ps();
  for (int64_t i = 0; i < H; ++i) {
    const float* u = U + i * ldu;
    __m512 w[NV];
    for (int v = 0; v < NV; ++v) w[v] = _mm512_maskz_loadu_ps(v == NV - 1 ? tail : 0xffff, u + 16 * v);
    for (int r = 0; r < NR; ++r) {
      const __m512 b = _mm512_set1_ps(h[r * ldh + i]);
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(b, w[v], acc[r][v]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int v = 0; v < NV; ++v) _mm512_mask_storeu_ps(o + r * ldo + 16 * v, v == NV - 1 ? tail : 0xffff, acc[r][v]);
}

template <int NR>
AVX512 void matmul_rows512(float* o, int64_t ldo, const float* x, int64_t ldx, const float* h, int64_t ldh,
                           const float* U, int64_t H, int64_t N, int64_t ldu) {
  int64_t j = 0;
  for (; j + 64 <= N; j += 64)
    matmul_tile512<NR, 4>(o + j, ldo, x ? x + j : nullptr, ldx, h, ldh, U + j, H, ldu, 16);
  const int64_t rest = N - j;
  if (rest <= 0) return;
  const int64_t nv = (rest + 15) / 16, last = rest - 16 * (nv - 1);
  const float* xj = x ? x + j : nullptr;
  switch (nv) {
    case 1: matmul_tile512<NR, 1>(o + j, ldo, xj, ldx, h, ldh, U + j, H, ldu, last); break;
    case 2: matmul_tile512<NR, 2>(o + j, ldo, xj, ldx, h, ldh, U + j, H, ldu, last); break;
    case 3: matmul_tile512<NR, 3>(o + j, ldo, xj, ldx, h, ldh, U + j, H, ldu, last); break;
    default: matmul_tile512<NR, 4>(o + j, ldo, xj, ldx, h, ldh, U + j, H, ldu, last); break;
  }
}

AVX512 void matmul_avx512(float* o, int64_t ldo, const float* x, int64_t ldx, const float* h, int64_t ldh,
                          int64_t rows, const float* U, int64_t H, int64_t N, int64_t ldu) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4)
    matmul_rows512<4>(o + r * ldo, ldo, x ? x + r * ldx : nullptr, ldx, h + r * ldh, ldh, U, H, N, ldu);
  switch (rows - r) {
    case 1: matvec_avx512(o + r * ldo, x ? x + r * ldx : nullptr, h + r * ldh, U, H, N, ldu); break;
    case 2: matmul_rows512<2>(o + r * ldo, ldo, x ? x + r * ldx : nullptr, ldx, h + r * ldh, ldh, U, H, N, ldu); break;
    case 3: matmul_rows512<3>(o + r * ldo, ldo, x ? x + r * ldx : nullptr, ldx, h + r * ldh, ldh, U, H, N, ldu); break;
    default: break;
  }
}

AVX512 float bernoulli_row_avx512(const float* __restrict__ l, const float* __restrict__ y, float* __restrict__ g,
                                  int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps(), sign = _mm512_set1_ps(-0.0f);
  __m512 acc = zero;
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask16(n - i);
    const __m512 lv = _mm512_maskz_loadu_ps(m, l + i), yv = _mm512_maskz_loadu_ps(m, y + i);
    const __m512 e = exp512(_mm512_or_ps(lv, sign));  // exp(-|l|), in (0, 1]
    const __m512 u = _mm512_add_ps(one, e);
    const __m512 d = _mm512_sub_ps(u, one);  // log1p(e) = log(u) e / (u - 1), exact where u rounds to 1
    const __m512 lp = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(d, zero, _CMP_EQ_OQ),
                                           _mm512_mul_ps(_mm512_mul_ps(log512(u), e), rcp512(d)), e);
    const __m512 v = _mm512_sub_ps(_mm512_add_ps(_mm512_max_ps(lv, zero), lp), _mm512_mul_ps(yv, lv));
    acc = _mm512_mask_add_ps(acc, m, acc, v);
    if (g) {
      const __m512 r = rcp512(u);  // sigmoid(|l|)
      const __m512 sg = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(lv, zero, _CMP_GE_OQ), _mm512_mul_ps(e, r), r);
      _mm512_mask_storeu_ps(g + i, m, _mm512_sub_ps(sg, yv));
    }
  }
  return _mm512_reduce_add_ps(acc);
}

AVX512 void axpy_avx512(float* __restrict__ y, const float* __restrict__ x, float a, int64_t n) {
  const __m512 av = _mm512_set1_ps(a);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask16(n - i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
  }
}

AVX512 void rmsprop_row_avx512(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ sq, int64_t n,
                               float alpha, float neg_lr, float eps) {
  const __m512 a = _mm512_set1_ps(alpha), b = _mm512_set1_ps(1.0f - alpha), l = _mm512_set1_ps(neg_lr),
               e = _mm512_set1_ps(eps);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask16(n - i);
    const __m512 gv = _mm512_maskz_loadu_ps(m, g + i);
    const __m512 s = _mm512_add_ps(_mm512_mul_ps(a, _mm512_maskz_loadu_ps(m, sq + i)),
                                   _mm512_mul_ps(b, _mm512_mul_ps(gv, gv)));
    _mm512_mask_storeu_ps(sq + i, m, s);
    const __m512 d = _mm512_div_ps(_mm512_mul_ps(gv, l), _mm512_add_ps(_mm512_sqrt_ps(s), e));
    _mm512_mask_storeu_ps(p + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, p + i), d));
  }
}

bool cpu_has_avx512() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") && cpu_has_avx2();
  return ok;
}
#endif

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

// The kernels of the level in use, or of ``cap`` where that is lower (a loop that measured slower
// with the wider kernels keeps the narrower ones).
template <typename T> Ops<T> ops(int cap = kAVX512) { return Ops<T>(); }
template <> Ops<float> ops<float>(int cap) {
  Ops<float> o;
#ifdef RNNBENCH_X86
  const int l = std::min(level(), cap);
  if (l >= kAVX512) {
    o.matvec = matvec_avx512;
    o.matmul = matmul_avx512;
    o.axpy = axpy_avx512;
    o.bernoulli_row = bernoulli_row_avx512;
    o.sigmoid = map_avx512<sigmoid512>;
    o.tanh = map_avx512<tanh512>;
  } else if (l >= kAVX2) {
    o.matvec = matvec_avx2;
    o.matmul = matmul_rows<float, matvec_avx2>;
    o.axpy = axpy_avx2;
    o.bernoulli_row = bernoulli_row_avx2;
    o.sigmoid = map_avx2<sigmoid256>;
    o.tanh = map_avx2<tanh256>;
  }
#endif
  return o;
}

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
void check(const at::Tensor& t, const char* name, int64_t dim) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.dim() == dim, name, " must have ", dim, " dimensions");
}

// Weights of one model (2-d) or of K stacked members (3-d, one more leading dimension).
int64_t members(const at::Tensor& W, int64_t rows, const char* name, int64_t dim) {
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

// ---------------------------------------------------------------- tanh
at::Tensor tanh_forward(const at::Tensor& xw, const at::Tensor& h0, const at::Tensor& U) {
  check(xw, "xw", 3); check(h0, "h0", 2); members(U, xw.size(1), "U", 2);
  const int64_t T = xw.size(0), R = xw.size(1), H = h0.size(1);
  auto hs = at::empty_like(xw);
  AT_DISPATCH_FLOATING_TYPES(xw.scalar_type(), "tanh_forward", [&] {
    const auto op = ops_for<scalar_t>(U);
    const auto W = weights<scalar_t>(U, 0, H);
    const scalar_t* hp = h0.data_ptr<scalar_t>();
    if (R / W.K <= kSmallRows) {  // member by member (its weights stay in cache)
      const int64_t BK = R / W.K;
      for (int64_t k = 0; k < W.K; ++k) {
        for (int64_t t = 0; t < T; ++t) {
          scalar_t* out = hs.data_ptr<scalar_t>() + t * R * H + k * BK * H;  // this member's rows
          const scalar_t* x = xw.data_ptr<scalar_t>() + t * R * H + k * BK * H;
          const scalar_t* hprev = t > 0 ? out - R * H : hp + k * BK * H;
          if (t + kPrefetchSteps < T) {
            prefetch(x + kPrefetchSteps * R * H, BK * H);
            prefetch(out + kPrefetchSteps * R * H, BK * H, true);
          }
          op.matmul(out, H, x, H, hprev, H, BK, member_block(W, k), H, H, W.ld);
          op.tanh(out, BK * H);
        }
      }
      return;
    }
    for (int64_t t = 0; t < T; ++t) {
      scalar_t* out = hs.data_ptr<scalar_t>() + t * R * H;
      const scalar_t* x = xw.data_ptr<scalar_t>() + t * R * H;
      product(op, out, hp, H, R, W);
      for (int64_t k = 0; k < R * H; ++k) out[k] += x[k];
      op.tanh(out, R * H);
      hp = out;
    }
  });
  return hs;
}

std::tuple<at::Tensor, at::Tensor> tanh_backward(const at::Tensor& dhs, const at::Tensor& hs,
                                                 const at::Tensor& U) {
  check(dhs, "dhs", 3); check(hs, "hs", 3);
  const int64_t T = hs.size(0), R = hs.size(1), H = hs.size(2);
  members(U, R, "U", 2);
  auto dxw = at::empty_like(hs);
  auto carry = at::zeros({R, H}, hs.options());
  AT_DISPATCH_FLOATING_TYPES(hs.scalar_type(), "tanh_backward", [&] {
    const auto op = ops_for<scalar_t>(U);
    const auto Wt = transposed<scalar_t>(U, 0, H);
    scalar_t* c = carry.data_ptr<scalar_t>();
    if (R / Wt.K <= kSmallRows) {  // member by member
      const int64_t BK = R / Wt.K;
      for (int64_t k = 0; k < Wt.K; ++k) {
        for (int64_t t = T - 1; t >= 0; --t) {
          const int64_t off = t * R * H + k * BK * H;  // this member's rows
          const scalar_t* __restrict__ h = hs.data_ptr<scalar_t>() + off;
          const scalar_t* __restrict__ g = dhs.data_ptr<scalar_t>() + off;
          scalar_t* __restrict__ da = dxw.data_ptr<scalar_t>() + off;
          scalar_t* __restrict__ cb = c + k * BK * H;
          if (t - kPrefetchSteps >= 0) {
            prefetch(h - kPrefetchSteps * R * H, BK * H);
            prefetch(g - kPrefetchSteps * R * H, BK * H);
            prefetch(da - kPrefetchSteps * R * H, BK * H, true);
          }
          for (int64_t j = 0; j < BK * H; ++j) da[j] = (g[j] + cb[j]) * (scalar_t(1) - h[j] * h[j]);
          op.matmul(cb, H, nullptr, 0, da, H, BK, member_block(Wt, k), H, H, Wt.ld);
        }
      }
      return;
    }
    for (int64_t t = T - 1; t >= 0; --t) {
      const scalar_t* h = hs.data_ptr<scalar_t>() + t * R * H;
      const scalar_t* g = dhs.data_ptr<scalar_t>() + t * R * H;
      scalar_t* da = dxw.data_ptr<scalar_t>() + t * R * H;
      for (int64_t k = 0; k < R * H; ++k) da[k] = (g[k] + c[k]) * (scalar_t(1) - h[k] * h[k]);
      product(op, c, da, H, R, Wt);
    }
  });
  return {dxw, carry};
}

// ---------------------------------------------------------------- gru (reset before the product)
std::tuple<at::Tensor, at::Tensor> gru_forward(const at::Tensor& xw, const at::Tensor& h0, const at::Tensor& U) {
  check(xw, "xw", 3); check(h0, "h0", 2); members(U, xw.size(1), "U", 2);
  const int64_t T = xw.size(0), R = xw.size(1), H = h0.size(1), G = 3 * H;
  auto hs = at::empty({T, R, H}, xw.options());
  auto gates = at::empty_like(xw);  // z, r, n after their nonlinearities
  AT_DISPATCH_FLOATING_TYPES(xw.scalar_type(), "gru_forward", [&] {
    const auto op = ops_for<scalar_t>(U);
    const auto Wzr = weights<scalar_t>(U, 0, 2 * H), Wn = weights<scalar_t>(U, 2 * H, H);
    std::vector<scalar_t> zr(R * 2 * H), rh(R * H), an(R * H);
    const scalar_t* hp = h0.data_ptr<scalar_t>();
    if (R / Wzr.K <= kSmallRows) {
      // member by member, all steps of one member before the next (its weights stay in L1), each
      // step's pre-activations summed straight into gates
      const int64_t BK = R / Wzr.K;
      for (int64_t k = 0; k < Wzr.K; ++k) {
        const scalar_t* Uzr = member_block(Wzr, k);
        const scalar_t* Un = member_block(Wn, k);
        for (int64_t t = 0; t < T; ++t) {
          const scalar_t* x = xw.data_ptr<scalar_t>() + (t * R + k * BK) * G;  // this member's rows
          scalar_t* gt = gates.data_ptr<scalar_t>() + (t * R + k * BK) * G;
          scalar_t* ho = hs.data_ptr<scalar_t>() + (t * R + k * BK) * H;
          const scalar_t* hprev = t > 0 ? ho - R * H : h0.data_ptr<scalar_t>() + k * BK * H;
          if (t + kPrefetchSteps < T) {
            prefetch(x + kPrefetchSteps * R * G, BK * G);
            prefetch(gt + kPrefetchSteps * R * G, BK * G, true);
            prefetch(ho + kPrefetchSteps * R * H, BK * H, true);
          }
          op.matmul(gt, G, x, G, hprev, H, BK, Uzr, H, 2 * H, Wzr.ld);
          for (int64_t b = 0; b < BK; ++b) {
            scalar_t* __restrict__ g = gt + b * G;
            const scalar_t* __restrict__ hb = hprev + b * H;
            scalar_t* __restrict__ rb = rh.data() + b * H;
            op.sigmoid(g, 2 * H);
            for (int64_t j = 0; j < H; ++j) rb[j] = g[H + j] * hb[j];
          }
          op.matmul(gt + 2 * H, G, x + 2 * H, G, rh.data(), H, BK, Un, H, H, Wn.ld);
          for (int64_t b = 0; b < BK; ++b) {
            scalar_t* __restrict__ g = gt + b * G;
            const scalar_t* __restrict__ hb = hprev + b * H;
            scalar_t* __restrict__ o = ho + b * H;
            op.tanh(g + 2 * H, H);
            for (int64_t j = 0; j < H; ++j) o[j] = hb[j] + g[j] * (g[2 * H + j] - hb[j]);
          }
        }
      }
      return;
    }
    for (int64_t t = 0; t < T; ++t) {
      const scalar_t* x = xw.data_ptr<scalar_t>() + t * R * G;
      scalar_t* gt = gates.data_ptr<scalar_t>() + t * R * G;
      scalar_t* ho = hs.data_ptr<scalar_t>() + t * R * H;
      product(op, zr.data(), hp, H, R, Wzr);
      for (int64_t b = 0; b < R; ++b) {
        scalar_t* a = zr.data() + b * 2 * H;
        const scalar_t* xb = x + b * G;
        for (int64_t j = 0; j < 2 * H; ++j) a[j] += xb[j];
      }
      op.sigmoid(zr.data(), R * 2 * H);
      for (int64_t b = 0; b < R; ++b) {
        const scalar_t* a = zr.data() + b * 2 * H;
        scalar_t* g = gt + b * G;
        const scalar_t* hb = hp + b * H;
        scalar_t* rb = rh.data() + b * H;
        for (int64_t j = 0; j < 2 * H; ++j) g[j] = a[j];
        for (int64_t j = 0; j < H; ++j) rb[j] = a[H + j] * hb[j];
      }
      product(op, an.data(), rh.data(), H, R, Wn);
      for (int64_t b = 0; b < R; ++b) {
        scalar_t* n = an.data() + b * H;
        const scalar_t* xb = x + b * G + 2 * H;
        for (int64_t j = 0; j < H; ++j) n[j] += xb[j];
      }
      op.tanh(an.data(), R * H);
      for (int64_t b = 0; b < R; ++b) {
        const scalar_t* n = an.data() + b * H;
        scalar_t* g = gt + b * G;
        const scalar_t* hb = hp + b * H;
        scalar_t* o = ho + b * H;
        for (int64_t j = 0; j < H; ++j) {
          g[2 * H + j] = n[j];
          o[j] = hb[j] + g[j] * (n[j] - hb[j]);
        }
      }
      hp = ho;
    }
  });
  return {hs, gates};
}

std::tuple<at::Tensor, at::Tensor> gru_backward(const at::Tensor& dhs, const at::Tensor& hs, const at::Tensor& h0,
                                                const at::Tensor& U, const at::Tensor& gates) {
  check(dhs, "dhs", 3); check(hs, "hs", 3); check(gates, "gates", 3);
  const int64_t T = hs.size(0), R = hs.size(1), H = hs.size(2), G = 3 * H;
  members(U, R, "U", 2);
  auto dxw = at::empty_like(gates);
  auto carry = at::zeros({R, H}, hs.options());
  AT_DISPATCH_FLOATING_TYPES(hs.scalar_type(), "gru_backward", [&] {
    const auto op = ops_for<scalar_t>(U);
    const auto WnT = transposed<scalar_t>(U, 2 * H, H), WzrT = transposed<scalar_t>(U, 0, 2 * H);
    std::vector<scalar_t> drh(R * H);
    scalar_t* c = carry.data_ptr<scalar_t>();
    // step t for rows [r0, r1): the gradients of the gates' pre-activations, then the carry
    auto gates_part = [&](int64_t t, int64_t r0, int64_t r1) {
      const scalar_t* hp = t > 0 ? hs.data_ptr<scalar_t>() + (t - 1) * R * H : h0.data_ptr<scalar_t>();
      const scalar_t* g = dhs.data_ptr<scalar_t>() + t * R * H;
      const scalar_t* gt = gates.data_ptr<scalar_t>() + t * R * G;
      scalar_t* d = dxw.data_ptr<scalar_t>() + t * R * G;
      for (int64_t b = r0; b < r1; ++b) {
        const scalar_t* gb = gt + b * G;
        scalar_t* db = d + b * G;
        for (int64_t j = 0; j < H; ++j) {
          const int64_t k = b * H + j;
          const scalar_t dh = g[k] + c[k], z = gb[j], n = gb[2 * H + j];
          db[2 * H + j] = dh * z * (scalar_t(1) - n * n);
          db[j] = dh * (n - hp[k]) * z * (scalar_t(1) - z);
          c[k] = dh * (scalar_t(1) - z);
        }
      }
    };
    auto reset_part = [&](int64_t t, int64_t r0, int64_t r1) {  // (after drh = d(r * h_prev))
      const scalar_t* hp = t > 0 ? hs.data_ptr<scalar_t>() + (t - 1) * R * H : h0.data_ptr<scalar_t>();
      const scalar_t* gt = gates.data_ptr<scalar_t>() + t * R * G;
      scalar_t* d = dxw.data_ptr<scalar_t>() + t * R * G;
      for (int64_t b = r0; b < r1; ++b) {
        const scalar_t* gb = gt + b * G;
        scalar_t* db = d + b * G;
        for (int64_t j = 0; j < H; ++j) {
          const int64_t k = b * H + j;
          const scalar_t r = gb[H + j], dr = drh[k];
          db[H + j] = dr * hp[k] * r * (scalar_t(1) - r);
          c[k] += dr * r;
        }
      }
    };
    const int64_t K = WnT.K, BK = R / K;
    if (BK <= kSmallRows) {  // member by member (its weights stay in L1: 1.15x over step by step)
      for (int64_t k = 0; k < K; ++k)
        for (int64_t t = T - 1; t >= 0; --t) {
          scalar_t* d = dxw.data_ptr<scalar_t>() + (t * R + k * BK) * G;  // this member's rows
          if (t - kPrefetchSteps >= 0) {
            const int64_t ahead = t - kPrefetchSteps;
            prefetch(dhs.data_ptr<scalar_t>() + (ahead * R + k * BK) * H, BK * H);
            prefetch(gates.data_ptr<scalar_t>() + (ahead * R + k * BK) * G, BK * G);
            if (ahead > 0) prefetch(hs.data_ptr<scalar_t>() + ((ahead - 1) * R + k * BK) * H, BK * H);
            prefetch(dxw.data_ptr<scalar_t>() + (ahead * R + k * BK) * G, BK * G, true);
          }
          gates_part(t, k * BK, (k + 1) * BK);
          op.matmul(drh.data() + k * BK * H, H, nullptr, 0, d + 2 * H, G, BK, member_block(WnT, k), WnT.Hin, H, WnT.ld);
          reset_part(t, k * BK, (k + 1) * BK);
          op.matmul(c + k * BK * H, H, c + k * BK * H, H, d, G, BK, member_block(WzrT, k), WzrT.Hin, H, WzrT.ld);
        }
      return;
    }
    std::vector<scalar_t> dzr_h(R * H);
    for (int64_t t = T - 1; t >= 0; --t) {
      scalar_t* d = dxw.data_ptr<scalar_t>() + t * R * G;
      gates_part(t, 0, R);
      product(op, drh.data(), d + 2 * H, G, R, WnT);  // d(r * h_prev)
      reset_part(t, 0, R);
      product(op, dzr_h.data(), d, G, R, WzrT);
      for (int64_t k = 0; k < R * H; ++k) c[k] += dzr_h[k];
    }
  });
  return {dxw, carry};
}

// ---------------------------------------------------------------- lstm with diagonal peepholes
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_forward(
    const at::Tensor& xw, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& U, const at::Tensor& P) {
  check(xw, "xw", 3); check(h0, "h0", 2); check(c0, "c0", 2);
  const int64_t K = members(U, xw.size(1), "U", 2);
  TORCH_CHECK(members(P, xw.size(1), "P", 2) == K && P.dim() == U.dim(), "P and U must hold the same members");
  const int64_t T = xw.size(0), R = xw.size(1), H = h0.size(1), BK = R / K, G = 4 * H;
  auto hs = at::empty({T, R, H}, xw.options());
  auto cs = at::empty({T, R, H}, xw.options());
  auto tcs = at::empty({T, R, H}, xw.options());  // tanh(c), kept for the backward pass
  auto gates = at::empty_like(xw);  // i, f, g, o after their nonlinearities
  AT_DISPATCH_FLOATING_TYPES(xw.scalar_type(), "lstm_forward", [&] {
    // (measured 0.85-0.9x with the 512-bit kernels at the paper's sizes, K = 10, one row per
    // member, in scripts/bench_kernels.py: the 256-bit ones stay)
    const auto op = ops_for<scalar_t>(U, kAVX2);
    const auto W = weights<scalar_t>(U, 0, G);
    const scalar_t* p = P.data_ptr<scalar_t>();
    // the element-wise rest of a step for row b, whose pre-activations a = x + h U are summed
    auto finish = [&](int64_t t, int64_t b, scalar_t* __restrict__ a, const scalar_t* __restrict__ cb) {
      const scalar_t* __restrict__ pb = p + (b / BK) * 3 * H;  // this row's member's peepholes
      scalar_t* __restrict__ cn = cs.data_ptr<scalar_t>() + (t * R + b) * H;
      scalar_t* __restrict__ tc = tcs.data_ptr<scalar_t>() + (t * R + b) * H;
      scalar_t* __restrict__ ho = hs.data_ptr<scalar_t>() + (t * R + b) * H;
      for (int64_t j = 0; j < H; ++j) {
        a[j] += pb[j] * cb[j];
        a[H + j] += pb[H + j] * cb[j];
      }
      op.sigmoid(a, 2 * H);
      op.tanh(a + 2 * H, H);
      for (int64_t j = 0; j < H; ++j) {
        const scalar_t c = a[H + j] * cb[j] + a[j] * a[2 * H + j];
        cn[j] = c;
        a[3 * H + j] += pb[2 * H + j] * c;
        tc[j] = c;
      }
      op.sigmoid(a + 3 * H, H);
      op.tanh(tc, H);
      for (int64_t j = 0; j < H; ++j) ho[j] = a[3 * H + j] * tc[j];
    };
    // Step by step, the steps of different members overlap, which measured 5% faster at the music
    // sizes (all members' weights, 0.2 MB, stay in L2); member by member where they do not fit
    // (speech sizes, K = 10: 6 MB, 3x faster member by member, scripts/bench_kernels.py).
    if (BK <= kSmallRows && K * U.size(-2) * U.size(-1) * static_cast<int64_t>(sizeof(scalar_t)) > (1 << 20)) {
      for (int64_t k = 0; k < K; ++k)
        for (int64_t t = 0; t < T; ++t) {
          const int64_t a = t * R + k * BK;  // this member's first row in step t
          if (t + kPrefetchSteps < T) {
            const int64_t n = a + kPrefetchSteps * R;
            prefetch(xw.data_ptr<scalar_t>() + n * G, BK * G);
            prefetch(gates.data_ptr<scalar_t>() + n * G, BK * G, true);
            prefetch(cs.data_ptr<scalar_t>() + n * H, BK * H, true);
            prefetch(tcs.data_ptr<scalar_t>() + n * H, BK * H, true);
            prefetch(hs.data_ptr<scalar_t>() + n * H, BK * H, true);
          }
          scalar_t* g = gates.data_ptr<scalar_t>() + a * G;
          const scalar_t* hb = t > 0 ? hs.data_ptr<scalar_t>() + (a - R) * H : h0.data_ptr<scalar_t>() + k * BK * H;
          const scalar_t* cb = t > 0 ? cs.data_ptr<scalar_t>() + (a - R) * H : c0.data_ptr<scalar_t>() + k * BK * H;
          op.matmul(g, G, xw.data_ptr<scalar_t>() + a * G, G, hb, H, BK, member_block(W, k), H, G, W.ld);
          for (int64_t b = 0; b < BK; ++b) finish(t, k * BK + b, g + b * G, cb + b * H);
        }
      return;
    }
    const scalar_t* hp = h0.data_ptr<scalar_t>();
    const scalar_t* cp = c0.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t) {
      scalar_t* gt = gates.data_ptr<scalar_t>() + t * R * G;
      const scalar_t* x = xw.data_ptr<scalar_t>() + t * R * G;
      product(op, gt, hp, H, R, W);
      for (int64_t b = 0; b < R; ++b) {
        scalar_t* a = gt + b * G;
        const scalar_t* xb = x + b * G;
        for (int64_t j = 0; j < G; ++j) a[j] += xb[j];
        finish(t, b, a, cp + b * H);
      }
      hp = hs.data_ptr<scalar_t>() + t * R * H;
      cp = cs.data_ptr<scalar_t>() + t * R * H;
    }
  });
  return {hs, cs, tcs, gates};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_backward(const at::Tensor& dhs, const at::Tensor& dcs,
                                                             const at::Tensor& cs, const at::Tensor& tcs,
                                                             const at::Tensor& c0, const at::Tensor& U,
                                                             const at::Tensor& P, const at::Tensor& gates) {
  check(dhs, "dhs", 3); check(dcs, "dcs", 3); check(cs, "cs", 3); check(tcs, "tcs", 3); check(gates, "gates", 3);
  const int64_t T = cs.size(0), R = cs.size(1), H = cs.size(2), G = 4 * H;
  const int64_t K = members(U, R, "U", 2), BK = R / K;
  TORCH_CHECK(members(P, R, "P", 2) == K && P.dim() == U.dim(), "P and U must hold the same members");
  auto dxw = at::empty_like(gates);
  auto dh_carry = at::zeros({R, H}, cs.options());
  auto dc_carry = at::zeros({R, H}, cs.options());
  AT_DISPATCH_FLOATING_TYPES(cs.scalar_type(), "lstm_backward", [&] {
    const auto op = ops_for<scalar_t>(U);
    const auto WT = transposed<scalar_t>(U, 0, G);
    const scalar_t* pm = P.data_ptr<scalar_t>();
    const scalar_t* c0p = c0.data_ptr<scalar_t>();
    scalar_t* dhc = dh_carry.data_ptr<scalar_t>();
    scalar_t* dcc = dc_carry.data_ptr<scalar_t>();
    // step t for rows [r0, r1): the gradients of the gates' pre-activations and the cell carry
    auto gates_part = [&](int64_t t, int64_t r0, int64_t r1) {
      const scalar_t* gh = dhs.data_ptr<scalar_t>() + t * R * H;
      const scalar_t* gc = dcs.data_ptr<scalar_t>() + t * R * H;
      const scalar_t* tcc = tcs.data_ptr<scalar_t>() + t * R * H;
      const scalar_t* cp = t > 0 ? cs.data_ptr<scalar_t>() + (t - 1) * R * H : c0p;
      const scalar_t* gt = gates.data_ptr<scalar_t>() + t * R * G;
      scalar_t* d = dxw.data_ptr<scalar_t>() + t * R * G;
      for (int64_t b = r0; b < r1; ++b) {
        const scalar_t* p = pm + (b / BK) * 3 * H;  // this row's member's peepholes
        for (int64_t j = 0; j < H; ++j) {
          const int64_t k = b * H + j, q = b * G;
          const scalar_t i = gt[q + j], f = gt[q + H + j], g = gt[q + 2 * H + j], o = gt[q + 3 * H + j];
          const scalar_t dh = gh[k] + dhc[k];
          const scalar_t tc = tcc[k];
          const scalar_t dao = dh * tc * o * (scalar_t(1) - o);
          const scalar_t dc = gc[k] + dcc[k] + dh * o * (scalar_t(1) - tc * tc) + dao * p[2 * H + j];
          const scalar_t dai = dc * g * i * (scalar_t(1) - i);
          const scalar_t daf = dc * cp[k] * f * (scalar_t(1) - f);
          const scalar_t dag = dc * i * (scalar_t(1) - g * g);
          d[q + j] = dai; d[q + H + j] = daf; d[q + 2 * H + j] = dag; d[q + 3 * H + j] = dao;
          dcc[k] = dc * f + dai * p[j] + daf * p[H + j];
        }
      }
    };
    if (BK <= kSmallRows) {  // member by member (its weights stay in L1: 1.1x over step by step)
      for (int64_t k = 0; k < K; ++k)
        for (int64_t t = T - 1; t >= 0; --t) {
          if (t - kPrefetchSteps >= 0) {
            const int64_t a = (t - kPrefetchSteps) * R + k * BK;  // that step's first row of this member
            prefetch(dhs.data_ptr<scalar_t>() + a * H, BK * H);
            prefetch(dcs.data_ptr<scalar_t>() + a * H, BK * H);
            prefetch(tcs.data_ptr<scalar_t>() + a * H, BK * H);
            if (a >= R) prefetch(cs.data_ptr<scalar_t>() + (a - R) * H, BK * H);
            prefetch(gates.data_ptr<scalar_t>() + a * G, BK * G);
            prefetch(dxw.data_ptr<scalar_t>() + a * G, BK * G, true);
          }
          gates_part(t, k * BK, (k + 1) * BK);
          op.matmul(dhc + k * BK * H, H, nullptr, 0, dxw.data_ptr<scalar_t>() + (t * R + k * BK) * G, G, BK,
                    member_block(WT, k), WT.Hin, H, WT.ld);
        }
      return;
    }
    for (int64_t t = T - 1; t >= 0; --t) {
      gates_part(t, 0, R);
      product(op, dhc, dxw.data_ptr<scalar_t>() + t * R * G, G, R, WT);
    }
  });
  return {dxw, dh_carry, dc_carry};
}

// ---------------------------------------------------------------- sparse input projection
// Piano-roll inputs are 0/1 with a few keys down per frame: W x + b is then a sum of a few rows of
// W.  The nonzeros of the (T*B, D) inputs come as (row, col, value) in row order (``nonzero()``).
// W (K, D, N) and b (K, N) hold K members; the result is (T, K*B, N), rows member by member within
// each step, the layout the recurrences read.
at::Tensor sparse_proj(const at::Tensor& W, const at::Tensor& b, const at::Tensor& rows, const at::Tensor& cols,
                       const at::Tensor& vals, int64_t T, int64_t B) {
  check(W, "W", 3); check(b, "b", 2); check(rows, "rows", 1); check(cols, "cols", 1); check(vals, "vals", 1);
  const int64_t K = W.size(0), D = W.size(1), N = W.size(2), nnz = rows.size(0);
  TORCH_CHECK(b.size(0) == K && b.size(1) == N, "b must be (K, N)");
  TORCH_CHECK(cols.size(0) == nnz && vals.size(0) == nnz, "rows, cols and vals must have one entry per nonzero");
  auto out = at::empty({T, K * B, N}, W.options());
  const int64_t* rp = rows.data_ptr<int64_t>();
  const int64_t* cp = cols.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(W.scalar_type(), "sparse_proj", [&] {
    const auto op = ops<scalar_t>();
    const scalar_t* w = W.data_ptr<scalar_t>();
    const scalar_t* bp = b.data_ptr<scalar_t>();
    const scalar_t* vp = vals.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    int64_t e = 0;
    for (int64_t r = 0; r < T * B; ++r) {
      const int64_t t = r / B, bb = r % B;
      const int64_t e0 = e;
      while (e < nnz && rp[e] == r) {
        TORCH_CHECK(cp[e] >= 0 && cp[e] < D, "sparse_proj: column out of range");
        ++e;
      }
      TORCH_CHECK(e == nnz || rp[e] > r, "sparse_proj: nonzeros must come in row order");
      for (int64_t k = 0; k < K; ++k) {
        scalar_t* dst = o + ((t * K + k) * B + bb) * N;
        std::memcpy(dst, bp + k * N, sizeof(scalar_t) * N);
        for (int64_t q = e0; q < e; ++q) op.axpy(dst, w + (k * D + cp[q]) * N, vp[q], N);
      }
    }
    TORCH_CHECK(e == nnz, "sparse_proj: row index out of range");
  });
  return out;
}

// Gradient of sparse_proj with respect to W: dW[k, col] += value * dxw[t, k*B + b] for every nonzero.
at::Tensor sparse_proj_backward(const at::Tensor& dxw, const at::Tensor& rows, const at::Tensor& cols,
                                const at::Tensor& vals, int64_t K, int64_t D) {
  check(dxw, "dxw", 3); check(rows, "rows", 1); check(cols, "cols", 1); check(vals, "vals", 1);
  const int64_t T = dxw.size(0), B = dxw.size(1) / K, N = dxw.size(2), nnz = rows.size(0);
  TORCH_CHECK(dxw.size(1) == K * B, "dxw rows must be K blocks");
  auto dW = at::zeros({K, D, N}, dxw.options());
  const int64_t* rp = rows.data_ptr<int64_t>();
  const int64_t* cp = cols.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(dxw.scalar_type(), "sparse_proj_backward", [&] {
    const auto op = ops<scalar_t>();
    const scalar_t* g = dxw.data_ptr<scalar_t>();
    const scalar_t* vp = vals.data_ptr<scalar_t>();
    scalar_t* d = dW.data_ptr<scalar_t>();
    for (int64_t q = 0; q < nnz; ++q) {
      const int64_t t = rp[q] / B, bb = rp[q] % B;
      TORCH_CHECK(t < T && cp[q] >= 0 && cp[q] < D, "sparse_proj_backward: index out of range");
      for (int64_t k = 0; k < K; ++k) op.axpy(d + (k * D + cp[q]) * N, g + ((t * K + k) * B + bb) * N, vp[q], N);
    }
  });
  return dW;
}

// ---------------------------------------------------------------- Bernoulli output
// logits (K, M, O) of K members for M frames, targets (M, O) shared by the members: the NLL of every
// frame (K, M), sum over the outputs of softplus(l) - y l, and with ``grad`` its gradient with
// respect to the logits, sigmoid(l) - y (K, M, O).  One pass instead of several over the largest
// tensor of a music model.
std::tuple<at::Tensor, at::Tensor> bernoulli_nll(const at::Tensor& logits, const at::Tensor& targets, bool grad) {
  check(logits, "logits", 3); check(targets, "targets", 2);
  const int64_t K = logits.size(0), M = logits.size(1), O = logits.size(2);
  TORCH_CHECK(targets.size(0) == M && targets.size(1) == O, "targets must be (M, O) for logits (K, M, O)");
  TORCH_CHECK(targets.scalar_type() == logits.scalar_type(), "targets and logits must have one dtype");
  auto nll = at::empty({K, M}, logits.options());
  auto g = grad ? at::empty_like(logits) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "bernoulli_nll", [&] {
    const auto op = ops<scalar_t>();
    const scalar_t* l = logits.data_ptr<scalar_t>();
    const scalar_t* y = targets.data_ptr<scalar_t>();
    scalar_t* out = nll.data_ptr<scalar_t>();
    scalar_t* gp = grad ? g.data_ptr<scalar_t>() : nullptr;
    for (int64_t k = 0; k < K; ++k)
      for (int64_t r = 0; r < M; ++r) {
        const int64_t off = (k * M + r) * O;
        out[k * M + r] = op.bernoulli_row(l + off, y + r * O, gp ? gp + off : nullptr, O);
      }
  });
  return {nll, g};
}

// ---------------------------------------------------------------- mixture-of-Gaussians output
// The speech head (rnnbench/mixture.py): each frame's output row holds C mixture logits a, C*D means
// mu and C*D raw scales r (component by component), and the target y has D values.  With
// s = min_scale + softplus(r) (softplus(r) = r above 20, torch's threshold), z = (y - mu) / s,
//     joint_c = log_softmax(a)_c - sum_d (z^2 / 2 + log s) - D log(2 pi) / 2,  nll = -logsumexp(joint);
// and, with the responsibilities g = softmax(joint) and pi = softmax(a), the gradient of w * nll:
//     d/da = w (pi - g),  d/dmu = -w g z / s,  d/dr = w g (1 - z^2) / s * softplus'(r)
// (softplus' = sigmoid, 1 above the threshold).  The element-wise terms of the C*D means and scales
// are one vectorized pass (mixture_terms_*); the C-long reductions and the gradient pass follow.
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

#ifdef RNNBENCH_X86
AVX2 void mixture_terms_avx2(const float* mu, const float* r, const float* yt, float min_scale, int64_t n, float* t,
                             float* z, float* q, float* sl) {
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps(), sign = _mm256_set1_ps(-0.0f),
               half = _mm256_set1_ps(0.5f), thr = _mm256_set1_ps(float(kSoftplusThreshold)),
               ms = _mm256_set1_ps(min_scale);
  for (int64_t i = 0; i < n; i += 8) {
    const __m256i m = tail_mask(n - i < 8 ? n - i : 8);
    const __m256 rv = _mm256_maskload_ps(r + i, m);
    const __m256 e = exp256(_mm256_or_ps(rv, sign));  // exp(-|r|), in (0, 1]
    const __m256 u = _mm256_add_ps(one, e);
    const __m256 d = _mm256_sub_ps(u, one);  // log1p(e) = log(u) e / (u - 1), exact where u rounds to 1
    const __m256 lp = _mm256_blendv_ps(_mm256_div_ps(_mm256_mul_ps(log256(u), e), d), e,
                                       _mm256_cmp_ps(d, zero, _CMP_EQ_OQ));
    const __m256 big = _mm256_cmp_ps(rv, thr, _CMP_GT_OQ);
    const __m256 s = _mm256_add_ps(ms, _mm256_blendv_ps(_mm256_add_ps(_mm256_max_ps(rv, zero), lp), rv, big));
    const __m256 qv = _mm256_div_ps(one, s);
    const __m256 zv = _mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(yt + i, m), _mm256_maskload_ps(mu + i, m)), qv);
    _mm256_maskstore_ps(t + i, m, _mm256_fmadd_ps(_mm256_mul_ps(half, zv), zv, log256(s)));
    _mm256_maskstore_ps(z + i, m, zv);
    _mm256_maskstore_ps(q + i, m, qv);
    const __m256 ru = _mm256_div_ps(one, u);  // sigmoid(|r|)
    const __m256 sg = _mm256_blendv_ps(_mm256_mul_ps(e, ru), ru, _mm256_cmp_ps(rv, zero, _CMP_GE_OQ));
    _mm256_maskstore_ps(sl + i, m, _mm256_blendv_ps(sg, one, big));
  }
}

AVX512 void mixture_terms_avx512(const float* mu, const float* r, const float* yt, float min_scale, int64_t n,
                                 float* t, float* z, float* q, float* sl) {
  const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps(), sign = _mm512_set1_ps(-0.0f),
               half = _mm512_set1_ps(0.5f), thr = _mm512_set1_ps(float(kSoftplusThreshold)),
               ms = _mm512_set1_ps(min_scale);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask16(n - i);
    const __m512 rv = _mm512_maskz_loadu_ps(m, r + i);
    const __m512 e = exp512(_mm512_or_ps(rv, sign));  // exp(-|r|), in (0, 1]
    const __m512 u = _mm512_add_ps(one, e);
    const __m512 d = _mm512_sub_ps(u, one);
    const __m512 lp = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(d, zero, _CMP_EQ_OQ),
                                           _mm512_mul_ps(_mm512_mul_ps(log512(u), e), rcp512(d)), e);
    const __mmask16 big = _mm512_cmp_ps_mask(rv, thr, _CMP_GT_OQ);
    const __m512 s = _mm512_add_ps(ms, _mm512_mask_blend_ps(big, _mm512_add_ps(_mm512_max_ps(rv, zero), lp), rv));
    const __m512 qv = rcp512(s);
    const __m512 zv = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, yt + i), _mm512_maskz_loadu_ps(m, mu + i)), qv);
    // (masked-off lanes hold s = min_scale + log 2: log512 of it is finite)
    _mm512_mask_storeu_ps(t + i, m, _mm512_fmadd_ps(_mm512_mul_ps(half, zv), zv, log512(s)));
    _mm512_mask_storeu_ps(z + i, m, zv);
    _mm512_mask_storeu_ps(q + i, m, qv);
    const __m512 ru = rcp512(u);
    const __m512 sg = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(rv, zero, _CMP_GE_OQ), _mm512_mul_ps(e, ru), ru);
    _mm512_mask_storeu_ps(sl + i, m, _mm512_mask_blend_ps(big, sg, one));
  }
}
#endif

void mixture_terms(const double* mu, const double* r, const double* yt, double min_scale, int64_t n, double* t,
                   double* z, double* q, double* sl) {
  mixture_terms_generic<double>(mu, r, yt, min_scale, n, t, z, q, sl);
}
void mixture_terms(const float* mu, const float* r, const float* yt, float min_scale, int64_t n, float* t, float* z,
                   float* q, float* sl) {
#ifdef RNNBENCH_X86
  if (level() >= kAVX512) return mixture_terms_avx512(mu, r, yt, min_scale, n, t, z, q, sl);
  if (level() >= kAVX2) return mixture_terms_avx2(mu, r, yt, min_scale, n, t, z, q, sl);
#endif
  mixture_terms_generic<float>(mu, r, yt, min_scale, n, t, z, q, sl);
}

// out (K, M, C + 2 C D) of K members for M frames, targets (M, D) shared by the members: the NLL of
// every frame (K, M) and, with ``grad``, the gradient of sum over frames of weight * nll with respect
// to out (K, M, C + 2 C D), weight (M) (0 for padded frames).
std::tuple<at::Tensor, at::Tensor> mixture_nll(const at::Tensor& out, const at::Tensor& targets,
                                               const at::Tensor& weight, int64_t C, double min_scale, bool grad) {
  check(out, "out", 3); check(targets, "targets", 2);
  const int64_t K = out.size(0), M = out.size(1), O = out.size(2), D = targets.size(1);
  TORCH_CHECK(C >= 1 && D >= 1 && O == C + 2 * C * D, "mixture_nll: out must be (K, M, C + 2 C D) for targets (M, D)");
  TORCH_CHECK(targets.size(0) == M, "mixture_nll: targets must have one row per frame");
  TORCH_CHECK(targets.scalar_type() == out.scalar_type(), "mixture_nll: targets and out must have one dtype");
  TORCH_CHECK(min_scale > 0, "mixture_nll: min_scale must be positive");
  if (grad) {
    check(weight, "weight", 1);
    TORCH_CHECK(weight.size(0) == M && weight.scalar_type() == out.scalar_type(), "mixture_nll: weight must be (M,)");
  }
  auto nll = at::empty({K, M}, out.options());
  auto g = grad ? at::empty_like(out) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "mixture_nll", [&] {
    using T = scalar_t;
    const int64_t n = C * D;
    std::vector<T> buf(5 * n + 3 * C);
    T *yt = buf.data(), *t = yt + n, *z = t + n, *q = z + n, *sl = q + n, *ea = sl + n, *ej = ea + C, *jt = ej + C;
    const T ms = T(min_scale), half_log2pi = T(0.5 * D * std::log(2.0 * M_PI));
    const T* op = out.data_ptr<T>();
    const T* yp = targets.data_ptr<T>();
    const T* wp = grad ? weight.data_ptr<T>() : nullptr;
    T* np = nll.data_ptr<T>();
    T* gp = grad ? g.data_ptr<T>() : nullptr;
    for (int64_t f = 0; f < M; ++f) {
      for (int64_t c = 0; c < C; ++c) std::memcpy(yt + c * D, yp + f * D, D * sizeof(T));
      for (int64_t k = 0; k < K; ++k) {
        const T* l = op + (k * M + f) * O;
        mixture_terms(l + C, l + C + n, yt, ms, n, t, z, q, sl);
        T ma = l[0];
        for (int64_t c = 1; c < C; ++c) ma = std::max(ma, l[c]);
        T sa = T(0);
        for (int64_t c = 0; c < C; ++c) sa += (ea[c] = std::exp(l[c] - ma));
        const T lsa = ma + std::log(sa);
        T mj = -std::numeric_limits<T>::infinity();
        for (int64_t c = 0; c < C; ++c) {
          T acc = T(0);
          for (int64_t d = 0; d < D; ++d) acc += t[c * D + d];
          jt[c] = (l[c] - lsa) + (-acc - half_log2pi);
          mj = std::max(mj, jt[c]);
        }
        if (std::isinf(mj)) mj = T(0);  // (all -inf: logsumexp -inf; +inf: inf)
        T sj = T(0);
        for (int64_t c = 0; c < C; ++c) sj += (ej[c] = std::exp(jt[c] - mj));
        const T lse = mj + std::log(sj);
        np[k * M + f] = -lse;
        if (!grad) continue;
        T* gr = gp + (k * M + f) * O;
        const T w = wp[f];
        const T wa = w / sa, wj = w / sj;
        for (int64_t c = 0; c < C; ++c) {
          const T gc = ej[c] * wj;  // w times the responsibility of component c
          gr[c] = ea[c] * wa - gc;
          T* gm = gr + C + c * D;
          T* gs = gr + C + n + c * D;
          const T *zc = z + c * D, *qc = q + c * D, *sc = sl + c * D;
          for (int64_t d = 0; d < D; ++d) {
            const T gq = gc * qc[d];
            gm[d] = -gq * zc[d];
            gs[d] = gq * (T(1) - zc[d] * zc[d]) * sc[d];
          }
        }
      }
    }
  });
  return {nll, g};
}

// ---------------------------------------------------------------- RMSProp over stacked members
// One update of torch.optim.RMSprop (momentum 0, not centred) on K members' flat weights p (K, P)
// with gradients g and running averages sq of the same shape, member k's learning rate lr[k] (a
// float64 vector), the members with update[k] false left as they are:
//     sq = alpha sq + (1 - alpha) g^2;  p = p - lr g / (sqrt(sq) + eps).
// One pass over the three tensors instead of seven.  (Weights that never get a gradient, the
// input rows of piano keys a corpus never uses, keep sq = 0 exactly; sqrt(0) is a slow path of
// the vectorized library sqrt on this hardware, and here it costs what any other value costs.)
template <typename T>
void rmsprop_row(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ sq, int64_t n, T alpha, T neg_lr, T eps) {
  const T beta = T(1) - alpha;
  for (int64_t i = 0; i < n; ++i) {
    const T s = alpha * sq[i] + beta * (g[i] * g[i]);
    sq[i] = s;
    p[i] += (g[i] * neg_lr) / (std::sqrt(s) + eps);
  }
}

#ifdef RNNBENCH_X86
AVX2 void rmsprop_row_avx2(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ sq, int64_t n,
                           float alpha, float neg_lr, float eps) {
  const __m256 a = _mm256_set1_ps(alpha), b = _mm256_set1_ps(1.0f - alpha), l = _mm256_set1_ps(neg_lr),
               e = _mm256_set1_ps(eps);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gv = _mm256_loadu_ps(g + i);
    const __m256 s = _mm256_add_ps(_mm256_mul_ps(a, _mm256_loadu_ps(sq + i)), _mm256_mul_ps(b, _mm256_mul_ps(gv, gv)));
    _mm256_storeu_ps(sq + i, s);
    const __m256 d = _mm256_div_ps(_mm256_mul_ps(gv, l), _mm256_add_ps(_mm256_sqrt_ps(s), e));
    _mm256_storeu_ps(p + i, _mm256_add_ps(_mm256_loadu_ps(p + i), d));
  }
  if (i < n) rmsprop_row<float>(p + i, g + i, sq + i, n - i, alpha, neg_lr, eps);
}
#endif

// float32 runs the widest SIMD loop of the level in use
void rmsprop_any(double* p, const double* g, double* sq, int64_t n, double alpha, double neg_lr, double eps) {
  rmsprop_row<double>(p, g, sq, n, alpha, neg_lr, eps);
}
void rmsprop_any(float* p, const float* g, float* sq, int64_t n, float alpha, float neg_lr, float eps) {
#ifdef RNNBENCH_X86
  if (level() >= kAVX512) return rmsprop_row_avx512(p, g, sq, n, alpha, neg_lr, eps);
  if (level() >= kAVX2) return rmsprop_row_avx2(p, g, sq, n, alpha, neg_lr, eps);
#endif
  rmsprop_row<float>(p, g, sq, n, alpha, neg_lr, eps);
}

void rmsprop_step(at::Tensor p, const at::Tensor& g, at::Tensor sq, const at::Tensor& lr, const at::Tensor& update,
                  double alpha, double eps) {
  check(p, "p", 2); check(g, "g", 2); check(sq, "sq", 2); check(lr, "lr", 1); check(update, "update", 1);
  const int64_t K = p.size(0), P = p.size(1);
  TORCH_CHECK(g.sizes() == p.sizes() && sq.sizes() == p.sizes(), "rmsprop_step: p, g and sq must have one shape");
  TORCH_CHECK(g.scalar_type() == p.scalar_type() && sq.scalar_type() == p.scalar_type(), "rmsprop_step: one dtype");
  TORCH_CHECK(lr.size(0) == K && update.size(0) == K, "rmsprop_step: one learning rate and one flag per member");
  TORCH_CHECK(lr.scalar_type() == at::kDouble && update.scalar_type() == at::kBool,
              "rmsprop_step: lr must be float64 and update bool");
  const double* lp = lr.data_ptr<double>();
  const bool* up = update.data_ptr<bool>();
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "rmsprop_step", [&] {
    scalar_t* pp = p.data_ptr<scalar_t>();
    const scalar_t* gp = g.data_ptr<scalar_t>();
    scalar_t* sp = sq.data_ptr<scalar_t>();
    for (int64_t k = 0; k < K; ++k) {
      if (!up[k]) continue;
      const scalar_t a = scalar_t(alpha), nl = scalar_t(-lp[k]), e = scalar_t(eps);
      rmsprop_any(pp + k * P, gp + k * P, sp + k * P, P, a, nl, e);
    }
  });
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

}  // namespace

TORCH_LIBRARY(rnnbench, m) {
  m.def("tanh_forward(Tensor xw, Tensor h0, Tensor U) -> Tensor", &tanh_forward);
  m.def("tanh_backward(Tensor dhs, Tensor hs, Tensor U) -> (Tensor, Tensor)", &tanh_backward);
  m.def("gru_forward(Tensor xw, Tensor h0, Tensor U) -> (Tensor, Tensor)", &gru_forward);
  m.def("gru_backward(Tensor dhs, Tensor hs, Tensor h0, Tensor U, Tensor gates) -> (Tensor, Tensor)", &gru_backward);
  m.def("lstm_forward(Tensor xw, Tensor h0, Tensor c0, Tensor U, Tensor P) -> (Tensor, Tensor, Tensor, Tensor)", &lstm_forward);
  m.def("lstm_backward(Tensor dhs, Tensor dcs, Tensor cs, Tensor tcs, Tensor c0, Tensor U, Tensor P, Tensor gates) -> (Tensor, Tensor, Tensor)", &lstm_backward);
  m.def("sparse_proj(Tensor W, Tensor b, Tensor rows, Tensor cols, Tensor vals, int T, int B) -> Tensor", &sparse_proj);
  m.def("sparse_proj_backward(Tensor dxw, Tensor rows, Tensor cols, Tensor vals, int K, int D) -> Tensor", &sparse_proj_backward);
  m.def("bernoulli_nll(Tensor logits, Tensor targets, bool grad) -> (Tensor, Tensor)", &bernoulli_nll);
  m.def("mixture_nll(Tensor out, Tensor targets, Tensor weight, int C, float min_scale, bool grad) -> (Tensor, Tensor)",
        &mixture_nll);
  m.def("float_kernels() -> str", &float_kernels);
  m.def("set_float_kernels(str name) -> str", &set_float_kernels);
  m.def("rmsprop_step(Tensor(a!) p, Tensor g, Tensor(b!) sq, Tensor lr, Tensor update, float alpha, float eps) -> ()",
        &rmsprop_step);
}
