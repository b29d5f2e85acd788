"""The run directory, both ways: what the trainer writes (:class:`Run`) and reading it back.

A run directory holds::

    config.yaml     the resolved configuration
    metrics.csv     one row per epoch: epoch, updates, wall_seconds, train_nll, valid_nll, test_nll, ...
    summary.json    the best-validation epoch's NLLs, model size, learning rate, seed and status
    best.pt         weights at the best validation NLL
    last.pt         everything needed to resume (weights, optimizer, RNG states, history)

    best.next.pt    a new best epoch's weights, renamed to best.pt once that epoch's last.pt is written
    last.prev.pt    the previous last.pt, kept until the new one is complete (a damaged last.pt falls back to it)
    .lock           held (``flock``) by the one process training the run; the OS releases it when that process dies

Writing: :class:`Run` is one run directory as the training loop (:mod:`rnnbench.stack`) keeps it,
its configuration, progress (:class:`TrainState`), history and files.  Every file is written
atomically (and flushed to disk before it replaces the old one), so a run killed at any moment, or
stopped by a full disk, resumes from its last completed epoch and never leaves a half-written file
behind.  ``best.pt`` and ``last.pt`` always describe the same epochs: a new best is written as
``best.next.pt`` and becomes ``best.pt`` only after its epoch's ``last.pt`` (a run killed between
the two writes finds on resume either the old pair, the new best then dropped with the epoch it
belongs to, or the new ``last.pt`` with its best, renamed then).  :func:`config_fingerprint` is
the configuration a run directory holds, which a run resumed in it must match.

Reading: every reader checks what it reads: a damaged file (truncated, empty, random bytes, not
what it should hold) raises :class:`~rnnbench.errors.RunFileError`, whose message names the file
and what to do, never a bare ``JSONDecodeError`` or ``PytorchStreamReader`` error; the trainer
recovers from some with a warning instead (``last.pt`` from ``last.prev.pt``; ``summary.json``,
``metrics.csv`` and ``config.yaml`` rewritten from ``last.pt``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from .errors import ConfigError, RnnbenchError, RunFileError, WriteError, qname, single_line
from .fileio import (FolderLock, atomic_torch_save, atomic_write_json, atomic_write_text, read_json, read_text,
                     read_torch, remove_stale_temporaries, replace_with_copy)
from .progress import duration, time_left
from .schema import validate_config

# (the trainer's logger: the lines a run logs keep the name they always had)
log = logging.getLogger("rnnbench.train")

# The files a run writes (besides the lock file .lock and Hydra's .hydra/ and <job>.log).
RUN_FILES = ("config.yaml", "metrics.csv", "summary.json", "best.pt", "best.next.pt", "last.pt", "last.prev.pt")
# The columns metrics.csv always has (later ones were added over time; older runs lack them).
METRIC_COLUMNS = ("epoch", "updates", "wall_seconds", "train_nll", "valid_nll", "test_nll")
# The columns the trainer writes, in order.
METRIC_FIELDS = [
    "epoch", "updates", "wall_seconds", "train_nll", "valid_nll", "test_nll", "train_loss_noisy", "lr",
    "skipped_updates", "eval_seconds", "grad_norm_median", "grad_norm_max", "clipped_updates",
]
# The splits a run is scored on (a column <split>_nll each).
SPLITS = ("train", "valid", "test")
# Options whose value here means "behave as before the option existed".
NEUTRAL_DEFAULTS = {"train.skip_nonfinite": False, "train.order_seed": None,
                    "dataset.max_piece_frames": 100_000}  # (= data.scores.MAX_PIECE_FRAMES)
# Keys that may change between a run and its resumption (they extend or steer it, not change it).
# search.halving only decides when a draw stops, as train.max_epochs does: a run's numbers up to
# that point do not depend on it.
RESUMABLE_KEYS = ("train.max_epochs", "train.max_minutes", "train.resume", "train.threads", "train.device",
                  "train.log_every", "train.eval_max_waste", "train.eval_batch_frames", "train.eval_train_every", "data_root",
                  "dataset.download", "search.halving")

# Columns of metrics.csv that may hold a non-finite number: the NLLs of a run that diverged (its
# last epoch's validation NLL) and the noisy training loss.  Every other value is finite.
NONFINITE_ALLOWED = ("train_nll", "valid_nll", "test_nll", "train_loss_noisy")

# What to do about a damaged file.
REWRITTEN = "running the run's command again rewrites it from last.pt (no epoch is trained again)"
RETRAIN = ("to train the run again from the start, run its command with train.resume=false "
           "(or delete the run directory)")


# --------------------------------------------------------------------------- run-directory names

def run_name(override_dirname: str | None) -> str:
    """The last part of a single run's directory: its overrides (``optim.lr=0.001,seed=1``), or
    ``default`` for a run without any, so that the default run's directory is never the parent
    of another run's (``runs/jsb/gru/default`` beside ``runs/jsb/gru/optim.lr=0.001``)."""
    name = "" if override_dirname is None else str(override_dirname)
    return name if name.strip() else "default"


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("rnnbench.run_name", run_name, replace=True)


