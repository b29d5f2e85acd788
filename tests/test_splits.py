"""Group-aware splits (rnnbench.data.corpus) and the default names of folder datasets."""

from __future__ import annotations

import hashlib

import pytest

from conftest import REPO
from rnnbench.data import corpus as dc
from rnnbench.data import rolls, scores as sc
from rnnbench.data.speech import AudioFile, split_by_rule
from rnnbench.errors import ConfigError, DataError

SPLITS = ("train", "valid", "test")


# The per-item rules as they were before splits became group-aware: with one item per group the
# new rules must give exactly these (the chorales' and every folder's existing splits).

def old_score_split(ids, fractions, seed):
    n = len(ids)
    _, fv, ft = fractions
    order = sorted(range(n), key=lambda i: hashlib.sha256(f"{seed}:{ids[i]}".encode()).hexdigest())
    n_test = min(max(1, round(n * ft)), n - 2)
    n_valid = min(max(1, round(n * fv)), n - 1 - n_test)
    parts = {"test": order[:n_test], "valid": order[n_test:n_test + n_valid], "train": order[n_test + n_valid:]}
    return {s: sorted(parts[s], key=lambda i: ids[i]) for s in SPLITS}


def old_file_split(names, rule, vf, tf, seed):
    n = len(names)

    def count(frac):
        k = int(round(frac * n))
        return max(k, 1) if frac > 0 and n >= 3 else k

    n_test, n_valid = count(tf), count(vf)
    ordered = sorted(names)
    if rule == "hash":
        ranked = sorted(ordered, key=lambda f: hashlib.sha256(f"{seed}:{f}".encode()).hexdigest())
        test, valid = ranked[:n_test], ranked[n_test:n_test + n_valid]
    else:
        test = ordered[n - n_test:] if n_test else []
        valid = ordered[n - n_test - n_valid:n - n_test] if n_valid else []
    return {"train": [f for f in ordered if f not in test and f not in valid],
            "valid": [f for f in ordered if f in valid], "test": [f for f in ordered if f in test]}


@pytest.mark.parametrize("n", [3, 4, 5, 7, 10, 23, 100, 349])
def test_one_item_per_group_gives_the_old_splits(n):
    ids = [f"bach/bwv{i}.mxl" for i in range(n)]
    for fractions in ((0.6, 0.2, 0.2), (0.8, 0.1, 0.1), (0.5, 0.25, 0.25), (0.9, 0.05, 0.05)):
        for seed in (0, 3):
            assert sc.split_pieces(ids, fractions, seed) == old_score_split(ids, fractions, seed)
    files = [AudioFile(None, f"spk{i % 3}/u{i}.wav") for i in range(n)]
    names = [f.name for f in files]
    for rule in ("hash", "sorted"):
        for vf, tf in ((0.1, 0.1), (0.2, 0.3), (0.05, 0.15)):
            new = {s: [f.name for f in v] for s, v in split_by_rule(files, rule, vf, tf, seed=1).items()}
            old = old_file_split(names, rule, vf, tf, 1)
            if all(old.values()):  # (the old rule could leave a split empty; that was an error later)
                assert new == old, (rule, vf, tf)


def test_groups_stay_whole_and_every_split_gets_one():
    names = [f"{spk}/{u:03d}.wav" for spk in ("a", "b", "c", "d", "e") for u in range(7)]
    keys, rule = dc.group_keys(names, "folder")
    assert rule == "folder" and keys[0] == "a/" and len(set(keys)) == 5
    parts = dc.split_groups(names, keys, 0.1, 0.1, seed=0)
    assert sorted(sum(parts.values(), [])) == list(range(len(names)))
    where = {keys[i]: s for s in SPLITS for i in parts[s]}
    assert all(where[keys[i]] == s for s in SPLITS for i in parts[s])  # each group in one split only
    assert [len({keys[i] for i in parts[s]}) for s in SPLITS] == [3, 1, 1]
    # a group bigger than the share still leaves train something
    big = dc.split_groups(["x1", "x2", "x3", "y", "z"], ["x", "x", "x", "y", "z"], 0.1, 0.5, seed=0)
    assert all(big[s] for s in SPLITS)
    with pytest.raises(DataError, match=r"where: 4 usable file\(s\) in 2 group\(s\); a train/valid/test split needs at least 3 groups"):
        dc.split_groups(["a", "b", "c", "d"], ["1", "1", "2", "2"], 0.1, 0.1, where="where")


