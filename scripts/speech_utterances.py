"""Where a speech run's NLL comes from: utterance by utterance, and epoch by epoch.

    python scripts/speech_utterances.py results/speech/runs/study --out results/speech/utterances

The speech NLL is a density: with the mixture's scales floored at 1e-3 of the normalised signal
(``rnnbench/mixture.py``) a step whose prediction is sure and wrong costs about (error / 1e-3)^2 / 2
nats per sample -- 5e5 for an error of one standard deviation, and without bound when a saturated
hidden state sends the predicted means far off (FSDD's GRU seeds: single steps of 1e6-4e8) -- and
the reported metric -- the mean over every step of a split -- can then be carried by a handful of
steps.  Gated runs on FSDD show it in their learning curves: between good epochs the noise-free
validation NLL jumps from about -7 to +45 or +6e4 nats per step.  This script says, for every
speech run under the given folders that holds a ``best.pt`` (each is scored from it alone; nothing
is retrained), how the mean it reports is made (a corpus cut into chunks, ``dataset.chunk_steps``,
is scored piece by piece, and its pieces are named by position):

* ``mean``: the NLL per step over the split, every step weighing the same (the metric; equals
  ``summary.json``'s ``valid_nll`` / ``test_nll``, shown as ``summary``, up to float32 rounding --
  which can be large where ``utts_off`` below is not 0: the trainer scores in batches, this script
  one utterance at a time, and the rounding differs);
* ``median_utt`` / ``worst_utt``: the median and the largest of the utterances' own means, and
  ``worst_name`` the worst utterance;
* ``mean_wo_worst``: the metric with the worst utterance left out;
* ``p99_step`` / ``max_step``: the 99th percentile and the largest NLL of a single step;
* ``mean_wo_top1pct``: the metric with the worst 1% of steps left out (how much a few steps move
  the mean);
* ``mean_float64``: the metric with the model and data in float64 (the runs train and score in
  float32), and ``utts_off``: how many utterances' own means move by more than 1e-3 nats per step
  between the two -- a hidden state driven into saturation can make a sequence's score depend on
  the rounding of every step (FSDD's GRU search draw 1 at its best epoch: 4 of 300 test
  utterances, one by 264 nats per step, the split's mean by 0.44);
* ``perturbed_median`` / ``perturbed_min`` / ``perturbed_max``: the metric (float32) over
  ``--perturb`` copies of the model (default 5) whose every weight is multiplied by
  ``1 + u * 2**-24``, ``u`` uniform in [-1, 1] (seeded): rounding-sized changes, the spread a
  different summation order could give; ``utts_unstable``: the utterances whose own mean moves by
  more than 1e-3 nats per step across these copies and the float64 score (FSDD's GRU draw 1: 4 of
  300 test utterances, and the split's mean from -6.42 to +1447), and ``mean_stable`` the metric
  over the other utterances, whose scores rounding does not decide;

and, from ``metrics.csv``, ``spikes``: how many of the run's epochs had a validation NLL more than
``--spike`` (default 10) nats per step above the best of the epochs before them -- a jump no
learning trend explains -- and ``worst_valid`` the largest validation NLL of an epoch.  Writes
``utterances.csv`` and ``utterances.md`` to ``--out`` (atomically), and ``by_cell.csv`` /
``by_cell.md``: per dataset, cell (a labelled variant, e.g. ``tanh (σ=0.02)``, as a cell of its
own, as the report has it) and split, over its seeds, the mean and 95% t-interval of ``mean`` (the
metric, what Table 2 reports), ``mean_stable`` and ``median_utt``, and how many seeds have an
utterance that rounding decides -- the numbers to read beside Table 2 when a few utterances carry
it; and ``claims.csv`` / ``claims.md``: the report's claims (``rnnbench.report.claims``: paired
differences over seeds, 95% t-intervals, the same verdicts, runs stopped by a cap below the paper's
500 epochs not judged) on the test split's ``mean`` (the metric, scored one utterance at a time),
``mean_stable`` and ``median_utt``.  Run it on the exported study, whose ``best.pt`` are those of
the selected seeds (a cell with runs at several rates is summed up and judged at the rate with
the most runs).

Scoring is the slow part (minutes a run on FSDD and YESNO, each split scored 2 + ``--perturb``
times), and a run's scores depend only on its ``best.pt`` and the corpus: a row of an
``utterances.csv`` already in ``--out`` whose run, split, ``best_sha256`` (of the ``best.pt`` it
scored) and ``perturbed_copies`` match is kept as it is, and only the columns read from
``summary.json`` and ``metrics.csv`` are read again, so that a study's runs can be measured as
they end and the final call scores only the rest (``--fresh`` scores every run again).  The
output is the same either way.
"""

