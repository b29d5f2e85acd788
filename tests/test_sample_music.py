"""Music samples from a trained run: rnnbench-sample writes MIDI and PNG files; sampling is step by step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import REPO, make_rolls
from rnnbench.cli.sample import main as sample_main
from rnnbench.data import rolls
from rnnbench.errors import ConfigError, RnnbenchError
from rnnbench.runs import load_model
from rnnbench.sampling import music
from rnnbench.train import train


@pytest.fixture(scope="module")
def midi_folder(tmp_path_factory):
    """Ten MIDI files of the toy music (a climbing triad), written by our own roll -> MIDI."""
    folder = tmp_path_factory.mktemp("midi")
    for i, roll in enumerate(make_rolls(10, np.random.default_rng(0), min_len=8, max_len=20)):
        rolls.roll_to_midi(roll, folder / f"toy{i:02d}.mid", step=0.5)
    return folder


@pytest.fixture(scope="module")
def run_dir(midi_folder, tmp_path_factory):
    """One epoch of a small GRU on the score dataset, trained into a run directory."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose(config_name="train", overrides=[
            "dataset=scores_folder", f"dataset.path={midi_folder}", "dataset.name=toymidi", "dataset.step=0.5",
            "cell=gru", "cell.units=8", "train.max_epochs=1", "train.batch_size=2", "optim.lr=1e-2", "seed=0",
            "train.threads=1",
        ])
    run = tmp_path_factory.mktemp("runs") / "toymidi-gru"
    with pytest.MonkeyPatch.context() as mp:  # the dataset cache stays inside the test's folders
        mp.setenv("RNNBENCH_CACHE", str(run.parent / "cache"))
        train(cfg, run)
    return run


@pytest.fixture(autouse=True)
def _cache_of_the_run(run_dir, monkeypatch):
    monkeypatch.setenv("RNNBENCH_CACHE", str(run_dir.parent / "cache"))


