"""Piano-roll corpora built and cached from scores: a folder of MIDI / MusicXML / ABC files, or music21's corpus.

``dataset.kind=scores`` turns every piece it can read into an 88-key piano roll (``uint8``
``(T, 88)``, column ``j`` = MIDI note ``21 + j``, the convention of :mod:`rnnbench.data.music`)
and returns a :class:`ScoreCorpus` that every experiment can train on.

Sources (exactly one of)
    ``dataset.path``    a folder, searched recursively, or one file.  Suffixes read:
                        ``.mid .midi .xml .musicxml .mxl .abc .krn``; other files are ignored.
    ``dataset.corpus``  a music21 corpus selection, read offline from music21's bundled corpus:
                        ``bach_chorales`` (Riemenschneider's 371 chorales: music21 ships 349
                        distinct files for them, some numbers share a file), the ABC folk
                        collections ``oneills1850`` (about 2,000 Irish tunes),
                        ``essen_folksong`` (about 8,500 European folk songs) and
                        ``ryans_mammoth`` (about 1,000 tunes) -- melodies --, or any folder
                        or file below the corpus root (``airdsAirs``, ``bach``,
                        ``nottingham-dataset``, ``essenFolksong/han1.abc``).

Pieces
    Every score is a piece; a file holding several (an ABC collection, a music21 Opus) gives
    one piece per tune, with id ``<file>#<k>`` (k counts from 1 in file order).  A piece's id
    is its file's path relative to the folder (or corpus root), ``/``-separated.

How each file becomes notes and each piece a roll (frames, quantisation, transposition, notes
outside the 88 keys, repeats, chord symbols) is :mod:`rnnbench.data.rolls`; how MIDI bytes
are read (and damaged files refused) is :mod:`rnnbench.data.midi`.  This module finds the
files, reads them all (skipping the unreadable ones by name), caches the rolls, removes
duplicates and splits the pieces.

Split (``dataset.split`` fractions train/valid/test, ``dataset.split_seed``, ``dataset.split_group``)
    Decided after reading, on the pieces that could be used.  Pieces are grouped by
    ``split_group`` (:func:`rnnbench.data.corpus.group_keys`: ``none``, each piece alone, the
    default in code and for the music21 corpora; ``stem``, the file name without folders and
    suffix, so one piece as ``.mid`` and ``.musicxml`` stays in one split; ``folder``, the
    first folder; ``auto``, ``stem`` when two files share a stem, else ``none``, the default of
    ``conf/dataset/scores_folder.yaml``; or a regular expression over the piece id whose first
    group is the key).  Groups are ranked by ``sha256("<split_seed>:<key>")``; the first go to
    test until it holds ``round(n * test)`` pieces, the next to valid likewise, the rest to
    train (each split gets at least one group; at least 3 groups are needed, else an error
    names the source and the counts).  With one piece per group this is the ranking of the
    piece ids themselves.  The split thus depends only on the set of piece ids and the seed,
    not on file order, parse order or the machine.  Within a split, pieces are in id order.
    Pieces whose rolls are identical are kept once (``dedupe``, default true), so no piece is
    in two splits.

Skipped files
    A file music21 (or the MIDI reader) cannot read, or a piece without a single pitched note,
    is skipped: listed in ``ScoreCorpus.skipped`` (``[{"file", "reason"}]``, kept in the cache)
    and named in one warning each time the corpus is loaded, a cache hit included.  If no
    piece is left, :class:`~rnnbench.errors.DataError` names the source.

Cache
    The parsed rolls are stored in ``<cache>/scores/<name>-<key>.npz`` (cache =
    ``$RNNBENCH_CACHE`` or ``data/``), written to a temporary file and renamed.  ``key`` hashes
    the list of source files with their sizes and sha256 contents, the frame settings and the
    music21 version (and the MIDI reader's version when MIDI files are among the sources), so
    editing, adding or removing a file, changing a setting or upgrading music21 rebuilds; the
    split, seed, groups and dedupe are applied after loading and never rebuild.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import re
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigError, DataError, WriteError, qname
from ..fileio import atomic_write
from .corpus import SPLITS, check_split_group, group_keys, log_skipped, register_dataset_kind, split_groups
from .midi import MIDI_READER_VERSION, MIDI_SUFFIXES
from .music import N_KEYS, MusicCorpus
from .rolls import MAX_PIECE_FRAMES, RollSettings, SkipPiece, notes_to_frames, read_pieces
# the documented one-piece helpers, importable from here as docs/scores.md showed them before rnnbench.data.rolls
from .rolls import roll_to_midi, score_to_roll  # noqa: F401
from .sources import default_cache_dir

log = logging.getLogger("rnnbench.data.scores")

FORMAT_VERSION = 1
SCORE_SUFFIXES = MIDI_SUFFIXES + (".xml", ".musicxml", ".mxl", ".abc", ".krn")

# Named selections of music21's corpus (paths relative to its root; see corpus_sources()).
NAMED_CORPORA = {
    "bach_chorales": "Bach's four-part chorales in Riemenschneider's numbering (music21 chorales.Iterator)",
    "oneills1850": "O'Neill's Music of Ireland (1850), ABC, melodies",
    "essen_folksong": "the Essen folk-song collection, ABC, melodies",
    "ryans_mammoth": "Ryan's Mammoth Collection, ABC, melodies",
}
_NAMED_FOLDERS = {"oneills1850": "oneills1850", "essen_folksong": "essenFolksong", "ryans_mammoth": "ryansMammoth"}


# --------------------------------------------------------------------------- sources

def music21_version() -> str:
    import music21

    return str(music21.__version__)


def corpus_root() -> Path:
    from music21 import common

    return Path(common.getCorpusFilePath())


def _score_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SCORE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def corpus_sources(selection: str) -> tuple[Path, list[tuple[str, Path]]]:
    """(corpus root, [(piece id, file)]) of a named selection or a path below music21's corpus root."""
    root = corpus_root()
    if selection == "bach_chorales":
        from music21 import corpus

        files = {}
        for name in corpus.chorales.Iterator(returnType="filename"):  # 'bach/bwv269'
            found = [root / f"{name}{suf}" for suf in (".mxl", ".xml", ".musicxml", ".krn")]
            found = [p for p in found if p.is_file()]
            if found:
                files[found[0].relative_to(root).as_posix()] = found[0]
        return root, sorted(files.items())
    rel = _NAMED_FOLDERS.get(selection, selection)
    target = (root / rel).resolve()
    if not str(target).startswith(str(root.resolve())) or not target.exists():
        raise ConfigError(
            f"config value dataset.corpus={selection!r} is invalid: expected one of {sorted(NAMED_CORPORA)} "
            f"or a folder/file below music21's corpus root {root}")
    files = [target] if target.is_file() else _score_files(target)
    return root, [(p.relative_to(root.resolve()).as_posix(), p) for p in files]


