"""Fault injection on run directories: damaged files (truncated, random bytes, empty), a full disk,
a second process on the same run, and the readers the report uses."""

from __future__ import annotations

import csv
import errno
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from rnnbench.errors import RnnbenchError, RunFileError, WriteError
from rnnbench.fileio import FolderLock
from rnnbench.runs import (check_sweep_dirs, read_config, read_metrics, read_summary, read_yaml, result_line,
                           run_name)
from rnnbench.runs import Run
from rnnbench.train import train

DAMAGES = {
    "truncated": lambda good: good[: len(good) // 2],
    "random": lambda good: os.urandom(max(64, len(good))),
    "empty": lambda good: b"",
}


def rows(run_dir: Path):
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in r.items() if k not in ("wall_seconds", "eval_seconds")} for r in csv.DictReader(f)]


def numbers(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in ("wall_seconds", "eval_seconds")}


def damage(path: Path, how: str) -> None:
    path.write_bytes(DAMAGES[how](path.read_bytes()))


@pytest.fixture
def reference(toy_cfg, tmp_path):
    """A 3-epoch run trained without interruption: what every recovered run must equal."""
    summary = train(toy_cfg, tmp_path / "ref")
    return summary, rows(tmp_path / "ref")


def short(toy_cfg, epochs):
    return OmegaConf.merge(toy_cfg, {"train": {"max_epochs": epochs}})


# --------------------------------------------------------------------------- last.pt

@pytest.mark.parametrize("how", sorted(DAMAGES))
def test_a_damaged_last_pt_falls_back_to_the_previous_one(toy_cfg, tmp_path, reference, how, caplog):
    run = tmp_path / "r"
    train(short(toy_cfg, 2), run)
    assert torch.load(run / "last.prev.pt", weights_only=False)["state"]["epoch"] == 2  # (finish() wrote again)
    damage(run / "last.pt", how)
    with caplog.at_level(logging.WARNING, logger="rnnbench.train"):
        summary = train(toy_cfg, run)
    warned = [r.getMessage() for r in caplog.records if "last.prev.pt" in r.getMessage()]
    assert warned and str(run / "last.pt") in warned[0] and "damaged" in warned[0]
    assert numbers(summary) == numbers(reference[0]) and rows(run) == reference[1]
    assert (run / "last.pt.damaged").is_file()
    assert not list(run.glob(".*.tmp"))


def test_a_damaged_last_pt_mid_run_retrains_the_lost_epoch_to_the_same_numbers(toy_cfg, tmp_path, reference):
    run = tmp_path / "r"
    train(short(toy_cfg, 1), run)
    train(short(toy_cfg, 2), run)  # last.pt: epoch 2, last.prev.pt: epoch 2 finished or 1
    ckpt = torch.load(run / "last.pt", weights_only=False)
    # as if the run had been killed after epoch 2's files: last.prev.pt is epoch 1's
    prev = torch.load(run / "last.prev.pt", weights_only=False)
    assert prev["state"]["epoch"] in (1, 2) and ckpt["state"]["epoch"] == 2
    damage(run / "last.pt", "truncated")
    summary = train(toy_cfg, run)
    assert numbers(summary) == numbers(reference[0]) and rows(run) == reference[1]


@pytest.mark.parametrize("how", sorted(DAMAGES))
def test_a_damaged_last_pt_without_a_previous_one_is_named(toy_cfg, tmp_path, how):
    run = tmp_path / "r"
    train(short(toy_cfg, 1), run)
    (run / "last.prev.pt").unlink()  # (a run written before last.prev.pt existed)
    damage(run / "last.pt", how)
    with pytest.raises(RunFileError) as info:
        train(toy_cfg, run)
    msg = str(info.value)
    assert msg.startswith(f"{run / 'last.pt'}: damaged") and "train.resume=false" in msg
    assert train(OmegaConf.merge(toy_cfg, {"train": {"resume": False}}), run)["epochs"] == 3  # the way out


