"""Raw-speech corpora and their split rules: FSDD, YESNO, a folder of audio files, torchaudio corpora.

Each corpus is framed as the paper does: read 20 samples, predict the next 10.  Files are read
by :mod:`rnnbench.data.audio` (the damaged-file checks are there) and resampled, normalised and
framed by :mod:`rnnbench.data.framing`; this module finds the files, splits them and builds the
:class:`SpeechCorpus`.

Corpora (``dataset.kind``)
--------------------------
``fsdd``
    Free Spoken Digit Dataset, ``speech/fsdd/recordings/{digit}_{speaker}_{index}.wav``
    under the data root.  Official split: index 0-4 test.  Validation: index 5-9 (5
    recordings of every speaker and digit, so the split is speaker- and digit-balanced);
    train: index 10-49.  With the reference copy: 2,400 / 300 / 300 recordings.
``yesno``
    YESNO (OpenSLR 1), ``speech/yesno/waves_yesno/*.wav``.  Fixed split of the 60 files:
    sorted by name, the file at position ``i`` (0-based) is test when ``i % 6 == 0``, valid
    when ``i % 6 == 1``, train otherwise (40 / 10 / 10).  ``dataset=torchaudio`` on YESNO
    (``split: auto``) uses the same rule, so both give the same split.
``audio_folder``
    Any folder of audio files soundfile can read (your own corpus).  Split by sub-folders
    ``train/ valid/ test/`` when present, else by a seeded hash of each group's key (stable
    when files are added), or by sorted name (last files are test).  Groups
    (``split_group``): files sharing a key share a split -- ``stem`` (the same sentence read
    by several speakers), ``folder`` (one speaker per folder), ``auto`` (``stem`` when two
    files share a stem), ``none`` or a regular expression whose first group is the key.  The
    rule is applied after the files are read, to the usable ones, so a file left out never
    empties a split.
``torchaudio``
    A corpus class of ``torchaudio.datasets`` (``LIBRISPEECH``, ``VCTK_092``, ``YESNO``, ...)
    already on disk; ``download`` is always false.  The class finds the files; they are read
    with soundfile.  One instance per split (``split_kwargs``) or one carved like a folder.

Every corpus lists the files it left out in ``SpeechCorpus.skipped`` (``[{"file", "reason"}]``)
and names them in one warning each time it is loaded.

Signal
------
Every file is read with soundfile, mixed down to mono (mean of the channels), resampled
to ``sample_rate`` (default 8000 Hz) with ``torchaudio.functional.resample`` when
``resample`` is true -- a file at another rate is refused, naming it and its rate, when it
is false -- then normalised per utterance (``normalize``): ``standard`` (default) subtracts
the utterance's mean and divides by its standard deviation; ``rms`` divides by the root mean
square; ``peak`` by the largest absolute sample; ``none`` keeps soundfile's [-1, 1] scale.
Unreadable files and silent ones (nothing to normalise) are reported by name
(:class:`DataError`), or skipped (listed in ``skipped``) when ``skip_bad_files`` is true;
files too short for one step are always skipped.

Framing
-------
Step ``t`` of an utterance of ``N`` samples reads samples ``[10t, 10t + 20)`` and predicts
``[10t + 20, 10t + 30)``; there are ``T = (N - 20) // 10`` steps, so every sample after the
first 20 is predicted exactly once, except a tail of fewer than 10 samples.  ``chunk_steps``
cuts each utterance into consecutive pieces of at most that many steps (no step is lost:
a piece's first input is real signal, only the recurrent state restarts), ``max_steps`` keeps
only the first steps of each utterance, and ``max_utterances`` keeps an evenly spaced
subset of each split.  Items are ``(inputs (T, 20), targets (T, 10))`` float32 pairs.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ..errors import ConfigError, DataError, qname
from .audio import AUDIO_EXTENSIONS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, read_audio, require_torchaudio
from .corpus import SPLITS, Corpus, check_split_group, group_keys, log_skipped, register_dataset_kind, split_groups
from .framing import INPUT_SAMPLES, NORMALIZATIONS, OUTPUT_SAMPLES, chunk, frame_signal, normalize, num_steps, resample
from .sources import candidate_roots

log = logging.getLogger("rnnbench.data")

SAMPLE_RATE = 8000
COMPONENTS = 20
SPEECH_DATASETS = ("fsdd", "yesno")
FSDD_RELPATH = "speech/fsdd/recordings"
YESNO_RELPATH = "speech/yesno/waves_yesno"
_FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)$")


# --------------------------------------------------------------------------- corpus

@dataclass
class SpeechCorpus(Corpus):
    """Framed raw speech: 20 inputs, a 20-component Gaussian mixture over 10 outputs."""

    task: str = "speech"
    input_size: int = INPUT_SAMPLES
    output_size: int = OUTPUT_SAMPLES
    head: str = "gmm"
    head_kwargs: dict[str, Any] = field(default_factory=lambda: {"components": COMPONENTS})
    sample_rate: int = SAMPLE_RATE
    normalize: str = "standard"
    # per split: the utterances (names) kept, in the order of their sequences
    utterances: dict[str, list[str]] = field(default_factory=dict)

    def stats(self) -> list[dict]:
        """Per split: utterances, sequences, steps, predicted seconds, shortest and longest sequence."""
        rows = super().stats()
        for row in rows:
            row["utterances"] = len(self.utterances.get(row["split"], []))
            row["seconds"] = row["frames"] * OUTPUT_SAMPLES / self.sample_rate
        return rows


@dataclass(frozen=True)
class AudioFile:
    path: Path
    name: str  # how it is reported: a path relative to the corpus folder, or an id


@dataclass
class SpeechOptions:
    """The signal and framing keys of a speech ``dataset`` config (see ``conf/dataset/fsdd.yaml``)."""

    sample_rate: int | None = SAMPLE_RATE
    resample: bool = False  # never resample unasked (the configs of fsdd, yesno and torchaudio say true)
    normalize: str = "standard"
    chunk_steps: int | None = None
    max_steps: int | None = None
    max_utterances: int | None = None
    skip_bad_files: bool = False
    components: int = COMPONENTS
    min_scale: float = 1e-3

    @classmethod
    def from_config(cls, cfg: Mapping) -> "SpeechOptions":
        def opt_int(key, minimum=1, allow_none=True):
            v = cfg.get(key, getattr(cls, key))
            if v is None and allow_none:
                return None
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise ConfigError(f"config value dataset.{key}={v!r} is invalid: expected an integer >= {minimum}"
                                  + (" or null" if allow_none else ""))
            return int(v)

        def opt_bool(key):
            v = cfg.get(key, getattr(cls, key))
            if not isinstance(v, bool):
                raise ConfigError(f"config value dataset.{key}={v!r} is invalid: expected true or false")
            return v

        rate = cfg.get("sample_rate", cls.sample_rate)
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int)
                                 or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE):
            raise ConfigError(f"config value dataset.sample_rate={rate!r} is invalid: expected an integer between "
                              f"{MIN_SAMPLE_RATE:,} and {MAX_SAMPLE_RATE:,} (Hz) or null")
        method = cfg.get("normalize", cls.normalize)
        if method not in NORMALIZATIONS:
            raise ConfigError(f"config value dataset.normalize={method!r} is invalid: expected one of {NORMALIZATIONS}")
        min_scale = cfg.get("min_scale", cls.min_scale)
        if (isinstance(min_scale, bool) or not isinstance(min_scale, (int, float)) or not min_scale > 0
                or not np.isfinite(min_scale)):
            raise ConfigError(f"config value dataset.min_scale={min_scale!r} is invalid: expected a positive number")
        return cls(
            sample_rate=opt_int("sample_rate"), resample=opt_bool("resample"), normalize=method,
            chunk_steps=opt_int("chunk_steps"), max_steps=opt_int("max_steps"),
            max_utterances=opt_int("max_utterances"), skip_bad_files=opt_bool("skip_bad_files"),
            components=opt_int("components", allow_none=False), min_scale=float(min_scale),
        )


def _listing(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _even_subset(items: list, n: int | None) -> list:
    """``n`` items evenly spaced over ``items`` (all of them when ``n`` is None or large)."""
    if n is None or n >= len(items):
        return items
    idx = np.unique(np.linspace(0, len(items) - 1, n).round().astype(int))
    return [items[i] for i in idx]


Splitter = Callable[[list[AudioFile]], "dict[str, list[AudioFile]]"]


def build_speech_corpus(name: str, files: Mapping[str, list[AudioFile]] | Sequence[AudioFile], opts: SpeechOptions,
                        source: Path | None = None, splitter: Splitter | None = None) -> SpeechCorpus:
    """Read, check, resample, normalise and frame the files of each split.

    ``files`` is either a fixed split (a mapping split -> files, e.g. FSDD's indices or a
    folder's train/ valid/ test/), or, with ``splitter``, the list of all files, which
    ``splitter`` divides once the unusable ones are known: the split is decided on the files
    that can be used, so a file left out never empties a split.  With ``max_utterances``
    only the files kept are read; a file found unusable among them is left out and the rule
    applied again to the rest.
    """
    where = f"dataset {name!r}" + (f" ({qname(source)})" if source else "")
    if splitter is None:
        fixed = {s: _even_subset(list(files.get(s, [])), opts.max_utterances) for s in SPLITS}  # type: ignore[union-attr]
        if not fixed["train"]:
            raise DataError(f"{where}: the train split has no audio files")
        everything = [f for s in SPLITS for f in fixed[s]]
    else:
        everything = list(files)
    counts: dict[str, int] = {}
    for f in everything:
        counts[f.name] = counts.get(f.name, 0) + 1
    dup = sorted(n for n, k in counts.items() if k > 1)
    if dup:
        raise DataError(f"{where}: {len(dup)} file(s) listed twice (in two splits, or twice in one): "
                        f"{_listing([qname(n) for n in dup])}; expected every file in one split only")

    raw: dict[str, tuple[np.ndarray, int]] = {}  # read, not yet processed
    items: dict[str, list] = {}  # name -> framed pieces
    left_out: dict[str, str] = {}  # name -> reason (unreadable, silent, too short)
    target = opts.sample_rate
    resampled: dict[int, int] = {}
    while True:
        if splitter is None:
            chosen = {s: [f for f in fixed[s] if f.name not in left_out] for s in SPLITS}
        else:
            usable = [f for f in everything if f.name not in left_out]
            try:
                parts = splitter(usable)
            except DataError as exc:
                if not left_out:
                    raise
                gone = [f"{n} ({r})" for n, r in left_out.items()]
                raise DataError(f"{exc} -- {len(left_out)} of the {len(everything)} files were left out: "
                                f"{_listing(gone, 5)}") from None
            chosen = {s: _even_subset(parts[s], opts.max_utterances) for s in SPLITS}
        todo = [f for s in SPLITS for f in chosen[s] if f.name not in items]
        unreadable = []
        for f in todo:
            try:
                raw[f.name] = read_audio(f.path)
            except DataError as exc:
                reason = str(exc).removeprefix(f"{qname(f.path)}: ")
                unreadable.append(f"{qname(f.name)} ({reason})")
                left_out[f.name] = reason
        if unreadable and not opts.skip_bad_files:
            raise DataError(f"{where}: {len(unreadable)} audio file(s) could not be read or used: "
                            f"{_listing(unreadable)}. Repair or remove them, or set dataset.skip_bad_files=true to "
                            f"leave them out.")
        todo = [f for f in todo if f.name in raw]
        # Sample rates: one common rate, reached by resampling only when allowed.
        by_rate: dict[int, list[str]] = {}
        for f in todo:
            by_rate.setdefault(raw[f.name][1], []).append(qname(f.name))
        if target is None:
            if len(by_rate) > 1:
                detail = "; ".join(f"{r} Hz: {_listing(n, 3)}" for r, n in sorted(by_rate.items()))
                raise DataError(f"{where}: files have different sample rates ({detail}) and "
                                f"dataset.sample_rate is null; set dataset.sample_rate (and dataset.resample=true)")
            target = next(iter(by_rate), None)
        off = {r: n for r, n in by_rate.items() if r != target}
        if off and not opts.resample:
            detail = "; ".join(f"{len(n)} at {r} Hz: {_listing(n, 5)}" for r, n in sorted(off.items()))
            raise DataError(f"{where}: expected every file at dataset.sample_rate={target} Hz, found {detail}. "
                            f"Set dataset.resample=true to resample them, or dataset.sample_rate to their rate.")
        silent, short = [], []
        for f in todo:
            x, rate = raw.pop(f.name)
            if rate != target:
                resampled[rate] = resampled.get(rate, 0) + 1
            x = resample(x, rate, target)
            if num_steps(len(x)) == 0:  # (before normalising: a short file is short, whatever its samples)
                short.append(f.name)
                left_out[f.name] = (f"shorter than {INPUT_SAMPLES + OUTPUT_SAMPLES} samples at {target} Hz "
                                    f"({len(x)} samples: no step to predict)")
                continue
            try:
                x = normalize(x, opts.normalize)
            except ValueError as exc:
                silent.append(f"{qname(f.name)} ({exc})")
                left_out[f.name] = str(exc)
                continue
            inputs, targets = frame_signal(x)
            if opts.max_steps:
                inputs, targets = inputs[: opts.max_steps], targets[: opts.max_steps]
            items[f.name] = chunk(inputs, targets, opts.chunk_steps)
        if silent and not opts.skip_bad_files:
            raise DataError(f"{where}: {len(silent)} silent audio file(s): {_listing(silent)}. "
                            f"Remove them, or set dataset.skip_bad_files=true to leave them out.")
        if splitter is None or not (unreadable or silent or short):
            break  # (a fixed split is never redrawn; a rule is drawn again without the files just left out)
    if resampled:
        log.info("%s: resampled %d file(s) to %d Hz (%s)", name, sum(resampled.values()), target,
                 ", ".join(f"{n} from {r} Hz" for r, n in sorted(resampled.items())))
    skipped = [dict(file=f.name, reason=left_out[f.name]) for f in everything if f.name in left_out]
    log_skipped(log, where, skipped)

    splits: dict[str, list] = {s: [] for s in SPLITS}
    utterances: dict[str, list[str]] = {s: [] for s in SPLITS}
    for split in SPLITS:
        for f in chosen[split]:
            if f.name in items:
                splits[split].extend(items[f.name])
                utterances[split].append(f.name)
    empty = [s for s in SPLITS if not splits[s]]
    if empty:
        raise DataError(f"{where}: no usable audio in the {' and '.join(empty)} split(s) "
                        f"({', '.join(f'{s}: {len(chosen[s])} files' for s in SPLITS)}; {len(skipped)} left out); "
                        f"every split needs at least one utterance of 30 samples or more -- add files or change "
                        f"the split settings")
    return SpeechCorpus(name=name, splits=splits, source=source, sample_rate=int(target), normalize=opts.normalize,
                        head_kwargs={"components": opts.components, "min_scale": opts.min_scale},
                        utterances=utterances, skipped=skipped)


# --------------------------------------------------------------------------- where the files are

def resolve_folder(path: str | os.PathLike | None, relpath: str, data_root=None, what: str = "corpus") -> Path:
    """``path`` when given (absolute, relative to the working directory, or to a data root),
    else ``relpath`` under the first data root that has it."""
    if path is not None and str(path) != "":
        p = Path(path).expanduser()
        if p.is_dir():
            return p
        if not p.is_absolute():
            for r in candidate_roots(data_root):
                if (r / p).is_dir():
                    return r / p
        raise DataError(f"{p}: folder not found (dataset.path for the {what}); expected a folder of audio files, "
                        f"absolute or relative to the working directory or to a data root")
    roots = candidate_roots(data_root)
    for r in roots:
        if (r / relpath).is_dir():
            return r / relpath
    looked = ", ".join(str(r / relpath) for r in roots)
    raise DataError(f"{what}: folder {relpath} not found (looked in: {looked}). Set RNNBENCH_DATA (or the config "
                    f"key data_root) to the folder holding {relpath}, or dataset.path to the folder itself.")


def _wavs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".wav" and p.is_file())


def _int_list(cfg: Mapping, key: str, default: Sequence[int]) -> set[int]:
    v = cfg.get(key, default)
    try:
        out = {int(i) for i in v}
    except (TypeError, ValueError):
        raise ConfigError(f"config value dataset.{key}={v!r} is invalid: expected a list of integers") from None
    return out


def fsdd_files(folder: Path, test_indices: Iterable[int] = range(5),
               valid_indices: Iterable[int] = range(5, 10)) -> dict[str, list[AudioFile]]:
    """FSDD recordings by split: index in ``test_indices`` test, in ``valid_indices`` valid, else train.

    Ordered by digit, speaker, index.
    """
    test_indices, valid_indices = set(test_indices), set(valid_indices)
    if test_indices & valid_indices:
        raise ConfigError(f"FSDD split: indices {sorted(test_indices & valid_indices)} are both test and valid")
    keyed = []
    for p in _wavs(folder):
        m = _FSDD_NAME.match(p.stem)
        if not m:
            raise DataError(f"{p}: not an FSDD recording name; expected {{digit}}_{{speaker}}_{{index}}.wav")
        keyed.append(((int(m.group(1)), m.group(2), int(m.group(3))), p))
    if not keyed:
        raise DataError(f"{folder}: no .wav recordings found (expected FSDD's {{digit}}_{{speaker}}_{{index}}.wav)")
    out: dict[str, list[AudioFile]] = {s: [] for s in SPLITS}
    for (digit, speaker, index), p in sorted(keyed):
        split = "test" if index in test_indices else "valid" if index in valid_indices else "train"
        out[split].append(AudioFile(p, p.name))
    return out


def yesno_split(files: Sequence[AudioFile], every: int = 6) -> dict[str, list[AudioFile]]:
    """YESNO's fixed split: sorted by file name, position ``i % every == 0`` test, ``== 1`` valid, else train.

    The 60 recordings give 40 / 10 / 10; ``dataset=yesno`` and ``dataset=torchaudio`` on YESNO
    both use it, on the listing of the folder (a file left out later does not move the others).
    """
    if isinstance(every, bool) or not isinstance(every, int) or every < 3:
        raise ConfigError(f"config value dataset.holdout_every={every!r} is invalid: expected an integer >= 3")
    out: dict[str, list[AudioFile]] = {s: [] for s in SPLITS}
    for i, f in enumerate(sorted(files, key=lambda f: (f.path.name, f.name))):
        split = "test" if i % every == 0 else "valid" if i % every == 1 else "train"
        out[split].append(f)
    return out


def yesno_files(folder: Path, every: int = 6) -> dict[str, list[AudioFile]]:
    """YESNO files by split (:func:`yesno_split`)."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 3:
        raise ConfigError(f"config value dataset.holdout_every={every!r} is invalid: expected an integer >= 3")
    paths = _wavs(folder)
    if not paths:
        raise DataError(f"{folder}: no .wav files found (expected YESNO's waves_yesno/*.wav)")
    return yesno_split([AudioFile(p, p.name) for p in paths], every)


FOLDER_SPLITS = {"train": ("train",), "valid": ("valid", "validation", "dev", "val"), "test": ("test",)}
SPLIT_RULES = ("auto", "folders", "hash", "sorted")


def _check_split_fractions(valid_fraction: Any, test_fraction: Any) -> None:
    for key, v in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
            raise ConfigError(f"config value dataset.{key}={v!r} is invalid: expected a number in [0, 1)")
    if valid_fraction + test_fraction >= 1:
        raise ConfigError(f"config values dataset.valid_fraction={valid_fraction} + test_fraction={test_fraction} "
                          f"leave no training files: expected a sum below 1")


def rule_splitter(rule: str, valid_fraction: float, test_fraction: float, seed: int = 0,
                  split_group: Any = "none", where: str = "files") -> Splitter:
    """The split of a list of files by ``rule`` (``hash`` or ``sorted``), whole groups at a time.

    ``split_group`` names the groups (:func:`rnnbench.data.corpus.group_keys`: ``none``,
    ``stem``, ``folder``, ``auto`` or a regular expression over the file's relative path whose
    first group is the key).  ``hash``: groups ranked by sha256 of ``"{seed}:{key}"``;
    ``sorted``: by name, the last groups are test and the ones before them valid.  Test takes
    groups until it holds ``round(test_fraction * n)`` files (at least one group), valid
    likewise, train the rest; fewer than three groups is an error naming ``where``.
    """
    if rule not in ("hash", "sorted"):
        raise ConfigError(f"config value dataset.split={rule!r} is invalid: expected one of {SPLIT_RULES}")
    _check_split_fractions(valid_fraction, test_fraction)
    check_split_group(split_group)

    def split(files: list[AudioFile]) -> dict[str, list[AudioFile]]:
        ordered = sorted(files, key=lambda f: f.name)
        names = [f.name for f in ordered]
        keys, used = group_keys(names, split_group, where)
        if used != "none":
            log.info("%s: split by dataset.split_group=%s: %d files in %d groups", where,
                     split_group if split_group == used else f"{split_group} ({used})", len(names), len(set(keys)))
        parts = split_groups(names, keys, valid_fraction, test_fraction, seed, rule, where, "file")
        return {s: [ordered[i] for i in parts[s]] for s in SPLITS}

    return split


def split_by_rule(files: list[AudioFile], rule: str, valid_fraction: float, test_fraction: float,
                  seed: int = 0, split_group: Any = "none") -> dict[str, list[AudioFile]]:
    """Carve valid and test from a list of files (:func:`rule_splitter`)."""
    return rule_splitter(rule, valid_fraction, test_fraction, seed, split_group)(list(files))


def list_audio(folder: Path, extensions: Sequence[str] = AUDIO_EXTENSIONS) -> list[AudioFile]:
    """The audio files under ``folder`` (recursively, by suffix), named by their path relative to it."""
    exts = {"." + e.lower().lstrip(".") for e in extensions}
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in exts and p.is_file())
    if not paths:
        raise DataError(f"{folder}: no audio files found (extensions {sorted(exts)})")
    return [AudioFile(p, p.relative_to(folder).as_posix()) for p in paths]


