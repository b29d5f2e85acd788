"""The study: seeded learning-rate draws, Hydra multiruns (resume after kill -9, launchers), and the report."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from conftest import REPO, write_mat
from rnnbench.errors import ConfigError
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
        return [{k: v for k, v in r.items() if k not in ("wall_seconds", "eval_seconds")} for r in csv.DictReader(f)]


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


def resume_matches(cmd, env, root: Path, expected: dict) -> None:
    """Run the stacked sweep ``cmd`` again: every run finishes at KILL_EPOCHS epochs, one row per
    epoch, with the uninterrupted sweep's numbers (to rounding: see stack.py)."""
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    got = sweep_results(root)
    assert sorted(got) == sorted(expected)
    for run, (summary, rows) in got.items():
        assert summary["status"] == "finished" and summary["epochs"] == KILL_EPOCHS
        assert [int(r["epoch"]) for r in rows] == list(range(1, KILL_EPOCHS + 1))
        for a, b in zip(rows, expected[run][1]):
            assert float(a["valid_nll"]) == pytest.approx(float(b["valid_nll"]), rel=1e-5)
            assert int(a["updates"]) == int(b["updates"])


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

    resume_matches(sweep_cmd(toy_mat, extra), env, tmp_path / "killed", expected)
    assert not list(sweep.rglob("*.tmp"))


