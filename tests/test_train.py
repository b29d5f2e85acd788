"""The training recipe and its run directory: outputs, determinism, resume, divergence, bad config."""

import csv
import json
import os
import re
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from conftest import REPO
from rnnbench.errors import ConfigError
from rnnbench.model import SequenceModel
from rnnbench.train import train


def read_metrics(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def strip_time(rows):
    return [{k: v for k, v in r.items() if k not in ("wall_seconds", "eval_seconds")} for r in rows]


def _weights_seen_in_training(toy_cfg, tmp_path, monkeypatch, **train_over):
    """The (noisy) weights every update's forward pass saw, and the clean weights beside them."""
    from rnnbench import stack

    seen = []
    real = stack.StackedModel.noisy_weights

    def spy(self, generators, std):  # (what every update's forward and backward pass use)
        flat = real(self, generators, std)
        seen.append((flat.detach().clone(), self.flat.detach().clone(), self.noisy_mask.clone()))
        return flat

    monkeypatch.setattr(stack.StackedModel, "noisy_weights", spy)
    train(OmegaConf.merge(toy_cfg, {"train": {"max_epochs": 1, **train_over}}), tmp_path / "run")
    return seen


def test_weight_noise_is_fresh_for_every_update_and_only_on_weights(toy_cfg, tmp_path, monkeypatch):
    seen = _weights_seen_in_training(toy_cfg, tmp_path, monkeypatch)
    assert len(seen) == 3  # 12 toy sequences, batch 4
    model = SequenceModel("gru", 88, 8)
    noisy_names = {n for n, p in model.named_parameters() if any(p is q for q in model.noisy_parameters())}
    assert noisy_names == {"cell.weight_ih", "cell.weight_hh", "head.linear.weight"}
    noises = []
    for noisy, clean, mask in seen:
        diff = noisy - clean
        assert int(mask.sum()) == sum(p.numel() for n, p in model.named_parameters() if n in noisy_names)
        assert 0.06 < float(diff[:, mask].std()) < 0.09
        assert torch.equal(diff[:, ~mask], torch.zeros_like(diff[:, ~mask]))  # biases: exactly clean
        noises.append(diff[:, mask])
    assert not torch.equal(noises[0], noises[1])


def test_no_weight_noise_when_off(toy_cfg, tmp_path, monkeypatch):
    seen = _weights_seen_in_training(toy_cfg, tmp_path, monkeypatch, weight_noise=0.0)
    assert seen and all(torch.equal(noisy, clean) for noisy, clean, _ in seen)


def test_run_directory_and_learning(toy_cfg, tmp_path):
    run = tmp_path / "run"
    summary = train(toy_cfg, run)
    assert {"config.yaml", "metrics.csv", "summary.json", "best.pt", "last.pt"} <= {p.name for p in run.iterdir()}
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    rows = read_metrics(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert list(rows[0]) == ["epoch", "updates", "wall_seconds", "train_nll", "valid_nll", "test_nll",
                             "train_loss_noisy", "lr", "skipped_updates", "eval_seconds", "grad_norm_median",
                             "grad_norm_max", "clipped_updates"]
    for r in rows:  # (3 updates an epoch, clipped at train.clip_norm)
        assert 0 < float(r["grad_norm_median"]) <= float(r["grad_norm_max"]) and 0 <= int(r["clipped_updates"]) <= 3
    assert int(rows[-1]["updates"]) == 3 * 3  # 12 train sequences, batch 4
    assert float(rows[-1]["valid_nll"]) < float(rows[0]["valid_nll"]) < 61.0
    saved = json.loads((run / "summary.json").read_text())
    assert saved == summary
    assert summary["status"] == "finished" and summary["stop_reason"] == "max_epochs"
    best = min(rows, key=lambda r: float(r["valid_nll"]))
    assert summary["best_epoch"] == int(best["epoch"])
    assert summary["test_nll"] == pytest.approx(float(best["test_nll"]))
    assert summary["cell"] == "gru" and summary["units"] == 8 and summary["seed"] == 0
    assert summary["lr"] == 1e-2 and summary["params_recurrent"] == 3 * (88 * 8 + 64 + 8)
    ckpt = torch.load(run / "best.pt", weights_only=False)
    assert ckpt["epoch"] == summary["best_epoch"]


def test_a_runs_config_is_resolved_once(toy_cfg, tmp_path):
    """The paper's learning rate is a resolver interpolation; the run reads the value it resolved
    to when it was made (not a parse per access), and writes that value to config.yaml."""
    from rnnbench.runs import Run

    cfg = OmegaConf.merge(toy_cfg, {"search": {"seed": 0, "draw": 3, "log_low": -12, "log_high": -6}})
    cfg.optim.lr = "${rnnbench.loguniform:${search.seed},${search.draw},${search.log_low},${search.log_high}}"
    run = Run(cfg, tmp_path / "run")
    assert not OmegaConf.is_interpolation(run.cfg.optim, "lr")
    assert run.cfg.optim.lr == cfg.optim.lr and OmegaConf.is_struct(run.cfg) == OmegaConf.is_struct(cfg)
    assert run.tcfg.max_epochs == 3


def test_same_seed_same_numbers(toy_cfg, tmp_path):
    train(toy_cfg, tmp_path / "a")
    train(toy_cfg, tmp_path / "b")
    assert strip_time(read_metrics(tmp_path / "a")) == strip_time(read_metrics(tmp_path / "b"))
    other = OmegaConf.merge(toy_cfg, {"seed": 1})
    train(other, tmp_path / "c")
    assert strip_time(read_metrics(tmp_path / "a")) != strip_time(read_metrics(tmp_path / "c"))


def test_resume_equals_uninterrupted(toy_cfg, tmp_path):
    train(toy_cfg, tmp_path / "full")
    short = OmegaConf.merge(toy_cfg, {"train": {"max_epochs": 1}})
    train(short, tmp_path / "resumed")
    assert len(read_metrics(tmp_path / "resumed")) == 1
    summary = train(toy_cfg, tmp_path / "resumed")  # same directory, more epochs: resumes at epoch 2
    assert strip_time(read_metrics(tmp_path / "resumed")) == strip_time(read_metrics(tmp_path / "full"))
    assert summary["epochs"] == 3


def test_finished_run_is_not_retrained(toy_cfg, tmp_path):
    early = OmegaConf.merge(toy_cfg, {"train": {"patience": 1, "max_epochs": 50}, "optim": {"lr": 0.3}})
    first = train(early, tmp_path / "r")
    assert first["status"] in ("finished", "diverged")
    files = sorted((tmp_path / "r").iterdir())
    mtimes = [p.stat().st_mtime_ns for p in files if p.name != ".lock"]  # (its holder writes its pid there)
    again = train(early, tmp_path / "r")
    assert again == first
    assert sorted((tmp_path / "r").iterdir()) == files
    assert [p.stat().st_mtime_ns for p in files if p.name != ".lock"] == mtimes  # nothing rewritten



def test_a_run_ended_at_its_cap_is_not_scored_again_by_a_rerun_at_that_cap(toy_cfg, tmp_path, monkeypatch):
    """A run stopped by train.max_epochs that still has its last.pt: called again with the same
    cap it trains nothing and scores nothing again (its best epoch's train/test NLLs, scored once
    when it ended, could otherwise move in the last digits with the thread count), so not a byte
    is rewritten; with a higher cap it goes on (and is scored again when it ends there)."""
    from rnnbench.runs import Run

    cfg = OmegaConf.merge(toy_cfg, {"train": {"max_epochs": 2}})
    first = train(cfg, tmp_path / "r")
    assert first["status"] == "finished" and first["stop_reason"] == "max_epochs"
    assert (tmp_path / "r" / "last.pt").is_file()
    kept = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (tmp_path / "r").iterdir() if p.is_file()
            and p.name != ".lock"}
    scored = []
    fill_best = Run.fill_best
    monkeypatch.setattr(Run, "fill_best", lambda self, nll, seconds=0.0: (scored.append(dict(nll)),
                                                                          fill_best(self, nll, seconds))[1])
    assert train(cfg, tmp_path / "r") == first
    assert scored == []  # nothing scored again
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (tmp_path / "r").iterdir() if p.is_file()
            and p.name != ".lock"} == kept  # not a byte rewritten
    longer = train(OmegaConf.merge(cfg, {"train": {"max_epochs": 3}}), tmp_path / "r")
    assert longer["epochs"] == 3 and longer["stop_reason"] == "max_epochs" and scored