register_resolvers()


# --------------------------------------------------------------------------- folders

def check_sweep_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """The given sweep (or run) folders, after checking each exists and is a folder: a
    :class:`RnnbenchError` names the first that is not."""
    out = []
    for p in map(Path, paths):
        if not p.exists():
            raise RnnbenchError(f"{qname(p)}: no such folder (give the sweep directory, e.g. runs/sweeps/quick)")
        if not p.is_dir():
            raise RnnbenchError(f"{qname(p)}: not a folder (give the sweep directory, e.g. runs/sweeps/quick)")
        out.append(p)
    return out


def is_unstarted(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds none of a run's own files (only Hydra's, a log, a lock, or nothing)."""
    run_dir = Path(run_dir)
    return not any((run_dir / name).exists() for name in RUN_FILES)


def discard_unstarted(run_dir: str | Path, also: Iterable[str] = (".hydra", "train.log"),
                      stop_at: str | Path | None = None, max_parents: int = 2) -> bool:
    """Remove what a refused run left behind, so that a refused configuration leaves nothing on
    disk: if ``run_dir`` holds none of a run's files (:data:`RUN_FILES`) and no other process
    holds its lock, delete ``also`` (Hydra's ``.hydra/`` and job log), the lock file, and the
    folder and up to ``max_parents`` of its parents while they are empty (never ``stop_at``, the
    working directory, or above them).  Returns whether the run directory went."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not is_unstarted(run_dir):
        return False
    lock = FolderLock(run_dir)
    try:
        if not lock.acquire():  # someone is starting this run right now: leave it alone
            return False
    except RnnbenchError:
        return False
    try:
        if not is_unstarted(run_dir):
            return False
        for name in also:
            p = run_dir / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists() or p.is_symlink():
                p.unlink(missing_ok=True)
        lock.path.unlink(missing_ok=True)
    finally:
        lock.release()
    remove_empty_parents(run_dir, stop_at, max_parents)
    return not run_dir.exists()


def remove_empty_parents(folder: str | Path, stop_at: str | Path | None = None, max_parents: int = 2) -> None:
    """Remove ``folder`` if it is empty, then its parents while they are empty, at most
    ``max_parents`` of them, never ``stop_at``, the working directory, or a folder above them."""
    keep = {Path.cwd().resolve()} | ({Path(stop_at).resolve()} if stop_at is not None else set())
    here = Path(folder).resolve()
    for _ in range(max_parents + 1):
        if any(k == here or here in k.parents for k in keep):
            break
        try:
            here.rmdir()  # (only if empty)
        except OSError:
            break
        here = here.parent


# --------------------------------------------------------------------------- reading: the files

def read_yaml(path: str | Path, remedy: str | None = None) -> DictConfig:
    """A YAML mapping (``config.yaml``, ``.hydra/*.yaml``, a sweep's ``multirun.yaml``), checked:
    :class:`RunFileError` naming the file when it is empty, not text, not YAML or not a mapping."""
    path = Path(path)
    text = read_text(path, remedy)
    if not text.strip():
        raise RunFileError(path, "damaged (empty file)", remedy)
    import yaml

    try:
        cfg = OmegaConf.create(text)
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        raise RunFileError(path, f"damaged (not valid YAML: {str(exc).splitlines()[0][:160]})", remedy) from exc
    except Exception as exc:  # (omegaconf's own errors)
        raise RunFileError(path, f"damaged ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})", remedy) from exc
    if not isinstance(cfg, DictConfig):
        raise RunFileError(path, f"damaged (expected a mapping of keys, found a {type(cfg).__name__})", remedy)
    return cfg


def read_config(run_dir: str | Path) -> DictConfig | None:
    """The run's configuration: ``config.yaml``, else Hydra's ``.hydra/config.yaml`` (a run that
    has not started yet), else ``None``; :class:`RunFileError` when the file is damaged."""
    run_dir = Path(run_dir)
    for path, remedy in ((run_dir / "config.yaml", "running the run's command again rewrites it"),
                         (run_dir / ".hydra" / "config.yaml", "running the run's command again rewrites it")):
        if path.is_file():
            return read_yaml(path, remedy)
    return None


def load_config(run_dir: str | Path) -> DictConfig:
    """A trained run's ``config.yaml``, checked for what reading the run back needs (the
    dataset's task, the cell's name and units): :class:`RunFileError` naming the file and the
    key otherwise."""
    cfg = read_config(run_dir)
    path = Path(run_dir) / "config.yaml"
    if cfg is None or not path.is_file():
        raise RnnbenchError(f"{qname(run_dir)}: not a run directory (no config.yaml)")
    remedy = "running the run's command again rewrites it"
    for key, ok, what in (("dataset.task", lambda v: v in ("music", "speech"), "'music' or 'speech'"),
                          ("dataset.name", lambda v: isinstance(v, str) and v != "", "a name"),
                          ("cell.name", lambda v: isinstance(v, str) and v != "", "a cell name"),
                          ("cell.units", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                           "an integer >= 1")):
        try:
            value = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=True)
        except Exception as exc:  # (an interpolation that does not resolve)
            raise RunFileError(path, f"damaged ({key} cannot be resolved: {single_line(exc).splitlines()[0][:160]})",
                               remedy) from exc
        if not ok(value):
            raise RunFileError(path, f"damaged ({key} is {value!r}, expected {what})" if value is not None
                               else f"damaged (no {key})", remedy)
    return cfg