def test_a_checkpoint_of_another_shape_is_named(toy_cfg, tmp_path):
    run = tmp_path / "r"
    train(short(toy_cfg, 1), run)
    (run / "last.prev.pt").unlink()
    ckpt = torch.load(run / "last.pt", weights_only=False)
    ckpt["model"]["cell.weight_hh"] = torch.zeros(3, 3)
    torch.save(ckpt, run / "last.pt")
    with pytest.raises(RunFileError, match=r"last\.pt: damaged or of another model \(shape of cell\.weight_hh\)"):
        train(toy_cfg, run)


def test_a_damaged_best_pt_is_named_when_it_must_be_scored(toy_cfg, tmp_path):
    run = tmp_path / "r"
    train(short(toy_cfg, 2), run)
    r = Run(toy_cfg, run)
    r.state.best_epoch = torch.load(run / "best.pt", weights_only=False)["epoch"]
    assert r.read_best("cpu")["epoch"] == r.state.best_epoch
    r.state.best_epoch += 1
    with pytest.raises(RunFileError, match=r"best\.pt: holds the weights of epoch \d, but the run's best epoch is \d"):
        r.read_best("cpu")
    damage(run / "best.pt", "truncated")
    with pytest.raises(RunFileError, match=r"best\.pt: damaged"):
        r.read_best("cpu")
    from rnnbench.runs import load_model

    with pytest.raises(RunFileError, match=r"best\.pt: damaged"):
        load_model(run)



class _Killed(BaseException):
    """kill -9, as far as the run's files are concerned: nothing after it is written."""


def _kill_at(monkeypatch, method: str, epoch: int) -> None:
    """Make ``Run.<method>`` die at ``epoch`` (a new best epoch, checked) before it writes anything."""
    real = getattr(Run, method)

    def dying(self, *args, **kwargs):
        if self.state.epoch == epoch:
            assert self.state.best_epoch == epoch and (self.run_dir / "best.next.pt").is_file()
            raise _Killed
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Run, method, dying)


def test_a_kill_between_a_new_best_and_its_last_pt_drops_that_best_on_resume(toy_cfg, tmp_path, reference,
                                                                              monkeypatch):
    """Killed after epoch 2's best weights were written and before its last.pt: on resume best.pt
    still holds epoch 1, the checkpoint's best.  With a lower cap (epoch 2 is then never trained
    again) the run ends at epoch 1 and is scored from it; at the same cap it retrains epoch 2 to the
    uninterrupted run's numbers."""
    run = tmp_path / "r"
    _kill_at(monkeypatch, "persist", 2)
    with pytest.raises(_Killed):
        train(toy_cfg, run)
    monkeypatch.undo()
    assert torch.load(run / "best.pt", weights_only=False)["epoch"] == 1  # the pair on disk: epoch 1's
    shutil.copytree(run, tmp_path / "same_cap")
    one = train(short(toy_cfg, 1), run)
    assert not (run / "best.next.pt").exists() and torch.load(run / "best.pt", weights_only=False)["epoch"] == 1
    assert one["epochs"] == 1 and one["best_epoch"] == 1 and one["test_nll"] is not None
    assert numbers(train(toy_cfg, tmp_path / "same_cap")) == numbers(reference[0])
    assert rows(tmp_path / "same_cap") == reference[1]


