"""``rnnbench-report SWEEP_DIR [SWEEP_DIR ...]``: tables and figures from stored runs (no retraining)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import RnnbenchError
from ..report import write_report
from ..runs import check_sweep_dirs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="rnnbench-report", description=__doc__)
    p.add_argument("sweep_dirs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, default=None, help="output folder (default: FIRST_SWEEP_DIR/report)")
    args = p.parse_args(argv)
    try:
        check_sweep_dirs(args.sweep_dirs)
        out = args.out or args.sweep_dirs[0] / "report"
        result = write_report(args.sweep_dirs, out)
    except (FileNotFoundError, RnnbenchError) as exc:
        print(f"rnnbench-report: error: {exc}", file=sys.stderr)
        return 2
    runs, missing = result["runs"], result["missing"]
    print((out / "report.md").read_text())
    unreadable = result.get("unreadable")
    after, before = result["diverged_after_best"], result["diverged_before_best"]
    print(f"{len(runs)} runs read; {int((runs['status'] == 'finished').sum())} finished, "
          f"{int((runs['status'] == 'pruned').sum())} pruned, "
          f"{f'{len(after)} diverged after their best epoch (scored), ' if len(after) else ''}"
          f"{f'{len(before)} diverged before a best epoch, ' if len(before) else ''}"
          f"{len(result['unfinished'])} not finished, {len(missing)} missing"
          f"{f', {len(unreadable)} unreadable' if unreadable is not None and len(unreadable) else ''}.  Written to {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
