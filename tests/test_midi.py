"""rnnbench's MIDI reader on files written byte by byte: event order at a tick, overlaps, running
status, tracks and channels, damaged files; and MIDI against MusicXML exported by music21."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

from rnnbench.data import midi, rolls, scores as sc
from rnnbench.errors import ConfigError, DataError

TPQ = 480  # ticks per quarter note in the files built here


# --------------------------------------------------------------------------- writing MIDI bytes

def vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def on(pitch, ch=0, vel=90):
    return bytes([0x90 | ch, pitch, vel])


def off(pitch, ch=0, vel=0x40):
    return bytes([0x80 | ch, pitch, vel])


TEMPO = b"\xff\x51\x03\x07\xa1\x20"  # 120 quarter notes per minute
EOT = b"\xff\x2f\x00"


def track(*events, eot=True) -> bytes:
    """An MTrk chunk from ``(absolute tick, event bytes)`` pairs (kept in the given order)."""
    body, now = b"", 0
    for tick, ev in events:
        body += vlq(tick - now) + ev
        now = tick
    if eot:
        body += vlq(0) + EOT
    return b"MTrk" + len(body).to_bytes(4, "big") + body


def smf(*tracks: bytes, fmt=None, tpq=TPQ, ntracks=None) -> bytes:
    fmt = (0 if len(tracks) == 1 else 1) if fmt is None else fmt
    n = len(tracks) if ntracks is None else ntracks
    return b"MThd" + (6).to_bytes(4, "big") + fmt.to_bytes(2, "big") + n.to_bytes(2, "big") \
        + tpq.to_bytes(2, "big") + b"".join(tracks)


def notes_of(tmp_path, data: bytes, name="t.mid"):
    path = tmp_path / name
    path.write_bytes(data)
    (notes,) = rolls.read_notes(path)
    return sorted((float(a), float(b), int(c)) for a, b, c in notes)


def roll_rows(tmp_path, data: bytes, name="t.mid", **kw):
    path = tmp_path / name
    path.write_bytes(data)
    roll = rolls.score_to_roll(path, **kw)
    return [sorted(int(j) + 21 for j in np.flatnonzero(r)) for r in roll]


# --------------------------------------------------------------------------- event order

@pytest.mark.parametrize("order", ["off-on", "on-off"])
def test_zero_length_note_at_one_tick_is_dropped_in_either_order(order, tmp_path):
    """music21 writes chord symbols and grace notes as a note-off then a note-on at one tick."""
    zero = [(TPQ, off(64)), (TPQ, on(64))] if order == "off-on" else [(TPQ, on(64)), (TPQ, off(64))]
    data = smf(track((0, on(60)), (TPQ, off(60)), *zero, (TPQ, on(67)), (2 * TPQ, off(67)),
                     (2 * TPQ, on(72)), (4 * TPQ, off(72))))
    assert notes_of(tmp_path, data) == [(0, 1, 60), (1, 0, 64), (1, 1, 67), (2, 2, 72)]
    assert roll_rows(tmp_path, data) == [[60], [67], [72], [72]]  # 64 never sounds
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "a.mid").write_bytes(data)
    path = folder / "a.mid"
    (piece,) = sc._parse_source(path, "a.mid", rolls.RollSettings())[0]
    assert piece[2]["grace_dropped"] == 1 and "unterminated_notes" not in piece[2]


def test_zero_length_note_inside_a_held_note_of_the_same_pitch(tmp_path):
    held = [(0, on(60)), (3 * TPQ, off(60))]
    for zero in ([(TPQ, off(60)), (TPQ, on(60))], [(TPQ, on(60)), (TPQ, off(60))]):
        data = smf(track(*sorted(held + zero, key=lambda e: e[0])))
        assert roll_rows(tmp_path, data) == [[60], [60], [60]]


@pytest.mark.parametrize("order", ["off-on", "on-off"])
def test_re_struck_key_at_one_tick(order, tmp_path):
    again = [(TPQ, off(60)), (TPQ, on(60))] if order == "off-on" else [(TPQ, on(60)), (TPQ, off(60))]
    data = smf(track((0, on(60)), *again, (3 * TPQ, off(60))))
    assert notes_of(tmp_path, data) == [(0, 1, 60), (1, 2, 60)]
    assert roll_rows(tmp_path, data) == [[60], [60], [60]]


def test_overlapping_notes_of_one_pitch_end_in_the_order_they_began(tmp_path):
    data = smf(track((0, on(60)), (TPQ // 2, on(60)), (TPQ, off(60)), (2 * TPQ, off(60)), (3 * TPQ, on(62)),
                     (4 * TPQ, off(62))))
    assert notes_of(tmp_path, data) == [(0, 1, 60), (0.5, 1.5, 60), (3, 1, 62)]
    assert roll_rows(tmp_path, data) == [[60], [60], [], [62]]


def test_running_status_and_velocity_zero_note_offs(tmp_path):
    body = (vlq(0) + b"\x90\x3c\x50" + vlq(0) + b"\x40\x50"  # note on 60, then 64 in running status
            + vlq(TPQ) + b"\x3c\x00" + vlq(0) + b"\x40\x00"  # both off as velocity-0 note-ons
            + vlq(0) + b"\xc0\x05"  # program change (one data byte), then running status again
            + vlq(0) + b"\x07" + vlq(TPQ) + b"\x90\x43\x40" + vlq(TPQ) + b"\x43\x00" + vlq(0) + EOT)
    data = smf(b"MTrk" + len(body).to_bytes(4, "big") + body)
    # running status after the program change is a program change (0x07), not a note
    assert notes_of(tmp_path, data) == [(0, 1, 60), (0, 1, 64), (2, 1, 67)]


def test_tracks_and_channels_are_merged_but_kept_apart_while_pairing(tmp_path):
    conductor = track((0, TEMPO))
    # the same pitch on two channels: the note-off of channel 1 does not end channel 0's note
    strings = track((0, on(60, ch=0)), (TPQ, on(60, ch=1)), (2 * TPQ, off(60, ch=1)), (4 * TPQ, off(60, ch=0)))
    # another track, same pitch, channel 0 again: its note-off does not end the first track's note
    winds = track((0, on(60, ch=0)), (TPQ // 2, off(60, ch=0)), (TPQ, on(72, ch=2)), (2 * TPQ, off(72, ch=2)))
    drums = track((0, on(36, ch=9)), (4 * TPQ, off(36, ch=9)))  # channel 10: ignored
    data = smf(conductor, strings, winds, drums)
    assert notes_of(tmp_path, data) == [(0, 0.5, 60), (0, 4, 60), (1, 1, 60), (1, 1, 72)]
    assert roll_rows(tmp_path, data) == [[60], [60, 72], [60], [60]]
    # format 0: one track, several channels
    one = smf(track((0, on(60, ch=0)), (0, on(64, ch=3)), (TPQ, off(64, ch=3)), (2 * TPQ, off(60, ch=0))))
    assert notes_of(tmp_path, one) == [(0, 1, 64), (0, 2, 60)]


def test_note_never_switched_off_lasts_to_the_end_of_its_track_and_is_counted(tmp_path):
    data = smf(track((0, on(60)), (TPQ, on(64)), (2 * TPQ, off(64)), (3 * TPQ, TEMPO)))
    assert notes_of(tmp_path, data) == [(0, 3, 60), (1, 1, 64)]
    path = tmp_path / "u.mid"
    path.write_bytes(data)
    (piece,) = sc._parse_source(path, "u.mid", rolls.RollSettings())[0]
    assert piece[2]["unterminated_notes"] == 1


def test_other_chunks_and_bytes_after_the_last_track_are_skipped(tmp_path):
    alien = b"XFIH" + (3).to_bytes(4, "big") + b"abc"
    data = smf(track((0, on(60)), (TPQ, off(60))))
    data = data[:14] + alien + data[14:] + b"\x00\x00"
    assert notes_of(tmp_path, data) == [(0, 1, 60)]


# --------------------------------------------------------------------------- damaged files

def good_file() -> bytes:
    conductor = track((0, TEMPO), (0, b"\xff\x03\x04name"))
    piano = track((0, on(60)), (0, on(64)), (TPQ, off(64)), (2 * TPQ, off(60)), (2 * TPQ, b"\xf0\x03\x7e\x7f\xf7"),
                  (2 * TPQ, on(67)), (4 * TPQ, off(67)))
    return smf(conductor, piano)


def test_every_truncation_of_a_file_is_refused_never_read_short(tmp_path):
    data = good_file()
    assert len(notes_of(tmp_path, data)) == 3
    for cut in range(len(data)):
        with pytest.raises(midi.MidiError):
            midi.read_midi(data[:cut])


@pytest.mark.parametrize("damage, message", [
    (lambda d: b"RIFF" + d[4:], "not a MIDI file"),
    (lambda d: d[:8] + b"\x00\x02" + d[10:], "format 2"),
    (lambda d: d[:12] + b"\xe7\x28" + d[14:], "SMPTE"),
    (lambda d: d[:10] + b"\x00\x03" + d[12:], "announces 3 track"),
    (lambda d: d[:14] + b"MTrx" + d[18:], None),  # an unknown chunk instead of the first track: one track short
    (lambda d: d[:14] + b"\x00\x01\x02\x03" + d[18:], "no chunk header"),
])
def test_damaged_headers_are_refused(damage, message, tmp_path):
    with pytest.raises(midi.MidiError, match=message or "announces 2 track"):
        midi.read_midi(damage(good_file()))


def test_damaged_tracks_are_refused(tmp_path):
    no_eot = smf(track((0, on(60)), (TPQ, off(60)), eot=False))
    with pytest.raises(midi.MidiError, match="track 1 ends without an end-of-track event"):
        midi.read_midi(no_eot)
    with pytest.raises(midi.MidiError, match="without a status byte"):
        midi.read_midi(smf(track((0, b"\x3c\x40"))))
    with pytest.raises(midi.MidiError, match="above 0x7F"):
        midi.read_midi(smf(track((0, b"\x90\x3c\x90"))))
    with pytest.raises(midi.MidiError, match="cannot occur in a MIDI file"):
        midi.read_midi(smf(track((0, b"\xf8"))))
    with pytest.raises(midi.MidiError, match="longer than 4 bytes"):
        midi.read_midi(smf(track((0, on(60)))[:8] + b"\xff\xff\xff\xff\x7f" + smf(track())[22:]))
    # a track chunk whose length is too short for its events: cut off inside a message
    chunk = track((0, on(60)), (TPQ, off(60)))
    short = b"MTrk" + (len(chunk) - 8 - 5).to_bytes(4, "big") + chunk[8:-5]
    with pytest.raises(midi.MidiError):
        midi.read_midi(smf(short))


def test_truncated_file_in_a_folder_is_skipped_by_name_and_logged_every_time(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("RNNBENCH_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "midi"
    folder.mkdir()
    for k in range(4):
        (folder / f"p{k}.mid").write_bytes(smf(track((0, on(60 + k)), (8 * TPQ, off(60 + k)))))
    whole = good_file()
    (folder / "cut.mid").write_bytes(whole[: len(whole) // 3 * 2])
    (folder / "noise.mid").write_bytes(bytes(range(256)))
    for attempt in range(2):  # built, then from the cache: the same list, the same warning
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="rnnbench.data.scores"):
            corpus = sc.build_score_corpus("m", path=folder)
        assert corpus.from_cache == bool(attempt)
        assert sorted(sum(corpus.piece_ids.values(), [])) == [f"p{k}.mid" for k in range(4)]
        reasons = {s["file"]: s["reason"] for s in corpus.skipped}
        assert set(reasons) == {"cut.mid", "noise.mid"}
        assert reasons["cut.mid"].startswith("truncated") and "not a MIDI file" in reasons["noise.mid"]
        warnings_ = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings_) == 1 and "2 file(s) skipped" in warnings_[0].getMessage()
        assert "cut.mid" in warnings_[0].getMessage() and "noise.mid" in warnings_[0].getMessage()


# --------------------------------------------------------------------------- against MusicXML

def two_formats(score, folder, stem):
    """music21's own MIDI and MusicXML exports of one score."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score.write("midi", fp=str(folder / f"{stem}.mid"))
        score.write("musicxml", fp=str(folder / f"{stem}.musicxml"))
    return folder / f"{stem}.mid", folder / f"{stem}.musicxml"


