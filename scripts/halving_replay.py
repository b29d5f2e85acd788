"""Successive halving replayed on a stored full search: would it select the same rates, and what
would it save?

    python scripts/halving_replay.py results/music/runs/search --epochs 10 20 --keep 0.5 --min-keep 3 --margin 0.05

For every dataset x cell of the sweep, the validation curves of its draws (seed 0) are fed to the
same rule that training applies (``rnnbench.search.halving_decision``): at each checkpoint epoch
the draws still running are ranked by their best validation NLL so far; the best ``keep`` fraction
(at least ``min_keep``) go on, and of the others those more than ``margin`` nats behind stop.
Prints, per pair, the draw a full search selects and the one the halved search would, and the
epochs trained with and without halving.  Nothing is retrained.

A selection is only as good as the curves it is made on: ``converged`` counts, among the draws the
replayed halving lets run on past its last checkpoint, those whose stored run ended by early stopping (or diverged
after a best epoch).  A pair where one of them was cut by a budget (``train.max_epochs``,
``train.max_minutes``) or by the halving of the sweep itself is marked ``no``: its selection is one
at that budget, not at convergence.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep_dirs", nargs="+", type=Path)
    ap.add_argument("--epochs", nargs="+", type=int, default=[10, 20])
    ap.add_argument("--keep", type=float, default=0.5)
    ap.add_argument("--min-keep", type=int, default=3)
    ap.add_argument("--margin", type=float, default=0.05)
    ap.add_argument("--out", type=Path, default=None, help="also write the table here (.md)")
    args = ap.parse_args(argv)
    from rnnbench.report import _markdown, collect_runs, read_metrics
    from rnnbench.search import replay_halving

    import pandas as pd

    settings = {"epochs": sorted(args.epochs), "keep": args.keep, "min_keep": args.min_keep, "margin": args.margin}
    runs = collect_runs(args.sweep_dirs)
    runs = runs[(runs["seed"] == 0) & (runs["status"].isin(["finished", "pruned"]) | (
        (runs["status"] == "diverged") & runs["best_epoch"].notna()))]
    rows = []
    for (dataset, cell), group in runs.groupby(["dataset", "cell"], sort=False):
        curves, lrs, ended = {}, {}, {}
        for r in group.itertuples():
            ended[int(r.draw)] = r.stop_reason == "early_stopping" or r.status == "diverged"
            sweep = next(s for s in args.sweep_dirs if s.name == r.sweep)
            m = read_metrics(sweep / r.run)
            curves[int(r.draw)] = list(m["valid_nll"].dropna())
            lrs[int(r.draw)] = r.lr
        res = replay_halving(curves, settings)
        survivors = [d for d in curves if res["epochs"][d] > max(settings["epochs"])]  # (past the last checkpoint)
        converged = sum(ended[d] for d in survivors)
        full = sum(len(c) for c in curves.values())
        kept = sum(res["epochs"].values())
        rows.append({"dataset": dataset, "cell": cell, "draws": len(curves),
                     "selected_full": f"{res['selected_full']} ({lrs[res['selected_full']]:.3g})",
                     "selected_halving": f"{res['selected']} ({lrs[res['selected']]:.3g})",
                     "same": res["selected"] == res["selected_full"],
                     "converged": f"{'yes' if converged == len(survivors) else 'no'} ({converged}/{len(survivors)})",
                     "stopped": " ".join(f"{d}@{e}" for d, e in sorted(res["stopped"].items())),
                     "epochs_full": full, "epochs_halving": kept, "saved": f"{1 - kept / full:.0%}"})
    df = pd.DataFrame(rows)
    total_full, total_kept = int(df["epochs_full"].sum()), int(df["epochs_halving"].sum())
    text = (f"successive halving {settings} on {', '.join(str(s) for s in args.sweep_dirs)}\n\n" + _markdown(df) +
            f"\n\nall pairs: {total_kept} of {total_full} run-epochs ({1 - total_kept / total_full:.0%} saved); "
            f"the same draw selected in {int(df['same'].sum())} of {len(df)} pairs; every draw that halving "
            f"keeps run to early stopping (a selection at convergence) in {int(df['converged'].str.startswith('yes').sum())} of "
            f"{len(df)} pairs\n")
    print(text)
    if args.out:
        from rnnbench.fileio import atomic_write_text

        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
