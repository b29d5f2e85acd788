"""The one thing every data source hands to the trainer: a :class:`Corpus`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Union

import numpy as np

from ..errors import ConfigError

SPLITS = ("train", "valid", "test")

# A sequence is either one array of frames ``(T, D)`` -- next-step prediction, the input at
# step t being frame t-1 -- or a pair ``(inputs (T, D_in), targets (T, D_out))``.
Item = Union[np.ndarray, "tuple[np.ndarray, np.ndarray]"]


def seq_len(item: Item) -> int:
    return len(item[0]) if isinstance(item, tuple) else len(item)


@dataclass
class Corpus:
    """Train/valid/test sequences and what the model needs to know about them."""

    name: str
    splits: dict[str, list[Item]]
    task: str = "music"
    input_size: int = 88
    output_size: int = 88
    head: str = "bernoulli"
    head_kwargs: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None

    def __getitem__(self, split: str) -> list[Item]:
        if split not in self.splits:
            raise KeyError(f"unknown split {split!r}; expected one of {SPLITS}")
        return self.splits[split]

    def lengths(self, split: str) -> list[int]:
        return [seq_len(s) for s in self.splits[split]]

    def stats(self) -> list[dict]:
        """Per split: sequences, frames (= predicted steps), shortest and longest sequence."""
        rows = []
        for split in SPLITS:
            lengths = np.array(self.lengths(split))
            rows.append(dict(dataset=self.name, split=split, sequences=len(lengths), frames=int(lengths.sum()),
                             min_len=int(lengths.min()) if len(lengths) else 0,
                             max_len=int(lengths.max()) if len(lengths) else 0))
        return rows


# kind -> builder(dataset config, data root) -> Corpus.  ``dataset.kind`` in the config picks one.
DATASET_KINDS: dict[str, Callable[[Mapping, Any], Corpus]] = {}


def register_dataset_kind(kind: str):
    """Decorator: make a builder usable as ``dataset.kind=<kind>`` in every experiment."""

    def deco(fn):
        if kind in DATASET_KINDS:
            raise ValueError(f"dataset kind {kind!r} is already registered")
        DATASET_KINDS[kind] = fn
        return fn

    return deco


def load_dataset(dataset_cfg: Mapping, data_root=None) -> Corpus:
    """Build the corpus a ``dataset`` config group describes."""
    kind = dataset_cfg.get("kind", "benchmark")
    if kind not in DATASET_KINDS:
        raise ConfigError(f"config value dataset.kind={kind!r} is invalid: expected one of {sorted(DATASET_KINDS)}")
    return DATASET_KINDS[kind](dataset_cfg, data_root)