def subfolder_split(folder: Path, files: list[AudioFile], rule: str = "auto") -> dict[str, list[AudioFile]] | None:
    """The split given by top-level sub-folders train/ valid/ (dev/ ...) test/, or None when ``rule`` asks
    for (or, with ``auto``, the folder has) none."""
    top = {f.name.split("/", 1)[0] for f in files if "/" in f.name}
    split_dirs = {s: [d for d in names if d in top] for s, names in FOLDER_SPLITS.items()}
    has_folders = bool(split_dirs["train"]) and bool(split_dirs["valid"] or split_dirs["test"])
    if not (rule == "folders" or (rule == "auto" and has_folders)):
        return None
    if not has_folders:
        raise DataError(f"{folder}: dataset.split=folders needs sub-folders train/ and valid/ (or dev/) "
                        f"and/or test/, found {sorted(top) or 'none'}")
    out: dict[str, list[AudioFile]] = {s: [] for s in SPLITS}
    for f in files:
        first = f.name.split("/", 1)[0] if "/" in f.name else None
        for s, dirs in split_dirs.items():
            if first in dirs:
                out[s].append(f)
    return out


def folder_files(folder: Path, extensions: Sequence[str] = AUDIO_EXTENSIONS, rule: str = "auto",
                 valid_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0,
                 split_group: Any = "none") -> dict[str, list[AudioFile]]:
    """The audio files under ``folder`` (recursively), split by sub-folder or by ``rule``, before reading.

    (``dataset.kind=audio_folder`` applies the rule after reading instead, see
    :func:`build_speech_corpus`.)
    """
    files = list_audio(folder, extensions)
    fixed = subfolder_split(folder, files, rule)
    if fixed is not None:
        return fixed
    return rule_splitter("hash" if rule == "auto" else rule, valid_fraction, test_fraction, seed, split_group,
                         str(folder))(files)