def test_cli_writes_a_parseable_midi_and_a_png(run_dir, tmp_path, capsys):
    out = tmp_path / "samples"
    rc = sample_main([str(run_dir), "--out", str(out), "--num", "2", "--length", "24", "--primer", "--seed", "3"])
    assert rc == 0
    printed = capsys.readouterr().out.split()
    assert [p.rsplit("/", 1)[-1] for p in printed] == [
        "sample_T1_seed3_00_primed.mid", "sample_T1_seed3_00_primed.png",
        "sample_T1_seed3_01_primed.mid", "sample_T1_seed3_01_primed.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.rsplit("/", 1)[-1] for p in printed)
    from rnnbench.data import load_dataset
    from rnnbench.runs import load_config

    tests = load_dataset(load_config(run_dir).dataset)["test"]
    for i in range(2):
        primer = tests[i % len(tests)][:music.PRIMER_FRAMES]
        roll = rolls.score_to_roll(out / f"sample_T1_seed3_{i:02d}_primed.mid", step=0.5, trim=False,
                                   length=len(primer) + 24)
        np.testing.assert_array_equal(roll[:len(primer)], primer)  # the MIDI holds the primer, then the sample
        assert (out / f"sample_T1_seed3_{i:02d}_primed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_default_output_folder_and_no_primer(run_dir):
    assert sample_main([str(run_dir), "--length", "8"]) == 0
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == ["sample_T1_seed0_00.mid",
                                                                       "sample_T1_seed0_00.png"]


def test_same_seed_same_music(run_dir, tmp_path):
    a = music.sample_run(run_dir, tmp_path / "a", num=2, length=30, seed=5)
    b = music.sample_run(run_dir, tmp_path / "b", num=2, length=30, seed=5)
    c = music.sample_run(run_dir, tmp_path / "c", num=2, length=30, seed=6)
    mids = lambda ps: [p.read_bytes() for p in ps if p.suffix == ".mid"]  # noqa: E731
    assert mids(a) == mids(b) and mids(a) != mids(c)
    one = music.sample_run(run_dir, tmp_path / "d", num=1, length=30, seed=5)
    assert mids(one) == mids(a)[:1]  # sample i does not depend on how many are drawn


def test_step_by_step_sampling_matches_the_full_forward_pass(run_dir):
    """At a tiny temperature sampling is greedy; the greedy roll must be what the teacher-forced
    forward pass (input at step t = frame t-1, zero start frame) predicts at every step."""
    _, model = load_model(run_dir)
    rolls = [music.sample_roll(model, 40, temperature=1e-4, generator=torch.Generator().manual_seed(s))
             for s in (0, 1)]
    np.testing.assert_array_equal(rolls[0], rolls[1])
    roll = torch.from_numpy(rolls[0].astype(np.float32)).unsqueeze(1)
    inputs = torch.zeros_like(roll)
    inputs[1:] = roll[:-1]
    with torch.no_grad():
        h, _ = model(inputs)
        probs = torch.sigmoid(model.head(h))
    np.testing.assert_array_equal((probs > 0.5).squeeze(1).numpy().astype(np.uint8), rolls[0])
    primer = rolls[0][:10]
    primed = music.sample_roll(model, 30, temperature=1e-4, primer=primer)
    np.testing.assert_array_equal(primed, rolls[0])  # continuing its own first 10 frames


def test_benchmark_runs_are_sampled_too(toy_cfg, tmp_path):
    train(toy_cfg, tmp_path / "run")
    paths = music.sample_run(tmp_path / "run", tmp_path / "out", length=12, primer=True)
    assert [p.suffix for p in paths] == [".mid", ".png"]
    roll = rolls.score_to_roll(paths[0], step=1.0, trim=False, length=12 + 16)
    assert roll.shape == (28, 88)
    (tmp_path / "toy.mat").unlink()  # without a primer the data is not needed (a run copied elsewhere)
    assert len(music.sample_run(tmp_path / "run", tmp_path / "out2", length=12)) == 2
    with pytest.raises(RnnbenchError, match="toy.mat"):
        music.sample_run(tmp_path / "run", tmp_path / "out3", length=12, primer=True)


def test_bad_arguments(run_dir, tmp_path):
    with pytest.raises(ConfigError, match="temperature"):
        music.sample_run(run_dir, tmp_path, temperature=0)
    with pytest.raises(ConfigError, match="length"):
        music.sample_run(run_dir, tmp_path, length=0)
    with pytest.raises(RnnbenchError, match="not a run directory"):
        music.sample_run(tmp_path, tmp_path)
    assert sample_main([str(tmp_path / "nowhere")]) == 2


@pytest.mark.parametrize("args, says", [(["--seed", "-1"], "seed=-1 is invalid: expected an integer from 0 to 2**63 - 1"),
                                        (["--seed", str(2**64)], "seed=18446744073709551616 is invalid"),
                                        (["--num", str(10**11)], "needs an estimated"),
                                        (["--temperature", "inf"], "temperature=inf is invalid")])
def test_sample_arguments_at_the_edge_are_one_line(run_dir, tmp_path, args, says):
    """A negative seed was a numpy traceback; seeds beyond 64 bits, absurd sample counts and an
    infinite temperature are refused in one line, exit 2, nothing written."""
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "rnnbench.cli.sample", str(run_dir), "--out", str(tmp_path / "o"),
                        "--length", "5", *args], capture_output=True, text=True)
    assert p.returncode == 2 and says in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "o").exists()


def test_a_model_too_large_to_load_is_refused_before_its_checkpoint_is_read(run_dir, tmp_path):
    """A run whose config.yaml says cell.units=20000: rnnbench-sample names the estimate and the
    memory available (here a cgroup limit of 1 GiB) instead of allocating the model."""
    import shutil
    import subprocess
    import sys

    copy = tmp_path / "big"
    shutil.copytree(run_dir, copy)
    cfg = (copy / "config.yaml").read_text()
    assert "units: 8\n" in cfg
    (copy / "config.yaml").write_text(cfg.replace("units: 8\n", "units: 20000\n"))
    cg = tmp_path / "cg"
    cg.mkdir()
    (cg / "memory.max").write_text(f"{2**30}\n")
    (cg / "memory.current").write_text("0\n")
    p = subprocess.run([sys.executable, "-m", "rnnbench.cli.sample", str(copy), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, env={**__import__("os").environ, "RNNBENCH_CGROUP_ROOT": str(cg)})
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "config.yaml: cell.units=20000 (gru: 1,20" in p.stderr and "1.0 GiB is available (cgroup limit)" in p.stderr
    assert not (tmp_path / "o").exists()
