import numpy as np
import pytest

from conftest import write_mat, write_pickle
from rnnbench.data import load_mat, load_music, load_pickle, notes_to_roll, roll_to_notes
from rnnbench.data.sources import RemoteFile, candidate_roots, check_root, data_roots, download, locate, sha256_of
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
    explicit.mkdir()
    env.mkdir()
    assert candidate_roots(explicit) == [explicit, env, cache]  # the cache need not exist yet
    for r in (env, cache):
        (r / "polyphonic").mkdir(parents=True, exist_ok=True)
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
    (tmp_path / "empty").mkdir()
    got = locate(remote, root=tmp_path / "empty")
    assert got == tmp_path / "cache3" / "polyphonic" / "served.mat"
    # found in the cache the second time, no download needed
    src.unlink()
    assert locate(remote, root=tmp_path / "empty") == got


# --------------------------------------------------------------------------- data roots that point nowhere

JSB = "polyphonic/JSB_Chorales.mat"


def test_a_data_root_from_the_environment_that_does_not_exist_is_an_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNBENCH_DATA", str(tmp_path / "nowhere"))
    for call in (lambda: candidate_roots(), lambda: load_music("jsb", download=False),
                 lambda: load_music("jsb", root=str(tmp_path / "nowhere"))):  # data_root's default is $RNNBENCH_DATA
        with pytest.raises(DataError) as err:
            call()
        msg = str(err.value)
        assert msg.startswith(f"data root does not exist: RNNBENCH_DATA={tmp_path / 'nowhere'}. Point RNNBENCH_DATA")
        assert "config key" not in msg  # the variable is named, not the config key it feeds


def test_a_data_root_from_the_config_key_that_does_not_exist_is_an_error_naming_it(tmp_path):
    with pytest.raises(DataError, match=r"data root does not exist: data_root=\S*nowhere \(the config key\)"):
        load_music("jsb", root=tmp_path / "nowhere", download=False)
    with pytest.raises(DataError, match="data root does not exist: --root="):
        check_root(tmp_path / "nowhere", "--root")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataError, match=r"data root is not a folder: data_root=\S*afile"):
        candidate_roots(tmp_path / "afile")
    # callers that only name things (a folder dataset's default name) may leave such roots out
    assert candidate_roots(tmp_path / "nowhere", strict=False) == [tmp_path / "cache"]


def test_relative_roots_are_taken_from_the_working_directory_and_shown_absolute(tmp_path, monkeypatch):
    work = tmp_path / "work"
    (work / "rel" / "polyphonic").mkdir(parents=True)
    (work / "rel" / "polyphonic" / "a.mat").write_bytes(b"a")
    monkeypatch.chdir(work)
    remote = RemoteFile("polyphonic/a.mat", None)
    got = locate(remote, root="rel", download_missing=False)
    assert got.is_absolute() and got == work / "rel" / "polyphonic" / "a.mat"
    monkeypatch.setenv("RNNBENCH_DATA", "../shared/data")  # the README's command from a clone with no ../shared
    with pytest.raises(DataError) as err:
        locate(remote, download_missing=False)
    assert (f"RNNBENCH_DATA=../shared/data, which from {work} is {tmp_path / 'shared' / 'data'}. "
            in str(err.value))
    monkeypatch.setenv("RNNBENCH_DATA", "rel")
    assert data_roots("rel")[0].path == work / "rel" and data_roots("rel")[0].setting == "RNNBENCH_DATA"
    assert [r.path for r in data_roots()][-1] == tmp_path / "cache"  # $RNNBENCH_CACHE (conftest), absolute


