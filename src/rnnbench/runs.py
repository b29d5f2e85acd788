"""Reading a run directory back: its configuration, summary, metrics and trained model.

Every reader checks what it reads: a damaged file (truncated, empty, random bytes, not what it
should hold) raises :class:`~rnnbench.errors.RunFileError`, whose message names the file and
what to do, never a bare ``JSONDecodeError`` or ``PytorchStreamReader`` error.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping

from omegaconf import DictConfig, OmegaConf

from .errors import RnnbenchError, RunFileError, qname, single_line
from .fileio import read_json, read_text, read_torch

# The files a run writes (besides the lock file .lock and Hydra's .hydra/ and <job>.log).
RUN_FILES = ("config.yaml", "metrics.csv", "summary.json", "best.pt", "last.pt", "last.prev.pt")
# The columns metrics.csv always has (later ones were added over time; older runs lack them).
METRIC_COLUMNS = ("epoch", "updates", "wall_seconds", "train_nll", "valid_nll", "test_nll")

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
    from .fileio import FolderLock

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


# --------------------------------------------------------------------------- files

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
    import csv
    import io

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
