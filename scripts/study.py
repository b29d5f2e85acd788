"""The converged music study: the learning-rate search, then more seeds at each selected rate.

    python scripts/study.py                       # 4 datasets x 3 cells, 2 pairs at a time
    python scripts/study.py --datasets jsb --cells gru --jobs 1

For every dataset x cell pair, one after another on each of ``--jobs`` workers:

1. the search: the paper's 10 learning-rate draws (seed 0) as one stack, to early stopping on
   validation (``train.patience``) or the paper's 500-epoch cap, with successive halving of the
   draws clearly behind (``hparams_search=paper_lr_halving``)::

       rnnbench-train -m experiment=chung2014_music hparams_search=paper_lr_halving dataset=D cell=C \\
           hydra.sweep.dir=RUNS/search hydra.launcher.n_jobs=1

2. the selection: the draw with the best validation NLL (never test), as ``rnnbench-report`` selects;
3. the seeds: seeds 1-4 at that draw, sharing seed 0's data order (``train.order_seed=0``: each seed
   its own initial weights and weight noise), as one stack::

       rnnbench-train -m experiment=chung2014_music dataset=D cell=C search.draw=K seed=1,2,3,4 \\
           train.order_seed=0 hydra.sweep.dir=RUNS/seeds hydra.launcher.n_jobs=1

Every step is an ordinary ``rnnbench-train`` command: running this script again skips finished
runs and resumes unfinished ones from their last epoch.  Each pair logs to ``RUNS/logs/D-C.log``.
Then ``rnnbench-report RUNS/search RUNS/seeds`` writes the tables.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

COST = {"musedata": 0, "nottingham": 1, "piano": 2, "jsb": 3}  # the longest first


def selected_draw(search_dir: Path, dataset: str, cell: str) -> int | None:
    """The draw of the best validation NLL among the pair's seed-0 runs that ended: finished, pruned,
    or diverged after a best epoch (whose best-validation weights stand, as the report counts them)."""
    best = None
    for summary in sorted((search_dir / dataset / cell).glob("*/summary.json")):
        s = json.loads(summary.read_text())
        cfg = (summary.parent / "config.yaml").read_text()
        ended = s.get("status") in ("finished", "pruned") or (s.get("status") == "diverged" and s.get("best_epoch"))
        if not ended or s.get("valid_nll") is None or int(s.get("seed", 0)) != 0:
            continue
        draw = next(int(line.split(":")[1]) for line in cfg.splitlines() if line.strip().startswith("draw:"))
        if math.isfinite(s["valid_nll"]) and (best is None or s["valid_nll"] < best[0]):
            best = (s["valid_nll"], draw)
    return None if best is None else best[1]


def run_pair(dataset: str, cell: str, args) -> str:
    root = Path(args.runs)
    log = root / "logs" / f"{dataset}-{cell}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    exe = str(Path(sys.executable).with_name("rnnbench-train"))
    common = [f"dataset={dataset}", f"cell={cell}", "hydra.launcher.n_jobs=1", *args.extra]
    with open(log, "a") as f:
        def call(cmd):
            f.write(f"\n$ {' '.join(cmd)}\n")
            f.flush()
            t0 = time.time()
            rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
            f.write(f"# exit {rc} after {time.time() - t0:.0f} s\n")
            f.flush()
            return rc

        search = [exe, "-m", "experiment=chung2014_music", "hparams_search=paper_lr_halving", *common,
                  f"hydra.sweep.dir={root / 'search'}"]
        if call(search) != 0:
            return f"{dataset}/{cell}: search failed (see {log})"
        draw = selected_draw(root / "search", dataset, cell)
        if draw is None:
            return f"{dataset}/{cell}: no draw finished (see {log})"
        if not args.seeds:
            return f"{dataset}/{cell}: draw {draw} selected"
        seeds = [exe, "-m", "experiment=chung2014_music", *common, f"search.draw={draw}",
                 "seed=" + ",".join(str(s) for s in args.seeds), "train.order_seed=0",
                 f"hydra.sweep.dir={root / 'seeds'}"]
        if call(seeds) != 0:
            return f"{dataset}/{cell}: seeds failed (see {log})"
        return f"{dataset}/{cell}: draw {draw} selected, seeds {args.seeds} done"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="*", default=["jsb", "nottingham", "musedata", "piano"])
    ap.add_argument("--cells", nargs="*", default=["tanh", "gru", "lstm"])
    ap.add_argument("--seeds", nargs="*", type=int, default=[1, 2, 3, 4])
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="pairs trained at a time")
    ap.add_argument("--runs", default=os.path.join(os.environ.get("RNNBENCH_RUNS", "runs"), "sweeps", "study"))
    ap.add_argument("--order", choices=["longest-first", "cheapest-first"], default="cheapest-first",
                    help="cheapest-first: whole datasets (search and seeds) are done early; longest-first: "
                         "the jobs finish closer together")
    ap.add_argument("extra", nargs="*", help="further rnnbench-train overrides for every command")
    args = ap.parse_args(argv)
    sign = -1 if args.order == "cheapest-first" else 1
    pairs = sorted(((d, c) for d in args.datasets for c in args.cells), key=lambda p: sign * COST.get(p[0], 9))
    t0 = time.time()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for line in pool.map(lambda p: run_pair(*p, args), pairs):
            print(f"[{time.time() - t0:7.0f} s] {line}", flush=True)
    print(f"study done in {(time.time() - t0) / 3600:.2f} h; next: rnnbench-report {args.runs}/search {args.runs}/seeds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
