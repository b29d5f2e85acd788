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

A cell of your own subclasses :class:`RecurrentCell`: ``GATES`` (blocks of ``H`` columns in
the input projection), a ``step`` and, if its state is not just ``h``, ``init_state``/``output``.
Name it in a config file by import path, ``_target_: mypkg.mymodule.MyCell`` in
``conf/cell/<name>.yaml`` of any config folder (``--config-dir``); :func:`make_cell` imports and
checks it wherever a model is built (a run, a sweep's worker, ``rnnbench-sample``).  Registering
it by name with :func:`register_cell` still works.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
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


def cell_class(cell: str | Mapping) -> type["RecurrentCell"]:
    """The class a cell configuration names: ``cell._target_`` (an import path, imported and
    checked) if it has one, else the registered ``cell.name``; a plain string is a registered name.
    Anything that cannot build a cell is a :class:`ConfigError` naming the file, the value and what
    was expected."""
    from .errors import ConfigError

    if isinstance(cell, str):
        name, target = cell, None
    else:
        name, target = cell.get("name"), cell.get("_target_")
    if target is None:
        if name not in CELLS:
            raise ConfigError(f"unknown cell {name!r}; expected one of {sorted(CELLS)}, or a cell file with "
                              f"_target_: <module>.<RecurrentCell subclass>")
        return CELLS[name]
    if isinstance(target, str):
        return _checked_target(target, str(name))
    return _import_and_check(target, name)


@functools.lru_cache(maxsize=None)  # (imported and checked once per process: every run, stack and worker asks)
def _checked_target(target: str, name: str) -> type["RecurrentCell"]:
    return _import_and_check(target, name)


def _import_and_check(target, name) -> type["RecurrentCell"]:
    from .errors import ConfigError
    from .targets import import_target

    where = f"cell._target_={target!r} (cell/{name}.yaml)"
    cls = import_target(target, where, "a subclass of rnnbench.cells.RecurrentCell")
    if not (isinstance(cls, type) and issubclass(cls, RecurrentCell)):
        raise ConfigError(f"{where}: {target!r} is a {type(cls).__name__}; expected a subclass of "
                          f"rnnbench.cells.RecurrentCell")
    if _owner(cls, "step") is RecurrentCell:
        raise ConfigError(f"{where}: {cls.__name__} has no step(xw, state); expected a RecurrentCell subclass "
                          f"that defines step")
    gates = getattr(cls, "GATES", None)
    if not isinstance(gates, int) or isinstance(gates, bool) or gates < 1:
        raise ConfigError(f"{where}: {cls.__name__}.GATES={gates!r}; expected an integer >= 1 (blocks of units "
                          f"in the input projection)")
    _check_shapes(cls, where)
    return cls


def _owner(cls: type, method: str) -> type:
    """The class of ``cls``'s method resolution order that defines ``method``."""
    return next(c for c in cls.__mro__ if method in vars(c))


def _check_shapes(cls: type["RecurrentCell"], where: str) -> None:
    """A 2-unit cell on a 3-wide input: weights of GATES blocks, and one step giving 2 features."""
    from .errors import ConfigError

    G, H, D = cls.GATES, 2, 3
    try:
        cell = cls(D, H)
    except Exception as exc:
        raise ConfigError(f"{where}: {cls.__name__}({D}, {H}) failed ({type(exc).__name__}: {exc}); expected "
                          f"__init__(input_size, hidden_size)") from exc
    shapes = {n: tuple(p.shape) for n, p in cell.named_parameters()}
    want = {"weight_ih": (D, G * H), "bias": (G * H,)}
    for n, shape in want.items():
        if shapes.get(n) != shape:
            raise ConfigError(f"{where}: {n} has shape {shapes.get(n)} with GATES={G}; expected {shape} "
                              f"(GATES blocks of units)")
    if shapes.get("weight_hh", (None, None))[-1] != G * H:
        raise ConfigError(f"{where}: weight_hh has shape {shapes.get('weight_hh')} with GATES={G}; expected "
                          f"(units, {G * H}) (GATES blocks of units)")
    with torch.no_grad():
        try:
            out, _ = cell(torch.zeros(2, 1, D), reference=True)
        except Exception as exc:
            raise ConfigError(f"{where}: one step of {cls.__name__} failed ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}); expected step(xw, state) to "
                              f"take xw of shape (batch, GATES * units)") from exc
    if tuple(out.shape) != (2, 1, H):
        raise ConfigError(f"{where}: {cls.__name__} gives outputs of shape {tuple(out.shape)} for 2 steps of a "
                          f"batch of 1 with 2 units; expected (2, 1, 2)")


def make_cell(cell: str | Mapping, input_size: int, hidden_size: int) -> "RecurrentCell":
    """A cell for a registered name or a cell configuration (see :func:`cell_class`)."""
    cls = cell_class(cell)
    name = cell if isinstance(cell, str) else cell.get("name")
    if int(hidden_size) < 1 or int(input_size) < 1:
        from .errors import ConfigError

        raise ConfigError(f"cell {name!r}: units and input size must be >= 1, got units={hidden_size}, input={input_size}")
    return cls(int(input_size), int(hidden_size))


def has_fused(cell: "RecurrentCell") -> bool:
    """Whether the cell's ``fused`` computes its own ``step``: a subclass that rewrites ``step``
    of a shipped cell, but not ``fused``, runs the reference loop, not its parent's kernel."""
    return _class_has_fused(type(cell))


@functools.lru_cache(maxsize=None)  # (asked at every forward pass and update: once per class)
def _class_has_fused(cls: type) -> bool:
    f = _owner(cls, "fused")
    return f is not RecurrentCell and issubclass(f, _owner(cls, "step"))


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
        if T > 0 and not reference and has_fused(self) and fused.use_fused(xw):
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


def recurrent_param_count(cell: str | Mapping, input_size: int, units: int) -> int:
    """Parameters of the recurrent layer alone, as the paper's Table 1 counts them."""
    return count_parameters(make_cell(cell, input_size, units))