# --------------------------------------------------------------------------- torchaudio corpora

class _Captured(Exception):
    def __init__(self, path):
        super().__init__(path)
        self.path = path


def torchaudio_files(class_name: str, root: Path, kwargs: Mapping | None = None) -> list[AudioFile]:
    """The audio files of a ``torchaudio.datasets`` corpus found under ``root`` (never downloaded).

    The class lists its items; each item's file is found by letting the class load it with a
    stand-in ``torchaudio.load`` that only records the path (so no audio backend is needed).
    """
    from unittest import mock

    torchaudio = require_torchaudio(f"dataset=torchaudio (torchaudio.datasets.{class_name})")
    tds = torchaudio.datasets

    cls = getattr(tds, str(class_name), None)
    if not isinstance(cls, type):
        choices = [n for n in getattr(tds, "__all__", dir(tds)) if isinstance(getattr(tds, n, None), type)]
        raise ConfigError(f"config value dataset.dataset={class_name!r} is invalid: expected a torchaudio.datasets "
                          f"class, one of {choices}")
    kwargs = dict(kwargs or {})
    if kwargs.pop("download", False):
        raise ConfigError("torchaudio corpora are never downloaded by rnnbench: remove download=true from "
                          "dataset.kwargs and place the corpus under the data root yourself")
    try:
        ds = cls(str(root), download=False, **kwargs) if "download" in _init_params(cls) else cls(str(root), **kwargs)
    except (RuntimeError, OSError, FileNotFoundError, ValueError) as exc:
        raise DataError(f"torchaudio.datasets.{class_name} not found under {root} ({type(exc).__name__}: {exc}); "
                        f"place the corpus there in the layout torchaudio expects (download is disabled)") from exc

    def stub(path, *args, **kw):
        raise _Captured(os.fspath(path))

    files = []
    with mock.patch.object(torchaudio, "load", stub):
        for n in range(len(ds)):
            try:
                ds[n]
            except _Captured as cap:
                p = Path(cap.path)
                try:
                    name = p.resolve().relative_to(root.resolve()).as_posix()
                except ValueError:
                    name = str(p)
                files.append(AudioFile(p, name))
                continue
            except Exception as exc:
                raise DataError(f"torchaudio.datasets.{class_name} item {n} under {root}: "
                                f"{type(exc).__name__}: {exc}") from exc
            raise ConfigError(f"torchaudio.datasets.{class_name} does not read audio through torchaudio.load; "
                              f"use kind=audio_folder on its folder instead")
    if not files:
        raise DataError(f"torchaudio.datasets.{class_name} under {root}: no items")
    return files


