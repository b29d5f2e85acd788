"""How our test NLL would read under other ways of scoring: evidence for the gaps to the paper.

    python scripts/gap_analysis.py results/music/runs/search results/music/runs/seeds --out results/music/gap

For the run the report selects for each dataset x cell (seed 0), its ``best.pt`` is scored on the
test split again, several ways (nothing is retrained):

* ``per_frame``: the standard metric (and ours): NLL summed over the 88 keys, averaged over all
  frames of the split, every frame weighing the same -- equals ``summary.json``'s ``test_nll``
  (``summary_test``) up to the evaluator's float32 rounding;
* ``per_frame_float64``: the same in float64 (the model trained in float32): how far float32
  rounding moves the number -- by a few 1e-6 for most models, by 1e-2 for a tanh RNN whose
  recurrence amplifies rounding on a few long pieces;
* ``per_sequence``: the mean over sequences of each sequence's per-frame average (short pieces
  weigh as much as long ones);
* ``no_first_frame``: per frame, leaving out each sequence's first frame (predicted from the
  all-zero start frame, with no context);
* ``sounding_frames``: per frame, only frames with at least one key down;
* ``train_noisy``: the training loss under weight noise at the best epoch (``metrics.csv``'s
  ``train_loss_noisy``: the cost training minimised, which a paper might report as "train"),
  beside the noise-free ``train_nll``.

Writes ``gap.csv`` and ``gap.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd
import torch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep_dirs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    from rnnbench.data import load_dataset
    from rnnbench.report import collect_runs, read_metrics, select_best
    from rnnbench.runs import load_config, load_model
    from rnnbench.stack import sequence_nlls

    torch.set_num_threads(1)
    runs = collect_runs(args.sweep_dirs)
    best = select_best(runs)
    rows, corpora = [], {}
    for r in best.itertuples():
        sweep = next(s for s in args.sweep_dirs if s.name == r.sweep)
        run_dir = sweep / r.run
        cfg = load_config(run_dir)
        key = cfg.dataset.name
        if key not in corpora:
            corpora[key] = load_dataset(cfg.dataset, cfg.get("data_root"))
        corpus = corpora[key]
        if corpus.head != "bernoulli":
            continue
        _, model = load_model(run_dir, corpus=corpus)
        seqs = corpus["test"]
        nll = sequence_nlls(model, seqs)
        frames = sum(len(x) for x in nll)
        nll64 = sequence_nlls(model.double(), seqs, torch.float64)
        sounding = [s.sum(1) > 0 for s in seqs]
        m = read_metrics(run_dir).set_index("epoch")
        rows.append({
            "dataset": r.dataset, "cell": r.cell, "lr": r.lr, "best_epoch": r.best_epoch,
            "per_frame": sum(float(x.sum()) for x in nll) / frames,
            "summary_test": float(pd.read_json(run_dir / "summary.json", typ="series")["test_nll"]),
            "per_frame_float64": sum(float(x.sum()) for x in nll64) / frames,
            "per_sequence": sum(float(x.mean()) for x in nll) / len(nll),
            "no_first_frame": sum(float(x[1:].sum()) for x in nll) / (frames - len(nll)),
            "first_frame": sum(float(x[0]) for x in nll) / len(nll),
            "sounding_frames": sum(float(x[s].sum()) for x, s in zip(nll, sounding)) / sum(int(s.sum()) for s in sounding),
            "silent_fraction": 1 - sum(int(s.sum()) for s in sounding) / frames,
            "train_nll": r.train_nll,
            "train_noisy": float(m.loc[r.best_epoch, "train_loss_noisy"]) if r.best_epoch in m.index else math.nan,
            "paper_test": r.paper_test,
        })
    df = pd.DataFrame(rows)
    if not df.empty:
        df["lr"] = df["lr"].map(lambda v: f"{v:.3g}")
    args.out.mkdir(parents=True, exist_ok=True)
    from rnnbench.fileio import atomic_write_text
    from rnnbench.report import _markdown

    atomic_write_text(args.out / "gap.csv", df.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(args.out / "gap.md", _markdown(df, ".3f") + "\n")
    print(_markdown(df, ".3f"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
