"""The training recipe of Chung et al. (2014) and the run directory it writes.

RMSProp; Gaussian weight noise drawn afresh for every update (the gradient is taken
at the noisy weights and applied to the clean ones; evaluation is noise-free);
gradient norm clipped; early stopping on validation NLL.

A run directory holds::

    config.yaml     the resolved configuration
    metrics.csv     one row per epoch: epoch, updates, wall_seconds, train_nll, valid_nll, test_nll, ...
    summary.json    the best-validation epoch's NLLs, model size, learning rate, seed and status
    best.pt         weights at the best validation NLL
    last.pt         everything needed to resume (weights, optimizer, RNG states, history)

Every file is written atomically, so a run killed at any moment resumes from its
last completed epoch and never leaves a half-written file behind.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from omegaconf import DictConfig, OmegaConf

from .data import batch_indices, load_dataset, padding_waste
from .errors import ConfigError
from .fileio import atomic_torch_save, atomic_write_json, atomic_write_text, remove_stale_temporaries
from .model import SequenceModel
from .runs import read_summary

log = logging.getLogger("rnnbench.train")

METRIC_FIELDS = [
    "epoch", "updates", "wall_seconds", "train_nll", "valid_nll", "test_nll", "train_loss_noisy", "lr",
    "skipped_updates", "eval_seconds",
]
# Options whose value here means "behave as before the option existed".
NEUTRAL_DEFAULTS = {"train.skip_nonfinite": False, "train.order_seed": None, "search.halving": None}
# Keys that may change between a run and its resumption (they extend or steer it, not change it).
RESUMABLE_KEYS = ("train.max_epochs", "train.max_minutes", "train.resume", "train.threads", "train.device",
                  "train.log_every", "train.eval_max_waste", "train.eval_batch_frames", "train.eval_train_every", "data_root",
                  "dataset.download")


# --------------------------------------------------------------------------- config

def _get(cfg: Mapping, dotted: str, default: Any = None) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` naming the first invalid value."""
    def need(key: str, ok, what: str):
        value = _get(cfg, key)
        try:
            good = ok(value)
        except TypeError:
            good = False
        if not good:
            raise ConfigError(f"config value {key}={value!r} is invalid: expected {what}")

    need("optim.lr", lambda v: isinstance(v, (int, float)) and v > 0 and math.isfinite(v), "a positive number")
    need("optim.alpha", lambda v: 0 <= v < 1, "a number in [0, 1)")
    need("optim.eps", lambda v: v > 0, "a positive number")
    need("optim.momentum", lambda v: 0 <= v < 1, "a number in [0, 1)")
    need("train.batch_size", lambda v: isinstance(v, int) and v >= 1, "an integer >= 1")
    need("train.max_epochs", lambda v: isinstance(v, int) and v >= 0, "an integer >= 0")
    need("train.patience", lambda v: isinstance(v, int) and v >= 1, "an integer >= 1")
    need("train.clip_norm", lambda v: v is None or v > 0, "a positive number or null")
    need("train.weight_noise", lambda v: v >= 0, "a number >= 0")
    need("train.eval_batch_frames", lambda v: isinstance(v, int) and v >= 1, "an integer >= 1")
    need("train.eval_max_waste", lambda v: v is None or 0 <= v < 1, "a number in [0, 1) or null")
    need("train.max_minutes", lambda v: v is None or v > 0, "a positive number or null")
    need("train.eval_train_every", lambda v: v is None or (isinstance(v, int) and v >= 0),
         "an integer >= 0 (0 or null: only at the end)")
    need("train.order_seed", lambda v: v is None or isinstance(v, int), "an integer or null (= seed)")
    need("cell.units", lambda v: isinstance(v, int) and v >= 1, "an integer >= 1")
    need("seed", lambda v: isinstance(v, int), "an integer")
    need("dataset.task", lambda v: v in ("music", "speech"), "'music' or 'speech'")


