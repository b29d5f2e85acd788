"""Mixture of diagonal Gaussians: the output distribution of the speech task.

As in Chung et al. (2014), the model predicts the next ``D = 10`` audio samples with a
mixture of ``K = 20`` Gaussians with diagonal covariances.  One linear layer maps the
recurrent features ``h`` to

* ``K`` mixture logits (turned into log-weights with ``log_softmax``),
* ``K * D`` means,
* ``K * D`` raw scales, turned into standard deviations with
  ``sigma = min_scale + softplus(raw)``.

The floor ``min_scale`` (default ``1e-3``, in the units of the normalised signal, whose
per-utterance standard deviation is 1) keeps every density bounded: the NLL of one step can
never fall below ``D * log(min_scale * sqrt(2 pi)) ~= -59.9`` nats, so a component cannot
collapse onto a single value and drive the loss to minus infinity.  ``softplus`` instead of
``exp`` keeps large raw scales finite.  Log-densities are combined with ``logsumexp``.

``nll(h, target)`` is the negative log-density of the 10 target samples, in nats, one value
per step (summed over the 10 samples, like the Bernoulli head sums over keys).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOG_2PI = math.log(2.0 * math.pi)


class GaussianMixtureHead(nn.Module):
    """``K`` diagonal Gaussians over ``output_size`` values per step."""

    def __init__(self, hidden_size: int, output_size: int, components: int = 20, min_scale: float = 1e-3,
                 chunk_frames: int = 65536):
        super().__init__()
        if int(components) < 1:
            raise ValueError(f"gmm head: components must be >= 1, got {components!r}")
        if not (float(min_scale) > 0 and math.isfinite(float(min_scale))):
            raise ValueError(f"gmm head: min_scale must be a positive number, got {min_scale!r}")
        self.components = int(components)
        self.output_size = int(output_size)
        self.min_scale = float(min_scale)
        # Without gradients (evaluation) the NLL is computed this many frames at a time, so
        # that the (frames, K, D) intermediates of a huge evaluation batch stay small.
        self.chunk_frames = int(chunk_frames)
        K, D = self.components, self.output_size
        self.linear = nn.Linear(hidden_size, K + 2 * K * D)

    def extra_repr(self) -> str:
        return f"components={self.components}, output_size={self.output_size}, min_scale={self.min_scale}"

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mixture parameters: log-weights ``(..., K)``, means and scales ``(..., K, D)``."""
        K, D = self.components, self.output_size
        out = self.linear(h)
        logits, mean, raw_scale = out.split([K, K * D, K * D], dim=-1)
        log_weights = F.log_softmax(logits, dim=-1)
        mean = mean.unflatten(-1, (K, D))
        scale = self.min_scale + F.softplus(raw_scale.unflatten(-1, (K, D)))
        return log_weights, mean, scale

    def _nll(self, h: Tensor, target: Tensor) -> Tensor:
        log_weights, mean, scale = self(h)
        z = (target.unsqueeze(-2) - mean) / scale
        # log N(y; mu, sigma) summed over the D values of each component
        log_comp = -(0.5 * z.square() + scale.log()).sum(-1) - 0.5 * self.output_size * LOG_2PI
        return -torch.logsumexp(log_weights + log_comp, dim=-1)

    def nll(self, h: Tensor, target: Tensor) -> Tensor:
        """Per-step NLL in nats, shape ``target.shape[:-1]``."""
        if target.shape[-1] != self.output_size:
            raise ValueError(f"gmm head: targets have {target.shape[-1]} values per step, expected {self.output_size}")
        lead = target.shape[:-1]
        n = int(math.prod(lead)) if lead else 1
        if torch.is_grad_enabled() or n <= self.chunk_frames:
            return self._nll(h, target)
        hf, tf = h.reshape(n, h.shape[-1]), target.reshape(n, self.output_size)
        parts = [self._nll(hf[i:i + self.chunk_frames], tf[i:i + self.chunk_frames])
                 for i in range(0, n, self.chunk_frames)]
        return torch.cat(parts).reshape(lead)

    @torch.no_grad()
    def sample(self, h: Tensor, generator: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
        """Draw the next ``D`` values for every position of ``h``, shape ``h.shape[:-1] + (D,)``.

        ``temperature`` divides the mixture logits and multiplies the scales: below 1 the
        draw favours the likeliest component and stays nearer its mean.
        """
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        log_weights, mean, scale = self(h)
        lead = log_weights.shape[:-1]
        K, D = self.components, self.output_size
        probs = torch.softmax(log_weights.reshape(-1, K) / temperature, dim=-1)
        k = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(mean.device)
        rows = torch.arange(k.numel(), device=k.device)
        mu = mean.reshape(-1, K, D)[rows, k]
        sigma = scale.reshape(-1, K, D)[rows, k] * temperature
        noise = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device="cpu").to(mu.device)
        return (mu + sigma * noise).reshape(*lead, D)