def folder_sources(path: str | Path) -> tuple[Path, list[tuple[str, Path]]]:
    """(folder, [(piece id, file)]) of a user's folder (searched recursively) or single file."""
    path = Path(path).expanduser()
    if path.is_file():
        return path.parent, [(path.name, path)]
    if not path.is_dir():
        raise DataError(f"{path}: no such folder or file (dataset.path); expected a folder of "
                        f"score files ({' '.join(SCORE_SUFFIXES)})")
    return path, [(p.relative_to(path).as_posix(), p) for p in _score_files(path)]



def _parse_source(path: Path, rel: str, settings: RollSettings) -> tuple[list[tuple[str, np.ndarray, dict]], list[dict]]:
    """Rolls of every piece of one file, and the pieces of it that were skipped."""
    pieces, skipped = [], []
    all_notes = read_pieces(path, settings)
    for k, (notes, flags) in enumerate(all_notes, start=1):
        pid = rel if len(all_notes) == 1 else f"{rel}#{k}"
        try:
            roll, counts = notes_to_frames(notes, settings)
        except SkipPiece as exc:
            skipped.append(dict(file=pid, reason=str(exc)))
            continue
        pieces.append((pid, roll, {**counts, **flags}))
    return pieces, skipped



def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cache_key(sources: Sequence[tuple[str, Path]], settings: RollSettings) -> str:
    keyed = asdict(settings)
    if keyed["max_piece_frames"] == MAX_PIECE_FRAMES:  # (the default keeps the caches built before it existed)
        del keyed["max_piece_frames"]
    desc = {
        "format": FORMAT_VERSION, "music21": music21_version(), "settings": keyed,
        "sources": [[rel, p.stat().st_size, _file_sha256(p)] for rel, p in sources],
    }
    if any(p.suffix.lower() in MIDI_SUFFIXES for _, p in sources):
        desc["midi_reader"] = MIDI_READER_VERSION
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- building and caching

@dataclass
class PieceSet:
    """Every piece read from a source, before the split."""

    ids: list[str]
    rolls: list[np.ndarray]
    info: list[dict]
    skipped: list[dict]
    build_seconds: float = 0.0
    music21: str = ""


