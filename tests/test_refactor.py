"""The one training loop against runs made before it existed.

``tests/data/pre_refactor_toy_runs.json`` holds the numbers of the separate single-run loop of
commit fc60b98 (``train.train`` before it became a stack of one) on the toy corpus of
``conftest.py``: per epoch the validation NLL, the noise-free training NLL and the noisy training
loss, and the test NLL.  The loop of today must give them again to float rounding, with the test
NLL and the training NLL of the best epoch now scored once when the run ends.
"""

import csv
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rnnbench.train import train

REF = json.loads((Path(__file__).parent / "data" / "pre_refactor_toy_runs.json").read_text())


@pytest.mark.parametrize("key", sorted(REF))
def test_a_lone_run_gives_the_numbers_of_the_old_loop(toy_cfg, tmp_path, key):
    cell, batch = key.split("-b")
    cfg = OmegaConf.merge(toy_cfg, {"cell": {"name": cell}, "train": {"batch_size": int(batch), "eval_train_every": 1}})
    summary = train(cfg, tmp_path / "run")
    ref = REF[key]
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert summary["best_epoch"] == ref["best_epoch"]
    for name in ("valid_nll", "train_nll", "train_loss_noisy"):
        assert [float(r[name]) for r in rows] == pytest.approx(ref[name], rel=1e-5), name
    best = ref["best_epoch"] - 1
    assert summary["test_nll"] == pytest.approx(ref["test_nll"][best], rel=1e-5)
    assert summary["train_nll"] == pytest.approx(ref["train_nll"][best], rel=1e-5)
    # test NLL only for the best epoch, scored after training
    assert [r["test_nll"] != "" for r in rows] == [i == best for i in range(len(rows))]
