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

    last.prev.pt    the previous last.pt, kept until the new one is complete (a damaged last.pt falls back to it)
    .lock           held (``flock``) by the one process training the run; the OS releases it when that process dies

Every file is written atomically (and flushed to disk before it replaces the old one), so a run
killed at any moment, or stopped by a full disk, resumes from its last completed epoch and never
leaves a half-written file behind.  Every file read back is checked: a damaged one is named, with
what to do (:class:`~rnnbench.errors.RunFileError`), or recovered from with a warning
(``last.pt`` from ``last.prev.pt``; ``summary.json``, ``metrics.csv`` and ``config.yaml``
rewritten from ``last.pt``).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import inspect
import io
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from omegaconf import DictConfig, OmegaConf

from .data import batch_indices, load_dataset, padding_waste
from .errors import ConfigError, RunFileError
from .fileio import (FolderLock, atomic_torch_save, atomic_write_json, atomic_write_text, read_text,
                     remove_stale_temporaries, replace_with_copy)
from .model import SequenceModel
from .runs import RETRAIN, read_checkpoint, read_metrics, read_summary, read_yaml

log = logging.getLogger("rnnbench.train")

METRIC_FIELDS = [
    "epoch", "updates", "wall_seconds", "train_nll", "valid_nll", "test_nll", "train_loss_noisy", "lr",
    "skipped_updates", "eval_seconds",
]
# Options whose value here means "behave as before the option existed".
NEUTRAL_DEFAULTS = {"train.skip_nonfinite": False, "train.order_seed": None}
# Keys that may change between a run and its resumption (they extend or steer it, not change it).
# search.halving only decides when a draw stops, as train.max_epochs does: a run's numbers up to
# that point do not depend on it.
RESUMABLE_KEYS = ("train.max_epochs", "train.max_minutes", "train.resume", "train.threads", "train.device",
                  "train.log_every", "train.eval_max_waste", "train.eval_batch_frames", "train.eval_train_every", "data_root",
                  "dataset.download", "search.halving")


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
    need("train.max_epochs", lambda v: isinstance(v, int) and v >= 1,
         "an integer >= 1 (to see a run's results without training it, use rnnbench-report)")
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

def _rmsprop_settings(optim: Mapping) -> dict:
    name = optim.get("name", "rmsprop")
    if name != "rmsprop":
        raise ConfigError(f"config value optim.name={name!r} is invalid: expected 'rmsprop'")
    return {"lr": float(optim["lr"]), "alpha": float(optim["alpha"]), "eps": float(optim["eps"]),
            "momentum": float(optim["momentum"]), "centered": bool(optim.get("centered", False))}


def make_optimizer(params, optim: Mapping) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(params, **_rmsprop_settings(optim))


def rmsprop_state_dict(n_params: int, optim: Mapping, state: Mapping | None = None) -> dict:
    """What ``make_optimizer(params, optim).state_dict()`` returns for ``n_params`` parameter
    tensors (with ``state`` as its per-parameter state), built without an optimizer object: making
    one imports ``torch._dynamo``, seconds at the start of every training process."""
    group = {**_rmsprop_defaults(), **_rmsprop_settings(optim)}
    return {"state": dict(state or {}), "param_groups": [{**group, "params": list(range(n_params))}]}


@functools.lru_cache(maxsize=None)
def _rmsprop_defaults() -> dict:
    """``torch.optim.RMSprop``'s constructor defaults, the keys of its param_groups (read once;
    callers copy it, never change it)."""
    return {n: p.default for n, p in inspect.signature(torch.optim.RMSprop.__init__).parameters.items()
            if n not in ("self", "params") and p.default is not inspect.Parameter.empty}


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