def test_a_run_stopped_by_its_time_budget_goes_on_when_called_again(toy_cfg, tmp_path, monkeypatch):
    """train.max_minutes ends a session, not the run: called again (a new session, new time) it
    trains on to the same numbers as an uninterrupted run; called with a cap it has already
    reached it is kept as it ended (nothing scored again, no byte rewritten)."""
    import time as real_time

    import rnnbench.runs as runs_module

    train(toy_cfg, tmp_path / "full")

    class Clock:  # every reading of the clock 10 s later than the last: the 30 s budget ends after an epoch or two
        now = 0.0

        def perf_counter(self):
            Clock.now += 10.0
            return Clock.now

        def __getattr__(self, name):
            return getattr(real_time, name)

    with monkeypatch.context() as m:
        m.setattr(runs_module, "time", Clock())
        cut = train(OmegaConf.merge(toy_cfg, {"train": {"max_minutes": 0.5}}), tmp_path / "r")
    assert cut["status"] == "finished" and cut["stop_reason"] == "time_budget" and 1 <= cut["epochs"] < 3
    at_cap = OmegaConf.merge(toy_cfg, {"train": {"max_epochs": cut["epochs"]}})
    def files():  # (config.yaml records the configuration of the latest call: here another cap)
        return {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir() if p.is_file()
                and p.name not in (".lock", "config.yaml")}

    kept = files()
    assert train(at_cap, tmp_path / "r") == cut
    assert files() == kept
    summary = train(toy_cfg, tmp_path / "r")
    assert summary["epochs"] == 3 and summary["stop_reason"] == "max_epochs"
    assert strip_time(read_metrics(tmp_path / "r")) == strip_time(read_metrics(tmp_path / "full"))


