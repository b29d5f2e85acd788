"""On the reference corpora (run in CI with RNNBENCH_DATA; skipped elsewhere when they are absent)."""

import pytest
from hydra import compose, initialize_config_dir

from conftest import REPO
from rnnbench.data import MUSIC_FILES, load_music, locate
from rnnbench.train import train

# The shared data README: train / valid / test sequences and train frames.
EXPECTED = {
    "jsb": ((229, 76, 77), 13_807),
    "nottingham": ((694, 173, 170), 176_561),
    "musedata": ((524, 135, 124), 245_202),
    "piano": ((87, 12, 25), 75_911),
}

pytestmark = pytest.mark.realdata


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reference_corpora_match_their_readme(real_root, name):
    path = locate(MUSIC_FILES[name]["mat"], root=real_root, download_missing=False, check=True)
    assert path.parent.parent == real_root
    corpus = load_music(name, root=real_root, download=False)
    rows = {r["split"]: r for r in corpus.stats()}
    seqs, train_frames = EXPECTED[name]
    assert tuple(rows[s]["sequences"] for s in ("train", "valid", "test")) == seqs
    assert rows["train"]["frames"] == train_frames
    assert 2.5 < rows["train"]["notes_per_frame"] < 4.5
    for split in ("train", "valid", "test"):
        assert 9 <= rows[split]["min_len"] and rows[split]["max_len"] <= 4273


@pytest.mark.parametrize("cell", ["tanh", "gru", "lstm"])
def test_one_epoch_on_jsb_learns(real_root, tmp_path, cell):
    """The paper's units, recipe and batch size 1: one epoch brings the NLL far below 88 ln 2 = 61.0."""
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train", overrides=["dataset=jsb", f"cell={cell}", f"data_root={real_root}",
                                          "train.max_epochs=1", "optim.lr=1e-3", "seed=0"])
    summary = train(cfg, tmp_path / cell)
    assert summary["status"] == "finished" and summary["updates"] == 229
    assert summary["units"] == {"tanh": 100, "gru": 46, "lstm": 36}[cell]
    assert summary["valid_nll"] < 15.0


ARCHIVE = REPO / "results" / "music" / "archive" / "2026-11-29"


@pytest.mark.parametrize("cell", ["tanh", "gru", "lstm"])
def test_the_one_loop_reproduces_a_committed_run_of_the_old_loop(real_root, tmp_path, cell):
    """JSB draw 0 as committed on 2026-11-29 by the separate single-run loop of that day (and its
    kernels): its first 2 epochs' validation NLL and noisy training loss come out again."""
    import csv

    from omegaconf import OmegaConf

    old = ARCHIVE / "music_jsb_search" / "jsb" / cell / "search.draw=0,train.patience=10"
    cfg = OmegaConf.load(old / "config.yaml")
    cfg = OmegaConf.merge(cfg, {"data_root": str(real_root), "train": {"max_epochs": 2}})
    train(cfg, tmp_path / cell)
    with open(old / "metrics.csv") as f:
        ref = list(csv.DictReader(f))[:2]
    with open(tmp_path / cell / "metrics.csv") as f:
        got = list(csv.DictReader(f))
    for key in ("valid_nll", "train_loss_noisy"):
        assert [float(r[key]) for r in got] == pytest.approx([float(r[key]) for r in ref], rel=2e-4), key
