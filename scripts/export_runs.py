"""Copy the small, reviewable files of sweeps into results/, and the checkpoints that matter.

    python scripts/export_runs.py runs/sweeps/study/search runs/sweeps/study/seeds --dest results/music/runs \
        --best selected --last unfinished

Per run: summary.json, metrics.csv, config.yaml; per sweep: multirun.yaml.  ``--best selected``
also copies ``best.pt`` of every run at the learning rate the report selects for its dataset x
cell (all its seeds), so anyone can re-score or sample the reproduced models (``--best all``:
every run's).  ``--last unfinished`` copies ``last.pt`` (and ``best.pt``) of runs that have not
ended, so that a fresh clone resumes them with the same command (pointed at ``--dest``); ended
runs' ``last.pt`` are removed from ``--dest``.  The copies keep the sweep layout, so
``rnnbench-report results/music/runs/*`` reads them like the originals.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

RUN_FILES = ("summary.json", "metrics.csv", "config.yaml")


def export(sweep: Path, dest: Path, best_runs: set[Path] | None, last_unfinished: bool) -> int:
    import json

    n = 0
    target = dest / sweep.name
    if (sweep / "multirun.yaml").is_file():
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(sweep / "multirun.yaml", target / "multirun.yaml")
    for summary in sorted(sweep.rglob("summary.json")):
        run = summary.parent
        out = target / run.relative_to(sweep)
        out.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:
            if (run / name).is_file():
                shutil.copy2(run / name, out / name)
        running = json.loads(summary.read_text()).get("status") == "running"
        if (best_runs is None or run.resolve() in best_runs or (last_unfinished and running)) \
                and (run / "best.pt").is_file():
            shutil.copy2(run / "best.pt", out / "best.pt")
        if last_unfinished and running and (run / "last.pt").is_file():
            shutil.copy2(run / "last.pt", out / "last.pt")
        elif (out / "last.pt").is_file():
            (out / "last.pt").unlink()  # the run has ended: its resumable state is no longer needed
        n += 1
    return n


def selected_runs(sweeps: list[Path]) -> set[Path]:
    """Every run at the learning rate the report selects for its dataset x cell (all seeds)."""
    from rnnbench.report import collect_runs, select_best

    runs = collect_runs(sweeps)
    best = select_best(runs)
    keep = set()
    for b in best.itertuples():
        for r in runs[(runs.dataset == b.dataset) & (runs.cell == b.cell) & (runs.lr == b.lr)].itertuples():
            sweep = next(s for s in sweeps if s.name == r.sweep)
            keep.add((sweep / r.run).resolve())
    return keep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweeps", nargs="+", type=Path)
    ap.add_argument("--dest", type=Path, required=True)
    ap.add_argument("--best", choices=["none", "selected", "all"], default="none")
    ap.add_argument("--last", choices=["none", "unfinished"], default="none")
    args = ap.parse_args(argv)
    best = {"none": set(), "all": None}.get(args.best)
    if args.best == "selected":
        best = selected_runs(args.sweeps)
    for sweep in args.sweeps:
        n = export(sweep, args.dest, best, args.last == "unfinished")
        print(f"{sweep}: {n} runs -> {args.dest / sweep.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
