"""Reading a run directory back: its configuration, summary, metrics and trained model."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from .errors import RnnbenchError
from .model import SequenceModel


def load_config(run_dir: str | Path) -> DictConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise RnnbenchError(f"{run_dir}: not a run directory (no config.yaml)")
    return OmegaConf.load(path)


def read_summary(run_dir: str | Path) -> dict | None:
    """The run's summary.json, or ``None`` when it has none yet."""
    path = Path(run_dir) / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def load_summary(run_dir: str | Path) -> dict:
    summary = read_summary(run_dir)
    if summary is None:
        raise RnnbenchError(f"{run_dir}: no summary.json (the run has not finished an epoch)")
    return summary


def load_model(run_dir: str | Path, which: str = "best", corpus=None) -> tuple[DictConfig, SequenceModel]:
    """The run's model with the weights of ``best.pt`` (or ``last.pt``), in eval mode.

    The model's input/output sizes and head come from the run's corpus; pass ``corpus`` to
    avoid loading it again.
    """
    from .data import load_dataset

    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    ckpt_path = run_dir / f"{which}.pt"
    if not ckpt_path.is_file():
        raise RnnbenchError(f"{ckpt_path}: checkpoint not found")
    if corpus is None:
        corpus = load_dataset(cfg.dataset, cfg.get("data_root"))
    model = SequenceModel.for_corpus(cfg.cell.name, int(cfg.cell.units), corpus)
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return cfg, model
