"""Polyphonic music as 88-key piano rolls: loading, validation and statistics.

A piano roll is a ``uint8`` array of shape ``(T, 88)``; column ``j`` is MIDI note ``21 + j``
and 1 means the key sounds at that time step.  Two on-disk formats are read:

* ``mat``: MATLAB v5 files with keys ``traindata``, ``validdata``, ``testdata``,
  each a 1xN object array of ``(T, 88)`` arrays (the reference copy's format);
* ``pickle``: Boulanger-Lewandowski's original pickles, a dict with keys
  ``train``, ``valid``, ``test``, each a list of sequences, each a list of steps,
  each a list (or tuple) of the MIDI note numbers sounding at that step.
"""

from __future__ import annotations

import os
import pickle
import zipfile
import zlib
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import DataError, qname
from .corpus import SPLITS, Corpus, register_dataset_kind
from .sources import MUSIC_FILES, locate

N_KEYS = 88
LOWEST_MIDI = 21  # A0
MUSIC_DATASETS = tuple(MUSIC_FILES)


class MusicCorpus(Corpus):
    """Piano rolls: 88 inputs, 88 Bernoulli outputs, next-step prediction."""

    def stats(self) -> list[dict]:
        """Per split: sequences, frames, mean notes per frame, shortest and longest sequence."""
        rows = super().stats()
        for row in rows:
            notes = sum(int(s.sum()) for s in self.splits[row["split"]])
            row["notes_per_frame"] = notes / max(row["frames"], 1)
        return rows


def _check_roll(arr: np.ndarray, where: str) -> np.ndarray:
    if not isinstance(arr, np.ndarray) or arr.ndim != 2 or arr.shape[1] != N_KEYS:
        shape = getattr(arr, "shape", type(arr).__name__)
        raise DataError(f"{where}: expected a (T, {N_KEYS}) piano roll, found {shape}")
    if arr.shape[0] < 1:
        raise DataError(f"{where}: empty sequence (0 time steps)")
    if arr.dtype != np.uint8:
        if not np.isin(arr, (0, 1)).all():
            raise DataError(f"{where}: piano-roll values must be 0 or 1")
        arr = arr.astype(np.uint8)
    elif arr.max() > 1:
        raise DataError(f"{where}: piano-roll values must be 0 or 1, found {int(arr.max())}")
    return np.ascontiguousarray(arr)


def _mat_unpacked_bytes(path: Path) -> int:
    """Bytes a MATLAB v5 file holds once its compressed variables are inflated, counted by
    streaming zlib without keeping the output (a few kilobytes of zeros can inflate to
    gigabytes, which ``scipy.io.loadmat`` would allocate); 0 when it is not a v5 file (scipy
    then names the problem)."""
    import struct
    import zlib

    total = 0
    with open(path, "rb") as f:
        head = f.read(128)
        if len(head) < 128 or head[126:128] not in (b"IM", b"MI"):
            return 0
        end = "<" if head[126:128] == b"IM" else ">"
        while True:
            tag = f.read(8)
            if len(tag) < 8:
                return total
            kind, size = struct.unpack(end + "II", tag)
            if kind & 0xFFFF0000:  # (a small data element: tag and data in 8 bytes)
                continue
            if kind != 15:  # miCOMPRESSED
                total += size
                f.seek(size + (-size % 8), os.SEEK_CUR)
                continue
            z, left = zlib.decompressobj(), size
            while left > 0:
                chunk = f.read(min(left, 1 << 16))
                if not chunk:
                    return total
                left -= len(chunk)
                data = z.decompress(chunk, 1 << 20)
                total += len(data)
                while z.unconsumed_tail:
                    total += len(z.decompress(z.unconsumed_tail, 1 << 20))
                    if total > 1 << 46:
                        return total
            if z.eof is False:
                return total


