"""How close are music21's Bach chorales (dataset=chorales, offline) to the JSB Chorales benchmark?

    RNNBENCH_DATA=/path/to/data python scripts/compare_chorales_jsb.py            # seeds 0 1 2
    python scripts/compare_chorales_jsb.py --seeds 0 --runs /tmp/cmp --no-train     # statistics only

Prints, for both corpora: sequences, frames, notes per frame and sequence lengths per split;
how many JSB chorales open exactly like a music21 chorale (first 10 frames, up to
transposition) and by how many semitones the two are apart; then trains the same cell with
the same recipe and budget on both (the defaults of conf/train.yaml: GRU, 46 units, RMSProp
lr 1e-3, batch 1, weight noise 0.075, early stopping after 20 epochs without a better
validation NLL, at most --max-epochs) and prints the test NLL per frame at the best validation
epoch, plus each model's NLL on the other corpus's test split (JSB moved down an octave to
music21's written pitch, see below).  Runs are resumable: the same command reports finished
runs without retraining.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def compose(dataset: str, *overrides: str):
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        return hcompose(config_name="train", overrides=[f"dataset={dataset}", *overrides])


def print_stats(corpora) -> None:
    print(f"{'corpus':<9} {'split':<6} {'sequences':>9} {'frames':>7} {'notes/frame':>11} "
          f"{'mean_len':>8} {'min_len':>7} {'max_len':>7}")
    for corpus in corpora:
        rows = corpus.stats()
        total = dict(split="all", sequences=sum(r["sequences"] for r in rows), frames=sum(r["frames"] for r in rows),
                     min_len=min(r["min_len"] for r in rows), max_len=max(r["max_len"] for r in rows))
        notes = sum(int(s.sum()) for split in ("train", "valid", "test") for s in corpus[split])
        total["notes_per_frame"] = notes / total["frames"]
        for r in rows + [total]:
            print(f"{corpus.name:<9} {r['split']:<6} {r['sequences']:>9} {r['frames']:>7} {r['notes_per_frame']:>11.3f} "
                  f"{r['frames'] / r['sequences']:>8.1f} {r['min_len']:>7} {r['max_len']:>7}")


def pitch_summary(corpus) -> str:
    rolls = np.concatenate([s for split in ("train", "valid", "test") for s in corpus[split]])
    used = np.flatnonzero(rolls.any(0)) + 21
    mean = float((rolls * (np.arange(88) + 21)).sum() / rolls.sum())
    finals = collections.Counter((int(np.flatnonzero(s[-1]).min()) + 21) % 12 if s[-1].any() else -1
                                 for split in ("train", "valid", "test") for s in corpus[split])
    return (f"{corpus.name}: MIDI range {used.min()}..{used.max()}, mean pitch {mean:.1f}, "
            f"final bass note is a C in {finals[0]} of {sum(finals.values())} pieces")


def opening(roll: np.ndarray, n: int = 10):
    """The first ``n`` frames relative to the lowest note of the first frame (transposition-free)."""
    if len(roll) < n or not roll[0].any():
        return None
    base = int(np.flatnonzero(roll[0]).min())
    return tuple(tuple((np.flatnonzero(f) - base).tolist()) for f in roll[:n]), base


def overlap(chorales, jsb) -> None:
    index = collections.defaultdict(list)
    ours = {}
    for split in ("train", "valid", "test"):
        for pid, roll in zip(chorales.piece_ids[split], chorales[split]):
            ours[pid] = (split, roll)
            key = opening(roll)
            if key:
                index[key[0]].append((pid, key[1]))
    found, shifts, lendiff, same_split = 0, collections.Counter(), [], collections.Counter()
    matched_ours = set()
    for split in ("train", "valid", "test"):
        for roll in jsb[split]:
            key = opening(roll)
            if not key or key[0] not in index:
                continue
            pid, base = index[key[0]][0]
            found += 1
            matched_ours.add(pid)
            shifts[key[1] - base] += 1
            lendiff.append(len(roll) - len(ours[pid][1]))
            same_split[(split, ours[pid][0])] += 1
    n_jsb = sum(len(jsb[s]) for s in ("train", "valid", "test"))
    print(f"JSB chorales whose first 10 frames equal a music21 chorale's (up to transposition): {found} of {n_jsb} "
          f"({len(matched_ours)} distinct music21 chorales of {len(ours)})")
    print("  JSB pitch - music21 pitch (semitones): "
          + ", ".join(f"{k:+d}: {v}" for k, v in sorted(shifts.items(), key=lambda kv: -kv[1])))
    lc = collections.Counter(lendiff)
    print(f"  length JSB - music21 (frames): 0: {lc[0]}, +1: {lc[1]}, other: {sum(lc.values()) - lc[0] - lc[1]}")
    print("  (JSB split, music21 split) of the matched pairs: "
          + ", ".join(f"{a}/{b}: {v}" for (a, b), v in sorted(same_split.items())))


def shifted(corpus, semitones: int):
    """A copy of ``corpus`` with every roll moved by ``semitones`` keys (keys pushed out are dropped)."""
    import copy

    out = copy.copy(corpus)
    out.splits = {}
    for split in ("train", "valid", "test"):
        rolls = []
        for r in corpus[split]:
            s = np.zeros_like(r)
            if semitones >= 0:
                s[:, semitones:] = r[:, :88 - semitones]
            else:
                s[:, :88 + semitones] = r[:, -semitones:]
            rolls.append(s)
        out.splits[split] = rolls
    return out


def test_nll(model, corpus) -> float:
    from rnnbench.data import batch_indices
    from rnnbench.stack import evaluate

    seqs = corpus["test"]
    batches = batch_indices([len(s) for s in seqs], batch_size=10**9, shuffle=False, bucket=True, max_frames=400000)
    return evaluate(model, seqs, batches, "cpu")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=Path, default=REPO / "runs" / "compare_chorales_jsb")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--cell", default="gru")
    p.add_argument("--max-epochs", type=int, default=500)
    p.add_argument("--no-train", action="store_true", help="statistics only")
    args = p.parse_args(argv)

    import logging

    import torch

    from rnnbench.data import load_dataset
    from rnnbench.errors import RnnbenchError
    from rnnbench.runs import load_model
    from rnnbench.train import train

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    try:
        cfg_c, cfg_j = compose("chorales"), compose("jsb")
        chorales = load_dataset(cfg_c.dataset, cfg_c.get("data_root"))
        jsb = load_dataset(cfg_j.dataset, cfg_j.get("data_root"))
    except RnnbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("== corpora (one frame per quarter note in both)")
    print_stats([chorales, jsb])
    print(f"music21 {chorales.settings}; {len(chorales.skipped)} skipped, {len(chorales.duplicates)} duplicate(s) "
          f"dropped; cache {chorales.cache_path}")
    print("\n== pitch")
    print(pitch_summary(chorales))
    print(pitch_summary(jsb))
    print("\n== the same chorales?")
    overlap(chorales, jsb)
    if args.no_train:
        return 0

    print(f"\n== {args.cell}, same recipe and budget (conf/train.yaml defaults, at most {args.max_epochs} epochs)")
    jsb_down = shifted(jsb, -12)
    results = collections.defaultdict(list)
    print(f"{'trained on':<10} {'seed':>4} {'units':>5} {'epochs':>6} {'best':>4} {'seconds':>7} {'valid':>7} {'test':>7} "
          f"{'other test':>10}")
    for name, corpus, other, other_label in (("chorales", chorales, jsb_down, "JSB-12"),
                                             ("jsb", jsb, chorales, "chorales+12")):
        for seed in args.seeds:
            cfg = compose(name, f"cell={args.cell}", f"seed={seed}", f"train.max_epochs={args.max_epochs}",
                          "train.threads=1")
            run_dir = args.runs / name / args.cell / f"seed={seed}"
            s = train(cfg, run_dir)
            _, model = load_model(run_dir, corpus=corpus)
            cross = test_nll(model, other if name == "chorales" else shifted(chorales, 12))
            results[name].append((s["test_nll"], cross))
            print(f"{name:<10} {seed:>4} {s['units']:>5} {s['epochs']:>6} {s['best_epoch']:>4} {s['wall_seconds']:>7.0f} "
                  f"{s['valid_nll']:>7.3f} {s['test_nll']:>7.3f} {cross:>10.3f}  ({other_label})")
    print("\nmean test NLL per frame (sd over seeds):")
    for name, rows in results.items():
        tests = [r[0] for r in rows]
        cross = [r[1] for r in rows]
        sd = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0  # noqa: E731
        print(f"  trained on {name:<8}: own test {statistics.mean(tests):.3f} ({sd(tests):.3f}), "
              f"other corpus's test {statistics.mean(cross):.3f} ({sd(cross):.3f})   n={len(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