def config_fingerprint(cfg: DictConfig) -> str:
    """Hash of the configuration, ignoring the keys that may change on resumption and options
    that sit at their neutral value (so adding such an option keeps older runs resumable)."""
    c = OmegaConf.to_container(cfg, resolve=True)
    for key in RESUMABLE_KEYS + tuple(NEUTRAL_DEFAULTS):
        *parents, leaf = key.split(".")
        node = c
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict) and leaf in node:
            if key in NEUTRAL_DEFAULTS and node[leaf] != NEUTRAL_DEFAULTS[key]:
                continue
            node.pop(leaf)
    return hashlib.sha256(json.dumps(c, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- pieces

def make_optimizer(params, optim: Mapping) -> torch.optim.Optimizer:
    name = optim.get("name", "rmsprop")
    if name != "rmsprop":
        raise ConfigError(f"config value optim.name={name!r} is invalid: expected 'rmsprop'")
    return torch.optim.RMSprop(
        params, lr=float(optim["lr"]), alpha=float(optim["alpha"]), eps=float(optim["eps"]),
        momentum=float(optim["momentum"]), centered=bool(optim.get("centered", False)),
    )


def evaluate(model: SequenceModel, seqs, batches, device) -> float:
    """NLL per frame of one model over a whole split (the stacked evaluator with one member)."""
    from .stack import StackedModel, evaluate_members

    return evaluate_members(StackedModel(model, 1).to(device), seqs, batches, device)[0]


def resolve_device(name: str | None) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class TrainState:
    epoch: int = 0
    updates: int = 0
    wall_seconds: float = 0.0
    best_valid: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    status: str = "running"
    stop_reason: str | None = None
    skipped_updates: int = 0
    eval_seconds: float = 0.0  # evaluation during training (not in wall_seconds)


# --------------------------------------------------------------------------- run

def _write_metrics(run_dir: Path, history: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow(row)
    atomic_write_text(run_dir / "metrics.csv", buf.getvalue())


class Splits:
    """A corpus's three splits, their lengths and the (bucketed) evaluation batches."""

    NAMES = ("train", "valid", "test")

    def __init__(self, cfg: DictConfig, eval_batch_frames: int | None = None):
        corpus = load_dataset(cfg.dataset, cfg.get("data_root"))
        self.corpus = corpus
        self.seqs = {s: corpus[s] for s in self.NAMES}
        self.lengths = {s: corpus.lengths(s) for s in self.NAMES}
        frames = int(eval_batch_frames or cfg.train.eval_batch_frames)
        waste = cfg.train.get("eval_max_waste")
        self.eval_batches = {
            s: batch_indices(self.lengths[s], batch_size=10**9, shuffle=False, bucket=True, max_frames=frames,
                             max_waste=None if waste is None else float(waste))
            for s in self.NAMES
        }

    def train_batches(self, tcfg, generator: torch.Generator) -> list[list[int]]:
        return batch_indices(self.lengths["train"], int(tcfg.batch_size), shuffle=True, generator=generator,
                             bucket=bool(tcfg.get("bucket", True)))

    def eval_waste(self) -> dict[str, float]:
        return {s: round(padding_waste(self.lengths[s], self.eval_batches[s]), 4) for s in self.NAMES}


def make_generators(seed: int) -> tuple[torch.Generator, torch.Generator]:
    """The two random streams of a run: batch order (seed + 1) and weight noise (seed + 2).  The
    batch order's seed is ``train.order_seed`` where that is set (seeds sharing one data order)."""
    return torch.Generator().manual_seed(int(seed) + 1), torch.Generator().manual_seed(int(seed) + 2)


class Run:
    """One run directory: its configuration, progress, history and the files it writes.

    The training loops (:func:`train` for one model, :func:`rnnbench.stack.train_stack` for
    several trained side by side) share this bookkeeping, so a run's files do not depend on how
    it was trained, and a run started one way can be resumed the other.
    """

    def __init__(self, cfg: DictConfig, run_dir: str | Path):
        validate_config(cfg)
        self.cfg, self.tcfg = cfg, cfg.train
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.fingerprint = config_fingerprint(cfg)
        self.state = TrainState()
        self.history: list[dict] = []
        self.counts: dict[str, int] = {}
        self.eval_waste: dict[str, float] = {}
        self.extra: dict[str, Any] = {}  # further summary fields, kept in last.pt
        self.session_start = time.perf_counter()

    # ---- starting
    def checkpoint(self, device) -> dict | None:
        """The checkpoint to resume from (``None``: start afresh), after checking it belongs here."""
        for tmp in remove_stale_temporaries(self.run_dir):  # (a run directory has one writer at a time)
            log.info("removed %s, left by an interrupted write", tmp)
        last = self.run_dir / "last.pt"
        if last.is_file() and self.tcfg.get("resume", True):
            ckpt = torch.load(last, map_location=device, weights_only=False)
            if ckpt["fingerprint"] != self.fingerprint:
                raise ConfigError(
                    f"{self.run_dir} holds a run with a different configuration (fingerprint {ckpt['fingerprint']}, "
                    f"now {self.fingerprint}); use another run directory, or train.resume=false to start it afresh"
                )
            self.state = TrainState(**ckpt["state"])
            self.history = ckpt["history"]
            self.extra = dict(ckpt.get("extra", {}))
            if "padding_waste_eval" not in self.extra:  # (runs from before it was kept in last.pt)
                self.extra["padding_waste_eval"] = (read_summary(self.run_dir) or {}).get("padding_waste_eval")
            log.info("resuming %s from epoch %d (%s)", self.run_dir, self.state.epoch, self.state.status)
            return ckpt
        if last.is_file():
            for name in ("last.pt", "best.pt", "metrics.csv", "summary.json"):
                (self.run_dir / name).unlink(missing_ok=True)
        return None

    def start(self, counts: dict[str, int], eval_waste: dict[str, float]) -> None:
        """Write the configuration, log the model, and reopen a run that stopped on a budget."""
        cfg = self.cfg
        self.counts, self.eval_waste = counts, eval_waste
        self.extra.setdefault("padding_waste_eval", eval_waste)  # (a finished run keeps what it measured)
        cfg_text = OmegaConf.to_yaml(cfg, resolve=True)
        path = self.run_dir / "config.yaml"
        if not path.is_file() or path.read_text() != cfg_text:
            atomic_write_text(path, cfg_text)
        if self.state.epoch == 0 and not self.history:
            log.info("%s/%s: %d units, %d recurrent / %d total parameters, lr=%.3g, batch %d",
                     cfg.dataset.name, cfg.cell.name, cfg.cell.units, counts["recurrent"], counts["total"],
                     cfg.optim.lr, self.tcfg.batch_size)
        if self.state.status == "running" or self.state.stop_reason in ("max_epochs", "time_budget"):
            self.state.status, self.state.stop_reason = "running", None
            # reopened: the best epoch's after-training scores go, as if the run had never stopped
            # (its files then equal an uninterrupted run's)
            done = self.extra.pop("scored_after_training", None)
            if done:
                for row in self.history:
                    if row["epoch"] == done["epoch"]:
                        for s in done["splits"]:
                            row[f"{s}_nll"] = None
        self.session_start = time.perf_counter()

    @property
    def running(self) -> bool:
        return self.state.status == "running"

    def begin_epoch(self) -> bool:
        """Whether another epoch is due; if not, the run ends here (epoch cap or time budget)."""
        if not self.running:
            return False
        if self.state.epoch >= int(self.tcfg.max_epochs):
            self.state.status, self.state.stop_reason = "finished", "max_epochs"
            return False
        budget = float(self.tcfg.max_minutes) * 60 if self.tcfg.get("max_minutes") else math.inf
        if time.perf_counter() - self.session_start >= budget:
            self.state.status, self.state.stop_reason = "finished", "time_budget"
            return False
        return True

    # ---- ending an epoch
    def diverged(self, seconds: float) -> None:
        """The epoch ended early on a non-finite loss or gradient: the run is over."""
        state = self.state
        state.epoch += 1
        state.wall_seconds += seconds
        state.status, state.stop_reason = "diverged", "non-finite loss or gradient"
        log.warning("%s  epoch %d: non-finite loss or gradient, run marked diverged", self.member_label(), state.epoch)
        self.history.append({"epoch": state.epoch, "updates": state.updates,
                             "wall_seconds": round(state.wall_seconds, 3), "lr": float(self.cfg.optim.lr)})

    def end_epoch(self, seconds: float, train_loss_noisy: float, skipped: int, nll: Mapping[str, float],
                  best_model, eval_seconds: float = 0.0) -> dict | None:
        """Record a completed epoch.  ``nll`` holds the splits evaluated this epoch (validation
        always); ``best_model()`` gives the weights to keep if it is the best so far, which are then
        returned (``None`` otherwise)."""
        state = self.state
        state.epoch += 1
        state.wall_seconds += seconds
        state.eval_seconds += eval_seconds
        row = {"epoch": state.epoch, "updates": state.updates, "wall_seconds": round(state.wall_seconds, 3),
               "train_loss_noisy": train_loss_noisy, "lr": float(self.cfg.optim.lr), "skipped_updates": skipped,
               "eval_seconds": round(state.eval_seconds, 3)}
        state.skipped_updates += skipped
        if skipped:
            log.warning("%s epoch %d: %d updates skipped (non-finite gradient)", self.member_label(), state.epoch,
                        skipped)
        for s in Splits.NAMES:
            row[f"{s}_nll"] = nll.get(s)
        self.history.append(row)
        self.extra["padding_waste_eval"] = self.eval_waste
        kept = None
        if not math.isfinite(row["valid_nll"]):
            state.status, state.stop_reason = "diverged", "non-finite validation NLL"
        elif row["valid_nll"] < state.best_valid:
            state.best_valid, state.best_epoch, state.bad_epochs = row["valid_nll"], state.epoch, 0
            kept = best_model()
            atomic_torch_save(self.run_dir / "best.pt", {"model": kept, "epoch": state.epoch,
                                                         "cell": self.cfg.cell.name, "units": int(self.cfg.cell.units)})
        else:
            state.bad_epochs += 1
            if state.bad_epochs >= int(self.tcfg.patience):
                state.status, state.stop_reason = "finished", "early_stopping"
        shown = "".join(f"  {s} {row[f'{s}_nll']:.3f}" for s in ("train", "valid") if row[f"{s}_nll"] is not None)
        log.info("%s  epoch %3d  updates %6d  %6.1fs%s%s", self.member_label(), state.epoch, state.updates,
                 seconds, shown, "  *" if state.best_epoch == state.epoch else "")
        return kept

    def member_label(self) -> str:
        """How this run's log lines name it: dataset, cell, learning rate (and seed when not 0)."""
        cfg = self.cfg
        seed = f" seed {int(cfg.seed)}" if int(cfg.seed) != 0 else ""
        return f"{cfg.dataset.name}/{cfg.cell.name} lr {float(cfg.optim.lr):.3g}{seed}"

    def best_row(self) -> dict | None:
        return next((r for r in self.history if r["epoch"] == self.state.best_epoch), None) if self.state.best_epoch else None

    def missing_best_splits(self) -> list[str]:
        """The splits the best epoch has no NLL for yet (train and test are scored when a run ends)."""
        row = self.best_row()
        if row is None:
            return []
        return [s for s in Splits.NAMES if row.get(f"{s}_nll") is None]

    def fill_best(self, nll: Mapping[str, float], seconds: float = 0.0) -> None:
        """The NLLs of the best epoch's weights, scored after training, into that epoch's row."""
        row = self.best_row()
        for s, v in nll.items():
            row[f"{s}_nll"] = v
        done = self.extra.get("scored_after_training") or {}
        splits = sorted(set(done.get("splits", [])) | set(nll)) if done.get("epoch") == row["epoch"] else sorted(nll)
        self.extra["scored_after_training"] = {"epoch": row["epoch"], "splits": splits}
        log.info("%s  best epoch %d scored: %s (%.1fs)", self.member_label(), self.state.best_epoch,
                 "  ".join(f"{s} {v:.3f}" for s, v in nll.items()), seconds)

    def prune(self, epoch: int, best: float, leader: "Run") -> None:
        """Stopped by successive halving: clearly behind the best draw at a checkpoint."""
        self.state.status = "pruned"
        self.state.stop_reason = (f"successive halving at epoch {epoch}: best valid {self.state.best_valid:.4f}, "
                                  f"{self.state.best_valid - best:.3f} behind lr {float(leader.cfg.optim.lr):.3g}")
        log.info("%s  pruned: %s", self.member_label(), self.state.stop_reason)

    # ---- files
    def summary(self) -> dict:
        cfg, tcfg, state = self.cfg, self.tcfg, self.state
        best = self.best_row() or {}
        return {
            "status": state.status, "stop_reason": state.stop_reason,
            "dataset": cfg.dataset.name, "task": cfg.dataset.task, "cell": cfg.cell.name, "units": int(cfg.cell.units),
            "params_recurrent": self.counts["recurrent"], "params_total": self.counts["total"],
            "lr": float(cfg.optim.lr), "seed": int(cfg.seed), "batch_size": int(tcfg.batch_size),
            "weight_noise": float(tcfg.weight_noise), "best_epoch": state.best_epoch,
            "train_nll": best.get("train_nll"), "valid_nll": best.get("valid_nll"), "test_nll": best.get("test_nll"),
            "epochs": state.epoch, "updates": state.updates, "skipped_updates": state.skipped_updates,
            "wall_seconds": round(state.wall_seconds, 3), "eval_seconds": round(state.eval_seconds, 3),
            "fingerprint": self.fingerprint,
            **self.extra,  # padding_waste_eval: padding in the evaluation batches; stacked_members
        }

    def persist(self, payload: Mapping[str, Any], result: dict | None = None) -> None:
        """Write metrics.csv, last.pt (``payload``: model, optimizer and RNG states) and summary.json."""
        _write_metrics(self.run_dir, self.history)
        atomic_torch_save(self.run_dir / "last.pt", {
            **payload, "state": vars(self.state).copy(), "history": self.history, "fingerprint": self.fingerprint,
            "extra": self.extra,
        })
        atomic_write_json(self.run_dir / "summary.json", self.summary() if result is None else result)

    def finish(self, payload: Mapping[str, Any]) -> dict:
        result = self.summary()
        if result != read_summary(self.run_dir):  # a finished run called again changes nothing on disk
            self.persist(payload, result)
        test = result["test_nll"]
        log.info("%s: %s (%s); best epoch %d: valid %.4f, test %s  [%s]", self.member_label(), self.state.status,
                 self.state.stop_reason, self.state.best_epoch, self.state.best_valid,
                 "-" if test is None else f"{test:.4f}", self.run_dir)
        return result


def train(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Train (or resume, or skip if already done) the run described by ``cfg`` in ``run_dir``: a
    stack of one (:func:`rnnbench.stack.train_stack`, the one training loop)."""
    from .stack import train_stack

    return train_stack([cfg], [run_dir])[0]
