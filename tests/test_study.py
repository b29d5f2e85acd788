"""The study: seeded learning-rate draws, Hydra multiruns (resume after kill -9, launchers), and the report."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from conftest import REPO
from rnnbench.errors import ConfigError
from rnnbench.report import collect_runs, expected_configs, select_best, write_report
from rnnbench.search import loguniform_draw


def test_learning_rate_draws_are_seeded_and_in_range():
    draws = [loguniform_draw(2014, k) for k in range(10)]
    assert draws == [loguniform_draw(2014, k) for k in range(10)]
    assert len(set(draws)) == 10
    assert all(math.exp(-12) <= d <= math.exp(-6) for d in draws)
    assert draws != [loguniform_draw(7, k) for k in range(10)]
    with pytest.raises(ConfigError, match="search.draw=-1"):
        loguniform_draw(2014, -1)


def test_experiment_config_draws_the_rate():
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train", overrides=["experiment=chung2014_music", "search.draw=3"])
    assert cfg.optim.lr == loguniform_draw(2014, 3)
    assert cfg.train.batch_size == 1 and cfg.train.weight_noise == 0.075 and cfg.train.clip_norm == 1.0


# ----------------------------------------------------------------------------- multiruns

def sweep_cmd(toy_mat, extra=()):
    return [sys.executable, "-m", "rnnbench.cli.train", "-m", "experiment=quick_jsb", f"dataset.path={toy_mat}",
            "dataset.name=toy", "cell.units=6", "train.batch_size=4", "cell=tanh,gru,lstm", "search.draw=0",
            "train.patience=50", *extra]


def run_env(tmp_path, name):
    return dict(os.environ, RNNBENCH_RUNS=str(tmp_path / name), HYDRA_FULL_ERROR="1")


def metrics_rows(run_dir: Path):
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in r.items() if k != "wall_seconds"} for r in csv.DictReader(f)]


def sweep_results(root: Path) -> dict:
    sweep = root / "sweeps" / "quick_jsb"
    out = {}
    for summary in sorted(sweep.rglob("summary.json")):
        run = summary.parent
        out[run.relative_to(sweep).as_posix()] = (json.loads(summary.read_text()), metrics_rows(run))
    return out


# Toy epochs take milliseconds: enough of them that the kill lands while runs are unfinished.
KILL_EPOCHS = 30


def kill_sweep_when(cmd, env, sweep: Path, epochs_done: int) -> None:
    """Start the sweep ``cmd`` and kill -9 its whole process group once a gru run has finished
    ``epochs_done`` epochs."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        rows = list(sweep.glob("toy/gru/*/metrics.csv"))
        if rows and len(rows[0].read_text().splitlines()) > epochs_done:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_killed_sweep_resumes_without_losing_or_duplicating(toy_mat, tmp_path):
    epochs = f"train.max_epochs={KILL_EPOCHS}"
    ref = subprocess.run(sweep_cmd(toy_mat, [epochs]), env=run_env(tmp_path, "ref"), capture_output=True, text=True,
                         timeout=600)
    assert ref.returncode == 0, ref.stderr
    expected = sweep_results(tmp_path / "ref")
    assert len(expected) == 3

    env = run_env(tmp_path, "killed")
    sweep = tmp_path / "killed" / "sweeps" / "quick_jsb"
    # once the second run (gru) is part-way through, kill -9 the whole sweep
    kill_sweep_when(sweep_cmd(toy_mat, [epochs]), env, sweep, epochs_done=2)
    partial = sweep_results(tmp_path / "killed")
    assert any(s["status"] == "running" for s, _ in partial.values())

    again = subprocess.run(sweep_cmd(toy_mat, [epochs]), env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    got = sweep_results(tmp_path / "killed")
    assert sorted(got) == sorted(expected)
    for run, (summary, rows) in got.items():
        assert summary["status"] == "finished" and summary["epochs"] == KILL_EPOCHS
        assert [int(r["epoch"]) for r in rows] == list(range(1, KILL_EPOCHS + 1))
        assert rows == expected[run][1]  # identical numbers to the uninterrupted sweep
    assert not list(sweep.rglob("*.tmp"))

    # a third run of the same command trains nothing
    third = subprocess.run(sweep_cmd(toy_mat, [epochs]), env=env, capture_output=True, text=True, timeout=600)
    assert third.returncode == 0 and "epoch   1" not in third.stderr + third.stdout


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_launchers(toy_mat, tmp_path, launcher):
    extra = ["train.max_epochs=2", f"hydra/launcher={launcher}"]
    if launcher == "joblib":
        extra.append("hydra.launcher.n_jobs=2")
    else:
        extra += ["hydra.launcher.timeout_min=10", "hydra.launcher.cpus_per_task=1"]
    p = subprocess.run(sweep_cmd(toy_mat, extra), env=run_env(tmp_path, launcher), capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    got = sweep_results(tmp_path / launcher)
    assert len(got) == 3
    assert all(s["status"] == "finished" and s["epochs"] == 2 and s["units"] == 6 for s, _ in got.values())


@pytest.mark.slow
def test_stacked_launcher_matches_the_basic_launcher(toy_mat, tmp_path):
    """hydra/launcher=stacked: same run directories and numbers (to rounding) as one job at a time."""
    base = ["train.max_epochs=3", "cell=gru,lstm", "search.draw=0,1,2"]
    ref = subprocess.run(sweep_cmd(toy_mat, base), env=run_env(tmp_path, "basic"), capture_output=True, text=True,
                         timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]
    stacked_cmd = sweep_cmd(toy_mat, base + ["hydra/launcher=stacked", "hydra.launcher.n_jobs=2"])
    env = run_env(tmp_path, "stacked")
    p = subprocess.run(stacked_cmd, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    expected, got = sweep_results(tmp_path / "basic"), sweep_results(tmp_path / "stacked")
    assert sorted(got) == sorted(expected) and len(got) == 6
    for run, (summary, rows) in got.items():
        assert summary["stacked_members"] == 3
        assert (tmp_path / "stacked" / "sweeps" / "quick_jsb" / run / ".hydra" / "overrides.yaml").is_file()
        ref_summary, ref_rows = expected[run]
        assert summary["epochs"] == ref_summary["epochs"] == 3 and summary["lr"] == ref_summary["lr"]
        assert summary["valid_nll"] == pytest.approx(ref_summary["valid_nll"], rel=1e-4)
        for a, b in zip(rows, ref_rows):
            assert float(a["valid_nll"]) == pytest.approx(float(b["valid_nll"]), rel=1e-4)
    logs = sorted(p.name for p in (tmp_path / "stacked" / "sweeps" / "quick_jsb" / "toy").rglob("stack-*.log"))
    assert len(logs) == 2
    # the report reads it like any sweep; the same command again trains nothing
    again = subprocess.run(stacked_cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "epoch   1" not in again.stderr + again.stdout
    assert sweep_results(tmp_path / "stacked") == got


@pytest.mark.slow
def test_killed_stacked_sweep_resumes_without_losing_or_duplicating(toy_mat, tmp_path):
    extra = [f"train.max_epochs={KILL_EPOCHS}", "cell=gru", "search.draw=0,1,2", "hydra/launcher=stacked"]
    ref = subprocess.run(sweep_cmd(toy_mat, extra), env=run_env(tmp_path, "ref"), capture_output=True, text=True,
                         timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]
    expected = sweep_results(tmp_path / "ref")
    assert len(expected) == 3

    env = run_env(tmp_path, "killed")
    sweep = tmp_path / "killed" / "sweeps" / "quick_jsb"
    kill_sweep_when(sweep_cmd(toy_mat, extra), env, sweep, epochs_done=3)  # (stack workers included)
    assert any(s["status"] == "running" for s, _ in sweep_results(tmp_path / "killed").values())

    again = subprocess.run(sweep_cmd(toy_mat, extra), env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    got = sweep_results(tmp_path / "killed")
    assert sorted(got) == sorted(expected)
    for run, (summary, rows) in got.items():
        assert summary["status"] == "finished" and summary["epochs"] == KILL_EPOCHS
        assert [int(r["epoch"]) for r in rows] == list(range(1, KILL_EPOCHS + 1))
        for a, b in zip(rows, expected[run][1]):  # the same numbers, to rounding (see stack.py)
            assert float(a["valid_nll"]) == pytest.approx(float(b["valid_nll"]), rel=1e-5)
            assert int(a["updates"]) == int(b["updates"])
    assert not list(sweep.rglob("*.tmp"))


# ----------------------------------------------------------------------------- report

def fake_run(sweep: Path, dataset, cell, draw, seed, lr, valid, test, train=None, status="finished", epochs=3):
    """A run directory as train() writes it (used to test the report's logic on known numbers)."""
    run = sweep / dataset / cell / f"search.draw={draw},seed={seed}"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"search:\n  draw: {draw}\ndataset:\n  name: {dataset}\ncell:\n  name: {cell}\nseed: {seed}\n")
    train = valid - 0.2 if train is None else train
    summary = {"status": status, "stop_reason": "early_stopping" if status == "finished" else None,
               "dataset": dataset, "task": "music", "cell": cell, "units": {"tanh": 100, "gru": 46, "lstm": 36}[cell],
               "params_recurrent": 1, "params_total": 2, "lr": lr, "seed": seed, "batch_size": 1,
               "weight_noise": 0.075, "best_epoch": epochs, "train_nll": train, "valid_nll": valid, "test_nll": test,
               "epochs": epochs, "updates": 10 * epochs, "wall_seconds": 1.0 * epochs, "fingerprint": "x"}
    (run / "summary.json").write_text(json.dumps(summary))
    lines = ["epoch,updates,wall_seconds,train_nll,valid_nll,test_nll,train_loss_noisy,lr"]
    for e in range(1, epochs + 1):
        lines.append(f"{e},{10 * e},{1.0 * e},{train + (epochs - e)},{valid + (epochs - e)},{test + (epochs - e)},0,{lr}")
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    return run


@pytest.fixture
def fake_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    for seed in (0, 1, 2):
        # draw 0 has the better validation NLL; draw 1 the better *test* NLL: selection must pick draw 0
        for cell, base in (("gru", 8.0), ("lstm", 8.3), ("tanh", 8.6)):
            fake_run(sweep, "jsb", cell, 0, seed, 1e-3, valid=base + 0.01 * seed, test=base + 0.1 + 0.02 * seed)
            fake_run(sweep, "jsb", cell, 1, seed, 1e-4, valid=base + 0.5, test=base - 1.0)
    fake_run(sweep, "nottingham", "gru", 0, 0, 1e-3, valid=3.0, test=3.1)
    fake_run(sweep, "nottingham", "lstm", 0, 0, 1e-3, valid=float("nan"), test=float("nan"), status="diverged")
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    params:\n      dataset: jsb,nottingham\n      cell: tanh,gru,lstm\n"
        "      search.draw: range(0,2)\n      seed: 0,1,2\n  overrides:\n    task: []\nseed: 0\n")
    return sweep


def test_selection_is_on_validation_never_on_test(fake_sweep):
    best = select_best(collect_runs([fake_sweep])).set_index(["dataset", "cell"])
    assert best.loc[("jsb", "gru"), "lr"] == 1e-3
    assert best.loc[("jsb", "gru"), "seeds"] == 3
    assert best.loc[("jsb", "gru"), "test_nll"] == pytest.approx(8.0 + 0.1 + 0.02)
    assert best.loc[("jsb", "gru"), "test_std"] == pytest.approx(0.02)
    assert best.loc[("jsb", "gru"), "paper_test"] == 8.54
    assert ("nottingham", "lstm") not in best.index  # diverged runs are never selected


def test_report_tables_interval_missing_and_failed(fake_sweep, tmp_path):
    result = write_report([fake_sweep], tmp_path / "rep")
    t2 = pd.read_csv(tmp_path / "rep" / "table2.csv")
    jsb_test = t2[(t2.dataset == "JSB Chorales") & (t2.split == "test")].iloc[0]
    assert jsb_test["gru"] == "8.12 ± 0.02"
    cmp = pd.read_csv(tmp_path / "rep" / "gru_vs_lstm.csv").iloc[0]
    assert cmp["gru_minus_lstm"] == pytest.approx(-0.3)
    assert cmp["ci95_low"] < -0.3 < cmp["ci95_high"] or cmp["ci95_low"] == pytest.approx(-0.3)
    missing = pd.read_csv(tmp_path / "rep" / "missing.csv")
    # 2 datasets x 3 cells x 2 draws x 3 seeds = 36 asked for; 18 + 2 present
    assert len(missing) == 36 - 20
    assert ((missing.dataset == "nottingham") & (missing.cell == "tanh")).sum() == 6
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "diverged" in report and "Missing runs (16)" in report
    for name in ("table2.md", "table2.tex", "table1.csv", "curves_updates.png", "curves_seconds.pdf", "runs.csv"):
        assert (tmp_path / "rep" / name).stat().st_size > 0
    assert len(result["problems"]) == 1


def test_report_regenerates_identical_files(fake_sweep, tmp_path):
    write_report([fake_sweep], tmp_path / "a")
    write_report([fake_sweep], tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_expected_configs_from_multirun_yaml(fake_sweep):
    exp = expected_configs(fake_sweep)
    assert len(exp) == 36
    assert {"dataset": "jsb", "cell": "gru", "draw": "1", "seed": "2"} in exp


def test_report_cli_on_empty_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    p = subprocess.run([sys.executable, "-m", "rnnbench.cli.report", str(tmp_path / "empty")], capture_output=True,
                       text=True)
    assert p.returncode == 2 and "no run directories" in p.stderr


def test_missing_runs_compare_only_swept_keys(tmp_path):
    """A dataset fixed by the experiment (not swept) must not make every run look missing."""
    sweep = tmp_path / "quick"
    for cell in ("gru", "lstm"):
        fake_run(sweep, "chorales", cell, 0, 0, 1e-3, valid=8.0, test=8.1)
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    params:\n      cell: tanh,gru,lstm\n      search.draw: range(0,1)\n"
        "  overrides:\n    task: []\nseed: 0\n")
    from rnnbench.report import missing_runs

    missing = missing_runs([sweep], collect_runs([sweep]))
    assert missing.to_dict("records") == [{"sweep": "quick", "cell": "tanh", "draw": "0", "seed": "0"}]
