// The RMSProp update of K stacked members' flat weights in one pass (torch.optim.RMSprop, momentum
// 0, not centred), each member with its own learning rate.

#include "rnnbench.h"

namespace rnnbench_cpu {

// ---------------------------------------------------------------- RMSProp over stacked members
// One update of torch.optim.RMSprop (momentum 0, not centred) on K members' flat weights p (K, P)
// with gradients g and running averages sq of the same shape, member k's learning rate lr[k] (a
// float64 vector), the members with update[k] false left as they are:
//     sq = alpha sq + (1 - alpha) g^2;  p = p - lr g / (sqrt(sq) + eps).
// One pass over the three tensors instead of seven.  (Weights that never get a gradient, the
// input rows of piano keys a corpus never uses, keep sq = 0 exactly; sqrt(0) is a slow path of
// the vectorized library sqrt on this hardware, and here it costs what any other value costs.)
// (the loop itself: rmsprop_row, rnnbench.h; the float32 SIMD rows: simd_*.cpp)

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

}  // namespace rnnbench_cpu
