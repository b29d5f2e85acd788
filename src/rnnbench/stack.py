"""Several runs of one architecture trained side by side as one vectorized model ("a stack").

The paper's recipe updates on one sequence at a time, where the cost of an update is set by the
number of operations, not by arithmetic.  The runs of a learning-rate search (same data, cell,
units, seed and recipe; only ``optim.lr`` differs) see the same batches in the same order, start
from the same weights and draw the same weight noise, so they can share every operation: their
weights are stacked along a leading *member* dimension, the recurrence runs one batched product
per step for all of them, and each member keeps its own learning rate, RMSProp state, gradient
clipping, divergence and early-stopping state.  A member that stops (early stopping, epoch cap,
divergence) leaves the stack; the others go on.

Every member writes the same run directory, with the same numbers (to rounding; tested), as
:func:`rnnbench.train.train` would write for it alone, and either loop can resume the other's
runs.  ``summary.json`` adds ``stacked_members`` (the stack's size when the run started) and
``wall_seconds`` is the stack's time, shared by its members.

Use it through the ``stacked`` Hydra launcher (``hydra/launcher=stacked``, the default of the music
experiments) or :func:`train_stack`.  It pays at small batches (the paper's batch of 1), where
overhead, not arithmetic, sets the pace; ``scripts/bench_sweep.py`` and ``scripts/bench_step.py
--members K`` measure it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.func import functional_call, vmap

from . import fused
from .cells import RecurrentCell
from .data import iterate
from .errors import ConfigError
from .model import SequenceModel
from .train import Run, Splits, make_generators, make_optimizer, resolve_device, train, weight_noise

log = logging.getLogger("rnnbench.stack")

# Keys in which the members of one stack may differ.
MEMBER_KEYS = ("optim.lr", "search.draw")


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
    """``members`` copies of a :class:`SequenceModel`, weights stacked along a leading dimension.

    Parameter ``i`` of the stack is parameter ``i`` of the prototype with shape ``(K, *shape)``.
    The recurrence runs fused for all members at once where the cell has a fused path (the
    built-in cells on CPU); any other cell runs its reference step under ``torch.func.vmap``.
    """

    def __init__(self, proto: SequenceModel, members: int):
        super().__init__()
        if members < 1:
            raise ValueError(f"a stack needs at least one member, got {members}")
        self.__dict__["proto"] = proto  # structure only: not a submodule, its own weights are unused
        self.names = [n for n, _ in proto.named_parameters()]
        self.weights = nn.ParameterList(
            nn.Parameter(p.detach().unsqueeze(0).repeat(members, *([1] * p.dim())).clone())
            for _, p in proto.named_parameters())
        noisy = {id(p) for p in proto.noisy_parameters()}
        self.noisy = [i for i, (_, p) in enumerate(proto.named_parameters()) if id(p) in noisy]

    @property
    def members(self) -> int:
        return self.weights[0].shape[0]

    def param(self, name: str) -> Tensor:
        return self.weights[self.names.index(name)]

    def member_state(self, k: int) -> dict[str, Tensor]:
        """Member ``k``'s weights as a :class:`SequenceModel` state dict."""
        return {n: w[k].detach().clone() for n, w in zip(self.names, self.weights)}

    @torch.no_grad()
    def load_member(self, k: int, state: dict[str, Tensor]) -> None:
        missing = set(self.names) ^ set(state)
        if missing:
            raise ConfigError(f"a member's weights do not fit the stack: keys {sorted(missing)}")
        for n, w in zip(self.names, self.weights):
            w[k].copy_(state[n])

    @torch.no_grad()
    def keep(self, index: Sequence[int]) -> None:
        """Keep only the members at ``index`` (in that order)."""
        idx = torch.as_tensor(list(index), dtype=torch.long, device=self.weights[0].device)
        # new parameters (autograd keeps the shape of a parameter it has seen)
        self.weights = nn.ParameterList(nn.Parameter(w.detach().index_select(0, idx)) for w in self.weights)

    def _fused_features(self, inputs: Tensor) -> Tensor | None:
        """All members' recurrent features ``(K, T, B, H)`` through the fused kernels, or ``None``."""
        cell = self.proto.cell
        if type(cell).fused is RecurrentCell.fused or not fused.use_fused(inputs):
            return None
        T, B, D = inputs.shape
        K = self.members
        W, b = self.param("cell.weight_ih"), self.param("cell.bias")
        GH = W.shape[-1]
        # one product for every member's input projection: (T*B, D) @ (D, K*GH)
        xw = torch.addmm(b.reshape(-1), inputs.reshape(T * B, D), W.permute(1, 0, 2).reshape(D, K * GH))
        xw = xw.view(T, B, K, GH).transpose(1, 2).reshape(T, K * B, GH)
        weights = {n.split(".", 1)[1]: self.param(n) for n in self.names
                   if n.startswith("cell.") and n not in ("cell.weight_ih", "cell.bias")}
        out = cell.fused(xw, cell.init_state(K * B, xw), weights=weights)
        if out is None:
            return None
        return out[0].view(T, K, B, -1).transpose(0, 1).contiguous()  # (the head's products want members first)

    def frame_nll(self, inputs: Tensor, targets: Tensor) -> Tensor:
        """Every member's NLL of every frame, ``(T, K, B)``; padded frames must be masked."""
        params = dict(zip(self.names, self.weights))
        h = self._fused_features(inputs)
        if h is None:
            member = _MemberNLL(self.proto)
            p = {f"model.{n}": w for n, w in params.items()}
            return vmap(lambda q: functional_call(member, q, (inputs, targets)), out_dims=1)(p)
        head = _HeadNLL(self.proto.head)
        hp = {n: w for n, w in params.items() if n.startswith("head.")}
        return vmap(lambda q, hk: functional_call(head, q, (hk, targets)), in_dims=(0, 0), out_dims=1)(hp, h)


