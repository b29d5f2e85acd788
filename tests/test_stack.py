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
        return [{k: v for k, v in r.items() if k not in ("wall_seconds", "eval_seconds")} for r in csv.DictReader(f)]


def close_rows(a, b, tol, filled_ok=False):
    """Rows equal to ``tol``; with ``filled_ok`` a cell of ``a`` may hold a number where ``b``'s is
    empty (a run stopped by a budget and resumed has its best epoch of then scored, too)."""
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for k in ra:
            if filled_ok and rb[k] in ("", None) and k in ("train_nll", "test_nll"):
                continue
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


@pytest.mark.parametrize("B", [2, 9])
@pytest.mark.parametrize("inputs", ["dense", "sparse"])
@pytest.mark.parametrize("impl", ["fused", "python"])
@pytest.mark.parametrize("cell", ["tanh", "gru", "lstm", "gru_after"])
def test_stacked_model_values_and_gradients_equal_each_member(cell, impl, inputs, B):
    """Every member of a stack computes what its model computes alone (the reference
    SequenceModel), values and weight gradients, through the fused kernels (dense inputs: one
    product; sparse 0/1 inputs such as piano rolls: sums of rows; a few rows per member: the
    kernels' member-by-member loops; more than 8: their batched products) and through vmap."""
    from rnnbench.model import SequenceModel
    from rnnbench.stack import StackedModel

    if impl == "fused" and not fused.load():
        pytest.skip("fused extension unavailable")
    K, T, D = 3, 9, 20
    torch.manual_seed(0)
    models = [SequenceModel(cell, D, 5).double() for _ in range(K)]  # different weights per member
    stack = StackedModel(models[0], K, inits=[m.state_dict() for m in models])
    g = torch.Generator().manual_seed(1)
    x = torch.rand(T, B, D, dtype=torch.float64, generator=g)
    if inputs == "sparse":
        x = (x < 0.1).double()
        assert 0 < x.mean() < fused.SPARSE_DENSITY
    y = (torch.rand(T, B, D, generator=g) < 0.3).double()
    fused.set_impl(impl)
    try:
        nll = stack.frame_nll(x, y)  # (T, K, B)
        nll.sum().backward()
        grads = stack.views(stack.flat.grad)
        for k, m in enumerate(models):
            alone = m.frame_nll(x, y)
            alone.sum().backward()
            torch.testing.assert_close(nll[:, k], alone, rtol=1e-10, atol=1e-10)
            for n, p in m.named_parameters():
                torch.testing.assert_close(grads[n][k], p.grad, rtol=1e-9, atol=1e-10, msg=n)
    finally:
        fused.set_impl(None)


