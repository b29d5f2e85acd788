"""Padded, masked, time-major batches for next-step prediction.

Every frame of a sequence is a target.  The input at step ``t`` is frame ``t - 1``,
and the input at step 0 is an all-zero "start" frame, so a sequence of ``T`` frames
contributes exactly ``T`` predictions and the frame counts of a split are the
counts of the corpus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from .corpus import Item, seq_len


@dataclass
class Batch:
    inputs: torch.Tensor  # (T, B, D) float
    targets: torch.Tensor  # (T, B, D) float
    mask: torch.Tensor  # (T, B) bool, True on real frames
    lengths: torch.Tensor  # (B,) long
    index: torch.Tensor  # (B,) position of each sequence in its split

    @property
    def frames(self) -> int:
        return int(self.lengths.sum())

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(*(t.to(device) for t in (self.inputs, self.targets, self.mask, self.lengths, self.index)))


def _pad(arrays: Sequence[np.ndarray], T: int) -> torch.Tensor:
    out = torch.zeros(T, len(arrays), arrays[0].shape[1])
    for b, a in enumerate(arrays):
        out[: len(a), b] = torch.from_numpy(np.asarray(a, dtype=np.float32))
    return out


def make_batch(seqs: Sequence[Item], index: Sequence[int] | None = None) -> Batch:
    """Pad sequences into one time-major batch.

    Each item is an array ``(T_i, D)`` (next-step prediction: the input at step t is frame
    t-1, a zero frame at t=0) or a pair ``(inputs (T_i, D_in), targets (T_i, D_out))``.
    """
    lengths = torch.tensor([seq_len(s) for s in seqs], dtype=torch.long)
    T, B = int(lengths.max()), len(seqs)
    if isinstance(seqs[0], tuple):
        inputs = _pad([s[0] for s in seqs], T)
        targets = _pad([s[1] for s in seqs], T)
    else:
        targets = _pad(seqs, T)
        inputs = torch.zeros_like(targets)
        inputs[1:] = targets[:-1]
    mask = torch.arange(T).unsqueeze(1) < lengths.unsqueeze(0)
    idx = torch.as_tensor(list(range(B)) if index is None else list(index), dtype=torch.long)
    return Batch(inputs, targets, mask, lengths, idx)


def batch_indices(
    lengths: Sequence[int],
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None = None,
    bucket: bool = True,
    max_frames: int | None = None,
    max_waste: float | None = None,
) -> list[list[int]]:
    """Group sequence indices into batches.

    With ``bucket`` the sequences are sorted by length before grouping (much less
    padding); with ``shuffle`` the order inside equal lengths and the order of the
    batches are random (drawn from ``generator``).  ``max_frames`` caps
    ``batch rows x longest sequence`` of each batch, and ``max_waste`` the fraction of padded
    frames in it (both used for evaluation, where a batch holds as many sequences as fit).
    """
    n = len(lengths)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    lengths = np.asarray(lengths)
    if shuffle:
        order = torch.randperm(n, generator=generator).numpy()
    else:
        order = np.arange(n)
    if bucket:
        order = order[np.argsort(lengths[order], kind="stable")]
    batches: list[list[int]] = []
    cur: list[int] = []
    longest = real = 0
    for i in order:
        n = int(lengths[i])
        grown = max(longest, n)
        padded = grown * (len(cur) + 1)
        if cur and (len(cur) >= batch_size or (max_frames and padded > max_frames)
                    or (max_waste is not None and 1 - (real + n) / padded > max_waste)):
            batches.append(cur)
            cur, grown, real = [], n, 0
        cur.append(int(i))
        longest, real = grown, real + n
    if cur:
        batches.append(cur)
    if shuffle and bucket:
        perm = torch.randperm(len(batches), generator=generator).tolist()
        batches = [batches[p] for p in perm]
    return batches


def padding_waste(lengths: Sequence[int], batches: list[list[int]]) -> float:
    """Fraction of computed frames that are padding."""
    real = sum(lengths[i] for b in batches for i in b)
    total = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return 1.0 - real / total if total else 0.0


def iterate(seqs: Sequence[np.ndarray], batches: list[list[int]]) -> Iterator[Batch]:
    for b in batches:
        yield make_batch([seqs[i] for i in b], b)
