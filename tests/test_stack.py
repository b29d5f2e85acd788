"""Stacked training (rnnbench.stack): several learning-rate runs trained as one vectorized model
write the same run directories, with the same numbers, as training each alone."""

import csv
import json

import pytest
import torch
from omegaconf import OmegaConf

from rnnbench import fused
from rnnbench.cells import make_cell
from rnnbench.errors import ConfigError
from rnnbench.stack import train_stack
from rnnbench.train import train

LRS = [3e-2, 1e-2, 3e-3]


def metrics(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in r.items() if k != "wall_seconds"} for r in csv.DictReader(f)]


def close_rows(a, b, tol):
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for k in ra:
            if ra[k] in ("", None) or rb[k] in ("", None):
                assert ra[k] == rb[k], k
            else:
                assert float(ra[k]) == pytest.approx(float(rb[k]), rel=tol, abs=tol), (k, ra, rb)


def member_cfgs(toy_cfg, lrs=LRS, **train_over):
    return [OmegaConf.merge(toy_cfg, {"optim": {"lr": lr}, "train": train_over}) for lr in lrs]


@pytest.mark.parametrize("cell", ["tanh", "gru", "lstm", "gru_after"])
def test_stacked_runs_equal_runs_alone(toy_cfg, tmp_path, cell):
    cfgs = [OmegaConf.merge(c, {"cell": {"name": cell}}) for c in member_cfgs(toy_cfg)]
    alone = [train(c, tmp_path / f"alone{k}") for k, c in enumerate(cfgs)]
    stacked = train_stack(cfgs, [tmp_path / f"stack{k}" for k in range(len(cfgs))])
    for k, (a, s) in enumerate(zip(alone, stacked)):
        assert s["stacked_members"] == len(cfgs)
        for key in ("status", "stop_reason", "best_epoch", "epochs", "updates", "lr", "fingerprint"):
            assert s[key] == a[key], key
        for key in ("train_nll", "valid_nll", "test_nll"):
            assert s[key] == pytest.approx(a[key], rel=2e-5)
        close_rows(metrics(tmp_path / f"stack{k}"), metrics(tmp_path / f"alone{k}"), 2e-5)
        best_a = torch.load(tmp_path / f"alone{k}" / "best.pt", weights_only=False)["model"]
        best_s = torch.load(tmp_path / f"stack{k}" / "best.pt", weights_only=False)["model"]
        for n in best_a:
            torch.testing.assert_close(best_s[n], best_a[n], rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- pieces


def _member_models(cell, K, dtype=torch.float64, seed=0):
    from rnnbench.model import SequenceModel

    torch.manual_seed(seed)
    return [SequenceModel(cell, 6, 5).to(dtype) for _ in range(K)]  # different weights per member


@pytest.mark.parametrize("impl", ["fused", "python"])
@pytest.mark.parametrize("cell", ["tanh", "gru", "lstm", "gru_after"])
def test_stacked_model_values_and_gradients_equal_each_member(cell, impl):
    from rnnbench.stack import StackedModel

    if impl == "fused" and not fused.load():
        pytest.skip("fused extension unavailable")
    K, T, B = 3, 9, 2
    models = _member_models(cell, K)
    stack = StackedModel(models[0], K)
    for k, m in enumerate(models):
        stack.load_member(k, m.state_dict())
    x = torch.rand(T, B, 6, dtype=torch.float64)
    y = (torch.rand(T, B, 6) < 0.3).double()
    fused.set_impl(impl)
    try:
        nll = stack.frame_nll(x, y)  # (T, K, B)
        nll.sum().backward()
        for k, m in enumerate(models):
            alone = m.frame_nll(x, y)
            alone.sum().backward()
            torch.testing.assert_close(nll[:, k], alone, rtol=1e-10, atol=1e-10)
            for (n, p), w in zip(m.named_parameters(), stack.weights):
                torch.testing.assert_close(w.grad[k], p.grad, rtol=1e-9, atol=1e-10, msg=n)
    finally:
        fused.set_impl(None)


def test_stacked_rmsprop_and_clipping_equal_torch():
    from rnnbench.stack import StackedRMSprop, clip_members

    torch.manual_seed(0)
    K, lrs = 3, [1e-2, 3e-3, 1e-4]
    optim = OmegaConf.create({"name": "rmsprop", "lr": 1.0, "alpha": 0.9, "eps": 1e-6, "momentum": 0.0,
                              "centered": False})
    shapes = [(4, 5), (5,)]
    alone = [[torch.nn.Parameter(torch.randn(s, dtype=torch.float64)) for s in shapes] for _ in range(K)]
    stacked = [torch.nn.Parameter(torch.stack([a[i].detach() for a in alone])) for i in range(len(shapes))]
    opts = [torch.optim.RMSprop(a, lr=lr, alpha=0.9, eps=1e-6) for a, lr in zip(alone, lrs)]
    sopt = StackedRMSprop(stacked, lrs, optim)
    for step in range(6):
        grads = [torch.randn((K, *s), dtype=torch.float64) * (5 if step == 2 else 0.3) for s in shapes]
        update = [True, step != 3, True]  # member 1 skips one update
        for i, p in enumerate(stacked):
            p.grad = grads[i].clone()
        norms = clip_members(stacked, 1.0)
        sopt.step(update)
        for k in range(K):
            for i, p in enumerate(alone[k]):
                p.grad = grads[i][k].clone()
            norm = torch.nn.utils.clip_grad_norm_(alone[k], 1.0)
            assert float(norms[k]) == pytest.approx(float(norm), rel=1e-12)
            if update[k]:
                opts[k].step()
    for k in range(K):
        for i, p in enumerate(alone[k]):
            torch.testing.assert_close(stacked[i][k], p.detach(), rtol=1e-13, atol=1e-15)
        # and the optimizer state converts to torch's: a member can go on alone
        proto = torch.optim.RMSprop([torch.nn.Parameter(torch.zeros(s, dtype=torch.float64)) for s in shapes],
                                    lr=lrs[k], alpha=0.9, eps=1e-6)
        sd = sopt.member_state(k, proto)
        ref = opts[k].state_dict()
        assert float(sd["state"][0]["step"]) == float(ref["state"][0]["step"]) == (5 if k == 1 else 6)
        for i in range(len(shapes)):
            torch.testing.assert_close(sd["state"][i]["square_avg"], ref["state"][i]["square_avg"])
    with pytest.raises(ConfigError, match="optim.momentum=0.5"):
        StackedRMSprop(stacked, lrs, OmegaConf.merge(optim, {"momentum": 0.5}))


# ----------------------------------------------------------------------------- training


def test_members_stop_on_their_own_and_resume_across_loops(toy_cfg, tmp_path):
    """A member that stops early leaves the stack, the others go on; runs resume from either loop."""
    over = {"max_epochs": 6, "patience": 1}
    cfgs = member_cfgs(toy_cfg, lrs=[0.3, 1e-2, 2e-3], **over)
    alone = [train(c, tmp_path / f"alone{k}") for k, c in enumerate(cfgs)]
    assert alone[0]["stop_reason"] == "early_stopping" and alone[0]["epochs"] < 6  # lr 0.3 overshoots
    assert alone[2]["epochs"] > alone[0]["epochs"]
    dirs = [tmp_path / f"stack{k}" for k in range(3)]
    # stack for 2 epochs, then member 1 goes on alone to 4, then the stack finishes all three
    train_stack(member_cfgs(toy_cfg, lrs=[0.3, 1e-2, 2e-3], max_epochs=2, patience=1), dirs)
    train(member_cfgs(toy_cfg, lrs=[1e-2], max_epochs=4, patience=1)[0], dirs[1])
    stacked = train_stack(cfgs, dirs)
    for k in range(3):
        assert stacked[k]["status"] == alone[k]["status"]
        assert stacked[k]["stop_reason"] == alone[k]["stop_reason"]
        assert stacked[k]["epochs"] == alone[k]["epochs"]
        close_rows(metrics(dirs[k]), metrics(tmp_path / f"alone{k}"), 2e-5)
    # nothing left to do: a further call changes no file
    before = {p: p.read_bytes() for d in dirs for p in sorted(d.iterdir())}
    train_stack(cfgs, dirs)
    assert before == {p: p.read_bytes() for d in dirs for p in sorted(d.iterdir())}


def test_a_diverging_member_leaves_the_others_untouched(toy_cfg, tmp_path, monkeypatch):
    from rnnbench.stack import StackedModel

    cfgs = member_cfgs(toy_cfg)
    alone = [train(c, tmp_path / f"alone{k}") for k, c in enumerate(cfgs)]
    real = StackedModel.frame_nll
    calls = {"n": 0}

    def flaky(self, inputs, targets):
        out = real(self, inputs, targets)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] == 5:  # epoch 2: member 1's loss turns NaN
                out = out.clone()
                out[:, 1] = float("nan")
        return out

    monkeypatch.setattr(StackedModel, "frame_nll", flaky)
    stacked = train_stack(cfgs, [tmp_path / f"stack{k}" for k in range(3)])
    assert stacked[1]["status"] == "diverged" and stacked[1]["epochs"] == 2
    assert json.loads((tmp_path / "stack1" / "summary.json").read_text())["status"] == "diverged"
    for k in (0, 2):
        assert stacked[k]["status"] == "finished"
        close_rows(metrics(tmp_path / f"stack{k}"), metrics(tmp_path / f"alone{k}"), 2e-5)


