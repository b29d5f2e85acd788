"""scripts/gap_analysis.py on a small real sweep: its standard score is the run's own test NLL."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gap_analysis_rescores_the_selected_runs(toy_mat, tmp_path):
    env = dict(os.environ, RNNBENCH_RUNS=str(tmp_path / "runs"), HYDRA_FULL_ERROR="1")
    train = subprocess.run(
        [sys.executable, "-m", "rnnbench.cli.train", "-m", "experiment=quick_jsb", f"dataset.path={toy_mat}",
         "dataset.name=toy", "cell.units=6", "train.batch_size=4", "cell=tanh,gru", "search.draw=0,1",
         "train.max_epochs=4"], env=env, capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    sweep = tmp_path / "runs" / "sweeps" / "quick_jsb"
    out = tmp_path / "gap"
    gap = subprocess.run([sys.executable, str(REPO / "scripts" / "gap_analysis.py"), str(sweep), "--out", str(out)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert gap.returncode == 0, gap.stderr[-3000:]
    rows = list(csv.DictReader(open(out / "gap.csv")))
    assert sorted(r["cell"] for r in rows) == ["gru", "tanh"]  # one selected run per dataset x cell
    summaries = {p.parent: json.loads(p.read_text()) for p in sweep.rglob("summary.json")}
    for r in rows:
        f32, f64, summary = (float(r[k]) for k in ("per_frame", "per_frame_float64", "summary_test"))
        assert f32 == pytest.approx(summary, rel=1e-5)  # the trainer's own test number, re-scored from best.pt
        assert f64 == pytest.approx(f32, abs=1e-3)
        assert math.isfinite(float(r["per_sequence"])) and math.isfinite(float(r["no_first_frame"]))
        selected = next(s for s in summaries.values()
                        if s["cell"] == r["cell"] and s["best_epoch"] == int(r["best_epoch"]) and f"{s['lr']:.3g}" == r["lr"])
        assert selected["status"] == "finished"
    assert (out / "gap.md").read_text().startswith("| dataset | cell |")
