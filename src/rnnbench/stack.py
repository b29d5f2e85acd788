"""The training loop: K >= 1 runs of one architecture trained side by side as one model.

A lone run is a stack of one.  The runs of a learning-rate search (same data, cell, units and
recipe; only ``optim.lr`` differs) see the same batches in the same order, start from the same
weights and draw the same weight noise, so they can share every operation: their weights are
stacked along a leading *member* dimension, the recurrence runs one batched product per step for
all of them, and each member keeps its own learning rate, RMSProp state, gradient clipping,
divergence and early-stopping state.  Seeds of one configuration stack too when they share the
data order (``train.order_seed``): each member then has its own initial weights and its own
weight-noise stream.  A member that stops (early stopping, epoch cap, successive halving,
divergence) leaves the stack; the others go on.

Every member writes the run directory it would write alone, with the same numbers (to float
rounding; tested).  ``summary.json`` adds ``stacked_members`` (the stack's size when the run
started) and ``wall_seconds`` is the stack's time, shared by its members.

All members' weights live in one ``(K, P)`` tensor (each row one member's parameters, flattened
in the prototype's order), so weight noise, clipping and RMSProp are a handful of operations per
update whatever the number of parameter tensors.

Evaluation (:func:`evaluate_members`) runs without autograd on large padded-and-masked batches.
During training the validation NLL is computed every epoch (early stopping needs it), the
training-split NLL every ``train.eval_train_every`` epochs (the curves of the paper's Figures 2-3),
and the test NLL never: when a run ends, the weights of its best-validation epoch are scored on
the training and test splits once, and those numbers go into ``summary.json`` and into that
epoch's row of ``metrics.csv``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.func import functional_call, vmap

from . import fused, mixture
from .cells import GRUCell, PeepholeLSTMCell, TanhCell, has_fused
from .data import iterate, make_batch
from .errors import ConfigError, StopRequested
from .mixture import GaussianMixtureHead
from .model import BernoulliHead, SequenceModel
from .progress import EpochProgress
from .recipe import Splits, make_generators, resolve_device, rmsprop_state_dict, stop_file
from .runs import Run
from .search import halving_decision, halving_settings

log = logging.getLogger("rnnbench.stack")

# Keys in which the members of one stack may differ.
MEMBER_KEYS = ("optim.lr", "search.draw", "seed")


# --------------------------------------------------------------------------- model

class _MemberNLL(nn.Module):
    """One member's per-frame NLL through the reference cell (used under ``vmap``)."""

    def __init__(self, model: SequenceModel):
        super().__init__()
        self.model = model

    def forward(self, inputs: Tensor, targets: Tensor) -> Tensor:
        h, _ = self.model.cell(inputs, reference=True)
        return self.model.head.nll(h, targets)


class _HeadNLL(nn.Module):
    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, h: Tensor, targets: Tensor) -> Tensor:
        return self.head.nll(h, targets)


