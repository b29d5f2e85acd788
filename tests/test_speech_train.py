"""Training on tiny WAV fixtures, sampling a waveform back, and the speech model sizes."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import REPO
from rnnbench.train import train
from test_speech import RATE, folder  # noqa: F401  (fixture)


# --------------------------------------------------------------------------- training and sampling

@pytest.fixture
def speech_cfg(folder, tmp_path):
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose(config_name="train", overrides=[
            "dataset=audio_folder", f"dataset.path={folder}", "dataset.name=toy", "dataset.split=sorted",
            "dataset.chunk_steps=20", "cell=gru", "cell.units=8", "train.max_epochs=2", "train.batch_size=4",
            "optim.lr=1e-2", "seed=0", "train.threads=1",
        ])
    return cfg


def test_configs_compose():
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        for name in ("fsdd", "yesno", "audio_folder", "torchaudio"):
            for cell, units in (("tanh", 400), ("gru", 227), ("lstm", 195)):
                cfg = compose(config_name="train", overrides=[f"dataset={name}", f"cell={cell}"])
                assert cfg.dataset.task == "speech" and cfg.cell.units == units
                assert cfg.dataset.kind == name and cfg.dataset.sample_rate == 8000


def test_training_on_fixture_audio(speech_cfg, tmp_path):
    run = tmp_path / "run"
    speech_cfg = OmegaConf.merge(speech_cfg, {"train": {"eval_train_every": 1}})
    summary = train(speech_cfg, run)
    assert summary["status"] == "finished" and summary["task"] == "speech" and summary["epochs"] == 2
    assert summary["params_total"] == summary["params_recurrent"] + 8 * 420 + 420
    rows = (run / "metrics.csv").read_text().splitlines()
    first, second = (dict(zip(rows[0].split(","), r.split(","))) for r in rows[1:3])
    for row in (first, second):
        assert np.isfinite(float(row["valid_nll"])) and np.isfinite(float(row["train_nll"]))
    assert np.isfinite(summary["test_nll"])  # (scored once, for the best epoch)
    # a unit Gaussian per sample would give 10 * 0.5 * log(2 pi e) = 14.19 nats per step
    assert float(second["train_nll"]) < float(first["train_nll"])
    assert float(second["valid_nll"]) < 14.19
    again = train(speech_cfg, tmp_path / "run2")
    assert again["valid_nll"] == summary["valid_nll"]


def test_sampling_writes_wav_and_png(speech_cfg, tmp_path):
    from rnnbench.cli.sample import main as sample_main
    from rnnbench.sampling.speech import sample_run

    run = tmp_path / "run"
    OmegaConf.update(speech_cfg, "train.max_epochs", 1)
    train(speech_cfg, run)
    paths = sample_run(run, tmp_path / "out", num=2, length=50, temperature=1.0, seed=3, primer=False)
    wavs = [p for p in paths if p.suffix == ".wav"]
    assert len(wavs) == 2 and len([p for p in paths if p.suffix == ".png"]) == 2
    for w in wavs:
        info = sf.info(str(w))
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (RATE, 1, "PCM_16", 20 + 10 * 50)
        x, _ = sf.read(str(w), dtype="int16")
        assert np.abs(x).max() > 20000  # peak-normalised, not silent
        assert w.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = sample_run(run, tmp_path / "out2", num=2, length=50, temperature=1.0, seed=3, primer=False)
    assert sf.read(str(again[0]))[0].tolist() == sf.read(str(paths[0]))[0].tolist()
    primed = sample_run(run, tmp_path / "out3", num=1, length=40, temperature=0.8, seed=0, primer=True)
    assert sf.info(str(primed[0])).frames == 20 + 10 * 40 and primed[0].name == "sample_T0.8_seed0_00_primed.wav"
    assert sample_main([str(run), "--out", str(tmp_path / "cli"), "--length", "30"]) == 0
    assert sorted(p.suffix for p in (tmp_path / "cli").iterdir()) == [".png", ".wav"]


def test_generation_feeds_back_its_own_samples():
    from rnnbench.model import SequenceModel
    from rnnbench.sampling.speech import generate

    torch.manual_seed(0)
    model = SequenceModel("tanh", 20, 6, 10, head="gmm", head_kwargs={"components": 3})
    seen = []
    cell_forward = model.cell.forward

    def spy(x, state=None):
        seen.append(x.detach().clone())
        return cell_forward(x, state)

    model.cell.forward = spy
    wave = generate(model, 5, num=1, generator=torch.Generator().manual_seed(0))
    assert wave.shape == (1, 70)
    assert len(seen) == 5 and torch.equal(seen[0], torch.zeros(1, 1, 20))
    for t in range(5):
        np.testing.assert_array_equal(seen[t][0, 0].numpy(), wave[0, 10 * t:10 * t + 20])


def test_sizes_table_has_speech_totals():
    from rnnbench.model import SequenceModel
    from rnnbench.sizes import format_size_table, size_table

    rows = {r["cell"]: r for r in size_table(("speech",))}
    assert {c: r["recurrent"] for c, r in rows.items()} == {"tanh": 168_400, "gru": 168_888, "lstm": 169_065}
    for cell, r in rows.items():
        model = SequenceModel(cell, 20, r["units"], 10, head="gmm", head_kwargs={"components": 20})
        assert r["total"] == model.param_counts()["total"] == r["recurrent"] + r["units"] * 420 + 420
    assert "(issue 4)" not in format_size_table(list(rows.values()))


def test_speech_samples_at_two_temperatures_keep_their_files_and_bad_values_are_one_line(speech_cfg, tmp_path):
    """Speech samples are named like music's (the temperature in the name), so a second
    temperature never overwrites the first; --temperature inf or nan, --num 0 and --length 0 are
    one line each, exit 2, nothing written."""
    import subprocess
    import sys

    from rnnbench.sampling.speech import sample_run

    run = tmp_path / "run"
    OmegaConf.update(speech_cfg, "train.max_epochs", 1)
    train(speech_cfg, run)
    out = tmp_path / "out"
    a = sample_run(run, out, num=1, length=20, temperature=1.0)
    b = sample_run(run, out, num=1, length=20, temperature=0.5)
    assert [p.name for p in a + b] == ["sample_T1_seed0_00.wav", "sample_T1_seed0_00.png",
                                       "sample_T0.5_seed0_00.wav", "sample_T0.5_seed0_00.png"]
    assert len(list(out.iterdir())) == 4
    for args, says in ((["--temperature", "inf"], "temperature=inf is invalid: expected a positive finite number"),
                       (["--temperature", "nan"], "temperature=nan is invalid"),
                       (["--num", "0"], "num=0 is invalid"), (["--length", "0"], "length=0 is invalid"),
                       (["--length", str(10**15)], "needs an estimated")):
        p = subprocess.run([sys.executable, "-m", "rnnbench.cli.sample", str(run), "--out", str(tmp_path / "bad"),
                            *args], capture_output=True, text=True)
        assert p.returncode == 2 and says in p.stderr and len(p.stderr.strip().splitlines()) == 1, (args, p.stderr)
        assert not (tmp_path / "bad").exists()


# --------------------------------------------------------------------------- the hand-written mixture step

@pytest.mark.parametrize("cell", ["tanh", "gru", "lstm"])
def test_speech_training_is_the_same_with_either_implementation(speech_cfg, tmp_path, cell, simd):
    """Two epochs with weight noise, clipping and RMSProp: the fused kernels with the hand-written
    mixture head (at each SIMD level this CPU has) give the numbers of the reference loop and
    autograd."""
    from conftest import train_both_ways

    results = train_both_ways(OmegaConf.merge(speech_cfg, {"cell": {"name": cell}}), tmp_path)
    assert results["fused"]["updates"] == results["python"]["updates"] > 0
    for key in ("train_nll", "valid_nll", "test_nll"):
        assert results["fused"][key] == pytest.approx(results["python"][key], rel=1e-4)


def test_stacked_speech_runs_equal_runs_alone(speech_cfg, tmp_path):
    from rnnbench.stack import train_stack

    cfgs = [OmegaConf.merge(speech_cfg, {"optim": {"lr": lr}, "cell": {"name": "lstm"}}) for lr in (1e-2, 3e-3)]
    alone = [train(c, tmp_path / f"alone{k}") for k, c in enumerate(cfgs)]
    stacked = train_stack(cfgs, [tmp_path / f"stack{k}" for k in range(len(cfgs))])
    assert alone[0]["valid_nll"] != alone[1]["valid_nll"]
    for a, s in zip(alone, stacked):
        assert s["stacked_members"] == 2 and s["updates"] == a["updates"]
        for key in ("train_nll", "valid_nll", "test_nll"):
            assert s[key] == pytest.approx(a[key], rel=2e-5)


@pytest.mark.parametrize("cell", ["tanh", "lstm"])
def test_a_seed_trains_bit_for_bit_the_same_in_a_stack_of_four_or_of_two(speech_cfg, tmp_path, cell):
    """scripts/study.py --seed-stacks 2 splits seeds 1-4 into two stacks of two: no number changes."""
    from rnnbench.stack import train_stack

    cfgs = [OmegaConf.merge(speech_cfg, {"seed": s, "cell": {"name": cell, "units": 16},
                                         "train": {"order_seed": 0, "max_epochs": 3, "weight_noise": 0.02,
                                                   "batch_size": 1}}) for s in (1, 2, 3, 4)]
    four = train_stack(cfgs, [tmp_path / f"four{k}" for k in range(4)])
    two = (train_stack(cfgs[:2], [tmp_path / f"two{k}" for k in range(2)])
           + train_stack(cfgs[2:], [tmp_path / f"two{k}" for k in range(2, 4)]))
    assert [s["stacked_members"] for s in four + two] == [4] * 4 + [2] * 4
    assert len({s["valid_nll"] for s in four}) == 4  # (the seeds differ)
    for k, (f, t) in enumerate(zip(four, two)):
        for key in ("train_nll", "valid_nll", "test_nll", "best_epoch", "updates"):
            assert f[key] == t[key], (k, key)
        a = torch.load(tmp_path / f"four{k}" / "last.pt", weights_only=False)["model"]
        b = torch.load(tmp_path / f"two{k}" / "last.pt", weights_only=False)["model"]
        assert all(torch.equal(a[n], b[n]) for n in a)