@pytest.mark.parametrize("impl,dtype", [("auto", torch.float64), ("python", torch.float64), ("auto", torch.float32)])
def test_stacked_rmsprop_and_clipping_equal_torch(impl, dtype, request, simd):
    """The fused RMSProp pass (float64; float32 in SIMD lanes and a tail, at each level this CPU has) and the torch-op path
    both equal torch.optim.RMSprop, weights whose gradient is exactly zero (sq = 0) included."""
    from rnnbench.model import SequenceModel
    from rnnbench.stack import StackedModel, StackedRMSprop, clip_members

    fused.set_impl(impl)
    request.addfinalizer(lambda: fused.set_impl(None))
    torch.manual_seed(0)
    K, lrs = 3, [1e-2, 3e-3, 1e-4]
    optim = OmegaConf.create({"name": "rmsprop", "lr": 1.0, "alpha": 0.9, "eps": 1e-6, "momentum": 0.0,
                              "centered": False})
    protos = [SequenceModel("lstm", 4, 3).to(dtype) for _ in range(K)]
    stacked = StackedModel(protos[0], K, inits=[p.state_dict() for p in protos])
    alone = [list(p.parameters()) for p in protos]
    opts = [torch.optim.RMSprop(a, lr=lr, alpha=0.9, eps=1e-6) for a, lr in zip(alone, lrs)]
    sopt = StackedRMSprop(stacked, lrs, optim)
    for step in range(6):
        grad = torch.randn(stacked.flat.shape, dtype=dtype) * (5 if step == 2 else 0.3)
        grad[:, :7] = 0.0  # (never a gradient: sq stays exactly 0)
        update = [True, step != 3, True]  # member 1 skips one update
        per_member = [part.view(K, *shape) for part, shape in zip(grad.split(stacked.sizes, 1), stacked.shapes)]
        g = grad.clone()
        norms = clip_members(g, 1.0)
        sopt.step(g, update)
        for k in range(K):
            for i, p in enumerate(alone[k]):
                p.grad = per_member[i][k].clone()
            norm = torch.nn.utils.clip_grad_norm_(alone[k], 1.0)
            assert float(norms[k]) == pytest.approx(float(norm), rel=1e-12 if dtype == torch.float64 else 1e-6)
            if update[k]:
                opts[k].step()
    tol = {"rtol": 1e-13, "atol": 1e-15} if dtype == torch.float64 else {"rtol": 1e-6, "atol": 1e-7}
    for k in range(K):
        mine = stacked.member_state(k)
        for (n, p) in protos[k].named_parameters():
            torch.testing.assert_close(mine[n], p.detach(), **tol)
        # and the optimizer state converts to torch's: a member can go on alone
        sd = sopt.member_state(k)  # (made without an optimizer object: the same dict as torch's)
        ref = opts[k].state_dict()
        assert sd["param_groups"] == ref["param_groups"] and sd["state"].keys() == ref["state"].keys()
        assert float(sd["state"][0]["step"]) == float(ref["state"][0]["step"]) == (5 if k == 1 else 6)
        for i in range(len(alone[k])):
            torch.testing.assert_close(sd["state"][i]["square_avg"], ref["state"][i]["square_avg"], **tol)
    with pytest.raises(ConfigError, match="optim.momentum=0.5"):
        StackedRMSprop(stacked, lrs, OmegaConf.merge(optim, {"momentum": 0.5}))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weight_noise_is_each_members_own_draw(dtype):
    """Each member's noisy weights are its weights plus sigma times the draws it would make alone
    (one ``randn`` per weight matrix and peephole vector, in order; biases untouched), whether the
    members' generators are distinct, shared or repeated, and from one update to the next."""
    from rnnbench.model import SequenceModel
    from rnnbench.stack import StackedModel

    torch.manual_seed(0)
    K = 4
    protos = [SequenceModel("lstm", 5, 3).to(dtype) for _ in range(K)]
    stacked = StackedModel(protos[0], K, inits=[p.state_dict() for p in protos])
    for pattern in ([0, 1, 2, 3], [0, 0, 0, 0], [2, 0, 2, 1]):
        gens = [torch.Generator().manual_seed(7 + i) for i in range(3 + 1)]
        refs = [torch.Generator().manual_seed(7 + i) for i in range(3 + 1)]
        for _ in range(3):  # (the buffer the draws go to is reused: nothing may carry over)
            w = stacked.noisy_weights([gens[i] for i in pattern], 0.075)
            assert w.requires_grad
            drawn = {}
            for k, i in enumerate(pattern):
                if i not in drawn:  # a generator shared by members is drawn once, for all of them
                    drawn[i] = {n: torch.randn(p.shape, generator=refs[i], dtype=dtype)
                                for n, p in protos[k].named_parameters()
                                if any(p is q for q in protos[k].noisy_parameters())}
                row = stacked.member_state(k, w.detach())
                for n, p in protos[k].named_parameters():
                    want = torch.add(p.detach(), drawn[i][n], alpha=0.075) if n in drawn[i] else p.detach()
                    assert torch.equal(row[n], want), (pattern, k, n)
    assert torch.equal(stacked.noisy_weights([gens[0]] * K, 0.0), stacked.flat.detach())


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
        for key in ("train_nll", "valid_nll", "test_nll"):
            assert stacked[k][key] == pytest.approx(alone[k][key], rel=2e-5)
        close_rows(metrics(dirs[k]), metrics(tmp_path / f"alone{k}"), 2e-5, filled_ok=True)
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

    def flaky(self, inputs, targets, flat=None):
        out = real(self, inputs, targets, flat)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] == 5:  # epoch 2: member 1's loss turns NaN
                out = out.clone()
                out[:, 1] = float("nan")
        return out

    real_lg = StackedModel.loss_and_grad

    def flaky_lg(self, batch, flat):  # (the hand-written training step, where it applies)
        out = real_lg(self, batch, flat)
        if out is not None:
            calls["n"] += 1
            if calls["n"] == 5:
                out = (out[0].clone(), out[1])
                out[0][1] = float("nan")
        return out

    monkeypatch.setattr(StackedModel, "frame_nll", flaky)
    monkeypatch.setattr(StackedModel, "loss_and_grad", flaky_lg)
    stacked = train_stack(cfgs, [tmp_path / f"stack{k}" for k in range(3)])
    assert calls["n"] >= 5
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


