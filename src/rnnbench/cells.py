"""The paper's recurrent cells behind one interface.

Every cell maps a time-major input ``x`` of shape ``(T, B, D)`` and an optional
state to outputs ``(T, B, H)`` and a final state.  Its input projection for all
time steps is one matrix product; only the recurrent part runs step by step.

Equations (``*`` is the element-wise product, ``s`` the logistic sigmoid):

``tanh``  (Elman)::

    h_t = tanh(W x_t + U h_{t-1} + b)

``gru``  (Cho et al. 2014; Chung et al. 2014, eqs. 5-8: reset *before* the product)::

    z = s(W_z x + U_z h + b_z)          r = s(W_r x + U_r h + b_r)
    h~ = tanh(W x + U (r * h) + b)      h_t = (1 - z) * h + z * h~

``gru_after``  (the form of PyTorch's ``nn.GRU``: reset *after* the product, with
its extra recurrent bias ``b_hn`` so that it equals ``nn.GRU`` exactly)::

    h~ = tanh(W x + b + r * (U h + b_hn))

``lstm``  (Graves 2013, with diagonal peepholes)::

    i = s(W_i x + U_i h + p_i * c_{t-1} + b_i)
    f = s(W_f x + U_f h + p_f * c_{t-1} + b_f)
    c_t = f * c_{t-1} + i * tanh(W_c x + U_c h + b_c)
    o = s(W_o x + U_o h + p_o * c_t + b_o)
    h_t = o * tanh(c_t)

Add a cell of your own with :func:`register_cell`; it needs ``GATES`` (blocks of
``H`` columns in the input projection), a ``step`` and, if its state is not just
``h``, ``init_state``/``output``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from . import fused

CELLS: dict[str, type["RecurrentCell"]] = {}


def register_cell(name: str) -> Callable[[type["RecurrentCell"]], type["RecurrentCell"]]:
    def deco(cls: type["RecurrentCell"]) -> type["RecurrentCell"]:
        if name in CELLS:
            raise ValueError(f"cell {name!r} is already registered")
        CELLS[name] = cls
        cls.name = name
        return cls

    return deco


def make_cell(name: str, input_size: int, hidden_size: int) -> "RecurrentCell":
    if name not in CELLS:
        from .errors import ConfigError

        raise ConfigError(f"unknown cell {name!r}; expected one of {sorted(CELLS)}")
    if int(hidden_size) < 1 or int(input_size) < 1:
        from .errors import ConfigError

        raise ConfigError(f"cell {name!r}: units and input size must be >= 1, got units={hidden_size}, input={input_size}")
    return CELLS[name](int(input_size), int(hidden_size))


class RecurrentCell(nn.Module):
    """Base class: input projection for all steps at once, then a loop over ``step``."""

    name = "base"
    GATES = 1

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        G, H = self.GATES, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(input_size, G * H))
        self.weight_hh = nn.Parameter(torch.empty(H, G * H))
        self.bias = nn.Parameter(torch.empty(G * H))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def init_state(self, batch: int, like: Tensor):
        return like.new_zeros(batch, self.hidden_size)

    @staticmethod
    def output(state) -> Tensor:
        return state

    def step(self, xw: Tensor, state):  # pragma: no cover - abstract
        raise NotImplementedError

    def fused(self, xw: Tensor, state, weights: dict[str, Tensor] | None = None):
        """The whole recurrence in one fused call, or ``None`` where this cell has none.

        ``weights`` replaces the cell's own recurrent weights by name, e.g. with the ``(K, ...)``
        weights of K stacked members (``rnnbench.stack``), whose rows ``xw`` then holds in K blocks.
        """
        return None

    def _w(self, name: str, weights: dict[str, Tensor] | None) -> Tensor:
        return weights[name] if weights else getattr(self, name)

    def forward(self, x: Tensor, state=None, *, reference: bool = False):
        """Outputs ``(T, B, H)`` and the final state; ``reference=True`` forces the Python loop."""
        T, B, _ = x.shape
        if state is None:
            state = self.init_state(B, x)
        xw = torch.addmm(self.bias, x.reshape(T * B, -1), self.weight_ih).view(T, B, -1)
        if T > 0 and not reference and fused.use_fused(xw):
            out = self.fused(xw, state)
            if out is not None:
                return out
        return self.reference(xw, state)

    def reference(self, xw: Tensor, state):
        """The time loop written out in PyTorch operations: the reference for every fused path."""
        T = xw.shape[0]
        outs = []
        for t in range(T):
            state = self.step(xw[t], state)
            outs.append(self.output(state))
        return torch.stack(outs), state

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, hidden_size={self.hidden_size}"


@register_cell("tanh")
class TanhCell(RecurrentCell):
    GATES = 1

    def step(self, xw: Tensor, h: Tensor) -> Tensor:
        return torch.tanh(torch.addmm(xw, h, self.weight_hh))

    def fused(self, xw: Tensor, h: Tensor, weights=None):
        hs = fused.tanh_recurrence(xw, h, self._w("weight_hh", weights))
        return hs, hs[-1]


@register_cell("gru")
class GRUCell(RecurrentCell):
    """GRU with the reset gate applied before the recurrent product (the paper's cell)."""

    GATES = 3

    def step(self, xw: Tensor, h: Tensor) -> Tensor:
        H = self.hidden_size
        U = self.weight_hh
        zr = torch.sigmoid(torch.addmm(xw[:, : 2 * H], h, U[:, : 2 * H]))
        z, r = zr[:, :H], zr[:, H:]
        h_tilde = torch.tanh(torch.addmm(xw[:, 2 * H :], r * h, U[:, 2 * H :]))
        return torch.lerp(h, h_tilde, z)  # (1 - z) * h + z * h~

    def fused(self, xw: Tensor, h: Tensor, weights=None):
        hs = fused.gru_recurrence(xw, h, self._w("weight_hh", weights))
        return hs, hs[-1]


@register_cell("gru_after")
class GRUResetAfterCell(RecurrentCell):
    """GRU with the reset gate applied after the recurrent product (PyTorch's ``nn.GRU`` form)."""

    GATES = 3

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size)
        self.bias_hn = nn.Parameter(torch.empty(hidden_size))
        self.reset_parameters()

    def step(self, xw: Tensor, h: Tensor) -> Tensor:
        H = self.hidden_size
        hu = torch.mm(h, self.weight_hh)
        zr = torch.sigmoid(xw[:, : 2 * H] + hu[:, : 2 * H])
        z, r = zr[:, :H], zr[:, H:]
        h_tilde = torch.tanh(xw[:, 2 * H :] + r * (hu[:, 2 * H :] + self.bias_hn))
        return torch.lerp(h, h_tilde, z)


