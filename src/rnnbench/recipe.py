"""The pieces the training loop is built from: splits and batches, random streams, device, RMSProp.

The training loop (:mod:`rnnbench.stack`) imports them from here:

* :class:`Splits`: the three splits of a corpus, their lengths and the (bucketed) evaluation batches;
* :func:`make_generators`: the two random streams of a run (batch order, weight noise);
* :func:`resolve_device`: ``train.device`` as a ``torch.device``;
* :func:`make_optimizer`, :func:`rmsprop_state_dict`: RMSProp with the run's ``optim`` settings, and
  the optimizer state a run's ``last.pt`` holds, built without an optimizer object.
"""

from __future__ import annotations

import functools
import inspect
import os
from pathlib import Path
from typing import Mapping

import torch
from omegaconf import DictConfig

from .data import batch_indices, load_dataset, padding_waste
from .errors import ConfigError
from .runs import SPLITS


# --------------------------------------------------------------------------- data

class Splits:
    """A corpus's three splits, their lengths and the (bucketed) evaluation batches."""

    NAMES = SPLITS

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


STOP_FILE_ENV = "RNNBENCH_STOP_FILE"


def stop_file() -> Path | None:
    """The stop file, if ``RNNBENCH_STOP_FILE`` names one and it exists now: training stops at the
    end of the epoch under way (each run's ``last.pt`` written), and no run starts while it is
    there.  ``scripts/study.py`` sets it to ``<runs>/STOP`` for its commands."""
    name = os.environ.get(STOP_FILE_ENV)
    if not name:
        return None
    path = Path(name)
    return path if path.exists() else None


def make_generators(seed: int) -> tuple[torch.Generator, torch.Generator]:
    """The two random streams of a run: batch order (seed + 1) and weight noise (seed + 2).  The
    batch order's seed is ``train.order_seed`` where that is set (seeds sharing one data order)."""
    return torch.Generator().manual_seed(int(seed) + 1), torch.Generator().manual_seed(int(seed) + 2)


# --------------------------------------------------------------------------- device

def resolve_device(name: str | None) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# --------------------------------------------------------------------------- optimizer

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