class StackedModel(nn.Module):
    """``members`` copies of a :class:`SequenceModel`, all weights in one ``(K, P)`` parameter.

    Row ``k`` of :attr:`flat` is member ``k``'s parameters, flattened one after another in the
    prototype's ``named_parameters()`` order; :meth:`views` gives them back as ``(K, *shape)``
    tensors.  The recurrence runs fused for all members at once where the cell has a fused path
    (the built-in cells on CPU); any other cell runs its reference step under ``torch.func.vmap``.
    """

    def __init__(self, proto: SequenceModel, members: int, inits: Sequence[dict[str, Tensor]] | None = None):
        super().__init__()
        if members < 1:
            raise ValueError(f"a stack needs at least one member, got {members}")
        self.__dict__["proto"] = proto  # structure only: not a submodule, its own weights are unused
        named = list(proto.named_parameters())
        self.names = [n for n, _ in named]
        self.shapes = [tuple(p.shape) for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        noisy = {id(p) for p in proto.noisy_parameters()}
        row = torch.cat([p.detach().reshape(-1) for _, p in named])
        self.flat = nn.Parameter(row.unsqueeze(0).repeat(members, 1))
        mask = torch.cat([torch.full((p.numel(),), id(p) in noisy, dtype=torch.bool) for _, p in named])
        self.register_buffer("noisy_mask", mask, persistent=False)
        self.noisy = [i for i, (_, p) in enumerate(named) if id(p) in noisy]  # indices of the noisy tensors
        starts = [sum(self.sizes[:i]) for i in range(len(self.sizes))]
        self.noisy_spans = [(starts[i], self.sizes[i], self.shapes[i]) for i in self.noisy]  # (offset, size, shape)
        self._noise_buf: Tensor | None = None  # (see _noise_rows)
        if inits is not None:
            for k, state in enumerate(inits):
                self.load_member(k, state)

    @property
    def members(self) -> int:
        return self.flat.shape[0]

    def views(self, flat: Tensor | None = None) -> dict[str, Tensor]:
        """Every parameter as ``(K, *shape)``, views of ``flat`` (default: :attr:`flat`)."""
        flat = self.flat if flat is None else flat
        K = flat.shape[0]
        return {n: part.view(K, *shape)
                for n, shape, part in zip(self.names, self.shapes, flat.split(self.sizes, dim=1))}

    def param(self, name: str) -> Tensor:
        return self.views()[name]

    def member_state(self, k: int, flat: Tensor | None = None) -> dict[str, Tensor]:
        """Member ``k``'s weights as a :class:`SequenceModel` state dict."""
        row = (self.flat if flat is None else flat)[k].detach()
        return {n: part.view(shape).clone() for n, shape, part in zip(self.names, self.shapes, row.split(self.sizes))}

    @torch.no_grad()
    def load_member(self, k: int, state: dict[str, Tensor]) -> None:
        missing = set(self.names) ^ set(state)
        if missing:
            raise ConfigError(f"a member's weights do not fit the stack: keys {sorted(missing)}")
        self.flat[k].copy_(torch.cat([state[n].reshape(-1).to(self.flat) for n in self.names]))

    @torch.no_grad()
    def keep(self, index: Sequence[int]) -> None:
        """Keep only the members at ``index`` (in that order)."""
        idx = torch.as_tensor(list(index), dtype=torch.long, device=self.flat.device)
        self.flat = nn.Parameter(self.flat.detach().index_select(0, idx))

    def noisy_weights(self, generators: Sequence[torch.Generator], std: float) -> Tensor:
        """A copy of the members' weights with weight noise N(0, std^2) added to every weight matrix
        and peephole vector (not the biases), requiring grad: member k's noise is drawn from
        ``generators[k]`` exactly as that member alone would draw it (one draw per noisy tensor, in
        order); members sharing one generator object share one draw."""
        flat = self.flat.detach()
        if std <= 0:
            return flat.clone().requires_grad_()
        distinct = list({id(g): g for g in generators}.values())  # (in order of first appearance)
        noise = self._noise_rows(len(distinct), flat.dtype)
        for r, g in enumerate(distinct):  # straight into the row's slices: no concatenation, no masked copy
            row = noise[r]
            for start, size, _ in self.noisy_spans:  # (what torch.randn(shape, generator=g) draws, in place)
                row[start:start + size].normal_(generator=g)
        rows = [next(r for r, d in enumerate(distinct) if d is g) for g in generators]
        if len(distinct) > 1 and rows != list(range(len(rows))):  # (one generator: its row broadcasts)
            noise = noise[torch.as_tensor(rows)]
        return torch.add(flat, noise.to(flat.device), alpha=std).requires_grad_()

    def _noise_rows(self, n: int, dtype: torch.dtype) -> Tensor:
        """An ``(n, P)`` CPU buffer for weight noise: zero where the weights take none (the biases),
        kept between updates (every noisy slice is overwritten by each draw)."""
        buf = self._noise_buf
        if buf is None or buf.shape[0] < n or buf.shape[1] != self.flat.shape[1] or buf.dtype != dtype:
            buf = self._noise_buf = torch.zeros((n, self.flat.shape[1]), dtype=dtype)
        return buf[:n]

    def _fused_features(self, inputs: Tensor, v: dict[str, Tensor]) -> Tensor | None:
        """All members' recurrent features ``(T, K*B, H)`` (rows member by member in each step)
        through the fused kernels, or ``None`` where the cell has none."""
        cell = self.proto.cell
        if not has_fused(cell) or not fused.use_fused(inputs):
            return None
        K, B = v["cell.weight_ih"].shape[0], inputs.shape[1]
        xw, _ = self._input_projection(inputs, v)
        weights = {n.split(".", 1)[1]: w for n, w in v.items()
                   if n.startswith("cell.") and n not in ("cell.weight_ih", "cell.bias")}
        out = cell.fused(xw, cell.init_state(K * B, xw), weights=weights)
        return None if out is None else out[0]

    @staticmethod
    def _input_projection(inputs: Tensor, v: dict[str, Tensor]) -> tuple[Tensor, tuple | None]:
        """Every member's ``x W + b`` as ``(T, K*B, G*H)`` (rows member by member in each step), and
        the nonzeros of sparse inputs (``None`` for dense ones)."""
        T, B, D = inputs.shape
        W, b = v["cell.weight_ih"], v["cell.bias"]
        K, GH = W.shape[0], W.shape[-1]
        nonzeros = fused.sparse_inputs(inputs)
        if nonzeros is not None:  # piano rolls: a few rows of W per frame
            return fused.sparse_projection(W, b, nonzeros, T, B), nonzeros
        # one product for every member's input projection: (T*B, D) @ (D, K*GH)
        xw = torch.addmm(b.reshape(-1), inputs.reshape(T * B, D), W.permute(1, 0, 2).reshape(D, K * GH))
        return xw.view(T, B, K, GH).transpose(1, 2).reshape(T, K * B, GH), None

    def frame_nll(self, inputs: Tensor, targets: Tensor, flat: Tensor | None = None) -> Tensor:
        """Every member's NLL of every frame, ``(T, K, B)``; padded frames must be masked.
        ``flat`` replaces the members' weights (e.g. by noisy ones)."""
        v = self.views(flat)
        T, B = inputs.shape[:2]
        K = next(iter(v.values())).shape[0]
        h = self._fused_features(inputs, v)
        if h is None:
            member = _MemberNLL(self.proto)
            p = {f"model.{n}": w for n, w in v.items()}
            return vmap(lambda q: functional_call(member, q, (inputs, targets)), out_dims=1)(p)
        hk = h.view(T, K, B, -1).permute(1, 0, 2, 3).reshape(K, T * B, -1)  # members first: one bmm
        head = self.proto.head
        if type(head) is BernoulliHead:  # (the same arithmetic as BernoulliHead.nll, batched over members)
            logits = torch.baddbmm(v["head.linear.bias"].unsqueeze(1), hk, v["head.linear.weight"].transpose(1, 2))
            nll = fused.bernoulli_nll(logits, targets.reshape(T * B, -1))
            if nll is None:
                y = targets.reshape(1, T * B, -1)
                nll = F.softplus(logits, threshold=50.0).sum(-1) - (y * logits).sum(-1)
            return nll.view(K, T, B).permute(1, 0, 2)
        if type(head) is GaussianMixtureHead:  # (GaussianMixtureHead.nll, batched over members)
            out = torch.baddbmm(v["head.linear.bias"].unsqueeze(1), hk, v["head.linear.weight"].transpose(1, 2))
            y = targets.reshape(T * B, -1)
            done = None if torch.is_grad_enabled() else fused.mixture_nll(out, y, head.components, head.min_scale)
            nll = done[0] if done is not None else mixture.stacked_nll(out, y, head.components, head.min_scale,
                                                                         head.chunk_frames)
            return nll.view(K, T, B).permute(1, 0, 2)
        hp = {n: w for n, w in v.items() if n.startswith("head.")}
        hk = hk.view(K, T, B, -1)
        return vmap(lambda q, x: functional_call(_HeadNLL(head), q, (x, targets)), in_dims=(0, 0), out_dims=1)(hp, hk)

    def loss_and_grad(self, batch, flat: Tensor) -> tuple[Tensor, Tensor] | None:
        """Every member's NLL summed over the batch's real frames ``(K,)`` and the gradient of its
        mean per frame with respect to ``flat`` ``(K, P)``, by a hand-written backward pass through
        the fused kernels: what :func:`torch.autograd.grad` gives on :meth:`frame_nll` (tested), with
        no autograd graph, no per-parameter gradient concatenation and no Python autograd functions.
        ``None`` where it does not apply (another cell or head, no extension, not on the CPU, a
        non-finite target: autograd on :meth:`frame_nll` then gives what it always gave)."""
        cell, head = self.proto.cell, self.proto.head
        kind = _HAND_WRITTEN.get(type(cell))
        inputs, targets = batch.inputs, batch.targets
        if kind is None or type(head) not in (BernoulliHead, GaussianMixtureHead) or not fused.use_fused(inputs):
            return None
        gmm = type(head) is GaussianMixtureHead
        if gmm and not bool(torch.isfinite(targets).all()):
            return None
        ops = torch.ops.rnnbench
        with torch.no_grad():
            v = self.views(flat)
            T, B, D = inputs.shape
            K, H = flat.shape[0], cell.hidden_size
            xw, nonzeros = self._input_projection(inputs, v)
            U = v["cell.weight_hh"].contiguous()
            h0 = xw.new_zeros(K * B, H)
            if kind == "tanh":
                hs = ops.tanh_forward(xw, h0, U)
            elif kind == "gru":
                hs, gates = ops.gru_forward(xw, h0, U)
            else:
                c0, P = xw.new_zeros(K * B, H), v["cell.weight_peep"].contiguous()
                hs, cs, tcs, gates = ops.lstm_forward(xw, h0, c0, U, P)
            hk = hs.view(T, K, B, H).permute(1, 0, 2, 3).reshape(K, T * B, H)
            Wo, bo = v["head.linear.weight"], v["head.linear.bias"]
            logits = torch.baddbmm(bo.unsqueeze(1), hk, Wo.transpose(1, 2))
            real = batch.mask.reshape(T * B)
            # d(sum over members of loss_total / frames) / d logits: padded frames get none
            if gmm:  # (one fused pass per frame: mixture.stacked_nll_and_grad is the same in torch operations)
                nll, dlogits = fused.mixture_nll(logits, targets.reshape(T * B, -1), head.components, head.min_scale,
                                                 real.to(logits.dtype) / batch.frames)
            else:
                nll, dlogits = ops.bernoulli_nll(logits, targets.reshape(T * B, -1).to(logits.dtype).contiguous(),
                                                 True)
                dlogits.mul_((real.to(dlogits.dtype) / batch.frames).view(1, T * B, 1))
            loss_total = nll[:, real].sum(1)
            grad = torch.empty_like(flat)
            g = self.views(grad)
            g["head.linear.weight"].copy_(torch.bmm(dlogits.transpose(1, 2), hk))
            g["head.linear.bias"].copy_(dlogits.sum(1))
            dhs = torch.bmm(dlogits, Wo).view(K, T, B, H).permute(1, 0, 2, 3).reshape(T, K * B, H)
            if kind == "tanh":
                dxw, _, dU = fused.tanh_grads(dhs, hs, h0, U)
            elif kind == "gru":
                dxw, _, dU = fused.gru_grads(dhs, hs, h0, U, gates)
            else:
                dxw, _, _, dU, dP = fused.lstm_grads(dhs, torch.zeros_like(cs), hs, cs, tcs, h0, c0, U, P, gates)
                g["cell.weight_peep"].copy_(dP)
            g["cell.weight_hh"].copy_(dU)
            if nonzeros is not None:
                dW, db = fused.sparse_projection_grads(dxw, nonzeros, K, D, B)
            else:
                dxk = dxw.view(T, K, B, -1).transpose(1, 2).reshape(T * B, K, -1)
                dW = torch.einsum("rd,rkn->kdn", inputs.reshape(T * B, D), dxk)
                db = dxk.sum(0)
            g["cell.weight_ih"].copy_(dW)
            g["cell.bias"].copy_(db)
        return loss_total, grad


# cells whose training step has a hand-written backward pass (StackedModel.loss_and_grad)
_HAND_WRITTEN = {TanhCell: "tanh", GRUCell: "gru", PeepholeLSTMCell: "lstm"}


# --------------------------------------------------------------------------- optimizer

class StackedRMSprop:
    """RMSProp on the ``(K, P)`` weights with one learning rate per member: the arithmetic of
    ``torch.optim.RMSprop`` (momentum 0, not centred), and states that convert to and from its
    state dict."""

    def __init__(self, model: StackedModel, lrs: Sequence[float], optim: DictConfig):
        for key, neutral in (("momentum", 0.0), ("centered", False)):
            if optim.get(key, neutral) != neutral:
                raise ConfigError(f"config value optim.{key}={optim.get(key)!r} is not supported: expected {neutral!r}")
        self.model = model
        self.optim = {k: optim[k] for k in ("name", "alpha", "eps", "momentum", "centered") if k in optim}
        self.alpha, self.eps = float(optim.alpha), float(optim.eps)
        self.lrs = [float(x) for x in lrs]
        self.steps = [0] * len(self.lrs)
        self.square_avg = torch.zeros_like(model.flat)

    @torch.no_grad()
    def step(self, grad: Tensor, update: Sequence[bool]) -> None:
        """One update of the members where ``update`` is true; the others keep weights and state."""
        p, sq = self.model.flat, self.square_avg
        if fused.use_fused(p):  # one fused pass over weights, gradient and state (the same arithmetic)
            torch.ops.rnnbench.rmsprop_step(p, grad.contiguous(), sq, torch.tensor(self.lrs, dtype=torch.float64),
                                            torch.tensor([bool(u) for u in update]), self.alpha, self.eps)
        else:
            self._step_torch(grad, update)
        for k, u in enumerate(update):
            self.steps[k] += bool(u)

    def _step_torch(self, grad: Tensor, update: Sequence[bool]) -> None:
        p, sq = self.model.flat, self.square_avg
        neg_lr = torch.tensor([-x for x in self.lrs], dtype=p.dtype, device=p.device).unsqueeze(1)
        if all(update):
            sq.mul_(self.alpha).addcmul_(grad, grad, value=1 - self.alpha)
            p.add_((grad * neg_lr).div_(sq.sqrt().add_(self.eps)))  # p + (-lr * g) / avg, as addcdiv computes it
        else:
            idx = torch.as_tensor([k for k, u in enumerate(update) if u], dtype=torch.long, device=p.device)
            if len(idx):
                g, s = grad.index_select(0, idx), sq.index_select(0, idx)
                s.mul_(self.alpha).addcmul_(g, g, value=1 - self.alpha)
                sq.index_copy_(0, idx, s)
                p.index_copy_(0, idx, p.index_select(0, idx).add_((g * neg_lr[idx]).div_(s.sqrt().add_(self.eps))))

    def keep(self, index: Sequence[int]) -> None:
        """Keep only the members at ``index`` (the model has already kept them)."""
        idx = torch.as_tensor(list(index), dtype=torch.long, device=self.square_avg.device)
        self.square_avg = self.square_avg.index_select(0, idx)
        self.lrs = [self.lrs[i] for i in index]
        self.steps = [self.steps[i] for i in index]

    # torch.optim.RMSprop's state dict <-> member k
    def member_state(self, k: int) -> dict:
        """Member ``k``'s optimizer state as ``torch.optim.RMSprop(...).state_dict()`` gives it."""
        state = {}
        if self.steps[k]:
            parts = self.square_avg[k].split(self.model.sizes)
            state = {i: {"step": torch.tensor(float(self.steps[k])), "square_avg": part.view(shape).clone()}
                     for i, (part, shape) in enumerate(zip(parts, self.model.shapes))}
        return rmsprop_state_dict(len(self.model.sizes), {**self.optim, "lr": self.lrs[k]}, state)

    @torch.no_grad()
    def load_member(self, k: int, sd: dict) -> None:
        state = sd.get("state", {})
        parts = self.square_avg[k].split(self.model.sizes)
        for i, part in enumerate(parts):
            if i in state:
                part.copy_(state[i]["square_avg"].reshape(-1))
                self.steps[k] = int(float(state[i]["step"]))
            else:
                part.zero_()


def clip_members(grad: Tensor, max_norm: float | None) -> Tensor:
    """Per-member gradient norms ``(K,)`` of ``grad`` (K, P), before clipping; with ``max_norm`` each
    member's gradient is scaled as ``torch.nn.utils.clip_grad_norm_`` would scale it alone."""
    norms = grad.norm(dim=1)
    if max_norm:
        grad.mul_((float(max_norm) / (norms + 1e-6)).clamp(max=1.0).unsqueeze(1))
    return norms


def training_step(model: StackedModel, batch, generators: Sequence[torch.Generator], noise_std: float,
                  clip_norm: float | None) -> tuple[Tensor, Tensor, Tensor]:
    """One update's forward and backward pass for every member: weight noise drawn from each member's
    generator, the NLL summed over the batch's real frames ``(K,)``, and the gradient of its mean
    per frame ``(K, P)`` clipped per member, with the norms before clipping ``(K,)``.  Applying it
    (:class:`StackedRMSprop`) is the caller's decision (divergence, skipped updates)."""
    w = model.noisy_weights(generators, noise_std)
    done = model.loss_and_grad(batch, w.detach())
    if done is not None:
        loss_total, grad = done
    else:
        nll = model.frame_nll(batch.inputs, batch.targets, w)
        loss_total = nll.permute(1, 0, 2)[:, batch.mask].sum(1)
        (grad,) = torch.autograd.grad((loss_total / batch.frames).sum(), w)
    return loss_total, grad, clip_members(grad, clip_norm)


@torch.no_grad()
def evaluate_members(model: StackedModel, seqs, batches, device, flat: Tensor | None = None) -> list[float]:
    """Every member's NLL per frame over a whole split: every real frame weighs the same, padding
    never counts (no autograd graph)."""
    K = model.members if flat is None else flat.shape[0]
    total = torch.zeros(K, dtype=torch.float64)
    frames = 0
    for batch in iterate(seqs, batches):
        batch = batch.to(device)
        nll = model.frame_nll(batch.inputs, batch.targets, flat)  # (T, K, B)
        total += nll.permute(1, 0, 2)[:, batch.mask].double().sum(1).cpu()
        frames += batch.frames
    return (total / frames).tolist()


def evaluate(model: SequenceModel, seqs, batches, device) -> float:
    """NLL per frame of one model over a whole split (the stacked evaluator with one member)."""
    return evaluate_members(StackedModel(model, 1).to(device), seqs, batches, device)[0]


@torch.no_grad()
def sequence_nlls(model: SequenceModel, seqs, dtype: torch.dtype = torch.float32) -> list:
    """The NLL of every frame of every sequence, each sequence scored alone (no padding, no
    batch-mates), the data cast to ``dtype`` (the model must already be in it): one float64 numpy
    array per sequence.  For diagnostics that look inside a split's mean (scripts/gap_analysis.py,
    scripts/speech_utterances.py)."""
    out = []
    for i, seq in enumerate(seqs):
        b = make_batch([seq], [i])
        out.append(model.frame_nll(b.inputs.to(dtype), b.targets.to(dtype))[:, 0].double().numpy())
    return out


# --------------------------------------------------------------------------- grouping

def _order_seed(cfg: DictConfig) -> int:
    seed = cfg.train.get("order_seed")
    return int(cfg.seed if seed is None else seed)


def stack_key(cfg: DictConfig) -> str:
    """What members of one stack share: the whole resolved configuration but :data:`MEMBER_KEYS`,
    and the data order."""
    c = OmegaConf.to_container(cfg, resolve=True)
    c.pop("hydra", None)
    for key in MEMBER_KEYS:
        *parents, leaf = key.split(".")
        node = c
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    c.setdefault("train", {})["order_seed"] = _order_seed(cfg)
    return json.dumps(c, sort_keys=True, default=str)


def _first_difference(a: DictConfig, b: DictConfig) -> str:
    ca, cb = (json.loads(stack_key(x)) for x in (a, b))

    def walk(x, y, path):
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                found = walk(x.get(k), y.get(k), f"{path}.{k}" if path else k)
                if found:
                    return found
            return None
        return None if x == y else f"{path}={x!r} vs {y!r}"

    return walk(ca, cb, "") or "?"


def group_for_stacks(cfgs: Sequence[DictConfig]) -> list[list[int]]:
    """Indices of ``cfgs`` grouped into stacks (configurations equal but for :data:`MEMBER_KEYS`,
    with one data order), in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        groups.setdefault(stack_key(cfg), []).append(i)
    return list(groups.values())


# --------------------------------------------------------------------------- training

class _Member:
    def __init__(self, run: Run, ckpt: dict | None, shuffle_gen, noise_gen):
        self.run, self.ckpt = run, ckpt
        self.shuffle_gen, self.noise_gen = shuffle_gen, noise_gen
        self.result: dict | None = None  # the summary, once the run has stopped
        self.best_state: dict | None = None  # weights of the best epoch so far (this session)

    def progress_key(self) -> tuple:
        """Members train together only from the same point: same epoch, same data order."""
        return (self.run.state.epoch, bytes(self.shuffle_gen.get_state().numpy()))


def train_stack(cfgs: Sequence[DictConfig], run_dirs: Sequence[str | Path], max_members: int | None = None) -> list[dict]:
    """Train (or resume, or skip) the runs ``cfgs`` in ``run_dirs`` as stacks; their summaries, in order.

    The configurations must be equal but for :data:`MEMBER_KEYS`, with one data order (a
    :class:`ConfigError` names the first key that differs).  ``max_members`` caps a stack's size
    (larger groups are split).  One configuration is a stack of one: :func:`rnnbench.train.train`.

    A run directory is trained by one process at a time: a run whose lock another process holds
    is skipped (logged; its result has ``status`` ``"skipped"``) and the others train.  A refused
    stack (bad configuration or data) leaves no directory behind that it created.
    """
    if len(cfgs) != len(run_dirs):
        raise ValueError("train_stack needs one run directory per configuration")
    if not cfgs:
        return []
    first = cfgs[0]
    for cfg in cfgs[1:]:
        if stack_key(cfg) != stack_key(first):
            raise ConfigError(f"runs stacked together must differ only in {', '.join(MEMBER_KEYS)} "
                              f"(with one data order, train.order_seed); found {_first_difference(first, cfg)}")
    runs = [Run(cfg, d) for cfg, d in zip(cfgs, run_dirs)]
    results: dict[int, dict] = {}
    ok = False
    try:
        free = []
        for i, run in enumerate(runs):
            if run.acquire():
                free.append(i)
            else:
                results[i] = run.busy_result()
        if free:
            results.update(zip(free, _train_runs([runs[i] for i in free], max_members)))
        ok = True
    finally:
        for run in runs:
            run.release(discard_unstarted=not ok)
    return [results[i] for i in range(len(runs))]


def _train_runs(runs: list[Run], max_members: int | None) -> list[dict]:
    """The body of :func:`train_stack`, for runs whose locks this process holds."""
    stop = stop_file()
    if stop is not None:  # (before anything is read or written)
        raise StopRequested(stop)
    first = runs[0].cfg
    halving = halving_settings(first)
    tcfg = first.train
    if tcfg.get("threads"):
        torch.set_num_threads(int(tcfg.threads))
    device = resolve_device(tcfg.get("device", "cpu"))
    cap = max(1, int(max_members or len(runs)))
    data = Splits(first)  # (a data error comes before a first build of the extension)
    check_memory(first, data, min(cap, len(runs)))  # (before any model is allocated)
    if device.type == "cpu":
        # RMSProp's running averages of weights that never get a gradient (piano keys a corpus never
        # uses) decay into subnormal numbers, on which x86 arithmetic is many times slower: flush
        # them to zero (a change below 1e-38, far under float32 rounding of anything that matters)
        torch.set_flush_denormal(True)
        if fused.get_impl() != "python":
            fused.load()  # (a first build happens here, before any clock starts)

    protos: dict[int, SequenceModel] = {}

    def proto_for(seed: int) -> SequenceModel:  # a member's initial weights: its seed's
        if seed not in protos:
            torch.manual_seed(seed)
            protos[seed] = SequenceModel.for_corpus(first.cell, int(first.cell.units), data.corpus).to(device)
        return protos[seed]

    proto = proto_for(int(first.seed))
    counts = proto.param_counts()
    members = []
    eval_waste = data.eval_waste()
    skipped_files = list(getattr(data.corpus, "skipped", None) or [])
    shapes = {n: tuple(p.shape) for n, p in proto.named_parameters()}  # (every seed's model has these)
    for run in runs:
        cfg = run.cfg
        shuffle_gen = make_generators(_order_seed(cfg))[0]
        noise_gen = make_generators(int(cfg.seed))[1]
        ckpt = run.checkpoint(device, shapes)
        kept = run.ended_without_checkpoint() if ckpt is None else None
        if kept is not None:  # ended, its last.pt dropped: kept as it is
            m = _Member(run, None, shuffle_gen, noise_gen)
            m.result = kept
            log.info("%s: %s (%s) after %d epochs, kept as it is (it has no last.pt)  [%s]", run.member_label(),
                     kept["status"], kept["stop_reason"], int(kept["epochs"]), run.run_dir)
            members.append(m)
            continue
        if ckpt is not None:
            shuffle_gen.set_state(ckpt["shuffle_rng"])
            noise_gen.set_state(ckpt["noise_rng"])
        if skipped_files:
            run.extra["skipped_files"] = skipped_files
        run.start(counts, eval_waste)
        members.append(_Member(run, ckpt, shuffle_gen, noise_gen))

    # members at the same point train together; a member that is already done is only finalized
    groups: dict[tuple, list[_Member]] = {}
    for m in members:
        if m.result is None and m.run.begin_epoch():
            groups.setdefault(m.progress_key(), []).append(m)
    for group in groups.values():
        for i in range(0, len(group), cap):
            _train_members(group[i:i + cap], proto_for, data, device, halving)
    results = []
    for m in members:
        if m.result is not None:
            results.append(m.result)
            continue
        if m.ckpt is None:  # never trained (max_epochs=0): what it would resume from
            p = proto_for(int(m.run.cfg.seed))
            m.ckpt = {"model": p.state_dict(),
                      "optimizer": rmsprop_state_dict(len(list(p.parameters())), m.run.cfg.optim),
                      "shuffle_rng": m.shuffle_gen.get_state(), "noise_rng": m.noise_gen.get_state(),
                      "torch_rng": torch.get_rng_state()}
        _score_best([m], proto, data, device)
        results.append(m.run.finish(m.ckpt))
    return results


# float32 values kept per unit and time step for the backward pass, by cell (gates, states, their
# nonlinearities), and per parameter and member during training (weights, noisy weights, gradient,
# RMSProp's average of squares, the best epoch's weights, the initial weights)
_STEP_FLOATS = {"tanh": 2, "gru": 6, "gru_after": 7, "lstm": 9}
_PARAM_COPIES = 6


def memory_estimate(cfg: DictConfig, data: "Splits", members: int) -> tuple[float, int]:
    """Bytes a stack of ``members`` runs of ``cfg`` needs at least (model, optimizer state,
    training activations, evaluation batches), and the parameters of one member: the model is
    built on PyTorch's ``meta`` device, which allocates nothing."""
    with torch.device("meta"):
        params = sum(p.numel() for p in SequenceModel.for_corpus(cfg.cell, int(cfg.cell.units),
                                                                 data.corpus).parameters())
    units = int(cfg.cell.units)
    floats = _STEP_FLOATS.get(str(cfg.cell.name), 9) * units + int(data.corpus.output_size) * 2
    train_frames = int(cfg.train.batch_size) * max(data.lengths["train"] or [0])  # (padded to the longest)
    eval_frames = max([0] + [len(b) * max(data.lengths[s][i] for i in b) for s in Splits.NAMES
                             for b in data.eval_batches[s] if b])
    per_member = 4 * (_PARAM_COPIES * params + floats * (train_frames + eval_frames))
    return float(per_member * members + 4 * params), params


def check_memory(cfg: DictConfig, data: "Splits", members: int) -> None:
    """Refuse (:class:`ConfigError`) a stack that will not fit in the memory available, naming
    the estimate and what is available, before anything is allocated."""
    from .memory import check_fits

    need, params = memory_estimate(cfg, data, members)
    stack = f" x {members} stacked runs" if members > 1 else ""
    check_fits(need, f"cell.units={int(cfg.cell.units)} ({cfg.cell.name}: {params:,} parameters{stack}, "
                     f"with optimizer state, activations and evaluation batches)",
               "use fewer units (cell.units), fewer runs per stack (hydra.launcher.max_members), a smaller "
                     "train.batch_size or train.eval_batch_frames, or a machine with more memory")


def _score_best(members: list[_Member], proto: SequenceModel, data: Splits, device) -> None:
    """Score each member's best-validation weights on the splits its best epoch has no NLL for yet
    (train and test: they are not evaluated every epoch)."""
    todo = [m for m in members if m.run.missing_best_splits()]
    if not todo:
        return
    states = []
    for m in todo:
        state = m.best_state
        if state is None:
            state = m.run.read_best(device)["model"]
        states.append(state)
    model = StackedModel(proto, len(todo), inits=states).to(device)
    splits = sorted({s for m in todo for s in m.run.missing_best_splits()}, key=Splits.NAMES.index)
    t0 = time.perf_counter()
    scores = {s: evaluate_members(model, data.seqs[s], data.eval_batches[s], device) for s in splits}
    for k, m in enumerate(todo):
        m.run.fill_best({s: scores[s][k] for s in m.run.missing_best_splits()}, time.perf_counter() - t0)


def _train_members(members: list[_Member], proto_for, data: Splits, device, halving: dict | None) -> None:
    """Train ``members`` (all at the same epoch with the same data order) until each has stopped."""
    cfg, tcfg = members[0].run.cfg, members[0].run.tcfg
    K0 = len(members)
    proto = proto_for(int(cfg.seed))
    inits = [m.ckpt["model"] if m.ckpt is not None else proto_for(int(m.run.cfg.seed)).state_dict() for m in members]
    model = StackedModel(proto, K0, inits=inits).to(device)
    opt = StackedRMSprop(model, [float(m.run.cfg.optim.lr) for m in members], cfg.optim)
    for k, m in enumerate(members):
        if m.ckpt is not None:
            opt.load_member(k, m.ckpt["optimizer"])
    shuffle_gen = members[0].shuffle_gen
    # members whose noise streams are at the same point draw the same noise: one generator each
    streams: dict[bytes, torch.Generator] = {}
    for m in members:
        m.noise_gen = streams.setdefault(bytes(m.noise_gen.get_state().numpy()), m.noise_gen)
    for m in members:
        m.shuffle_gen = shuffle_gen
        m.run.extra["stacked_members"] = K0
    if K0 > 1:
        log.info("%s/%s: training %d runs as one stack (%s)", cfg.dataset.name, cfg.cell.name, K0,
                 ", ".join(m.run.member_label() for m in members))

    def payload(k: int) -> dict:
        m = members[k]
        return {"model": model.member_state(k), "optimizer": opt.member_state(k),
                "shuffle_rng": shuffle_gen.get_state(), "noise_rng": m.noise_gen.get_state(),
                "torch_rng": torch.get_rng_state()}

    def drop(gone: list[int]) -> None:
        for k in gone:  # a member that stops is written out as finished at once, as it would be alone
            members[k].ckpt = payload(k)
        _score_best([members[k] for k in gone], proto, data, device)
        for k in gone:
            members[k].result = members[k].run.finish(members[k].ckpt)
        keep = [k for k in range(len(members)) if k not in gone]
        model.keep(keep)
        opt.keep(keep)
        members[:] = [members[k] for k in keep]

    noise_std = float(tcfg.weight_noise)
    skip_nonfinite = bool(tcfg.get("skip_nonfinite", False))
    train_every = int(tcfg.get("eval_train_every", 1) or 0)
    clip_norm = tcfg.clip_norm  # (read once: not a config lookup per update)

    first_epoch = True
    while members:
        if not first_epoch:  # (the caller asked the first time)
            ended = [k for k, m in enumerate(members) if not m.run.begin_epoch()]
            if ended:
                drop(ended)
                if not members:
                    break
        first_epoch = False
        t0 = time.perf_counter()
        batches = data.train_batches(tcfg, shuffle_gen)
        K = len(members)
        loss_sum, skipped, loss_frames = [0.0] * K, [0] * K, [0] * K
        norms: list[list[float]] = [[] for _ in range(K)]  # gradient norms before clipping, per update
        progress = EpochProgress(_progress_label(members), members[0].run.state.epoch + 1, int(tcfg.max_epochs),
                                 len(batches))
        for done, batch in enumerate(iterate(data.seqs["train"], batches), 1):
            if done >= progress.next:  # (the clock is read about once a second, not per update)
                progress.check(done)
            batch = batch.to(device)
            loss_total, grad, gnorm = training_step(model, batch, [m.noise_gen for m in members], noise_std,
                                                    clip_norm)
            loss_ok = torch.isfinite(loss_total).tolist()
            grad_ok = torch.isfinite(gnorm).tolist()
            for k, x in enumerate(gnorm.tolist()):
                norms[k].append(x)
            update, gone = [], []
            for k in range(K):
                if not loss_ok[k]:
                    gone.append(k)
                elif not grad_ok[k]:
                    if not skip_nonfinite or skipped[k] >= max(1, len(batches) // 2):
                        gone.append(k)
                    else:
                        skipped[k] += 1  # a gradient that overflowed: leave the weights as they are
                update.append(loss_ok[k] and grad_ok[k])
            opt.step(grad, update)
            totals = loss_total.detach().tolist()
            for k in range(K):
                if update[k]:
                    members[k].run.state.updates += 1
                    loss_sum[k] += totals[k]
                    loss_frames[k] += batch.frames
            if gone:
                progress.close()
                for k in gone:
                    members[k].run.diverged(time.perf_counter() - t0, norms[k], skipped[k])
                keep = [k for k in range(K) if k not in gone]
                loss_sum = [loss_sum[k] for k in keep]
                skipped = [skipped[k] for k in keep]
                norms = [norms[k] for k in keep]
                loss_frames = [loss_frames[k] for k in keep]
                drop(gone)
                K = len(members)
                if not members:
                    return
        train_time = time.perf_counter() - t0
        progress.close()
        epoch = members[0].run.state.epoch + 1
        splits = ["valid"] + (["train"] if train_every and (epoch == 1 or epoch % train_every == 0) else [])
        t1 = time.perf_counter()
        nll = {s: evaluate_members(model, data.seqs[s], data.eval_batches[s], device) for s in splits}
        eval_time = time.perf_counter() - t1
        for k, m in enumerate(members):
            improved = m.run.end_epoch(train_time, loss_sum[k] / max(loss_frames[k], 1), skipped[k],
                                       {s: nll[s][k] for s in splits}, lambda k=k: model.member_state(k),
                                       eval_seconds=eval_time, grad_norms=norms[k])
            if improved:
                m.best_state = model.member_state(k)
        if halving and epoch in halving["epochs"]:
            _halve(members, epoch, halving)
        for k, m in enumerate(members):
            m.run.persist(payload(k))
        ended = [k for k, m in enumerate(members) if not m.run.running]
        if ended:
            drop(ended)
        stop = stop_file()
        if stop is not None and members:  # (each one's last.pt of this epoch is written)
            log.warning("%s: stopping after epoch %d: the stop file %s exists", _progress_label(members), epoch, stop)
            raise StopRequested(stop, epoch)


def _progress_label(members: list[_Member]) -> str:
    """How an epoch's progress names what trains: the run, or the stack of runs."""
    if len(members) == 1:
        return members[0].run.member_label()
    cfg = members[0].run.cfg
    return f"{cfg.dataset.name}/{cfg.cell.name} ({len(members)} runs)"


def _halve(members: list[_Member], epoch: int, settings: dict) -> None:
    """Successive halving at a checkpoint epoch, among the draws of each seed still running here."""
    by_seed: dict[int, dict[int, float]] = {}
    for k, m in enumerate(members):
        if m.run.running:
            by_seed.setdefault(int(m.run.cfg.seed), {})[k] = m.run.state.best_valid
    for seed, best in by_seed.items():
        for k, (top, leader) in halving_decision(best, settings).items():
            members[k].run.prune(epoch, top, members[leader].run)
