"""Piano-roll corpora built from scores: a folder of MIDI / MusicXML / ABC files, or music21's corpus.

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

Frames (``dataset.step``, in quarter lengths; default 1.0 = one frame per quarter note,
the time step of the JSB benchmark)
    Frame ``t`` starts at time ``t * step``.  ``quantize=sample`` (default) switches a key on
    at frame ``t`` when a note of that pitch sounds at the instant ``t * step`` (onset <= t*step
    < onset + duration, with a 1e-6 quarter-length tolerance): what the roll of JSB shows.
    A note that covers no sampling instant (an off-beat eighth at step 1) is dropped and
    counted (``short_dropped``).  ``quantize=overlap`` switches the key on at every frame the
    note overlaps, so no note is lost (but a short note fills a whole frame).
    Durations come from the score (MIDI: note-on to note-off in ticks, tempo ignored: frames are
    musical time, not seconds).  Ties need no special treatment: a tied note and its
    continuation cover the same frames as one long note.  A roll marks sounding keys, not onsets,
    so a re-struck key and a held key look the same.  Grace notes (no duration) are dropped and
    counted.  Chords give one key per pitch.  All parts (MIDI: all tracks and channels except
    channel 10, drums) are merged into one roll.  Unpitched notes are ignored.  Leading
    silence before the first note is cut (``trim``, default true); the roll ends with the last
    note.
    MIDI files are read by :func:`read_midi` (rnnbench's own reader of the bytes) and
    :func:`pair_notes`: a note-on and a note-off of one pitch and channel at the same tick are a
    zero-length note in either order (music21 writes chord symbols and grace notes as note-off
    then note-on; such notes are dropped like grace notes), overlapping notes of one pitch end
    in the order they began, and a note never switched off lasts to the end of its track
    (counted as ``unterminated_notes``).  Every chunk length is checked against the file size,
    every event against its chunk, and every track must end with an end-of-track event: a
    truncated or damaged file is skipped with the reason, never read as a shorter piece.
    ABC chord symbols ("Am", "D7") are ignored by default; ``chord_symbols=realize`` plays each
    one (music21's voicing) until the next chord symbol or the end of the piece, as the
    Nottingham benchmark does with its accompaniment (a MIDI file has no chord symbols to
    realise).
    Repeats (``expand_repeats``, default true): written out, in every format.  A MIDI file
    holds the music as played, repeats already written out; MusicXML, ABC and Humdrum are
    expanded by music21 (when it can; otherwise the piece is read as notated and counted as
    ``repeats_not_expanded``, with a warning).  ``expand_repeats=false`` reads the notated
    formats as notated; it cannot fold a MIDI file's repeats back.

Transposition (``dataset.transpose``)
    ``null`` keeps the pitches.  ``C`` moves each piece's tonic to C (major pieces to C major,
    minor ones to C minor), by the smallest shift (-5..+6 semitones) -- the JSB benchmark is
    stored that way.  ``dataset.tonic`` says how the tonic is found: ``profile`` (default)
    estimates the key with the Krumhansl-Schmuckler method on the duration-weighted pitch
    classes (Krumhansl-Kessler profiles); ``final_bass`` takes the lowest note of the last
    sounding chord (right for chorales, which end on the tonic; it reproduces JSB's shift for
    92% of the chorales both hold, the profile method for 78%).

Notes outside the 88 keys (MIDI 21..108)
    ``out_of_range=fold`` (default) moves them by octaves into the range (counted as
    ``folded``); ``drop`` drops them (counted as ``out_of_range_dropped``).

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
import math
import re
import time
import zipfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigError, DataError, WriteError, qname
from ..fileio import atomic_write
from .corpus import SPLITS, check_split_group, group_keys, log_skipped, register_dataset_kind, split_groups
from .music import LOWEST_MIDI, N_KEYS, MusicCorpus
from .sources import default_cache_dir

log = logging.getLogger("rnnbench.data.scores")

FORMAT_VERSION = 1
# Version of the MIDI reader, part of the cache key of sources that hold MIDI files only (so that
# caches of MusicXML/ABC/krn corpora, the chorales among them, stay valid).  2: rnnbench's own
# Standard MIDI File reader (zero-length notes, chunk and end-of-track checks).
MIDI_READER_VERSION = 2
MIDI_SUFFIXES = (".mid", ".midi")
SCORE_SUFFIXES = MIDI_SUFFIXES + (".xml", ".musicxml", ".mxl", ".abc", ".krn")
EPS = 1e-6  # quarter lengths: onsets/offsets this close to a frame boundary count as on it
QUANTIZE_MODES = ("sample", "overlap")
OUT_OF_RANGE = ("fold", "drop")
TRANSPOSE = (None, "C")
TONIC_METHODS = ("profile", "final_bass")
CHORD_SYMBOLS = ("ignore", "realize")

# Named selections of music21's corpus (paths relative to its root; see corpus_sources()).
NAMED_CORPORA = {
    "bach_chorales": "Bach's four-part chorales in Riemenschneider's numbering (music21 chorales.Iterator)",
    "oneills1850": "O'Neill's Music of Ireland (1850), ABC, melodies",
    "essen_folksong": "the Essen folk-song collection, ABC, melodies",
    "ryans_mammoth": "Ryan's Mammoth Collection, ABC, melodies",
}
_NAMED_FOLDERS = {"oneills1850": "oneills1850", "essen_folksong": "essenFolksong", "ryans_mammoth": "ryansMammoth"}

# Krumhansl & Kessler (1982) key profiles, tonic first.
_KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


# The longest piece kept, in frames (dataset.max_piece_frames).  A few bytes of MIDI can announce
# hundreds of millions of ticks; such a piece is skipped by name before its roll is allocated.
# 100,000 frames is some 7 hours of quarter notes at 240 per minute, 88 bytes a frame (8.8 MB).
MAX_PIECE_FRAMES = 100_000


class SkipPiece(Exception):
    """A piece (or file) that is read but holds nothing usable."""


# --------------------------------------------------------------------------- settings

@dataclass(frozen=True)
class RollSettings:
    """How scores become frames; every field is part of the cache key."""

    step: float = 1.0
    quantize: str = "sample"
    out_of_range: str = "fold"
    transpose: str | None = None
    tonic: str = "profile"
    chord_symbols: str = "ignore"
    expand_repeats: bool = True
    trim: bool = True
    max_piece_frames: int = MAX_PIECE_FRAMES

    def __post_init__(self):
        def bad(key, value, what):
            raise ConfigError(f"config value dataset.{key}={value!r} is invalid: expected {what}")

        if isinstance(self.step, bool) or not isinstance(self.step, (int, float)) or not (
                math.isfinite(self.step) and self.step > 0):
            bad("step", self.step, "a positive number of quarter lengths per frame (1.0 = one frame per quarter note)")
        if self.quantize not in QUANTIZE_MODES:
            bad("quantize", self.quantize, f"one of {QUANTIZE_MODES}")
        if self.out_of_range not in OUT_OF_RANGE:
            bad("out_of_range", self.out_of_range, f"one of {OUT_OF_RANGE}")
        if self.transpose not in TRANSPOSE:
            bad("transpose", self.transpose, "null (keep the pitches) or 'C' (tonic moved to C)")
        if self.tonic not in TONIC_METHODS:
            bad("tonic", self.tonic, f"one of {TONIC_METHODS}")
        if self.chord_symbols not in CHORD_SYMBOLS:
            bad("chord_symbols", self.chord_symbols, f"one of {CHORD_SYMBOLS}")
        for key in ("expand_repeats", "trim"):
            if not isinstance(getattr(self, key), bool):
                bad(key, getattr(self, key), "true or false")
        m = self.max_piece_frames
        if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= 2**40:
            bad("max_piece_frames", m, "an integer of frames between 1 and 2**40 (a longer piece is skipped by name)")
        object.__setattr__(self, "step", float(self.step))


# --------------------------------------------------------------------------- notes -> roll

def estimate_key(notes: np.ndarray) -> tuple[int, str]:
    """Tonic pitch class (0 = C) and mode of a note array ``(N, 3)`` [onset, duration, midi].

    Krumhansl-Schmuckler: correlate the duration-weighted pitch-class histogram with the 24
    rotated Krumhansl-Kessler profiles and take the best.
    """
    hist = np.zeros(12)
    np.add.at(hist, notes[:, 2].astype(int) % 12, notes[:, 1])
    if not hist.any():
        return 0, "major"
    best = (-np.inf, 0, "major")
    for mode, profile in (("major", _KK_MAJOR), ("minor", _KK_MINOR)):
        for tonic in range(12):
            r = np.corrcoef(hist, np.roll(profile, tonic))[0, 1]
            if r > best[0]:
                best = (r, tonic, mode)
    return best[1], best[2]


def final_bass(notes: np.ndarray) -> int:
    """Pitch class of the lowest note among those that end last (a chorale's final bass is its tonic)."""
    end = notes[:, 0] + notes[:, 1]
    last = notes[end >= end.max() - EPS]
    return int(last[:, 2].min()) % 12


def transpose_shift(tonic: int) -> int:
    """Semitones that move ``tonic`` to C by the smallest step, in -5..+6."""
    shift = (-tonic) % 12
    return shift - 12 if shift > 6 else shift


def notes_to_frames(notes: np.ndarray, settings: RollSettings) -> tuple[np.ndarray, dict]:
    """Quantise a note array ``(N, 3)`` [onset, duration, midi] (quarter lengths) to a roll.

    Returns the ``(T, 88)`` uint8 roll and counts of what was changed or dropped.  Raises
    :class:`SkipPiece` when no note is left.
    """
    counts = dict(notes=int(len(notes)), grace_dropped=0, short_dropped=0, folded=0, out_of_range_dropped=0,
                  shift=0, key="")
    if len(notes) == 0:
        raise SkipPiece("no pitched notes")
    notes = np.asarray(notes, dtype=np.float64)
    grace = notes[:, 1] <= EPS
    counts["grace_dropped"] = int(grace.sum())
    notes = notes[~grace]
    if len(notes) == 0:
        raise SkipPiece("only grace notes")
    if settings.transpose == "C":
        if settings.tonic == "final_bass":
            tonic = final_bass(notes)
            counts["key"] = f"final bass {PITCH_NAMES[tonic]}"
        else:
            tonic, mode = estimate_key(notes)
            counts["key"] = f"{PITCH_NAMES[tonic]} {mode}"
        counts["shift"] = transpose_shift(tonic)
    step = settings.step
    onset, end = notes[:, 0], notes[:, 0] + notes[:, 1]
    if settings.quantize == "sample":
        first = np.ceil((onset - EPS) / step)
        stop = np.ceil((end - EPS) / step)
        keep = stop > first
        counts["short_dropped"] = int((~keep).sum())
    else:
        first = np.floor((onset + EPS) / step)
        stop = np.maximum(np.ceil((end - EPS) / step), first + 1)
        keep = np.ones(len(notes), dtype=bool)
    if not (np.isfinite(onset).all() and np.isfinite(end).all()):
        raise SkipPiece("a note with a non-finite onset or duration")
    first_f, stop_f = first, stop
    with np.errstate(invalid="ignore"):  # (an absurd value is checked below, before it is used)
        first, stop = first.astype(np.int64), stop.astype(np.int64)
    keys = notes[:, 2].astype(np.int64) + counts["shift"] - LOWEST_MIDI
    outside = (keys < 0) | (keys >= N_KEYS)
    if settings.out_of_range == "fold":
        counts["folded"] = int((outside & keep).sum())
        keys = np.where(keys < 0, keys + 12 * ((-keys + 11) // 12), keys)
        keys = np.where(keys >= N_KEYS, keys - 12 * ((keys - N_KEYS + 12) // 12), keys)
    else:
        counts["out_of_range_dropped"] = int((outside & keep).sum())
        keep &= ~outside
    if not keep.any():
        raise SkipPiece("no note sounds at a frame (all notes shorter than the time step or out of range)")
    span = float(stop_f[keep].max() - (first_f[keep].min() if settings.trim else 0.0))
    if not span <= settings.max_piece_frames:  # (checked in floats, before any integer cast or allocation)
        what = f"{span:,.0f} frames" if math.isfinite(span) else "a non-finite length"
        raise SkipPiece(f"{what} long (its notes span {float(end[keep].max()) - (float(onset[keep].min()) if settings.trim else 0.0):,.6g} "
                        f"quarter notes), longer than dataset.max_piece_frames={settings.max_piece_frames:,}")
    first, stop, keys = first[keep], stop[keep], keys[keep]
    start = int(first.min()) if settings.trim else 0
    roll = np.zeros((int(stop.max()) - start, N_KEYS), dtype=np.uint8)
    for a, b, k in zip(first - start, stop - start, keys):
        roll[a:b, k] = 1
    return roll, counts


# --------------------------------------------------------------------------- reading files

class MidiError(DataError):
    """A MIDI file that is truncated, damaged or of a kind rnnbench does not read."""


@dataclass
class MidiTrackNotes:
    """The note events of one ``MTrk`` chunk: ``(tick, on, channel, pitch)`` in file order, and its length."""

    events: list[tuple[int, bool, int, int]]
    end_tick: int


def _vlq(data: bytes, pos: int, end: int, where: str) -> tuple[int, int]:
    """A variable-length quantity (at most 4 bytes) at ``data[pos]``; the value and the next position."""
    value = 0
    for _ in range(4):
        if pos >= end:
            raise MidiError(f"{where}: a variable-length number runs past the end of the track (truncated or damaged)")
        b = data[pos]
        pos += 1
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            return value, pos
    raise MidiError(f"{where}: a variable-length number longer than 4 bytes (damaged)")


def _read_track(data: bytes, start: int, end: int, k: int) -> MidiTrackNotes:
    """Walk the events of one track chunk ``data[start:end]``, checking every length against the chunk."""
    events: list[tuple[int, bool, int, int]] = []
    pos, tick, status = start, 0, None
    while pos < end:
        where = f"track {k}, byte {pos}"
        delta, pos = _vlq(data, pos, end, where)
        tick += delta
        if pos >= end:
            break  # a delta time with no event: caught below as a missing end of track
        b = data[pos]
        if b == 0xFF:  # meta event: FF type length data
            if pos + 1 >= end:
                raise MidiError(f"{where}: meta event cut off by the end of the track (truncated or damaged)")
            mtype = data[pos + 1]
            length, pos = _vlq(data, pos + 2, end, where)
            if pos + length > end:
                raise MidiError(f"{where}: meta event of {length} bytes runs past the end of the track "
                                f"(truncated or damaged)")
            pos += length
            status = None  # meta events and sysex cancel running status
            if mtype == 0x2F:
                return MidiTrackNotes(events, tick)
            continue
        if b in (0xF0, 0xF7):  # sysex: F0/F7 length data
            length, pos = _vlq(data, pos + 1, end, where)
            if pos + length > end:
                raise MidiError(f"{where}: sysex event of {length} bytes runs past the end of the track "
                                f"(truncated or damaged)")
            pos += length
            status = None
            continue
        if b >= 0xF0:
            raise MidiError(f"{where}: status byte 0x{b:02X} cannot occur in a MIDI file (damaged)")
        if b & 0x80:
            status = b
            pos += 1
        elif status is None:
            raise MidiError(f"{where}: data byte 0x{b:02X} without a status byte (damaged)")
        size = 1 if status & 0xF0 in (0xC0, 0xD0) else 2
        if pos + size > end:
            raise MidiError(f"{where}: channel message cut off by the end of the track (truncated or damaged)")
        body = data[pos:pos + size]
        if any(x & 0x80 for x in body):
            raise MidiError(f"{where}: data byte 0x{max(body):02X} above 0x7F in a channel message (damaged)")
        pos += size
        kind, channel = status & 0xF0, status & 0x0F
        if kind == 0x90:  # note on; velocity 0 means note off
            events.append((tick, body[1] > 0, channel, body[0]))
        elif kind == 0x80:
            events.append((tick, False, channel, body[0]))
    raise MidiError(f"track {k} ends without an end-of-track event (truncated or damaged)")


def read_midi(data: bytes) -> tuple[int, int, list[MidiTrackNotes]]:
    """Format, ticks per quarter note and the tracks of a Standard MIDI File's bytes.

    Every chunk length is checked against the file's size, every event against its chunk,
    and every track must end with an end-of-track event: a truncated or damaged file raises
    :class:`MidiError` saying where, instead of being read as a shorter piece.
    """
    size = len(data)
    if data[:4] != b"MThd":
        raise MidiError("not a MIDI file (it does not start with an MThd header)")
    if size < 14:
        raise MidiError(f"truncated: the MIDI header needs 14 bytes, the file has {size}")
    hlen = int.from_bytes(data[4:8], "big")
    if hlen < 6 or 8 + hlen > size:
        raise MidiError(f"damaged MIDI header: length {hlen} (expected 6, within the file's {size} bytes)")
    fmt, ntracks, division = (int.from_bytes(data[i:i + 2], "big") for i in (8, 10, 12))
    if fmt not in (0, 1, 2):
        raise MidiError(f"damaged MIDI header: format {fmt} (expected 0, 1 or 2)")
    if fmt == 2:
        raise MidiError("MIDI format 2 (independent sequences) is not supported; expected format 0 or 1")
    if division & 0x8000:
        raise MidiError("SMPTE (seconds-based) MIDI timing is not supported; expected ticks per quarter note")
    if division == 0 or ntracks == 0:
        raise MidiError(f"damaged MIDI header: {ntracks} tracks, {division} ticks per quarter note")
    tracks: list[MidiTrackNotes] = []
    pos = 8 + hlen
    while len(tracks) < ntracks:
        if pos + 8 > size:
            raise MidiError(f"truncated: the header announces {ntracks} track(s), the file ends after "
                            f"{len(tracks)} (at byte {size})")
        ctype, clen = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "big")
        if not all(65 <= c <= 90 or 97 <= c <= 122 for c in ctype):
            raise MidiError(f"damaged: no chunk header at byte {pos} (found {bytes(ctype)!r}; expected MTrk)")
        if pos + 8 + clen > size:
            raise MidiError(f"truncated: chunk {ctype.decode()} at byte {pos} announces {clen} bytes, the file "
                            f"holds {size - pos - 8} more")
        if ctype == b"MTrk":
            tracks.append(_read_track(data, pos + 8, pos + 8 + clen, len(tracks) + 1))
        pos += 8 + clen  # chunks of other types are skipped, as the standard asks
    return fmt, division, tracks


def pair_notes(track: MidiTrackNotes) -> tuple[list[tuple[int, int, int]], int]:
    """Notes ``(on tick, off tick, pitch)`` of a track, whatever the order of the events at a tick.

    Notes are keyed by (channel, pitch); at each tick, first the note-offs end notes that
    began before it (the earliest first), then the note-ons begin notes, then the note-offs
    left over end notes that began at this very tick: a note-on and a note-off at the same
    tick is a zero-length note in either order (music21 writes chord symbols and grace notes
    as note-off then note-on).  Overlapping notes of one pitch end in the order they began.
    Notes never switched off last to the end of the track (returned: how many).  Channel 10
    (drums) is left out.
    """
    from collections import deque
    from itertools import groupby

    sounding: dict[tuple[int, int], deque] = {}
    notes: list[tuple[int, int, int]] = []
    for tick, group in groupby((e for e in track.events if e[2] != 9), key=lambda e: e[0]):
        offs: dict[tuple[int, int], int] = {}
        ons: list[tuple[int, int]] = []
        for _, on, channel, pitch in group:
            if on:
                ons.append((channel, pitch))
            else:
                offs[channel, pitch] = offs.get((channel, pitch), 0) + 1
        for key in list(offs):
            q = sounding.get(key)
            while offs[key] and q and q[0] < tick:
                notes.append((q.popleft(), tick, key[1]))
                offs[key] -= 1
        for key in ons:
            sounding.setdefault(key, deque()).append(tick)
        for key, n in offs.items():
            q = sounding.get(key)
            while n and q:  # what is left in q began at this tick
                notes.append((q.popleft(), tick, key[1]))
                n -= 1
    unterminated = 0
    for (_, pitch), q in sounding.items():
        notes.extend((t0, track.end_tick, pitch) for t0 in q)
        unterminated += len(q)
    return notes, unterminated


def _midi_notes(path: Path) -> list[tuple[np.ndarray, dict]]:
    """The one piece of a MIDI file: notes of every track and channel but 10, read event by event.

    Read from the bytes, not through music21's stream conversion, so that nothing is
    re-quantised or merged: onsets and durations are exactly ticks / ticks-per-quarter.
    """
    _, tpq, tracks = read_midi(path.read_bytes())
    rows: list[tuple[float, float, int]] = []
    unterminated = 0
    for track in tracks:
        notes, n = pair_notes(track)
        unterminated += n
        rows.extend((t0 / tpq, (t1 - t0) / tpq, pitch) for t0, t1, pitch in notes)
    rows.sort()
    flags = {"unterminated_notes": unterminated} if unterminated else {}
    return [(np.array(rows, dtype=np.float64).reshape(-1, 3), flags)]


def _has_repeat_marks(score) -> bool:
    """Whether a score holds repeat barlines, volta brackets or jumps (da capo, segno, coda, ...)."""
    from music21 import bar, repeat, spanner

    kinds = (bar.Repeat, spanner.RepeatBracket, repeat.RepeatExpression)
    return next(iter(score.recurse().getElementsByClass(kinds)), None) is not None


def _score_notes(score, settings: RollSettings) -> tuple[np.ndarray, dict]:
    """Notes of one music21 score: every pitch of every note and chord of every part."""
    from music21 import harmony

    flags = {}
    if settings.expand_repeats:
        try:
            score = score.expandRepeats()
        except Exception as exc:  # music21 raises many kinds on odd repeat structures
            log.debug("could not expand repeats: %s", exc)
            if _has_repeat_marks(score):  # (a score without any has nothing to write out)
                flags["repeats_not_expanded"] = 1
    if getattr(score, "atSoundingPitch", True) is False:
        score = score.toSoundingPitch()
    rows, symbols = [], []
    for el in score.flatten().notes:
        if isinstance(el, harmony.ChordSymbol):
            if settings.chord_symbols == "realize":
                symbols.append((float(el.offset), [p.midi for p in el.pitches]))
            continue
        ql = float(el.duration.quarterLength)
        for p in getattr(el, "pitches", ()):
            rows.append((float(el.offset), ql, p.midi))
    notes = np.array(rows, dtype=np.float64).reshape(-1, 3)
    if symbols and len(notes):
        end = float((notes[:, 0] + notes[:, 1]).max())
        symbols.sort(key=lambda s: s[0])
        extra = []
        for i, (off, pitches) in enumerate(symbols):
            stop = symbols[i + 1][0] if i + 1 < len(symbols) else end
            extra.extend((off, stop - off, m) for m in pitches if stop > off)
        notes = np.concatenate([notes, np.array(extra, dtype=np.float64).reshape(-1, 3)])
        flags["chord_symbol_notes"] = len(extra)
    return notes, flags


def read_notes(path: str | Path, settings: RollSettings = RollSettings()) -> list[np.ndarray]:
    """The pieces of one file, each a note array ``(N, 3)`` [onset, duration, midi] in quarter lengths.

    Raises whatever the parser raises on an unreadable file.
    """
    return [notes for notes, _ in _read_pieces(Path(path), settings)]


def _read_pieces(path: Path, settings: RollSettings) -> list[tuple[np.ndarray, dict]]:
    if path.suffix.lower() in MIDI_SUFFIXES:
        return _midi_notes(path)
    from music21 import converter, stream

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = converter.parse(str(path), forceSource=True)
        if isinstance(parsed, stream.Opus):
            scores = list(parsed.scores)
        else:
            scores = [parsed]
        return [_score_notes(s, settings) for s in scores]


def _parse_source(path: Path, rel: str, settings: RollSettings) -> tuple[list[tuple[str, np.ndarray, dict]], list[dict]]:
    """Rolls of every piece of one file, and the pieces of it that were skipped."""
    pieces, skipped = [], []
    all_notes = _read_pieces(path, settings)
    for k, (notes, flags) in enumerate(all_notes, start=1):
        pid = rel if len(all_notes) == 1 else f"{rel}#{k}"
        try:
            roll, counts = notes_to_frames(notes, settings)
        except SkipPiece as exc:
            skipped.append(dict(file=pid, reason=str(exc)))
            continue
        pieces.append((pid, roll, {**counts, **flags}))
    return pieces, skipped


def score_to_roll(path: str | Path, step: float = 1.0, length: int | None = None, **settings) -> np.ndarray:
    """The roll of a single-piece file (all parts merged); ``length`` pads or cuts it to that many frames.

    ``settings`` are the :class:`RollSettings` fields (``quantize``, ``trim``, ...).
    """
    rs = RollSettings(step=step, **settings)
    pieces = read_notes(path, rs)
    if len(pieces) != 1:
        raise DataError(f"{path}: holds {len(pieces)} pieces; expected one (use a dataset to read collections)")
    try:
        roll, _ = notes_to_frames(pieces[0], rs)
    except SkipPiece as exc:
        roll = np.zeros((0, N_KEYS), dtype=np.uint8)
        if length is None:
            raise DataError(f"{path}: {exc}") from exc
    if length is not None:
        out = np.zeros((length, N_KEYS), dtype=np.uint8)
        out[: min(length, len(roll))] = roll[:length]
        roll = out
    return roll


# --------------------------------------------------------------------------- roll -> MIDI

def roll_to_stream(roll: np.ndarray, step: float = 1.0, tempo: float = 120.0):
    """A music21 Score with one piano part: every run of 1s in a key's column is one note.

    Frame ``t`` starts at ``t * step`` quarter lengths; ``tempo`` is quarter notes per minute.
    """
    from music21 import instrument, note, stream
    from music21 import tempo as m21tempo

    roll = np.asarray(roll)
    if roll.ndim != 2 or roll.shape[1] != N_KEYS:
        raise DataError(f"expected a (T, {N_KEYS}) piano roll, found shape {roll.shape}")
    part = stream.Part()
    part.insert(0, instrument.Piano())
    part.insert(0, m21tempo.MetronomeMark(number=tempo))
    padded = np.zeros((len(roll) + 2, N_KEYS), dtype=np.int8)
    padded[1:-1] = roll != 0
    edges = np.diff(padded, axis=0)
    for j in range(N_KEYS):
        for a, b in zip(np.flatnonzero(edges[:, j] == 1), np.flatnonzero(edges[:, j] == -1)):
            n = note.Note(midi=LOWEST_MIDI + j)
            n.quarterLength = float((b - a) * step)
            part.insert(float(a * step), n)
    score = stream.Score()
    score.insert(0, part)
    return score


def roll_to_midi(roll: np.ndarray, path: str | Path, step: float = 1.0, tempo: float = 120.0) -> Path:
    """Write ``roll`` as a MIDI file (write then rename).  Inverse of :func:`score_to_roll`.

    ``score_to_roll(roll_to_midi(roll, p, step), step, length=len(roll), trim=False)`` gives
    ``roll`` back exactly (a key held over consecutive frames is one note).
    """
    from music21 import midi

    mf = midi.translate.streamToMidiFile(roll_to_stream(roll, step, tempo))
    data = mf.writestr()
    return atomic_write(path, lambda p: p.write_bytes(data))


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