def _init_params(cls) -> set[str]:
    import inspect

    return set(inspect.signature(cls.__init__).parameters)


# --------------------------------------------------------------------------- dataset kinds

def load_fsdd(root=None, path=None, test_indices=range(5), valid_indices=range(5, 10), **options) -> SpeechCorpus:
    folder = resolve_folder(path, FSDD_RELPATH, root, "FSDD")
    opts = SpeechOptions.from_config(options)
    return build_speech_corpus("fsdd", fsdd_files(folder, test_indices, valid_indices), opts, source=folder)


def load_yesno(root=None, path=None, holdout_every: int = 6, **options) -> SpeechCorpus:
    folder = resolve_folder(path, YESNO_RELPATH, root, "YESNO")
    opts = SpeechOptions.from_config(options)
    return build_speech_corpus("yesno", yesno_files(folder, int(holdout_every)), opts, source=folder)


_COMMON_KEYS = {"name", "kind", "task", "path", "download"} | set(SpeechOptions.__dataclass_fields__)
_SPLIT_RULE_KEYS = {"split", "valid_fraction", "test_fraction", "split_seed", "split_group"}
KIND_KEYS = {
    "fsdd": _COMMON_KEYS | {"test_indices", "valid_indices"},
    "yesno": _COMMON_KEYS | {"holdout_every"},
    "audio_folder": _COMMON_KEYS | _SPLIT_RULE_KEYS | {"extensions"},
    "torchaudio": _COMMON_KEYS | _SPLIT_RULE_KEYS | {"dataset", "kwargs", "split_kwargs"},
}