def test_an_ended_run_whose_last_pt_was_dropped_is_kept_not_retrained(toy_cfg, tmp_path):
    """Committed results keep summary.json, metrics.csv and best.pt but not last.pt.  Called again,
    such a run is kept as it is (nothing rewritten), alone or beside a run that trains; asked to
    go further (a larger max_epochs), it is a clear error naming last.pt, not a silent retraining
    over its files."""
    from rnnbench.errors import RunFileError
    from rnnbench.stack import train_stack

    cfg = OmegaConf.merge(toy_cfg, {"train": {"max_epochs": 2}})
    first = train(cfg, tmp_path / "r")
    assert first["status"] == "finished" and first["stop_reason"] == "max_epochs"
    for name in ("last.pt", "last.prev.pt"):
        (tmp_path / "r" / name).unlink(missing_ok=True)
    kept = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (tmp_path / "r").iterdir() if p.is_file()
            and p.name != ".lock"}
    assert train(cfg, tmp_path / "r") == first
    other = OmegaConf.merge(cfg, {"optim": {"lr": 3e-3}})
    both = train_stack([cfg, other], [tmp_path / "r", tmp_path / "s"])
    assert both[0] == first and both[1]["status"] == "finished" and both[1]["epochs"] == 2
    now = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (tmp_path / "r").iterdir() if p.is_file()
           and p.name != ".lock"}
    assert now == kept  # not a byte rewritten, no last.pt made
    longer = OmegaConf.merge(cfg, {"train": {"max_epochs": 4}})
    with pytest.raises(RunFileError, match=r"last\.pt: missing: the run ended after 2 epochs \(max_epochs\).*"
                                           r"cannot go on to train\.max_epochs=4.*train\.resume=false"):
        train(longer, tmp_path / "r")
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (tmp_path / "r").iterdir() if p.is_file()
            and p.name != ".lock"} == kept
    again = train(OmegaConf.merge(longer, {"train": {"resume": False}}), tmp_path / "r")  # (the way out it names)
    assert again["epochs"] == 4