def test_successive_halving_prunes_the_draws_behind_and_leaves_the_rest_unchanged(toy_cfg, tmp_path):
    from rnnbench.search import halving_decision, replay_halving

    lrs = [3e-2, 1e-2, 1e-3, 1e-4]
    plain = train_stack(member_cfgs(toy_cfg, lrs=lrs, max_epochs=4), [tmp_path / f"p{k}" for k in range(4)])
    halving = {"search": {"halving": {"epochs": [2], "keep": 0.5, "min_keep": 1, "margin": 0.0}}}
    cfgs = [OmegaConf.merge(c, halving) for c in member_cfgs(toy_cfg, lrs=lrs, max_epochs=4)]
    got = train_stack(cfgs, [tmp_path / f"h{k}" for k in range(4)])
    curves = {k: [float(r["valid_nll"]) for r in metrics(tmp_path / f"p{k}")] for k in range(4)}
    replay = replay_halving(curves, {"epochs": [2], "keep": 0.5, "min_keep": 1, "margin": 0.0})
    assert sorted(replay["stopped"]) == sorted(k for k, g in enumerate(got) if g["status"] == "pruned")
    assert len(replay["stopped"]) == 2
    for k, g in enumerate(got):
        if g["status"] == "pruned":
            assert g["epochs"] == 2 and "successive halving at epoch 2" in g["stop_reason"]
            assert g["test_nll"] is not None  # its best epoch is scored like any other run's
            on_disk = json.loads((tmp_path / f"h{k}" / "summary.json").read_text())
            assert on_disk["status"] == "pruned"
        else:  # the survivors train exactly as without halving
            assert g["epochs"] == plain[k]["epochs"] == 4
            assert g["valid_nll"] == pytest.approx(plain[k]["valid_nll"], rel=1e-6)
    # a pruned run stays pruned when the sweep is run again
    again = train_stack(cfgs, [tmp_path / f"h{k}" for k in range(4)])
    assert [a["status"] for a in again] == [g["status"] for g in got]
    # the rule itself: the best half goes on; within the margin nobody is pruned
    assert halving_decision({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}, {"keep": 0.5, "min_keep": 1, "margin": 0}) \
        == {"c": (1.0, "a"), "d": (1.0, "a")}
    assert halving_decision({"a": 1.0, "b": 1.01}, {"keep": 0.5, "min_keep": 1, "margin": 0.05}) == {}