def _metrics_text(history: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow(row)
    return buf.getvalue()


def _write_metrics(run_dir: Path, history: list[dict]) -> None:
    atomic_write_text(run_dir / "metrics.csv", _metrics_text(history))


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
        # resolved once: the learning rate is a resolver interpolation, and reading an unresolved one
        # parses it again on every access (milliseconds, read several times a member-epoch)
        resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
        OmegaConf.set_struct(resolved, OmegaConf.is_struct(cfg))
        self.cfg, self.tcfg = resolved, resolved.train
        self.run_dir = Path(run_dir)
        self.lock = FolderLock(self.run_dir)  # (acquire() creates the directory)
        self.recovered = False  # resumed from last.prev.pt
        self.fingerprint = config_fingerprint(cfg)
        self.state = TrainState()
        self.history: list[dict] = []
        self.counts: dict[str, int] = {}
        self.eval_waste: dict[str, float] = {}
        self.extra: dict[str, Any] = {}  # further summary fields, kept in last.pt
        self.session_start = time.perf_counter()

    # ---- one process per run directory
    def acquire(self) -> bool:
        """Take the run directory's lock (creating the directory); ``False``: another process holds
        it (it is training this run).  The OS releases the lock when its holder dies."""
        return self.lock.acquire()

    def release(self, discard_unstarted: bool = False) -> None:
        """Release the lock.  ``discard_unstarted``: if the run never wrote a file (it was refused),
        remove the lock file and the directory if that leaves it empty."""
        if discard_unstarted and self.lock.held and not any(
                (self.run_dir / n).exists() for n in ("config.yaml", "metrics.csv", "summary.json", "best.pt", "last.pt",
                                                      "last.prev.pt")):
            self.lock.path.unlink(missing_ok=True)
            self.lock.release()
            try:
                self.run_dir.rmdir()
            except OSError:
                pass
            return
        self.lock.release()

    def busy_result(self) -> dict:
        """The result of a run another process is training (its lock is held): not trained here."""
        holder = self.lock.holder()
        log.warning("%s: skipped, %s is training it  [%s]", self.member_label(), holder, self.run_dir)
        cfg = self.cfg
        return {"status": "skipped", "stop_reason": f"{holder} is training it", "dataset": cfg.dataset.name,
                "task": cfg.dataset.task, "cell": cfg.cell.name, "lr": float(cfg.optim.lr), "seed": int(cfg.seed),
                "best_epoch": None, "train_nll": None, "valid_nll": None, "test_nll": None, "epochs": None,
                "fingerprint": self.fingerprint}

    # ---- starting
    def checkpoint(self, device, shapes: Mapping[str, tuple] | None = None) -> dict | None:
        """The checkpoint to resume from (``None``: start afresh), after checking it belongs here.

        A damaged ``last.pt`` (or one whose weights do not have ``shapes``) falls back, with a
        warning, to ``last.prev.pt``, the checkpoint of the epoch before; the damaged file is kept
        as ``last.pt.damaged``.  Without a good ``last.prev.pt`` a :class:`RunFileError` names the
        file and what to do."""
        for tmp in remove_stale_temporaries(self.run_dir):  # (a run directory has one writer at a time: the lock)
            log.info("removed %s, left by an interrupted write", tmp)
        last, prev = self.run_dir / "last.pt", self.run_dir / "last.prev.pt"
        if (last.is_file() or prev.is_file()) and self.tcfg.get("resume", True):
            ckpt = self._read_last(device, shapes)
            self._refuse_another_config(ckpt["fingerprint"])
            self.state = TrainState(**ckpt["state"])
            self.history = ckpt["history"]
            self.extra = dict(ckpt.get("extra", {}))
            if "padding_waste_eval" not in self.extra:  # (runs from before it was kept in last.pt)
                try:
                    self.extra["padding_waste_eval"] = (read_summary(self.run_dir) or {}).get("padding_waste_eval")
                except RunFileError as exc:
                    log.warning("%s (padding_waste_eval is measured again)", exc)
                    self.extra["padding_waste_eval"] = None
            log.info("resuming %s from epoch %d (%s)", self.run_dir, self.state.epoch, self.state.status)
            return ckpt
        if last.is_file() or prev.is_file():
            for name in ("last.pt", "last.prev.pt", "last.pt.damaged", "best.pt", "metrics.csv", "summary.json"):
                (self.run_dir / name).unlink(missing_ok=True)
        return None

    def _refuse_another_config(self, fingerprint: str | None) -> None:
        """Refuse a run directory made with another configuration.  A stored fingerprint that differs
        is checked once more against the run's own ``config.yaml`` under today's rule: a key that
        became resumable (as ``search.halving`` did) changes every fingerprint, not the run."""
        if fingerprint != self.fingerprint and not self._same_config_as_stored():
            raise ConfigError(
                f"{self.run_dir} holds a run with a different configuration (fingerprint {fingerprint}, "
                f"now {self.fingerprint}); use another run directory, or train.resume=false to start it afresh"
            )

    def _same_config_as_stored(self) -> bool:
        stored = self.run_dir / "config.yaml"
        try:
            return stored.is_file() and config_fingerprint(OmegaConf.load(stored)) == self.fingerprint
        except Exception:  # (an unreadable config.yaml is no evidence either way: refuse as before)
            return False

    def ended_without_checkpoint(self) -> dict | None:
        """For a run that wrote epochs but has no ``last.pt`` (nor ``last.prev.pt``): its stored
        summary if it ended and the configuration would not take it further (a finished run whose
        checkpoint was dropped, as committed results are), so that it is kept as it is.  ``None``
        if it has a checkpoint, never wrote an epoch, or ``train.resume`` is off.  Anything else is
        a :class:`RunFileError`: without ``last.pt`` such a run can neither go on nor be silently
        trained again over its files."""
        last, prev = self.run_dir / "last.pt", self.run_dir / "last.prev.pt"
        if last.is_file() or prev.is_file() or not self.tcfg.get("resume", True):
            return None
        summary = read_summary(self.run_dir)
        if summary is None:
            return None
        self._refuse_another_config(summary.get("fingerprint"))
        status, reason, epochs = summary.get("status"), summary.get("stop_reason"), int(summary.get("epochs") or 0)
        ended = status in ("finished", "diverged", "pruned")
        reopens = status == "finished" and (reason == "time_budget" or (
            reason == "max_epochs" and int(self.tcfg.max_epochs) > epochs))
        if ended and not reopens:
            read_metrics(self.run_dir, epochs)  # (its history must be readable: the report reads it)
            return summary
        if reopens:
            want = ("more time (train.max_minutes)" if reason == "time_budget"
                    else f"train.max_epochs={int(self.tcfg.max_epochs)} (with train.max_epochs={epochs} it is kept "
                         f"as it is)")
            raise RunFileError(last, f"missing: the run ended after {epochs} epochs ({reason}) and its last.pt was "
                                     f"removed, so it cannot go on to {want}", RETRAIN)
        raise RunFileError(last, f"missing, but summary.json says the run is {status} after {epochs} epochs",
                           RETRAIN)

    def _check_checkpoint(self, ckpt: dict, path: Path, shapes: Mapping[str, tuple] | None) -> dict:
        """``ckpt`` if it holds a resumable state (and weights of ``shapes``), else RunFileError."""
        if not isinstance(ckpt.get("state"), dict) or not isinstance(ckpt.get("history"), list):
            raise RunFileError(path, "damaged (its state or history is not readable)", RETRAIN)
        try:
            state = TrainState(**ckpt["state"])
        except TypeError as exc:
            raise RunFileError(path, f"damaged (its state does not fit: {exc})", RETRAIN) from exc
        if len(ckpt["history"]) != state.epoch:
            raise RunFileError(path, f"damaged (epoch {state.epoch} with {len(ckpt['history'])} rows of history)",
                               RETRAIN)
        rng_size = torch.Generator().get_state().numel()
        for key in ("shuffle_rng", "noise_rng"):
            if not isinstance(ckpt[key], torch.Tensor) or ckpt[key].numel() != rng_size:
                raise RunFileError(path, f"damaged (its {key} is not a random-generator state)", RETRAIN)
        if shapes is not None:
            model = ckpt["model"]
            if set(model) != set(shapes):
                raise RunFileError(path, f"damaged or of another model (weights {sorted(set(model) ^ set(shapes))} "
                                         f"differ)", RETRAIN)
            bad = [n for n, shape in shapes.items()
                   if not isinstance(model[n], torch.Tensor) or tuple(model[n].shape) != tuple(shape)]
            if bad:
                raise RunFileError(path, f"damaged or of another model (shape of {', '.join(bad)})", RETRAIN)
        return ckpt

    def _read_last(self, device, shapes: Mapping[str, tuple] | None) -> dict:
        """``last.pt``, or ``last.prev.pt`` (with a warning) when ``last.pt`` is missing or damaged."""
        last, prev = self.run_dir / "last.pt", self.run_dir / "last.prev.pt"
        try:
            if not last.is_file():
                raise RunFileError(last, "missing (last.prev.pt is there)", RETRAIN)
            return self._check_checkpoint(read_checkpoint(last, map_location=device), last, shapes)
        except RunFileError as exc:
            if not prev.is_file():
                raise RunFileError(last, exc.reason, f"no last.prev.pt to fall back on; {RETRAIN}") from exc
            try:
                ckpt = self._check_checkpoint(read_checkpoint(prev, map_location=device), prev, shapes)
            except RunFileError as exc2:
                raise RunFileError(last, f"{exc.reason}, and last.prev.pt too ({exc2.reason})", RETRAIN) from exc2
            if last.is_file():
                os.replace(last, last.with_name("last.pt.damaged"))
            replace_with_copy(prev, last, link=False)  # (a good last.pt again, its own file)
            self.recovered = True  # (finish() writes every file again)
            log.warning("%s: %s; resuming from last.prev.pt instead (epoch %d, %s: what comes after it is trained "
                        "again, to the same numbers); the damaged file is kept as last.pt.damaged", last, exc.reason,
                        ckpt["state"]["epoch"], ckpt["state"]["status"])
            return ckpt

    def read_best(self, device) -> dict:
        """``best.pt``, checked: it must hold the weights of the run's best epoch."""
        path = self.run_dir / "best.pt"
        if not path.is_file():
            raise RunFileError(path, f"missing (the best epoch {self.state.best_epoch} must be scored from it)", RETRAIN)
        ckpt = read_checkpoint(path, map_location=device)
        if int(ckpt["epoch"]) != int(self.state.best_epoch):
            raise RunFileError(path, f"holds the weights of epoch {ckpt['epoch']}, but the run's best epoch is "
                                     f"{self.state.best_epoch}", RETRAIN)
        return ckpt

    def start(self, counts: dict[str, int], eval_waste: dict[str, float]) -> None:
        """Write the configuration, log the model, and reopen a run that stopped on a budget."""
        cfg = self.cfg
        self.counts, self.eval_waste = counts, eval_waste
        self.extra.setdefault("padding_waste_eval", eval_waste)  # (a finished run keeps what it measured)
        cfg_text = OmegaConf.to_yaml(cfg, resolve=True)
        path = self.run_dir / "config.yaml"
        if path.is_file():
            try:
                same = read_text(path) == cfg_text
                if not same:  # (a changed max_epochs, say; or damage, which is worth a warning)
                    read_yaml(path)
            except RunFileError as exc:
                log.warning("%s: %s; rewritten", exc.path, exc.reason)
                same = False
        if not path.is_file() or not same:
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

    def _check_metrics(self) -> None:
        """metrics.csv must be readable and hold one row per epoch of the run's history (kept in
        last.pt): rewrite it from the history if it is not."""
        path = self.run_dir / "metrics.csv"
        if not path.is_file():
            problem = f"{path}: missing"
        else:
            try:
                rows = len(read_metrics(self.run_dir))
                problem = None if rows == len(self.history) else f"{path}: {rows} rows for {len(self.history)} epochs"
            except RunFileError as exc:
                problem = f"{exc.path}: {exc.reason}"
        if problem:
            log.warning("%s; rewriting it from last.pt", problem)
            _write_metrics(self.run_dir, self.history)

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
        }, keep_previous="last.prev.pt")
        atomic_write_json(self.run_dir / "summary.json", self.summary() if result is None else result)

    def finish(self, payload: Mapping[str, Any]) -> dict:
        result = self.summary()
        try:
            stored = read_summary(self.run_dir)
        except RunFileError as exc:
            log.warning("%s: %s; rewriting it from last.pt", exc.path, exc.reason)
            stored = None
        if result != stored or self.recovered:  # a finished run called again changes nothing on disk
            self.persist(payload, result)
        else:
            self._check_metrics()
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