def test_group_presets_and_patterns():
    names = ["SF1/100001.wav", "SF2/100001.wav", "SF1/100002.wav", "top.wav", "tunes.abc#2", "sub/tunes.abc#1"]
    assert dc.group_keys(names, "stem")[0] == ["100001", "100001", "100002", "top", "tunes#2", "tunes#1"]
    assert dc.group_keys(names, "folder")[0] == ["SF1/", "SF2/", "SF1/", "top.wav", "tunes.abc#2", "sub/"]
    assert dc.group_keys(names, "auto") == (dc.group_keys(names, "stem")[0], "stem")
    assert dc.group_keys(["a/x.mid", "b/y.mid"], "auto") == (["a/x.mid", "b/y.mid"], "none")
    assert dc.group_keys(names[:3], r"/(\d+)")[0] == ["100001", "100001", "100002"]
    assert dc.group_keys(names, None)[0] == names
    for bad in ("", 3, "nogroup", "(", ["stem"]):
        with pytest.raises(ConfigError, match="dataset.split_group"):
            dc.group_keys(names, bad)


def test_one_piece_in_two_formats_stays_in_one_split(tmp_path):
    """A folder holding every piece as MIDI and as MusicXML: split_group=auto groups them by name."""
    import numpy as np

    folder = tmp_path / "pairs"
    folder.mkdir()
    for k in range(6):
        roll = np.zeros((4 + k, 88), dtype=np.uint8)
        roll[:, 30 + k] = 1
        roll[-1, 50] = 1
        rolls.roll_to_midi(roll, folder / f"piece{k}.mid")
        rolls.roll_to_stream(roll).write("musicxml", fp=str(folder / f"piece{k}.musicxml"))
    corpus = sc.build_score_corpus("pairs", path=folder, split_group="auto", dedupe=False, cache=False)
    stems = {s: {p.rsplit(".", 1)[0] for p in corpus.piece_ids[s]} for s in SPLITS}
    assert not (stems["train"] & stems["test"] or stems["train"] & stems["valid"] or stems["valid"] & stems["test"])
    assert sum(len(v) for v in corpus.piece_ids.values()) == 12
    per_file = sc.build_score_corpus("pairs", path=folder, split_group="none", dedupe=False, cache=False)
    assert per_file.piece_ids != corpus.piece_ids
    with pytest.raises(DataError, match=r"pairs \(12 file\(s\), 0 skipped, 0 duplicate\(s\)\): 12 usable piece\(s\) "
                                        r"in 1 group"):
        sc.build_score_corpus("pairs", path=folder, split_group=r"(piece)", dedupe=False, cache=False)


# --------------------------------------------------------------------------- default names of folder datasets

def compose(*overrides):
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        return hcompose(config_name="train", overrides=list(overrides), return_hydra_config=True)


def test_two_folders_get_two_names_and_so_two_run_directories(tmp_path, monkeypatch):
    a, b = tmp_path / "one" / "music", tmp_path / "two" / "music"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    name_a = compose("dataset=scores_folder", f"dataset.path={a}").dataset.name
    name_b = compose("dataset=scores_folder", f"dataset.path={b}").dataset.name
    assert name_a.startswith("scores-music-") and name_b.startswith("scores-music-") and name_a != name_b
    assert name_a == dc.folder_dataset_name("scores", a) == f"scores-music-{hashlib.sha256(str(a).encode()).hexdigest()[:8]}"
    monkeypatch.chdir(tmp_path / "one")  # a relative path names the same folder as its absolute path
    assert compose("dataset=scores_folder", "dataset.path=music").dataset.name == name_a
    assert compose("dataset=scores_folder", f"dataset.path={a}", "dataset.name=mine").dataset.name == "mine"
    audio = compose("dataset=audio_folder", f"dataset.path={a}").dataset.name
    assert audio.startswith("audio-music-") and audio[-8:] == name_a[-8:]
    assert compose("dataset=scores_folder").dataset.name == "scores"  # path still ???: the loader says what is missing
    assert compose("dataset=chorales").dataset.name == "chorales" and compose("dataset=yesno").dataset.name == "yesno"


def test_data_root_relative_audio_folder_is_named_by_where_it_was_found(tmp_path, monkeypatch):
    root = tmp_path / "root"
    (root / "speech" / "mine").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    cfg = compose("dataset=audio_folder", "dataset.path=speech/mine", f"data_root={root}")
    assert cfg.dataset.name == dc.folder_dataset_name("audio", root / "speech" / "mine")