def test_early_stopping_uses_patience(toy_cfg, tmp_path):
    cfg = OmegaConf.merge(toy_cfg, {"train": {"patience": 2, "max_epochs": 200}, "optim": {"lr": 0.05}})
    summary = train(cfg, tmp_path / "r")
    rows = read_metrics(tmp_path / "r")
    assert summary["stop_reason"] == "early_stopping"
    assert len(rows) == summary["best_epoch"] + 2
    assert all(float(r["valid_nll"]) >= summary["valid_nll"] for r in rows)


def test_changed_config_refuses_to_resume(toy_cfg, tmp_path):
    train(OmegaConf.merge(toy_cfg, {"train": {"max_epochs": 1}}), tmp_path / "r")
    with pytest.raises(ConfigError, match="different configuration"):
        train(OmegaConf.merge(toy_cfg, {"optim": {"lr": 0.5}}), tmp_path / "r")
    fresh = OmegaConf.merge(toy_cfg, {"optim": {"lr": 0.5}, "train": {"resume": False, "max_epochs": 1}})
    assert train(fresh, tmp_path / "r")["lr"] == 0.5


def test_a_run_resumes_across_a_change_of_halving_or_of_the_fingerprint_rule(toy_cfg, tmp_path):
    """search.halving only decides when a draw stops: a run made under other halving settings, or
    whose stored fingerprint was computed by an older rule (one that still counted search.halving),
    resumes; its config.yaml is the evidence.  Another learning rate is still refused."""
    halving = {"search": {"halving": {"epochs": [10, 20, 40], "keep": 0.5, "min_keep": 2, "margin": 0.05}}}
    run = tmp_path / "r"
    train(OmegaConf.merge(toy_cfg, halving, {"train": {"max_epochs": 1}}), run)
    for name in ("summary.json",):  # as written by the older rule: another hash of the same config
        s = json.loads((run / name).read_text())
        s["fingerprint"] = "0123456789abcdef"
        (run / name).write_text(json.dumps(s))
    ckpt = torch.load(run / "last.pt", weights_only=False)
    ckpt["fingerprint"] = "0123456789abcdef"
    torch.save(ckpt, run / "last.pt")
    later = {"search": {"halving": {"epochs": [10, 20], "keep": 0.5, "min_keep": 3, "margin": 0.05}}}
    summary = train(OmegaConf.merge(toy_cfg, later, {"train": {"max_epochs": 2}}), run)
    assert summary["epochs"] == 2 and len(read_metrics(run)) == 2
    with pytest.raises(ConfigError, match="different configuration"):
        train(OmegaConf.merge(toy_cfg, later, {"optim": {"lr": 0.5}, "train": {"max_epochs": 3}}), run)


def test_nan_marks_the_run_diverged(toy_cfg, tmp_path, monkeypatch):
    from rnnbench.stack import StackedModel

    real = StackedModel.frame_nll
    calls = {"n": 0}

    def flaky(self, inputs, targets, flat=None):
        calls["n"] += 1
        out = real(self, inputs, targets, flat)
        return out * float("nan") if calls["n"] > 4 and torch.is_grad_enabled() else out

    real_lg = StackedModel.loss_and_grad

    def flaky_lg(self, batch, flat):  # (the hand-written training step, where it applies)
        out = real_lg(self, batch, flat)
        if out is None:
            return None
        calls["n"] += 1
        return (out[0] * float("nan"), out[1]) if calls["n"] > 4 else out

    monkeypatch.setattr(StackedModel, "frame_nll", flaky)
    monkeypatch.setattr(StackedModel, "loss_and_grad", flaky_lg)
    summary = train(toy_cfg, tmp_path / "r")
    assert summary["status"] == "diverged"
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["status"] == "diverged"
    last = read_metrics(tmp_path / "r")[-1]  # (the epoch cut short still says what its gradients were)
    assert last["valid_nll"] == "" and float(last["grad_norm_max"]) >= float(last["grad_norm_median"]) > 0


