"""The fused CPU recurrences against the reference Python loops: same values, same gradients."""

import pytest
import torch
from omegaconf import OmegaConf

from conftest import train_both_ways
from rnnbench import fused
from rnnbench.cells import make_cell
from rnnbench.train import train

FUSED_CELLS = ["tanh", "gru", "lstm"]


@pytest.fixture(scope="module", autouse=True)
def _built():
    if not fused.load():
        pytest.skip(f"fused extension could not be built here: {fused._state['error']}")


def run(cell, x, impl, state=None):
    fused.set_impl(impl)
    try:
        for p in cell.parameters():
            p.grad = None
        out, last = cell(x, state)
        h_last = last[0] if isinstance(last, tuple) else last
        loss = (out * torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)).sum() + (h_last ** 2).sum()
        loss.backward()
        return out.detach(), [p.grad.clone() for p in cell.parameters()], last
    finally:
        fused.set_impl(None)


@pytest.mark.parametrize("name", FUSED_CELLS)
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_fused_equals_reference(name, dtype, tol, simd):
    torch.manual_seed(0)
    cell = make_cell(name, 7, 9).to(dtype)
    x = torch.randn(23, 5, 7, dtype=dtype)
    out_f, grads_f, _ = run(cell, x, "fused")
    out_r, grads_r, _ = run(cell, x, "python")
    torch.testing.assert_close(out_f, out_r, rtol=tol, atol=tol)
    for gf, gr in zip(grads_f, grads_r):
        torch.testing.assert_close(gf, gr, rtol=tol * 10, atol=tol * 10)


@pytest.mark.parametrize("rows", [1, 2, 7, 9])
@pytest.mark.parametrize("name", FUSED_CELLS)
def test_stacked_float32_kernels_equal_float64(name, rows, simd):
    """The float32 kernels (at each SIMD level this CPU has: column blocks, partial blocks, masked
    tails) of 3 stacked members, one row each or a few (member by member; 2 and 7 rows take the
    shared-load tiles of 2, 4 and 3 rows) or 9 (batched products), give the float64 kernels' values
    and input gradients to float32 rounding."""
    torch.manual_seed(2)
    K, T, H = 3, 11, 37
    G = {"tanh": 1, "gru": 3, "lstm": 4}[name]
    xw = torch.randn(T, K * rows, G * H, dtype=torch.float64) * 0.5
    h0 = torch.randn(K * rows, H, dtype=torch.float64) * 0.5
    U = torch.randn(K, H, G * H, dtype=torch.float64) * 0.15
    extra = (torch.randn(K * rows, H, dtype=torch.float64) * 0.5, torch.randn(K, 3, H, dtype=torch.float64) * 0.3)

    def outputs(dtype):
        args = [t.to(dtype).requires_grad_() for t in (xw, h0, U)]
        if name == "lstm":
            c0, P = (t.to(dtype).requires_grad_() for t in extra)
            hs, cs = fused.lstm_recurrence(args[0], args[1], c0, args[2], P)
            loss = (hs * hs.detach().sign()).sum() + cs.sum()
            args += [c0, P]
        else:
            hs = getattr(fused, f"{name}_recurrence")(*args)
            loss = (hs * hs.detach().sign()).sum()
        loss.backward()
        return [hs.detach().double()] + [a.grad.double() for a in args]

    for got, want in zip(outputs(torch.float32), outputs(torch.float64)):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lstm_forward_member_by_member_equals_each_member_alone(dtype, simd):
    """Members whose weights together exceed L2 (here 3 x 160 units, > 1 MB) run the LSTM forward
    member by member; each member alone (under 1 MB) runs step by step: the same numbers (to
    rounding: member by member the products' sums start from the input pre-activations)."""
    torch.manual_seed(3)
    K, T, H = 3, 5, 160
    xw = torch.randn(T, K, 4 * H, dtype=dtype) * 0.5
    h0, c0 = torch.randn(K, H, dtype=dtype) * 0.5, torch.randn(K, H, dtype=dtype) * 0.5
    U = torch.randn(K, H, 4 * H, dtype=dtype) * 0.05
    P = torch.randn(K, 3, H, dtype=dtype) * 0.3
    assert K * U[0].numel() * U.element_size() > 2 ** 20 >= U[0].numel() * U.element_size()
    together = torch.ops.rnnbench.lstm_forward(xw, h0, c0, U, P)
    for k in range(K):
        alone = torch.ops.rnnbench.lstm_forward(xw[:, k:k + 1].contiguous(), h0[k:k + 1], c0[k:k + 1],
                                                U[k:k + 1].contiguous(), P[k:k + 1].contiguous())
        tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-13}
        for a, b in zip(together, alone):
            torch.testing.assert_close(a[:, k:k + 1], b, **tol)