from __future__ import annotations

import argparse
import copy
import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch


def find_runs(folders: list[Path], prog: str = "speech_utterances") -> list[Path]:
    """Run directories under ``folders`` (or the folders themselves) holding best.pt and config.yaml
    (also for ``speech_pieces.py``: ``prog`` names the script in the error)."""
    out = []
    for folder in folders:
        if not folder.is_dir():
            raise SystemExit(f"{prog}: {folder}: not a folder")
        found = [p.parent for p in sorted(folder.rglob("best.pt")) if (p.parent / "config.yaml").is_file()]
        if (folder / "best.pt").is_file() and (folder / "config.yaml").is_file():
            found = [folder]
        out.extend(found)
    return out


def parse_splits(text: str, prog: str = "speech_utterances") -> list[str]:
    """``--splits``: a comma-separated choice of train, valid, test, refused by name otherwise."""
    splits = [s for s in text.split(",") if s]
    if not splits or set(splits) - {"train", "valid", "test"}:
        raise SystemExit(f"{prog}: --splits {text!r}: expected a comma-separated choice of train, valid, test")
    return splits


def float64_columns(nll: list[np.ndarray], nll64: list[np.ndarray], tol: float = 1e-3) -> dict:
    steps = sum(len(x) for x in nll64)
    off = sum(abs(float(a.mean()) - float(b.mean())) > tol for a, b in zip(nll, nll64))
    return {"mean_float64": sum(float(x.sum()) for x in nll64) / steps, "utts_off": int(off)}


def perturbed(model, copies: int, seed: int = 0):
    """``copies`` models whose every weight is multiplied by ``1 + u * 2**-24``, u ~ U(-1, 1)."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(copies):
        m = copy.deepcopy(model)
        with torch.no_grad():
            for p in m.parameters():
                p.mul_(1 + (torch.rand(p.shape, generator=g, dtype=torch.float64) * 2 - 1).mul_(2.0**-24).to(p.dtype))
        yield m


def stability_columns(base: list[np.ndarray], others: list[list[np.ndarray]], also=(), tol: float = 1e-3) -> dict:
    """The split's mean over the perturbed copies (``others``: per copy, the per-step NLL of every
    utterance), and how many utterances' own means move by more than ``tol`` across ``base``, the
    copies and ``also`` (the float64 score)."""
    steps = sum(len(x) for x in base)
    split = np.array([sum(float(x.sum()) for x in per_model) / steps for per_model in others])
    means = np.array([[float(x.mean()) for x in per_model] for per_model in [base, *others, *also]])
    unstable = (means.max(0) - means.min(0)) > tol
    stable = [x for x, u in zip(base, unstable) if not u]
    return {"perturbed_median": float(np.median(split)) if len(split) else math.nan,
            "perturbed_min": float(split.min()) if len(split) else math.nan,
            "perturbed_max": float(split.max()) if len(split) else math.nan,
            "utts_unstable": int(unstable.sum()),
            "mean_stable": sum(float(x.sum()) for x in stable) / sum(len(x) for x in stable) if stable else math.nan}


def describe(nll: list[np.ndarray], names: list[str]) -> dict:
    steps = np.concatenate(nll)
    means = np.array([float(x.mean()) for x in nll])
    worst = int(means.argmax())
    rest = np.concatenate([x for i, x in enumerate(nll) if i != worst]) if len(nll) > 1 else steps[:0]
    top = int(math.ceil(0.01 * len(steps)))
    kept = np.sort(steps)[: len(steps) - top]
    return {
        "utterances": len(nll), "steps": int(len(steps)),
        "mean": float(steps.mean()),
        "median_utt": float(np.median(means)), "worst_utt": float(means[worst]),
        "worst_name": names[worst] if worst < len(names) else str(worst),
        "mean_wo_worst": float(rest.mean()) if len(rest) else math.nan,
        "p99_step": float(np.quantile(steps, 0.99)), "max_step": float(steps.max()),
        "mean_wo_top1pct": float(kept.mean()) if len(kept) else math.nan,
    }


# the columns scored from best.pt (kept from an earlier call when its best.pt is the same); the rest
# come from summary.json and metrics.csv and are read every time
SCORED = ("utterances", "steps", "mean", "median_utt", "worst_utt", "worst_name", "mean_wo_worst", "p99_step",
          "max_step", "mean_wo_top1pct", "mean_float64", "utts_off", "perturbed_median", "perturbed_min",
          "perturbed_max", "utts_unstable", "mean_stable")


def earlier_scores(out: Path) -> dict:
    """(run, split) -> the scored columns of an earlier call's utterances.csv in ``out`` (none if it
    has no such file or one written before best_sha256 was kept)."""
    path = out / "utterances.csv"
    if not path.is_file():
        return {}
    df = pd.read_csv(path, dtype={"worst_name": str, "best_sha256": str})
    if not {"run", "split", "best_sha256", "perturbed_copies", *SCORED} <= set(df.columns):
        return {}
    return {(r["run"], r["split"]): r for r in df.to_dict("records")}


def labelled_cells(df: pd.DataFrame) -> pd.Series:
    """The cell of each row as the report names it: a labelled variant as a cell of its own."""
    variant = df["variant"].fillna("")
    return df["cell"].where(variant == "", df["cell"] + " (" + variant + ")")


def at_one_rate(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of each dataset x cell (variants labelled) at one learning rate, the one with the
    most runs (the selected rate, in an exported study, where only its seeds keep best.pt)."""
    df = df.assign(cell=labelled_cells)
    runs = df.groupby(["dataset", "cell", "lr"], sort=False).size().reset_index(name="n")
    rate = runs.sort_values("n", ascending=False, kind="stable").drop_duplicates(["dataset", "cell"])
    keep = set(zip(rate["dataset"], rate["cell"], rate["lr"]))
    return df[[k in keep for k in zip(df["dataset"], df["cell"], df["lr"])]]


