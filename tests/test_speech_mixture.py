"""The speech output head: a mixture of diagonal Gaussians, checked against direct densities."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from rnnbench.mixture import GaussianMixtureHead
from rnnbench.model import HEADS, SequenceModel


def reference_nll(head, h, y):
    """-log p(y) with torch.distributions, from the head's own parameters."""
    log_w, mean, scale = head(h)
    mix = MixtureSameFamily(Categorical(logits=log_w), Independent(Normal(mean, scale), 1))
    return -mix.log_prob(y)


def numpy_nll(head, h, y):
    """The same density written out in float64 numpy."""
    log_w, mean, scale = (t.detach().double().numpy() for t in head(h))
    y = y.double().numpy()[..., None, :]
    log_comp = (-0.5 * ((y - mean) / scale) ** 2 - np.log(scale) - 0.5 * math.log(2 * math.pi)).sum(-1)
    a = log_w + log_comp
    m = a.max(-1, keepdims=True)
    return -(m[..., 0] + np.log(np.exp(a - m).sum(-1)))


@pytest.fixture
def head():
    torch.manual_seed(0)
    return GaussianMixtureHead(16, 10, components=20)


def test_registered_and_shapes(head):
    assert HEADS["gmm"] is GaussianMixtureHead
    h = torch.randn(7, 3, 16)
    log_w, mean, scale = head(h)
    assert log_w.shape == (7, 3, 20) and mean.shape == scale.shape == (7, 3, 20, 10)
    torch.testing.assert_close(log_w.exp().sum(-1), torch.ones(7, 3))
    assert (scale >= 1e-3).all()
    assert sum(p.numel() for p in head.parameters()) == 16 * 420 + 420


def test_nll_matches_direct_density(head):
    h, y = torch.randn(7, 3, 16), torch.randn(7, 3, 10)
    nll = head.nll(h, y)
    assert nll.shape == (7, 3)
    torch.testing.assert_close(nll, reference_nll(head, h, y), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(nll.detach().double().numpy(), numpy_nll(head, h, y), rtol=1e-5, atol=1e-4)


def test_single_component_is_a_diagonal_gaussian():
    torch.manual_seed(1)
    head = GaussianMixtureHead(4, 10, components=1)
    h, y = torch.randn(5, 4), torch.randn(5, 10)
    _, mean, scale = head(h)
    expected = -Normal(mean[:, 0], scale[:, 0]).log_prob(y).sum(-1)
    torch.testing.assert_close(head.nll(h, y), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("h_scale,y_scale", [(1e4, 1.0), (1.0, 1e4), (1e4, 1e4), (-1e4, 1e3), (0.0, 0.0)])
def test_extreme_inputs_stay_finite(head, h_scale, y_scale):
    torch.manual_seed(2)
    h = (torch.randn(6, 2, 16) * h_scale).requires_grad_()
    y = torch.randn(6, 2, 10) * y_scale
    nll = head.nll(h, y)
    assert torch.isfinite(nll).all()
    nll.sum().backward()
    assert torch.isfinite(h.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters())
    # the floor on the scales bounds the density from above
    assert (nll >= 10 * math.log(1e-3 * math.sqrt(2 * math.pi)) - 1e-3).all()


def test_collapsed_component_is_bounded_by_the_floor():
    head = GaussianMixtureHead(2, 10, components=3, min_scale=1e-3)
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.zero_()
        head.linear.bias[3 + 30:] = -1e4  # raw scales -> softplus ~ 0 -> the floor
    nll = head.nll(torch.zeros(1, 2), torch.zeros(1, 10))
    assert float(nll.detach()) == pytest.approx(10 * math.log(1e-3 * math.sqrt(2 * math.pi)), abs=1e-3)


def test_chunked_evaluation_equals_the_plain_computation(head):
    h, y = torch.randn(50, 3, 16), torch.randn(50, 3, 10)
    full = head.nll(h, y)
    head.chunk_frames = 7
    with torch.no_grad():
        chunked = head.nll(h, y)
    torch.testing.assert_close(chunked, full.detach(), rtol=0, atol=1e-5)


def test_sampling_is_seeded_and_follows_the_mixture():
    head = GaussianMixtureHead(3, 10, components=2)
    with torch.no_grad():
        head.linear.weight.zero_()
        b = head.linear.bias
        b.zero_()
        b[0], b[1] = 5.0, -5.0  # component 0 has weight ~0.99995
        b[2:12] = torch.arange(10.0)  # component 0 means 0..9
        b[22:32] = -20.0  # component 0 scales ~ floor
    h = torch.zeros(4000, 3)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    s1, s2 = head.sample(h, g1), head.sample(h, g2)
    assert s1.shape == (4000, 10) and torch.equal(s1, s2)
    near = (s1 - torch.arange(10.0)).abs().max(-1).values < 0.01
    assert near.float().mean() > 0.99
    # temperature scales the spread of a component
    head2 = GaussianMixtureHead(3, 2, components=1)
    with torch.no_grad():
        head2.linear.weight.zero_()
        head2.linear.bias.zero_()  # mean 0, scale 1e-3 + softplus(0) = 0.694
    g = torch.Generator().manual_seed(1)
    std1 = head2.sample(torch.zeros(20000, 3), g).std()
    std_half = head2.sample(torch.zeros(20000, 3), g, temperature=0.5).std()
    assert float(std1) == pytest.approx(1e-3 + math.log(2), rel=0.03)
    assert float(std_half) == pytest.approx(0.5 * float(std1), rel=0.05)
    with pytest.raises(ValueError, match="temperature"):
        head2.sample(torch.zeros(1, 3), g, temperature=0.0)


def test_sequence_model_with_gmm_head():
    model = SequenceModel("gru", 20, 8, 10, head="gmm", head_kwargs={"components": 20})
    x, y = torch.randn(12, 2, 20), torch.randn(12, 2, 10)
    nll = model.frame_nll(x, y)
    assert nll.shape == (12, 2) and torch.isfinite(nll).all()
    assert model.param_counts()["total"] == model.param_counts()["recurrent"] + 8 * 420 + 420
    with pytest.raises(ValueError, match="components"):
        GaussianMixtureHead(8, 10, components=0)
