"""What cutting utterances into pieces does to a speech checkpoint's score.

    python scripts/speech_pieces.py RUN_OR_FOLDER [...] [--steps 50] [--splits valid,test] [--out DIR]

For each speech run with a ``best.pt`` (and ``config.yaml``) under the folders given, its NLL per 10-sample step on the
chosen splits, scored twice with the same weights: on whole utterances, and on consecutive pieces
of at most ``--steps`` steps (``dataset.chunk_steps``: no step is lost, only the recurrent state
restarts at each piece), and the difference.  The same weights, the same steps, one number apart:
the cost of the restarts.  It is what makes a run trained and scored in pieces (the study's
``tanh (50-step chunks)`` diagnostic) comparable with runs scored on whole utterances:

    python scripts/speech_pieces.py results/speech/runs/study/tanh_diagnostics/yesno/tanh --steps 50

The runs' own framing (``chunk_steps`` in their config) is the one they were trained with; both
scores here override it (``variant`` names the labelled ones, e.g. ``50-step chunks``, as the
report does).  Prints a Markdown table; ``--out DIR`` also writes ``pieces.csv`` (with each run's
path) and ``pieces.md`` there (atomically).  One thread, float32, as the trainer scores.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf
from speech_utterances import find_runs, parse_splits  # (its neighbour in scripts/)


def per_step(nll: list) -> float:
    """The NLL per step over every step of a split (what the trainer reports)."""
    return float(np.concatenate([np.asarray(x, dtype=np.float64).ravel() for x in nll]).mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, help="run directories, or folders searched for them")
    ap.add_argument("--steps", type=int, default=50, help="steps per piece (default 50)")
    ap.add_argument("--splits", default="valid,test", help="comma-separated splits to score (default valid,test)")
    ap.add_argument("--out", type=Path, default=None, help="also write pieces.csv and pieces.md here")
    args = ap.parse_args(argv)
    splits = parse_splits(args.splits, "speech_pieces")
    if args.steps < 1:
        raise SystemExit(f"speech_pieces: --steps {args.steps}: expected a whole number of steps, at least 1")
    from rnnbench.data import load_dataset
    from rnnbench.fileio import atomic_write_text
    from rnnbench.report import _markdown, variant_label
    from rnnbench.runs import load_config, load_model
    from rnnbench.stack import sequence_nlls

    torch.set_num_threads(1)
    rows, corpora = [], {}

    def corpus_of(cfg, steps):
        """The run's corpus cut into pieces of ``steps`` (whole when None), read once per framing."""
        dataset = copy.deepcopy(cfg.dataset)
        OmegaConf.set_struct(dataset, False)
        dataset.chunk_steps = steps
        key = repr(sorted((k, str(v)) for k, v in dataset.items()))
        if key not in corpora:
            corpora[key] = load_dataset(dataset, cfg.get("data_root"))
        return corpora[key]

    for run_dir in find_runs(args.folders, "speech_pieces"):
        cfg = load_config(run_dir)
        if cfg.dataset.task != "speech":
            continue
        scores, model = {}, None
        for steps in (None, args.steps):
            corpus = corpus_of(cfg, steps)
            if model is None:  # (the same weights for both framings)
                _, model = load_model(run_dir, corpus=corpus)
            for split in splits:
                nll = sequence_nlls(model, corpus[split])
                scores[(steps, split)] = (per_step(nll), len(nll))
        for split in splits:
            (whole, n_whole), (cut, n_cut) = scores[(None, split)], scores[(args.steps, split)]
            rows.append({"run": str(run_dir), "dataset": cfg.dataset.name, "cell": cfg.cell.name,
                         "variant": variant_label(cfg.train.get("weight_noise"), cfg.dataset.get("chunk_steps"),
                                                  cfg.dataset.task),
                         "lr": f"{float(cfg.optim.lr):.3g}", "seed": int(cfg.seed), "split": split,
                         "utterances": n_whole, "pieces": n_cut, "steps_per_piece": args.steps,
                         "whole": whole, "pieces_nll": cut, "cost_of_restarts": cut - whole})
            print(f"{run_dir} {split}: whole utterances {whole:.4f} ({n_whole}), pieces of {args.steps} steps "
                  f"{cut:.4f} ({n_cut}), difference {cut - whole:+.4f}", flush=True)
    if not rows:
        raise SystemExit(f"speech_pieces: no speech run with best.pt under {', '.join(map(str, args.folders))}")
    df = pd.DataFrame(rows)
    table = _markdown(df.drop(columns="run"), ".3f")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out / "pieces.csv", df.to_csv(index=False, float_format="%.6g"))
        atomic_write_text(args.out / "pieces.md", table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
