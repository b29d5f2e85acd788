"""Each checkpoint scored again by rnnbench's own evaluator, from its run's ``best.pt`` and
``config.yaml`` alone, exactly as the trainer scores a run's best epoch, and compared with the
``summary.json`` the trainer wrote.

    python scripts/own_score.py results/speech/runs/study --out results/speech/own_scores.md
    python scripts/own_score.py results/music/runs --splits valid,test

Where ``scripts/rescore.py`` (an evaluator that shares no code with the project) asks whether the
numbers are right, this asks whether they are *reproducible* from the committed files: a fresh
model is built from the run's configuration, loaded with ``best.pt``, and scored on the corpus
read again from the data root, in float32, with the trainer's evaluation batches
(``train.eval_batch_frames``, ``train.eval_max_waste``) and kernels, as a stack of one.  A stack's
members are computed independently, so this gives the trainer's number to float rounding of the
final sum, even for a checkpoint whose score rounding decides (``docs/speech.md``): there, any
other evaluation (another batching, float64, ``rescore.py``) reads otherwise, this one must not.

Every run directory under the folders given (or a folder itself) that holds ``best.pt`` and
``config.yaml`` is scored; after ``export_runs.py --best selected`` those are the selected runs.
Exit 0 if every score agrees with ``summary.json`` to ``--tol`` (relative; default 1e-6), 1 if
not (each disagreement listed), 2 on bad input (a message naming the file).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from omegaconf import OmegaConf
from speech_utterances import find_runs, parse_splits  # (its neighbour in scripts/)

PROG = "own_score"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", type=Path, help="run directories, or folders holding them")
    ap.add_argument("--splits", default="test", help="comma-separated: train, valid, test (default test)")
    ap.add_argument("--tol", type=float, default=1e-6, help="relative tolerance (default 1e-6)")
    ap.add_argument("--data-root", default=None, help="default: each run's recorded data_root where it exists "
                    "on this machine, else $RNNBENCH_DATA, else the download cache")
    ap.add_argument("--out", type=Path, default=None, help="a markdown table of every score (written then renamed)")
    args = ap.parse_args(argv)
    splits = parse_splits(args.splits, PROG)

    from rnnbench import fused
    from rnnbench.errors import RnnbenchError
    from rnnbench.recipe import Splits
    from rnnbench.runs import load_config, load_model
    from rnnbench.stack import evaluate

    runs = find_runs(args.folders, PROG)
    if not runs:
        raise SystemExit(f"{PROG}: no run directory with best.pt and config.yaml under "
                         f"{', '.join(map(str, args.folders))}")
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)  # (as the trainer, on the CPU)
    if fused.get_impl() != "python":
        fused.load()
    t0 = time.time()
    data_cache, rows, bad = {}, [], []
    for run in runs:
        try:
            cfg = load_config(run)
            root = args.data_root if args.data_root is not None else cfg.get("data_root")
            if args.data_root is None and root and not Path(root).is_dir():
                root = None  # (the training machine's folder, absent here: $RNNBENCH_DATA, then the cache)
            cfg = OmegaConf.merge(cfg, {"data_root": root})
            summary_path = run / "summary.json"
            try:
                summary = json.loads(summary_path.read_text())
            except (OSError, ValueError) as exc:
                raise SystemExit(f"{PROG}: {summary_path}: cannot be read as JSON ({exc})")
            key = (OmegaConf.to_yaml(cfg.dataset), cfg.get("data_root"), cfg.train.get("eval_batch_frames"),
                   cfg.train.get("eval_max_waste"))
            if key not in data_cache:
                data_cache[key] = Splits(cfg)
            data = data_cache[key]
            _, model = load_model(run, corpus=data.corpus)
        except RnnbenchError as exc:
            raise SystemExit(f"{PROG}: {exc}")
        for split in splits:
            ours = evaluate(model, data.seqs[split], data.eval_batches[split], torch.device("cpu"))
            theirs = summary.get(f"{split}_nll")
            if not isinstance(theirs, (int, float)):
                raise SystemExit(f"{PROG}: {summary_path}: no number for {split}_nll (got {theirs!r})")
            diff = abs(ours - theirs) / max(abs(theirs), 1e-12)
            ok = diff <= args.tol
            rows.append((run, split, ours, theirs, diff, ok))
            if not ok:
                bad.append(rows[-1])
            print(f"{'ok' if ok else 'DIFFERS':>7}  {split:5}  ours {ours:.6f}  summary {theirs:.6f}  "
                  f"rel {diff:.1e}  {run}", flush=True)
    seconds = time.time() - t0
    same = sum(1 for r in rows if r[2] == r[3])
    verdict = (f"{len(rows) - len(bad)} of {len(rows)} scores agree with summary.json to {args.tol:g} relative "
               f"({same} exactly; the largest difference {max(r[4] for r in rows):.1e})"
               + (f"; {len(bad)} DIFFER" if bad else ""))
    print(f"{verdict}; {seconds:.0f} s")
    if args.out is not None:
        lines = ["# Selected checkpoints scored again by rnnbench's own evaluator", "",
                 f"Command: `python scripts/own_score.py {' '.join(map(str, args.folders))} --splits "
                 f"{','.join(splits)} --out {args.out}`",
                 f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; wall time {seconds:.1f} s "
                 f"(1 torch thread, torch {torch.__version__}).", "",
                 "Each model built from its run's `config.yaml`, loaded with `best.pt`, and scored as the trainer "
                 "scores a best epoch (float32, the trainer's evaluation batches, a stack of one); `rel`: "
                 "|ours − summary| / |summary| (`scripts/own_score.py`).", "",
                 "| run | split | ours | summary.json | rel | agrees |", "|---|---|---|---|---|---|"]
        lines += [f"| `{run}` | {split} | {ours:.6f} | {theirs:.6f} | {diff:.1e} | {'yes' if ok else '**NO**'} |"
                  for run, split, ours, theirs, diff, ok in rows]
        lines += ["", f"Verdict: {verdict}.", ""]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text("\n".join(lines))
        os.replace(tmp, args.out)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
