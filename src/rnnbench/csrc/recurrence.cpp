// Fused CPU recurrences of the paper's cells: forward and hand-derived backward over a whole
// sequence.  The input projection (W x + b for every step) and the weight gradients are bulk
// matrix products done by the caller (rnnbench/fused.py); this file only runs the time loop,
// where per-operation overhead, not arithmetic, sets the pace.
//
// Shapes: xw (T, B, G*H) pre-activations from the input, h0/c0 (B, H), U (H, G*H) recurrent
// weights (columns grouped by gate), P (3, H) peepholes.  Everything contiguous, same dtype.
// Gate order: tanh [a]; gru [z, r, n]; lstm [i, f, g, o].
//
// Stacked members (several models of one architecture trained side by side, rnnbench/stack.py):
// U (K, H, G*H) and P (K, 3, H) hold K members' weights, and the B rows of xw/h0/c0 are K
// blocks of B/K rows, member by member.  Each step's recurrent product is then one batched
// product (bmm) instead of a matrix product; everything else is row-wise and unchanged.

#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <cmath>
#include <tuple>

namespace {

template <typename T> inline T sigm(T x) { return T(1) / (T(1) + std::exp(-x)); }

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

// Rows per member up to which the recurrent product is a hand-written loop rather than a BLAS
// call: at the paper's batch of one sequence a step multiplies a single row (per member), where
// a library call costs more in overhead than the arithmetic, and the loop below vectorizes.
constexpr int64_t kSmallRows = 8;

// o[r, :] = (init ? init[r, :] : 0) + h[r, :] @ U for ``rows`` rows; U (H, N) with row stride ldu.
template <typename T>
void small_mm(T* __restrict__ out, int64_t ldo, const T* __restrict__ h, int64_t ldh, const T* __restrict__ U,
              int64_t ldu, const T* __restrict__ init, int64_t ldi, int64_t rows, int64_t H, int64_t N) {
  for (int64_t r = 0; r < rows; ++r) {
    T* __restrict__ o = out + r * ldo;
    if (init) {
      for (int64_t j = 0; j < N; ++j) o[j] = init[r * ldi + j];
    } else {
      for (int64_t j = 0; j < N; ++j) o[j] = T(0);
    }
    const T* hr = h + r * ldh;
    for (int64_t i = 0; i < H; ++i) {
      const T a = hr[i];
      const T* __restrict__ u = U + i * ldu;
      for (int64_t j = 0; j < N; ++j) o[j] += a * u[j];
    }
  }
}

// out (R, N) = [xw +] h (R, H) @ U, where U is (H, N) or K members' (K, H, N) acting on K row
// blocks.  ``out``, ``xw`` and ``h`` may be column slices of wider rows (row stride > width).
void rec_product(at::Tensor out, const at::Tensor* xw, const at::Tensor& h, const at::Tensor& U) {
  const int64_t K = U.dim() == 2 ? 1 : U.size(0), R = h.size(0), BK = R / K, H = h.size(1), N = out.size(1);
  const bool dense = U.stride(-1) == 1 && out.stride(1) == 1 && h.stride(1) == 1 && (!xw || xw->stride(1) == 1);
  if (BK <= kSmallRows && dense) {
    AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "rec_product", [&] {
      const int64_t uk = U.dim() == 2 ? 0 : U.stride(0);
      for (int64_t k = 0; k < K; ++k)
        small_mm<scalar_t>(out.data_ptr<scalar_t>() + k * BK * out.stride(0), out.stride(0),
                           h.data_ptr<scalar_t>() + k * BK * h.stride(0), h.stride(0),
                           U.data_ptr<scalar_t>() + k * uk, U.stride(-2),
                           xw ? xw->data_ptr<scalar_t>() + k * BK * xw->stride(0) : nullptr,
                           xw ? xw->stride(0) : 0, BK, H, N);
    });
    return;
  }
  if (U.dim() == 2) {
    if (xw) at::addmm_out(out, *xw, h, U); else at::mm_out(out, h, U);
    return;
  }
  at::Tensor o = out.view({K, BK, N});
  if (xw) at::baddbmm_out(o, xw->view({K, BK, N}), h.view({K, BK, H}), U);
  else at::bmm_out(o, h.view({K, BK, H}), U);
}

void rec_mm(at::Tensor out, const at::Tensor& h, const at::Tensor& U) { rec_product(out, nullptr, h, U); }
void rec_addmm(at::Tensor out, const at::Tensor& xw, const at::Tensor& h, const at::Tensor& U) {
  rec_product(out, &xw, h, U);
}

// The recurrent weights transposed for the backward pass, made contiguous: (N, H) or (K, N, H).
at::Tensor rec_t(const at::Tensor& U) { return U.transpose(-1, -2).contiguous(); }

