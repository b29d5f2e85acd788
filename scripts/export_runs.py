"""Copy the small, reviewable files of sweeps into results/, and the checkpoints that matter.

    python scripts/export_runs.py runs/sweeps/study/search runs/sweeps/study/seeds --dest results/music/runs \
        --best selected --last unfinished

Per run: summary.json, metrics.csv, config.yaml; per sweep: multirun.yaml.  ``--best selected``
also copies ``best.pt`` of every run at the learning rate the report selects for its dataset x
cell (all its seeds), so anyone can re-score or sample the reproduced models (``--best all``:
every run's).  ``--last unfinished`` copies ``last.pt`` (and ``best.pt``, and a ``best.next.pt``
a killed run left) of runs that have not ended, so that a fresh clone resumes them with the same
command (pointed at ``--dest``); ended runs' ``last.pt``, and the ``best.pt`` of runs this export
does not copy (an earlier export's, stale if the run trained on since), are removed from
``--dest``.  The copies keep the sweep layout below the sweeps' common parent folder
(``study/search``, ``study/tanh_sigma0.02/search`` and ``study/tanh_diagnostics`` go to
``DEST/search``, ``DEST/tanh_sigma0.02/search``, ``DEST/tanh_diagnostics``), so
``rnnbench-report`` reads them like the originals.  The selection is the report's: a labelled
variant (another weight noise, chunks) is selected as a cell of its own.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

RUN_FILES = ("summary.json", "metrics.csv", "config.yaml")


def targets(sweeps: list[Path], dest: Path) -> dict[Path, Path]:
    """Where each sweep goes: its path below the sweeps' common parent folder, under ``dest``."""
    import os

    parents = [str(Path(os.path.abspath(s)).parent) for s in sweeps]
    common = Path(os.path.commonpath(parents))
    return {s: dest / Path(os.path.abspath(s)).relative_to(common) for s in sweeps}


def export(sweep: Path, target: Path, best_runs: set[Path] | None, last_unfinished: bool) -> int:
    import json

    n = 0
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
        elif (out / "best.pt").is_file():  # an earlier export's copy: stale once the run trained on
            (out / "best.pt").unlink()
        # the resumable state (best.next.pt: a new best's weights a killed run wrote before renaming
        # them; the resume settles them), removed once the run has ended
        for name in ("last.pt", "best.next.pt"):
            if last_unfinished and running and (run / name).is_file():
                shutil.copy2(run / name, out / name)
            elif (out / name).is_file():
                (out / name).unlink()
        n += 1
    return n


def selected_runs(sweeps: list[Path]) -> set[Path]:
    """Every run at the learning rate the report selects for its dataset x cell (all seeds), each
    labelled variant a cell of its own, as the report selects."""
    from rnnbench.report import collect_runs, report_tables, sweep_labels

    folder = {label: sweep for sweep, label in sweep_labels(sweeps).items()}
    tables = report_tables(collect_runs(sweeps))
    runs, best = tables["runs"], tables["best"]
    keep = set()
    for b in best.itertuples():
        for r in runs[(runs.dataset == b.dataset) & (runs.cell == b.cell) & (runs.lr == b.lr)].itertuples():
            keep.add((folder[r.sweep] / r.run).resolve())
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
    for sweep, target in targets(args.sweeps, args.dest).items():
        n = export(sweep, target, best, args.last == "unfinished")
        print(f"{sweep}: {n} runs -> {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
