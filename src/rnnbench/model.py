"""A recurrent cell followed by an output distribution: the next-step prediction model."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .cells import count_parameters, make_cell
from .errors import ConfigError
from .mixture import GaussianMixtureHead


class BernoulliHead(nn.Module):
    """Independent Bernoulli per output unit (one per piano key); NLL summed over units."""

    def __init__(self, hidden_size: int, output_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, output_size)

    def forward(self, h: Tensor) -> Tensor:
        return self.linear(h)  # logits

    def nll(self, h: Tensor, target: Tensor) -> Tensor:
        """Per-frame NLL in nats, shape ``target.shape[:-1]``.

        ``-[y log s(l) + (1 - y) log(1 - s(l))] = softplus(l) - y l``, summed over the units: the same
        value as ``binary_cross_entropy_with_logits`` (to float rounding; tested), in fewer passes.
        """
        logits = self(h)
        return F.softplus(logits, threshold=50.0).sum(-1) - (target * logits).sum(-1)  # (exp(50) fits float32)

    @torch.no_grad()
    def sample(self, h: Tensor, generator: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
        probs = torch.sigmoid(self(h) / temperature)
        return torch.bernoulli(probs, generator=generator)


# name -> head class; a head maps features (T, B, H) and targets to per-frame NLL via ``nll``.
HEADS: dict[str, type[nn.Module]] = {"bernoulli": BernoulliHead, "gmm": GaussianMixtureHead}


class SequenceModel(nn.Module):
    """``x_{<t}`` -> recurrent cell -> head -> distribution of ``x_t``."""

    def __init__(self, cell: str | Mapping, input_size: int, units: int, output_size: int | None = None,
                 head: str = "bernoulli", head_kwargs: dict | None = None):
        super().__init__()
        if head not in HEADS:
            raise ConfigError(f"unknown output head {head!r}; expected one of {sorted(HEADS)}")
        self.cell = make_cell(cell, input_size, units)
        self.head = HEADS[head](units, input_size if output_size is None else output_size, **(head_kwargs or {}))

    @classmethod
    def for_corpus(cls, cell: str | Mapping, units: int, corpus) -> "SequenceModel":
        """The model a corpus asks for: its input and output sizes and its output head."""
        return cls(cell, corpus.input_size, units, corpus.output_size, head=corpus.head,
                   head_kwargs=corpus.head_kwargs)

    def forward(self, inputs: Tensor, state=None):
        return self.cell(inputs, state)

    def frame_nll(self, inputs: Tensor, targets: Tensor) -> Tensor:
        """NLL of every frame, ``(T, B)``; padded frames hold garbage and must be masked."""
        h, _ = self.cell(inputs)
        return self.head.nll(h, targets)

    def noisy_parameters(self) -> list[nn.Parameter]:
        """The weights that get weight noise: every matrix and peephole vector, not the biases."""
        return [p for n, p in self.named_parameters() if n.rsplit(".", 1)[-1].startswith("weight")]

    def param_counts(self) -> dict[str, int]:
        return {"recurrent": count_parameters(self.cell), "total": count_parameters(self)}