# What summary.json's keys hold (a value of another type is damage, named, never a crash later)
SUMMARY_INTS = {"units": 1, "params_recurrent": 0, "params_total": 0, "seed": -(2**63), "batch_size": 1,
                "best_epoch": 0, "epochs": 0, "updates": 0, "skipped_updates": 0}
SUMMARY_NUMBERS = ("lr", "weight_noise", "train_nll", "valid_nll", "test_nll", "wall_seconds", "eval_seconds")
SUMMARY_TEXTS = ("status", "stop_reason", "dataset", "task", "cell", "fingerprint")


def check_summary(summary: Any, path: str | Path) -> dict:
    """``summary`` if it looks like a run's summary.json, else :class:`RunFileError`."""
    if not isinstance(summary, dict):
        raise RunFileError(path, f"damaged (expected a JSON object, found {type(summary).__name__})", REWRITTEN)
    if not isinstance(summary.get("status"), str):
        raise RunFileError(path, "damaged (no 'status')", REWRITTEN)
    for key, value in summary.items():
        if key in SUMMARY_INTS:
            ok = value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= SUMMARY_INTS[key])
            what = f"an integer >= {SUMMARY_INTS[key]}"
        elif key in SUMMARY_NUMBERS:
            ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
            what = "a number"
        elif key in SUMMARY_TEXTS:
            ok = value is None or isinstance(value, str)
            what = "a string"
        else:
            continue
        if not ok:
            raise RunFileError(path, f"damaged ({key} is {single_line(repr(value))[:80]}, expected {what})", REWRITTEN)
    if summary["status"] in ("finished", "pruned"):
        for key in ("best_epoch", "valid_nll", "lr", "units", "dataset", "cell"):
            if summary.get(key) is None:
                raise RunFileError(path, f"damaged ({summary['status']} but no {key})", REWRITTEN)
    return summary


