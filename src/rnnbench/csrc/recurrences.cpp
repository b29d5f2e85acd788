// The fused recurrences of the paper's cells, forward and hand-derived backward over a whole
// sequence, for one model or K stacked members: tanh, GRU (reset before the product) and LSTM with
// diagonal peepholes.  Shapes and layout: rnnbench.h.

#include "rnnbench.h"

namespace rnnbench_cpu {

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

}  // namespace rnnbench_cpu
