"""Each cell against its equations written out by hand, step by step, on tiny tensors."""

import pytest
import torch
from torch import nn

from rnnbench.cells import CELLS, make_cell, recurrent_param_count
from rnnbench.errors import ConfigError

T, B, D, H = 4, 3, 5, 6


def sig(x):
    return 1.0 / (1.0 + torch.exp(-x))


def blocks(cell, n):
    """Split the packed weights into per-gate (W, U, b) triples."""
    W, U, b = cell.weight_ih.detach(), cell.weight_hh.detach(), cell.bias.detach()
    return [(W[:, k * H:(k + 1) * H], U[:, k * H:(k + 1) * H], b[k * H:(k + 1) * H]) for k in range(n)]


@pytest.fixture
def x():
    return torch.randn(T, B, D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def make(name):
    torch.manual_seed(0)
    return make_cell(name, D, H).double()


def test_tanh_by_hand(x):
    cell = make("tanh")
    (W, U, b), = blocks(cell, 1)
    h = torch.zeros(B, H, dtype=torch.float64)
    expected = []
    for t in range(T):
        h = torch.tanh(x[t] @ W + h @ U + b)
        expected.append(h)
    out, last = cell(x)
    torch.testing.assert_close(out, torch.stack(expected))
    torch.testing.assert_close(last, h)


def test_gru_reset_before_product_by_hand(x):
    cell = make("gru")
    (Wz, Uz, bz), (Wr, Ur, br), (Wh, Uh, bh) = blocks(cell, 3)
    h = torch.zeros(B, H, dtype=torch.float64)
    expected = []
    for t in range(T):
        z = sig(x[t] @ Wz + h @ Uz + bz)
        r = sig(x[t] @ Wr + h @ Ur + br)
        h_tilde = torch.tanh(x[t] @ Wh + (r * h) @ Uh + bh)
        h = (1 - z) * h + z * h_tilde
        expected.append(h)
    out, _ = cell(x)
    torch.testing.assert_close(out, torch.stack(expected))


def test_gru_reset_after_product_by_hand(x):
    cell = make("gru_after")
    (Wz, Uz, bz), (Wr, Ur, br), (Wh, Uh, bh) = blocks(cell, 3)
    bhn = cell.bias_hn.detach()
    h = torch.zeros(B, H, dtype=torch.float64)
    expected = []
    for t in range(T):
        z = sig(x[t] @ Wz + h @ Uz + bz)
        r = sig(x[t] @ Wr + h @ Ur + br)
        h_tilde = torch.tanh(x[t] @ Wh + bh + r * (h @ Uh + bhn))
        h = (1 - z) * h + z * h_tilde
        expected.append(h)
    out, _ = cell(x)
    torch.testing.assert_close(out, torch.stack(expected))


def test_peephole_lstm_by_hand(x):
    cell = make("lstm")
    (Wi, Ui, bi), (Wf, Uf, bf), (Wc, Uc, bc), (Wo, Uo, bo) = blocks(cell, 4)
    pi, pf, po = cell.weight_peep.detach()
    h = torch.zeros(B, H, dtype=torch.float64)
    c = torch.zeros(B, H, dtype=torch.float64)
    expected = []
    for t in range(T):
        i = sig(x[t] @ Wi + h @ Ui + pi * c + bi)        # peephole on the previous cell state
        f = sig(x[t] @ Wf + h @ Uf + pf * c + bf)
        c = f * c + i * torch.tanh(x[t] @ Wc + h @ Uc + bc)
        o = sig(x[t] @ Wo + h @ Uo + po * c + bo)        # peephole on the current cell state
        h = o * torch.tanh(c)
        expected.append(h)
    out, (h_last, c_last) = cell(x)
    torch.testing.assert_close(out, torch.stack(expected))
    torch.testing.assert_close(c_last, c)


def test_peepholes_matter(x):
    cell = make("lstm")
    out1, _ = cell(x)
    with torch.no_grad():
        cell.weight_peep.zero_()
    out2, _ = cell(x)
    assert not torch.allclose(out1, out2)


def test_the_two_grus_differ(x):
    a, b = make("gru"), make("gru_after")
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias"):
            getattr(b, name).copy_(getattr(a, name))
        b.bias_hn.zero_()
    assert not torch.allclose(a(x)[0], b(x)[0])


def test_gru_after_equals_torch_gru(x):
    """nn.GRU packs gates as (r, z, n) in rows; ours as (z, r, h~) in columns.

    nn.GRU keeps the old state with weight z (h = (1 - z) n + z h); the paper's (and our) z
    weighs the new candidate, so its z equals our 1 - z = s(-a): its z-gate parameters are ours negated.
    """
    ours = make("gru_after")
    ref = nn.GRU(D, H).double()
    W, U, b = ours.weight_ih.detach(), ours.weight_hh.detach(), ours.bias.detach()
    perm = lambda m: torch.cat([m[..., H:2 * H], -m[..., :H], m[..., 2 * H:]], dim=-1)  # (z,r,n) -> (r,-z,n)
    with torch.no_grad():
        ref.weight_ih_l0.copy_(perm(W).T)
        ref.weight_hh_l0.copy_(perm(U).T)
        ref.bias_ih_l0.copy_(perm(b))
        ref.bias_hh_l0.copy_(torch.cat([torch.zeros(2 * H, dtype=torch.float64), ours.bias_hn.detach()]))
    torch.testing.assert_close(ours(x)[0], ref(x)[0])


def test_tanh_equals_torch_rnn(x):
    ours = make("tanh")
    ref = nn.RNN(D, H, nonlinearity="tanh").double()
    with torch.no_grad():
        ref.weight_ih_l0.copy_(ours.weight_ih.T)
        ref.weight_hh_l0.copy_(ours.weight_hh.T)
        ref.bias_ih_l0.copy_(ours.bias)
        ref.bias_hh_l0.zero_()
    torch.testing.assert_close(ours(x)[0], ref(x)[0])


@pytest.mark.parametrize("name", sorted(CELLS))
def test_gradients_are_exact(name):
    cell = make(name)
    x = torch.randn(3, 2, D, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp, *ps: cell(inp)[0].sum(), (x, *cell.parameters()))


@pytest.mark.parametrize("name", sorted(CELLS))
def test_state_carries_over(name, x):
    """Running in two halves with the state handed over equals one run."""
    cell = make(name)
    full, _ = cell(x)
    a, s = cell(x[:2])
    b, _ = cell(x[2:], s)
    torch.testing.assert_close(torch.cat([a, b]), full)


def test_paper_table1_parameter_counts():
    # With the ~100-wide input the paper's music data had, our counts are the paper's Table 1.
    assert recurrent_param_count("tanh", 100, 100) == 20_100
    assert recurrent_param_count("gru", 100, 46) == 20_286      # ~20.2k
    assert recurrent_param_count("lstm", 100, 36) == 19_836     # ~19.8k
    # Speech: 20 samples in per step.
    assert recurrent_param_count("tanh", 20, 400) == 168_400
    assert recurrent_param_count("gru", 20, 227) == 168_888     # ~168.9k
    assert recurrent_param_count("lstm", 20, 195) == 169_065    # ~169.1k
    # With our 88 keys: 6-9% fewer.
    assert recurrent_param_count("tanh", 88, 100) == 18_900
    assert recurrent_param_count("gru", 88, 46) == 18_630
    assert recurrent_param_count("lstm", 88, 36) == 18_108
    assert recurrent_param_count("gru_after", 88, 46) == 18_630 + 46


def test_bad_cell_config():
    with pytest.raises(ConfigError, match="unknown cell 'rnn'"):
        make_cell("rnn", 4, 4)
    with pytest.raises(ConfigError, match="units and input size must be >= 1"):
        make_cell("gru", 4, 0)
