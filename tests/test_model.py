"""Loss, masking and batching: padding never changes a number; every frame weighs the same."""

import math

import numpy as np
import pytest
import torch

from conftest import make_rolls
from rnnbench.data import batch_indices, iterate, make_batch, padding_waste
from rnnbench.model import SequenceModel
from rnnbench.stack import evaluate


@pytest.fixture
def seqs():
    return make_rolls(7, np.random.default_rng(3), min_len=3, max_len=20)


@pytest.mark.parametrize("cell", ["tanh", "gru", "lstm", "gru_after"])
def test_padding_never_changes_the_nll(cell, seqs):
    torch.manual_seed(0)
    model = SequenceModel(cell, 88, 8).double()
    batch = make_batch(seqs)
    with torch.no_grad():
        padded = model.frame_nll(batch.inputs.double(), batch.targets.double())
        for b, s in enumerate(seqs):
            alone = make_batch([s])
            nll = model.frame_nll(alone.inputs.double(), alone.targets.double())
            torch.testing.assert_close(padded[: len(s), b], nll[:, 0])


def test_inputs_are_the_previous_frame(seqs):
    batch = make_batch(seqs[:2])
    s = torch.from_numpy(seqs[0]).float()
    assert batch.inputs[0].abs().sum() == 0  # start frame
    torch.testing.assert_close(batch.inputs[1 : len(s), 0], s[:-1])
    torch.testing.assert_close(batch.targets[: len(s), 0], s)
    assert batch.mask.sum() == sum(len(x) for x in seqs[:2]) == batch.frames


def test_split_nll_weighs_every_frame_the_same(seqs):
    torch.manual_seed(0)
    model = SequenceModel("gru", 88, 8)
    lengths = [len(s) for s in seqs]
    total, frames = 0.0, 0
    with torch.no_grad():
        for s in seqs:
            one = make_batch([s])
            total += float(model.frame_nll(one.inputs, one.targets).sum())
            frames += len(s)
    for bs, max_frames in ((1, None), (3, None), (100, 50)):
        batches = batch_indices(lengths, bs, shuffle=False, max_frames=max_frames)
        assert evaluate(model, seqs, batches, "cpu") == pytest.approx(total / frames, rel=1e-6)


def test_untrained_nll_is_near_88_ln2(seqs):
    torch.manual_seed(0)
    model = SequenceModel("tanh", 88, 16)
    with torch.no_grad():
        model.head.linear.weight.zero_()
        model.head.linear.bias.zero_()
    batches = batch_indices([len(s) for s in seqs], 4, shuffle=False)
    assert evaluate(model, seqs, batches, "cpu") == pytest.approx(88 * math.log(2), rel=1e-6)


def test_batches_cover_every_sequence_once():
    lengths = list(np.random.default_rng(0).integers(1, 100, 57))
    g = torch.Generator().manual_seed(0)
    for bucket in (True, False):
        batches = batch_indices(lengths, 8, shuffle=True, generator=g, bucket=bucket)
        flat = sorted(i for b in batches for i in b)
        assert flat == list(range(57))
        assert all(1 <= len(b) <= 8 for b in batches)
    sorted_waste = padding_waste(lengths, batch_indices(lengths, 8, shuffle=False, bucket=True))
    random_waste = padding_waste(lengths, batch_indices(lengths, 8, shuffle=False, bucket=False))
    assert sorted_waste < random_waste / 3


def test_max_frames_caps_evaluation_batches():
    lengths = [10, 20, 30, 40, 50]
    batches = batch_indices(lengths, 10**9, shuffle=False, max_frames=60)
    for b in batches:
        assert max(lengths[i] for i in b) * len(b) <= 60 or len(b) == 1
    assert sorted(i for b in batches for i in b) == list(range(5))


def test_shuffling_is_seeded():
    lengths = list(range(1, 40))
    a = batch_indices(lengths, 4, shuffle=True, generator=torch.Generator().manual_seed(5))
    b = batch_indices(lengths, 4, shuffle=True, generator=torch.Generator().manual_seed(5))
    c = batch_indices(lengths, 4, shuffle=True, generator=torch.Generator().manual_seed(6))
    assert a == b != c


def test_noisy_parameters_are_the_weights_not_the_biases():
    model = SequenceModel("lstm", 88, 4)
    names = {n for n, p in model.named_parameters() if any(p is q for q in model.noisy_parameters())}
    assert names == {"cell.weight_ih", "cell.weight_hh", "cell.weight_peep", "head.linear.weight"}


def test_iterate_keeps_the_index(seqs):
    batches = [[2, 0], [1]]
    got = [b.index.tolist() for b in iterate(seqs, batches)]
    assert got == [[2, 0], [1]]


def test_pairs_of_inputs_and_targets_are_batched_as_given():
    rng = np.random.default_rng(0)
    items = [(rng.normal(size=(t, 20)), rng.normal(size=(t, 10))) for t in (5, 3)]
    batch = make_batch(items)
    assert batch.inputs.shape == (5, 2, 20) and batch.targets.shape == (5, 2, 10)
    torch.testing.assert_close(batch.inputs[:3, 1], torch.from_numpy(items[1][0]).float())
    torch.testing.assert_close(batch.targets[:5, 0], torch.from_numpy(items[0][1]).float())
    assert batch.mask.sum() == 8 and batch.inputs[3:, 1].abs().sum() == 0


def test_bernoulli_nll_equals_binary_cross_entropy():
    import torch.nn.functional as F

    from rnnbench.model import BernoulliHead

    torch.manual_seed(0)
    head = BernoulliHead(5, 88).double()
    with torch.no_grad():
        head.linear.weight.mul_(40)  # logits from about -100 to 100: both tails
    h = torch.randn(7, 3, 5, dtype=torch.float64)
    y = (torch.rand(7, 3, 88) < 0.3).double()
    ref = F.binary_cross_entropy_with_logits(head(h), y, reduction="none").sum(-1)
    assert float(head(h).detach().abs().max()) > 50
    torch.testing.assert_close(head.nll(h, y), ref, rtol=1e-12, atol=1e-9)