def test_grace_notes_chord_symbols_and_repeats_match_musicxml(tmp_path):
    """A hand-made score with what music21 writes to MIDI as zero-length notes, and a repeat."""
    from music21 import bar, harmony, meter, note, stream

    part = stream.Part()
    m1, m2, m3 = stream.Measure(number=1), stream.Measure(number=2), stream.Measure(number=3)
    m1.append(meter.TimeSignature("4/4"))
    m1.leftBarline = bar.Repeat(direction="start")
    m1.insert(0, harmony.ChordSymbol("C"))
    for p in ("C4", "E4"):
        m1.append(note.Note(p, quarterLength=2))
    grace = note.Note("D5").getGrace()
    m2.insert(0, harmony.ChordSymbol("G7"))
    m2.append(grace)
    m2.append(note.Note("G4", quarterLength=4))
    m2.rightBarline = bar.Repeat(direction="end")
    m3.append(note.Note("C5", quarterLength=4))
    for m in (m1, m2, m3):
        part.append(m)
    score = stream.Score([part])
    mid, xml = two_formats(score, tmp_path, "made")
    expected = [[60], [60], [64], [64], [67], [67], [67], [67]] * 2 + [[72]] * 4  # written out
    assert roll_rows(tmp_path, mid.read_bytes(), "made.mid") == expected
    assert [sorted(int(j) + 21 for j in np.flatnonzero(r)) for r in rolls.score_to_roll(xml)] == expected
    notated = rolls.score_to_roll(xml, expand_repeats=False)
    assert len(notated) == 12  # as notated: what only a notated format can give


