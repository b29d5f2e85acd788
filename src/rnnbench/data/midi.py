"""Standard MIDI Files read from their bytes: the note events of every track, paired into notes.

rnnbench reads MIDI itself (:func:`read_midi`, then :func:`pair_notes`) rather than through
music21's stream conversion (which re-quantises and merges) or mido (which reads a track
without an end-of-track event, a realtime status byte or a 5-byte length as if it were whole,
and gives a truncated file only a bare ``EOFError``: see docs/scores.md, "MIDI files").

Reading
    Every chunk length is checked against the file size, every event against its chunk, and
    every track must end with an end-of-track event: a truncated or damaged file raises
    :class:`MidiError` saying where, never read as a shorter piece.  Chunks of other types
    than ``MTrk`` are skipped, as the standard asks; so are bytes after the last track.
    Format 2 files and SMPTE (seconds-based) timing are refused.

Pairing
    A note-on and a note-off of one pitch and channel at the same tick are a zero-length note
    in either order (music21 writes chord symbols and grace notes as note-off then note-on;
    such notes are dropped like grace notes), overlapping notes of one pitch end in the order
    they began, and a note never switched off lasts to the end of its track (counted as
    ``unterminated_notes``).  Channel 10 (drums) is left out.  Onsets and durations are ticks
    divided by the file's ticks per quarter note (tempo ignored: musical time, not seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError

# Version of the MIDI reader, part of the cache key of sources that hold MIDI files only (so that
# caches of MusicXML/ABC/krn corpora, the chorales among them, stay valid).  2: rnnbench's own
# Standard MIDI File reader (zero-length notes, chunk and end-of-track checks).
MIDI_READER_VERSION = 2
MIDI_SUFFIXES = (".mid", ".midi")


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


def midi_notes(path: Path) -> list[tuple[np.ndarray, dict]]:
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

