"""Scores to notes to 88-key piano rolls, and piano rolls back to MIDI.

A piece's notes are an array ``(N, 3)`` [onset, duration, midi] in quarter lengths, read from a
MIDI file by :mod:`rnnbench.data.midi` or from MusicXML / ABC / Humdrum by music21
(:func:`read_notes`); :func:`notes_to_frames` turns them into a ``uint8`` ``(T, 88)`` roll
(column ``j`` = MIDI note ``21 + j``, the convention of :mod:`rnnbench.data.music`) under the
:class:`RollSettings` (``dataset.step``, ``quantize``, ...); :func:`roll_to_midi` writes a roll
back as a MIDI file.  Building a corpus from many files is :mod:`rnnbench.data.scores`.

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
    MIDI files are read by :func:`rnnbench.data.midi.read_midi` (rnnbench's own reader of the
    bytes) and :func:`rnnbench.data.midi.pair_notes` (the note-pairing rules are there).
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

Length (``dataset.max_piece_frames``, default :data:`MAX_PIECE_FRAMES`)
    A longer piece raises :class:`SkipPiece` (skipped by name), checked before its roll is
    allocated.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..fileio import atomic_write
from .midi import MIDI_SUFFIXES, midi_notes
from .music import LOWEST_MIDI, N_KEYS

log = logging.getLogger("rnnbench.data.rolls")

EPS = 1e-6  # quarter lengths: onsets/offsets this close to a frame boundary count as on it
QUANTIZE_MODES = ("sample", "overlap")
OUT_OF_RANGE = ("fold", "drop")
TRANSPOSE = (None, "C")
TONIC_METHODS = ("profile", "final_bass")
CHORD_SYMBOLS = ("ignore", "realize")

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



# --------------------------------------------------------------------------- reading scores into notes

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
    return [notes for notes, _ in read_pieces(Path(path), settings)]


def read_pieces(path: Path, settings: RollSettings) -> list[tuple[np.ndarray, dict]]:
    """The pieces of one file, each its note array and what reading it noted (``unterminated_notes``,
    ``repeats_not_expanded``, ``chord_symbol_notes``); raises whatever the parser raises."""
    if path.suffix.lower() in MIDI_SUFFIXES:
        return midi_notes(path)
    from music21 import converter, stream

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = converter.parse(str(path), forceSource=True)
        if isinstance(parsed, stream.Opus):
            scores = list(parsed.scores)
        else:
            scores = [parsed]
        return [_score_notes(s, settings) for s in scores]


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
