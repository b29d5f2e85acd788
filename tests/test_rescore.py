"""scripts/rescore.py: an evaluator sharing no code with rnnbench re-scores trained checkpoints.

Tiny runs of every cell and both heads are trained through the CLI (music on a toy .mat, speech
on YESNO- and FSDD-like WAV folders), then re-scored: each must give its summary.json's test_nll;
a checkpoint whose weights were scaled must be reported as disagreeing (exit 1).
"""

from __future__ import annotations

import ast
import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import REPO, make_rolls, write_mat

SCRIPT = REPO / "scripts" / "rescore.py"
ALLOWED = {"numpy", "torch", "yaml", "scipy", "soundfile"}

# Runs the script with rnnbench made unimportable: a proof at run time, beside the ast check.
BLOCKED = (
    "import sys, runpy\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'rnnbench' or name.startswith('rnnbench.'):\n"
    "            raise ImportError('rnnbench is blocked in this test')\n"
    "sys.meta_path.insert(0, Block())\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def rescore(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKED, str(SCRIPT), *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def test_imports_nothing_from_rnnbench():
    tree = ast.parse(SCRIPT.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import"
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in (
                "__import__", "import_module"):
            pytest.fail(f"dynamic import at line {node.lineno}")
    assert "rnnbench" not in found
    assert "importlib" not in found and "runpy" not in found
    assert found <= ALLOWED | set(sys.stdlib_module_names), sorted(found - ALLOWED - set(sys.stdlib_module_names))


# --------------------------------------------------------------------------- fixtures: tiny trained runs

RATE = 8000


def tone(n, freq, amp, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    return (amp * np.sin(2 * np.pi * freq * t) + 0.05 * amp * rng.standard_normal(n)).astype(np.float32)


def train(env, *overrides):
    p = subprocess.run([sys.executable, "-m", "rnnbench.cli.train", "-m", *overrides], env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rescore")
    env = dict(os.environ, RNNBENCH_RUNS=str(root / "runs"), HYDRA_FULL_ERROR="1", RNNBENCH_CACHE=str(root / "cache"))
    env.pop("RNNBENCH_DATA", None)
    rng = np.random.default_rng(0)
    mat = write_mat(root / "toy.mat", {"train": make_rolls(8, rng), "valid": make_rolls(3, rng),
                                       "test": make_rolls(3, rng)})
    yesno = root / "waves_yesno"
    yesno.mkdir()
    for i in range(12):  # sorted: positions 0, 6 test; 1, 7 valid
        sf.write(str(yesno / f"{i >> 2 & 1}_{i >> 1 & 1}_{i & 1}_0_1_1_0_{i:02d}.wav"),
                 tone(300 + 23 * i, 150 + 40 * i, 0.05 * (i + 1), i), RATE, subtype="PCM_16")
    fsdd = root / "recordings"
    fsdd.mkdir()
    for d in range(2):
        for spk in ("ann", "bob"):
            for idx in (0, 1, 5, 10, 11, 12):  # test 0-4, valid 5-9, train 10-
                sf.write(str(fsdd / f"{d}_{spk}_{idx}.wav"), tone(250 + 31 * idx, 200 + 90 * d, 0.3, idx + 7 * d),
                         RATE, subtype="PCM_16")
    sf.write(str(fsdd / "1_bob_2.wav"), tone(25, 300, 0.3, 99), RATE, subtype="PCM_16")  # too short: left out
    common = ["cell.units=6", "train.batch_size=4", "optim.lr=1e-2", "train.max_epochs=2", "train.threads=1"]
    train(env, "experiment=quick_jsb", f"dataset.path={mat}", "dataset.name=toy", "cell=tanh,gru,lstm",
          "search.draw=0", *common[:2], "train.max_epochs=2")
    train(env, "dataset=yesno", f"dataset.path={yesno}", "dataset.chunk_steps=9", "cell=tanh,gru,lstm", *common,
          f"hydra.sweep.dir={root / 'runs' / 'yesno'}")
    train(env, "dataset=fsdd", f"dataset.path={fsdd}", "dataset.max_steps=25", "dataset.max_utterances=3", "cell=lstm",
          *common, f"hydra.sweep.dir={root / 'runs' / 'fsdd'}")
    return root / "runs"


def table(out: str, which: int = 0) -> list[list[str]]:
    """The rows of the report's ``which``-th table (0: the scores; 1: the disagreements examined)."""
    tables, rows = [], None
    for line in out.splitlines():
        if line.startswith("| dataset"):
            rows = []
            tables.append(rows)
        elif line.startswith("| ") and rows is not None:
            rows.append([c.strip() for c in line.strip("|").split("|")])
        elif not line.startswith("|"):
            rows = None
    return tables[which] if which < len(tables) else []


@pytest.mark.slow  # (the fixture trains 7 tiny runs through the CLI: ~35 s on 2 loaded cores)
def test_every_cell_and_head_agrees(trained):
    p = rescore(trained)
    assert p.returncode == 0, p.stdout + p.stderr
    rows = table(p.stdout)
    seen = {(r[0], r[1]) for r in rows}
    assert seen == {("toy", c) for c in ("tanh", "gru", "lstm")} | {("yesno", c) for c in ("tanh", "gru", "lstm")} \
        | {("fsdd", "lstm")}, rows
    for r in rows:
        assert r[9] == "yes" and float(r[7]) <= 1e-5, r
    assert "Verdict: 7 of 7 checkpoints agree" in p.stdout
    f64 = rescore(trained, "--float64")
    assert f64.returncode == 0, f64.stdout + f64.stderr
    assert "(test split, float64)" in f64.stdout


@pytest.mark.slow  # (the fixture trains 7 tiny runs through the CLI: ~35 s on 2 loaded cores)
def test_a_tampered_checkpoint_disagrees(trained, tmp_path):
    run = next((trained / "sweeps" / "quick_jsb" / "toy" / "gru").glob("*/best.pt")).parent
    bad = tmp_path / "bad"
    shutil.copytree(run, bad)
    ck = torch.load(bad / "best.pt", weights_only=True)
    ck["model"]["cell.weight_hh"] *= 1.5
    torch.save(ck, bad / "best.pt")
    out = tmp_path / "r.md"
    p = rescore(run, bad, "--out", out)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "1 of 2 checkpoints agree" in p.stdout and "1 DISAGREE" in p.stdout
    rows = table(out.read_text())
    assert [r[9] for r in rows] == (["**NO**", "yes"] if str(bad) < str(run) else ["yes", "**NO**"])
    # the disagreement is scored again in another summation order and in float64: a tampered
    # checkpoint scores the same each way, so rounding is not what decides it
    (examined,) = table(out.read_text(), 1)
    ours = next(r for r in rows if r[9] == "**NO**")[5]
    assert examined[5] == ours and float(examined[6]) == pytest.approx(float(ours), rel=1e-5)
    assert float(examined[7]) == pytest.approx(float(ours), rel=1e-4) and examined[8] == "no"
    assert "rounding decides" not in p.stdout


@pytest.mark.slow  # (the fixture trains 7 tiny runs through the CLI: ~35 s on 2 loaded cores)
def test_selected_rows_and_unsupported_configs(trained, tmp_path):
    runs = trained / "sweeps" / "quick_jsb"
    gru = next((runs / "toy" / "gru").glob("*/best.pt")).parent
    lr = [line.split(":")[1].strip() for line in (gru / "config.yaml").read_text().splitlines()
          if line.strip().startswith("lr:")][0]
    sel = tmp_path / "selected_runs.csv"
    with open(sel, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "cell", "lr", "seeds", "run", "sweep"])
        w.writerow(["toy", "gru", lr, 1, "x", "y"])
    p = rescore(runs, "--selected", sel)
    assert p.returncode == 0, p.stdout + p.stderr
    assert [(r[0], r[1]) for r in table(p.stdout)] == [("toy", "gru")]
    sel.write_text(sel.read_text().replace(f"gru,{lr},1", f"gru,{lr},2"))
    p = rescore(runs, "--selected", sel)
    assert p.returncode == 1 and "the report counts 2 seeds, 1 run(s) found" in p.stdout

    odd = tmp_path / "odd"
    shutil.copytree(gru, odd)
    cfg = (odd / "config.yaml").read_text()
    (odd / "config.yaml").write_text(cfg.replace("kind: benchmark", "kind: audio_folder"))
    p = rescore(odd)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0
    assert "dataset.kind='audio_folder' is not supported" in p.stderr


# --------------------------------------------------------------------------- the committed study

@pytest.mark.realdata
@pytest.mark.slow
def test_committed_jsb_checkpoints_agree(real_root, tmp_path):
    """Seed 0 of each JSB pair the committed music report selects, re-scored from its best.pt."""
    rows = [r for r in csv.DictReader(open(REPO / "results/music/report/selected_runs.csv")) if r["dataset"] == "jsb"]
    dirs = [REPO / "results/music/runs" / r["sweep"] / r["run"] for r in rows]
    assert len(dirs) == 3 and all((d / "best.pt").is_file() for d in dirs)
    p = rescore(*dirs, "--data-root", real_root, cwd=REPO)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Verdict: 3 of 3 checkpoints agree" in p.stdout
    assert all(float(r[7]) < 1e-6 for r in table(p.stdout))


def test_selected_variants_are_matched_by_their_label(tmp_path):
    """A report names a labelled variant "tanh (σ=0.02)": --selected finds its runs by weight noise
    and chunking, never the faithful tanh at the same rate (and the label is the report's)."""
    import importlib.util

    from rnnbench.report import variant_label as report_label

    spec = importlib.util.spec_from_file_location("rescore_mod", REPO / "scripts" / "rescore.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    speech = {"dataset": {"name": "yesno", "task": "speech", "chunk_steps": None}, "train": {"weight_noise": 0.075}}
    chunked = {"dataset": {"name": "yesno", "task": "speech", "chunk_steps": 50}, "train": {}}
    assert mod.variant_label("tanh", speech, {"weight_noise": 0.075}) == "tanh"
    assert mod.variant_label("tanh", speech, {"weight_noise": 0.02}) == "tanh (σ=0.02)" == \
        f"tanh ({report_label(0.02, None, 'speech')})"
    assert mod.variant_label("tanh", chunked, {"weight_noise": 0.0}) == "tanh (σ=0, 50-step chunks)" == \
        f"tanh ({report_label(0.0, 50, 'speech')})"
    runs = [{"dataset": "yesno", "cell": "tanh", "label": label, "lr": 1e-3, "seed": seed, "dir": Path(f"{label}{seed}")}
            for label in ("tanh", "tanh (σ=0.02)") for seed in (0, 1)]
    sel = tmp_path / "selected_runs.csv"
    sel.write_text("dataset,cell,lr,seeds\nyesno,tanh (σ=0.02),0.001,2\n")
    kept, problems = mod.select(runs, sel)
    assert [r["label"] for r in kept] == ["tanh (σ=0.02)"] * 2 and problems == []
