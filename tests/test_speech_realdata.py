"""Speech on the reference corpora (run in CI with RNNBENCH_DATA; skipped elsewhere when absent)."""

import os
from collections import Counter
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from conftest import REPO
from rnnbench.data import load_dataset
from rnnbench.train import train

pytestmark = pytest.mark.realdata

# utterances and steps (predictions of 10 samples) per split with the shipped configs
FSDD = {"train": (2400, 834_924), "valid": (300, 104_899), "test": (300, 102_660)}
YESNO = {"train": (40, 196_248), "valid": (10, 50_356), "test": (10, 47_412)}


SPEECH_FOLDERS = ("speech/fsdd/recordings", "speech/yesno/waves_yesno")


@pytest.fixture(scope="session")
def real_root() -> Path:
    """The data root holding both speech corpora: $RNNBENCH_DATA, else ../shared/data beside the checkout."""
    for cand in (os.environ.get("RNNBENCH_DATA"), REPO.parent / "shared" / "data"):
        if cand and all((Path(cand) / f).is_dir() for f in SPEECH_FOLDERS):
            return Path(cand)
    msg = (f"speech corpora not found: set RNNBENCH_DATA to the folder holding {' and '.join(SPEECH_FOLDERS)} "
           f"(looked in: $RNNBENCH_DATA={os.environ.get('RNNBENCH_DATA') or '(unset)'}, {REPO.parent / 'shared' / 'data'})")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg + " (CI=true: the real-data tests must run)")
    pytest.skip(msg)


def dataset_cfg(name, real_root, *overrides):
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        return compose("train", overrides=[f"dataset={name}", f"data_root={real_root}", *overrides])


def test_fsdd_splits(real_root):
    files = sorted((real_root / "speech" / "fsdd" / "recordings").glob("*.wav"))
    assert len(files) == 3000
    cfg = dataset_cfg("fsdd", real_root)
    corpus = load_dataset(cfg.dataset, cfg.data_root)
    rows = {r["split"]: r for r in corpus.stats()}
    assert {s: (rows[s]["utterances"], rows[s]["frames"]) for s in rows} == FSDD
    assert sum(r["utterances"] for r in rows.values()) == 3000
    for split, per_speaker in (("test", 50), ("valid", 50), ("train", 400)):
        names = corpus.utterances[split]
        assert set(Counter(n.split("_")[1] for n in names).values()) == {per_speaker}  # 6 speakers
        assert set(Counter(n.split("_")[0] for n in names).values()) == {len(names) // 10}  # 10 digits
    test_idx = {int(n.split("_")[2][:-4]) for n in corpus.utterances["test"]}
    assert test_idx == set(range(5))  # the official split
    assert corpus.sample_rate == 8000


def test_yesno_splits(real_root):
    assert len(list((real_root / "speech" / "yesno" / "waves_yesno").glob("*.wav"))) == 60
    cfg = dataset_cfg("yesno", real_root)
    corpus = load_dataset(cfg.dataset, cfg.data_root)
    rows = {r["split"]: r for r in corpus.stats()}
    assert {s: (rows[s]["utterances"], rows[s]["frames"]) for s in rows} == YESNO


def test_torchaudio_yesno_class(real_root):
    pytest.importorskip("torchaudio", reason="dataset=torchaudio needs torchaudio (pip install torchaudio)")
    cfg = dataset_cfg("torchaudio", real_root, f"dataset.path={real_root / 'speech' / 'yesno'}")
    corpus = load_dataset(cfg.dataset, cfg.data_root)
    assert sum(len(v) for v in corpus.utterances.values()) == 60
    assert sum(sum(corpus.lengths(s)) for s in ("train", "valid", "test")) == sum(f for _, f in YESNO.values())


def test_one_epoch_on_an_fsdd_subset_learns(real_root, tmp_path):
    """The paper's GRU size, 60 evenly spaced utterances per split in 50-step pieces: one epoch beats
    a unit Gaussian."""
    cfg = dataset_cfg("fsdd", real_root, "cell=gru", "dataset.max_utterances=60", "dataset.chunk_steps=50",
                      "train.batch_size=16", "train.max_epochs=1", "seed=0", "train.threads=2")
    summary = train(cfg, tmp_path / "run")
    assert summary["units"] == 227 and summary["params_recurrent"] == 168_888
    assert summary["status"] == "finished"
    assert summary["valid_nll"] < 14.19  # 10 * 0.5 * log(2 pi e): a unit Gaussian per sample
