"""Fused CPU time loops for the paper's cells, with hand-derived backward passes.

The C++ sources (``csrc/``: :data:`SOURCES`, sharing ``csrc/rnnbench.h``, one concern each) are
compiled by PyTorch's extension builder into one library the first time it is needed in an
environment (about 30 s; kept in :func:`build_dir`, inside the virtual environment) and registered
as ``torch.ops.rnnbench.*``.  Float32 runs AVX2+FMA kernels where the CPU has them (chosen at run
time, :func:`kernels`).  Only the recurrence runs there; input projections and weight gradients
stay bulk matrix products here.

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

import hashlib
import logging
import os
import sys
import threading
import time
from pathlib import Path

import torch
from torch import Tensor

log = logging.getLogger("rnnbench.fused")
IMPLS = ("auto", "fused", "python")
CSRC = Path(__file__).with_name("csrc")
# The extension's files, one concern each (each opens with a comment saying what it holds): the
# header they share, then the sources compiled together into one library.
HEADERS = ("rnnbench.h",)
SOURCES = ("simd_avx2.cpp", "simd_avx512.cpp", "kernels.cpp", "recurrences.cpp", "sparse_proj.cpp", "heads.cpp",
           "rmsprop.cpp", "ops.cpp")


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


# The element-wise loops vectorize with AVX2 where this CPU has it; the build is keyed by the flags,
# so an environment moved to a CPU without them builds again instead of crashing.
_CFLAGS = ("-O3",) + (("-mavx2", "-mfma") if {"avx2", "fma"} <= _cpu_flags() else ())
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


def build_dir() -> Path:
    """Where this environment keeps its build of the extension: ``$RNNBENCH_BUILD_DIR``, else inside
    the environment (``<sys.prefix>/var/rnnbench``), else a per-environment folder of the user's
    cache.  Keyed by every file of the extension (:data:`HEADERS` and :data:`SOURCES`, names and
    contents), the compiler flags and torch's version, so a build of other sources is never reused,
    and two environments or two checkouts on one machine never rebuild each other's extension."""
    files = b"".join(name.encode() + b"\0" + (CSRC / name).read_bytes() + b"\0" for name in HEADERS + SOURCES)
    key = hashlib.sha256(files + " ".join(_CFLAGS).encode() + torch.__version__.encode()
                         + sys.version.encode()).hexdigest()[:12]
    env = os.environ.get("RNNBENCH_BUILD_DIR")
    if env:
        return Path(env) / key
    home = Path(sys.prefix) / "var" / "rnnbench"
    try:
        home.mkdir(parents=True, exist_ok=True)
        if os.access(home, os.W_OK):
            return home / key
    except OSError:
        pass
    prefix = hashlib.sha256(sys.prefix.encode()).hexdigest()[:8]
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rnnbench" / f"env-{prefix}" / key


def load() -> bool:
    """Build (once per environment) and load the extension; return whether it is usable.

    Training calls it before its clock starts, so a first run's epoch 1 never counts the build.
    """
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
                where = build_dir()
                where.mkdir(parents=True, exist_ok=True)
                built = any(where.glob("*.so"))
                if not built:
                    log.info("compiling the fused CPU recurrences into %s (once per environment, about 30 s)", where)
                t0 = time.perf_counter()
                cpp_extension.load(name=f"rnnbench_recurrence_{where.name}",
                                   sources=[str(CSRC / name) for name in SOURCES], extra_cflags=list(_CFLAGS),
                                   build_directory=str(where), is_python_module=False, verbose=False)
                if not built:
                    log.info("fused recurrences compiled in %.0f s", time.perf_counter() - t0)
            _state["loaded"] = True
        except Exception as exc:  # no compiler, no ninja, ...: fall back, say why once
            _state["loaded"], _state["error"] = False, exc
            log.warning("fused recurrences unavailable, using the reference Python loop: %s", exc)
        level = os.environ.get("RNNBENCH_KERNELS")
        if _state["loaded"] and level:
            _check_kernels(level, "RNNBENCH_KERNELS")
            try:
                torch.ops.rnnbench.set_float_kernels(level)
            except RuntimeError as exc:
                from .errors import ConfigError

                raise ConfigError(f"RNNBENCH_KERNELS={level!r}: {str(exc).splitlines()[0]}") from None
    return _state["loaded"]