# --------------------------------------------------------------------------- stacked, hand-written

# torch's softplus returns x itself above this (its default threshold), and its gradient there is 1
SOFTPLUS_THRESHOLD = 20.0


def _terms(out: Tensor, target: Tensor, components: int, min_scale: float):
    """What :meth:`GaussianMixtureHead._nll` computes from the linear layer's output, for every
    member at once: ``out`` ``(K, N, C + 2 C D)``, ``target`` ``(N, D)`` shared by the members.
    Returns ``logsumexp`` ``(K, N)`` and the terms its gradient needs."""
    C, D = components, target.shape[-1]
    a, mean, raw = out.split([C, C * D, C * D], dim=-1)
    log_w = F.log_softmax(a, dim=-1)
    raw = raw.unflatten(-1, (C, D))
    scale = min_scale + F.softplus(raw)
    z = (target.unsqueeze(-2) - mean.unflatten(-1, (C, D))) / scale
    log_comp = -(0.5 * z.square() + scale.log()).sum(-1) - 0.5 * D * LOG_2PI
    joint = log_w + log_comp
    return torch.logsumexp(joint, dim=-1), joint, log_w, raw, scale, z


def stacked_nll(out: Tensor, target: Tensor, components: int, min_scale: float, chunk_rows: int = 65536) -> Tensor:
    """Per-frame NLL ``(K, N)`` of K members' head outputs ``out`` ``(K, N, C + 2 C D)`` against
    ``target`` ``(N, D)``: :meth:`GaussianMixtureHead.nll`, batched over members (differentiable;
    without gradients, ``chunk_rows`` member-frames at a time)."""
    target = target.to(out.dtype)
    K, N = out.shape[:2]
    step = max(1, chunk_rows // max(K, 1))
    if torch.is_grad_enabled() or N <= step:
        return -_terms(out, target, components, min_scale)[0]
    return torch.cat([-_terms(out[:, i:i + step], target[i:i + step], components, min_scale)[0]
                      for i in range(0, N, step)], dim=1)


@torch.no_grad()
def stacked_nll_and_grad(out: Tensor, target: Tensor, components: int, min_scale: float,
                         weight: Tensor) -> tuple[Tensor, Tensor]:
    """Per-frame NLL ``(K, N)`` as :func:`stacked_nll`, and the gradient of ``sum(weight * nll)``
    with respect to ``out`` ``(K, N, O)`` in closed form (no autograd graph).  ``weight`` ``(N,)``
    weighs each frame (0 for padding).  With the responsibilities ``g = softmax_c(joint)``, the
    mixture weights ``pi = softmax(a)`` and ``z = (y - mean) / s``:

    * d/d a_c = pi_c - g_c;
    * d/d mean_cd = -g_c z_cd / s_cd;
    * d/d raw_cd = g_c (1 - z_cd^2) / s_cd * softplus'(raw_cd) (sigmoid; 1 above torch's threshold).
    """
    target = target.to(out.dtype)
    C = components
    K, N, O = out.shape
    D = target.shape[-1]
    lse, joint, log_w, raw, scale, z = _terms(out, target, C, min_scale)
    w = weight.to(out.dtype).view(N, 1)
    g = joint.sub_(lse.unsqueeze(-1)).exp_().mul_(w)  # weighted responsibilities (K, N, C)
    grad = torch.empty_like(out)
    ga, gm, gr = grad.split([C, C * D, C * D], dim=-1)
    ga.copy_(log_w.exp_().mul_(w).sub_(g))
    gc = g.unsqueeze(-1)
    q = z.div(scale)  # z / s
    gm.view(K, N, C, D).copy_(q.mul(gc).neg_())
    # g (1 - z^2) / s = g (1 / s - z q)
    ds = scale.reciprocal_().sub_(z.mul_(q)).mul_(gc)
    slope = torch.where(raw > SOFTPLUS_THRESHOLD, 1.0, torch.sigmoid(raw))
    gr.view(K, N, C, D).copy_(ds.mul_(slope))
    return lse.neg_(), grad
