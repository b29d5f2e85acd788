"""Speech corpora on tiny WAV fixtures: framing, splits, normalisation, sample rates, bad files."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from rnnbench.data import load_dataset
from rnnbench.data.framing import chunk, frame_signal, normalize, num_steps, unframe
from rnnbench.data.speech import AudioFile, SpeechCorpus, folder_files, fsdd_files, split_by_rule, yesno_files
from rnnbench.errors import ConfigError, DataError


def _torchaudio_loads() -> bool:
    try:
        import torchaudio.functional  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


# torchaudio is optional (resampling, dataset=torchaudio); the test extra installs it, so under CI it must load
needs_torchaudio = pytest.mark.skipif(
    not _torchaudio_loads() and os.environ.get("CI", "").lower() != "true",
    reason="torchaudio is not installed or does not load beside this torch (optional: pip install 'rnnbench[audio]')")

RATE = 8000


def tone(n, freq, rate=RATE, amp=0.3, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    return (amp * np.sin(2 * np.pi * freq * t) + 0.01 * amp * rng.standard_normal(n)).astype(np.float32)


def write(path, x, rate=RATE, subtype="PCM_16"):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, rate, subtype=subtype)
    return path


@pytest.fixture
def folder(tmp_path):
    """Ten short 8 kHz tones of different pitch and loudness."""
    d = tmp_path / "audio"
    for i in range(10):
        write(d / f"utt{i:02d}.wav", tone(400 + 37 * i, 200 + 50 * i, amp=0.02 * (i + 1), seed=i))
    return d


def folder_cfg(path, **kw):
    cfg = {"kind": "audio_folder", "name": "toy", "task": "speech", "path": str(path)}
    cfg.update(kw)
    return cfg


# --------------------------------------------------------------------------- framing

@pytest.mark.parametrize("n", [29, 30, 31, 39, 40, 41, 125, 1000])
def test_framing_reads_20_and_predicts_the_next_10(n):
    x = np.arange(n, dtype=np.float32)
    inputs, targets = frame_signal(x)
    T = num_steps(n)
    assert T == max(0, (n - 20) // 10)
    assert inputs.shape == (T, 20) and targets.shape == (T, 10)
    assert inputs.dtype == targets.dtype == np.float32
    for t in range(T):
        np.testing.assert_array_equal(inputs[t], x[10 * t:10 * t + 20])
        np.testing.assert_array_equal(targets[t], x[10 * t + 20:10 * t + 30])
    if T:
        # every sample after the first 20 is predicted exactly once (but a tail of < 10)
        predicted = targets.reshape(-1)
        np.testing.assert_array_equal(predicted, x[20:20 + 10 * T])
        assert n - 20 - 10 * T < 10
        np.testing.assert_array_equal(unframe(inputs, targets), x[:20 + 10 * T])
        assert inputs.flags.writeable and not np.shares_memory(inputs, x)


def test_chunks_keep_every_step():
    inputs, targets = frame_signal(np.arange(1234, dtype=np.float32))
    pieces = chunk(inputs, targets, 25)
    assert [len(p[0]) for p in pieces] == [25] * 4 + [21]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in pieces]), inputs)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in pieces]), targets)
    assert chunk(inputs, targets, None)[0][0] is inputs
    assert chunk(inputs[:0], targets[:0], 5) == []


def test_corpus_items_sizes_and_chunking(folder):
    corpus = load_dataset(folder_cfg(folder), None)
    assert isinstance(corpus, SpeechCorpus)
    assert (corpus.task, corpus.input_size, corpus.output_size, corpus.head) == ("speech", 20, 10, "gmm")
    assert corpus.head_kwargs["components"] == 20 and corpus.sample_rate == RATE
    lengths = {f"utt{i:02d}.wav": num_steps(400 + 37 * i) for i in range(10)}
    for split in ("train", "valid", "test"):
        assert corpus.lengths(split) == [lengths[n] for n in corpus.utterances[split]]
        for inputs, targets in corpus[split]:
            assert inputs.shape[1:] == (20,) and targets.shape[1:] == (10,) and inputs.dtype == np.float32
    chunked = load_dataset(folder_cfg(folder, chunk_steps=16), None)
    for split in ("train", "valid", "test"):
        assert sum(chunked.lengths(split)) == sum(corpus.lengths(split))
        assert max(chunked.lengths(split)) <= 16
    capped = load_dataset(folder_cfg(folder, max_steps=30, max_utterances=3), None)
    assert max(capped.lengths("train")) == 30 and len(capped.utterances["train"]) == 3
    rows = {r["split"]: r for r in corpus.stats()}
    assert rows["train"]["seconds"] == pytest.approx(rows["train"]["frames"] * 10 / RATE)


# --------------------------------------------------------------------------- normalisation

def test_normalisation_per_utterance():
    rng = np.random.default_rng(0)
    x = (3.0 + 0.5 * rng.standard_normal(5000)).astype(np.float32)
    y = normalize(x, "standard")
    assert abs(y.mean()) < 1e-5 and y.std() == pytest.approx(1.0, abs=1e-5)
    assert np.sqrt(np.mean(normalize(x, "rms").astype(np.float64) ** 2)) == pytest.approx(1.0, abs=1e-5)
    assert np.abs(normalize(x, "peak")).max() == pytest.approx(1.0)
    np.testing.assert_array_equal(normalize(x, "none"), x)
    with pytest.raises(ValueError, match="silent"):
        normalize(np.full(100, 0.25, np.float32), "standard")


def test_loudness_differences_are_removed(folder):
    corpus = load_dataset(folder_cfg(folder, split="sorted"), None)
    for inputs, targets in corpus["train"]:
        signal = unframe(inputs, targets)
        assert abs(signal.std() - 1.0) < 0.05  # normalised before the tail was dropped
    # loudness 10x apart in the files, not in the corpus
    stds = [unframe(*s).std() for s in corpus["train"]]
    assert max(stds) / min(stds) < 1.1


def test_normalise_option_is_checked(folder):
    with pytest.raises(ConfigError, match="dataset.normalize='loud'"):
        load_dataset(folder_cfg(folder, normalize="loud"), None)
    with pytest.raises(ConfigError, match="dataset.chunk_steps=0"):
        load_dataset(folder_cfg(folder, chunk_steps=0), None)


# --------------------------------------------------------------------------- splits

def test_fsdd_split_rule(tmp_path):
    d = tmp_path / "recordings"
    for digit in (0, 7):
        for speaker in ("ann", "bob"):
            for index in range(12):
                write(d / f"{digit}_{speaker}_{index}.wav", tone(300, 300, seed=index))
    files = fsdd_files(d)
    idx = {s: sorted({int(f.name.split("_")[2][:-4]) for f in files[s]}) for s in files}
    assert idx == {"test": [0, 1, 2, 3, 4], "valid": [5, 6, 7, 8, 9], "train": [10, 11]}
    assert [len(files[s]) for s in ("train", "valid", "test")] == [8, 20, 20]
    for split in ("valid", "test"):  # balanced: 5 per speaker and digit
        for key in ("0_ann", "0_bob", "7_ann", "7_bob"):
            assert sum(f.name.startswith(key + "_") for f in files[split]) == 5
    corpus = load_dataset({"kind": "fsdd", "name": "fsdd", "task": "speech", "path": str(d)}, None)
    assert len(corpus.utterances["train"]) == 8
    # the data-root layout is found without a path
    root = tmp_path / "root"
    (root / "speech" / "fsdd").mkdir(parents=True)
    d.rename(root / "speech" / "fsdd" / "recordings")
    assert len(load_dataset({"kind": "fsdd", "name": "fsdd", "task": "speech"}, root)["test"]) == 20
    write(root / "speech" / "fsdd" / "recordings" / "hello.wav", tone(300, 300))
    with pytest.raises(DataError, match="hello.wav"):
        load_dataset({"kind": "fsdd", "name": "fsdd", "task": "speech"}, root)


def test_yesno_split_rule(tmp_path):
    d = tmp_path / "waves_yesno"
    names = [f"{i // 4}_{(i // 2) % 2}_{i % 2}" for i in range(8)] + ["1_1_1_1", "1_1_1_0", "1_0_1_0", "0_1_1_1"]
    for i, n in enumerate(names):
        write(d / f"{n}.wav", tone(500, 250, seed=i))
    files = yesno_files(d)
    ordered = sorted(f"{n}.wav" for n in names)
    assert [f.name for f in files["test"]] == [ordered[0], ordered[6]]
    assert [f.name for f in files["valid"]] == [ordered[1], ordered[7]]
    assert len(files["train"]) == 8


def test_folder_hash_split_is_seeded_deterministic_and_complete(tmp_path):
    files = [AudioFile(tmp_path / f"f{i}.wav", f"f{i}.wav") for i in range(40)]
    a = split_by_rule(files, "hash", 0.1, 0.2, seed=0)
    b = split_by_rule(list(reversed(files)), "hash", 0.1, 0.2, seed=0)
    assert a == b
    assert [len(a[s]) for s in ("train", "valid", "test")] == [28, 4, 8]
    names = [f.name for s in a for f in a[s]]
    assert sorted(names) == sorted(f.name for f in files)
    other = split_by_rule(files, "hash", 0.1, 0.2, seed=1)
    assert {f.name for f in other["test"]} != {f.name for f in a["test"]}
    s = split_by_rule(files, "sorted", 0.1, 0.2)
    ordered = sorted(f.name for f in files)
    assert [f.name for f in s["test"]] == ordered[-8:] and [f.name for f in s["valid"]] == ordered[-12:-8]
    tiny = split_by_rule(files[:3], "hash", 0.1, 0.1)
    assert [len(tiny[s]) for s in ("train", "valid", "test")] == [1, 1, 1]
    with pytest.raises(ConfigError, match="valid_fraction"):
        split_by_rule(files, "hash", 0.6, 0.5)


def test_folder_split_by_subfolders(tmp_path):
    d = tmp_path / "corpus"
    for split, n in (("train", 4), ("dev", 2), ("test", 2)):
        for i in range(n):
            write(d / split / f"a{i}.flac", tone(400, 300, seed=i), subtype="PCM_16")
    files = folder_files(d)
    assert [len(files[s]) for s in ("train", "valid", "test")] == [4, 2, 2]
    assert all(f.name.startswith("dev/") for f in files["valid"])
    corpus = load_dataset(folder_cfg(d), None)
    assert len(corpus["train"]) == 4
    with pytest.raises(DataError, match="split=folders"):
        folder_files(tmp_path / "corpus" / "train", rule="folders")


# --------------------------------------------------------------------------- bad files, rates

def test_corrupt_file_is_named(folder):
    (folder / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    with pytest.raises(DataError, match="broken.wav"):
        load_dataset(folder_cfg(folder), None)
    corpus = load_dataset(folder_cfg(folder, skip_bad_files=True), None)
    assert sum(len(v) for v in corpus.utterances.values()) == 10


def test_silent_file_is_named(folder):
    write(folder / "quiet.wav", np.zeros(800, np.float32))
    with pytest.raises(DataError, match="quiet.wav.*silent|silent.*quiet.wav"):
        load_dataset(folder_cfg(folder), None)


def test_a_non_finite_file_is_named(folder):
    """A float WAV holding NaN or infinity would give the mixture head non-finite targets: the file
    is refused by name (or left out with skip_bad_files), never trained on."""
    x = tone(800, 300)
    x[100], x[200] = np.nan, np.inf
    write(folder / "broken_float.wav", x, subtype="FLOAT")
    with pytest.raises(DataError, match=r"broken_float.wav \(holds 2 non-finite sample"):
        load_dataset(folder_cfg(folder), None)
    corpus = load_dataset(folder_cfg(folder, skip_bad_files=True), None)
    assert [s["file"] for s in corpus.skipped] == ["broken_float.wav"]


@pytest.mark.parametrize("value", [0, -1e-3, float("inf"), float("nan"), "small"])
def test_a_bad_min_scale_is_refused_naming_key_and_value(folder, value):
    with pytest.raises(ConfigError, match=r"dataset.min_scale=.* is invalid"):
        load_dataset(folder_cfg(folder, min_scale=value), None)


@needs_torchaudio
def test_mixed_rates_refused_or_resampled(folder):
    write(folder / "wide.wav", tone(1600, 300, rate=16000), rate=16000)
    with pytest.raises(DataError) as err:
        load_dataset(folder_cfg(folder), None)
    assert "wide.wav" in str(err.value) and "16000 Hz" in str(err.value) and "resample" in str(err.value)
    corpus = load_dataset(folder_cfg(folder, resample=True, split="sorted"), None)
    assert corpus.sample_rate == RATE
    lengths = dict(zip(corpus.utterances["train"] + corpus.utterances["valid"] + corpus.utterances["test"],
                       corpus.lengths("train") + corpus.lengths("valid") + corpus.lengths("test")))
    assert lengths["wide.wav"] == num_steps(800)  # 0.1 s at 8 kHz
    with pytest.raises(DataError, match="different sample rates"):
        load_dataset(folder_cfg(folder, sample_rate=None), None)


def test_common_rate_is_kept_when_sample_rate_is_null(tmp_path):
    d = tmp_path / "wide"
    for i in range(4):
        write(d / f"w{i}.wav", tone(1600, 300, rate=16000, seed=i), rate=16000)
    assert load_dataset(folder_cfg(d, sample_rate=None), None).sample_rate == 16000


def test_missing_folder_and_path(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        load_dataset(folder_cfg(tmp_path / "nowhere"), None)
    with pytest.raises(ConfigError, match="dataset.path"):
        load_dataset({"kind": "audio_folder", "name": "x", "task": "speech"}, None)
    with pytest.raises(DataError, match="speech/fsdd/recordings"):
        load_dataset({"kind": "fsdd", "name": "fsdd", "task": "speech"}, tmp_path)


# --------------------------------------------------------------------------- torchaudio

@needs_torchaudio
def test_torchaudio_corpus_class(tmp_path):
    d = tmp_path / "waves_yesno"
    for i in range(6):
        write(d / f"{i % 2}_{(i // 2) % 2}_{i // 4}_1.wav", tone(600, 220, seed=i))
    cfg = {"kind": "torchaudio", "dataset": "YESNO", "path": str(tmp_path), "name": "ta", "task": "speech"}
    corpus = load_dataset(cfg, None)
    assert sum(len(v) for v in corpus.utterances.values()) == 6
    assert all(n.startswith("waves_yesno/") for v in corpus.utterances.values() for n in v)
    with pytest.raises(ConfigError, match="never downloaded"):
        load_dataset({**cfg, "kwargs": {"download": True}}, None)
    with pytest.raises(ConfigError, match="NOPE"):
        load_dataset({**cfg, "dataset": "NOPE"}, None)
    with pytest.raises(DataError, match="YESNO not found"):
        load_dataset({**cfg, "path": str(d)}, None)
    # one instance per split
    for split, n in (("tr", 3), ("va", 1), ("te", 2)):
        for i in range(n):
            write(tmp_path / split / f"{i}_0_1.wav", tone(600, 220, seed=i))
    per_split = {"train": {"folder_in_archive": "tr"}, "valid": {"folder_in_archive": "va"},
                 "test": {"folder_in_archive": "te"}}
    corpus = load_dataset({**cfg, "split_kwargs": per_split}, None)
    assert {s: len(v) for s, v in corpus.utterances.items()} == {"train": 3, "valid": 1, "test": 2}
    assert corpus.utterances["valid"] == ["va/0_0_1.wav"]


def test_misspelt_key_and_empty_split_are_refused(folder, tmp_path):
    with pytest.raises(ConfigError, match="dataset.chunk_step "):
        load_dataset(folder_cfg(folder, chunk_step=10), None)
    d = tmp_path / "two"
    for i in range(2):
        write(d / f"x{i}.wav", tone(400, 300, seed=i))
    with pytest.raises(DataError, match=r"two: 2 usable file\(s\); a train/valid/test split needs at least 3"):
        load_dataset(folder_cfg(d), None)
    # a fixed split (sub-folders) that leaves one empty says which and how many files each had
    for split in ("train", "test"):
        write(tmp_path / "fixed" / split / "a.wav", tone(400, 300))
    write(tmp_path / "fixed" / "valid" / "b.wav", tone(20, 300))  # too short: no step to predict
    with pytest.raises(DataError, match=r"no usable audio in the valid split.*valid: 1 files"):
        load_dataset(folder_cfg(tmp_path / "fixed"), None)


# --------------------------------------------------------------------------- skipped files, splits after reading, groups

def test_skipped_files_are_listed_and_logged_on_every_load(folder, caplog):
    import logging

    (folder / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    write(folder / "tiny.wav", tone(25, 300))  # 25 samples: no step to predict
    for _ in range(2):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="rnnbench.data"):
            corpus = load_dataset(folder_cfg(folder, skip_bad_files=True), None)
        reasons = {s["file"]: s["reason"] for s in corpus.skipped}
        assert set(reasons) == {"broken.wav", "tiny.wav"} and "shorter than 30 samples" in reasons["tiny.wav"]
        (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert "2 file(s) skipped" in line and "broken.wav" in line and "tiny.wav" in line
    assert sum(len(v) for v in corpus.utterances.values()) == 10
    for bad in ("broken.wav", "tiny.wav"):
        (folder / bad).unlink()
    assert load_dataset(folder_cfg(folder), None).skipped == []  # nothing skipped: an empty list


def hash_rank(names, seed=0):
    import hashlib

    return sorted(names, key=lambda n: hashlib.sha256(f"{seed}:{n}".encode()).hexdigest())


def test_split_is_decided_after_reading_so_a_bad_file_never_empties_a_split(tmp_path):
    d = tmp_path / "five"
    names = [f"u{i}.wav" for i in range(5)]
    for i, n in enumerate(names):
        write(d / n, tone(400, 200 + 40 * i, seed=i))
    test_first = hash_rank(names)[0]  # the hash rule puts this one alone in test
    (d / test_first).write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    corpus = load_dataset(folder_cfg(d, skip_bad_files=True), None)
    assert [s["file"] for s in corpus.skipped] == [test_first]
    usable = [n for n in names if n != test_first]
    assert corpus.utterances["test"] == [hash_rank(usable)[0]] and corpus.utterances["valid"] == [hash_rank(usable)[1]]
    assert sorted(sum(corpus.utterances.values(), [])) == sorted(usable)
    # the same with max_utterances: only the files kept are read, and the rule is drawn again without the bad one
    capped = load_dataset(folder_cfg(d, skip_bad_files=True, max_utterances=1), None)
    assert capped.utterances["test"] == corpus.utterances["test"] and len(capped.utterances["train"]) == 1
    # too few usable files for three splits: the folder and the counts are named
    for n in usable[:2]:
        (d / n).write_bytes(b"not audio")
    with pytest.raises(DataError, match=r"five: 2 usable file\(s\).*needs at least 3.*3 of the 5 files were left out"):
        load_dataset(folder_cfg(d, skip_bad_files=True), None)


def parallel_corpus(root, speakers=("SF1", "SF2", "TM1", "TM2"), utterances=10):
    """Several speakers reading the same sentences: <speaker>/<utterance id>.wav (the VCC2016 layout)."""
    for s, spk in enumerate(speakers):
        for u in range(utterances):
            write(root / spk / f"1000{u:02d}.wav", tone(300 + 10 * u, 150 + 30 * s + 7 * u, seed=10 * s + u))
    return root


def test_parallel_corpus_keeps_each_sentence_in_one_split(tmp_path):
    d = parallel_corpus(tmp_path / "vcc")
    ids = lambda corpus, split: {n.split("/")[1] for n in corpus.utterances[split]}  # noqa: E731
    leaky = load_dataset(folder_cfg(d, split_group="none"), None)
    assert ids(leaky, "train") & ids(leaky, "test")  # the old per-file split: the same sentence in train and test
    for group in ("auto", "stem", r"^[^/]+/(\d+)\.wav$"):
        corpus = load_dataset(folder_cfg(d, split_group=group), None)
        tr, va, te = ids(corpus, "train"), ids(corpus, "valid"), ids(corpus, "test")
        assert not (tr & va or tr & te or va & te), group
        assert [len(corpus.utterances[s]) for s in ("train", "valid", "test")] == [32, 4, 4]  # 8 / 1 / 1 sentences
    by_speaker = load_dataset(folder_cfg(d, split_group="folder"), None)
    spk = {s: {n.split("/")[0] for n in by_speaker.utterances[s]} for s in ("train", "valid", "test")}
    assert [len(spk[s]) for s in ("train", "valid", "test")] == [2, 1, 1]
    assert not (spk["train"] & spk["test"] or spk["train"] & spk["valid"] or spk["valid"] & spk["test"])
    # the regex's first group is the key: by speaker again
    again = load_dataset(folder_cfg(d, split_group=r"^(\w+)/"), None)
    spk = {s: {n.split("/")[0] for n in again.utterances[s]} for s in ("train", "valid", "test")}
    assert [len(spk[s]) for s in ("train", "valid", "test")] == [2, 1, 1] and len(set().union(*spk.values())) == 4


def test_split_group_errors_name_the_value_or_the_file(tmp_path):
    d = parallel_corpus(tmp_path / "vcc", speakers=("A", "B"), utterances=3)
    with pytest.raises(ConfigError, match=r"dataset.split_group='\(unclosed' is invalid: not a regular expression"):
        load_dataset(folder_cfg(d, split_group="(unclosed"), None)
    with pytest.raises(ConfigError, match=r"dataset.split_group='speaker' is invalid: the regular expression has no group"):
        load_dataset(folder_cfg(d, split_group="speaker"), None)
    with pytest.raises(DataError, match=r"split_group='\^\(A\)/' does not match 'B/100000.wav'"):
        load_dataset(folder_cfg(d, split_group="^(A)/"), None)
    with pytest.raises(DataError, match=r"vcc: 6 usable file\(s\) in 2 group\(s\); a train/valid/test split needs at "
                                         r"least 3 groups"):
        load_dataset(folder_cfg(d, split_group="folder"), None)
    with pytest.raises(ConfigError, match="dataset.split_group"):
        load_dataset({"kind": "fsdd", "name": "fsdd", "task": "speech", "split_group": "stem"}, None)


def yesno_fixture(d, n=12):
    names = [f"{(i >> 2) & 1}_{(i >> 1) & 1}_{i & 1}_{(i >> 3) & 1}_0_1_1_0" for i in range(n)]
    for i, name in enumerate(names):
        write(d / f"{name}.wav", tone(500, 250, seed=i))
    return names


@needs_torchaudio
def test_yesno_split_is_the_same_whichever_loader_reads_it(tmp_path):
    d = tmp_path / "waves_yesno"
    yesno_fixture(d)
    a = load_dataset({"kind": "yesno", "name": "yesno", "task": "speech", "path": str(d)}, None)
    b = load_dataset({"kind": "torchaudio", "dataset": "YESNO", "path": str(tmp_path), "name": "ta",
                      "task": "speech"}, None)
    base = lambda corpus: {s: [n.rsplit("/", 1)[-1] for n in corpus.utterances[s]] for s in corpus.utterances}  # noqa: E731
    assert base(a) == base(b)
    assert [len(a.utterances[s]) for s in ("train", "valid", "test")] == [8, 2, 2]
    for split in ("train", "valid", "test"):
        for x, y in zip(a[split], b[split]):
            np.testing.assert_array_equal(x[0], y[0])
    hashed = load_dataset({"kind": "torchaudio", "dataset": "YESNO", "path": str(tmp_path), "name": "ta",
                           "task": "speech", "split": "hash"}, None)  # asked for explicitly: the hash rule
    assert base(hashed) != base(a)


@pytest.mark.realdata
def test_real_yesno_is_40_10_10_with_both_loaders(real_root):
    from rnnbench.data.speech import torchaudio_files, yesno_split

    folder = real_root / "speech" / "yesno" / "waves_yesno"
    a = yesno_files(folder)
    b = yesno_split(torchaudio_files("YESNO", folder.parent))
    assert [len(a[s]) for s in ("train", "valid", "test")] == [40, 10, 10]
    assert {s: [f.path.name for f in a[s]] for s in a} == {s: [f.path.name for f in b[s]] for s in b}


# --------------------------------------------------------------------------- headers that lie, samples that cannot be right

def _load_bad(folder, **kw):
    with pytest.raises(DataError) as err:
        load_dataset(folder_cfg(folder, **kw), None)
    return str(err.value)


def test_a_wav_cut_short_is_refused_as_truncated_not_read_shorter(folder):
    """The header announces 800 samples; the file holds 500.  libsndfile alone reads 500 without
    a word: the docs promise a truncated file is refused (or skipped) by name."""
    whole = write(folder / "cut.wav", tone(800, 300)).read_bytes()
    (folder / "cut.wav").write_bytes(whole[:-600])
    msg = _load_bad(folder)
    assert "cut.wav (truncated (its header announces 1,600 bytes of samples, the file holds 1,000 (800 sample " \
           "frames; it holds 500)))" in msg and len(msg.splitlines()) == 1
    corpus = load_dataset(folder_cfg(folder, skip_bad_files=True), None)
    assert [s["file"] for s in corpus.skipped] == ["cut.wav"] and "truncated" in corpus.skipped[0]["reason"]
    # a stream whose length was never written (data size 0xFFFFFFFF) is read as it is
    stream = bytearray(whole)
    at = stream.index(b"data") + 4
    stream[at:at + 4] = b"\xff\xff\xff\xff"
    (folder / "cut.wav").write_bytes(bytes(stream))
    assert load_dataset(folder_cfg(folder), None).skipped == []


@pytest.mark.parametrize("bad, says", [(np.nan, "non-finite sample(s) (NaN or infinite), the first at sample 100"),
                                       (np.inf, "non-finite sample(s) (NaN or infinite), the first at sample 100")])
def test_non_finite_samples_are_named_as_such(folder, bad, says):
    x = tone(800, 300).astype(np.float64)
    x[100] = bad
    write(folder / "nan.wav", x, subtype="DOUBLE")
    msg = _load_bad(folder)
    assert "nan.wav" in msg and says in msg and "silent" not in msg


def test_a_sample_beyond_float32_is_named(folder):
    x = tone(800, 300).astype(np.float64)
    x[7] = 1e300
    write(folder / "huge.wav", x, subtype="DOUBLE")
    msg = _load_bad(folder)
    assert "huge.wav (sample 7 is 1e+300, beyond the float32 range" in msg


def test_channels_that_cancel_in_the_mix_down_are_named_not_called_silent(folder):
    x = tone(800, 300)
    write(folder / "phase.wav", np.stack([x, -x], axis=1), subtype="FLOAT")
    msg = _load_bad(folder)
    assert "phase.wav (its 2 channels cancel out in the mono mix-down" in msg and "silent recording" not in msg


def test_files_shorter_than_30_samples_are_short_not_silent_and_always_left_out(folder):
    """One sample (or 29 equal ones) has no step to predict: always left out as too short, as
    the docs say, never refused as a silent recording."""
    write(folder / "one.wav", np.full(1, 0.5, np.float32), subtype="FLOAT")
    write(folder / "flat.wav", np.zeros(29, np.float32))
    corpus = load_dataset(folder_cfg(folder), None)
    reasons = {s["file"]: s["reason"] for s in corpus.skipped}
    assert set(reasons) == {"one.wav", "flat.wav"}
    assert reasons["one.wav"] == "shorter than 30 samples at 8000 Hz (1 samples: no step to predict)"
    assert "silent" not in reasons["flat.wav"]


def test_one_enormous_sample_in_a_float_wav_is_refused(folder):
    """A float WAV whose one sample is 1e6 would be normalised to a spike and near-silence:
    refused by name (skip_bad_files leaves it out); a loud but ordinary float recording beyond
    full scale, and a 16-bit click, are kept."""
    x = tone(800, 300).astype(np.float32)
    x[400] = 1e6
    write(folder / "spike.wav", x, subtype="FLOAT")
    write(folder / "loud.wav", tone(800, 300) * 40, subtype="FLOAT")  # peaks near 12: no spike
    click = tone(800, 300) * 0.001
    click[10] = 0.99
    write(folder / "click.wav", click)  # 16-bit, within full scale
    msg = _load_bad(folder)
    assert "spike.wav (sample 400 is 1e+06, " in msg and "the recording's own spread" in msg
    assert "loud.wav" not in msg and "click.wav" not in msg
    corpus = load_dataset(folder_cfg(folder, skip_bad_files=True), None)
    assert [s["file"] for s in corpus.skipped] == ["spike.wav"]


def test_a_file_name_with_a_newline_keeps_the_error_on_one_line(folder):
    (folder / "bro\nken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    msg = _load_bad(folder)
    assert len(msg.splitlines()) == 1 and "'bro\\nken.wav' (unreadable audio file" in msg


def test_a_header_announcing_an_absurd_sample_rate_is_refused_not_resampled(folder):
    """A WAV header saying 1 Hz would be resampled to 8 kHz at 8,000 times its size: refused by
    name; dataset.sample_rate far outside audio rates is a config error."""
    import struct

    data = bytearray(write(folder / "slow.wav", tone(800, 300)).read_bytes())
    data[24:28] = struct.pack("<I", 1)  # the fmt chunk's sample rate
    (folder / "slow.wav").write_bytes(bytes(data))
    msg = _load_bad(folder, resample=True)
    assert "slow.wav (its header announces a sample rate of 1 Hz; expected audio between 1,000 and 1,000,000 Hz)" in msg
    with pytest.raises(ConfigError, match=r"dataset.sample_rate=1000000000 is invalid"):
        load_dataset(folder_cfg(folder, sample_rate=10**9, resample=True), None)


def test_an_aiff_cut_short_is_refused_as_truncated(folder):
    path = folder / "cut.aiff"
    sf.write(str(path), tone(800, 300), RATE, format="AIFF", subtype="PCM_16")
    path.write_bytes(path.read_bytes()[:-600])
    msg = _load_bad(folder)
    assert "cut.aiff (truncated (its header announces 800 sample frames, 1,600 bytes; the file holds 1,000 " \
           "(500 sample frames)))" in msg
    sf.write(str(path), tone(800, 300), RATE, format="AIFF", subtype="PCM_16")  # whole: read
    assert load_dataset(folder_cfg(folder), None).skipped == []