def load_mat(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """Read a ``.mat`` piano-roll file; raise :class:`DataError` naming the file on any problem
    (also before loading one that would inflate beyond the memory available)."""
    import scipy.io

    from ..errors import ConfigError
    from ..memory import check_fits

    path = Path(path)
    try:
        unpacked = _mat_unpacked_bytes(path)
    except (OSError, zlib.error) as exc:
        raise DataError(f"{qname(path)}: not a readable MATLAB v5 piano-roll file ({type(exc).__name__}: {exc}). "
                        f"The file may be truncated or of another format; delete it and fetch it again.") from exc
    try:  # (scipy holds the inflated data and its arrays at once; the rolls are then copied as uint8)
        check_fits(3 * unpacked, f"{qname(path)}: its variables ({unpacked:,} bytes once decompressed)",
                   "it is far larger than a piano-roll corpus; check the file")
    except ConfigError as exc:
        raise DataError(str(exc)) from None
    try:
        mat = scipy.io.loadmat(str(path))
    except (ValueError, TypeError, OSError, EOFError, zipfile.BadZipFile, NotImplementedError) as exc:
        raise DataError(
            f"{path}: not a readable MATLAB v5 piano-roll file ({type(exc).__name__}: {exc}). "
            f"The file may be truncated or of another format; delete it and fetch it again."
        ) from exc
    splits = {}
    for split in SPLITS:
        key = f"{split}data"
        if key not in mat:
            found = sorted(k for k in mat if not k.startswith("__"))
            raise DataError(f"{path}: missing variable {key!r} (found {found}); expected traindata/validdata/testdata")
        arr = mat[key]
        if arr.dtype != object:
            raise DataError(f"{path}: {key} should be a cell array of (T, {N_KEYS}) rolls, found {arr.dtype} {arr.shape}")
        items = arr.ravel()
        splits[split] = [_check_roll(a, f"{path}: {key}[{i}]") for i, a in enumerate(items)]
    return splits


def notes_to_roll(steps: Sequence[Sequence[int]], where: str = "sequence") -> np.ndarray:
    """Turn a list of per-step MIDI note lists into a ``(T, 88)`` uint8 roll; :class:`DataError`
    naming ``where`` and the step when it is not a list of lists of whole MIDI note numbers."""
    if not isinstance(steps, (list, tuple)):
        raise DataError(f"{where}: expected a sequence as a list of time steps, found {type(steps).__name__}")
    roll = np.zeros((len(steps), N_KEYS), dtype=np.uint8)
    for t, notes in enumerate(steps):
        if not isinstance(notes, (list, tuple, set, frozenset)):
            raise DataError(f"{where}, step {t}: expected a list of MIDI note numbers, found {type(notes).__name__} "
                            f"{notes!r:.40}")
        for n in notes:
            if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, float, np.integer, np.floating)) \
                    or not float(n).is_integer():
                raise DataError(f"{where}, step {t}: MIDI note {n!r:.40} is not a whole MIDI note number (21..108)")
            j = int(n) - LOWEST_MIDI
            if not 0 <= j < N_KEYS:
                raise DataError(f"{where}, step {t}: MIDI note {n} is outside the 88-key range 21..108")
            roll[t, j] = 1
    return roll


def roll_to_notes(roll: np.ndarray) -> list[list[int]]:
    """Inverse of :func:`notes_to_roll`."""
    return [[int(j) + LOWEST_MIDI for j in np.flatnonzero(row)] for row in roll]


def load_pickle(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """Read one of Boulanger-Lewandowski's original pickles (Python 2 pickles are read too)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError) as exc:
        raise DataError(
            f"{path}: not a readable piano-roll pickle ({type(exc).__name__}: {exc}). "
            f"The file may be truncated or of another format; delete it and fetch it again."
        ) from exc
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict with keys train/valid/test, found {type(obj).__name__}")
    splits = {}
    for split in SPLITS:
        if split not in obj:
            raise DataError(f"{path}: missing key {split!r} (found {sorted(map(str, obj))})")
        seqs = obj[split]
        if not isinstance(seqs, (list, tuple)):
            raise DataError(f"{path}: {split} should be a list of sequences, found {type(seqs).__name__}")
        splits[split] = [
            _check_roll(notes_to_roll(s, f"{path}: {split}[{i}]"), f"{path}: {split}[{i}]") for i, s in enumerate(seqs)
        ]
    return splits


LOADERS = {"mat": load_mat, "pickle": load_pickle}


def load_music(
    name: str,
    root: str | os.PathLike | None = None,
    fmt: str = "mat",
    download: bool = True,
    path: str | os.PathLike | None = None,
) -> MusicCorpus:
    """Load a polyphonic benchmark by name (``jsb``, ``nottingham``, ``musedata``, ``piano``).

    ``path`` bypasses the lookup and reads that file (no checksum: it is the user's own file).
    """
    if fmt not in LOADERS:
        raise DataError(f"unknown music format {fmt!r}; expected one of {sorted(LOADERS)}")
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise DataError(f"{path}: file not found (dataset {name!r}, format {fmt!r})")
    else:
        if name not in MUSIC_FILES:
            raise DataError(
                f"unknown music dataset {name!r}; expected one of {sorted(MUSIC_FILES)} or a path to a file"
            )
        path = locate(MUSIC_FILES[name][fmt], root=root, download_missing=download)
    return MusicCorpus(name=name, splits=LOADERS[fmt](path), source=path)


@register_dataset_kind("benchmark")
def _benchmark_from_config(dataset: Mapping, data_root=None) -> MusicCorpus:
    """``dataset.kind=benchmark``: one of the four piano-roll benchmarks (or a file of that format)."""
    return load_music(dataset["name"], root=data_root, fmt=dataset.get("format", "mat"),
                      download=bool(dataset.get("download", True)), path=dataset.get("path"))