def test_skipped_updates_are_per_member(toy_cfg, tmp_path, monkeypatch):
    import rnnbench.stack as stack_mod

    real = stack_mod.clip_members
    calls = {"n": 0}

    def flaky(params, max_norm):
        norms = real(params, max_norm)
        calls["n"] += 1
        if calls["n"] == 2:
            norms = norms.clone()
            norms[0] = float("inf")
        return norms

    monkeypatch.setattr(stack_mod, "clip_members", flaky)
    cfgs = member_cfgs(toy_cfg, skip_nonfinite=True, max_epochs=2)
    got = train_stack(cfgs, [tmp_path / f"s{k}" for k in range(3)])
    assert [g["skipped_updates"] for g in got] == [1, 0, 0]
    assert [g["updates"] for g in got] == [5, 6, 6]


def test_runs_that_differ_beyond_the_learning_rate_are_refused(toy_cfg, tmp_path):
    cfgs = member_cfgs(toy_cfg, lrs=[1e-2, 1e-3])
    cfgs[1] = OmegaConf.merge(cfgs[1], {"cell": {"units": 9}})
    with pytest.raises(ConfigError, match=r"cell\.units=8 vs 9"):
        train_stack(cfgs, [tmp_path / "a", tmp_path / "b"])
    assert not (tmp_path / "a" / "summary.json").exists()
