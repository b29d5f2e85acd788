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