# Small pieces of music21's corpus: four parts (a chorale), repeats and chord symbols (a lead sheet), five
# voices with a chord symbol (a madrigal; before rnnbench read MIDI itself its chord symbol sounded to the end).
CORPUS_PIECES = ["bach/bwv66.6", "leadSheet/fosterBrownHair", "monteverdi/madrigal.3.15"]


@pytest.mark.parametrize("name", CORPUS_PIECES)
def test_music21_corpus_pieces_give_the_same_roll_from_midi_and_musicxml(name, tmp_path):
    from music21 import corpus

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        score = corpus.parse(name)
    mid, xml = two_formats(score, tmp_path, name.replace("/", "_"))
    (from_midi,), (from_xml,) = rolls.read_notes(mid), rolls.read_notes(xml)  # repeats written out (the default)
    for settings in (dict(step=1.0), dict(step=0.25), dict(step=0.5, quantize="overlap")):
        a = rolls.notes_to_frames(from_midi, rolls.RollSettings(**settings))[0]
        b = rolls.notes_to_frames(from_xml, rolls.RollSettings(**settings))[0]
        np.testing.assert_array_equal(a, b, err_msg=f"{name} {settings}")
    assert a.sum() > 100


# --------------------------------------------------------------------------- absurd lengths

def test_a_midi_file_announcing_an_absurd_length_is_skipped_before_allocating(tmp_path, monkeypatch):
    """Forty bytes of MIDI whose one note lasts 200 million ticks (416,667 quarter notes) would be
    a roll of 37 MB and dominate its split: skipped by name with its length and the limit
    (dataset.max_piece_frames), before any roll is allocated; the other pieces are read."""
    folder = tmp_path / "scores"
    folder.mkdir()
    absurd = smf(track((0, on(60)), (200_000_000, off(60))))
    assert len(absurd) < 50
    (folder / "absurd.mid").write_bytes(absurd)
    for i in range(5):
        (folder / f"ok{i}.mid").write_bytes(smf(track((0, on(60 + i)), (TPQ * 8, off(60 + i)))))
    allocated = []
    real_zeros = np.zeros
    monkeypatch.setattr(rolls.np, "zeros", lambda shape, *a, **k: allocated.append(shape) or real_zeros(shape, *a, **k))
    corpus = sc.build_score_corpus("t", path=folder, cache=False, split=[0.6, 0.2, 0.2])
    assert not [s for s in allocated if isinstance(s, tuple) and s and s[0] > 100_000]
    (skip,) = corpus.skipped
    assert skip == {"file": "absurd.mid", "reason": "416,667 frames long (its notes span 416,667 quarter notes), "
                                                    "longer than dataset.max_piece_frames=100,000"}
    assert sum(len(v) for v in corpus.piece_ids.values()) == 5
    # the limit is a setting: raised, the piece is read (at eight quarter notes per frame: 52,084 frames)
    wide = sc.build_score_corpus("t", path=folder, cache=False, settings=rolls.RollSettings(step=8.0))
    assert wide.skipped == [] and max(wide.lengths("train") + wide.lengths("valid") + wide.lengths("test")) == 52_084
    with pytest.raises(ConfigError, match="dataset.max_piece_frames=0 is invalid"):
        rolls.RollSettings(max_piece_frames=0)