// Columns [start, start + n) of every member's weights.
at::Tensor cols(const at::Tensor& U, int64_t start, int64_t n) { return U.narrow(-1, start, n); }

// ---------------------------------------------------------------- tanh
at::Tensor tanh_forward(const at::Tensor& xw, const at::Tensor& h0, const at::Tensor& U) {
  check(xw, "xw", 3); check(h0, "h0", 2); members(U, xw.size(1), "U", 2);
  const int64_t T = xw.size(0);
  auto hs = at::empty_like(xw);
  at::Tensor h = h0;
  for (int64_t t = 0; t < T; ++t) {
    at::Tensor out = hs[t];
    rec_addmm(out, xw[t], h, U);
    out.tanh_();
    h = out;
  }
  return hs;
}

std::tuple<at::Tensor, at::Tensor> tanh_backward(const at::Tensor& dhs, const at::Tensor& hs,
                                                 const at::Tensor& U) {
  check(dhs, "dhs", 3); check(hs, "hs", 3);
  const int64_t T = hs.size(0), B = hs.size(1), H = hs.size(2);
  auto dxw = at::empty_like(hs);
  auto carry = at::zeros({B, H}, hs.options());
  members(U, B, "U", 2);
  auto Ut = rec_t(U);
  AT_DISPATCH_FLOATING_TYPES(hs.scalar_type(), "tanh_backward", [&] {
    for (int64_t t = T - 1; t >= 0; --t) {
      const scalar_t* h = hs.data_ptr<scalar_t>() + t * B * H;
      const scalar_t* g = dhs.data_ptr<scalar_t>() + t * B * H;
      const scalar_t* c = carry.data_ptr<scalar_t>();
      scalar_t* da = dxw.data_ptr<scalar_t>() + t * B * H;
      for (int64_t k = 0; k < B * H; ++k) da[k] = (g[k] + c[k]) * (scalar_t(1) - h[k] * h[k]);
      rec_mm(carry, dxw[t], Ut);
    }
  });
  return {dxw, carry};
}

// ---------------------------------------------------------------- gru (reset before the product)
std::tuple<at::Tensor, at::Tensor> gru_forward(const at::Tensor& xw, const at::Tensor& h0, const at::Tensor& U) {
  check(xw, "xw", 3); check(h0, "h0", 2); members(U, xw.size(1), "U", 2);
  const int64_t T = xw.size(0), B = xw.size(1), H = h0.size(1);
  auto hs = at::empty({T, B, H}, xw.options());
  auto gates = at::empty_like(xw);  // z, r, n after their nonlinearities
  auto Uzr = cols(U, 0, 2 * H), Un = cols(U, 2 * H, H);
  auto azr = at::empty({B, 2 * H}, xw.options());
  auto an = at::empty({B, H}, xw.options());
  auto rh = at::empty({B, H}, xw.options());
  AT_DISPATCH_FLOATING_TYPES(xw.scalar_type(), "gru_forward", [&] {
    at::Tensor h = h0;
    for (int64_t t = 0; t < T; ++t) {
      const scalar_t* x = xw.data_ptr<scalar_t>() + t * B * 3 * H;
      scalar_t* gt = gates.data_ptr<scalar_t>() + t * B * 3 * H;
      const scalar_t* hp = h.data_ptr<scalar_t>();
      scalar_t* a = azr.data_ptr<scalar_t>();
      scalar_t* rhp = rh.data_ptr<scalar_t>();
      rec_mm(azr, h, Uzr);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t j = 0; j < 2 * H; ++j) a[b * 2 * H + j] += x[b * 3 * H + j];
      azr.sigmoid_();  // vectorized inside ATen
      for (int64_t b = 0; b < B; ++b)
        for (int64_t j = 0; j < H; ++j) {
          scalar_t z = a[b * 2 * H + j], r = a[b * 2 * H + H + j];
          gt[b * 3 * H + j] = z;
          gt[b * 3 * H + H + j] = r;
          rhp[b * H + j] = r * hp[b * H + j];
        }
      rec_mm(an, rh, Un);
      scalar_t* n = an.data_ptr<scalar_t>();
      for (int64_t b = 0; b < B; ++b)
        for (int64_t j = 0; j < H; ++j) n[b * H + j] += x[b * 3 * H + 2 * H + j];
      an.tanh_();
      scalar_t* ho = hs.data_ptr<scalar_t>() + t * B * H;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t j = 0; j < H; ++j) {
          scalar_t z = gt[b * 3 * H + j], nn = n[b * H + j];
          gt[b * 3 * H + 2 * H + j] = nn;
          ho[b * H + j] = hp[b * H + j] + z * (nn - hp[b * H + j]);
        }
      h = hs[t];
    }
  });
  return {hs, gates};
}