def parse_sources(sources: Sequence[tuple[str, Path]], settings: RollSettings, label: str = "") -> PieceSet:
    """Read every file; unreadable files and empty pieces are skipped and listed, never fatal."""
    t0 = time.perf_counter()
    ids, rolls, info, skipped = [], [], [], []
    for i, (rel, path) in enumerate(sources, start=1):
        try:
            pieces, empty = _parse_source(path, rel, settings)
        except Exception as exc:  # any parser failure means: this file is unreadable
            reason = str(exc) if isinstance(exc, DataError) else f"{type(exc).__name__}: {exc}"
            reason = " ".join(reason.split())  # one line
            reason = reason if len(reason) <= 300 else reason[:297] + "..."
            skipped.append(dict(file=rel, reason=reason))
            log.info("%s: skipped unreadable score %s (%s)", label, path, reason)
            continue
        for item in empty:
            log.info("%s: skipped %s (%s)", label, item["file"], item["reason"])
        skipped.extend(empty)
        for pid, roll, counts in pieces:
            ids.append(pid)
            rolls.append(roll)
            info.append(dict(id=pid, frames=int(len(roll)), **counts))
        if i % 50 == 0:
            log.info("%s: %d/%d files read (%.0f s)", label, i, len(sources), time.perf_counter() - t0)
    return PieceSet(ids, rolls, info, skipped, time.perf_counter() - t0, music21_version())


def _save_pieces(path: Path, pieces: PieceSet, key: str, meta_extra: dict) -> None:
    meta = dict(format=FORMAT_VERSION, key=key, info=pieces.info, skipped=pieces.skipped,
                build_seconds=pieces.build_seconds, music21=pieces.music21, **meta_extra)
    lengths = np.array([len(r) for r in pieces.rolls], dtype=np.int64)
    rolls = np.concatenate(pieces.rolls) if pieces.rolls else np.zeros((0, N_KEYS), dtype=np.uint8)

    def write(tmp: Path) -> None:
        buf = io.BytesIO()
        np.savez_compressed(buf, rolls=rolls, lengths=lengths, ids=np.array(pieces.ids, dtype=str),
                            meta=np.array(json.dumps(meta)))
        tmp.write_bytes(buf.getvalue())

    atomic_write(path, write)


