"""scripts/study.py --task speech end to end on tiny YESNO-shaped recordings: the faithful search
and seeds, the labelled tanh variant at weight noise 0.02 and its diagnostics; run again, it trains
nothing more."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import REPO
from test_speech import yesno_fixture


@pytest.mark.slow
def test_the_speech_study_runs_its_protocol_and_variants_then_resumes_to_nothing(tmp_path):
    wavs = tmp_path / "waves_yesno"
    yesno_fixture(wavs)
    runs = tmp_path / "study"
    cmd = [sys.executable, str(REPO / "scripts" / "study.py"), "--task", "speech", "--datasets", "yesno",
           "--cells", "tanh", "--jobs", "1", "--runs", str(runs), "--",
           f"dataset.path={wavs}", "cell.units=4", "train.max_epochs=2", "train.batch_size=4"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr

    def summaries(folder):
        return {p.parent.relative_to(runs).as_posix(): json.loads(p.read_text()) for p in sorted(folder.rglob("summary.json"))}

    search, seeds = summaries(runs / "search"), summaries(runs / "seeds")
    assert len(search) == 10 and all(s["task"] == "speech" and s["weight_noise"] == 0.075 for s in search.values())
    assert len(seeds) == 4 and sorted(s["seed"] for s in seeds.values()) == [1, 2, 3, 4]
    variant = summaries(runs / "tanh_sigma0.02")
    assert len(variant) == 14 and {s["weight_noise"] for s in variant.values()} == {0.02}
    diagnostics = summaries(runs / "tanh_diagnostics")
    assert sorted(p.split("/")[-1] for p in diagnostics) == ["sigma0.04_draw0", "sigma0.075_chunk50_draw0", "sigma0_draw0"]
    assert sorted(s["weight_noise"] for s in diagnostics.values()) == [0.0, 0.04, 0.075]
    chunked = next(p for p in diagnostics if "chunk50" in p)
    assert "chunk_steps: 50" in (runs / chunked / "config.yaml").read_text()
    assert "tanh_diagnostics: yesno sigma0.04" in out.stdout

    before = {p: (s["epochs"], s["updates"]) for p, s in summaries(runs).items()}
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert {p: (s["epochs"], s["updates"]) for p, s in summaries(runs).items()} == before

    # the final sitting's chain (results/speech/README.md): the report of the five sweeps, the export
    # of the selected checkpoints, their re-scoring by the independent evaluator
    sweeps = [str(runs / s) for s in ("search", "seeds", "tanh_sigma0.02/search", "tanh_sigma0.02/seeds",
                                      "tanh_diagnostics")]
    report = tmp_path / "report"
    made = subprocess.run([sys.executable, "-m", "rnnbench.cli.report", *sweeps, "--out", str(report)],
                          capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr
    variants = (report / "variants.csv").read_text()
    assert all(label in variants for label in ("σ=0.02", "σ=0,", "σ=0.04", "50-step chunks"))
    assert {"study/search", "tanh_sigma0.02/search", "tanh_diagnostics"} <= {
        line.split(",")[0] for line in (report / "runs.csv").read_text().splitlines()[1:]}
    dest = tmp_path / "exported"
    exported = subprocess.run([sys.executable, str(REPO / "scripts" / "export_runs.py"), *sweeps, "--dest", str(dest),
                               "--best", "selected"], capture_output=True, text=True, timeout=600)
    assert exported.returncode == 0, exported.stderr
    assert (dest / "tanh_sigma0.02" / "seeds").is_dir() and len(list(dest.rglob("summary.json"))) == len(before)
    rescored = subprocess.run([sys.executable, str(REPO / "scripts" / "rescore.py"), str(dest), "--selected",
                               str(report / "selected_runs.csv")], capture_output=True, text=True, timeout=600)
    assert rescored.returncode == 0, rescored.stdout[-2000:] + rescored.stderr[-2000:]
    checkpoints = len(list(dest.rglob("best.pt")))
    assert checkpoints >= 5 + 5 + 3 and f"{checkpoints} of {checkpoints} checkpoints agree" in rescored.stdout


def _study_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("study_script", REPO / "scripts" / "study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_speech_command_takes_each_corpus_whole_at_its_own_cap():
    """`study.py --task speech` alone runs the whole speech study: YESNO's pairs and then its tanh
    variants before FSDD's (cheapest first), each corpus at its own epoch cap unless the command
    line sets one for all."""
    from types import SimpleNamespace

    study = _study_module()
    args = SimpleNamespace(task="speech", datasets=["yesno", "fsdd"], cells=["tanh", "gru", "lstm"],
                           order="cheapest-first", variants="tanh", extra=[])
    assert study.queue(args) == [("yesno", "tanh"), ("yesno", "gru"), ("yesno", "lstm"), ("yesno", None),
                                 ("fsdd", "tanh"), ("fsdd", "gru"), ("fsdd", "lstm"), ("fsdd", None)]
    args.order = "longest-first"
    assert study.queue(args)[-2:] == [("fsdd", None), ("yesno", None)]
    assert [study.epoch_cap(d, args) for d in ("yesno", "fsdd")] == [["train.max_epochs=500"], ["train.max_epochs=200"]]
    args.extra = ["train.max_epochs=3"]
    assert study.epoch_cap("fsdd", args) == []
    music = SimpleNamespace(task="music", datasets=["jsb"], cells=["gru"], order="cheapest-first", variants="tanh",
                            extra=[])
    assert study.queue(music) == [("jsb", "gru")] and study.epoch_cap("jsb", music) == []


def test_a_stop_file_ends_the_study_after_the_command_under_way(tmp_path, monkeypatch, capsys):
    """`touch RUNS/STOP`: the command under way ends its epoch (rnnbench-train's side, tested in
    test_study.py), no other command starts, the script exits 5; run again, it removes the file
    and goes on."""
    study = _study_module()
    runs = tmp_path / "study"
    calls = []

    def fake_call(cmd, **kw):
        calls.append(cmd)
        assert os.environ["RNNBENCH_STOP_FILE"] == str((runs / "STOP").resolve())
        (runs / "STOP").touch()  # (as a person would, while the first command trains)
        return 5

    monkeypatch.delenv("RNNBENCH_STOP_FILE", raising=False)
    monkeypatch.setattr(study.subprocess, "call", fake_call)
    rc = study.main(["--task", "speech", "--jobs", "1", "--runs", str(runs)])
    out = capsys.readouterr().out
    assert rc == 5 and len(calls) == 1 and (runs / "STOP").exists()
    assert "stopped by" in out and "run the same command again to resume" in out and "failed" not in out

    calls.clear()
    monkeypatch.delenv("RNNBENCH_STOP_FILE", raising=False)
    monkeypatch.setattr(study.subprocess, "call", lambda cmd, **kw: calls.append(cmd) or 0)
    monkeypatch.setattr(study, "selected_draw", lambda *a: None)
    assert study.main(["--task", "speech", "--jobs", "1", "--runs", str(runs)]) == 0
    assert "STOP removed: the study resumes" in capsys.readouterr().out.replace(str(runs) + "/", "")
    assert len(calls) == 8 and not (runs / "STOP").exists()  # 6 searches, 2 variant searches (no draw selected)


def test_the_plan_says_how_far_the_study_is_and_bounds_what_is_left(tmp_path, monkeypatch):
    """`--plan` on a study part-way: the finished pair has nothing left, the search under way its
    halving schedule's member-epochs to the cap plus 4 seeds, timed by its own runs' clocks; the
    pairs no run has timed are counted apart; the wall-time bound is never below the longest job
    (one process, one core), however many workers share the cores."""
    study = _study_module()
    monkeypatch.setattr(study.os, "cpu_count", lambda: 2)
    runs = tmp_path / "study"

    def run(folder, draw, status, epochs, best=None, valid=None, seconds_per_epoch=30.0, members=3):
        d = folder / f"hparams_search=paper_lr_halving,search.draw={draw}"
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps({"status": status, "epochs": epochs, "seed": 0, "best_epoch": best,
                                                    "valid_nll": valid}))
        (d / "config.yaml").write_text(f"search:\n  draw: {draw}\n")
        rows = ["epoch,wall_seconds,eval_seconds"] + [f"{e},{e * seconds_per_epoch:.1f},0" for e in range(1, epochs + 1)]
        (d / "metrics.csv").write_text("\n".join(rows) + "\n")

    for k in range(10):  # yesno/tanh: every draw diverged at once
        run(runs / "search" / "yesno" / "tanh", k, "diverged", 1)
    for k in range(10):  # yesno/gru: 7 pruned, 3 at epoch 100 of 500 (a 3-member stack at 30 s an epoch)
        run(runs / "search" / "yesno" / "gru", k, "running" if k < 3 else "pruned", 100 if k < 3 else 20, 90, -1.0)
    args = study.argparse.Namespace(task="speech", datasets=["yesno", "fsdd"], cells=["tanh", "gru"], seeds=[1, 2, 3, 4],
                                    jobs=2, runs=str(runs), order="cheapest-first", variants="none", extra=[])
    lines = study.plan(args)
    assert lines[0].startswith("yesno/tanh: search 10 of 10 ended; no draw reached a best epoch; left ≤ 0 ")
    assert lines[1].startswith("yesno/gru: search 7 of 10 ended, 3 at epoch 100; seeds 0 of 4 ended; "
                               f"left ≤ {3 * 400 + 4 * 500} member-epochs (cap 500), ≤ {3200 * 10 / 3600:.1f} h")
    assert "at 10.0 s each" in lines[1]
    assert lines[2].startswith(f"fsdd/tanh: search 0 of 10 ended; seeds 0 of 4 ended; left ≤ {100 + 50 + 3 * 180 + 800} ")
    assert lines[-1].startswith(f"in all ≤ {3200 * 10 / 3600:.1f} h of one core") and f"{2 * 1490} member-epochs" in lines[-1]
    # the one timed job is the whole: two cores do not halve it
    assert f"on 2 workers (2 cores), ≤ {3200 * 10 / 3600:.1f} h if the cores never idle" in lines[-1]
    args.jobs = 3  # three workers still share two cores
    assert "on 3 workers (2 cores)" in study.plan(args)[-1]


def test_the_variants_diagnostics_train_beside_its_seeds_when_a_worker_is_free(tmp_path, monkeypatch, capsys):
    """The diagnostics need only the σ variant's selected draw: with two workers they start while the
    variant's seeds train (the critical path of the speech study is search + the longer of the two,
    not their sum); with one worker they follow the seeds, as every job follows the one before."""
    study = _study_module()
    started = threading.Event()
    calls = []

    def fake_call(cmd, **kw):
        line = " ".join(cmd)
        calls.append("diagnostics" if "tanh_diagnostics" in line else "variant seeds" if "tanh_sigma0.02/seeds" in line
                     else "other")
        if calls[-1] == "diagnostics":
            started.set()
        if calls[-1] == "variant seeds" and beside:  # (ends only once a diagnostic has started beside it)
            assert started.wait(timeout=120), "the diagnostics waited for the variant's seeds"
        return 0

    monkeypatch.setattr(study.subprocess, "call", fake_call)
    monkeypatch.setattr(study, "selected_draw", lambda *a: 3)
    for jobs, beside in (("2", True), ("1", False)):
        calls.clear()
        started.clear()
        argv = ["--task", "speech", "--datasets", "yesno", "--cells", "tanh", "--jobs", jobs, "--runs", str(tmp_path / jobs)]
        assert study.main(argv) == 0
        out = capsys.readouterr().out
        assert calls.count("diagnostics") == 3 and "tanh_diagnostics: yesno sigma0.04 at draw 3: exit 0" in out
        if not beside:
            assert calls[calls.index("variant seeds") + 1:] == ["diagnostics"] * 3


def test_each_diagnostic_is_a_job_of_its_own(tmp_path, monkeypatch, capsys):
    """With three workers the variant's seeds and two of its diagnostics train at once, the third
    diagnostic on the first worker that frees up; each diagnostic logs to a file of its own."""
    study = _study_module()
    lock, two, active, most, seen = threading.Lock(), threading.Event(), [0], [0], []

    def fake_call(cmd, stdout=None, **kw):
        line = " ".join(cmd)
        if "tanh_diagnostics" not in line:
            if "tanh_sigma0.02/seeds" in line:
                assert two.wait(timeout=120), "the diagnostics did not train side by side beside the seeds"
            return 0
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
            seen.append((line.split("hydra.run.dir=")[1], Path(stdout.name).name))
            if active[0] == 2:
                two.set()
        two.wait(timeout=120)
        with lock:
            active[0] -= 1
        return 0

    monkeypatch.setattr(study.subprocess, "call", fake_call)
    monkeypatch.setattr(study, "selected_draw", lambda *a: 3)
    runs = tmp_path / "study"
    argv = ["--task", "speech", "--datasets", "yesno", "--cells", "tanh", "--jobs", "3", "--runs", str(runs)]
    assert study.main(argv) == 0
    out = capsys.readouterr().out
    assert most[0] == 2 and len(seen) == 3
    assert sorted((Path(d).name, log) for d, log in seen) == [
        ("sigma0.04_draw3", "yesno-tanh-sigma0.04.log"), ("sigma0.075_chunk50_draw3", "yesno-tanh-sigma0.075_chunk50.log"),
        ("sigma0_draw3", "yesno-tanh-sigma0.log")]
    assert all(f"tanh_diagnostics: yesno {name} at draw 3: exit 0" in out for name in study.TANH_DIAGNOSTICS)
    assert sorted(p.name for p in (runs / "tanh_diagnostics" / "logs").iterdir()) == sorted(log for _, log in seen)


def test_the_plan_counts_the_diagnostics_beside_the_variants_seeds(tmp_path, monkeypatch):
    """`--plan` for the σ variant whose search has ended: its 4 seeds and 3 diagnostics are all left,
    counted in the core-hours; the longest job is the seeds alone with two workers (the diagnostics
    beside them), seeds and diagnostics one after the other with one."""
    study = _study_module()
    monkeypatch.setattr(study.os, "cpu_count", lambda: 2)
    runs = tmp_path / "study"
    for k in range(10):
        d = runs / "tanh_sigma0.02" / "search" / "fsdd" / "tanh" / f"hparams_search=paper_lr_halving,search.draw={k}"
        d.mkdir(parents=True)
        epochs = 60 if k < 3 else 20  # (3 members from epoch 20: 12 s a member-epoch)
        (d / "summary.json").write_text(json.dumps({"status": "finished" if k < 3 else "pruned", "epochs": epochs,
                                                    "seed": 0, "best_epoch": 15, "valid_nll": -1.0 - (k == 2)}))
        (d / "config.yaml").write_text(f"search:\n  draw: {k}\n")
        (d / "metrics.csv").write_text("epoch,wall_seconds,eval_seconds\n" + "".join(
            f"{e},{e * 36.0:.1f},0\n" for e in range(1, epochs + 1)))
    args = study.argparse.Namespace(task="speech", datasets=["fsdd"], cells=["tanh"], seeds=[1, 2, 3, 4], jobs=2,
                                    runs=str(runs), order="cheapest-first", variants="tanh", extra=[])
    lines = study.plan(args)
    line, last = next(x for x in lines if x.startswith("fsdd/tanh (σ=0.02)")), lines[-1]
    assert "search 10 of 10 ended; seeds 0 of 4 ended; diagnostics 0 of 3 ended (beside the seeds: ≤ 800 " in line
    assert f"left ≤ {800 + 600} member-epochs (cap 200)" in line
    assert f"the longest job, {800 * 12 / 3600:.1f} h" in last and f"in all ≤ {1400 * 12 / 3600:.1f} h" in last
    args.jobs = 1
    assert f"the longest job, {1400 * 12 / 3600:.1f} h" in study.plan(args)[-1]
    args.jobs, args.seed_stacks = 2, 2  # two stacks of two seeds side by side: 400 one after another
    assert f"the longest job, {400 * 12 / 3600:.1f} h" in study.plan(args)[-1]


def test_seed_stacks_split_only_the_seeds_command(tmp_path, monkeypatch):
    """`--seed-stacks 2`: the seeds train as two stacks of two, side by side; the search (whose
    halving is a stack's decision) stays one stack of ten."""
    study = _study_module()
    calls = []
    monkeypatch.setattr(study.subprocess, "call", lambda cmd, **kw: calls.append(cmd) or 0)
    monkeypatch.setattr(study, "selected_draw", lambda *a: 3)
    argv = ["--task", "speech", "--datasets", "yesno", "--cells", "gru", "--variants", "none", "--jobs", "1",
            "--runs", str(tmp_path / "study"), "--seed-stacks", "2"]
    assert study.main(argv) == 0
    search, seeds = calls
    assert not any(a.startswith("hydra.launcher.max_members") for a in search)
    assert [a for a in search if a.startswith("hydra.launcher.n_jobs")] == ["hydra.launcher.n_jobs=1"]
    assert seeds[-2:] == ["hydra.launcher.max_members=2", "hydra.launcher.n_jobs=2"]  # (after n_jobs=1: the last wins)
    assert "seed=1,2,3,4" in seeds
    calls.clear()
    assert study.main(argv[:-2]) == 0
    assert not any(a.startswith("hydra.launcher.max_members") for a in calls[1])