std::tuple<at::Tensor, at::Tensor> gru_backward(const at::Tensor& dhs, const at::Tensor& hs, const at::Tensor& h0,
                                                const at::Tensor& U, const at::Tensor& gates) {
  check(dhs, "dhs", 3); check(hs, "hs", 3); check(gates, "gates", 3);
  const int64_t T = hs.size(0), B = hs.size(1), H = hs.size(2);
  auto dxw = at::empty_like(gates);
  auto carry = at::zeros({B, H}, hs.options());
  auto drh = at::empty({B, H}, hs.options());
  auto dzr_h = at::empty({B, H}, hs.options());
  members(U, B, "U", 2);
  auto UnT = rec_t(cols(U, 2 * H, H)), UzrT = rec_t(cols(U, 0, 2 * H));
  AT_DISPATCH_FLOATING_TYPES(hs.scalar_type(), "gru_backward", [&] {
    for (int64_t t = T - 1; t >= 0; --t) {
      const scalar_t* hp = t > 0 ? hs.data_ptr<scalar_t>() + (t - 1) * B * H : h0.data_ptr<scalar_t>();
      const scalar_t* g = dhs.data_ptr<scalar_t>() + t * B * H;
      const scalar_t* gt = gates.data_ptr<scalar_t>() + t * B * 3 * H;
      scalar_t* c = carry.data_ptr<scalar_t>();
      scalar_t* d = dxw.data_ptr<scalar_t>() + t * B * 3 * H;
      // dh = incoming gradient; d n-preactivation; the part of dh_prev through (1 - z)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t j = 0; j < H; ++j) {
          const int64_t k = b * H + j, q = b * 3 * H;
          scalar_t dh = g[k] + c[k];
          scalar_t z = gt[q + j], n = gt[q + 2 * H + j];
          d[q + 2 * H + j] = dh * z * (scalar_t(1) - n * n);
          d[q + j] = dh * (n - hp[k]) * z * (scalar_t(1) - z);
          c[k] = dh * (scalar_t(1) - z);
        }
      at::Tensor dn = dxw[t].narrow(1, 2 * H, H);
      rec_mm(drh, dn, UnT);  // d(r * h_prev)
      const scalar_t* dr = drh.data_ptr<scalar_t>();
      for (int64_t b = 0; b < B; ++b)
        for (int64_t j = 0; j < H; ++j) {
          const int64_t k = b * H + j, q = b * 3 * H;
          scalar_t r = gt[q + H + j];
          d[q + H + j] = dr[k] * hp[k] * r * (scalar_t(1) - r);
          c[k] += dr[k] * r;
        }
      rec_mm(dzr_h, dxw[t].narrow(1, 0, 2 * H), UzrT);
      carry.add_(dzr_h);
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
  const int64_t T = xw.size(0), B = xw.size(1), H = h0.size(1), BK = B / K;
  auto hs = at::empty({T, B, H}, xw.options());
  auto cs = at::empty({T, B, H}, xw.options());
  auto tcs = at::empty({T, B, H}, xw.options());  // tanh(c), kept for the backward pass
  auto gates = at::empty_like(xw);  // i, f, g, o after their nonlinearities
  AT_DISPATCH_FLOATING_TYPES(xw.scalar_type(), "lstm_forward", [&] {
    const scalar_t* p = P.data_ptr<scalar_t>();
    at::Tensor h = h0;
    const scalar_t* cp = c0.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t) {
      at::Tensor a = gates[t];
      rec_addmm(a, xw[t], h, U);
      scalar_t* gt = a.data_ptr<scalar_t>();
      for (int64_t b = 0; b < B; ++b) {
        const scalar_t* pb = p + (b / BK) * 3 * H;  // this row's member's peepholes
        for (int64_t j = 0; j < H; ++j) {
          const int64_t k = b * H + j, q = b * 4 * H;
          gt[q + j] += pb[j] * cp[k];
          gt[q + H + j] += pb[H + j] * cp[k];
        }
      }
      a.narrow(1, 0, 2 * H).sigmoid_();
      a.narrow(1, 2 * H, H).tanh_();
      scalar_t* co = cs.data_ptr<scalar_t>() + t * B * H;
      for (int64_t b = 0; b < B; ++b) {
        const scalar_t* pb = p + (b / BK) * 3 * H;
        for (int64_t j = 0; j < H; ++j) {
          const int64_t k = b * H + j, q = b * 4 * H;
          scalar_t c = gt[q + H + j] * cp[k] + gt[q + j] * gt[q + 2 * H + j];
          co[k] = c;
          gt[q + 3 * H + j] += pb[2 * H + j] * c;
        }
      }
      a.narrow(1, 3 * H, H).sigmoid_();
      at::Tensor tc = tcs[t];
      at::tanh_out(tc, cs[t]);
      const scalar_t* tcp = tc.data_ptr<scalar_t>();
      scalar_t* ho = hs.data_ptr<scalar_t>() + t * B * H;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t j = 0; j < H; ++j) ho[b * H + j] = gt[b * 4 * H + 3 * H + j] * tcp[b * H + j];
      h = hs[t];
      cp = co;
    }
  });
  return {hs, cs, tcs, gates};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_backward(const at::Tensor& dhs, const at::Tensor& dcs,
                                                             const at::Tensor& cs, const at::Tensor& tcs,
                                                             const at::Tensor& c0, const at::Tensor& U,
                                                             const at::Tensor& P, const at::Tensor& gates) {
  check(dhs, "dhs", 3); check(dcs, "dcs", 3); check(cs, "cs", 3); check(tcs, "tcs", 3); check(gates, "gates", 3);
  const int64_t T = cs.size(0), B = cs.size(1), H = cs.size(2);
  const int64_t K = members(U, B, "U", 2), BK = B / K;
  TORCH_CHECK(members(P, B, "P", 2) == K && P.dim() == U.dim(), "P and U must hold the same members");
  auto dxw = at::empty_like(gates);
  auto dh_carry = at::zeros({B, H}, cs.options());
  auto dc_carry = at::zeros({B, H}, cs.options());
  auto UT = rec_t(U);
  AT_DISPATCH_FLOATING_TYPES(cs.scalar_type(), "lstm_backward", [&] {
    const scalar_t* pm = P.data_ptr<scalar_t>();
    const scalar_t* c0p = c0.data_ptr<scalar_t>();
    for (int64_t t = T - 1; t >= 0; --t) {
      const scalar_t* gh = dhs.data_ptr<scalar_t>() + t * B * H;
      const scalar_t* gc = dcs.data_ptr<scalar_t>() + t * B * H;
      const scalar_t* tcc = tcs.data_ptr<scalar_t>() + t * B * H;
      const scalar_t* cp = t > 0 ? cs.data_ptr<scalar_t>() + (t - 1) * B * H : c0p;
      const scalar_t* gt = gates.data_ptr<scalar_t>() + t * B * 4 * H;
      scalar_t* d = dxw.data_ptr<scalar_t>() + t * B * 4 * H;
      scalar_t* dhc = dh_carry.data_ptr<scalar_t>();
      scalar_t* dcc = dc_carry.data_ptr<scalar_t>();
      for (int64_t b = 0; b < B; ++b) {
        const scalar_t* p = pm + (b / BK) * 3 * H;  // this row's member's peepholes
        for (int64_t j = 0; j < H; ++j) {
          const int64_t k = b * H + j, q = b * 4 * H;
          scalar_t i = gt[q + j], f = gt[q + H + j], g = gt[q + 2 * H + j], o = gt[q + 3 * H + j];
          scalar_t dh = gh[k] + dhc[k];
          scalar_t tc = tcc[k];
          scalar_t dao = dh * tc * o * (scalar_t(1) - o);
          scalar_t dc = gc[k] + dcc[k] + dh * o * (scalar_t(1) - tc * tc) + dao * p[2 * H + j];
          scalar_t dai = dc * g * i * (scalar_t(1) - i);
          scalar_t daf = dc * cp[k] * f * (scalar_t(1) - f);
          scalar_t dag = dc * i * (scalar_t(1) - g * g);
          d[q + j] = dai; d[q + H + j] = daf; d[q + 2 * H + j] = dag; d[q + 3 * H + j] = dao;
          dcc[k] = dc * f + dai * p[j] + daf * p[H + j];
        }
      }
      rec_mm(dh_carry, dxw[t], UT);
    }
  });
  return {dxw, dh_carry, dc_carry};
}

}  // namespace

TORCH_LIBRARY(rnnbench, m) {
  m.def("tanh_forward(Tensor xw, Tensor h0, Tensor U) -> Tensor", &tanh_forward);
  m.def("tanh_backward(Tensor dhs, Tensor hs, Tensor U) -> (Tensor, Tensor)", &tanh_backward);
  m.def("gru_forward(Tensor xw, Tensor h0, Tensor U) -> (Tensor, Tensor)", &gru_forward);
  m.def("gru_backward(Tensor dhs, Tensor hs, Tensor h0, Tensor U, Tensor gates) -> (Tensor, Tensor)", &gru_backward);
  m.def("lstm_forward(Tensor xw, Tensor h0, Tensor c0, Tensor U, Tensor P) -> (Tensor, Tensor, Tensor, Tensor)", &lstm_forward);
  m.def("lstm_backward(Tensor dhs, Tensor dcs, Tensor cs, Tensor tcs, Tensor c0, Tensor U, Tensor P, Tensor gates) -> (Tensor, Tensor, Tensor)", &lstm_backward);
}
