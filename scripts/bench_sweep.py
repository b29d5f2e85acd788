"""Whole-sweep benchmark: a fixed slice of the music study, run three ways, and the projected study.

    python scripts/bench_sweep.py                        # 2 epochs of every dataset x cell x 10 draws
    python scripts/bench_sweep.py --datasets jsb --epochs 3 --draws 10

The slice is every dataset x cell x draw for ``--epochs`` epochs, the paper's units, batch 1:

(a) one run at a time, one thread (the basic launcher);
(b) one run per core in parallel, one thread each (``hydra/launcher=joblib``);
(c) the draws of each dataset x cell trained as one stack, one stack per core in parallel
    (``hydra/launcher=stacked hydra.launcher.n_jobs=<cores>``).

(a) and (b) run draw 0 only and are multiplied by the number of draws (a run's cost does not
depend on its learning rate); (c) runs every draw.  The script prints wall times, speed-ups, how
busy the machine's cores were, seconds per epoch, and the projected wall time of the full music
study (4 datasets x 3 cells x 10 draws) for a range of epochs per run.  All numbers come from
this one run.  A 2048 x 2048 float32 matrix product on one thread, timed before and after the
slice, says how fast this machine was during it (the same code has projected 1.5x apart on two
sittings of this 2-core VM).

An epoch's cost is not the same every epoch: every epoch trains and evaluates the validation
split, the training split is evaluated at epoch 1 and every ``train.eval_train_every`` (10)
epochs, and a run's best weights are scored on train and test once when it ends.  Each job's
parts are read from its ``metrics.csv`` (``wall_seconds``: training; ``eval_seconds``: evaluation;
``--epochs`` >= 2 separates the validation pass from the training-split pass), the rest of the
job's time (loading, building, the final scoring) counts once, and the projection for E epochs
per run is ``once + E (train + valid) + (1 + E // 10) train-split pass`` per job, scaled by how
well the jobs of that way of running filled the cores in this run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from joblib import Parallel, delayed

REPO = Path(__file__).resolve().parents[1]


def compose_cfgs(dataset: str, cell: str, draws, epochs: int):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        return [compose("train", overrides=[f"dataset={dataset}", f"cell={cell}", "experiment=chung2014_music",
                                            f"search.draw={k}", f"train.max_epochs={epochs}", "train.threads=1"])
                for k in draws]


def _parts(run_dir: Path, seconds: float, epochs: int) -> dict:
    """A job's measured costs: training and validation per epoch, the training-split pass, once."""
    import csv

    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    wall = [float(r["wall_seconds"]) for r in rows]
    ev = [float(r.get("eval_seconds") or 0.0) for r in rows]
    train = wall[-1] / len(rows)
    valid = (ev[-1] - ev[0]) / (len(rows) - 1) if len(rows) > 1 else ev[0]
    train_pass = max(ev[0] - valid, 0.0)
    once = seconds - wall[-1] - ev[-1]
    return {"seconds": seconds, "train": train, "valid": valid, "train_pass": train_pass, "once": once}