def test_the_piece_limit_is_a_dataset_setting_and_keeps_the_default_cache_key(tmp_path):
    from hydra import compose, initialize_config_dir

    from conftest import REPO

    (tmp_path / "a.mid").write_bytes(smf(track((0, on(60)), (TPQ * 30, off(60)))))
    src = [("a.mid", tmp_path / "a.mid")]
    assert sc.cache_key(src, rolls.RollSettings()) == sc.cache_key(src, rolls.RollSettings(max_piece_frames=100_000))
    assert sc.cache_key(src, rolls.RollSettings()) != sc.cache_key(src, rolls.RollSettings(max_piece_frames=10))
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        for name in ("scores_folder", "chorales", "folk"):
            assert compose("train", overrides=[f"dataset={name}"]).dataset.max_piece_frames == rolls.MAX_PIECE_FRAMES


def test_a_skipped_score_with_a_newline_in_its_name_is_one_quoted_log_line(tmp_path, caplog):
    folder = tmp_path / "scores"
    folder.mkdir()
    (folder / "cut\nshort.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0MTrk\x00\x00\x00\x25")
    for i in range(3):
        (folder / f"ok{i}.mid").write_bytes(smf(track((0, on(60 + i)), (TPQ * 8, off(60 + i)))))
    with caplog.at_level(logging.WARNING, logger="rnnbench.data"):
        corpus = sc.build_score_corpus("t", path=folder, cache=False)
    assert [s["file"] for s in corpus.skipped] == ["cut\nshort.mid"]
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "\n" not in line and "'cut\\nshort.mid' (truncated" in line


def test_a_cache_folder_that_cannot_be_made_is_a_warning_not_a_failure(tmp_path, caplog):
    """The roll cache is an optimisation: under a file (or read-only), the scores are read
    without it, with one warning naming the folder (was: a NotADirectoryError traceback)."""
    folder = tmp_path / "scores"
    folder.mkdir()
    for i in range(3):
        (folder / f"ok{i}.mid").write_bytes(smf(track((0, on(60 + i)), (TPQ * 8, off(60 + i)))))
    (tmp_path / "afile").write_text("x")
    with caplog.at_level(logging.WARNING, logger="rnnbench.data"):
        corpus = sc.build_score_corpus("t", path=folder, cache_dir=tmp_path / "afile" / "sub")
    assert corpus.cache_path is None and sum(len(v) for v in corpus.piece_ids.values()) == 3
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "afile/sub/scores: cannot create the score cache folder (Not a directory)" in line
