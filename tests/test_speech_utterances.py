"""scripts/speech_utterances.py and speech_pieces.py: their per-step numbers add up to the run's own
valid/test NLL."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "speech_utterances.py"


def _module():
    spec = importlib.util.spec_from_file_location("speech_utterances", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_describe_and_spikes_on_known_numbers():
    mod = _module()
    nll = [np.array([1.0, 2.0, 3.0]), np.array([-1.0] * 99), np.array([500.0])]
    d = mod.describe(nll, ["a.wav", "b.wav", "c.wav"])
    assert d["steps"] == 103 and d["utterances"] == 3
    assert d["mean"] == pytest.approx((6 - 99 + 500) / 103)
    assert d["worst_name"] == "c.wav" and d["worst_utt"] == 500.0 and d["median_utt"] == 2.0
    assert d["mean_wo_worst"] == pytest.approx((6 - 99) / 102)
    assert d["max_step"] == 500.0
    # the worst 1% of 103 steps is 2 steps (500 and 3)
    assert d["mean_wo_top1pct"] == pytest.approx((1 + 2 - 99) / 101)
    off = mod.float64_columns([np.array([1.0, 1.0]), np.array([2.0])], [np.array([1.0, 1.0005]), np.array([2.5])])
    assert off == {"mean_float64": pytest.approx((2.0005 + 2.5) / 3), "utts_off": 1}
    base = [np.array([1.0, 1.0]), np.array([2.0])]
    st = mod.stability_columns(base, [[np.array([1.0, 1.0]), np.array([2.0])], [np.array([1.0, 1.0]), np.array([5.0])]],
                               [[np.array([1.0, 1.0005]), np.array([2.0])]])
    assert st == {"perturbed_median": pytest.approx(5.5 / 3), "perturbed_min": pytest.approx(4 / 3),
                  "perturbed_max": pytest.approx(7 / 3), "utts_unstable": 1, "mean_stable": 1.0}
    rows = pd.DataFrame({"dataset": "fsdd", "cell": ["gru", "gru", "gru", "tanh", "tanh", "tanh"],
                         "variant": [math.nan, math.nan, math.nan, "σ=0.02", "σ=0.02", "σ=0.02"], "split": "test",
                         "lr": ["0.0013"] * 3 + ["0.000503", "0.000503", "0.00111"],  # (the last: another rate)
                         "mean": [1.0, 2.0, 3000.0, 5.0, 7.0, 99.0], "mean_stable": [1.0, 2.0, 3.0, 5.0, 7.0, 99.0],
                         "median_utt": [0.5, 1.5, 2.5, 4.0, 6.0, 99.0], "utts_unstable": [0, 0, 4, 0, 0, 9]})
    cells = mod.by_cell(rows).set_index("cell")
    assert list(cells.index) == ["gru", "tanh (σ=0.02)"] and list(cells.seeds) == [3, 2]
    assert list(cells.lr) == ["0.0013", "0.000503"]
    assert cells.loc["gru", "mean"] == pytest.approx(3003 / 3) and cells.loc["gru", "mean_stable"] == pytest.approx(2)
    assert cells.loc["gru", "median_utt_ci95"] == pytest.approx(4.302653 * 1 / math.sqrt(3), rel=1e-6)
    assert cells.loc["gru", "seeds_rounding_decides"] == 1 and cells.loc["gru", "utts_unstable"] == 4
    assert cells.loc["tanh (σ=0.02)", "mean"] == 6.0 and cells.loc["tanh (σ=0.02)", "seeds_rounding_decides"] == 0
    valid = pd.Series([5.0, 3.0, 20.0, 2.0, 11.9, 12.1, math.nan, 1.0])
    assert mod.spikes(valid, 10.0) == 2  # 20 > 3 + 10 and 12.1 > 2 + 10; 11.9 is not


def test_claims_on_the_statistics_a_few_utterances_do_not_carry():
    """The report's claims, judged on the test split's mean, mean_stable and median_utt: a GRU seed
    whose mean one utterance blows up leaves "GRU beats tanh" inconclusive on the mean and holding
    on the other two; a cell stopped below the paper's cap is not judged; a one-seed diagnostic and
    the validation rows are not used."""
    mod = _module()
    rows = []
    for cell, base, variant, lr, seeds in (("tanh", 11.0, math.nan, "0.000347", 3), ("gru", -6.0, math.nan, "0.0013", 3),
                                           ("lstm", -7.0, math.nan, "0.00111", 3), ("tanh", 20.0, "σ=0", "0.0005", 1)):
        for seed in range(seeds):
            blown = cell == "gru" and seed == 1
            for split in ("valid", "test"):
                rows.append({"dataset": "fsdd", "cell": cell, "variant": variant, "lr": lr, "seed": seed, "split": split,
                             "mean": 1e4 if blown else base + 0.01 * seed, "mean_stable": base + 0.01 * seed,
                             "median_utt": base + 2 + 0.01 * seed, "stop_reason": "early_stopping",
                             "epochs": 100})
    rows.append({**rows[0], "lr": "0.01", "seed": 0, "mean": -99.0})  # (another rate, fewer seeds: not used)
    judged = mod.utterance_claims(pd.DataFrame(rows)).set_index(["statistic", "claim"])
    assert judged.loc[("mean", "GRU beats tanh"), "verdict"] == "inconclusive"
    assert judged.loc[("mean", "LSTM beats tanh"), "verdict"] == "holds"
    for stat in ("mean_stable", "median_utt"):
        assert judged.loc[(stat, "gated beats tanh"), "verdict"] == "holds"
        assert judged.loc[(stat, "GRU ≈ LSTM (|difference| < 0.1 nats)"), "verdict"] == "fails"
        assert judged.loc[(stat, "GRU beats tanh"), "evidence"] == "tanh - gru = +17.000 [+17.000, +17.000]"
    assert not any("σ=0" in c for c in judged.index.get_level_values("claim"))
    capped = pd.DataFrame([{**r, "stop_reason": "max_epochs", "epochs": 200} if r["cell"] == "lstm" else r for r in rows])
    assert set(mod.utterance_claims(capped).query("claim == 'LSTM beats tanh'")["verdict"]) == {
        "not judged (* stopped by the epoch cap)"}


@pytest.fixture(scope="module")
def tiny_yesno(tmp_path_factory):
    """A 3-epoch GRU-6 run on 12 tones named as YESNO's files are, and the environment it ran in
    (each test copies the run before it changes anything)."""
    tmp_path = tmp_path_factory.mktemp("tiny_yesno")
    rate = 8000
    folder = tmp_path / "waves_yesno"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        t = np.arange(300 + 17 * i) / rate
        x = 0.1 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.01 * rng.standard_normal(len(t))
        sf.write(str(folder / f"{i >> 2 & 1}_{i >> 1 & 1}_{i & 1}_0_1_1_0_{i:02d}.wav"), x.astype(np.float32), rate,
                 subtype="PCM_16")
    env = dict(os.environ, RNNBENCH_RUNS=str(tmp_path / "runs"), HYDRA_FULL_ERROR="1",
               RNNBENCH_CACHE=str(tmp_path / "cache"))
    env.pop("RNNBENCH_DATA", None)
    run = tmp_path / "runs" / "yesno"
    p = subprocess.run([sys.executable, "-m", "rnnbench.cli.train", "-m", "dataset=yesno", f"dataset.path={folder}",
                        "cell=gru", "cell.units=6", "train.batch_size=4", "optim.lr=1e-2", "train.max_epochs=3",
                        "train.threads=1", f"hydra.sweep.dir={run}"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return run, env


@pytest.mark.slow  # (trains one tiny speech run through the CLI: ~10 s, shared with the next test)
def test_scores_add_up_to_the_runs_summary(tiny_yesno, tmp_path):
    run, env = tmp_path / "yesno", tiny_yesno[1]
    shutil.copytree(tiny_yesno[0], run)
    out = tmp_path / "utt"
    p = subprocess.run([sys.executable, str(SCRIPT), str(run), "--out", str(out)], env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = list(csv.DictReader(open(out / "utterances.csv")))
    assert sorted(r["split"] for r in rows) == ["test", "valid"]
    (summary,) = [json.loads(s.read_text()) for s in run.rglob("summary.json")]
    for r in rows:
        assert float(r["mean"]) == pytest.approx(summary[f"{r['split']}_nll"], rel=1e-5, abs=1e-5)
        assert int(r["utterances"]) == 2 and r["worst_name"].endswith(".wav")
        assert float(r["mean_wo_top1pct"]) <= float(r["mean"]) <= float(r["max_step"])
        assert float(r["mean_float64"]) == pytest.approx(float(r["mean"]), abs=1e-3) and r["utts_off"] == "0"
        # ulp-sized weight changes move a small healthy model's score by rounding only
        assert float(r["perturbed_min"]) == pytest.approx(float(r["mean"]), abs=1e-4)
        assert float(r["perturbed_max"]) == pytest.approx(float(r["mean"]), abs=1e-4) and r["utts_unstable"] == "0"
        assert int(r["epochs"]) == 3
    assert (out / "utterances.md").read_text().startswith("| dataset | cell | variant |")
    cells = list(csv.DictReader(open(out / "by_cell.csv")))
    assert [(c["cell"], c["lr"], c["split"], c["seeds"]) for c in cells] == [("gru", "0.01", "valid", "1"),
                                                                             ("gru", "0.01", "test", "1")]
    for c in cells:
        assert float(c["mean"]) == pytest.approx(summary[f"{c['split']}_nll"], rel=1e-5, abs=1e-5)
        assert float(c["mean_stable"]) == pytest.approx(float(c["mean"]), abs=1e-5) and c["seeds_rounding_decides"] == "0"
    # called again: the rows of the same best.pt are kept (nothing scored), the files are the same;
    # --fresh scores again, to the same files; a changed best.pt is scored again
    assert (out / "claims.csv").read_text().strip() == "statistic,dataset,claim,seeds,evidence,verdict,paper"  # (one cell)
    first = {n: (out / n).read_bytes() for n in ("utterances.csv", "utterances.md", "by_cell.csv", "by_cell.md",
                                                 "claims.csv", "claims.md")}
    for extra, how in (([], "kept from the earlier utterances.csv"), (["--fresh"], "(scored)")):
        p = subprocess.run([sys.executable, str(SCRIPT), str(run), "--out", str(out), *extra], env=env,
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
        assert p.stdout.count(how) == 2 and {n: (out / n).read_bytes() for n in first} == first
    import torch

    (best,) = run.rglob("best.pt")
    torch.save({**torch.load(best, weights_only=False), "note": "another file"}, best)
    p = subprocess.run([sys.executable, str(SCRIPT), str(run), "--out", str(out)], env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0 and p.stdout.count("(scored)") == 2, p.stderr[-3000:]
    p = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "nowhere"), "--out", str(out)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode != 0 and "nowhere: not a folder" in p.stderr
    p = subprocess.run([sys.executable, str(SCRIPT), str(run), "--splits", "valid,dev", "--out", str(out)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode != 0 and "--splits 'valid,dev': expected" in p.stderr


@pytest.mark.slow
def test_pieces_cost_nothing_when_no_utterance_is_cut_and_are_counted_when_they_are(tiny_yesno, tmp_path,
                                                                                       monkeypatch):
    """scripts/speech_pieces.py: on whole utterances it gives the run's own valid/test NLL; pieces
    longer than any utterance change nothing; 10-step pieces are as many as the utterances' steps
    make; bad arguments are refused by name."""
    from rnnbench.data import load_dataset
    from rnnbench.runs import load_config

    script = REPO / "scripts" / "speech_pieces.py"
    run, env = tiny_yesno
    (summary,) = [json.loads(s.read_text()) for s in run.rglob("summary.json")]
    monkeypatch.setenv("RNNBENCH_CACHE", env["RNNBENCH_CACHE"])
    corpus = load_dataset(load_config(next(run.rglob("summary.json")).parent).dataset, None)
    assert all(len(corpus[split]) == 2 for split in ("valid", "test"))
    for steps in (1000, 10):
        out = tmp_path / f"pieces{steps}"
        p = subprocess.run([sys.executable, str(script), str(run), "--steps", str(steps), "--out", str(out)], env=env,
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
        rows = list(csv.DictReader(open(out / "pieces.csv")))
        assert [r["split"] for r in rows] == ["valid", "test"]
        assert (out / "pieces.md").read_text().startswith("| dataset | cell | variant | lr | seed | split |")
        for r in rows:
            assert float(r["whole"]) == pytest.approx(summary[f"{r['split']}_nll"], rel=1e-5, abs=1e-5)
            assert r["utterances"] == "2" and r["steps_per_piece"] == str(steps)
            cost = float(r["pieces_nll"]) - float(r["whole"])
            assert float(r["cost_of_restarts"]) == pytest.approx(cost, abs=1e-4)  # (the csv: 6 digits)
            if steps == 1000:
                assert r["pieces"] == "2" and cost == pytest.approx(0, abs=1e-6)
        if steps == 10:  # each utterance of T steps in ceil(T / 10) pieces
            assert {r["split"]: int(r["pieces"]) for r in rows} == {
                split: sum(-(-len(inputs) // 10) for inputs, _ in corpus[split]) for split in ("valid", "test")}
    for bad, said in ((["--steps", "0"], "--steps 0: expected a whole number of steps, at least 1"),
                      (["--splits", "dev"], "--splits 'dev': expected"), ([], None)):
        where = [str(run)] if said else [str(tmp_path / "nowhere")]
        p = subprocess.run([sys.executable, str(script), *where, *bad], env=env, capture_output=True, text=True,
                           timeout=600)
        assert p.returncode != 0 and (said or "nowhere: not a folder") in p.stderr


@pytest.mark.slow
def test_own_score_reproduces_the_trainers_numbers_from_the_checkpoint_alone(tiny_yesno, tmp_path):
    """scripts/own_score.py: the trainer's valid/test NLL from best.pt and config.yaml, exactly (a
    stack of one with the trainer's batches); a summary.json that says otherwise exits 1 and is
    listed; bad input is one line naming the file."""
    run, env = tmp_path / "yesno", tiny_yesno[1]
    shutil.copytree(tiny_yesno[0], run)
    script = REPO / "scripts" / "own_score.py"
    out = tmp_path / "own.md"
    p = subprocess.run([sys.executable, str(script), str(run), "--splits", "valid,test", "--out", str(out)], env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "2 of 2 scores agree with summary.json to 1e-06 relative (2 exactly" in p.stdout
    table = out.read_text()
    assert table.count("| yes |") == 2 and "**NO**" not in table and not list(tmp_path.glob("*.tmp"))
    (summary_path,) = run.rglob("summary.json")
    summary = json.loads(summary_path.read_text())
    summary_path.write_text(json.dumps({**summary, "test_nll": summary["test_nll"] + 1e-3}))
    p = subprocess.run([sys.executable, str(script), str(run)], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 1 and "DIFFERS  test" in p.stdout and "1 DIFFER" in p.stdout
    summary_path.write_text(json.dumps({**summary, "test_nll": None}))
    p = subprocess.run([sys.executable, str(script), str(run)], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode != 0 and f"{summary_path}: no number for test_nll" in p.stderr
    p = subprocess.run([sys.executable, str(script), str(tmp_path / "nowhere")], env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode != 0 and "own_score: " in p.stderr and "nowhere: not a folder" in p.stderr
