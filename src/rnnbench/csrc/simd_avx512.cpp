// The float32 kernels at AVX-512 (16 lanes): row-times-matrix product (also for up to kSmallRows
// rows at once), sigmoid/tanh, Bernoulli NLL row, axpy, the mixture head's element-wise terms and
// the RMSProp row.
//
// The same algorithms as the AVX2 ones (simd_avx2.cpp), 16 lanes wide with mask registers for the tails
// (one 512-bit load feeds 16 multiply-adds: the row-times-matrix product of a batch of one is
// bound by loads), divisions replaced by the reciprocal estimate and a Newton step.  Results differ
// from the AVX2 ones in float rounding (~1 ulp).  They are written out again rather than shared
// through templates: each function compiles under its own target attribute, so that the AVX2 ones
// never contain an AVX-512 instruction (a CPU without it runs them), and GCC and clang both build it.
// kernels.cpp calls them only where the CPU has AVX-512 (F, DQ, VL, BW) as well as AVX2 and FMA.

#include "rnnbench.h"

namespace rnnbench_cpu {

#ifdef RNNBENCH_X86

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

// (the two maps of Ops, as functions: kernels.cpp fills Ops with them)
AVX512 void sigmoid_avx512(float* x, int64_t n) { map_avx512<sigmoid512>(x, n); }
AVX512 void tanh_avx512(float* x, int64_t n) { map_avx512<tanh512>(x, n); }

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

// The mixture-of-Gaussians terms (heads.cpp, mixture_terms_generic).
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

}  // namespace rnnbench_cpu