def by_cell(df: pd.DataFrame) -> pd.DataFrame:
    """Per dataset x cell (variants labelled) x split, over the seeds at its rate (:func:`at_one_rate`):
    ``mean``, ``mean_stable`` and ``median_utt`` as mean ± half-width of a 95% t-interval, and the
    seeds with an unstable utterance."""
    from rnnbench.report import ci95

    out = []
    for (dataset, cell, lr, split), g in at_one_rate(df).groupby(["dataset", "cell", "lr", "split"], sort=False):
        row = {"dataset": dataset, "cell": cell, "lr": lr, "split": split, "seeds": len(g)}
        for col in ("mean", "mean_stable", "median_utt"):
            mean, _, half = ci95(g[col].dropna())
            row[col] = mean
            row[f"{col}_ci95"] = half
        row["seeds_rounding_decides"] = int((g["utts_unstable"] > 0).sum())
        row["utts_unstable"] = int(g["utts_unstable"].sum())
        out.append(row)
    return pd.DataFrame(out)


STATISTICS = ("mean", "mean_stable", "median_utt")
CLAIM_COLUMNS = ["statistic", "dataset", "claim", "seeds", "evidence", "verdict", "paper"]


def utterance_claims(df: pd.DataFrame) -> pd.DataFrame:
    """The report's claims judged on the test split's ``STATISTICS`` in place of its mean test NLL."""
    from rnnbench.report import claims, paired_differences, stopped_by_budget

    test = at_one_rate(df[df["split"] == "test"])
    if test.empty:
        return pd.DataFrame(columns=CLAIM_COLUMNS)
    best = test.drop_duplicates(["dataset", "cell"])[["dataset", "cell", "lr"]]
    # (stopped by a cap below the paper's, the report's *: not judged)
    capped = {(d, c) for d, c, x in zip(test["dataset"], test["cell"], stopped_by_budget(test)) if x}
    out = []
    for stat in STATISTICS:
        runs = test.assign(test_nll=test[stat], status="finished", best_epoch=1)
        judged = claims(paired_differences(runs, best), capped=capped)
        if not judged.empty:
            out.append(judged.assign(statistic=stat))
    if not out:  # (no two cells with common seeds)
        return pd.DataFrame(columns=CLAIM_COLUMNS)
    return pd.concat(out, ignore_index=True)[CLAIM_COLUMNS]


