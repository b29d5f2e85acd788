"""Speech benchmark: real training epochs of FSDD (and YESNO), old code against new, and the projected
speech study.

    python scripts/bench_speech.py --old <checkout of 3d81a7d>/src          # A/B, then the projection
    python scripts/bench_speech.py                                          # this checkout only
    python scripts/bench_speech.py --corpora fsdd --cells gru --rounds 1 --max-utterances 40   # a smoke test

Each job is one real run of the trainer in its own process (``rnnbench.cli.train``, the paper's
units, batch 1, one thread, ``experiment=chung2014_speech search.draw=0 train.max_epochs=1``: its
weight noise 0.075, clipping, RMSProp; the tanh RNN's overflowing updates are skipped and counted,
as in the study) on one corpus x cell.  The numbers are read from the run's ``metrics.csv``:
``wall_seconds`` of epoch 1 is its training pass (noise, forward, backward, clipping, RMSProp over
every training utterance, as the trainer times it) and ``eval_seconds`` the validation and
training-split evaluation of epoch 1; the process's wall time less those is the rest (loading,
building the model, scoring the test split once).  Per member-frame = seconds / training frames
(FSDD 834,924; YESNO 196,248).  With ``--old``, every round runs the old code's job and then the
new code's for each corpus x cell (old, new, old, new, ... with ``--rounds 2``), and the ratio
old / new of the training pass is printed per round.  A one-thread 2048 x 2048 float32 matrix
product is timed before every job (``bench_member_frame.gemm_gflops``) and printed beside it, with
the GFLOP/s of the training step (its dense multiply-adds, forward and both backward products).

The projection: the converged speech protocol, both corpora x 3 cells: the 10 learning-rate draws
of seed 0 with successive halving as this checkout's ``hparams_search=paper_lr_halving`` sets it
(read from the config; counted at the fewest draws it keeps), then seeds 1-4 at the selected draw,
every run going E epochs (an
upper bound: early stopping ends runs sooner), each epoch training and evaluating validation, the
training split every 10th epoch, a member-epoch costing what a lone run's epoch cost here (a stack
of draws costs about the same per member at speech size), the runs spread evenly over ``--cores``
cores.  Printed in core-hours and wall hours for E = 50, 100 and 200, from this checkout's
measured seconds (and the old code's, with ``--old``).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
UNITS = {"tanh": 400, "gru": 227, "lstm": 195}
GATES = {"tanh": 1, "gru": 3, "lstm": 4}
# YESNO's 400-unit tanh RNN diverges in its first epoch at the paper's weight noise (docs/speech.md):
# it is timed at the weight noise of the study's tanh variant, which costs the same per frame
WEIGHT_NOISE = {("yesno", "tanh"): ["train.weight_noise=0.02"]}
FRAMES = {"fsdd": {"train": 834_924, "valid": 104_899}, "yesno": {"train": 196_248, "valid": 50_356}}


def macs_per_frame(cell: str, D: int = 20, head_out: int = 420) -> int:
    H, G = UNITS[cell], GATES[cell]
    return D * G * H + H * G * H + H * head_out


def one_job(src: str | None, corpus: str, cell: str, out: Path, data_root: str, extra: list[str]) -> dict:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = str(Path(src).resolve()) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "rnnbench.cli.train", "experiment=chung2014_speech", f"dataset={corpus}",
           f"cell={cell}", "search.draw=0", "train.max_epochs=1", "train.threads=1", f"data_root={data_root}",
           f"hydra.run.dir={out}/hydra", *WEIGHT_NOISE.get((corpus, cell), []), *extra]
    env["RNNBENCH_RUNS"] = str(out)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=out, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    found = sorted(out.rglob("metrics.csv"))
    if len(found) != 1:
        raise SystemExit(f"expected one metrics.csv under {out}, found {found}")
    with open(found[0]) as f:
        row = next(csv.DictReader(f))
    train_s = float(row["wall_seconds"])
    eval_s = float(row.get("eval_seconds") or 0.0)
    return {"train": train_s, "eval": eval_s, "rest": seconds - train_s - eval_s, "updates": int(row["updates"]),
            "skipped": row.get("skipped_updates", "")}


def halving_schedule(draws: int = 10) -> list[tuple[int, int]]:
    """``[(last epoch, draws running up to it), ...]`` per seed under this checkout's
    ``hparams_search=paper_lr_halving`` (the fewest draws it keeps: every draw behind the margin
    stops), the last entry running to any epoch."""
    from hydra import compose, initialize_config_dir

    from rnnbench.search import halving_schedule as schedule, halving_settings

    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        h = halving_settings(compose("train", overrides=["experiment=chung2014_speech",
                                                         "hparams_search=paper_lr_halving"]))
    return schedule(h, draws)


def project(parts: dict, corpus: str, epochs: int, cores: int, schedule) -> tuple[float, float]:
    """(core-hours, wall hours) of one corpus x cell of the protocol: the search (10 draws of seed 0
    with halving), then seeds 1-4 at the selected draw, every run going ``epochs`` epochs."""
    valid_s = parts["eval"] * FRAMES[corpus]["valid"] / (FRAMES[corpus]["valid"] + FRAMES[corpus]["train"])
    train_pass_s = parts["eval"] - valid_s  # (epoch 1 evaluates both splits: split by frames)
    member_epochs, prev = 0, 0
    for upto, running in schedule:
        member_epochs += running * max(0, min(epochs, upto) - prev)
        prev = upto
    member_epochs += 4 * epochs  # (seeds 1-4 at the selected draw)
    runs = 10 + 4
    core_s = (member_epochs * (parts["train"] + valid_s)
              + runs * ((1 + epochs // 10) * train_pass_s + parts["rest"]))
    return core_s / 3600, core_s / 3600 / cores


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", default=None, help="the old checkout's src/ folder: alternate old and new jobs")
    ap.add_argument("--corpora", nargs="*", default=["fsdd", "yesno"])
    ap.add_argument("--cells", nargs="*", default=["tanh", "gru", "lstm"])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cores", type=int, default=os.cpu_count())
    ap.add_argument("--data-root", default=os.environ.get("RNNBENCH_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--max-utterances", type=int, default=None, help="(smoke tests only: not a real epoch)")
    args = ap.parse_args(argv)
    import torch

    from bench_member_frame import gemm_gflops

    torch.set_num_threads(1)
    extra = [f"dataset.max_utterances={args.max_utterances}"] if args.max_utterances else []
    versions = ([("old", args.old)] if args.old else []) + [("new", None)]
    results: dict = {}
    print(f"# speech epochs, torch {torch.__version__}, 1 thread per job, data {args.data_root}"
          f"{'' if not extra else ', ' + ' '.join(extra) + ' (NOT a real epoch)'}")
    print(f"# old: {args.old or '-'}; new: {REPO / 'src'}")
    print(f"# weight noise other than the study's 0.075: {WEIGHT_NOISE} (at 0.075 that run diverges in epoch 1)")
    print(f"{'round':>5} {'code':<4} {'corpus':<6} {'cell':<5} {'GEMM GF/s':>9} {'train s':>8} {'us/mf':>7} "
          f"{'GF/s':>6} {'eval s':>7} {'rest s':>7} {'updates':>8} {'skipped':>7} {'old/new':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for v, src in versions:  # (each version's extension is built once, outside the timings)
            one_job(src, args.corpora[0], args.cells[0], Path(tempfile.mkdtemp(dir=tmp)), args.data_root,
                    ["dataset.max_utterances=6"])
        for rnd in range(1, args.rounds + 1):
            for corpus in args.corpora:
                for cell in args.cells:
                    for v, src in versions:
                        gemm = gemm_gflops(torch)
                        r = one_job(src, corpus, cell, Path(tempfile.mkdtemp(dir=tmp)), args.data_root, extra)
                        r["gemm"] = gemm
                        results.setdefault((v, corpus, cell), []).append(r)
                        frames = FRAMES[corpus]["train"] if not extra else None
                        us = r["train"] / frames * 1e6 if frames else float("nan")
                        gf = 3 * 2 * macs_per_frame(cell) / (us * 1e3) if frames else float("nan")
                        ratio = ""
                        if v == "new" and args.old:
                            ratio = f"{results[('old', corpus, cell)][-1]['train'] / r['train']:.2f}x"
                        print(f"{rnd:>5} {v:<4} {corpus:<6} {cell:<5} {gemm:>9.1f} {r['train']:>8.1f} {us:>7.2f} "
                              f"{gf:>6.1f} {r['eval']:>7.1f} {r['rest']:>7.1f} {r['updates']:>8} {r['skipped']:>7} "
                              f"{ratio:>7}", flush=True)
    print()
    schedule = halving_schedule()
    steps = ", ".join(f"{n} draws to epoch {e}" for e, n in schedule[:-1]) + f", then {schedule[-1][1]}"
    print(f"# projected speech study (the corpora measured above x 3 cells: 10 draws of seed 0 with halving "
          f"(paper_lr_halving, the fewest draws it keeps): {steps}; then seeds 1-4 at the selected draw; every run E epochs: an upper bound, early "
          f"stopping ends runs sooner; each member-epoch costs what a lone run's epoch cost above), "
          f"one run per core on {args.cores} cores")
    print(f"{'code':<5}{'E':>5}{'core-hours':>12}{'wall hours':>12}")
    for v, _ in versions:
        for e in (50, 100, 200):
            core = wall = 0.0
            for corpus in args.corpora:
                for cell in args.cells:
                    runs = results[(v, corpus, cell)]
                    med = {k: statistics.median(r[k] for r in runs) for k in ("train", "eval", "rest")}
                    c, w = project(med, corpus, e, args.cores, schedule)
                    core, wall = core + c, wall + w
            print(f"{v:<5}{e:>5}{core:>12.1f}{wall:>12.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
