"""What a person watching training sees (rnnbench.progress): epoch lines with ``epoch i/N``, the
best validation NLL said in words and the time left; progress within a long epoch (a bar on a
terminal, lines in a log file), costing a comparison per update; sweep lines in plain words."""

from __future__ import annotations

import io
import json
import logging
import math
import re

from omegaconf import OmegaConf

from rnnbench import progress
from rnnbench.launch import Progress
from rnnbench.runs import read_metrics
from rnnbench.runs import Run
from rnnbench.train import train


def _epoch_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "rnnbench.train" and "  epoch " in r.getMessage()]


def test_epoch_lines_say_epoch_of_n_the_best_in_words_and_the_time_left(toy_cfg, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="rnnbench")
    train(toy_cfg, tmp_path / "r")
    lines = _epoch_lines(caplog)
    assert [line.split("  epoch ")[1].split(" ")[0] for line in lines] == ["1/3", "2/3", "3/3"]
    for line in lines:
        assert not line.rstrip().endswith("*") and " s  updates " in line
        assert "valid " in line and ("new best" in line or "epochs without a better one" in line), line
    assert "elapsed " in lines[0] and "at most ~" in lines[0] and lines[0].endswith(" left")
    assert lines[-1].endswith("no epoch left")
    assert "  train " in lines[0]  # (the training NLL is computed at epoch 1)


def test_an_epoch_without_a_better_nll_names_the_best_and_the_patience(toy_cfg, tmp_path):
    run = Run(OmegaConf.merge(toy_cfg, {"train": {"max_epochs": 10, "patience": 4}}), tmp_path / "r")
    run.state.epoch, run.state.best_valid, run.state.best_epoch, run.state.bad_epochs = 3, 8.5, 1, 2
    run.state.wall_seconds, run.state.eval_seconds = 50.0, 10.0
    run.history = [{"epoch": 3, "valid_nll": 8.61, "train_nll": None}]
    line = run.epoch_line(19.96)
    assert "epoch 3/10  20.0 s" in line
    assert "valid 8.610 (best 8.500 at epoch 1; 2 of 4 epochs without a better one)" in line
    # 60 s for 3 epochs, 7 epochs left: at most 140 s
    assert line.endswith("|  elapsed 60 s, at most ~2 min left") and "  train " not in line
    run.history[-1]["valid_nll"] = math.nan
    assert "valid nan (not finite: the run is over)" in run.epoch_line(1.0)


def test_progress_within_a_long_epoch_changes_no_number(toy_cfg, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="rnnbench")
    monkeypatch.setattr(progress, "AFTER", math.inf)
    quiet = train(toy_cfg, tmp_path / "quiet")
    assert not [r for r in caplog.records if "left in the epoch" in r.getMessage()]
    # every epoch "long": progress lines (stdout is not a terminal under pytest)
    monkeypatch.setattr(progress, "AFTER", 0.0)
    monkeypatch.setattr(progress, "LOG_EVERY", 0.0)
    shown = train(toy_cfg, tmp_path / "shown")
    within = [r.getMessage() for r in caplog.records if "left in the epoch" in r.getMessage()]
    assert within and all("epoch " in m and " updates (" in m for m in within), within
    keys = ("train_nll", "valid_nll", "test_nll", "best_epoch", "updates", "epochs")
    assert {k: quiet[k] for k in keys} == {k: shown[k] for k in keys}
    columns = ["epoch", "updates", "train_nll", "valid_nll", "test_nll", "train_loss_noisy"]
    assert read_metrics(tmp_path / "quiet")[columns].equals(read_metrics(tmp_path / "shown")[columns])


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Clock:
    def __init__(self):
        self.now, self.reads = 0.0, 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def test_the_clock_is_read_about_once_a_second_and_a_terminal_gets_a_bar(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    screen = _Terminal()
    p = progress.EpochProgress("jsb/gru lr 0.001", 4, 500, 100_000, stream=screen)
    checks = 0
    for done in range(1, 100_001):  # 100 s of updates at 1,000 per second
        clock.now += 0.001
        if done >= p.next:
            p.check(done)
            checks += 1
    assert clock.reads < 150 and checks < 150  # not once per update
    out = screen.getvalue()
    assert out.count("\r") > 50 and "jsb/gru lr 0.001  epoch 4/500  [" in out
    assert re.search(r"\] 5\d{4}/100000 updates, 5\d s, ~4\d s left in the epoch\r", out)
    first = int(out.split("\r")[1].split("] ")[1].split("/")[0])
    assert 20_000 <= first < 22_000  # (nothing in the first 20 s)
    p.close()
    assert screen.getvalue().endswith("\r")  # the bar is wiped before the epoch's line


def test_a_log_file_gets_a_line_every_log_every_seconds(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="rnnbench")
    clock = _Clock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    p = progress.EpochProgress("fsdd/lstm lr 0.0002", 1, 500, 90_000, stream=io.StringIO())
    for done in range(1, 90_001):  # 90 s
        clock.now += 0.001
        if done >= p.next:
            p.check(done)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines  # at 20 s, 50 s and 80 s
    assert re.fullmatch(r"fsdd/lstm lr 0\.0002  epoch 1/500: 2\d{4} of 90000 updates \(2\d%\) in 2\d s, ~(69|70) s "
                        r"left in the epoch", lines[0]), lines[0]


def test_sweep_progress_is_worded_plainly(tmp_path):
    dirs = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    for d, status in zip(dirs, ("running", "finished", "running")):
        d.mkdir()
        (d / "summary.json").write_text(json.dumps({  # (a finished run's summary has its result: read_summary checks)
            "status": status, "epochs": 4, "wall_seconds": 30.0, "eval_seconds": 10.0, "best_epoch": 4,
            "valid_nll": 8.5, "lr": 1e-3, "units": 46, "dataset": "jsb", "cell": "gru"}))
    p = Progress([{"label": "jsb/gru seed 0 (2 runs)", "dirs": dirs[:2], "max_epochs": 20},
                  {"label": "jsb/lstm seed 0 (1 run)", "dirs": dirs[2:], "max_epochs": 20}], 2)
    assert p.stack_line(0) == "stack 1 of 2, jsb/gru seed 0 (2 runs): 1 of 2 runs finished, epoch 4 of 20, ~3 min left"
    assert p.sweep_line() == ("sweep: 1 of 3 runs finished, 28 of 60 run-epochs, ~3 min left "
                              "(at most: early stopping ends runs sooner)")