def test_seeds_sharing_a_data_order_stack_and_equal_runs_alone(toy_cfg, tmp_path):
    """Seeds with one train.order_seed train as one stack, each with its own initial weights and
    noise; seeds with their own data order are stacked apart."""
    from rnnbench.stack import group_for_stacks

    cfgs = [OmegaConf.merge(toy_cfg, {"seed": s, "train": {"order_seed": 0, "max_epochs": 2}}) for s in (0, 1, 2)]
    assert group_for_stacks(cfgs) == [[0, 1, 2]]
    own = [OmegaConf.merge(toy_cfg, {"seed": s}) for s in (0, 1)]
    assert group_for_stacks(own) == [[0], [1]]
    alone = [train(c, tmp_path / f"a{k}") for k, c in enumerate(cfgs)]
    stacked = train_stack(cfgs, [tmp_path / f"s{k}" for k in range(3)])
    assert stacked[0]["stacked_members"] == 3
    assert len({a["valid_nll"] for a in alone}) == 3  # the seeds differ
    for a, s in zip(alone, stacked):
        for key in ("train_nll", "valid_nll", "test_nll"):
            assert s[key] == pytest.approx(a[key], rel=2e-5)
    # seed 0 with order_seed 0 is the run of seed 0 (null order seed = the seed)
    plain = train(OmegaConf.merge(toy_cfg, {"train": {"max_epochs": 2}}), tmp_path / "plain")
    assert plain["valid_nll"] == pytest.approx(alone[0]["valid_nll"], rel=1e-12)


@pytest.mark.parametrize("rows", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("inputs", ["dense", "sparse"])
@pytest.mark.parametrize("cell", ["tanh", "gru", "lstm"])
def test_hand_written_training_step_equals_autograd(cell, inputs, dtype, rows, simd):
    """StackedModel.loss_and_grad (the fused kernels, no autograd graph) gives the summed NLL of the
    real frames and the gradient that autograd gives on frame_nll, padded frames included."""
    from rnnbench.data.batching import Batch
    from rnnbench.model import SequenceModel
    from rnnbench.stack import StackedModel

    if not fused.load():
        pytest.skip("fused extension unavailable")
    K, T, B, D = 3, 9, rows, 20  # (one row per member: the weight gradients' strided products)
    torch.manual_seed(0)
    models = [SequenceModel(cell, D, 5).to(dtype) for _ in range(K)]
    stack = StackedModel(models[0], K, inits=[m.state_dict() for m in models])
    x = torch.rand(T, B, D, dtype=dtype)
    if inputs == "sparse":
        x = (x < 0.1).to(dtype)
    y = (torch.rand(T, B, D) < 0.3).to(dtype)
    mask = torch.ones(T, B, dtype=torch.bool)
    mask[6:, B - 1] = False  # the last sequence is 6 frames long
    batch = Batch(x, y, mask, torch.tensor([T, 6][2 - B:]), torch.arange(B))
    w = stack.flat.detach().clone().requires_grad_()
    want_loss = stack.frame_nll(x, y, w).permute(1, 0, 2)[:, mask].sum(1)
    (want_grad,) = torch.autograd.grad((want_loss / batch.frames).sum(), w)
    loss, grad = stack.loss_and_grad(batch, w.detach())
    tol = {"rtol": 1e-12, "atol": 1e-14} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-7}
    torch.testing.assert_close(loss, want_loss.detach(), **tol)
    torch.testing.assert_close(grad, want_grad, **tol)


def _mixture_case(cell, dtype, rows, components, K=3, T=9):
    """K members with a mixture head (different weights each; member 1's raw scales of component
    0-2 above softplus' threshold, 20), a padded batch of ``rows`` sequences, noisy weights."""
    from rnnbench.data.batching import Batch
    from rnnbench.model import SequenceModel
    from rnnbench.stack import StackedModel

    torch.manual_seed(0)
    C, D = components, 10
    models = [SequenceModel(cell, 20, 5, D, head="gmm", head_kwargs={"components": C}).to(dtype) for _ in range(K)]
    with torch.no_grad():
        models[1].head.linear.bias[C + C * D:C + C * D + 3 * D] = 25.0
    stack = StackedModel(models[0], K, inits=[m.state_dict() for m in models])
    x = torch.randn(T, rows, 20, dtype=dtype)
    y = torch.randn(T, rows, D, dtype=dtype) * 2
    mask = torch.ones(T, rows, dtype=torch.bool)
    mask[6:, rows - 1] = False  # the last sequence is 6 frames long
    batch = Batch(x, y, mask, torch.tensor([T, 6][2 - rows:]), torch.arange(rows))
    return stack, batch


