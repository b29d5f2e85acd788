import numpy as np
import pytest

from conftest import write_mat, write_pickle
from rnnbench.data import load_mat, load_music, load_pickle, notes_to_roll, roll_to_notes
from rnnbench.data.sources import RemoteFile, candidate_roots, download, locate, sha256_of
from rnnbench.errors import DataError


def test_mat_and_pickle_give_the_same_rolls(tmp_path, toy_splits):
    a = load_mat(write_mat(tmp_path / "t.mat", toy_splits))
    b = load_pickle(write_pickle(tmp_path / "t.pickle", toy_splits))
    for split in ("train", "valid", "test"):
        assert len(a[split]) == len(b[split]) == len(toy_splits[split])
        for x, y, z in zip(a[split], b[split], toy_splits[split]):
            assert x.dtype == np.uint8 and x.shape == z.shape
            np.testing.assert_array_equal(x, z)
            np.testing.assert_array_equal(y, z)


def test_notes_roll_round_trip():
    steps = [[21, 60, 108], [], [64, 67]]
    roll = notes_to_roll(steps)
    assert roll.shape == (3, 88) and roll.sum() == 5
    assert roll_to_notes(roll) == [[21, 60, 108], [], [64, 67]]


def test_note_outside_keyboard_is_named():
    with pytest.raises(DataError, match="MIDI note 109"):
        notes_to_roll([[60], [109]])


def test_stats(toy_mat, toy_splits):
    corpus = load_music("toy", path=toy_mat)
    rows = {r["split"]: r for r in corpus.stats()}
    assert rows["train"]["sequences"] == 12
    assert rows["train"]["frames"] == sum(len(s) for s in toy_splits["train"])
    assert rows["valid"]["notes_per_frame"] == pytest.approx(3.0)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(DataError, match="JSB_Chorales.mat not found"):
        load_music("jsb", root=tmp_path, download=False)
    with pytest.raises(DataError, match="nope.mat: file not found"):
        load_music("x", path=tmp_path / "nope.mat")


def test_unknown_dataset_and_format():
    with pytest.raises(DataError, match="unknown music dataset 'bach'"):
        load_music("bach")
    with pytest.raises(DataError, match="unknown music format 'midi'"):
        load_music("jsb", fmt="midi")


def test_truncated_mat_is_reported(tmp_path, toy_splits):
    good = write_mat(tmp_path / "good.mat", toy_splits).read_bytes()
    bad = tmp_path / "bad.mat"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="bad.mat"):
        load_mat(bad)


def test_wrong_format_is_reported(tmp_path):
    p = tmp_path / "text.mat"
    p.write_text("this is not a MATLAB file\n" * 20)
    with pytest.raises(DataError, match="text.mat: not a readable MATLAB"):
        load_mat(p)
    q = tmp_path / "text.pickle"
    q.write_text("not a pickle")
    with pytest.raises(DataError, match="text.pickle: not a readable piano-roll pickle"):
        load_pickle(q)


def test_wrong_shape_and_values_are_reported(tmp_path):
    rng = np.random.default_rng(0)
    narrow = {"train": [np.zeros((5, 87), np.uint8)], "valid": [np.zeros((5, 88), np.uint8)],
              "test": [np.zeros((5, 88), np.uint8)]}
    with pytest.raises(DataError, match=r"traindata\[0\]: expected a \(T, 88\) piano roll, found \(5, 87\)"):
        load_mat(write_mat(tmp_path / "n.mat", narrow))
    twos = dict(narrow, train=[rng.integers(0, 3, (5, 88)).astype(np.uint8)])
    with pytest.raises(DataError, match="values must be 0 or 1"):
        load_mat(write_mat(tmp_path / "v.mat", twos))
    missing = {"train": narrow["valid"], "valid": narrow["valid"]}
    with pytest.raises(DataError, match="missing variable 'testdata'"):
        load_mat(write_mat(tmp_path / "m.mat", missing))


def test_checksum_mismatch_is_reported(tmp_path):
    (tmp_path / "polyphonic").mkdir()
    f = tmp_path / "polyphonic" / "x.mat"
    f.write_bytes(b"abc")
    remote = RemoteFile("polyphonic/x.mat", "0" * 64)
    with pytest.raises(DataError, match=r"x.mat: checksum mismatch"):
        locate(remote, root=tmp_path, download_missing=False)
    ok = RemoteFile("polyphonic/x.mat", sha256_of(f))
    assert locate(ok, root=tmp_path, download_missing=False) == f


def test_lookup_order(tmp_path, monkeypatch):
    explicit, env, cache = (tmp_path / n for n in ("explicit", "env", "cache2"))
    monkeypatch.setenv("RNNBENCH_DATA", str(env))
    monkeypatch.setenv("RNNBENCH_CACHE", str(cache))
    assert candidate_roots(explicit) == [explicit, env, cache]
    for r in (env, cache):
        (r / "polyphonic").mkdir(parents=True)
        (r / "polyphonic" / "a.mat").write_bytes(r.name.encode())
    remote = RemoteFile("polyphonic/a.mat", None)
    assert locate(remote, root=explicit, download_missing=False) == env / "polyphonic" / "a.mat"


def test_download_verifies_and_writes_atomically(tmp_path):
    src = tmp_path / "served.mat"
    src.write_bytes(b"payload")
    cache = tmp_path / "dl"
    good = RemoteFile("polyphonic/served.mat", sha256_of(src), (src.as_uri(),))
    path = download(good, cache)
    assert path == cache / "polyphonic" / "served.mat" and path.read_bytes() == b"payload"

    bad = RemoteFile("polyphonic/other.mat", "f" * 64, (src.as_uri(),))
    with pytest.raises(DataError, match="could not download polyphonic/other.mat"):
        download(bad, cache)
    assert sorted(p.name for p in (cache / "polyphonic").iterdir()) == ["served.mat"]


def test_locate_downloads_into_cache_when_missing(tmp_path, monkeypatch):
    src = tmp_path / "served.mat"
    src.write_bytes(b"payload")
    monkeypatch.setenv("RNNBENCH_CACHE", str(tmp_path / "cache3"))
    remote = RemoteFile("polyphonic/served.mat", sha256_of(src), (src.as_uri(),))
    got = locate(remote, root=tmp_path / "empty")
    assert got == tmp_path / "cache3" / "polyphonic" / "served.mat"
    # found in the cache the second time, no download needed
    src.unlink()
    assert locate(remote, root=tmp_path / "empty") == got


def test_evaluation_batches_cap_padding_and_cover_every_sequence_once():
    from rnnbench.data import batch_indices, padding_waste

    lengths = np.random.default_rng(0).integers(5, 1500, size=700).tolist()
    loose = batch_indices(lengths, batch_size=10**9, shuffle=False, bucket=True, max_frames=400_000)
    tight = batch_indices(lengths, batch_size=10**9, shuffle=False, bucket=True, max_frames=400_000, max_waste=0.1)
    for batches in (loose, tight):
        assert sorted(i for b in batches for i in b) == list(range(700))
        assert all(max(lengths[i] for i in b) * len(b) <= 400_000 for b in batches if len(b) > 1)
    assert all(padding_waste(lengths, [b]) <= 0.1 for b in tight)
    assert padding_waste(lengths, tight) < 0.1 < padding_waste(lengths, loose)
