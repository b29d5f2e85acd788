"""scripts/check_cuda.py without a GPU: it says so and stops; its synthetic corpora are what it says."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_cuda.py"


@pytest.fixture(scope="module")
def check_cuda():
    spec = importlib.util.spec_from_file_location("check_cuda", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["check_cuda"] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("check_cuda", None)


def test_without_cuda_it_stops_with_one_line(check_cuda, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert check_cuda.main(["--out", str(tmp_path / "out")]) == 2
    assert "no CUDA device here" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_synthetic_corpora(check_cuda):
    music, speech = check_cuda.synthetic_music(), check_cuda.synthetic_speech()
    assert [len(music[s]) for s in ("train", "valid", "test")] == [12, 4, 4]
    assert all(r.shape[1] == 88 and 10 <= r.shape[0] <= 40 for r in music["train"])
    assert speech.head == "gmm" and speech.head_kwargs["components"] == 20
    assert [len(speech[s]) for s in ("train", "valid", "test")] == [6, 2, 2]
    x, y = speech["train"][0]
    assert x.shape[1] == 20 and y.shape[1] == 10 and x.shape[0] == y.shape[0] > 100
    assert check_cuda.noise_std("speech", "tanh") == 0.02 and check_cuda.noise_std("music", "tanh") == 0.075


def test_one_step_on_the_cpu_is_finite_and_seeded(check_cuda):
    a = check_cuda.one_step("speech", "gru", torch.device("cpu"), torch.float64)
    b = check_cuda.one_step("speech", "gru", torch.device("cpu"), torch.float64)
    assert a[0].shape == (3,) and torch.isfinite(a[1]).all()
    assert torch.equal(a[1], b[1])
