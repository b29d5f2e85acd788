"""Copy the small, reviewable files of finished sweeps into results/ (no checkpoints).

    python scripts/export_runs.py runs/sweeps/music_jsb_search runs/sweeps/music_budget --dest results/music/runs

Per run: summary.json, metrics.csv, config.yaml; per sweep: multirun.yaml.  The copies keep
the sweep layout, so ``rnnbench-report results/music/runs/*`` reads them like the originals.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

RUN_FILES = ("summary.json", "metrics.csv", "config.yaml")


def export(sweep: Path, dest: Path) -> int:
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
        n += 1
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweeps", nargs="+", type=Path)
    ap.add_argument("--dest", type=Path, required=True)
    args = ap.parse_args(argv)
    for sweep in args.sweeps:
        print(f"{sweep}: {export(sweep, args.dest)} runs -> {args.dest / sweep.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