def test_a_missing_corpus_is_one_error_listing_every_place_looked_in_once(tmp_path, monkeypatch):
    explicit, env = tmp_path / "explicit", tmp_path / "env"
    explicit.mkdir()
    env.mkdir()
    monkeypatch.setenv("RNNBENCH_DATA", str(env))
    cache = tmp_path / "cache"  # $RNNBENCH_CACHE (conftest), not made yet
    gone = (tmp_path / "no-such-home.mat").as_uri()  # a public home that cannot be reached
    remote = RemoteFile(JSB, "0" * 64, (gone,))
    with pytest.raises(DataError) as err:
        locate(remote, root=explicit)
    msg = str(err.value)
    lines = msg.splitlines()
    assert lines[0] == f"{JSB} not found. Looked in:"
    assert lines[1:4] == [f"  {explicit / JSB}  (the config key data_root)", f"  {env / JSB}  (RNNBENCH_DATA)",
                          f"  {cache / JSB}  (the download cache, RNNBENCH_CACHE)"]
    assert lines[4] == "and the download failed:" and lines[5].startswith(f"  {gone}: ")
    assert lines[6].startswith(f"Set RNNBENCH_DATA (or the config key data_root) to a folder holding {JSB}, "
                               f"or run again on a machine with internet")
    assert len(lines) == 7 and msg.count(str(env / JSB)) == 1
    assert not cache.exists()  # a failed download leaves no empty folders behind
    # download off: the same places, and what to do
    with pytest.raises(DataError) as err:
        locate(remote, root=explicit, download_missing=False)
    msg = str(err.value)
    assert "and download is off (dataset.download=false or --no-download)" in msg
    assert msg.endswith("or enable download (dataset.download=true) on a machine with internet.")
    # data_root left at its default ($RNNBENCH_DATA): one place, named by the variable
    with pytest.raises(DataError) as err:
        locate(remote, root=str(env), download_missing=False)
    assert str(err.value).count(str(env / JSB)) == 1 and f"{env / JSB}  (RNNBENCH_DATA)" in str(err.value)


def test_rnnbench_data_names_a_root_that_does_not_exist_in_one_line(tmp_path, capsys, monkeypatch):
    from rnnbench.cli.data import main as data_main

    monkeypatch.chdir(tmp_path)
    assert data_main(["fetch", "jsb", "--root", "nowhere", "--no-download"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rnnbench-data: error: data root does not exist: --root=nowhere, which from {tmp_path} "
                          f"is {tmp_path / 'nowhere'}. Point --root at ")
    assert err.count("\n") == 1 and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    assert data_main(["fetch", "jsb", "--root", "empty", "--no-download"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rnnbench-data: error: {JSB} not found. Looked in:\n  {tmp_path / 'empty' / JSB}  (--root)")
    assert "Traceback" not in err


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


@pytest.mark.parametrize("train, says", [
    (5, "train should be a list of sequences, found int"),
    ([None], "train[0]: expected a sequence as a list of time steps, found NoneType"),
    ([[5]], "train[0], step 0: expected a list of MIDI note numbers, found int 5"),
    ([[["a"]]], "train[0], step 0: MIDI note 'a' is not a whole MIDI note number"),
    ([[[60.7]]], "train[0], step 0: MIDI note 60.7 is not a whole MIDI note number"),
    ([[[float("nan")]]], "train[0], step 0: MIDI note nan is not a whole MIDI note number"),
    ([[[True]]], "train[0], step 0: MIDI note True is not a whole MIDI note number"),
])
def test_a_pickle_of_the_wrong_shape_is_named_with_the_step(tmp_path, train, says):
    """A piano-roll pickle whose splits, sequences, steps or notes are of another type is a
    DataError naming the file, sequence and step (was: TypeError/ValueError tracebacks, or 60.7
    silently read as note 60)."""
    import pickle
    import re

    path = tmp_path / "odd.pkl"
    path.write_bytes(pickle.dumps({"train": train, "valid": [], "test": []}))
    with pytest.raises(DataError, match=re.escape(f"odd.pkl: {says}")):
        load_pickle(path)


def test_a_mat_file_inflating_beyond_memory_is_refused_before_loading(tmp_path, monkeypatch):
    """A compressed .mat of a few hundred kilobytes that inflates to 44 MB of zeros, under a
    64 MiB memory limit: refused naming its inflated size and the memory available, before
    scipy allocates it; the same file loads when the memory is there."""
    import scipy.io

    roll = np.zeros((500_000, 88), np.uint8)
    roll[::7, 40] = 1
    cells = np.empty((1, 1), dtype=object)
    cells[0, 0] = roll
    path = tmp_path / "huge.mat"
    scipy.io.savemat(str(path), {"traindata": cells, "validdata": cells, "testdata": cells}, do_compression=True)
    assert path.stat().st_size < 1_000_000
    cg = tmp_path / "cg"
    cg.mkdir()
    (cg / "memory.max").write_text(f"{64 * 2**20}\n")
    (cg / "memory.current").write_text("0\n")
    monkeypatch.setenv("RNNBENCH_CGROUP_ROOT", str(cg))
    with pytest.raises(DataError, match=r"huge.mat: its variables \(132,\d{3},\d{3} bytes once decompressed\) needs an "
                                        r"estimated .* of memory; 64.0 MiB is available \(cgroup limit\)"):
        load_mat(path)
    monkeypatch.delenv("RNNBENCH_CGROUP_ROOT")
    assert len(load_mat(path)["train"][0]) == 500_000