def _per_member_autograd(stack, batch, w):
    """Each member alone through the reference cell and GaussianMixtureHead.nll, with autograd."""
    from torch.func import functional_call

    from rnnbench.stack import _MemberNLL

    member, v = _MemberNLL(stack.proto), stack.views(w)
    loss = torch.stack([functional_call(member, {f"model.{n}": t[k] for n, t in v.items()},
                                        (batch.inputs, batch.targets))[batch.mask].sum() for k in range(w.shape[0])])
    (grad,) = torch.autograd.grad((loss / batch.frames).sum(), w)
    return loss.detach(), grad


@pytest.mark.parametrize("components", [20, 3])
@pytest.mark.parametrize("rows", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cell", ["tanh", "gru", "lstm"])
def test_hand_written_mixture_step_equals_autograd(cell, dtype, rows, components, simd):
    """The mixture head's closed-form gradient (responsibilities, no autograd graph) in
    StackedModel.loss_and_grad gives the summed NLL of the real frames and the gradient that
    autograd gives on each member alone (reference cell, GaussianMixtureHead.nll), padded frames
    included; the stack's evaluation (frame_nll, the same forward) gives the same NLL."""
    if not fused.load():
        pytest.skip("fused extension unavailable")
    stack, batch = _mixture_case(cell, dtype, rows, components)
    w = stack.noisy_weights([torch.Generator().manual_seed(k) for k in range(3)], 0.075)
    want_loss, want_grad = _per_member_autograd(stack, batch, w)
    loss, grad = stack.loss_and_grad(batch, w.detach())
    tol = {"rtol": 1e-12, "atol": 1e-13} if dtype == torch.float64 else {"rtol": 2e-5, "atol": 2e-5}
    torch.testing.assert_close(loss, want_loss, **tol)
    torch.testing.assert_close(grad, want_grad, rtol=tol["rtol"], atol=tol["atol"] * want_grad.abs().max().item())
    with torch.no_grad():
        nll = stack.frame_nll(batch.inputs, batch.targets, w.detach())
    torch.testing.assert_close(nll.permute(1, 0, 2)[:, batch.mask].sum(1), want_loss, **tol)


def test_mixture_evaluation_in_chunks_equals_one_pass():
    from rnnbench import mixture

    g = torch.Generator().manual_seed(0)
    out, y = torch.randn(3, 50, 3 + 2 * 3 * 10, generator=g, dtype=torch.float64), torch.randn(50, 10, generator=g)
    with torch.no_grad():
        whole = mixture.stacked_nll(out, y, 3, 1e-3)
        parts = mixture.stacked_nll(out, y, 3, 1e-3, chunk_rows=21)  # 7 frames of 3 members at a time
    torch.testing.assert_close(parts, whole, rtol=0, atol=0)


def test_a_non_finite_mixture_target_takes_the_general_path():
    """A NaN target: the hand-written step steps aside and autograd gives what it always gave (the
    trainer then stops the run as diverged), never a silently different number."""
    from rnnbench.stack import training_step

    stack, batch = _mixture_case("gru", torch.float64, 2, 20)
    batch.targets[2, 0, 3] = float("nan")
    assert stack.loss_and_grad(batch, stack.flat.detach()) is None
    loss, grad, norm = training_step(stack, batch, [torch.Generator().manual_seed(0)] * 3, 0.0, 1.0)
    assert not torch.isfinite(loss).any() and not torch.isfinite(norm).any()