# --------------------------------------------------------------------------- optimizer

class StackedRMSprop:
    """RMSProp with one learning rate per member, the same arithmetic as ``torch.optim.RMSprop``
    (momentum 0, not centred), and optimizer states that convert to and from its state dict."""

    def __init__(self, params: Sequence[nn.Parameter], lrs: Sequence[float], optim: DictConfig):
        for key, neutral in (("momentum", 0.0), ("centered", False)):
            if optim.get(key, neutral) != neutral:
                raise ConfigError(f"config value optim.{key}={optim.get(key)!r} is not supported by stacked "
                                  f"training: expected {neutral!r} (run these jobs without hydra/launcher=stacked)")
        self.params = list(params)
        self.optim = optim
        self.alpha, self.eps = float(optim.alpha), float(optim.eps)
        self.lrs = [float(x) for x in lrs]
        self.steps = [0] * len(self.lrs)
        self.square_avg = [torch.zeros_like(p) for p in self.params]

    def _neg_lr(self, p: Tensor) -> Tensor:
        return torch.tensor([-x for x in self.lrs], dtype=p.dtype, device=p.device).view(-1, *([1] * (p.dim() - 1)))

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, update: Sequence[bool]) -> None:
        """One update of the members where ``update`` is true; the others keep weights and state."""
        frozen = [k for k, u in enumerate(update) if not u]
        if len(frozen) == len(update):
            return
        saved = [(p[frozen].clone(), s[frozen].clone()) for p, s in zip(self.params, self.square_avg)] if frozen else []
        for p, sq in zip(self.params, self.square_avg):
            g = p.grad
            sq.mul_(self.alpha).addcmul_(g, g, value=1 - self.alpha)
            avg = sq.sqrt().add_(self.eps)
            p.add_((g * self._neg_lr(p)).div_(avg))  # p + (-lr * g) / avg, as addcdiv computes it
        for (p, sq), (ps, ss) in zip(zip(self.params, self.square_avg), saved):
            p[frozen] = ps
            sq[frozen] = ss
        for k, u in enumerate(update):
            self.steps[k] += bool(u)

    def keep(self, index: Sequence[int], params: Sequence[nn.Parameter]) -> None:
        """Keep only the members at ``index``, whose weights are now ``params``."""
        self.params = list(params)
        idx = torch.as_tensor(list(index), dtype=torch.long)
        self.square_avg = [s.index_select(0, idx.to(s.device)) for s in self.square_avg]
        self.lrs = [self.lrs[i] for i in index]
        self.steps = [self.steps[i] for i in index]

    # torch.optim.RMSprop's state dict <-> member k
    def member_state(self, k: int, proto_optimizer: torch.optim.Optimizer) -> dict:
        sd = proto_optimizer.state_dict()
        sd["param_groups"][0]["lr"] = self.lrs[k]
        if self.steps[k]:
            sd["state"] = {i: {"step": torch.tensor(float(self.steps[k])), "square_avg": s[k].clone()}
                           for i, s in enumerate(self.square_avg)}
        return sd

    @torch.no_grad()
    def load_member(self, k: int, sd: dict) -> None:
        state = sd.get("state", {})
        for i, s in enumerate(self.square_avg):
            if i in state:
                s[k].copy_(state[i]["square_avg"])
                self.steps[k] = int(float(state[i]["step"]))
            else:
                s[k].zero_()