def project(parts: dict, e: int, every: int = 10) -> float:
    return parts["once"] + e * (parts["train"] + parts["valid"]) + (1 + e // every) * parts["train_pass"]


def one_run(dataset: str, cell: str, epochs: int, out: str) -> dict:
    from rnnbench.train import train

    cfg = compose_cfgs(dataset, cell, [0], epochs)[0]
    t0 = time.perf_counter()
    train(cfg, Path(out) / f"{dataset}-{cell}")
    seconds = time.perf_counter() - t0
    return {"dataset": dataset, "cell": cell, **_parts(Path(out) / f"{dataset}-{cell}", seconds, epochs)}


def one_stack(dataset: str, cell: str, draws: int, epochs: int, out: str) -> dict:
    from rnnbench.stack import train_stack

    cfgs = compose_cfgs(dataset, cell, range(draws), epochs)
    t0 = time.perf_counter()
    train_stack(cfgs, [Path(out) / f"{dataset}-{cell}-{k}" for k in range(draws)])
    seconds = time.perf_counter() - t0
    return {"dataset": dataset, "cell": cell, **_parts(Path(out) / f"{dataset}-{cell}-0", seconds, epochs)}


def gemm_gflops() -> float:
    """One thread's 2048 x 2048 float32 matrix product (the machine's speed right now), timed as
    ``bench_member_frame.py`` times it."""
    import torch
    from bench_member_frame import gemm_gflops as timed_gemm  # (scripts/ is this script's folder)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return timed_gemm(torch)
    finally:
        torch.set_num_threads(threads)


def cpu_busy() -> tuple[float, float]:
    """(busy, total) CPU jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        vals = [float(v) for v in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0.0)
    return sum(vals) - idle, sum(vals)


def timed(fn):
    b0, t0 = cpu_busy()
    w0 = time.perf_counter()
    rows = fn()
    wall = time.perf_counter() - w0
    b1, t1 = cpu_busy()
    return wall, (b1 - b0) / max(t1 - t0, 1e-9), rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="*", default=["jsb", "nottingham", "musedata", "piano"])
    ap.add_argument("--cells", nargs="*", default=["tanh", "gru", "lstm"])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--draws", type=int, default=10, help="learning-rate draws per dataset x cell")
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    args = ap.parse_args(argv)
    pairs = [(d, c) for d in args.datasets for c in args.cells]
    # (the largest first, so that parallel jobs finish together)
    order = {"nottingham": 0, "musedata": 1, "piano": 2, "jsb": 3}
    pairs.sort(key=lambda p: order.get(p[0], 9))
    D, E, J = args.draws, args.epochs, args.jobs
    with tempfile.TemporaryDirectory() as tmp:
        one_run(*pairs[-1], 1, tmp + "/warm")  # build the fused extension, read a corpus: outside the timings
        gemm_before = gemm_gflops()
        wa, ua, rows_a = timed(lambda: [one_run(d, c, E, tmp + "/a") for d, c in pairs])
        wb, ub, rows_b = timed(lambda: Parallel(n_jobs=J)(delayed(one_run)(d, c, E, tmp + "/b") for d, c in pairs))
        wc, uc, rows_c = timed(lambda: Parallel(n_jobs=J)(delayed(one_stack)(d, c, D, E, tmp + "/c") for d, c in pairs))
        gemm_after = gemm_gflops()
    runs = len(pairs) * D
    from rnnbench import fused

    print(f"# this machine: 2048 x 2048 float32 matrix product on 1 thread {gemm_before:.0f} GFLOP/s before the "
          f"slice, {gemm_after:.0f} after; fused kernels {fused.kernels()}")
    print(f"# slice: {len(pairs)} dataset x cell pairs x {D} draws = {runs} runs x {E} epoch(s), batch 1, "
          f"the paper's units; {os.cpu_count()} cores")
    print(f"(a) one run at a time, 1 thread          : {wa * D:8.1f} s  (draw 0 x {D})  cores busy {ua:4.0%}")
    print(f"(b) {J} runs in parallel, 1 thread each    : {wb * D:8.1f} s  (draw 0 x {D})  cores busy {ub:4.0%}"
          f"  {wa / wb:5.2f}x faster than (a)")
    print(f"(c) stacks of {D} draws, {J} in parallel    : {wc:8.1f} s  (all draws)    cores busy {uc:4.0%}"
          f"  {wa * D / wc:5.2f}x faster than (a), {wb * D / wc:5.2f}x faster than (b)")
    print()
    print(f"# seconds per epoch (training + validation), alone: in (a) one at a time, in (b) two at a time; "
          f"stack: in (c), two at a time")
    print(f"{'dataset':<11}{'cell':<6}{'alone (a)':>10}{'alone (b)':>10}{'stack (c)':>10}{'per run':>9}"
          f"{'(b)/per run':>12}{'train-split pass (c)':>22}{'once (c)':>10}")
    stack_p = {(r["dataset"], r["cell"]): r for r in rows_c}
    par_p = {(r["dataset"], r["cell"]): r for r in rows_b}
    for r in rows_a:
        key = (r["dataset"], r["cell"])
        a = r["train"] + r["valid"]
        b = par_p[key]["train"] + par_p[key]["valid"]
        c = stack_p[key]["train"] + stack_p[key]["valid"]
        print(f"{r['dataset']:<11}{r['cell']:<6}{a:>10.2f}{b:>10.2f}{c:>10.2f}{c / D:>9.2f}{b * D / c:>11.2f}x"
              f"{stack_p[key]['train_pass']:>22.2f}{stack_p[key]['once']:>10.2f}")
    print()
    print(f"# projected full study: {len(args.datasets)} datasets x {len(args.cells)} cells x 10 draws, "
          f"every run going the same number of epochs (an upper bound: stack members that stop early leave it)")
    print(f"{'epochs per run':>15}{'(a)':>9}{'(b)':>9}{'(c)':>9}")

    def study(rows, wall, per_job_draws):
        measured = sum(r["seconds"] for r in rows)
        return lambda e: sum(project(r, e) for r in rows) * (wall / measured) * per_job_draws * (10 / D)

    pa, pb, pc = study(rows_a, wa, D), study(rows_b, wb, D), study(rows_c, wc, 1)
    for e in (25, 50, 100, 200, 500):
        print(f"{e:>15}{pa(e) / 3600:8.1f}h{pb(e) / 3600:8.1f}h{pc(e) / 3600:8.1f}h")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
