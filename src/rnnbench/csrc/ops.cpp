// The extension's operators, registered as torch.ops.rnnbench.* (the schemas rnnbench/fused.py
// and rnnbench/stack.py call); each is defined in the file named beside its declaration in rnnbench.h.

#include "rnnbench.h"

using namespace rnnbench_cpu;

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