@pytest.mark.parametrize("name", FUSED_CELLS)
def test_fused_gradcheck_with_initial_state(name):
    torch.manual_seed(1)
    cell = make_cell(name, 3, 4).double()
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    state = (h0, torch.randn(2, 4, dtype=torch.float64, requires_grad=True)) if name == "lstm" else h0
    fused.set_impl("fused")
    try:
        def f(inp, *params):
            out, last = cell(inp, state)
            c = last[1].sum() if isinstance(last, tuple) else 0.0
            return out.sum() + c
        assert torch.autograd.gradcheck(f, (x, *cell.parameters()))
        leaves = [h0] + ([state[1]] if name == "lstm" else [])
        assert torch.autograd.gradcheck(lambda *s: cell(x.detach(), tuple(s) if name == "lstm" else s[0])[0].sum(),
                                        tuple(leaves))
    finally:
        fused.set_impl(None)


def test_kernel_levels_are_checked():
    """An unknown level is named; a level this CPU lacks is refused; the setting comes back."""
    from rnnbench.errors import ConfigError

    with pytest.raises(ConfigError, match="kernels='sse9'"):
        fused.set_kernels("sse9")
    levels = fused.available_kernels()
    assert "generic" in levels
    for level in ("avx2", "avx512"):
        if level not in levels:
            with pytest.raises(RuntimeError, match="cannot run"):
                fused.set_kernels(level)
    before = fused.set_kernels("generic")
    try:
        assert fused.kernels() == "generic"
    finally:
        assert fused.set_kernels(before) == "generic"
    assert fused.kernels() == {"avx512": "avx512", "avx2": "avx2+fma", "generic": "generic"}[levels[0]]  # (best first)


