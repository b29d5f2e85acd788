from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path | None:
    """The reference corpora: $RNNBENCH_DATA, else ../shared/data beside the checkout."""
    for cand in (os.environ.get("RNNBENCH_DATA"), REPO.parent / "shared" / "data"):
        if cand and (Path(cand) / "polyphonic" / "JSB_Chorales.mat").is_file():
            return Path(cand)
    return None


@pytest.fixture(scope="session")
def real_root() -> Path:
    root = shared_data_root()
    if root is None:
        msg = "reference corpora not found: set RNNBENCH_DATA to the folder holding polyphonic/*.mat"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " (CI=true: the real-data tests must run)")
        pytest.skip(msg)
    return root


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """No test reads the user's data root or writes into the repository's cache."""
    monkeypatch.delenv("RNNBENCH_DATA", raising=False)
    monkeypatch.setenv("RNNBENCH_CACHE", str(tmp_path / "cache"))


def make_rolls(n: int, rng: np.random.Generator, min_len: int = 5, max_len: int = 30) -> list[np.ndarray]:
    """Learnable toy music: a chord that climbs one key per step, wrapping around an octave."""
    seqs = []
    for _ in range(n):
        T = int(rng.integers(min_len, max_len + 1))
        base = int(rng.integers(30, 50))
        roll = np.zeros((T, 88), dtype=np.uint8)
        for t in range(T):
            k = base + (t % 12)
            roll[t, [k, k + 4, k + 7]] = 1
        seqs.append(roll)
    return seqs


def write_mat(path: Path, splits: dict[str, list[np.ndarray]]) -> Path:
    import scipy.io

    mat = {}
    for split, seqs in splits.items():
        arr = np.empty((1, len(seqs)), dtype=object)
        for i, s in enumerate(seqs):
            arr[0, i] = s
        mat[f"{split}data"] = arr
    scipy.io.savemat(str(path), mat)
    return path


def write_pickle(path: Path, splits: dict[str, list[np.ndarray]]) -> Path:
    obj = {split: [[list(np.flatnonzero(row) + 21) for row in s] for s in seqs] for split, seqs in splits.items()}
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)
    return path


@pytest.fixture(scope="session")
def toy_splits() -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    return {"train": make_rolls(12, rng), "valid": make_rolls(4, rng), "test": make_rolls(4, rng)}


@pytest.fixture
def toy_mat(tmp_path, toy_splits) -> Path:
    return write_mat(tmp_path / "toy.mat", toy_splits)


@pytest.fixture
def toy_cfg(toy_mat, tmp_path):
    """A training config (as Hydra composes it) on the toy corpus, small and fast."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose(
            config_name="train",
            overrides=[
                "dataset=jsb", f"dataset.path={toy_mat}", "dataset.name=toy", "cell=gru", "cell.units=8",
                "train.max_epochs=3", "train.batch_size=4", "optim.lr=1e-2", "seed=0", "train.threads=1",
            ],
        )
    return cfg


@pytest.fixture(params=["generic", "avx2", "avx512"])
def simd(request):
    """Run a test at each SIMD level of the float32 kernels that this CPU has (others skip)."""
    from rnnbench import fused

    if not fused.load():
        pytest.skip("fused extension unavailable")
    if request.param not in fused.available_kernels():
        pytest.skip(f"this CPU cannot run the {request.param} kernels")
    before = fused.set_kernels(request.param)
    yield request.param
    fused.set_kernels(before)


def train_both_ways(cfg, tmp_path) -> dict:
    """The run of ``cfg`` trained through the fused kernels and through the reference loop (and
    autograd): ``{"fused": summary, "python": summary}``."""
    from rnnbench import fused
    from rnnbench.train import train

    results = {}
    for impl in ("fused", "python"):
        fused.set_impl(impl)
        try:
            results[impl] = train(cfg, tmp_path / impl)
        finally:
            fused.set_impl(None)
    return results