def clip_members(params: Sequence[nn.Parameter], max_norm: float | None) -> Tensor:
    """Per-member gradient norms ``(K,)`` (before clipping); with ``max_norm`` each member's gradient
    is scaled as ``torch.nn.utils.clip_grad_norm_`` would scale it alone."""
    grads = [p.grad for p in params if p.grad is not None]
    K = grads[0].shape[0]
    norms = torch.stack([g.reshape(K, -1).norm(dim=1) for g in grads], dim=1).norm(dim=1)
    if max_norm:
        coef = (float(max_norm) / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))
    return norms


@torch.no_grad()
def evaluate_members(model: StackedModel, seqs, batches, device) -> list[float]:
    """Every member's NLL per frame over a whole split (no autograd graph)."""
    total = torch.zeros(model.members, dtype=torch.float64)
    frames = 0
    for batch in iterate(seqs, batches):
        batch = batch.to(device)
        nll = model.frame_nll(batch.inputs, batch.targets)  # (T, K, B)
        total += nll.permute(1, 0, 2)[:, batch.mask].double().sum(1).cpu()
        frames += batch.frames
    return (total / frames).tolist()


# --------------------------------------------------------------------------- training

def stack_key(cfg: DictConfig) -> str:
    """What members of one stack share: the whole resolved configuration but :data:`MEMBER_KEYS`."""
    c = OmegaConf.to_container(cfg, resolve=True)
    c.pop("hydra", None)
    for key in MEMBER_KEYS:
        *parents, leaf = key.split(".")
        node = c
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
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
    """Indices of ``cfgs`` grouped into stacks (configurations equal but for :data:`MEMBER_KEYS`),
    in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        groups.setdefault(stack_key(cfg), []).append(i)
    return list(groups.values())


class _Member:
    def __init__(self, run: Run, ckpt: dict | None, shuffle_gen, noise_gen):
        self.run, self.ckpt = run, ckpt
        self.shuffle_gen, self.noise_gen = shuffle_gen, noise_gen
        self.result: dict | None = None  # the summary, once the run has stopped

    def progress_key(self) -> tuple:
        """Members train together only from the same point: same epoch, same random streams."""
        return (self.run.state.epoch, bytes(self.shuffle_gen.get_state().numpy()),
                bytes(self.noise_gen.get_state().numpy()))


def train_stack(cfgs: Sequence[DictConfig], run_dirs: Sequence[str | Path], max_members: int | None = None) -> list[dict]:
    """Train (or resume, or skip) the runs ``cfgs`` in ``run_dirs`` as stacks; their summaries, in order.

    The configurations must be equal but for :data:`MEMBER_KEYS` (a :class:`ConfigError` names the
    first key that differs).  ``max_members`` caps a stack's size (larger groups are split).
    """
    if len(cfgs) != len(run_dirs):
        raise ValueError("train_stack needs one run directory per configuration")
    if not cfgs:
        return []
    first = cfgs[0]
    for cfg in cfgs[1:]:
        if stack_key(cfg) != stack_key(first):
            raise ConfigError(f"runs stacked together must differ only in {', '.join(MEMBER_KEYS)}; "
                              f"found {_first_difference(first, cfg)}")
    if len(cfgs) == 1:
        return [train(cfgs[0], run_dirs[0])]
    runs = [Run(cfg, d) for cfg, d in zip(cfgs, run_dirs)]
    tcfg = first.train
    if tcfg.get("threads"):
        torch.set_num_threads(int(tcfg.threads))
    device = resolve_device(tcfg.get("device", "cpu"))
    cap = max(1, int(max_members or len(cfgs)))
    data = Splits(first, max(1, int(tcfg.eval_batch_frames) // min(cap, len(cfgs))))

    torch.manual_seed(int(first.seed))
    proto = SequenceModel.for_corpus(first.cell.name, int(first.cell.units), data.corpus).to(device)
    counts = proto.param_counts()
    members = []
    eval_waste = data.eval_waste()
    for run in runs:
        shuffle_gen, noise_gen = make_generators(first.seed)
        ckpt = run.checkpoint(device)
        if ckpt is not None:
            shuffle_gen.set_state(ckpt["shuffle_rng"])
            noise_gen.set_state(ckpt["noise_rng"])
        run.start(counts, eval_waste)
        members.append(_Member(run, ckpt, shuffle_gen, noise_gen))

    # members at the same point train together; a member that is already done is only finalized
    groups: dict[tuple, list[_Member]] = {}
    for m in members:
        if m.run.begin_epoch():
            groups.setdefault(m.progress_key(), []).append(m)
    for group in groups.values():
        for i in range(0, len(group), cap):
            _train_members(group[i:i + cap], proto, data, device)
    results = []
    for m in members:
        if m.result is not None:
            results.append(m.result)
            continue
        if m.ckpt is None:  # never trained (max_epochs=0): what it would resume from
            m.ckpt = {"model": proto.state_dict(),
                      "optimizer": make_optimizer(proto.parameters(), m.run.cfg.optim).state_dict(),
                      "shuffle_rng": m.shuffle_gen.get_state(), "noise_rng": m.noise_gen.get_state(),
                      "torch_rng": torch.get_rng_state()}
        results.append(m.run.finish(m.ckpt))
    return results


def _train_members(members: list[_Member], proto: SequenceModel, data: Splits, device) -> None:
    """Train ``members`` (all at the same epoch with the same random streams) until each has stopped."""
    cfg, tcfg = members[0].run.cfg, members[0].run.tcfg
    K0 = len(members)
    model = StackedModel(proto, K0).to(device)
    opt = StackedRMSprop(model.weights, [float(m.run.cfg.optim.lr) for m in members], cfg.optim)
    for k, m in enumerate(members):
        if m.ckpt is not None:
            model.load_member(k, m.ckpt["model"])
            opt.load_member(k, m.ckpt["optimizer"])
    shuffle_gen, noise_gen = members[0].shuffle_gen, members[0].noise_gen
    proto_opt = make_optimizer(proto.parameters(), cfg.optim)
    for m in members:
        m.run.extra["stacked_members"] = K0
        m.run.label = f"lr {float(m.run.cfg.optim.lr):.3g}  "
    log.info("%s/%s: training %d runs as one stack (lr %s)", cfg.dataset.name, cfg.cell.name, K0,
             ", ".join(f"{float(m.run.cfg.optim.lr):.3g}" for m in members))

    def payload(k: int) -> dict:
        return {"model": model.member_state(k), "optimizer": opt.member_state(k, proto_opt),
                "shuffle_rng": shuffle_gen.get_state(), "noise_rng": noise_gen.get_state(),
                "torch_rng": torch.get_rng_state()}

    def drop(gone: list[int]) -> None:
        for k in gone:  # a member that stops is written out as finished at once, as it would be alone
            members[k].ckpt = payload(k)
            members[k].result = members[k].run.finish(members[k].ckpt)
        keep = [k for k in range(len(members)) if k not in gone]
        model.keep(keep)
        opt.keep(keep, model.weights)
        members[:] = [members[k] for k in keep]

    noise_std = float(tcfg.weight_noise)
    skip_nonfinite = bool(tcfg.get("skip_nonfinite", False))
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
        for batch in iterate(data.seqs["train"], batches):
            batch = batch.to(device)
            # every member draws what it would draw alone: the same stream
            with weight_noise([model.weights[i] for i in model.noisy], noise_std, noise_gen, lead=1):
                nll = model.frame_nll(batch.inputs, batch.targets)
                loss_total = nll.permute(1, 0, 2)[:, batch.mask].sum(1)  # (K,)
                opt.zero_grad()
                (loss_total / batch.frames).sum().backward()
            gnorm = clip_members(model.weights, tcfg.clip_norm)
            loss_ok = torch.isfinite(loss_total).tolist()
            grad_ok = torch.isfinite(gnorm).tolist()
            update, gone = [], []
            for k in range(K):
                if not loss_ok[k]:
                    gone.append(k)
                elif not grad_ok[k]:
                    if not skip_nonfinite or skipped[k] >= max(1, len(batches) // 2):
                        gone.append(k)
                    else:
                        skipped[k] += 1
                update.append(loss_ok[k] and grad_ok[k])
            opt.step(update)
            totals = loss_total.detach().tolist()
            for k in range(K):
                if update[k]:
                    members[k].run.state.updates += 1
                    loss_sum[k] += totals[k]
                    loss_frames[k] += batch.frames
            if gone:
                for k in gone:
                    members[k].run.diverged(time.perf_counter() - t0)
                keep = [k for k in range(K) if k not in gone]
                loss_sum = [loss_sum[k] for k in keep]
                skipped = [skipped[k] for k in keep]
                loss_frames = [loss_frames[k] for k in keep]
                drop(gone)
                K = len(members)
                if not members:
                    return
        train_time = time.perf_counter() - t0
        nll = {s: evaluate_members(model, data.seqs[s], data.eval_batches[s], device) for s in Splits.NAMES}
        for k, m in enumerate(members):
            m.run.end_epoch(train_time, loss_sum[k] / max(loss_frames[k], 1), skipped[k],
                            {s: nll[s][k] for s in Splits.NAMES}, lambda k=k: model.member_state(k))
            m.run.persist(payload(k))
        ended = [k for k, m in enumerate(members) if not m.run.running]
        if ended:
            drop(ended)