@pytest.mark.parametrize(
    "override, message",
    [
        ({"optim": {"lr": -1.0}}, "optim.lr=-1.0"),
        ({"train": {"batch_size": 0}}, "train.batch_size=0"),
        ({"train": {"patience": 0}}, "train.patience=0"),
        ({"train": {"weight_noise": -0.1}}, "train.weight_noise=-0.1"),
        ({"cell": {"units": 0}}, "cell.units=0"),
        ({"optim": {"alpha": 1.5}}, "optim.alpha=1.5"),
        ({"train": {"max_epochs": 0}}, "train.max_epochs=0"),
    ],
)
def test_bad_config_values_are_named(toy_cfg, tmp_path, override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        train(OmegaConf.merge(toy_cfg, override), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_unknown_cell_is_named(toy_cfg, tmp_path):
    with pytest.raises(ConfigError, match="unknown cell 'rnn'"):
        train(OmegaConf.merge(toy_cfg, {"cell": {"name": "rnn"}}), tmp_path / "r")


def _cli(args, tmp_path, env_extra=None):
    env = dict(os.environ, RNNBENCH_RUNS=str(tmp_path / "runs"), **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "rnnbench.cli.train", *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)


def test_cli_writes_a_run_directory(toy_mat, tmp_path):
    args = [f"dataset.path={toy_mat}", "dataset.name=toy", "cell=lstm", "cell.units=4", "train.max_epochs=1",
            "train.batch_size=6", "seed=3"]
    p = _cli(args, tmp_path)
    assert p.returncode == 0, p.stderr
    runs = list((tmp_path / "runs" / "toy" / "lstm").iterdir())
    assert [r.name for r in runs] == ["cell.units=4,dataset.name=toy,seed=3,train.batch_size=6"]
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["cell"] == "lstm" and summary["seed"] == 3 and summary["epochs"] == 1
    assert (runs[0] / ".hydra" / "config.yaml").is_file()
    assert re.search(r"toy/lstm lr 0\.001 seed 3: finished \(max_epochs\), best epoch 1: train \d+\.\d{3}, "
                     r"valid \d+\.\d{3}, test \d+\.\d{3}  \[", p.stdout), p.stdout  # rounded for people
    # the same command again finds the finished run and does not train
    p2 = _cli(args, tmp_path)
    assert p2.returncode == 0 and "epoch   1" not in p2.stderr + p2.stdout


def test_cli_run_without_overrides_gets_a_folder_of_its_own(toy_mat, tmp_path):
    """runs/<dataset>/<cell>/default, never the parent of runs/<dataset>/<cell>/<overrides>."""
    p = _cli([f"dataset.path={toy_mat}", "train.max_epochs=1"], tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "runs" / "jsb" / "gru" / "default" / "summary.json").is_file()
    assert sorted(x.name for x in (tmp_path / "runs" / "jsb" / "gru").iterdir()) == ["default"]


def test_cli_diverged_run_exits_non_zero_and_a_multirun_goes_on(toy_mat, tmp_path):
    base = [f"dataset.path={toy_mat}", "dataset.name=toy", "cell.units=4", "train.max_epochs=2", "train.batch_size=6"]
    p = _cli(base + ["optim.lr=1e38"], tmp_path)  # (the first update overflows every weight)
    assert p.returncode == 3, p.stdout + p.stderr
    assert "diverged" in p.stderr and "non-finite" in p.stderr
    m = _cli(["-m"] + base + ["optim.lr=1e38,0.01"], tmp_path)
    assert m.returncode == 0, m.stdout + m.stderr
    assert "lr 1e+38: diverged" in m.stdout and "lr 0.01: finished" in m.stdout


def test_cli_bad_value_exits_with_a_clear_message(toy_mat, tmp_path):
    """A refused run says why in one line (no traceback) and leaves nothing on disk."""
    def nothing_left():
        return not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*"))

    p = _cli([f"dataset.path={toy_mat}", "optim.lr=0"], tmp_path)
    assert p.returncode == 2
    assert "optim.lr=0" in p.stderr + p.stdout and "Traceback" not in p.stderr + p.stdout
    assert nothing_left()
    p = _cli([f"dataset.path={toy_mat}", "train.max_epochs=0"], tmp_path)
    assert p.returncode == 2 and "train.max_epochs=0 is invalid: expected an integer >= 1" in p.stdout + p.stderr
    assert nothing_left()
    (tmp_path / "empty_root").mkdir()
    p = _cli(["dataset=jsb", "data_root=" + str(tmp_path / "empty_root"), "dataset.download=false"], tmp_path)
    assert p.returncode == 2
    assert "JSB_Chorales.mat not found" in p.stderr + p.stdout and "Traceback" not in p.stderr + p.stdout
    assert nothing_left()
    # a refused multirun job: one line, Hydra's exit status, nothing but the sweep's multirun.yaml
    p = _cli(["-m", "dataset=jsb", "data_root=" + str(tmp_path / "empty_root"), "dataset.download=false",
              "seed=0,1"], tmp_path)
    assert p.returncode == 1 and "JSB_Chorales.mat not found" in p.stderr and "Traceback" not in p.stderr
    assert [x.name for x in (tmp_path / "runs").rglob("*") if x.is_file()] == ["multirun.yaml"]


def test_overflowing_gradients_can_be_skipped(toy_cfg, tmp_path, monkeypatch):
    """With train.skip_nonfinite an update whose gradient overflows is skipped and counted."""
    import rnnbench.stack as stack_mod

    real = stack_mod.clip_members
    calls = {"n": 0}

    def flaky(grad, max_norm):
        calls["n"] += 1
        return torch.full((grad.shape[0],), float("inf")) if calls["n"] == 2 else real(grad, max_norm)

    monkeypatch.setattr(stack_mod, "clip_members", flaky)
    cfg = OmegaConf.merge(toy_cfg, {"train": {"skip_nonfinite": True, "max_epochs": 2}})
    summary = train(cfg, tmp_path / "skip")
    assert summary["status"] == "finished" and summary["skipped_updates"] == 1
    assert summary["updates"] == 2 * 3 - 1
    assert [int(r["skipped_updates"]) for r in read_metrics(tmp_path / "skip")] == [1, 0]
    calls["n"] = 0
    strict = train(OmegaConf.merge(toy_cfg, {"train": {"max_epochs": 2}}), tmp_path / "strict")
    assert strict["status"] == "diverged"


def test_a_run_that_overflows_at_every_update_says_how_many_it_skipped(toy_cfg, tmp_path, monkeypatch):
    """Skipping is allowed for half an epoch's updates; a run that overflows more is diverged, and
    its last metrics.csv row and summary count the updates it skipped (no finite norm to record)."""
    import rnnbench.stack as stack_mod

    monkeypatch.setattr(stack_mod, "clip_members", lambda grad, max_norm: torch.full((grad.shape[0],), float("inf")))
    summary = train(OmegaConf.merge(toy_cfg, {"train": {"skip_nonfinite": True, "max_epochs": 2}}), tmp_path / "r")
    rows = read_metrics(tmp_path / "r")
    assert summary["status"] == "diverged" and summary["updates"] == 0
    assert summary["skipped_updates"] == int(rows[-1]["skipped_updates"]) == 1  # (3 batches: at most 1 skipped)
    assert rows[-1]["grad_norm_max"] == ""


def test_neutral_new_options_keep_old_runs_resumable(toy_cfg):
    from rnnbench.runs import config_fingerprint

    with_default = config_fingerprint(toy_cfg)
    as_dict = OmegaConf.to_container(toy_cfg, resolve=True)
    del as_dict["train"]["skip_nonfinite"]  # a run configured before the option existed
    assert config_fingerprint(OmegaConf.create(as_dict)) == with_default
    assert config_fingerprint(OmegaConf.merge(toy_cfg, {"train": {"skip_nonfinite": True}})) != with_default


def test_a_write_killed_midway_leaves_nothing_behind_on_resume(toy_cfg, tmp_path):
    """kill -9 during an atomic write leaves its temporary file; the next start removes it."""
    run = tmp_path / "r"
    train(OmegaConf.merge(toy_cfg, {"train": {"max_epochs": 1}}), run)
    (run / ".last.pt.x1y2z3.tmp").write_bytes(b"half a checkpoint")
    summary = train(toy_cfg, run)
    assert summary["epochs"] == 3
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- memory: refused before it is allocated

def _fake_cgroup(root, limit, used, v1=False):
    if v1:
        (root / "memory").mkdir(parents=True)
        (root / "memory" / "memory.limit_in_bytes").write_text(f"{limit}\n")
        (root / "memory" / "memory.usage_in_bytes").write_text(f"{used}\n")
    else:
        root.mkdir(parents=True)
        (root / "memory.max").write_text(f"{limit}\n")
        (root / "memory.current").write_text(f"{used}\n")
    return root


@pytest.mark.parametrize("v1", [False, True])
def test_available_memory_reads_the_cgroup_limit(tmp_path, monkeypatch, v1):
    from rnnbench.memory import available_bytes

    monkeypatch.setenv("RNNBENCH_CGROUP_ROOT", str(_fake_cgroup(tmp_path / "cg", 300 * 2**20, 100 * 2**20, v1)))
    assert available_bytes() == (200 * 2**20, "cgroup limit")
    (tmp_path / "cg" / ("memory/memory.limit_in_bytes" if v1 else "memory.max")).write_text(
        "9223372036854771712\n" if v1 else "max\n")  # no limit: MemAvailable
    avail, source = available_bytes()
    assert source == "MemAvailable" and avail > 0


def test_a_model_too_large_for_memory_is_refused_before_allocating(toy_mat, tmp_path):
    """cell.units=20000 (a GRU of 1.2 billion parameters) is refused in one line naming the
    estimate and the memory available, exit 2, nothing on disk; it never starts to allocate."""
    cg = _fake_cgroup(tmp_path / "cg", 2 * 2**30, 2**28)
    p = _cli([f"dataset.path={toy_mat}", "dataset.name=toy", "cell.units=20000"], tmp_path,
             {"RNNBENCH_CGROUP_ROOT": str(cg)})
    out = p.stdout + p.stderr
    assert p.returncode == 2 and "Traceback" not in out, out
    assert re.search(r"cell\.units=20000 \(gru: 1,20\d,\d{3},\d{3} parameters, with optimizer state, activations and "
                     r"evaluation batches\) needs an estimated \d+\.\d GiB of memory; 1\.\d GiB is available "
                     r"\(cgroup limit\)", out), out
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*"))


def test_the_memory_estimate_counts_the_stack(toy_cfg):
    from rnnbench.stack import memory_estimate
    from rnnbench.recipe import Splits

    data = Splits(toy_cfg)
    one, params = memory_estimate(toy_cfg, data, 1)
    ten, _ = memory_estimate(toy_cfg, data, 10)
    assert params == SequenceModel.for_corpus("gru", 8, data.corpus).param_counts()["total"]
    assert ten > 9 * (one - 4 * params) and one > 6 * 4 * params
