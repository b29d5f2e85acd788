"""Whole-sweep benchmark: a fixed slice of the music study, run three ways, and the projected study.

    python scripts/bench_sweep.py                       # 1 epoch of every dataset x cell (draw 0)
    python scripts/bench_sweep.py --datasets jsb --epochs 3

The slice is run (a) one run at a time with PyTorch's default threads, (b) one run at a time with
one thread, and (c) as parallel jobs, one per core, one thread each (what `hydra/launcher=joblib`
does).  It prints wall times, the speed-up of (c) over (a), seconds per epoch of every dataset x
cell, and the projected wall time of the full music study (4 datasets x 3 cells x 10 draws) for a
range of epochs per run.  All numbers come from this one run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from joblib import Parallel, delayed

REPO = Path(__file__).resolve().parents[1]


def one_run(dataset: str, cell: str, epochs: int, threads: int | None, out: str, impl: str | None) -> dict:
    import torch
    from hydra import compose, initialize_config_dir

    from rnnbench import fused
    from rnnbench.train import train

    if impl:
        fused.set_impl(impl)
    if threads is None:
        torch.set_num_threads(os.cpu_count() or 1)
    overrides = [f"dataset={dataset}", f"cell={cell}", "experiment=chung2014_music", "search.draw=0",
                 f"train.max_epochs={epochs}", f"train.threads={threads if threads else 'null'}"]
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train", overrides=overrides)
    t0 = time.perf_counter()
    summary = train(cfg, Path(out) / f"{dataset}-{cell}-{threads}-{impl}")
    return {"dataset": dataset, "cell": cell, "seconds": time.perf_counter() - t0, "train_seconds": summary["wall_seconds"],
            "epochs": summary["epochs"]}


def run_slice(pairs, epochs, threads, jobs, impl=None):
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        if jobs == 1:
            rows = [one_run(d, c, epochs, threads, tmp, impl) for d, c in pairs]
        else:
            rows = Parallel(n_jobs=jobs)(delayed(one_run)(d, c, epochs, threads, tmp, impl) for d, c in pairs)
        return time.perf_counter() - t0, rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="*", default=["jsb", "nottingham", "musedata", "piano"])
    ap.add_argument("--cells", nargs="*", default=["tanh", "gru", "lstm"])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    ap.add_argument("--draws", type=int, default=10, help="draws per dataset x cell in the projected study")
    args = ap.parse_args(argv)
    pairs = [(d, c) for d in args.datasets for c in args.cells]
    # warm up: build the fused extension and read the corpora once (page cache), outside the timings
    run_slice(pairs[:1], 1, 1, 1)

    t_a, _ = run_slice(pairs, args.epochs, None, 1)
    t_b, rows_b = run_slice(pairs, args.epochs, 1, 1)
    t_c, _ = run_slice(pairs, args.epochs, 1, args.jobs)
    print(f"# slice: {len(pairs)} runs x {args.epochs} epoch(s), batch 1, the paper's units; {os.cpu_count()} cores")
    print(f"(a) one run at a time, default threads : {t_a:8.1f} s")
    print(f"(b) one run at a time, 1 thread        : {t_b:8.1f} s   ({t_a / t_b:.2f}x faster than a)")
    print(f"(c) {args.jobs} parallel jobs, 1 thread each  : {t_c:8.1f} s   ({t_a / t_c:.2f}x faster than a)")
    print()
    print(f"{'dataset':<11}{'cell':<6}{'s/epoch':>9}")
    per_epoch = {}
    for r in rows_b:
        per_epoch[(r["dataset"], r["cell"])] = r["seconds"] / r["epochs"]
        print(f"{r['dataset']:<11}{r['cell']:<6}{r['seconds'] / r['epochs']:>9.2f}")
    total_epoch = sum(per_epoch.values()) * args.draws
    eff = t_b / t_c  # measured parallel speed-up
    print()
    print(f"# projected full study: {len(args.datasets)} datasets x {len(args.cells)} cells x {args.draws} draws, "
          f"{args.jobs} jobs (measured parallel speed-up {eff:.2f}x)")
    for e in (25, 50, 100, 200, 500):
        print(f"  {e:>3} epochs per run: {total_epoch * e / eff / 3600:7.1f} h")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
