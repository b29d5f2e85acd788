"""The one thing every data source hands to the trainer: a :class:`Corpus`."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, Union

import numpy as np

from ..errors import ConfigError, DataError, qname, single_line

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
    # files (or pieces) of the source left out, each {"file": <path relative to the folder or
    # corpus root>, "reason": <one line>}; empty when none (and for the fixed benchmarks)
    skipped: list[dict] = field(default_factory=list)

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


def dataset_builder(dataset_cfg: Mapping) -> Callable[[Mapping, Any], Corpus]:
    """The builder of a ``dataset`` config: ``dataset._target_`` (an import path, for a corpus of
    one's own named in a config file) if given, else the registered ``dataset.kind``."""
    target = dataset_cfg.get("_target_")
    if target is not None:
        from ..targets import import_target

        where = f"dataset._target_={target!r} (dataset/{dataset_cfg.get('name')}.yaml)"
        fn = import_target(target, where, "a function (dataset_cfg, data_root) -> rnnbench.data.Corpus")
        if not callable(fn) or isinstance(fn, type) and issubclass(fn, Corpus):
            raise ConfigError(f"{where}: {target!r} is a {type(fn).__name__}; expected a function "
                              f"(dataset_cfg, data_root) -> rnnbench.data.Corpus")
        return fn
    kind = dataset_cfg.get("kind", "benchmark")
    if kind not in DATASET_KINDS:
        raise ConfigError(f"config value dataset.kind={kind!r} is invalid: expected one of {sorted(DATASET_KINDS)}")
    return DATASET_KINDS[kind]


def load_dataset(dataset_cfg: Mapping, data_root=None) -> Corpus:
    """Build the corpus a ``dataset`` config group describes."""
    corpus = dataset_builder(dataset_cfg)(dataset_cfg, data_root)
    if not isinstance(corpus, Corpus):  # (a builder of one's own: named, not a traceback later)
        raise ConfigError(f"dataset._target_={dataset_cfg.get('_target_')!r} returned a {type(corpus).__name__}; "
                          f"expected an rnnbench.data.Corpus")
    return corpus


# --------------------------------------------------------------------------- skipped files

def log_skipped(logger: logging.Logger, label: str, skipped: Sequence[Mapping], shown: int = 5) -> None:
    """One WARNING line naming how many files (or pieces) were skipped and the first few, with reasons.

    Called every time a corpus is loaded (a cache hit included), so that every run's log says it.
    """
    if not skipped:
        return
    items = [f"{qname(s['file'])} ({single_line(s['reason'])})" for s in skipped[:shown]]
    more = f" and {len(skipped) - shown} more" if len(skipped) > shown else ""
    logger.warning("%s: %d file(s) skipped: %s%s (all listed in the corpus's skipped list)", label,
                   len(skipped), "; ".join(items), more)


# --------------------------------------------------------------------------- group-aware splits

SPLIT_GROUP_PRESETS = {
    "none": "every file (or piece) is its own group",
    "stem": "the file name without its folders and suffix (SF1/100001.wav -> 100001; tunes.abc#2 -> tunes#2)",
    "folder": "the first folder below the corpus folder (SF1/100001.wav -> SF1); a file at the top is its own group",
    "auto": "stem when two files share a stem (a parallel corpus, or one piece in two formats), else none",
}


def _stem_key(name: str) -> str:
    path, sep, piece = name.partition("#")
    base = path.rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    return stem + (sep + piece if sep else "")


def _folder_key(name: str) -> str:
    return name.split("/", 1)[0] + "/" if "/" in name.partition("#")[0] else name


def check_split_group(value: Any) -> str:
    """``dataset.split_group`` checked: a preset name or a regular expression with a group."""
    if value is None:
        return "none"
    if not isinstance(value, str) or value == "":
        raise ConfigError(f"config value dataset.split_group={value!r} is invalid: expected one of "
                          f"{sorted(SPLIT_GROUP_PRESETS)} or a regular expression whose first group is the group key")
    if value in SPLIT_GROUP_PRESETS:
        return value
    try:
        pattern = re.compile(value)
    except re.error as exc:
        raise ConfigError(f"config value dataset.split_group={value!r} is invalid: not a regular expression "
                          f"({exc}); expected one of {sorted(SPLIT_GROUP_PRESETS)} or a regular expression "
                          f"whose first group is the group key") from None
    if pattern.groups < 1:
        raise ConfigError(f"config value dataset.split_group={value!r} is invalid: the regular expression has no "
                          f"group; put the group key in parentheses, e.g. '^([^/]+)/' for the first folder")
    return value


def group_keys(names: Sequence[str], split_group: Any = "none", where: str = "corpus") -> tuple[list[str], str]:
    """The group key of each name (a path relative to the corpus folder, or a piece id ``<path>#<k>``).

    ``split_group`` is a preset of :data:`SPLIT_GROUP_PRESETS` or a regular expression searched in
    each name, whose first group is the key.  Returns the keys and the rule used (``auto``
    resolved to ``stem`` or ``none``).
    """
    rule = check_split_group(split_group)
    if rule == "auto":
        stems = [_stem_key(n) for n in names]
        rule = "stem" if len(set(stems)) < len(stems) else "none"
    if rule == "none":
        return list(names), rule
    if rule == "stem":
        return [_stem_key(n) for n in names], rule
    if rule == "folder":
        return [_folder_key(n) for n in names], rule
    pattern = re.compile(rule)
    keys = []
    for n in names:
        m = pattern.search(n)
        if m is None or m.group(1) is None:
            raise DataError(f"{where}: dataset.split_group={rule!r} does not match {n!r} (or its first group is "
                            f"empty); expected a regular expression that matches every file's path relative to "
                            f"the folder, its first group the group key")
        keys.append(m.group(1))
    return keys, rule


def held_out_count(fraction: float, n: int) -> int:
    """Items a held-out split aims at: ``round(fraction * n)``, at least one."""
    return max(1, int(round(fraction * n)))


def split_groups(names: Sequence[str], keys: Sequence[str], valid: float, test: float, seed: int = 0,
                 rule: str = "hash", where: str = "corpus", what: str = "file") -> dict[str, list[int]]:
    """Indices of ``names`` per split, whole groups at a time (items sharing a key share a split).

    Groups are ordered -- ``hash``: by ``sha256("<seed>:<key>")``; ``sorted``: by their first
    name, backwards -- and the first go to test until it holds ``round(test * n)`` items (at
    least one group), the next to valid likewise, the rest to train.  Every split gets at
    least one group; fewer than three groups is a :class:`DataError` naming ``where`` and the
    counts.  With one item per group this is the plain per-item split.
    """
    n = len(names)
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    if len(groups) < 3:
        detail = f"{n} usable {what}(s)" + (f" in {len(groups)} group(s)" if len(groups) != n else "")
        raise DataError(f"{where}: {detail}; a train/valid/test split needs at least 3"
                        + (" groups (dataset.split_group puts whole groups in one split: choose a finer one, or "
                           "'none')" if len(groups) != n else f" {what}s"))
    if rule == "hash":
        order = sorted(groups, key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())
    elif rule == "sorted":
        order = sorted(groups, key=lambda k: min(names[i] for i in groups[k]), reverse=True)
    else:
        raise ConfigError(f"split rule {rule!r}: expected 'hash' or 'sorted'")
    parts: dict[str, list[int]] = {s: [] for s in SPLITS}
    pos = 0
    for split, fraction, keep_after in (("test", test, 2), ("valid", valid, 1)):
        target = held_out_count(fraction, n)
        taken = 0
        while pos < len(order) - keep_after and (taken == 0 or len(parts[split]) < target):
            parts[split].extend(groups[order[pos]])
            pos += 1
            taken += 1
    for k in order[pos:]:
        parts["train"].extend(groups[k])
    return {s: sorted(parts[s], key=lambda i: names[i]) for s in SPLITS}


# --------------------------------------------------------------------------- default names of folder datasets

def folder_dataset_name(kind: str, path: Any, data_root: Any = None) -> str:
    """``<kind>-<folder's base name>-<8 hex digits of sha256 of its absolute path>``.

    The default ``dataset.name`` of folder datasets, so that two folders get two run
    directories (``runs/<dataset.name>/...``).  A relative path is taken from the working
    directory, or else from the first data root that has it (as the loaders look it up).
    """
    from .sources import candidate_roots

    if path is None or str(path) in ("", "???"):
        return str(kind)
    p = Path(str(path)).expanduser()
    if not p.is_absolute() and not p.exists():
        for root in candidate_roots(data_root, strict=False):  # (a bad root is the loader's error to report)
            if (root / p).exists():
                p = root / p
                break
    p = p.resolve()
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", p.stem if p.is_file() else p.name).strip("._") or "root"
    return f"{kind}-{base}-{hashlib.sha256(str(p).encode()).hexdigest()[:8]}"


def _folder_name_resolver(kind: str, *, _parent_, _root_) -> str:
    from omegaconf import OmegaConf

    path = None if OmegaConf.is_missing(_parent_, "path") else _parent_.get("path")
    data_root = None
    try:
        if _root_ is not _parent_ and "data_root" in _root_:
            data_root = _root_.get("data_root")
    except Exception:  # an unresolvable data_root: look in the default places
        data_root = None
    return folder_dataset_name(kind, path, data_root)


def register_resolvers() -> None:
    """``${rnnbench.folder_name:<kind>}``: the default ``dataset.name`` of a folder dataset (its ``path``)."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("rnnbench.folder_name", _folder_name_resolver, replace=True)


register_resolvers()