def spikes(valid: pd.Series, jump: float) -> int:
    """Epochs whose validation NLL is more than ``jump`` above the best of the epochs before them."""
    best_before = valid.cummin().shift(1)
    return int((valid > best_before + jump).sum())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, help="run directories, or folders searched for them")
    ap.add_argument("--splits", default="valid,test", help="comma-separated splits to score (default valid,test)")
    ap.add_argument("--spike", type=float, default=10.0, help="a jump of the validation NLL above the best before it "
                    "that counts as a spike (nats per step; default 10)")
    ap.add_argument("--perturb", type=int, default=5, help="rounding-perturbed copies of each model to score (default 5)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--fresh", action="store_true", help="score every run again, also those an utterances.csv "
                    "already in --out holds for the same best.pt")
    args = ap.parse_args(argv)
    from rnnbench.data import load_dataset, sha256_of
    from rnnbench.fileio import atomic_write_text, read_json
    from rnnbench.report import _markdown, read_metrics, variant_label
    from rnnbench.runs import load_config, load_model
    from rnnbench.stack import sequence_nlls

    splits = parse_splits(args.splits)
    torch.set_num_threads(1)
    rows, corpora = [], {}
    earlier = {} if args.fresh else earlier_scores(args.out)
    runs = find_runs(args.folders)
    for run_dir in runs:
        cfg = load_config(run_dir)
        if cfg.dataset.task != "speech":
            continue
        digest = sha256_of(run_dir / "best.pt")
        summary = read_json(run_dir / "summary.json")
        metrics = read_metrics(run_dir)
        valid = pd.to_numeric(metrics["valid_nll"], errors="coerce")
        run = {"run": str(run_dir), "dataset": cfg.dataset.name, "cell": cfg.cell.name,
               "variant": variant_label(cfg.train.get("weight_noise"), cfg.dataset.get("chunk_steps"), cfg.dataset.task),
               "lr": float(cfg.optim.lr), "seed": int(cfg.seed)}
        from_files = {"spikes": spikes(valid, args.spike), "epochs": int(valid.notna().sum()),
                      "worst_valid": float(valid.max()), "stop_reason": summary.get("stop_reason"),
                      "perturbed_copies": args.perturb, "best_sha256": digest}
        model = corpus = None
        for split in splits:
            kept = earlier.get((str(run_dir), split))
            if kept is not None and kept["best_sha256"] == digest and int(kept["perturbed_copies"]) == args.perturb:
                scored = {k: kept[k] for k in SCORED}
                how = "kept from the earlier utterances.csv (the same best.pt)"
            else:
                if model is None:
                    key = repr(sorted((k, str(v)) for k, v in cfg.dataset.items()))
                    if key not in corpora:
                        corpora[key] = load_dataset(cfg.dataset, cfg.get("data_root"))
                    corpus = corpora[key]
                    _, model = load_model(run_dir, corpus=corpus)
                    model64 = copy.deepcopy(model).double()
                nll = sequence_nlls(model, corpus[split])
                nll64 = sequence_nlls(model64, corpus[split], torch.float64)
                others = [sequence_nlls(copy_, corpus[split]) for copy_ in perturbed(model, args.perturb)]
                names = list(corpus.utterances.get(split, []))
                if len(names) != len(nll):  # (cut into chunks: the pieces are named by position)
                    names = [f"piece {i}" for i in range(len(nll))]
                scored = {**describe(nll, names), **float64_columns(nll, nll64), **stability_columns(nll, others, [nll64])}
                how = "scored"
            row = {**run, "split": split, **scored, "summary": summary.get(f"{split}_nll", math.nan), **from_files}
            rows.append(row)
            print(f"{run_dir} {split} ({how}): mean {row['mean']:.4f} (summary {row['summary']}), median utterance "
                  f"{row['median_utt']:.4f}, worst {row['worst_utt']:.4f} ({row['worst_name']}), max step "
                  f"{row['max_step']:.1f}; float64 {row['mean_float64']:.4f} ({row['utts_off']} utterances off)", flush=True)
    if not rows:
        raise SystemExit(f"speech_utterances: no speech run with best.pt under {', '.join(map(str, args.folders))}")
    df = pd.DataFrame(rows)
    df["lr"] = df["lr"].map(lambda v: f"{v:.3g}")
    args.out.mkdir(parents=True, exist_ok=True)
    text = df.to_csv(index=False, float_format="%.6g")
    atomic_write_text(args.out / "utterances.csv", text)
    # the table shows the numbers as the csv holds them (6 digits), kept or scored afresh alike
    df = pd.read_csv(io.StringIO(text), dtype={"lr": str, "worst_name": str, "best_sha256": str, "variant": str,
                                               "stop_reason": str})
    shown = df.drop(columns=["run", "perturbed_copies", "best_sha256"])
    cells = by_cell(df)
    atomic_write_text(args.out / "by_cell.csv", cells.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(args.out / "by_cell.md", _markdown(cells, ".3f") + "\n")
    judged = utterance_claims(df)
    atomic_write_text(args.out / "claims.csv", judged.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(args.out / "claims.md", _markdown(judged, ".3f") + "\n")
    atomic_write_text(args.out / "utterances.md", _markdown(shown, ".3f") + "\n")
    print(_markdown(shown, ".3f"))
    print()
    print(_markdown(cells, ".3f"))
    print()
    print(_markdown(judged, ".3f"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