def _load_pieces(path: Path, key: str) -> PieceSet | None:
    """The cached pieces, or None when the file is missing, unreadable or for another key."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != FORMAT_VERSION or meta.get("key") != key:
                return None
            rolls, lengths, ids = z["rolls"], z["lengths"], [str(s) for s in z["ids"]]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("%s: unreadable cache file (%s); building again", path, exc)
        return None
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    split_rolls = [np.ascontiguousarray(rolls[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    return PieceSet(ids, split_rolls, meta["info"], meta["skipped"], meta.get("build_seconds", 0.0),
                    meta.get("music21", ""))


def split_pieces(ids: Sequence[str], fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0,
                 where: str = "scores", groups: Sequence[str] | None = None) -> dict[str, list[int]]:
    """Indices of ``ids`` per split: rank by ``sha256("<seed>:<id>")``, cut at the fractions.

    With ``groups`` (one key per id, see :func:`rnnbench.data.corpus.group_keys`) whole groups
    are ranked by the hash of their key and go to one split together.
    """
    _, fv, ft = fractions
    return split_groups(ids, list(ids) if groups is None else groups, fv, ft, seed, "hash", where, "piece")


@dataclass
class ScoreCorpus(MusicCorpus):
    """A :class:`MusicCorpus` built from scores, with what it was built from."""

    piece_ids: dict[str, list[str]] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    info: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    cache_path: Path | None = None
    from_cache: bool = False
    build_seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        """Totals of what quantisation changed or dropped, over all pieces read."""
        keys = ("notes", "grace_dropped", "short_dropped", "folded", "out_of_range_dropped",
                "repeats_not_expanded", "chord_symbol_notes", "unterminated_notes")
        return {k: int(sum(i.get(k, 0) for i in self.info)) for k in keys}


def _check_fractions(split: Any) -> tuple[float, float, float]:
    if isinstance(split, Mapping):
        try:
            fr = tuple(float(split[s]) for s in SPLITS)
        except (KeyError, TypeError, ValueError):
            fr = None
    else:
        try:
            fr = tuple(float(x) for x in split)
        except (TypeError, ValueError):
            fr = None
    if fr is None or len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1) > 1e-6 or fr[0] <= 0:
        raise ConfigError(f"config value dataset.split={split!r} is invalid: expected fractions "
                          f"{{train: .., valid: .., test: ..}} (or a list of three) that sum to 1, train > 0")
    return fr  # type: ignore[return-value]


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "scores"


@contextlib.contextmanager
def _build_lock(cache_path: Path | None):
    """Let one process build a cache entry while parallel sweep jobs wait for it (POSIX flock)."""
    if cache_path is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, parallel builds just repeat the work
        yield
        return
    try:
        lock = open(cache_path.with_suffix(".lock"), "a")
    except OSError:  # (a read-only cache folder: the build goes on without the lock, and without saving)
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build_score_corpus(
    name: str = "scores",
    *,
    path: str | Path | None = None,
    corpus: str | None = None,
    settings: RollSettings = RollSettings(),
    split: Any = (0.6, 0.2, 0.2),
    split_seed: int = 0,
    split_group: str | None = "none",
    limit: int | None = None,
    dedupe: bool = True,
    cache: bool = True,
    cache_dir: str | Path | None = None,
) -> ScoreCorpus:
    """Build (or load from the cache) the piano-roll corpus of a folder or a music21 corpus selection.

    ``split_group`` (``dataset.split_group``) keeps pieces of one group in one split: a preset
    (``none``, ``stem``, ``folder``, ``auto``) or a regular expression over the piece id
    whose first group is the key (see :func:`rnnbench.data.corpus.group_keys`).
    """
    if (path is None) == (corpus is None):
        raise ConfigError("dataset.path and dataset.corpus: set exactly one (a folder of scores, or a music21 "
                          f"corpus selection such as {', '.join(sorted(NAMED_CORPORA))})")
    fractions = _check_fractions(split)
    if isinstance(split_seed, bool) or not isinstance(split_seed, int):
        raise ConfigError(f"config value dataset.split_seed={split_seed!r} is invalid: expected an integer")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"config value dataset.limit={limit!r} is invalid: expected null or an integer >= 1")
    check_split_group(split_group)
    if corpus is not None:
        root, sources = corpus_sources(str(corpus))
        label = f"music21 corpus {corpus!r}"
    else:
        root, sources = folder_sources(path)
        label = qname(Path(path).expanduser())
    if limit is not None:
        sources = sources[:limit]
    if not sources:
        raise DataError(f"{label}: no score files found (looked for {' '.join(SCORE_SUFFIXES)}, recursively)")

    key = cache_key(sources, settings)
    cache_path = Path(cache_dir or default_cache_dir()) / "scores" / f"{_safe_name(name)}-{key[:16]}.npz"
    if cache:
        try:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # the cache is an optimisation: without it the scores are read every time
            log.warning("%s: cannot create the score cache folder (%s); reading the scores without a cache",
                        qname(cache_path.parent), exc.strerror or exc)
            cache = False
    pieces = _load_pieces(cache_path, key) if cache else None
    from_cache = pieces is not None
    if pieces is None:
        with _build_lock(cache_path if cache else None):
            # another process may have built it while this one waited for the lock
            pieces = _load_pieces(cache_path, key) if cache else None
            from_cache = pieces is not None
            if pieces is None:
                log.info("%s: reading %d files (cache %s)", label, len(sources), cache_path if cache else "off")
                pieces = parse_sources(sources, settings, label)
                if pieces.ids and cache:
                    try:
                        _save_pieces(cache_path, pieces, key, dict(source=label, settings=asdict(settings)))
                    except WriteError as exc:  # (read-only or full: the corpus is built, only not kept)
                        log.warning("%s; the corpus is used without being cached", exc)
                        cache = False
    if not from_cache:
        log.info("%s: %d pieces from %d files in %.1f s, %d skipped", label, len(pieces.ids), len(sources),
                 pieces.build_seconds, len(pieces.skipped))
        notated = [i["id"] for i in pieces.info if i.get("repeats_not_expanded")]
        if notated:
            log.warning("%s: music21 could not write out the repeats of %d piece(s), read as notated: %s%s",
                        label, len(notated), ", ".join(notated[:5]), " ..." if len(notated) > 5 else "")
    else:
        log.info("%s: %d pieces from %d files, from the cache %s (built in %.1f s; %d skipped)", label,
                 len(pieces.ids), len(sources), cache_path, pieces.build_seconds, len(pieces.skipped))
    too_long = [i for i, r in enumerate(pieces.rolls) if len(r) > settings.max_piece_frames]
    if too_long:  # (a cache built before dataset.max_piece_frames existed may hold one)
        gone = set(too_long)
        pieces = PieceSet([x for i, x in enumerate(pieces.ids) if i not in gone],
                          [x for i, x in enumerate(pieces.rolls) if i not in gone],
                          [x for i, x in enumerate(pieces.info) if i not in gone],
                          pieces.skipped + [dict(file=pieces.ids[i], reason=f"{len(pieces.rolls[i]):,} frames long, "
                                                 f"longer than dataset.max_piece_frames={settings.max_piece_frames:,}")
                                            for i in too_long],
                          pieces.build_seconds, pieces.music21)
    log_skipped(log, label, pieces.skipped)  # every use, cache hit or not
    if not pieces.ids:
        shown = "; ".join(f"{qname(s['file'])}: {s['reason']}" for s in pieces.skipped[:5])
        raise DataError(f"{label}: no usable piece in {len(sources)} score file(s)"
                        + (f" (skipped: {shown}{' ...' if len(pieces.skipped) > 5 else ''})" if shown else ""))

    keep = list(range(len(pieces.ids)))
    duplicates = []
    if dedupe:
        seen: dict[bytes, int] = {}
        keep = []
        for i in sorted(range(len(pieces.ids)), key=lambda i: pieces.ids[i]):
            r = pieces.rolls[i]
            digest = hashlib.sha256(r.tobytes() + str(r.shape).encode()).digest()
            if digest in seen:
                duplicates.append(dict(id=pieces.ids[i], same_as=pieces.ids[seen[digest]]))
            else:
                seen[digest] = i
                keep.append(i)
        if duplicates:
            log.info("%s: %d piece(s) identical to another kept once", label, len(duplicates))
    ids = [pieces.ids[i] for i in keep]
    keys, rule = group_keys(ids, split_group, label)
    if rule != "none":
        log.info("%s: split by dataset.split_group=%s: %d pieces in %d groups", label,
                 split_group if split_group == rule else f"{split_group} ({rule})", len(ids), len(set(keys)))
    where = f"{label} ({len(sources)} file(s), {len(pieces.skipped)} skipped, {len(duplicates)} duplicate(s))"
    parts = split_pieces(ids, fractions, int(split_seed), where, keys)
    splits = {s: [pieces.rolls[keep[j]] for j in parts[s]] for s in SPLITS}
    piece_ids = {s: [ids[j] for j in parts[s]] for s in SPLITS}
    return ScoreCorpus(name=name, splits=splits, source=root, piece_ids=piece_ids, skipped=pieces.skipped,
                       duplicates=duplicates, info=pieces.info, settings=asdict(settings),
                       cache_path=cache_path if cache else None, from_cache=from_cache,
                       build_seconds=pieces.build_seconds)


def _cfg_get(dataset: Mapping, key: str, default=None):
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(dataset, DictConfig) and key in dataset.keys() and OmegaConf.is_missing(dataset, key):
        raise ConfigError(f"config value dataset.{key} is missing (???): expected "
                          + ("the folder of MIDI/MusicXML/ABC files, e.g. dataset.path=/my/scores"
                             if key == "path" else "a value"))
    value = dataset.get(key, default)
    if isinstance(value, (DictConfig, ListConfig)):  # plain Python values
        value = OmegaConf.to_container(value, resolve=True)
    return value


@register_dataset_kind("scores")
def _scores_from_config(dataset: Mapping, data_root=None) -> ScoreCorpus:
    """``dataset.kind=scores``: a folder of scores (``path``) or a music21 corpus selection (``corpus``)."""
    get = lambda k, d=None: _cfg_get(dataset, k, d)  # noqa: E731
    settings = RollSettings(
        step=get("step", 1.0), quantize=get("quantize", "sample"), out_of_range=get("out_of_range", "fold"),
        transpose=get("transpose", None), tonic=get("tonic", "profile"), chord_symbols=get("chord_symbols", "ignore"),
        expand_repeats=get("expand_repeats", True), trim=get("trim", True),
        max_piece_frames=get("max_piece_frames", MAX_PIECE_FRAMES),
    )
    return build_score_corpus(
        str(get("name", "scores")), path=get("path"), corpus=get("corpus"), settings=settings,
        split=get("split", (0.6, 0.2, 0.2)), split_seed=get("split_seed", 0),
        split_group=get("split_group", "none"), limit=get("limit"),
        dedupe=bool(get("dedupe", True)), cache=bool(get("cache", True)),
    )