@register_cell("lstm")
class PeepholeLSTMCell(RecurrentCell):
    """LSTM with diagonal peephole weights (Graves 2013).  Gate order in the weights: i, f, c, o."""

    GATES = 4

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size)
        self.weight_peep = nn.Parameter(torch.empty(3, hidden_size))  # rows: input, forget, output gates
        self.reset_parameters()

    def init_state(self, batch: int, like: Tensor):
        z = like.new_zeros(batch, self.hidden_size)
        return (z, z.clone())

    @staticmethod
    def output(state) -> Tensor:
        return state[0]

    def step(self, xw: Tensor, state):
        h, c = state
        H = self.hidden_size
        g = torch.addmm(xw, h, self.weight_hh)
        p = self.weight_peep
        i = torch.sigmoid(g[:, :H] + p[0] * c)
        f = torch.sigmoid(g[:, H : 2 * H] + p[1] * c)
        c = f * c + i * torch.tanh(g[:, 2 * H : 3 * H])
        o = torch.sigmoid(g[:, 3 * H :] + p[2] * c)
        return (o * torch.tanh(c), c)

    def fused(self, xw: Tensor, state, weights=None):
        hs, cs = fused.lstm_recurrence(xw, state[0], state[1], self._w("weight_hh", weights),
                                       self._w("weight_peep", weights))
        return hs, (hs[-1], cs[-1])


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def recurrent_param_count(cell: str, input_size: int, units: int) -> int:
    """Parameters of the recurrent layer alone, as the paper's Table 1 counts them."""
    return count_parameters(make_cell(cell, input_size, units))