def _check_keys(cfg: Mapping, kind: str) -> None:
    """A misspelt key would silently fall back to its default: refuse it instead."""
    unknown = sorted(str(k) for k in cfg if k not in KIND_KEYS[kind])
    if unknown:
        raise ConfigError(f"config keys {', '.join('dataset.' + k for k in unknown)} are not settings of "
                          f"dataset.kind={kind}; expected some of {sorted(KIND_KEYS[kind])}")


def _options(cfg: Mapping) -> dict:
    known = set(SpeechOptions.__dataclass_fields__)
    return {k: cfg[k] for k in cfg if k in known}


@register_dataset_kind("fsdd")
def _fsdd_from_config(dataset: Mapping, data_root=None) -> SpeechCorpus:
    """``dataset.kind=fsdd``: the Free Spoken Digit Dataset, official test split, valid = index 5-9."""
    _check_keys(dataset, "fsdd")
    return load_fsdd(data_root, dataset.get("path"), _int_list(dataset, "test_indices", range(5)),
                     _int_list(dataset, "valid_indices", range(5, 10)), **_options(dataset))


@register_dataset_kind("yesno")
def _yesno_from_config(dataset: Mapping, data_root=None) -> SpeechCorpus:
    """``dataset.kind=yesno``: the 60 YESNO recordings, fixed 40/10/10 split."""
    _check_keys(dataset, "yesno")
    every = dataset.get("holdout_every", 6)
    if isinstance(every, bool) or not isinstance(every, int):
        raise ConfigError(f"config value dataset.holdout_every={every!r} is invalid: expected an integer >= 3")
    return load_yesno(data_root, dataset.get("path"), every, **_options(dataset))