def read_summary(run_dir: str | Path) -> dict | None:
    """The run's summary.json, or ``None`` when it has none yet; :class:`RunFileError` (naming the
    file) when it is damaged: empty, truncated, not UTF-8, not JSON, or not a run's summary."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        return None
    return check_summary(read_json(path, REWRITTEN), path)


def load_summary(run_dir: str | Path) -> dict:
    summary = read_summary(run_dir)
    if summary is None:
        raise RnnbenchError(f"{run_dir}: no summary.json (the run has not finished an epoch)")
    return summary


def read_metrics(run_dir: str | Path, epochs: int | None = None):
    """The run's metrics.csv as a ``pandas.DataFrame`` (empty when there is none yet), checked:
    :class:`RunFileError` naming the file when it is empty, not text, cut short (a last line
    without its end or a row of too few fields), lacks a column of :data:`METRIC_COLUMNS`, holds a
    value that is not a number, or its epochs are not 1, 2, ...  With ``epochs`` (the summary's),
    fewer rows than that are an error too (metrics.csv is written before summary.json, so a run
    being trained is never behind)."""
    import pandas as pd

    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return pd.DataFrame()
    text = read_text(path, REWRITTEN)
    if not text.strip():
        raise RunFileError(path, "damaged (empty file)", REWRITTEN)
    if not text.endswith("\n"):
        raise RunFileError(path, "damaged (cut short: its last line has no end)", REWRITTEN)
    table = list(csv.reader(io.StringIO(text)))
    short = [i + 1 for i, row in enumerate(table) if len(row) != len(table[0])]
    if short:
        raise RunFileError(path, f"damaged (line {short[0]} has {len(table[short[0] - 1])} fields, the header "
                                 f"{len(table[0])})", REWRITTEN)
    try:
        df = pd.read_csv(io.StringIO(text))
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise RunFileError(path, f"damaged (not a CSV table: {str(exc).splitlines()[0][:160]})", REWRITTEN) from exc
    missing = [c for c in METRIC_COLUMNS if c not in df.columns]
    if missing:
        raise RunFileError(path, f"damaged (no column {', '.join(missing)})", REWRITTEN)
    for col in df.columns:
        if not pd.api.types.is_numeric_dtype(df[col]):
            try:
                df[col] = pd.to_numeric(df[col])
            except (ValueError, TypeError) as exc:
                raise RunFileError(path, f"damaged (column {col} holds a value that is not a number)", REWRITTEN) from exc
    header = table[0]
    for i, row in enumerate(table[1:], start=2):
        for col, cell in zip(header, row):
            if col in NONFINITE_ALLOWED or not cell.strip():
                continue  # (an empty cell is a split not evaluated that epoch)
            try:
                finite = math.isfinite(float(cell))
            except ValueError:
                continue  # (named below as not a number)
            if not finite:
                raise RunFileError(path, f"damaged (line {i}, epoch {row[0]!r}: {col} is {cell!r}, expected a "
                                         f"finite number)", REWRITTEN)
    if list(df["epoch"]) != list(range(1, len(df) + 1)):
        raise RunFileError(path, "damaged (its epochs are not 1, 2, 3, ...: a row is missing or garbled)", REWRITTEN)
    bad = [i for i in range(len(df) - 1) if "valid_nll" in df and not math.isfinite(float(df["valid_nll"].iloc[i]))
           and str(table[i + 1][header.index("valid_nll")]).strip()]
    if bad:  # (a non-finite validation NLL ends a run: only its last epoch can have one)
        raise RunFileError(path, f"damaged (line {bad[0] + 2}, epoch {bad[0] + 1}: valid_nll is "
                                 f"{table[bad[0] + 1][header.index('valid_nll')]!r} but the run went on; a non-finite "
                                 f"validation NLL ends a run, so only its last epoch can have one)", REWRITTEN)
    if epochs is not None and len(df) < int(epochs):
        raise RunFileError(path, f"damaged ({len(df)} epochs, summary.json says {int(epochs)})", REWRITTEN)
    return df


CHECKPOINT_KEYS = {
    "last.pt": ("model", "optimizer", "shuffle_rng", "noise_rng", "state", "history", "fingerprint"),
    "last.prev.pt": ("model", "optimizer", "shuffle_rng", "noise_rng", "state", "history", "fingerprint"),
    "best.pt": ("model", "epoch"),
    "best.next.pt": ("model", "epoch"),
}


def read_checkpoint(path: str | Path, map_location=None, keys: Iterable[str] | None = None,
                    remedy: str | None = RETRAIN) -> dict:
    """A checkpoint (``last.pt``, ``last.prev.pt``, ``best.pt``), checked: :class:`RunFileError`
    naming the file when it is empty, truncated, garbled, or lacks a key it must hold."""
    path = Path(path)
    ckpt = read_torch(path, map_location=map_location, remedy=remedy)
    if not isinstance(ckpt, dict):
        raise RunFileError(path, f"damaged (expected a checkpoint dict, found {type(ckpt).__name__})", remedy)
    need = CHECKPOINT_KEYS.get(path.name, ()) if keys is None else tuple(keys)
    missing = [k for k in need if k not in ckpt]
    if missing:
        raise RunFileError(path, f"damaged (no {', '.join(missing)})", remedy)
    if "model" in ckpt and not isinstance(ckpt["model"], Mapping):
        raise RunFileError(path, "damaged (its 'model' is not a state dict)", remedy)
    return ckpt


def load_model(run_dir: str | Path, which: str = "best", corpus=None):
    """The run's model with the weights of ``best.pt`` (or ``last.pt``), in eval mode.

    The model's input/output sizes and head come from the run's corpus; pass ``corpus`` to
    avoid loading it again.
    """
    from .data import load_dataset
    from .model import SequenceModel

    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    ckpt_path = run_dir / f"{which}.pt"
    if not ckpt_path.is_file():
        raise RnnbenchError(f"{qname(ckpt_path)}: checkpoint not found")
    if corpus is None:
        corpus = load_dataset(cfg.dataset, cfg.get("data_root"))
    import torch

    from .memory import check_fits

    with torch.device("meta"):  # (counts the parameters without allocating them)
        params = sum(p.numel() for p in SequenceModel.for_corpus(cfg.cell, int(cfg.cell.units), corpus).parameters())
    check_fits(8 * params, f"{qname(run_dir / 'config.yaml')}: cell.units={int(cfg.cell.units)} ({cfg.cell.name}: "
                           f"{params:,} parameters, with the checkpoint's copy)",
               "this run's model cannot be loaded on this machine")
    ckpt = read_checkpoint(ckpt_path, map_location="cpu", keys=("model",))  # (after the check: it allocates)
    model = SequenceModel.for_corpus(cfg.cell, int(cfg.cell.units), corpus)
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise RunFileError(ckpt_path, f"its weights do not fit the run's {cfg.cell.name}-{int(cfg.cell.units)} "
                                      f"model ({str(exc).splitlines()[0][:160]})", RETRAIN) from exc
    model.eval()
    return cfg, model


# --------------------------------------------------------------------------- result lines

def _num(x: Any) -> str:
    if x is None:
        return "-"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(v):
        return str(v)
    return f"{v:.3f}" if abs(v) < 1e6 else f"{v:.4g}"


def format_lr(lr) -> str:
    """A learning rate with 3 significant digits, trailing zeros kept: 0.00152, 0.00130, 2.64e-05."""
    import pandas as pd

    return "" if lr is None or pd.isna(lr) else f"{float(lr):#.3g}"


def run_label(summary: Mapping[str, Any]) -> str:
    """How a result line names a run: dataset/cell, learning rate, and seed when not 0."""
    label = f"{summary.get('dataset')}/{summary.get('cell')}"
    if summary.get("lr") is not None:
        try:
            label += f" lr {float(summary['lr']):.3g}"
        except (TypeError, ValueError):
            label += f" lr {summary['lr']}"
    if summary.get("seed") not in (None, 0):
        label += f" seed {summary['seed']}"
    return label


def result_line(summary: Mapping[str, Any], run_dir: str | Path) -> str:
    """One line for people about a run's result, rounded (``valid 9.180``; the files keep full
    precision): ``jsb/gru lr 0.00123: finished (early_stopping), best epoch 42: train 8.012,
    valid 8.431, test 8.467  [runs/...]``."""
    status, reason = summary.get("status"), summary.get("stop_reason")
    head = f"{run_label(summary)}: {status}" + (f" ({reason})" if reason else "")
    if status == "skipped":
        return f"{head}  [{run_dir}]"
    return (f"{head}, best epoch {summary.get('best_epoch')}: train {_num(summary.get('train_nll'))}, "
            f"valid {_num(summary.get('valid_nll'))}, test {_num(summary.get('test_nll'))}  [{run_dir}]")


# --------------------------------------------------------------------------- the configuration a run holds

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


# --------------------------------------------------------------------------- writing: the trainer's side

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


def _metrics_text(history: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow(row)
    return buf.getvalue()


def _write_metrics(run_dir: Path, history: list[dict]) -> None:
    atomic_write_text(run_dir / "metrics.csv", _metrics_text(history))


class Run:
    """One run directory: its configuration, progress, history and the files it writes.

    The training loops (:func:`rnnbench.train.train` for one model, :func:`rnnbench.stack.train_stack` for
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
                (self.run_dir / n).exists() for n in RUN_FILES):
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
            self._settle_best()
            log.info("resuming %s from epoch %d (%s)", self.run_dir, self.state.epoch, self.state.status)
            return ckpt
        if last.is_file() or prev.is_file():
            for name in ("last.pt", "last.prev.pt", "last.pt.damaged", "best.pt", "best.next.pt", "metrics.csv",
                         "summary.json"):
                (self.run_dir / name).unlink(missing_ok=True)
        return None

    def _settle_best(self) -> None:
        """A ``best.next.pt`` left by a run killed between a new best epoch's two writes: renamed to
        ``best.pt`` if the checkpoint resumed from holds that epoch as the best (the kill came after
        its ``last.pt``), else removed (that epoch is not in the checkpoint: it is trained again, or
        not at all under a lower ``train.max_epochs``, and ``best.pt`` still holds the checkpoint's
        best).  Nothing is lost either way: the weights kept are those of the resumed best epoch."""
        path = self.run_dir / "best.next.pt"
        if not path.is_file():
            return
        try:
            epoch = int(read_checkpoint(path)["epoch"])
        except RunFileError as exc:  # (killed mid-write is not possible, atomic; damage is: it goes like a stale one)
            log.warning("%s: %s; removed", exc.path, exc.reason)
            path.unlink()
            return
        if epoch == int(self.state.best_epoch) and epoch <= self.state.epoch:
            os.replace(path, self.run_dir / "best.pt")
            log.info("%s: the weights of best epoch %d, written before a stop, are best.pt now", path, epoch)
        else:
            path.unlink()
            log.info("%s: the weights of epoch %d, which the checkpoint of epoch %d does not hold, removed", path,
                     epoch, self.state.epoch)

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
        reopens = status == "finished" and self._budget_allows_more(reason, epochs)
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

    def _budget_allows_more(self, reason: str | None, epochs: int) -> bool:
        """Whether a run that ended on a budget after ``epochs`` epochs goes on under this
        configuration: one stopped by the epoch cap when the cap is now higher, one stopped by the
        time budget (a new session brings new time) while the cap leaves epochs to train.  A run
        that would train nothing more is kept as it ended: a rerun at the same cap scores nothing
        again and rewrites no file."""
        return reason in ("max_epochs", "time_budget") and int(self.tcfg.max_epochs) > epochs

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
        import torch

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
        if self.state.status == "running" or (self.state.status == "finished" and self._budget_allows_more(
                self.state.stop_reason, self.state.epoch)):
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
    def diverged(self, seconds: float, grad_norms: Sequence[float] = (), skipped: int = 0) -> None:
        """The epoch ended early on a non-finite loss or gradient: the run is over.  ``grad_norms``:
        the gradient norms (before clipping) of the epoch's updates so far, the last one included;
        ``skipped``: the updates it skipped for a non-finite gradient before it ended."""
        state = self.state
        state.epoch += 1
        state.wall_seconds += seconds
        state.status, state.stop_reason = "diverged", "non-finite loss or gradient"
        log.warning("%s  epoch %d: non-finite loss or gradient, run marked diverged", self.member_label(), state.epoch)
        self.history.append({"epoch": state.epoch, "updates": state.updates,
                             "wall_seconds": round(state.wall_seconds, 3), "lr": float(self.cfg.optim.lr),
                             "skipped_updates": skipped, **self.norm_stats(grad_norms)})
        state.skipped_updates += skipped

    def norm_stats(self, grad_norms: Sequence[float]) -> dict:
        """An epoch's gradient norms (before clipping) as metrics.csv records them: the median and the
        largest finite norm, and how many updates the clipping threshold shortened."""
        finite = sorted(x for x in grad_norms if math.isfinite(x))
        if not finite:
            return {}
        n, clip = len(finite), self.tcfg.get("clip_norm")
        median = finite[n // 2] if n % 2 else 0.5 * (finite[n // 2 - 1] + finite[n // 2])
        return {"grad_norm_median": float(f"{median:.6g}"), "grad_norm_max": float(f"{finite[-1]:.6g}"),
                "clipped_updates": sum(x > float(clip) for x in finite) if clip else 0}

    def end_epoch(self, seconds: float, train_loss_noisy: float, skipped: int, nll: Mapping[str, float],
                  best_model, eval_seconds: float = 0.0, grad_norms: Sequence[float] = ()) -> dict | None:
        """Record a completed epoch.  ``nll`` holds the splits evaluated this epoch (validation
        always); ``best_model()`` gives the weights to keep if it is the best so far, which are then
        returned (``None`` otherwise); ``grad_norms``: the epoch's gradient norms before clipping."""
        state = self.state
        state.epoch += 1
        state.wall_seconds += seconds
        state.eval_seconds += eval_seconds
        row = {"epoch": state.epoch, "updates": state.updates, "wall_seconds": round(state.wall_seconds, 3),
               "train_loss_noisy": train_loss_noisy, "lr": float(self.cfg.optim.lr), "skipped_updates": skipped,
               "eval_seconds": round(state.eval_seconds, 3), **self.norm_stats(grad_norms)}
        state.skipped_updates += skipped
        if skipped:
            log.warning("%s epoch %d: %d updates skipped (non-finite gradient)", self.member_label(), state.epoch,
                        skipped)
        for s in SPLITS:
            row[f"{s}_nll"] = nll.get(s)
        self.history.append(row)
        self.extra["padding_waste_eval"] = self.eval_waste
        kept = None
        if not math.isfinite(row["valid_nll"]):
            state.status, state.stop_reason = "diverged", "non-finite validation NLL"
        elif row["valid_nll"] < state.best_valid:
            state.best_valid, state.best_epoch, state.bad_epochs = row["valid_nll"], state.epoch, 0
            kept = best_model()
            # best.pt once this epoch's last.pt is written (persist): the two never describe different epochs
            atomic_torch_save(self.run_dir / "best.next.pt", {"model": kept, "epoch": state.epoch,
                                                              "cell": self.cfg.cell.name,
                                                              "units": int(self.cfg.cell.units)})
        else:
            state.bad_epochs += 1
            if state.bad_epochs >= int(self.tcfg.patience):
                state.status, state.stop_reason = "finished", "early_stopping"
        log.info("%s", self.epoch_line(seconds))
        return kept

    def epoch_line(self, seconds: float) -> str:
        """The line an epoch ends with: ``epoch i/N``, its seconds and updates, the validation NLL
        (``new best``, or the best so far and the epochs since), the training NLL when it was
        computed, the run's elapsed time and the most it may still take."""
        state, row = self.state, self.history[-1]
        max_epochs = int(self.tcfg.max_epochs)
        valid = row["valid_nll"]
        if not math.isfinite(valid):
            judged = "(not finite: the run is over)"
        elif state.best_epoch == state.epoch:
            judged = "new best"
        else:
            judged = (f"(best {state.best_valid:.3f} at epoch {state.best_epoch}; {state.bad_epochs} of "
                      f"{int(self.tcfg.patience)} epochs without a better one)")
        train = f"  train {row['train_nll']:.3f}" if row.get("train_nll") is not None else ""
        elapsed = state.wall_seconds + state.eval_seconds
        if self.running and state.epoch < max_epochs:
            budget = (float(self.tcfg.max_minutes) * 60 - (time.perf_counter() - self.session_start)
                      if self.tcfg.get("max_minutes") else None)
            left = time_left(elapsed, state.epoch, max_epochs - state.epoch, budget)
            when = f"elapsed {duration(elapsed)}, at most ~{duration(left)} left"
        else:
            when = f"elapsed {duration(elapsed)}, no epoch left"
        return (f"{self.member_label()}  epoch {state.epoch}/{max_epochs}  {seconds:.1f} s  updates {state.updates}  "
                f"valid {valid:.3f} {judged}{train}  |  {when}")

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
        return [s for s in SPLITS if row.get(f"{s}_nll") is None]

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
        """Write metrics.csv, last.pt (``payload``: model, optimizer and RNG states), then the epoch's
        new best weights as best.pt (written as best.next.pt by :meth:`end_epoch`), then summary.json."""
        _write_metrics(self.run_dir, self.history)
        atomic_torch_save(self.run_dir / "last.pt", {
            **payload, "state": vars(self.state).copy(), "history": self.history, "fingerprint": self.fingerprint,
            "extra": self.extra,
        }, keep_previous="last.prev.pt")
        self.promote_best()
        atomic_write_json(self.run_dir / "summary.json", self.summary() if result is None else result)

    def promote_best(self) -> None:
        """best.next.pt -> best.pt (atomic rename), once the epoch it holds has its last.pt."""
        path = self.run_dir / "best.next.pt"
        if path.is_file():
            try:
                os.replace(path, self.run_dir / "best.pt")
            except OSError as exc:
                raise WriteError(self.run_dir / "best.pt", exc) from exc

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
