"""Piano-roll corpora from scores (dataset.kind=scores): folders, frames, skipped files, cache, split, MIDI."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from conftest import REPO
from rnnbench.data import load_dataset
from rnnbench.data import rolls, scores as sc
from rnnbench.errors import ConfigError, DataError

ABC_TUNES = """X:1
T:One
M:4/4
L:1/4
K:C
"C"C D E F|"G"G2 G2|]

X:2
T:Two
M:3/4
L:1/4
K:G
G A B|d3|]
"""

# The hand-written score of expected_roll(): soprano and bass, a tie, a chord, an off-beat eighth.
EXPECTED_STEP1 = [[48, 55, 72], [48, 55, 72], [48, 55, 74], [48, 55, 74], [45, 76], [45, 79], [45, 79], [45]]


def two_part_score():
    from music21 import chord, meter, note, stream, tie

    sop, bass = stream.Part(), stream.Part()
    for p in (sop, bass):
        p.append(meter.TimeSignature("4/4"))
    d1, d2 = note.Note("D5", quarterLength=1), note.Note("D5", quarterLength=1)
    d1.tie, d2.tie = tie.Tie("start"), tie.Tie("stop")
    for n in (note.Note("C5", quarterLength=2), d1, d2, note.Note("E5", quarterLength=0.5),
              note.Note("F5", quarterLength=0.5), note.Note("G5", quarterLength=2), note.Rest(quarterLength=1)):
        sop.append(n)
    bass.append(chord.Chord(["C3", "G3"], quarterLength=4))
    bass.append(note.Note("A2", quarterLength=4))
    score = stream.Score()
    score.insert(0, sop)
    score.insert(0, bass)
    return score


def rows(roll):
    return [sorted(int(j) + 21 for j in np.flatnonzero(r)) for r in roll]


@pytest.fixture(scope="module")
def score_folder(tmp_path_factory):
    """Three readable files (four pieces), two unreadable ones, a silent tune and a file to ignore."""
    folder = tmp_path_factory.mktemp("scores")
    score = two_part_score()
    (folder / "sub").mkdir()
    score.write("musicxml", fp=str(folder / "sub" / "duet.musicxml"))
    score.write("midi", fp=str(folder / "duet.mid"))
    (folder / "tunes.abc").write_text(ABC_TUNES)
    (folder / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    (folder / "broken.xml").write_text("<?xml version='1.0'?><score-partwise><part-list>")
    (folder / "silent.abc").write_text("X:1\nT:Silence\nM:4/4\nL:1/4\nK:C\nz4|]\n")
    (folder / "notes.txt").write_text("not a score")
    return folder


def build(folder, **kw):
    return sc.build_score_corpus("toyscores", path=folder, **kw)


# --------------------------------------------------------------------------- frames

def test_hand_written_score_gives_the_expected_roll(score_folder):
    for name in ("sub/duet.musicxml", "duet.mid"):  # MusicXML through music21, MIDI event by event
        path = score_folder / name
        assert rows(rolls.score_to_roll(path, step=1.0)) == EXPECTED_STEP1, name
        overlap = rows(rolls.score_to_roll(path, step=1.0, quantize="overlap"))
        assert overlap[4] == [45, 76, 77] and overlap[:4] == EXPECTED_STEP1[:4] and overlap[5:] == EXPECTED_STEP1[5:]
        half = rows(rolls.score_to_roll(path, step=0.5))
        assert len(half) == 16
        assert half[8:16] == [[45, 76], [45, 77], [45, 79], [45, 79], [45, 79], [45, 79], [45], [45]]
        assert half[0] == half[1] == half[2] == half[3] == [48, 55, 72]


def test_counts_of_dropped_and_moved_notes():
    notes = np.array([[0, 1, 60], [0.5, 0.25, 62], [1, 0, 64], [1, 1, 10], [2, 1, 120]], dtype=float)
    roll, counts = rolls.notes_to_frames(notes, rolls.RollSettings())
    assert counts["short_dropped"] == 1 and counts["grace_dropped"] == 1 and counts["folded"] == 2
    assert rows(roll) == [[60], [22], [108]]  # 10 -> 22 (up one octave), 120 -> 108 (down one)
    roll, counts = rolls.notes_to_frames(notes, rolls.RollSettings(out_of_range="drop"))
    assert counts["out_of_range_dropped"] == 2 and rows(roll) == [[60]]
    with pytest.raises(rolls.SkipPiece):
        rolls.notes_to_frames(np.array([[0, 0, 60]], dtype=float), rolls.RollSettings())


def test_trim_and_transposition():
    g_major = np.array([[4, 1, 67], [5, 1, 71], [6, 1, 74], [7, 1, 67], [8, 2, 55], [8, 2, 43]], dtype=float)
    roll, _ = rolls.notes_to_frames(g_major, rolls.RollSettings())
    assert len(roll) == 6 and rows(roll)[0] == [67]
    assert len(rolls.notes_to_frames(g_major, rolls.RollSettings(trim=False))[0]) == 10
    assert rolls.estimate_key(g_major) == (7, "major")
    assert rolls.final_bass(g_major) == 7
    for tonic in ("profile", "final_bass"):
        roll, counts = rolls.notes_to_frames(g_major, rolls.RollSettings(transpose="C", tonic=tonic))
        assert counts["shift"] == 5 and rows(roll)[0] == [72]
    a_minor = np.array([[i, 1, m] for i, m in enumerate([57, 59, 60, 62, 64, 65, 68, 69, 64, 57])], dtype=float)
    assert rolls.estimate_key(a_minor) == (9, "minor")
    assert [rolls.transpose_shift(t) for t in range(12)] == [0, -1, -2, -3, -4, -5, 6, 5, 4, 3, 2, 1]


def test_chord_symbols_realized(tmp_path):
    path = tmp_path / "one.abc"
    path.write_text(ABC_TUNES.split("\n\n")[0] + "\n")
    plain = rolls.score_to_roll(path)
    assert rows(plain) == [[60], [62], [64], [65], [67], [67], [67], [67]]
    chords = rolls.score_to_roll(path, chord_symbols="realize")
    assert all(set(plain[t].nonzero()[0]) < set(chords[t].nonzero()[0]) for t in range(8))
    assert {(j + 21) % 12 for j in np.flatnonzero(chords[0])} == {0, 4, 7}  # C major triad + melody C
    assert {(j + 21) % 12 for j in np.flatnonzero(chords[5])} == {2, 7, 11}  # G major triad


def test_bad_settings_name_the_field():
    with pytest.raises(ConfigError, match=r"dataset\.step=0"):
        rolls.RollSettings(step=0)
    with pytest.raises(ConfigError, match=r"dataset\.quantize='nearest'"):
        rolls.RollSettings(quantize="nearest")
    with pytest.raises(ConfigError, match=r"dataset\.transpose"):
        rolls.RollSettings(transpose="D")


# --------------------------------------------------------------------------- folders, skipped files, cache

def test_folder_builds_and_names_the_broken_files(score_folder, caplog):
    with caplog.at_level(logging.WARNING, logger="rnnbench.data.scores"):
        corpus = build(score_folder)
    ids = sorted(sum(corpus.piece_ids.values(), []))
    # duet.mid and sub/duet.musicxml hold the same music: the roll is kept once.
    assert len(ids) == 3 and {"tunes.abc#1", "tunes.abc#2"} <= set(ids)
    assert corpus.duplicates == [dict(id="sub/duet.musicxml", same_as="duet.mid")]
    skipped = {s["file"]: s["reason"] for s in corpus.skipped}
    assert set(skipped) == {"broken.mid", "broken.xml", "silent.abc"}
    assert skipped["silent.abc"] == "no pitched notes"
    for name in skipped:
        assert name in caplog.text
    assert all(len(corpus[s]) == 1 for s in ("train", "valid", "test"))
    assert corpus.task == "music" and corpus.input_size == 88 and corpus.head == "bernoulli"
    assert corpus.counts()["short_dropped"] == 2  # the off-beat F5, in each duet file
    row = corpus.stats()[0]
    assert row["dataset"] == "toyscores" and row["notes_per_frame"] > 0


def test_empty_or_unusable_source_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty.*no score files found"):
        build(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.mid").write_bytes(b"not midi at all")
    with pytest.raises(DataError, match=r"bad.*no usable piece.*x\.mid"):
        build(bad)
    with pytest.raises(DataError, match="no such folder"):
        build(tmp_path / "missing")
    with pytest.raises(ConfigError, match="exactly one"):
        sc.build_score_corpus("x")
    with pytest.raises(ConfigError, match="dataset.corpus='no_such_corpus'"):
        sc.build_score_corpus("x", corpus="no_such_corpus")


def test_second_build_comes_from_the_cache(score_folder, tmp_path, monkeypatch):
    calls = []
    real = sc._parse_source

    def counting(path, rel, settings):
        calls.append(rel)
        return real(path, rel, settings)

    monkeypatch.setattr(sc, "_parse_source", counting)
    cache = tmp_path / "c"
    first = build(score_folder, cache_dir=cache)
    n_files = len(calls)
    assert n_files == 6 and not first.from_cache
    files = list((cache / "scores").glob("*.npz"))  # (beside it: the build lock file)
    assert len(files) == 1 and files[0].suffix == ".npz" and first.cache_path == files[0]
    second = build(score_folder, cache_dir=cache, split_seed=3)  # the split never rebuilds
    assert len(calls) == n_files and second.from_cache
    assert second.skipped == first.skipped and second.info == first.info
    a = {pid: r for s in first.splits for pid, r in zip(first.piece_ids[s], first.splits[s])}
    b = {pid: r for s in second.splits for pid, r in zip(second.piece_ids[s], second.splits[s])}
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    build(score_folder, cache_dir=cache, settings=rolls.RollSettings(step=0.5))  # another setting: rebuilt
    assert len(calls) == 2 * n_files
    assert len(list((cache / "scores").glob("*.npz"))) == 2
    assert not [p for p in (cache / "scores").iterdir() if p.name.endswith(".tmp")]


def test_every_load_says_what_was_skipped_cache_hit_included(score_folder, tmp_path, caplog):
    cache = tmp_path / "c"
    for attempt in range(2):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="rnnbench.data.scores"):
            corpus = build(score_folder, cache_dir=cache)
        assert corpus.from_cache == bool(attempt) and len(corpus.skipped) == 3
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warned) == 1 and "3 file(s) skipped" in warned[0]
        assert all(f in warned[0] for f in ("broken.mid", "broken.xml", "silent.abc (no pitched notes)"))
    clean = tmp_path / "clean"
    clean.mkdir()
    for k in range(3):
        (clean / f"t{k}.abc").write_text(f"X:1\nT:t{k}\nM:4/4\nL:1/4\nK:C\nC D E {'FGA'[k]}|]\n")
    build(clean, cache_dir=cache)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="rnnbench.data.scores"):
        hit = build(clean, cache_dir=cache)
    assert hit.from_cache and hit.skipped == []
    assert "from the cache" in caplog.text and "0 skipped" in caplog.text  # a cache hit says so, skipped or not
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_changed_file_rebuilds(tmp_path, monkeypatch):
    folder = tmp_path / "f"
    folder.mkdir()
    for k in range(3):
        (folder / f"t{k}.abc").write_text(f"X:1\nT:t{k}\nM:4/4\nL:1/4\nK:C\nC D E {'FGAB'[k]}|]\n")
    first = build(folder)
    (folder / "t0.abc").write_text("X:1\nT:t0\nM:4/4\nL:1/4\nK:C\nc d e f|]\n")
    second = build(folder)
    assert not second.from_cache and first.cache_path != second.cache_path
    assert build(folder).from_cache


def test_split_is_deterministic_and_independent_of_order():
    ids = [f"piece{i:03d}.mid" for i in range(100)]
    a = sc.split_pieces(ids, (0.6, 0.2, 0.2), seed=0)
    rev = list(reversed(ids))
    b = sc.split_pieces(rev, (0.6, 0.2, 0.2), seed=0)
    named = lambda parts, src: {s: sorted(src[i] for i in parts[s]) for s in parts}  # noqa: E731
    assert named(a, ids) == named(b, rev)
    assert [len(a[s]) for s in ("train", "valid", "test")] == [60, 20, 20]
    assert named(sc.split_pieces(ids, (0.6, 0.2, 0.2), seed=1), ids) != named(a, ids)
    assert sorted(sum(a.values(), [])) == list(range(100))
    small = sc.split_pieces(ids[:3], (0.8, 0.1, 0.1))
    assert all(len(v) == 1 for v in small.values())
    with pytest.raises(DataError, match="at least 3"):
        sc.split_pieces(ids[:2])


# --------------------------------------------------------------------------- roll <-> MIDI

@pytest.mark.parametrize("step", [1.0, 0.25, 1 / 3])
def test_roll_midi_roll_round_trip_is_exact(step, tmp_path):
    rng = np.random.default_rng(1)
    roll = (rng.random((50, 88)) < 0.06).astype(np.uint8)
    roll[:, :10] = 0
    roll[-1, 40] = 1
    roll[5:9] = 0  # silence inside the piece survives
    path = rolls.roll_to_midi(roll, tmp_path / "r.mid", step=step)
    back = rolls.score_to_roll(path, step=step, trim=False)
    np.testing.assert_array_equal(back, roll)
    roll[-3:] = 0  # trailing silence is not in a MIDI file: give the length
    path = rolls.roll_to_midi(roll, tmp_path / "r.mid", step=step)
    np.testing.assert_array_equal(rolls.score_to_roll(path, step=step, trim=False, length=len(roll)), roll)


# --------------------------------------------------------------------------- as a dataset in every experiment

def compose(*overrides):
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        return hcompose(config_name="train", overrides=list(overrides))


def test_config_groups(score_folder):
    cfg = compose("dataset=scores_folder", f"dataset.path={score_folder}", "dataset.name=mine")
    corpus = load_dataset(cfg.dataset)
    assert isinstance(corpus, sc.ScoreCorpus) and corpus.name == "mine" and len(corpus.skipped) == 3
    assert cfg.cell.units == 46  # task music: the paper's music size
    with pytest.raises(ConfigError, match=r"dataset.path is missing"):
        load_dataset(compose("dataset=scores_folder").dataset)
    with pytest.raises(ConfigError, match=r"dataset\.split="):
        load_dataset(compose("dataset=scores_folder", f"dataset.path={score_folder}",
                             "dataset.split={train:0.5,valid:0.2,test:0.2}").dataset)
    folder = compose("dataset=scores_folder", f"dataset.path={score_folder}").dataset
    assert folder.expand_repeats is True and folder.split_group == "auto"  # repeats written out, as MIDI holds them
    chorales = compose("dataset=chorales").dataset
    assert chorales.kind == "scores" and chorales.task == "music" and chorales.corpus == "bach_chorales"
    assert chorales.step == 1.0 and chorales.get("path") is None
    assert chorales.split_group == "none" and compose("dataset=folk").dataset.split_group == "none"
    folk = compose("dataset=folk").dataset
    assert folk.kind == "scores" and folk.corpus == "oneills1850" and folk.step == 0.5


def test_data_cli_stats_of_a_score_dataset(score_folder, tmp_path, monkeypatch, capsys):
    from rnnbench.cli.data import main as data_main

    (tmp_path / "conf" / "dataset").mkdir(parents=True)
    (tmp_path / "conf" / "dataset" / "mine.yaml").write_text(
        f"name: mine\nkind: scores\ntask: music\npath: {score_folder}\n")
    monkeypatch.setenv("RNNBENCH_CONF", str(tmp_path / "conf"))
    assert data_main(["stats", "mine"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[1].split()[:3] == ["mine", "train", "1"]
    assert "3 score file(s) skipped" in err


@pytest.mark.slow
def test_first_ten_chorales_from_music21():
    cfg = compose("dataset=chorales", "dataset.limit=10").dataset
    corpus = load_dataset(cfg)
    assert sum(len(corpus[s]) for s in ("train", "valid", "test")) == 10 and not corpus.skipped
    assert [len(corpus[s]) for s in ("train", "valid", "test")] == [6, 2, 2]
    assert all(i["id"].startswith("bach/bwv") for i in corpus.info)
    rolls = sum(corpus.splits.values(), [])
    notes_per_frame = sum(int(r.sum()) for r in rolls) / sum(len(r) for r in rolls)
    assert 3.5 < notes_per_frame < 4.1  # four voices, a few rests
    # transposed to C: the final bass note of (nearly) every chorale is a C
    assert sum((np.flatnonzero(r[-1]).min() + 21) % 12 == 0 for r in rolls) >= 9
    assert load_dataset(cfg).from_cache


def test_parallel_builds_parse_once(score_folder, tmp_path, monkeypatch):
    """Parallel sweep jobs that all miss the cache: one builds it, the others wait and read it."""
    import threading

    from rnnbench.data import scores as sc

    calls = []
    real = sc.parse_sources

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(sc, "parse_sources", counting)
    cache = tmp_path / "shared-cache"
    results = []
    threads = [threading.Thread(target=lambda: results.append(build(score_folder, cache_dir=cache))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and len(calls) == 1
    assert sum(not r.from_cache for r in results) == 1
