"""Fused CPU time loops for the paper's cells, with hand-derived backward passes.

The C++ source (``csrc/recurrence.cpp``) is compiled by PyTorch's extension builder the first
time it is needed (about a minute; cached under ``~/.cache/torch_extensions`` or
``$TORCH_EXTENSIONS_DIR``) and registered as ``torch.ops.rnnbench.*``.  Only the recurrence
runs there; input projections and weight gradients stay bulk matrix products here.

Which implementation a cell uses is set by ``RNNBENCH_IMPL`` (or :func:`set_impl`):

* ``auto`` (default): fused on CPU when the extension builds, else the reference Python loop;
* ``fused``: fused, and an error if it cannot be built;
* ``python``: the reference implementation (``rnnbench.cells``), always.

On CUDA the reference implementation runs.  Both give the same values (tested to tolerance).

The same functions run K *stacked members* (rnnbench/stack.py): recurrent weights ``U`` of shape
``(K, H, G*H)`` (peepholes ``(K, 3, H)``) act on the rows of ``xw``/``h0``, which hold K blocks of
``B`` rows, member by member; the weight gradients then come back per member.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path

import torch
from torch import Tensor

log = logging.getLogger("rnnbench.fused")
IMPLS = ("auto", "fused", "python")
_SOURCE = Path(__file__).with_name("csrc") / "recurrence.cpp"
_lock = threading.Lock()
_state: dict = {"loaded": None, "error": None, "impl": None}


def get_impl() -> str:
    impl = _state["impl"] or os.environ.get("RNNBENCH_IMPL", "auto")
    if impl not in IMPLS:
        from .errors import ConfigError

        raise ConfigError(f"RNNBENCH_IMPL={impl!r} is invalid: expected one of {IMPLS}")
    return impl


def set_impl(impl: str | None) -> None:
    """Choose the implementation for this process (``None``: back to ``$RNNBENCH_IMPL``)."""
    if impl is not None and impl not in IMPLS:
        from .errors import ConfigError

        raise ConfigError(f"impl={impl!r} is invalid: expected one of {IMPLS}")
    _state["impl"] = impl


def load() -> bool:
    """Build (once) and load the extension; return whether it is usable."""
    if _state["loaded"] is not None:
        return _state["loaded"]
    with _lock:
        if _state["loaded"] is not None:
            return _state["loaded"]
        try:
            if not hasattr(torch.ops.rnnbench, "gru_forward"):
                # (it warns that no CUDA runtime is found; irrelevant for a CPU-only extension)
                logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
                from torch.utils import cpp_extension

                # ninja may be installed in this environment's bin/ without being on PATH
                bindir = str(Path(sys.executable).parent)
                if bindir not in os.environ.get("PATH", "").split(os.pathsep):
                    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
                cpp_extension.load(name="rnnbench_recurrence", sources=[str(_SOURCE)],
                                   extra_cflags=["-O3"], is_python_module=False, verbose=False)
            _state["loaded"] = True
        except Exception as exc:  # no compiler, no ninja, ...: fall back, say why once
            _state["loaded"], _state["error"] = False, exc
            log.warning("fused recurrences unavailable, using the reference Python loop: %s", exc)
    return _state["loaded"]


def use_fused(x: Tensor) -> bool:
    impl = get_impl()
    if impl == "python" or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return False
    ok = load()
    if impl == "fused" and not ok:
        raise RuntimeError(f"RNNBENCH_IMPL=fused but the extension could not be built: {_state['error']}")
    return ok


def _prev(first: Tensor, seq: Tensor) -> Tensor:
    """``[first, seq[0], ..., seq[T-2]]``, (T, B, H): the state each step started from."""
    return torch.cat([first.unsqueeze(0), seq[:-1]])


def _outer(a: Tensor, b: Tensor, K: int | None) -> Tensor:
    """Weight gradient ``sum over steps and rows of a^T b``: (Ha, Hb), or (K, Ha, Hb) per member
    when the rows are K member blocks."""
    if K is None:
        return a.reshape(-1, a.shape[-1]).t() @ b.reshape(-1, b.shape[-1])
    T, R = a.shape[:2]
    a = a.reshape(T, K, R // K, a.shape[-1])
    b = b.reshape(T, K, R // K, b.shape[-1])
    return torch.einsum("tkbi,tkbj->kij", a, b)


def _members(U: Tensor) -> int | None:
    return U.shape[0] if U.dim() == 3 else None


def _colsum(a: Tensor, K: int | None) -> Tensor:
    """Sum over steps and rows: (H,), or (K, H) per member."""
    if K is None:
        return a.reshape(-1, a.shape[-1]).sum(0)
    T, R = a.shape[:2]
    return a.reshape(T, K, R // K, a.shape[-1]).sum((0, 2))


class _Tanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw, h0, U):
        hs = torch.ops.rnnbench.tanh_forward(xw.contiguous(), h0.contiguous(), U.contiguous())
        ctx.save_for_backward(hs, h0, U)
        return hs

    @staticmethod
    def backward(ctx, dhs):
        hs, h0, U = ctx.saved_tensors
        dxw, dh0 = torch.ops.rnnbench.tanh_backward(dhs.contiguous(), hs, U.contiguous())
        dU = _outer(_prev(h0, hs), dxw, _members(U))
        return dxw, dh0, dU


class _GRU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw, h0, U):
        h0 = h0.contiguous()
        hs, gates = torch.ops.rnnbench.gru_forward(xw.contiguous(), h0, U.contiguous())
        ctx.save_for_backward(hs, h0, U, gates)
        return hs

    @staticmethod
    def backward(ctx, dhs):
        hs, h0, U, gates = ctx.saved_tensors
        H = hs.shape[-1]
        U = U.contiguous()
        dxw, dh0 = torch.ops.rnnbench.gru_backward(dhs.contiguous(), hs, h0, U, gates)
        hprev = _prev(h0, hs)
        r = gates[..., H:2 * H]
        K = _members(U)
        dU = torch.cat([_outer(hprev, dxw[..., :2 * H], K), _outer(r * hprev, dxw[..., 2 * H:], K)], dim=-1)
        return dxw, dh0, dU


class _LSTM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw, h0, c0, U, P):
        h0, c0 = h0.contiguous(), c0.contiguous()
        hs, cs, tcs, gates = torch.ops.rnnbench.lstm_forward(xw.contiguous(), h0, c0, U.contiguous(),
                                                             P.contiguous())
        ctx.save_for_backward(hs, cs, tcs, h0, c0, U, P, gates)
        return hs, cs

    @staticmethod
    def backward(ctx, dhs, dcs):
        hs, cs, tcs, h0, c0, U, P, gates = ctx.saved_tensors
        H = hs.shape[-1]
        dhs = torch.zeros_like(hs) if dhs is None else dhs.contiguous()
        dcs = torch.zeros_like(cs) if dcs is None else dcs.contiguous()
        dxw, dh0, dc0 = torch.ops.rnnbench.lstm_backward(dhs, dcs, cs, tcs, c0, U.contiguous(),
                                                           P.contiguous(), gates)
        K = _members(U)
        dU = _outer(_prev(h0, hs), dxw, K)
        cprev = _prev(c0, cs)
        dP = torch.stack([_colsum(dxw[..., :H] * cprev, K), _colsum(dxw[..., H:2 * H] * cprev, K),
                          _colsum(dxw[..., 3 * H:] * cs, K)], dim=-2)
        return dxw, dh0, dc0, dU, dP


def tanh_recurrence(xw: Tensor, h0: Tensor, U: Tensor) -> Tensor:
    return _Tanh.apply(xw, h0, U)


def gru_recurrence(xw: Tensor, h0: Tensor, U: Tensor) -> Tensor:
    return _GRU.apply(xw, h0, U)


def lstm_recurrence(xw: Tensor, h0: Tensor, c0: Tensor, U: Tensor, P: Tensor) -> tuple[Tensor, Tensor]:
    return _LSTM.apply(xw, h0, c0, U, P)
