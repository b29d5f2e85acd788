// The float32 kernels at AVX2 + FMA (8 lanes): row-times-matrix product, sigmoid/tanh (Cephes-style
// polynomials), Bernoulli NLL row, axpy, the mixture head's element-wise terms and the RMSProp row.
// Each function carries its own target attribute (AVX2, rnnbench.h); kernels.cpp calls them only
// where the CPU has AVX2 and FMA.

#include "rnnbench.h"

namespace rnnbench_cpu {

#ifdef RNNBENCH_X86

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

// (the two maps of Ops, as functions: kernels.cpp fills Ops with them)
AVX2 void sigmoid_avx2(float* x, int64_t n) { map_avx2<sigmoid256>(x, n); }
AVX2 void tanh_avx2(float* x, int64_t n) { map_avx2<tanh256>(x, n); }

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

// The mixture-of-Gaussians terms (heads.cpp, mixture_terms_generic).
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

// One member's RMSProp update (rmsprop.cpp, rmsprop_row).
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

}  // namespace rnnbench_cpu