def kernels() -> str:
    """What float32 runs on here: ``avx512``, ``avx2+fma``, ``generic`` (the compiled loops without
    SIMD) or ``python`` (the reference loop: no extension)."""
    if not load():
        return "python"
    return str(torch.ops.rnnbench.float_kernels())


KERNELS = ("auto", "avx512", "avx2", "generic")


def _check_kernels(level: str, what: str) -> None:
    if level not in KERNELS:
        from .errors import ConfigError

        raise ConfigError(f"{what}={level!r} is invalid: expected one of {KERNELS}")


def set_kernels(level: str) -> str:
    """Run float32 at ``level`` (one of :data:`KERNELS`; ``auto``: the widest this CPU has), for
    this process; returns the setting before.  ``$RNNBENCH_KERNELS`` sets it when the extension
    loads.  Benchmarks and tests compare the levels on one machine with it."""
    _check_kernels(level, "kernels")
    if not load():
        raise RuntimeError(f"the fused extension is unavailable, so no kernels can be chosen: {_state['error']}")
    return str(torch.ops.rnnbench.set_float_kernels(level))


def available_kernels() -> list[str]:
    """The levels of :data:`KERNELS` (``auto`` aside) that this CPU can run, the widest first."""
    if not load():
        return []
    before, ok = set_kernels("auto"), []
    try:
        for level in KERNELS[1:]:
            try:
                set_kernels(level)
                ok.append(level)
            except RuntimeError:
                pass
    finally:
        set_kernels(before)
    return ok


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
    if R == K:  # one row per member (the paper's batch): strided views go straight into one bmm
        return torch.bmm(a.permute(1, 2, 0), b.transpose(0, 1))
    a = a.reshape(T, K, R // K, a.shape[-1])
    b = b.reshape(T, K, R // K, b.shape[-1])
    return torch.einsum("tkbi,tkbj->kij", a, b)


def _outer_prev(first: Tensor, seq: Tensor, b: Tensor, K: int | None) -> Tensor:
    """``_outer(_prev(first, seq), b, K)`` without building the shifted copy of ``seq``."""
    head = _outer(first.unsqueeze(0), b[:1], K)
    return head if seq.shape[0] == 1 else _outer(seq[:-1], b[1:], K).add_(head)


def _members(U: Tensor) -> int | None:
    return U.shape[0] if U.dim() == 3 else None


def _colsum(a: Tensor, K: int | None) -> Tensor:
    """Sum over steps and rows: (H,), or (K, H) per member."""
    if K is None:
        return a.reshape(-1, a.shape[-1]).sum(0)
    T, R = a.shape[:2]
    return a.reshape(T, K, R // K, a.shape[-1]).sum((0, 2))


# The backward passes, shared by the autograd functions below and by the stack's hand-written
# training step (rnnbench/stack.py, which runs the forward ops itself): from the gradient of the
# outputs and what the forward op returned, the gradients of (xw, h0[, c0], U[, P]).

def tanh_grads(dhs: Tensor, hs: Tensor, h0: Tensor, U: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    dxw, dh0 = torch.ops.rnnbench.tanh_backward(dhs.contiguous(), hs, U)
    return dxw, dh0, _outer_prev(h0, hs, dxw, _members(U))


def gru_grads(dhs: Tensor, hs: Tensor, h0: Tensor, U: Tensor, gates: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    H = hs.shape[-1]
    dxw, dh0 = torch.ops.rnnbench.gru_backward(dhs.contiguous(), hs, h0, U, gates)
    r = gates[..., H:2 * H]
    K = _members(U)
    rh = torch.empty_like(hs)  # r * h_prev, what the candidate's product saw
    torch.mul(r[0], h0, out=rh[0])
    torch.mul(r[1:], hs[:-1], out=rh[1:])
    dU = torch.cat([_outer_prev(h0, hs, dxw[..., :2 * H], K), _outer(rh, dxw[..., 2 * H:], K)], dim=-1)
    return dxw, dh0, dU


def lstm_grads(dhs: Tensor, dcs: Tensor, hs: Tensor, cs: Tensor, tcs: Tensor, h0: Tensor, c0: Tensor, U: Tensor,
               P: Tensor, gates: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    H = hs.shape[-1]
    dxw, dh0, dc0 = torch.ops.rnnbench.lstm_backward(dhs.contiguous(), dcs.contiguous(), cs, tcs, c0, U, P, gates)
    K = _members(U)
    dU = _outer_prev(h0, hs, dxw, K)
    cprev = _prev(c0, cs)
    dP = torch.stack([_colsum(dxw[..., :H] * cprev, K), _colsum(dxw[..., H:2 * H] * cprev, K),
                      _colsum(dxw[..., 3 * H:] * cs, K)], dim=-2)
    return dxw, dh0, dc0, dU, dP


class _Tanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw, h0, U):
        h0, U = h0.contiguous(), U.contiguous()
        hs = torch.ops.rnnbench.tanh_forward(xw.contiguous(), h0, U)
        ctx.save_for_backward(hs, h0, U)
        return hs

    @staticmethod
    def backward(ctx, dhs):
        return tanh_grads(dhs, *ctx.saved_tensors)


class _GRU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw, h0, U):
        h0, U = h0.contiguous(), U.contiguous()
        hs, gates = torch.ops.rnnbench.gru_forward(xw.contiguous(), h0, U)
        ctx.save_for_backward(hs, h0, U, gates)
        return hs

    @staticmethod
    def backward(ctx, dhs):
        hs, h0, U, gates = ctx.saved_tensors
        return gru_grads(dhs, hs, h0, U, gates)


class _LSTM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xw, h0, c0, U, P):
        h0, c0, U, P = h0.contiguous(), c0.contiguous(), U.contiguous(), P.contiguous()
        hs, cs, tcs, gates = torch.ops.rnnbench.lstm_forward(xw.contiguous(), h0, c0, U, P)
        ctx.save_for_backward(hs, cs, tcs, h0, c0, U, P, gates)
        return hs, cs

    @staticmethod
    def backward(ctx, dhs, dcs):
        hs, cs, tcs, h0, c0, U, P, gates = ctx.saved_tensors
        dhs = torch.zeros_like(hs) if dhs is None else dhs
        dcs = torch.zeros_like(cs) if dcs is None else dcs
        return lstm_grads(dhs, dcs, hs, cs, tcs, h0, c0, U, P, gates)


def tanh_recurrence(xw: Tensor, h0: Tensor, U: Tensor) -> Tensor:
    return _Tanh.apply(xw, h0, U)


def gru_recurrence(xw: Tensor, h0: Tensor, U: Tensor) -> Tensor:
    return _GRU.apply(xw, h0, U)


def lstm_recurrence(xw: Tensor, h0: Tensor, c0: Tensor, U: Tensor, P: Tensor) -> tuple[Tensor, Tensor]:
    return _LSTM.apply(xw, h0, c0, U, P)


# --------------------------------------------------------------------------- sparse inputs

# Inputs with at most this fraction of nonzeros (piano rolls: 3-5%) are projected as sums of rows of W.
SPARSE_DENSITY = 0.2


def sparse_inputs(inputs: Tensor) -> tuple[Tensor, Tensor, Tensor] | None:
    """The nonzeros of ``inputs`` (T, B, D) as (row = t * B + b, column, value), or ``None`` where a
    dense product is the better choice (dense inputs, no extension, not on the CPU)."""
    if not use_fused(inputs):
        return None
    flat = inputs.reshape(-1, inputs.shape[-1])
    nz = flat.nonzero()
    if nz.shape[0] > SPARSE_DENSITY * flat.numel():
        return None
    rows, cols = nz[:, 0].contiguous(), nz[:, 1].contiguous()
    return rows, cols, flat[rows, cols].contiguous()


class _SparseProj(torch.autograd.Function):
    @staticmethod
    def forward(ctx, W, b, rows, cols, vals, T: int, B: int):
        ctx.save_for_backward(rows, cols, vals)
        ctx.dims = (W.shape[0], W.shape[1], B)
        return torch.ops.rnnbench.sparse_proj(W.contiguous(), b.contiguous(), rows, cols, vals, T, B)

    @staticmethod
    def backward(ctx, dxw):
        rows, cols, vals = ctx.saved_tensors
        K, D, B = ctx.dims
        dW, db = sparse_projection_grads(dxw, (rows, cols, vals), K, D, B, *ctx.needs_input_grad[:2])
        return dW, db, None, None, None, None, None


def sparse_projection_grads(dxw: Tensor, nonzeros: tuple[Tensor, Tensor, Tensor], K: int, D: int, B: int,
                            need_w: bool = True, need_b: bool = True) -> tuple[Tensor | None, Tensor | None]:
    """Gradients of :func:`sparse_projection` with respect to ``W`` (K, D, N) and ``b`` (K, N)."""
    rows, cols, vals = nonzeros
    dxw = dxw.contiguous()
    dW = torch.ops.rnnbench.sparse_proj_backward(dxw, rows, cols, vals.to(dxw.dtype), K, D) if need_w else None
    db = dxw.view(dxw.shape[0], K, B, -1).sum((0, 2)) if need_b else None
    return dW, db


def sparse_projection(W: Tensor, b: Tensor, nonzeros: tuple[Tensor, Tensor, Tensor], T: int, B: int) -> Tensor:
    """``x W_k + b_k`` of every member k for sparse inputs: (T, K*B, N), rows member by member in each
    step.  ``W`` is (K, D, N), ``b`` (K, N); ``nonzeros`` from :func:`sparse_inputs`."""
    rows, cols, vals = nonzeros
    return _SparseProj.apply(W, b, rows, cols, vals.to(W.dtype), T, B)


# --------------------------------------------------------------------------- Bernoulli output

class _BernoulliNLL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, targets):
        nll, g = torch.ops.rnnbench.bernoulli_nll(logits.contiguous(), targets.contiguous(), logits.requires_grad)
        ctx.save_for_backward(g)
        return nll

    @staticmethod
    def backward(ctx, dnll):
        (g,) = ctx.saved_tensors
        return g * dnll.unsqueeze(-1), None


def bernoulli_nll(logits: Tensor, targets: Tensor) -> Tensor | None:
    """Per-frame Bernoulli NLL ``(K, M)`` of logits ``(K, M, O)`` against targets ``(M, O)``: the
    sum over outputs of ``softplus(l) - y l`` (``BernoulliHead.nll``), in one fused pass on the CPU;
    ``None`` where the extension is not used (the caller computes it with torch operations)."""
    if not use_fused(logits):
        return None
    return _BernoulliNLL.apply(logits, targets.to(logits.dtype))


# --------------------------------------------------------------------------- mixture-of-Gaussians output

def mixture_nll(out: Tensor, targets: Tensor, components: int, min_scale: float,
                weight: Tensor | None = None) -> tuple[Tensor, Tensor | None] | None:
    """Per-frame NLL ``(K, M)`` of K members' mixture-head outputs ``out`` ``(K, M, C + 2 C D)``
    against ``targets`` ``(M, D)`` (``GaussianMixtureHead.nll``, rnnbench/mixture.py), in one pass
    per frame on the CPU; with ``weight`` ``(M,)`` also the gradient of ``sum(weight * nll)`` with
    respect to ``out`` (closed form, no autograd; ``mixture.stacked_nll_and_grad`` is the same in
    torch operations).  ``None`` where the extension is not used.  Not differentiable: under
    autograd the caller uses ``mixture.stacked_nll``."""
    if not use_fused(out):
        return None
    grad = weight is not None
    w = weight.to(out.dtype).contiguous() if grad else out.new_empty(0)
    nll, g = torch.ops.rnnbench.mixture_nll(out.contiguous(), targets.to(out.dtype).contiguous(), w,
                                            int(components), float(min_scale), grad)
    return nll, (g if grad else None)
