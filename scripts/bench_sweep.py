"""Whole-sweep benchmark: a fixed slice of the music study, run three ways, and the projected study.

    python scripts/bench_sweep.py                        # 1 epoch of every dataset x cell x 10 draws
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
this one run.
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


def one_run(dataset: str, cell: str, epochs: int, out: str) -> dict:
    from rnnbench.train import train

    cfg = compose_cfgs(dataset, cell, [0], epochs)[0]
    t0 = time.perf_counter()
    summary = train(cfg, Path(out) / f"{dataset}-{cell}")
    return {"dataset": dataset, "cell": cell, "seconds": time.perf_counter() - t0, "epochs": summary["epochs"]}


def one_stack(dataset: str, cell: str, draws: int, epochs: int, out: str) -> dict:
    from rnnbench.stack import train_stack

    cfgs = compose_cfgs(dataset, cell, range(draws), epochs)
    t0 = time.perf_counter()
    train_stack(cfgs, [Path(out) / f"{dataset}-{cell}-{k}" for k in range(draws)])
    return {"dataset": dataset, "cell": cell, "seconds": time.perf_counter() - t0}


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
    ap.add_argument("--epochs", type=int, default=1)
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
        wa, ua, rows_a = timed(lambda: [one_run(d, c, E, tmp + "/a") for d, c in pairs])
        wb, ub, rows_b = timed(lambda: Parallel(n_jobs=J)(delayed(one_run)(d, c, E, tmp + "/b") for d, c in pairs))
        wc, uc, rows_c = timed(lambda: Parallel(n_jobs=J)(delayed(one_stack)(d, c, D, E, tmp + "/c") for d, c in pairs))
    runs = len(pairs) * D
    print(f"# slice: {len(pairs)} dataset x cell pairs x {D} draws = {runs} runs x {E} epoch(s), batch 1, "
          f"the paper's units; {os.cpu_count()} cores")
    print(f"(a) one run at a time, 1 thread          : {wa * D:8.1f} s  (draw 0 x {D})  cores busy {ua:4.0%}")
    print(f"(b) {J} runs in parallel, 1 thread each    : {wb * D:8.1f} s  (draw 0 x {D})  cores busy {ub:4.0%}"
          f"  {wa / wb:5.2f}x faster than (a)")
    print(f"(c) stacks of {D} draws, {J} in parallel    : {wc:8.1f} s  (all draws)    cores busy {uc:4.0%}"
          f"  {wa * D / wc:5.2f}x faster than (a), {wb * D / wc:5.2f}x faster than (b)")
    print()
    print(f"# seconds per epoch, alone: in (a) one at a time, in (b) two at a time; stack: in (c), two at a time")
    print(f"{'dataset':<11}{'cell':<6}{'alone (a)':>10}{'alone (b)':>10}{'stack (c)':>10}{'per run':>9}"
          f"{'(b)/per run':>12}")
    stack_s = {(r["dataset"], r["cell"]): r["seconds"] for r in rows_c}
    par_s = {(r["dataset"], r["cell"]): r["seconds"] for r in rows_b}
    for r in rows_a:
        key = (r["dataset"], r["cell"])
        a, b, s = r["seconds"] / E, par_s[key] / E, stack_s[key] / E
        print(f"{r['dataset']:<11}{r['cell']:<6}{a:>10.2f}{b:>10.2f}{s:>10.2f}{s / D:>9.2f}{b * D / s:>11.2f}x")
    print()
    print(f"# projected full study: {len(args.datasets)} datasets x {len(args.cells)} cells x 10 draws, "
          f"every run going the same number of epochs (an upper bound: stack members that stop early leave it)")
    print(f"{'epochs per run':>15}{'(a)':>9}{'(b)':>9}{'(c)':>9}")
    for e in (25, 50, 100, 200, 500):
        k = e / E * 10 / D
        print(f"{e:>15}{wa * D * k / 3600:8.1f}h{wb * D * k / 3600:8.1f}h{wc * k / 3600:8.1f}h")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
