// The output heads' NLL and its gradient in one pass, for K stacked members: Bernoulli (the music
// tasks' piano keys) and the mixture of Gaussians (the speech task, rnnbench/mixture.py).

#include "rnnbench.h"

namespace rnnbench_cpu {

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

}  // namespace rnnbench_cpu