def test_a_kill_after_a_new_best_s_last_pt_keeps_that_best_on_resume(toy_cfg, tmp_path, reference, monkeypatch):
    """Killed after epoch 2's last.pt and before its best weights became best.pt: on resume they
    are best.pt (the checkpoint's best epoch is 2), and a run capped at 2 is scored from them."""
    run = tmp_path / "r"
    _kill_at(monkeypatch, "promote_best", 2)
    with pytest.raises(_Killed):
        train(toy_cfg, run)
    monkeypatch.undo()
    assert torch.load(run / "best.pt", weights_only=False)["epoch"] == 1
    assert torch.load(run / "best.next.pt", weights_only=False)["epoch"] == 2
    shutil.copytree(run, tmp_path / "same_cap")
    two = train(short(toy_cfg, 2), run)
    assert not (run / "best.next.pt").exists() and torch.load(run / "best.pt", weights_only=False)["epoch"] == 2
    assert two["epochs"] == 2 and two["best_epoch"] == 2
    assert numbers(two) == numbers(train(short(toy_cfg, 2), tmp_path / "uninterrupted"))
    assert numbers(train(toy_cfg, tmp_path / "same_cap")) == numbers(reference[0])
    assert rows(tmp_path / "same_cap") == reference[1]


# --------------------------------------------------------------------------- summary.json, metrics.csv, config.yaml

@pytest.mark.parametrize("how", sorted(DAMAGES))
@pytest.mark.parametrize("name", ["summary.json", "metrics.csv", "config.yaml"])
def test_damaged_files_are_named_by_the_readers_and_rewritten_by_the_run(toy_cfg, tmp_path, name, how, caplog):
    run = tmp_path / "r"
    train(short(toy_cfg, 2), run)
    good = (run / name).read_bytes()
    damage(run / name, how)
    reader = {"summary.json": read_summary, "metrics.csv": read_metrics, "config.yaml": read_config}[name]
    if not (how == "truncated" and name == "config.yaml"):  # (half a YAML file can still be valid YAML)
        with pytest.raises(RunFileError) as info:
            reader(run)
        assert str(info.value).startswith(f"{run / name}: damaged") and "again" in str(info.value)
    with caplog.at_level(logging.WARNING, logger="rnnbench.train"):
        again = train(short(toy_cfg, 2), run)  # the same command: nothing is trained, the file comes back
    assert again["epochs"] == 2
    assert (run / name).read_bytes() == good
    if not (how == "truncated" and name == "config.yaml"):
        assert any(name in r.getMessage() for r in caplog.records)


def test_read_yaml_names_the_file(tmp_path):
    p = tmp_path / "multirun.yaml"
    p.write_text("a: [1, 2\n")
    with pytest.raises(RunFileError, match="multirun.yaml: damaged"):
        read_yaml(p)
    p.write_text("- a\n- b\n")
    with pytest.raises(RunFileError, match="expected a mapping"):
        read_yaml(p)
    p.write_bytes(b"")
    with pytest.raises(RunFileError, match="empty"):
        read_yaml(p)


def test_metrics_with_a_missing_row_or_garbage_are_named(toy_cfg, tmp_path):
    run = tmp_path / "r"
    train(toy_cfg, run)
    lines = (run / "metrics.csv").read_text().splitlines()
    (run / "metrics.csv").write_text("\n".join(lines[:2] + lines[3:]) + "\n")
    with pytest.raises(RunFileError, match="epochs are not 1, 2, 3"):
        read_metrics(run)
    (run / "metrics.csv").write_text(lines[0] + "\n" + lines[1].replace(",", ",x", 1) + "\n")
    with pytest.raises(RunFileError, match="not a number"):
        read_metrics(run)
    assert len(read_metrics(tmp_path)) == 0  # (no metrics.csv yet: empty)


def test_check_sweep_dirs_says_a_folder_does_not_exist(tmp_path):
    with pytest.raises(RnnbenchError, match=f"{tmp_path / 'nope'}: no such folder"):
        check_sweep_dirs([tmp_path, tmp_path / "nope"])
    (tmp_path / "f").write_text("x")
    with pytest.raises(RnnbenchError, match="not a folder"):
        check_sweep_dirs([tmp_path / "f"])
    assert check_sweep_dirs([tmp_path]) == [tmp_path]
    assert not (tmp_path / "nope").exists()


# --------------------------------------------------------------------------- full disk

