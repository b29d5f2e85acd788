// The sparse input projection of piano rolls (W x + b as a sum of a few rows of W) and its gradient
// with respect to W, for K stacked members.

#include "rnnbench.h"

namespace rnnbench_cpu {

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

}  // namespace rnnbench_cpu
