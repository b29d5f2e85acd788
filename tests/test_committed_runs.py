"""The committed runs under ``results/`` are consistent with themselves: every ``best.pt`` holds the
weights of the epoch its ``summary.json`` names as the best (an earlier export's copy, stale once
the run trained on, must not stay behind), and no ended run of a converged study keeps a
``last.pt``.

Reads the files only (no corpus, no model): a few seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BEST = sorted((REPO / "results").rglob("best.pt"))


def test_the_committed_results_hold_checkpoints():
    assert len(BEST) >= 60 + 41  # (the music study's selected seeds, the speech study's)


@pytest.mark.parametrize("sub", ["music", "speech"])
def test_every_committed_best_pt_holds_its_runs_best_epoch(sub):
    wrong = []
    for best in [b for b in BEST if b.relative_to(REPO / "results").parts[0] == sub]:
        summary = json.loads((best.parent / "summary.json").read_text())
        epoch = torch.load(best, map_location="cpu", weights_only=False)["epoch"]
        if epoch != summary.get("best_epoch"):
            wrong.append(f"{best.relative_to(REPO)}: epoch {epoch}, summary.json's best_epoch {summary.get('best_epoch')}")
    assert wrong == []


@pytest.mark.parametrize("study", ["results/music/runs", "results/speech/runs/study"])
def test_no_ended_run_of_a_converged_study_keeps_a_last_pt(study):
    """(The archived speech snapshot keeps the last.pt of three early-stopped FSDD tanh runs on
    purpose: tests/test_speech_realdata.py resumes one.)"""
    ended = []
    for last in (REPO / study).rglob("last.pt"):
        summary = json.loads((last.parent / "summary.json").read_text())
        if summary.get("status") != "running":
            ended.append(f"{last.relative_to(REPO)}: {summary.get('status')}")
    assert ended == []