def _disk_full_from(monkeypatch, nth: int):
    """From the ``nth`` file write on, every write stops with ENOSPC after 100 bytes."""
    real_b, real_t = Path.write_bytes, Path.write_text
    count = {"n": 0}

    def check(self, data, real):
        count["n"] += 1
        if count["n"] >= nth:
            real(self, data[:100])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", lambda self, data: check(self, data, real_b))
    monkeypatch.setattr(Path, "write_text", lambda self, data, *a, **k: check(self, data, real_t))


@pytest.mark.parametrize("nth", [1, 2, 3, 4])
def test_a_full_disk_names_the_file_loses_nothing_and_resumes(toy_cfg, tmp_path, monkeypatch, reference, nth):
    run = tmp_path / "r"
    train(short(toy_cfg, 1), run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"}
    _disk_full_from(monkeypatch, nth)  # during epoch 2's writes (config.yaml is already there)
    with pytest.raises(WriteError) as info:
        train(toy_cfg, run)
    monkeypatch.undo()
    msg = str(info.value)
    assert "No space left on device" in msg and str(run) in msg and ".tmp" not in msg
    assert not list(run.glob(".*.tmp"))
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"}
    for name, data in after.items():  # every file is a complete version: the old one or epoch 2's
        assert name in before or name == "best.next.pt"  # (epoch 2's best, until its last.pt is written)
    if (run / "best.next.pt").exists():
        assert torch.load(run / "last.pt", weights_only=False)["state"]["epoch"] == 1
    assert torch.load(run / "last.pt", weights_only=False)["state"]["epoch"] in (1, 2)
    summary = train(toy_cfg, run)  # space freed: the same command resumes
    assert numbers(summary) == numbers(reference[0]) and rows(run) == reference[1]


# --------------------------------------------------------------------------- one process per run

def test_a_run_another_process_trains_is_skipped(toy_cfg, tmp_path, reference, caplog):
    run = tmp_path / "r"
    other = FolderLock(run)
    assert other.acquire()
    try:
        with caplog.at_level(logging.WARNING, logger="rnnbench.train"):
            skipped = train(toy_cfg, run)
    finally:
        other.release()
    assert skipped["status"] == "skipped" and f"pid {os.getpid()}" in skipped["stop_reason"]
    assert any("skipped" in r.getMessage() and str(run) in r.getMessage() for r in caplog.records)
    assert sorted(p.name for p in run.iterdir()) == [".lock"]  # nothing written
    line = result_line(skipped, run)
    assert "toy/gru lr 0.01: skipped (pid" in line and "is training it" in line
    summary = train(toy_cfg, run)
    assert numbers(summary) == numbers(reference[0])


def test_a_stack_trains_the_members_nobody_else_holds(toy_cfg, tmp_path):
    from rnnbench.stack import train_stack

    cfgs = [OmegaConf.merge(toy_cfg, {"optim": {"lr": lr}}) for lr in (1e-2, 3e-3)]
    held = FolderLock(tmp_path / "b")
    assert held.acquire()
    try:
        a, b = train_stack(cfgs, [tmp_path / "a", tmp_path / "b"])
    finally:
        held.release()
    assert a["status"] == "finished" and a["epochs"] == 3 and b["status"] == "skipped"
    assert not (tmp_path / "b" / "summary.json").exists()


def test_a_refused_run_leaves_no_directory(toy_cfg, tmp_path):
    with pytest.raises(RnnbenchError):
        train(OmegaConf.merge(toy_cfg, {"dataset": {"path": str(tmp_path / "missing.mat")}}), tmp_path / "x" / "r")
    assert not (tmp_path / "x" / "r").exists()
    with pytest.raises(RnnbenchError, match="train.max_epochs=0"):
        train(short(toy_cfg, 0), tmp_path / "y")
    assert not (tmp_path / "y").exists()


# --------------------------------------------------------------------------- names and lines

def test_result_lines_are_rounded_and_name_the_run():
    s = {"dataset": "jsb", "cell": "gru", "lr": 0.00123456, "seed": 2, "status": "finished",
         "stop_reason": "early_stopping", "best_epoch": 7, "train_nll": 8.0123456, "valid_nll": 9.18, "test_nll": None}
    assert result_line(s, "runs/x") == ("jsb/gru lr 0.00123 seed 2: finished (early_stopping), best epoch 7: "
                                        "train 8.012, valid 9.180, test -  [runs/x]")


def test_a_run_without_overrides_gets_its_own_folder():
    assert run_name("") == "default" and run_name(None) == "default"
    assert run_name("optim.lr=0.001,seed=1") == "optim.lr=0.001,seed=1"


# --------------------------------------------------------------------------- the command line

def _cli(args, runs: Path, cwd: Path):
    env = dict(os.environ, RNNBENCH_RUNS=str(runs))
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", "rnnbench.cli.train", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


def _toy_args(toy_mat, epochs):
    return [f"dataset.path={toy_mat}", "dataset.name=toy", "cell=lstm", "cell.units=4", "train.batch_size=6",
            f"train.max_epochs={epochs}"]


def test_cli_names_a_damaged_checkpoint_in_one_line(toy_mat, tmp_path):
    runs = tmp_path / "runs"
    assert _cli(_toy_args(toy_mat, 1), runs, tmp_path).returncode == 0
    (run,) = (runs / "toy" / "lstm").iterdir()
    (run / "last.prev.pt").unlink(missing_ok=True)
    damage(run / "last.pt", "random")
    p = _cli(_toy_args(toy_mat, 2), runs, tmp_path)
    out = p.stdout + p.stderr
    assert p.returncode == 2 and f"{run / 'last.pt'}: damaged" in out and "train.resume=false" in out
    assert "Traceback" not in out and "damaged or not a checkpoint (" in out  # (the error random bytes give varies)


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs (needs root; skipped where it cannot be mounted)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if not shutil.which("mount") or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                                                   capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?): the simulated full disk is tested instead")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` but for about ``leave`` bytes."""
    ballast = disk / "ballast"
    with open(ballast, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    size = ballast.stat().st_size
    os.truncate(ballast, max(0, size - leave))
    return ballast


def test_a_real_full_disk_is_named_without_traceback_and_the_run_resumes(toy_mat, tmp_path, small_disk):
    ref = _cli(_toy_args(toy_mat, 3), tmp_path / "ref", tmp_path)
    assert ref.returncode == 0, ref.stderr
    (ref_run,) = (tmp_path / "ref" / "toy" / "lstm").iterdir()
    runs = small_disk / "runs"
    assert _cli(_toy_args(toy_mat, 1), runs, tmp_path).returncode == 0
    (run,) = (runs / "toy" / "lstm").iterdir()
    one = {n: (run / n).read_bytes() for n in ("last.pt", "best.pt", "summary.json", "metrics.csv")}
    for leave in (0, 12 * 1024):  # nothing left, and room for the small files but not a checkpoint
        ballast = _fill(small_disk, leave)
        p = _cli(_toy_args(toy_mat, 3), runs, tmp_path)
        out = p.stdout + p.stderr
        assert p.returncode == 2, out
        assert "No space left on device" in out and f"cannot write {run}/" in out and "Traceback" not in out, out
        ballast.unlink()
        # nothing already written was lost: every file is complete, the checkpoint resumable
        assert torch.load(run / "last.pt", weights_only=False)["state"]["epoch"] >= 1
        assert json.loads((run / "summary.json").read_text())["epochs"] >= 1
        assert not list(run.glob(".*.tmp"))
        if leave == 0:
            assert {n: (run / n).read_bytes() for n in one} == one
    p = _cli(_toy_args(toy_mat, 3), runs, tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert rows(run) == rows(ref_run)
    assert numbers(json.loads((run / "summary.json").read_text())) == numbers(json.loads((ref_run / "summary.json").read_text()))