def test_kernels_from_the_environment():
    """``$RNNBENCH_KERNELS`` chooses the level when the extension loads; a bad value is named."""
    import os
    import subprocess
    import sys

    code = "from rnnbench import fused; fused.load(); print(fused.kernels())"
    env = {**os.environ, "RNNBENCH_KERNELS": "generic"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "generic", out.stderr
    env["RNNBENCH_KERNELS"] = "sse9"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "RNNBENCH_KERNELS='sse9' is invalid" in out.stderr


def test_bad_impl_is_named(monkeypatch):
    from rnnbench.errors import ConfigError

    monkeypatch.setenv("RNNBENCH_IMPL", "cuda-magic")
    with pytest.raises(ConfigError, match="RNNBENCH_IMPL='cuda-magic'"):
        fused.get_impl()


@pytest.mark.parametrize("cell", FUSED_CELLS)
def test_training_is_the_same_with_either_implementation(toy_cfg, tmp_path, cell, simd):
    """Weight noise, clipping and RMSProp included: two epochs give the same numbers (the fused
    kernels at each SIMD level this CPU has against the reference loop)."""
    cfg = OmegaConf.merge(toy_cfg, {"cell": {"name": cell}, "train": {"max_epochs": 2}})
    results = train_both_ways(cfg, tmp_path)
    for key in ("train_nll", "valid_nll", "test_nll"):
        assert results["fused"][key] == pytest.approx(results["python"][key], rel=1e-4)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_fused_bernoulli_nll_equals_the_head(dtype, tol, simd):
    """The one-pass Bernoulli NLL and its gradient against BernoulliHead's torch operations,
    logits from -80 to 80 (softplus' threshold, exp's range) included."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 50, 88, generator=g, dtype=dtype) * 6
    logits[0, 0, :8] = torch.tensor([-80.0, -50.0, -20.0, -1e-4, 0.0, 1e-4, 49.9, 80.0], dtype=dtype)
    y = (torch.rand(50, 88, generator=g) < 0.1).to(dtype)
    a = logits.clone().requires_grad_()
    nll = fused.bernoulli_nll(a, y)
    b = logits.clone().requires_grad_()
    ref = F.softplus(b, threshold=50.0).sum(-1) - (y * b).sum(-1)
    torch.testing.assert_close(nll, ref, rtol=tol, atol=tol * 10)
    w = torch.rand(3, 50, generator=g, dtype=dtype)
    (nll * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=tol, atol=tol)
    with torch.no_grad():  # evaluation: no gradient kept
        torch.testing.assert_close(fused.bernoulli_nll(logits, y), ref.detach(), rtol=tol, atol=tol * 10)


def test_fused_kernels_keep_nan(simd):
    """A NaN pre-activation stays NaN through the vectorized sigmoid/tanh (divergence must show)."""
    for name in FUSED_CELLS:
        cell = make_cell(name, 3, 9)
        x = torch.randn(4, 2, 3)
        x[1, 0, 0] = float("nan")
        fused.set_impl("fused")
        try:
            out, _ = cell(x)
        finally:
            fused.set_impl(None)
        assert torch.isnan(out[1:, 0]).all(), name
    nll = fused.bernoulli_nll(torch.full((1, 2, 9), float("nan")), torch.zeros(2, 9))
    assert torch.isnan(nll).all()


def test_the_build_lives_in_the_environment_and_is_keyed(monkeypatch, tmp_path):
    """One build per environment: the build folder is inside the environment (sys.prefix) and named
    by a hash of the sources (every file of csrc/, the shared header included), the flags and torch,
    so two environments or checkouts never share one, and a build of other sources is never reused."""
    import shutil
    import sys

    monkeypatch.delenv("RNNBENCH_BUILD_DIR", raising=False)
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "envA"))
    a = fused.build_dir()
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "envB"))
    b = fused.build_dir()
    assert a.parent == tmp_path / "envA" / "var" / "rnnbench" and b.parent == tmp_path / "envB" / "var" / "rnnbench"
    assert a.name == b.name  # same sources, flags and torch: same key; other sources: another folder
    other = tmp_path / "csrc"
    shutil.copytree(fused.CSRC, other)
    monkeypatch.setattr(fused, "CSRC", other)
    assert fused.build_dir().name == a.name
    for name in fused.HEADERS + fused.SOURCES:
        text = (other / name).read_text()
        (other / name).write_text(text + "// another version of the kernels\n")
        assert fused.build_dir().name != a.name, name
        (other / name).write_text(text)
    monkeypatch.setenv("RNNBENCH_BUILD_DIR", str(tmp_path / "mine"))
    assert fused.build_dir().parent == tmp_path / "mine"


def test_every_file_of_the_extension_is_built_keyed_and_shipped():
    """csrc/ holds the extension's files and nothing else: each is compiled (a source) or shared (a
    header), each opens with a comment saying what it holds, and the package data ships them all."""
    tomllib = pytest.importorskip("tomllib")
    import fnmatch

    files = sorted(p.name for p in fused.CSRC.iterdir() if p.is_file())
    assert files == sorted(fused.HEADERS + fused.SOURCES)
    for name in files:
        assert (fused.CSRC / name).read_text().startswith("// "), name
    pyproject = tomllib.loads((fused.CSRC.parents[2] / "pyproject.toml").read_text())
    shipped = pyproject["tool"]["setuptools"]["package-data"]["rnnbench"]
    for name in files:
        assert any(fnmatch.fnmatch(f"csrc/{name}", pattern) for pattern in shipped), name


def test_a_first_build_is_not_on_the_training_clock(toy_cfg, tmp_path, monkeypatch):
    """The extension is built (here: a 2 s stand-in) before training starts, so epoch 1's
    wall_seconds counts training only."""
    import csv
    import time

    real = fused.load
    calls = []

    def slow_build():  # the first call builds (2 s); later ones find it built
        if not calls:
            time.sleep(2.0)
        calls.append(1)
        return real()

    monkeypatch.setattr(fused, "load", slow_build)
    train(OmegaConf.merge(toy_cfg, {"train": {"max_epochs": 1}}), tmp_path / "run")
    with open(tmp_path / "run" / "metrics.csv") as f:
        first = next(csv.DictReader(f))
    assert float(first["wall_seconds"]) < 1.5


@pytest.mark.parametrize("components", [20, 3])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_fused_mixture_nll_equals_the_head(dtype, tol, components, simd):
    """The one-pass mixture NLL and its closed-form gradient against the torch operations of
    GaussianMixtureHead (float64 reference; autograd on it): raw scales from -90 to 25 (softplus'
    threshold, 20, on both sides), targets far in the tails, padded frames (weight 0) included;
    without a weight (evaluation) the NLL alone."""
    from rnnbench import mixture

    C, D, K, M = components, 10, 3, 40
    g = torch.Generator().manual_seed(0)
    out = torch.randn(K, M, C + 2 * C * D, generator=g, dtype=torch.float64) * 3
    out[0, 0, C + C * D:C + C * D + 8] = torch.tensor([25.0, 20.5, 20.0, 19.9, 0.0, -20.0, -30.0, -90.0])
    out = out.to(dtype)  # (the reference sees the same rounded numbers)
    y = (torch.randn(M, D, generator=g, dtype=torch.float64) * 2).to(dtype)
    y[1] = 40.0
    w = torch.rand(M, generator=g, dtype=torch.float64).to(dtype)
    w[-3:] = 0
    a = out.double().clone().requires_grad_()
    ref = mixture.stacked_nll(a, y.double(), C, 1e-3)
    (ref * w.double()).sum().backward()
    nll, grad = fused.mixture_nll(out, y, C, 1e-3, w)
    assert nll.dtype == grad.dtype == dtype
    torch.testing.assert_close(nll.double(), ref.detach(), rtol=tol, atol=tol * 10)
    torch.testing.assert_close(grad.double(), a.grad, rtol=tol, atol=tol * a.grad.abs().max().item())
    torch.testing.assert_close(mixture.stacked_nll_and_grad(out.double(), y.double(), C, 1e-3, w.double())[1],
                               a.grad, rtol=1e-12, atol=1e-14)  # (the torch-operations twin)
    nll_only, none = fused.mixture_nll(out, y, C, 1e-3)
    assert none is None
    torch.testing.assert_close(nll_only, nll, rtol=0, atol=0)