@pytest.mark.slow
def test_a_stop_file_ends_every_stack_at_an_epoch_and_the_same_command_resumes(toy_mat, tmp_path):
    """RNNBENCH_STOP_FILE: once the file exists the stack under way stops at the end of its epoch
    (each run's last.pt of that epoch written, no part-epoch lost), the stacks after it do not
    start (nothing of theirs on disk), a lone run does not start (exit 5, nothing written); with
    the file gone the same command resumes to the uninterrupted sweep's numbers."""
    extra = [f"train.max_epochs={KILL_EPOCHS}", "cell=gru,lstm", "search.draw=0,1,2", "hydra/launcher=stacked",
             "hydra.launcher.n_jobs=1"]
    ref = subprocess.run(sweep_cmd(toy_mat, extra), env=run_env(tmp_path, "ref"), capture_output=True, text=True,
                         timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]
    expected = sweep_results(tmp_path / "ref")
    assert len(expected) == 6

    stop = tmp_path / "STOP"
    env = dict(run_env(tmp_path, "stopped"), RNNBENCH_STOP_FILE=str(stop))
    sweep = tmp_path / "stopped" / "sweeps" / "quick_jsb"
    proc = subprocess.Popen(sweep_cmd(toy_mat, extra), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    _wait_for_epochs(sweep, "toy/*/*/metrics.csv", 3)
    stop.touch()
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0 and re.search(r"lr [0-9.e-]+: stopped after epoch \d+ as the stop file", out) and "failed" not in out, out[-3000:]
    assert "not started: the stop file" in out and "3 stopped" in out
    first = sorted({p.parent.parent.name for p in sweep.glob("toy/*/*/summary.json")})
    assert len(first) == 1  # the stack under way: the other never started, and left nothing
    assert not list(sweep.glob(f"toy/{'lstm' if first == ['gru'] else 'gru'}/*/*"))
    partial = sweep_results(tmp_path / "stopped")
    assert len(partial) == 3 and {s["status"] for s, _ in partial.values()} == {"running"}
    for run, (summary, rows) in partial.items():
        ckpt = torch.load(sweep / run / "last.pt", weights_only=False)
        assert ckpt["state"]["epoch"] == summary["epochs"] == len(rows) >= 3

    lone = subprocess.run([sys.executable, "-m", "rnnbench.cli.train", "experiment=quick_jsb", f"dataset.path={toy_mat}",
                           "dataset.name=toy", "cell.units=6", f"hydra.run.dir={tmp_path / 'lone'}"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert lone.returncode == 5 and "not started: the stop file" in lone.stderr and not (tmp_path / "lone").exists()

    stop.unlink()
    resume_matches(sweep_cmd(toy_mat, extra), env, tmp_path / "stopped", expected)


# ----------------------------------------------------------------------------- faults of sweeps

def _group_alive(pgid: int) -> list[int]:
    """Pids of the live (not zombie) processes of process group ``pgid``."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def _wait_for_epochs(sweep: Path, pattern: str, epochs: int, deadline_s: float = 300) -> None:
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        found = list(sweep.glob(pattern))
        if found and all(len(p.read_text().splitlines()) > epochs for p in found):
            return
        time.sleep(0.1)
    raise AssertionError(f"no {pattern} with {epochs} epochs in {sweep}")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads /proc")
def test_workers_die_with_a_killed_launcher(toy_mat, tmp_path):
    """kill -9 of the stacked launcher alone (not its process group): its workers stop at once
    instead of training on, and the same command then resumes every run."""
    extra = ["train.max_epochs=400", "cell=gru,lstm", "search.draw=0,1", "hydra/launcher=stacked",
             "hydra.launcher.n_jobs=2"]
    env = run_env(tmp_path, "k")
    sweep = tmp_path / "k" / "sweeps" / "quick_jsb"
    proc = subprocess.Popen(sweep_cmd(toy_mat, extra), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        _wait_for_epochs(sweep, "toy/*/*/metrics.csv", 2)  # both stacks training, in their workers
        assert len(_group_alive(proc.pid)) >= 3  # the launcher and its two workers
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 20
        while _group_alive(proc.pid) and time.time() < deadline:
            time.sleep(0.1)
        assert _group_alive(proc.pid) == []  # no orphan trains on
        assert "the launcher (pid" in proc.stderr.read()
        sizes = {p: p.stat().st_size for p in sweep.glob("toy/*/*/metrics.csv")}
        time.sleep(2)
        assert {p: p.stat().st_size for p in sweep.glob("toy/*/*/metrics.csv")} == sizes
    finally:
        for pid in _group_alive(proc.pid):
            os.kill(pid, signal.SIGKILL)
    short = [x if not x.startswith("train.max_epochs") else "train.max_epochs=30" for x in extra]
    again = subprocess.run(sweep_cmd(toy_mat, short), env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert not list(sweep.rglob("*.tmp"))
    for summary, rows in sweep_results(tmp_path / "k").values():
        assert [int(r["epoch"]) for r in rows] == list(range(1, summary["epochs"] + 1))


SECOND_SWEEP = [f"train.max_epochs={KILL_EPOCHS * 4}", "cell=gru", "search.draw=0,1", "hydra/launcher=stacked"]


@pytest.fixture(scope="module")
def second_sweep_reference(tmp_path_factory, toy_splits):
    """The uninterrupted sweep both second-sweep cases compare with (run once for the two)."""
    tmp = tmp_path_factory.mktemp("second_sweep_ref")
    ref = subprocess.run(sweep_cmd(write_mat(tmp / "toy.mat", toy_splits), SECOND_SWEEP), env=run_env(tmp, "ref"),
                         capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]
    return sweep_results(tmp / "ref")


@pytest.mark.slow
@pytest.mark.parametrize("second_launcher", ["stacked", "basic"])
def test_a_second_sweep_on_the_same_directory_skips_the_runs_the_first_trains(toy_mat, tmp_path, second_launcher,
                                                                              second_sweep_reference):
    extra = SECOND_SWEEP
    expected = second_sweep_reference

    env = run_env(tmp_path, "two")
    sweep = tmp_path / "two" / "sweeps" / "quick_jsb"
    first = subprocess.Popen(sweep_cmd(toy_mat, extra), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
    try:
        _wait_for_epochs(sweep, "toy/gru/*/metrics.csv", 2)
        # Hold the first sweep (launcher and workers) mid-training while the second one starts, so that
        # the second always meets runs another process holds (the toy runs would otherwise finish during
        # its start-up on a loaded machine); a stopped process keeps its locks.
        os.killpg(first.pid, signal.SIGSTOP)
        try:
            second = subprocess.run(sweep_cmd(toy_mat, extra + [f"hydra/launcher={second_launcher}"]), env=env,
                                    capture_output=True, text=True, timeout=600)
        finally:
            os.killpg(first.pid, signal.SIGCONT)
        out_first, _ = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert second.returncode == 0, second.stderr[-3000:]
    both = second.stdout + second.stderr
    assert both.count(": skipped (pid") == 2 and "is training it" in both  # its result lines say so
    assert "epoch   1" not in both  # it trained nothing
    assert first.returncode == 0 and out_first.count(": finished (max_epochs)") >= 2
    got = sweep_results(tmp_path / "two")
    assert sorted(got) == sorted(expected)
    for run, (summary, rows) in got.items():  # nothing trained twice: the numbers of one sweep alone
        assert summary["status"] == "finished" and [int(r["epoch"]) for r in rows] == list(range(1, KILL_EPOCHS * 4 + 1))
        for a, b in zip(rows, expected[run][1]):
            assert float(a["valid_nll"]) == pytest.approx(float(b["valid_nll"]), rel=1e-5)


@pytest.mark.slow
def test_stacked_progress_lines_and_a_refused_stack_leaves_nothing(toy_mat, tmp_path):
    extra = ["train.max_epochs=25", "cell=gru,lstm", "search.draw=0,1,2", "hydra/launcher=stacked",
             "hydra.launcher.n_jobs=2", "hydra.launcher.progress_every=0.5"]
    p = subprocess.run(sweep_cmd(toy_mat, extra), env=run_env(tmp_path, "p"), capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout + p.stderr
    assert re.search(r"progress: stack 1 of 2, toy/gru seed 0 \(3 runs\): 3 of 3 runs finished, epoch 25 of 25",
                     out), out[-3000:]
    assert re.search(r"progress: sweep: 6 of 6 runs finished, 150 of 150 run-epochs", out)
    assert re.search(r"progress: (stack \d of 2, .*: \d of 3 runs finished, epoch \d+ of 25, ~\d+ s left"
                     r"|sweep: \d of 6 runs finished, \d+ of 150 run-epochs, ~\d+ s left)", out), out[-3000:]
    assert re.search(r"\tstack 1 of 2 \(3 runs\) in ", out), out[-3000:]
    assert len(re.findall(r"toy/(gru|lstm) lr [0-9.e-]+: finished \(max_epochs\), best epoch 25: "
                          r"train \d+\.\d{3}, valid \d+\.\d{3}, test \d+\.\d{3}  \[", out)) == 6
    # a stack refused (its corpus is missing): one line, Hydra's exit status, nothing left but multirun.yaml
    (tmp_path / "empty").mkdir()
    bad = [sys.executable, "-m", "rnnbench.cli.train", "-m", "experiment=quick_jsb", "dataset=jsb",
           f"data_root={tmp_path / 'empty'}", "dataset.download=false", "cell=gru", "search.draw=0,1"]
    env = run_env(tmp_path, "refused")
    env.pop("HYDRA_FULL_ERROR")  # (as users run it)
    r = subprocess.run(bad, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and "JSB_Chorales.mat not found" in r.stderr and "Traceback" not in r.stderr
    left = [x.relative_to(tmp_path / "refused").as_posix() for x in (tmp_path / "refused").rglob("*") if x.is_file()]
    assert left == ["sweeps/quick_jsb/multirun.yaml"]