def _split_cfg(dataset: Mapping) -> tuple[str, float, float, int, str]:
    rule = dataset.get("split", "auto")
    if rule not in SPLIT_RULES:
        raise ConfigError(f"config value dataset.split={rule!r} is invalid: expected one of {SPLIT_RULES}")
    seed = dataset.get("split_seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"config value dataset.split_seed={seed!r} is invalid: expected an integer")
    vf, tf = dataset.get("valid_fraction", 0.1), dataset.get("test_fraction", 0.1)
    _check_split_fractions(vf, tf)
    return rule, vf, tf, seed, check_split_group(dataset.get("split_group", "none"))


@register_dataset_kind("audio_folder")
def _folder_from_config(dataset: Mapping, data_root=None) -> SpeechCorpus:
    """``dataset.kind=audio_folder``: a folder of audio files (``dataset.path``)."""
    _check_keys(dataset, "audio_folder")
    if not dataset.get("path"):
        raise ConfigError("config value dataset.path=None is invalid: expected the folder of audio files "
                          "(absolute, or relative to the working directory or to the data root)")
    folder = resolve_folder(dataset["path"], "", data_root, "audio folder")
    rule, vf, tf, seed, group = _split_cfg(dataset)
    exts = dataset.get("extensions") or AUDIO_EXTENSIONS
    opts = SpeechOptions.from_config(_options(dataset))
    name = str(dataset.get("name", folder.name))
    files = list_audio(folder, list(exts))
    fixed = subfolder_split(folder, files, rule)
    if fixed is not None:
        return build_speech_corpus(name, fixed, opts, source=folder)
    splitter = rule_splitter("hash" if rule == "auto" else rule, vf, tf, seed, group, f"audio folder {folder}")
    return build_speech_corpus(name, files, opts, source=folder, splitter=splitter)


@register_dataset_kind("torchaudio")
def _torchaudio_from_config(dataset: Mapping, data_root=None) -> SpeechCorpus:
    """``dataset.kind=torchaudio``: a ``torchaudio.datasets`` class over a corpus already on disk."""
    _check_keys(dataset, "torchaudio")
    class_name = dataset.get("dataset")
    if not class_name:
        raise ConfigError("config value dataset.dataset=None is invalid: expected a torchaudio.datasets class "
                          "name such as LIBRISPEECH, VCTK_092 or YESNO")
    root = resolve_folder(dataset.get("path"), "", data_root, f"torchaudio.datasets.{class_name}") \
        if dataset.get("path") else _first_root(data_root)
    kwargs = dict(dataset.get("kwargs") or {})
    per_split = dataset.get("split_kwargs")
    if per_split:
        missing = [s for s in ("train",) if s not in per_split]
        if missing:
            raise ConfigError(f"config value dataset.split_kwargs lacks {missing}: expected keys train, valid, test")
        files = {s: torchaudio_files(class_name, root, {**kwargs, **dict(per_split[s] or {})})
                 for s in SPLITS if s in per_split}
        splitter = None
    else:
        rule, vf, tf, seed, group = _split_cfg(dataset)
        files = torchaudio_files(class_name, root, kwargs)
        if rule == "auto" and str(class_name) == "YESNO":  # the documented 40/10/10, as dataset=yesno
            files, splitter = yesno_split(files), None
        else:
            splitter = rule_splitter("hash" if rule == "auto" else rule, vf, tf, seed, group,
                                     f"torchaudio.datasets.{class_name} under {root}")
    opts = SpeechOptions.from_config(_options(dataset))
    return build_speech_corpus(str(dataset.get("name", str(class_name).lower())), files, opts, source=root,
                               splitter=splitter)


def _first_root(data_root) -> Path:
    for r in candidate_roots(data_root):
        if r.is_dir():
            return r
    raise DataError("no data root found: set dataset.path, the config key data_root or RNNBENCH_DATA")


def speech_corpus_stub(dataset: Mapping) -> SpeechCorpus:
    """A corpus with no sequences but the model's sizes and head: enough to rebuild a trained model."""
    opts = SpeechOptions.from_config(_options(dataset))
    return SpeechCorpus(name=str(dataset.get("name", "speech")), splits={s: [] for s in SPLITS},
                        sample_rate=int(opts.sample_rate or SAMPLE_RATE), normalize=opts.normalize,
                        head_kwargs={"components": opts.components, "min_scale": opts.min_scale})
