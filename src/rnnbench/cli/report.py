"""``rnnbench-report SWEEP_DIR [SWEEP_DIR ...]``: tables and figures from stored runs (no retraining)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..report import write_report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="rnnbench-report", description=__doc__)
    p.add_argument("sweep_dirs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, default=None, help="output folder (default: FIRST_SWEEP_DIR/report)")
    args = p.parse_args(argv)
    out = args.out or args.sweep_dirs[0] / "report"
    try:
        result = write_report(args.sweep_dirs, out)
    except FileNotFoundError as exc:
        print(f"rnnbench-report: error: {exc}", file=sys.stderr)
        return 2
    runs, missing, problems = result["runs"], result["missing"], result["problems"]
    print((out / "report.md").read_text())
    print(f"{len(runs)} runs read; {int((runs['status'] == 'finished').sum())} finished, "
          f"{len(problems)} not finished, {len(missing)} missing.  Written to {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
