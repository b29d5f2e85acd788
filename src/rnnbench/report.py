"""From run directories to the paper's tables: collect, select on validation, compare.

Everything here reads stored results only (``summary.json``, ``metrics.csv``, ``config.yaml``,
and a sweep's ``multirun.yaml``); nothing is retrained.  Selection is on validation NLL, never
on test: for each dataset x cell the learning-rate draw with the best mean validation NLL over
the seeds that every draw has (the search's seeds; runs stopped by successive halving count as
the candidates they were) is chosen, and that draw's train and test NLL over all its seeds are
reported: mean, standard deviation and a 95% t-interval.  Cells are compared by their paired
differences over seeds, and the paper's two claims -- gated units beat tanh, GRU and LSTM are
about equal -- are judged on those intervals.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
from pathlib import Path
from typing import Iterable

import pandas as pd
from omegaconf import OmegaConf

from .errors import RunFileError, WriteError, qname
from .runs import format_lr, read_config, read_summary, read_yaml
from .sizes import INPUT_SIZE, PAPER_TABLE1

# Chung et al. (2014), Table 2: test NLL per time step (tanh, GRU, LSTM).
PAPER_TABLE2_TEST = {
    "nottingham": {"tanh": 3.13, "gru": 3.23, "lstm": 3.20},
    "jsb": {"tanh": 9.10, "gru": 8.54, "lstm": 8.67},
    "musedata": {"tanh": 6.23, "gru": 5.99, "lstm": 6.23},
    "piano": {"tanh": 9.03, "gru": 8.82, "lstm": 9.03},
    # Speech: the paper's private Ubisoft sets.  Our public stand-ins are different data, so these
    # are shown for orientation only and no difference is computed.
    "fsdd": {"tanh": 6.44, "gru": 3.59, "lstm": 2.70},   # Ubisoft A
    "yesno": {"tanh": 7.62, "gru": 0.88, "lstm": 1.26},  # Ubisoft B
}
OTHER_DATA = {"fsdd": "Ubisoft A", "yesno": "Ubisoft B"}
DATASET_ORDER = ["nottingham", "jsb", "musedata", "piano", "fsdd", "yesno"]
CELL_ORDER = ["tanh", "gru", "lstm", "gru_after"]
PAPER_WEIGHT_NOISE = 0.075  # the paper's weight noise (std), every cell and task
DATASET_TITLES = {"nottingham": "Nottingham", "jsb": "JSB Chorales", "musedata": "MuseData", "piano": "Piano-midi.de",
                  "fsdd": "FSDD (for Ubisoft A)", "yesno": "YESNO (for Ubisoft B)"}


def variant_label(weight_noise, chunk_steps=None, task=None) -> str:
    """What sets a run apart from the paper's protocol, for the report to label it: a weight noise
    other than 0.075 ("σ=0.02"), speech cut into chunks ("50-step chunks"); "" for a faithful run.
    A labelled variant is compared with the faithful cells but never enters Table 2."""
    parts = []
    try:
        wn = float(weight_noise)
    except (TypeError, ValueError):
        wn = math.nan
    if math.isfinite(wn) and abs(wn - PAPER_WEIGHT_NOISE) > 1e-12:
        parts.append(f"σ={wn:g}")
    if task == "speech" and chunk_steps not in (None, "", 0) and not pd.isna(chunk_steps):
        parts.append(f"{int(chunk_steps)}-step chunks")
    return ", ".join(parts)


def variant_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with each labelled variant's cell renamed ``"<cell> (<variant>)"`` (e.g. "tanh (σ=0.02)"),
    so that it is selected and compared as a cell of its own (:func:`base_cell` gives the cell back)."""
    if runs.empty or "variant" not in runs:
        return runs
    runs = runs.copy()
    v = runs["variant"].fillna("").astype(str)
    runs.loc[v != "", "cell"] = [f"{c} ({x})" for c, x in zip(runs.loc[v != "", "cell"], v[v != ""])]
    return runs


def base_cell(cell: str) -> str:
    return str(cell).split(" (", 1)[0]


def is_variant(cell: str) -> bool:
    return " (" in str(cell)


def _order(values: Iterable[str], preferred: list[str]) -> list[str]:
    values = list(dict.fromkeys(values))
    return [v for v in preferred if v in values] + sorted(v for v in values if v not in preferred)


# --------------------------------------------------------------------------- collecting

def _run_dirs(root: Path) -> list[Path]:
    """Run directories under ``root``: folders holding config.yaml or a .hydra folder."""
    found = {p.parent for p in root.rglob("config.yaml") if p.parent.name != ".hydra"}
    found |= {p.parent for p in root.rglob(".hydra") if p.is_dir()}
    return sorted(found)


def sweep_labels(sweep_dirs: Iterable[str | Path]) -> dict[Path, str]:
    """How tables name each sweep: its folder's name, or where two sweeps share a name the
    shortest ends of their paths that tell them apart (runs/a/quick and runs/b/quick are
    ``a/quick`` and ``b/quick``, two sweeps, never merged).  The same whichever directory the
    report is made from, and whether the paths are given relative or absolute."""
    sweeps = list(dict.fromkeys(map(Path, sweep_dirs)))
    parts = {s: Path(os.path.abspath(s)).parts for s in sweeps}
    labels = {}
    for s in sweeps:
        for n in range(1, len(parts[s]) + 1):
            end = parts[s][-n:]
            if all(parts[o][-n:] != end for o in sweeps if o != s and parts[o] != parts[s]):
                break
        labels[s] = "/".join(end)
    return labels


def collect_runs(sweep_dirs: Iterable[str | Path]) -> pd.DataFrame:
    """One row per run directory found under the given sweep directories."""
    rows = []
    labels = sweep_labels(sweep_dirs)
    for sweep in labels:
        if not sweep.is_dir():
            raise FileNotFoundError(f"{sweep}: no such sweep directory")
        for run in _run_dirs(sweep):
            row = {"sweep": labels[sweep], "run": run.relative_to(sweep).as_posix()}
            try:
                cfg = read_config(run) or OmegaConf.create({})
                row["draw"] = OmegaConf.select(cfg, "search.draw", default=None)
                summary = read_summary(run)
            except RunFileError as exc:  # listed by name; every other run is still reported
                parts = run.relative_to(sweep).parts
                row.update(status="unreadable", problem=str(exc), draw=None,
                           dataset=parts[0] if len(parts) > 2 else None, cell=parts[1] if len(parts) > 2 else None)
                rows.append(row)
                continue
            if summary is not None:
                row.update(summary)
                row.pop("padding_waste_eval", None)
            else:
                row.update(status="not started", dataset=OmegaConf.select(cfg, "dataset.name", default=None),
                           cell=OmegaConf.select(cfg, "cell.name", default=None),
                           seed=OmegaConf.select(cfg, "seed", default=None))
            row["variant"] = variant_label(
                row.get("weight_noise", OmegaConf.select(cfg, "train.weight_noise", default=None)),
                OmegaConf.select(cfg, "dataset.chunk_steps", default=None),
                row.get("task", OmegaConf.select(cfg, "dataset.task", default=None)))
            rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    if "variant" in df and (df["variant"].fillna("") == "").all():
        df = df.drop(columns="variant")  # (only sweeps holding a labelled variant carry the column)
    df["draw"] = df["draw"].astype("Int64")
    return df.sort_values(["sweep", "dataset", "cell", "draw", "seed", "run"], na_position="last").reset_index(drop=True)


def _multirun_params(path: Path, cfg) -> dict[str, str]:
    """The swept keys of a multirun.yaml: ``hydra.sweeper.params`` (null in a plain command-line
    sweep such as ``seed=0,1``), then the command line's ``hydra.overrides.task``, which win."""
    from omegaconf import DictConfig, ListConfig

    def section(node, dotted: str, kind, what: str):
        if node is None:
            return None
        if not isinstance(node, kind):
            raise RunFileError(path, f"damaged ({dotted} is a {type(node).__name__}, expected {what})",
                               MULTIRUN_REMEDY)
        return node

    hydra = section(cfg.get("hydra"), "hydra", DictConfig, "a mapping")
    if hydra is None:
        raise RunFileError(path, "damaged (no 'hydra' section: not a Hydra sweep's multirun.yaml)", MULTIRUN_REMEDY)
    sweeper = section(hydra.get("sweeper"), "hydra.sweeper", DictConfig, "a mapping")
    raw = section(sweeper.get("params") if sweeper is not None else None, "hydra.sweeper.params", DictConfig,
                  "a mapping of keys to values or null")
    params = {str(k): str(v) for k, v in (OmegaConf.to_container(raw, resolve=False) if raw is not None else {}).items()}
    overrides = section(hydra.get("overrides"), "hydra.overrides", DictConfig, "a mapping")
    task = section(overrides.get("task") if overrides is not None else None, "hydra.overrides.task", ListConfig,
                   "a list of overrides")
    for ov in task if task is not None else []:  # command-line sweeps override config ones
        key, sep, value = str(ov).partition("=")
        if not sep:
            raise RunFileError(path, f"damaged (hydra.overrides.task holds {str(ov)!r}, expected key=value)",
                               MULTIRUN_REMEDY)
        params[key.lstrip("+~")] = value
    return params


MULTIRUN_REMEDY = ("it is the sweep's record of what it asked for, which the missing-run check reads: restore it, "
                   "or move it away to report the runs without that check")


def expected_configs(sweep_dir: str | Path) -> list[dict] | None:
    """The (dataset, cell, draw, seed) combinations a Hydra sweep asked for, from its multirun.yaml;
    ``None`` when the folder has none (a folder of single runs).  A multirun.yaml that cannot be
    read, is not a mapping, or holds a sweep that cannot be parsed is a :class:`RunFileError`
    naming it (never a silently skipped missing-run check)."""
    path = Path(sweep_dir) / "multirun.yaml"
    if not path.exists() and not path.is_symlink():
        return None
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cfg = read_yaml(path, MULTIRUN_REMEDY)
    params = _multirun_params(path, cfg)
    keys = {"dataset": "dataset", "cell": "cell", "search.draw": "draw", "seed": "seed"}
    axes = {}
    parser = OverridesParser.create()
    for key, column in keys.items():
        if key not in params:
            continue
        try:
            ov = parser.parse_overrides([f"{key}={params[key]}"])[0]
            values = list(ov.sweep_string_iterator()) if ov.is_sweep_override() else [ov.get_value_element_as_str()]
        except Exception as exc:  # (Hydra's OverrideParseException, ValueError of a range, ...)
            msg = " ".join(str(exc).split())[:160]
            raise RunFileError(path, f"damaged (its sweep of {key} is {params[key]!r}, which Hydra cannot parse: "
                                     f"{msg})", MULTIRUN_REMEDY) from exc
        axes[column] = values
    if "seed" not in axes:
        seed = OmegaConf.select(cfg, "seed", default=0, throw_on_resolution_failure=False)
        axes["seed"] = [str(seed if seed is not None else 0)]
    if "draw" not in axes:
        axes["draw"] = [None]
    cols = list(axes)
    return [dict(zip(cols, combo)) for combo in itertools.product(*(axes[c] for c in cols))]


def _choices(run_dir: Path) -> dict:
    """The config-group options a run was composed from (``dataset: scores_folder``, ``cell: gru``),
    from Hydra's ``.hydra/hydra.yaml``; empty when it has none or it cannot be read (the run itself
    is read and reported from its own files)."""
    import yaml

    try:
        with open(run_dir / ".hydra" / "hydra.yaml", "rb") as f:
            data = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        choices = data["hydra"]["runtime"]["choices"]
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return {}
    return {str(k): str(v) for k, v in choices.items()} if isinstance(choices, dict) else {}


def _group_file(group: str, option: str) -> dict:
    """``conf/<group>/<option>.yaml`` as plain YAML (its name and kind), or empty."""
    import yaml

    from .cli import conf_dir

    try:
        data = yaml.safe_load((Path(conf_dir()) / group / f"{Path(option).name}.yaml").read_text())
    except (OSError, yaml.YAMLError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@functools.lru_cache(maxsize=None)
def _names_for(group: str, option: str) -> set[str]:
    """The names a run of config-group option ``option`` can carry in its summary: the option
    itself, or the literal ``name`` its group file gives (``dataset=piano`` might be named otherwise)."""
    name = _group_file(group, option).get("name")
    return {option} | ({str(name)} if isinstance(name, str) and "${" not in name else set())


def missing_runs(sweep_dirs: Iterable[str | Path], runs: pd.DataFrame) -> pd.DataFrame:
    """Combinations a sweep asked for (its multirun.yaml) with no run directory; compared on the
    swept keys only (a dataset fixed by the experiment is not a sweep axis).

    A sweep over config groups (``dataset=scores_folder,jsb``) names options, while a run's
    summary names its dataset (``scores-mine-1a2b3c4d``, or whatever ``dataset.name`` says): a
    run matches the option Hydra recorded it was composed from (``.hydra/hydra.yaml``), else
    its name or the literal name of the option's config file."""
    rows = []
    labels = sweep_labels(sweep_dirs)
    for sweep in labels:
        expected = expected_configs(sweep)
        if expected is None:
            continue
        sub = runs[runs["sweep"] == labels[sweep]] if not runs.empty else runs
        cols = [c for c in (expected[0] if expected else {}) if expected[0][c] is not None]
        have = set()
        for r in sub.itertuples() if len(sub) else ():
            choices = _choices(sweep / r.run) if {"dataset", "cell"} & set(cols) else {}
            options = []
            for c in cols:
                value = _as_str(getattr(r, c, None))
                if c in ("dataset", "cell"):
                    if c in choices:
                        options.append([choices[c]])
                    else:  # (no Hydra record: any option whose name the run carries)
                        wanted = {str(e[c]) for e in expected}
                        options.append([w for w in wanted if value in _names_for(c, w)] or [value])
                else:
                    options.append([value])
            have.update(itertools.product(*options))
        for e in expected:
            if tuple(str(e[c]) for c in cols) not in have:
                rows.append({"sweep": labels[sweep], **{c: v for c, v in e.items() if v is not None}})
    return pd.DataFrame(rows)


def _as_str(v) -> str | None:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


# --------------------------------------------------------------------------- tables

ENDED = ("finished", "pruned")  # runs that can be compared on validation
BUDGET_STOPS = ("max_epochs", "time_budget")
# The paper's cap: a run that reaches it ended as the paper's recipe ends runs ("at most 500
# epochs"), so unlike a lower cap or a time budget it does not keep its claims from being judged;
# Table 2 marks it ‡ (still improving when it stopped).
PAPER_MAX_EPOCHS = 500


def _at_paper_cap(runs: pd.DataFrame) -> pd.Series:
    """Which runs were stopped by the epoch cap at (or beyond) the paper's 500 epochs."""
    return (runs["stop_reason"] == "max_epochs") & (runs["epochs"].fillna(0) >= PAPER_MAX_EPOCHS)


def stopped_by_budget(runs: pd.DataFrame) -> pd.Series:
    """Which runs a budget stopped below the paper's cap (Table 2's ``*``: their claims are not judged)."""
    return runs["stop_reason"].isin(BUDGET_STOPS) & ~_at_paper_cap(runs)


EQUAL_WITHIN = 0.1  # nats: "GRU and LSTM are about equal" means |difference| below this


def ci95(values) -> tuple[float, float, float]:
    """Mean, sample standard deviation and the half-width of a 95% t-interval (NaN below 2 values)."""
    from scipy import stats

    v = [float(x) for x in values]
    n = len(v)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = sum(v) / n
    if n < 2:
        return mean, math.nan, math.nan
    sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1))
    return mean, sd, float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n))


def _scored(runs: pd.DataFrame) -> pd.Series:
    """Runs whose best epoch is a result: finished, or diverged after a best epoch (training blew up
    later, e.g. a tanh RNN's gradient overflowing; the best-validation weights stand, scored on
    train and test like any other run's, and Table 2 marks them)."""
    diverged_after_best = (runs["status"] == "diverged") & (runs.get("best_epoch", 0).fillna(0) > 0)
    return (runs["status"] == "finished") | diverged_after_best


def select_best(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset x cell: the draw (learning rate) with the best mean validation NLL over the seeds
    every draw has, and the train/valid/test NLL of all the scored runs at that rate (finished, or
    diverged after their best epoch)."""
    if runs.empty or "valid_nll" not in runs:
        return pd.DataFrame()
    runs = runs.assign(_scored=_scored(runs))
    ok = runs[runs["status"].isin(ENDED) | runs["_scored"]].dropna(subset=["valid_nll"])
    # (a boolean mask even when ``ok`` is empty: an empty object Series would select columns, not rows)
    ok = ok[ok["valid_nll"].map(lambda v: math.isfinite(float(v))).astype(bool)]
    rows = []
    for (dataset, cell), group in ok.groupby(["dataset", "cell"], sort=False):
        seeds_by_lr = [set(g["seed"]) for _, g in group.groupby("lr")]
        common = set.intersection(*seeds_by_lr) if seeds_by_lr else set()
        pool = group[group["seed"].isin(common)] if common else group
        by_lr = pool.groupby("lr")
        lr = by_lr["valid_nll"].mean().idxmin()
        chosen = group[(group["lr"] == lr) & group["_scored"]].sort_values("seed")
        if chosen.empty:
            continue
        n = len(chosen)
        test, test_sd, test_half = ci95(chosen["test_nll"])
        budget = chosen[stopped_by_budget(chosen)]
        rows.append({
            "dataset": dataset, "cell": cell, "units": int(chosen["units"].iloc[0]), "lr": float(lr),
            "draw": chosen["draw"].iloc[0], "seeds": n,
            "selected_on_seeds": " ".join(str(int(x)) for x in sorted(common)) if common else "all",
            "draws_compared": int(by_lr.ngroups),
            "draws_pruned": int(group[group["status"] == "pruned"]["lr"].nunique()),
            "train_nll": chosen["train_nll"].mean(), "valid_nll": chosen["valid_nll"].mean(),
            "test_nll": test, "test_std": test_sd, "test_ci95_low": test - test_half, "test_ci95_high": test + test_half,
            "best_epoch": int(chosen["best_epoch"].iloc[0]), "epochs": int(chosen["epochs"].iloc[0]),
            "updates": int(chosen["updates"].iloc[0]), "stop_reason": chosen["stop_reason"].iloc[0],
            "stopped_by_budget": len(budget), "at_paper_cap": int(_at_paper_cap(chosen).sum()),
            "diverged_after_best": int((chosen["status"] == "diverged").sum()),
            "batch_size": int(chosen["batch_size"].iloc[0]), "run": chosen["run"].iloc[0],
            "sweep": chosen["sweep"].iloc[0],
            **({"variant": chosen["variant"].fillna("").iloc[0]} if "variant" in chosen else {}),
        })
    best = pd.DataFrame(rows)
    if best.empty:
        return best
    best["paper_test"] = [math.nan if is_variant(c) else PAPER_TABLE2_TEST.get(d, {}).get(c, math.nan)
                          for d, c in zip(best.dataset, best.cell)]
    best["diff"] = [t - p if d not in OTHER_DATA else math.nan
                    for d, t, p in zip(best.dataset, best.test_nll, best.paper_test)]
    key = {d: i for i, d in enumerate(_order(best.dataset, DATASET_ORDER))}
    ckey = {c: i for i, c in enumerate(_cell_order(best.cell))}
    return best.sort_values(["dataset", "cell"], key=lambda s: s.map(key if s.name == "dataset" else ckey)).reset_index(drop=True)


def _cell_order(cells: Iterable[str]) -> list[str]:
    """Cells in the report's order: the faithful ones (the paper's three first), then the labelled
    variants, by their cell's place, weight-noise variants before chunked ones, then by label."""
    cells = list(dict.fromkeys(cells))
    faithful = _order([c for c in cells if not is_variant(c)], CELL_ORDER)
    bases = _order(list(dict.fromkeys(base_cell(x) for x in cells)), CELL_ORDER)
    variants = sorted((c for c in cells if is_variant(c)),  # (weight-noise variants before chunked ones)
                      key=lambda c: (bases.index(base_cell(c)), "chunks" in c, c))
    return faithful + variants


def _unscored(runs: pd.DataFrame | None, best: pd.DataFrame) -> dict[tuple[str, str], str]:
    """Dataset x cell pairs of Table 2's datasets that have runs but no result: "diverged" when every
    run of the pair diverged before a best epoch (a tanh RNN whose gradient overflows at once),
    otherwise "not finished"."""
    if runs is None or runs.empty or best.empty:
        return {}
    have = set(zip(best.dataset, best.cell))
    out = {}
    for (dataset, cell), group in runs[runs.dataset.isin(set(best.dataset))].groupby(["dataset", "cell"]):
        if (dataset, cell) not in have:
            out[(dataset, cell)] = "diverged" if (group["status"] == "diverged").all() else "not finished"
    return out


def table2(best: pd.DataFrame, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper's Table 2 layout: rows dataset x {train, test, paper test, difference}, columns cells.
    Given the ``runs``, a cell with runs but no result says why ("diverged" / "not finished")."""
    rows = []
    unscored = _unscored(runs, best)
    cells = _order(list(best.cell) + [c for _, c in unscored], CELL_ORDER)
    for dataset in _order(best.dataset, DATASET_ORDER):
        sub = best[best.dataset == dataset].set_index("cell")
        title = DATASET_TITLES.get(dataset, dataset)
        paper_label = f"test (paper, {OTHER_DATA[dataset]}: other data)" if dataset in OTHER_DATA else "test (paper)"
        for label, column in (("train", "train_nll"), ("test", "test_nll"), (paper_label, "paper_test"),
                              ("test - paper", "diff")):
            if (column == "diff" and dataset in OTHER_DATA) or (column != "train_nll" and column != "test_nll"
                                                                and dataset not in PAPER_TABLE2_TEST):
                continue  # no paper number for this dataset (or not comparable): no paper rows
            row = {"dataset": title, "split": label}
            for c in cells:
                if column == "paper_test":  # the paper's number stands even where our run failed
                    v = PAPER_TABLE2_TEST.get(dataset, {}).get(c, math.nan)
                elif column in ("train_nll", "test_nll") and (dataset, c) in unscored:  # (no result: not in sub)
                    row[c] = unscored[(dataset, c)]
                    continue
                else:
                    v = sub[column].get(c, math.nan) if c in sub.index else math.nan
                if column == "test_nll" and c in sub.index and sub.loc[c, "seeds"] > 1:
                    row[c] = f"{v:.2f} ± {sub.loc[c, 'test_std']:.2f}"
                else:
                    row[c] = "" if pd.isna(v) else (f"{v:+.2f}" if column == "diff" else f"{v:.2f}")
                if column == "test_nll" and c in sub.index and sub.loc[c, "stopped_by_budget"]:
                    row[c] += " *"  # stopped by an epoch or time budget, not by early stopping
                if column == "test_nll" and c in sub.index and sub.get("at_paper_cap", {}).get(c, 0):
                    row[c] += " ‡"  # stopped by the paper's own 500-epoch cap, still improving
                if column == "test_nll" and c in sub.index and sub.loc[c, "diverged_after_best"]:
                    row[c] += " †"  # diverged after its best epoch: its best-validation weights stand
            rows.append(row)
            if column == "test_nll" and (sub["seeds"] > 1).any():
                ci = {"dataset": title, "split": "test 95% interval"}
                for c in cells:
                    ci[c] = (f"[{sub.loc[c, 'test_ci95_low']:.2f}, {sub.loc[c, 'test_ci95_high']:.2f}]"
                             if c in sub.index and sub.loc[c, "seeds"] > 1 else "")
                rows.append(ci)
    return pd.DataFrame(rows)


def variants_table(best: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The labelled variants (cells named ``"<cell> (<variant>)"``), one row per dataset x variant:
    the selected draw's NLLs over its seeds, as in ``selected_runs``; a variant without a result
    says why ("diverged", "not finished")."""
    if runs.empty or not runs["cell"].map(is_variant).any():
        return pd.DataFrame()
    rows = []
    chosen = best[best["cell"].map(is_variant).astype(bool)] if not best.empty else best
    for (dataset, cell), group in runs[runs["cell"].map(is_variant).astype(bool)].groupby(["dataset", "cell"]):
        hit = chosen[(chosen.dataset == dataset) & (chosen.cell == cell)] if not chosen.empty else chosen
        row = {"dataset": dataset, "cell": base_cell(cell), "variant": cell[len(base_cell(cell)) + 2:-1],
               "units": int(group["units"].dropna().iloc[0]) if group["units"].notna().any() else None}
        if hit.empty:
            row["result"] = "diverged" if (group["status"] == "diverged").all() else "not finished"
        else:
            h = hit.iloc[0]
            row.update(result="", lr=h.lr, draw=h.draw, seeds=int(h.seeds), draws_compared=int(h.draws_compared),
                       train_nll=h.train_nll, valid_nll=h.valid_nll, test_nll=h.test_nll, test_std=h.test_std,
                       test_ci95_low=h.test_ci95_low, test_ci95_high=h.test_ci95_high, best_epoch=int(h.best_epoch),
                       epochs=int(h.epochs), stop_reason=h.stop_reason, stopped_by_budget=int(h.stopped_by_budget),
                       at_paper_cap=int(h.at_paper_cap),
                       diverged_after_best=int(h.diverged_after_best), sweep=h.sweep)
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in ("units", "draw", "seeds", "draws_compared", "best_epoch", "epochs", "stopped_by_budget", "at_paper_cap",
                "diverged_after_best"):  # (counts stay counts beside a variant without a result: 2, not 2.0000)
        if col in df:
            df[col] = df[col].astype("Int64")
    key = {d: i for i, d in enumerate(_order(df.dataset, DATASET_ORDER))}
    order = _cell_order(f"{c} ({v})" for c, v in zip(df.cell, df.variant))
    df["_k"] = [order.index(f"{c} ({v})") for c, v in zip(df.cell, df.variant)]
    return df.sort_values(["dataset", "_k"], key=lambda s: s.map(key) if s.name == "dataset" else s
                          ).drop(columns="_k").reset_index(drop=True)


def table1(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    seen = runs.dropna(subset=["params_recurrent"]).drop_duplicates(["task", "cell", "units"])
    for r in seen.itertuples():
        paper_units, paper_params = PAPER_TABLE1.get(r.task, {}).get(r.cell, (math.nan, math.nan))
        rows.append({"task": r.task, "cell": r.cell, "units": int(r.units), "input": INPUT_SIZE.get(r.task),
                     "params_recurrent": int(r.params_recurrent), "params_total": int(r.params_total),
                     "paper_units": paper_units, "paper_params": paper_params})
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    ckey = {c: i for i, c in enumerate(_order(df.cell, CELL_ORDER))}
    return df.sort_values(["task", "cell"], key=lambda s: s.map(ckey) if s.name == "cell" else s).reset_index(drop=True)


PAIRS = (("tanh", "gru"), ("tanh", "lstm"), ("gru", "lstm"))  # the paper's comparisons


def _pairs(cells: Iterable[str]) -> list[tuple[str, str]]:
    """The paper's pairs first, then every other pair of the cells present, in cell order (a cell
    of one's own is compared with each cell before it: tanh - mine, gru - mine, ...)."""
    cells = _order(cells, CELL_ORDER)
    others = [(a, b) for i, b in enumerate(cells) for a in cells[:i] if (a, b) not in PAIRS]
    return [p for p in PAIRS if set(p) <= set(cells)] + others


def paired_differences(runs: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: test NLL of cell a minus cell b at their selected rates, paired by seed, with a
    95% t-interval (positive: b is better), beside the paper's difference.  A labelled variant
    (``"tanh (σ=0.02)"``) is compared with every faithful cell but its own (variant first)."""
    rows = []
    ok = runs[_scored(runs)]
    for dataset in _order(best.dataset, DATASET_ORDER):
        sub = best[best.dataset == dataset].set_index("cell")
        faithful = [c for c in sub.index if not is_variant(c)]
        pairs = _pairs(faithful) + [(v, c) for v in _cell_order(sub.index) if is_variant(v)
                                    for c in _order(faithful, CELL_ORDER) if c != base_cell(v)]
        for a, b in pairs:
            per = {c: ok[(ok.dataset == dataset) & (ok.cell == c) & (ok.lr == sub.loc[c, "lr"])].set_index("seed")["test_nll"]
                   for c in (a, b)}
            seeds = sorted(set(per[a].index) & set(per[b].index))
            if not seeds:
                continue
            mean, _, half = ci95(per[a].loc[seeds].to_numpy() - per[b].loc[seeds].to_numpy())
            paper = PAPER_TABLE2_TEST.get(dataset, {})
            pa, pb = base_cell(a), base_cell(b)
            rows.append({"dataset": dataset, "pair": f"{a} - {b}", "seeds": len(seeds), "difference": mean,
                         "ci95_low": mean - half, "ci95_high": mean + half,
                         "paper_difference": (paper[pa] - paper[pb]) if {pa, pb} <= set(paper) else math.nan})
    return pd.DataFrame(rows)


def _verdict_better(low: float, high: float) -> str:
    if math.isnan(low):
        return "inconclusive (one seed)"
    return "holds" if low > 0 else "fails" if high < 0 else "inconclusive"


CAPPED = "not judged (* stopped by the epoch cap)"


def claims(diffs: pd.DataFrame, unscored: dict[tuple[str, str], str] | None = None,
           scored: dict[str, dict[str, int]] | None = None,
           capped: set[tuple[str, str]] | None = None) -> pd.DataFrame:
    """The paper's claims judged per dataset on the 95% intervals of the paired differences.

    "GRU beats tanh" / "LSTM beats tanh" hold when the interval of tanh - cell lies above 0 and fail
    when it lies below; "gated beats tanh" holds when both hold and fails when either fails.
    "GRU ≈ LSTM" holds when the interval of GRU - LSTM lies within ±0.1 nats and fails when it
    lies outside it.  Otherwise: inconclusive.  The paper's column applies the same rules to its
    single numbers (Table 2).  A labelled variant of tanh (``"tanh (σ=0.02)"``) run with several
    seeds gets the same claims against the faithful cells, after them ("GRU beats tanh (σ=0.02)");
    a one-seed variant (a diagnostic) gets none.  Where ``unscored``
    says every faithful tanh run of a dataset diverged before a best epoch while a gated cell has a
    result (``scored``: dataset -> {cell: seeds}), "GRU beats tanh" holds there without an
    interval: "holds (tanh diverged)".  Claims are judged on converged runs only: where a selected
    run of either cell (``capped``: (dataset, cell) pairs) was stopped by an epoch or time budget
    rather than by early stopping (`*` in Table 2), the verdict is "not judged" (the interval stays).
    A run stopped by the paper's own 500-epoch cap (`‡`) ended as the paper's recipe ends runs: its
    claims are judged.
    """
    rows = []
    capped = capped or set()
    diverged = {d for (d, c), why in (unscored or {}).items() if c == "tanh" and why == "diverged"}
    scored = scored or {}
    datasets = set(diffs["dataset"]) if not diffs.empty else set()
    for dataset in _order(datasets | {d for d in diverged if scored.get(d)}, DATASET_ORDER):
        d = diffs[diffs.dataset == dataset].set_index("pair") if not diffs.empty else pd.DataFrame()
        tanhs = list(dict.fromkeys(p.split(" - ", 1)[0] for p in d.index
                                   if base_cell(p.split(" - ", 1)[0]) == "tanh"))
        faithful = [t for t in tanhs if not is_variant(t)]
        if dataset in diverged and not faithful:
            rows += _diverged_tanh_rows(dataset, scored[dataset])
        # (a variant of one seed, a diagnostic, is in the variants and differences tables only)
        judged = [t for t in tanhs if is_variant(t)
                  and max(int(d.loc[p, "seeds"]) for p in d.index if p.startswith(f"{t} - ")) > 1]
        for tanh in faithful + ["gru - lstm"] + judged:
            if tanh == "gru - lstm":  # (after the faithful tanh's claims, before its variants')
                if tanh in d.index:
                    rows.append(_about_equal_row(dataset, d.loc[tanh],
                                                 bool({(dataset, "gru"), (dataset, "lstm")} & capped)))
                continue
            verdicts = {}
            for pair in d.index:  # "GRU beats tanh", "LSTM beats tanh", then any cell of one's own
                a, cell = pair.split(" - ", 1)
                if a != tanh or is_variant(cell):
                    continue
                r = d.loc[pair]
                verdicts[cell] = CAPPED if {(dataset, tanh), (dataset, cell)} & capped else \
                    _verdict_better(r.ci95_low, r.ci95_high)
                rows.append({"dataset": dataset, "claim": f"{cell.upper()} beats {tanh}", "seeds": int(r.seeds),
                             "evidence": _interval(r), "verdict": verdicts[cell],
                             "paper": _paper_says(r.paper_difference, lambda x: x > 0)})
            if {"gru", "lstm"} <= set(verdicts):
                v = [verdicts["gru"], verdicts["lstm"]]
                combined = "holds" if all(x == "holds" for x in v) else "fails" if "fails" in v else \
                    CAPPED if CAPPED in v else "inconclusive"
                paper = [d.loc[f"{tanh} - {c}", "paper_difference"] for c in ("gru", "lstm")]
                rows.append({"dataset": dataset, "claim": f"gated beats {tanh}",
                             "seeds": int(d.loc[f"{tanh} - gru", "seeds"]), "evidence": "both rows above",
                             "verdict": combined, "paper": "" if any(math.isnan(x) for x in paper)
                             else ("yes" if all(x > 0 for x in paper) else "no")})
    return pd.DataFrame(rows)


def _diverged_tanh_rows(dataset: str, cells: dict[str, int]) -> list[dict]:
    """The claims against a tanh RNN whose every run diverged before a best epoch: each cell with a
    result beats it, without an interval (``cells``: cell -> seeds)."""
    paper, rows, gated = PAPER_TABLE2_TEST.get(dataset, {}), [], []
    for cell in _order([c for c in cells if c != "tanh" and not is_variant(c)], CELL_ORDER):
        diff = paper["tanh"] - paper[cell] if {"tanh", cell} <= set(paper) else math.nan
        rows.append({"dataset": dataset, "claim": f"{cell.upper()} beats tanh", "seeds": int(cells[cell]),
                     "evidence": f"every tanh run diverged before a best epoch; {cell} has a result",
                     "verdict": "holds (tanh diverged)", "paper": _paper_says(diff, lambda x: x > 0)})
        gated += [cell] if cell in ("gru", "lstm") else []
    if len(gated) == 2:
        paper_v = [paper.get("tanh", math.nan) - paper.get(c, math.nan) for c in gated]
        rows.append({"dataset": dataset, "claim": "gated beats tanh", "seeds": int(min(cells[c] for c in gated)),
                     "evidence": "both rows above", "verdict": "holds (tanh diverged)",
                     "paper": "" if any(math.isnan(x) for x in paper_v) else ("yes" if all(x > 0 for x in paper_v) else "no")})
    return rows


def _about_equal_row(dataset: str, r, capped: bool = False) -> dict:
    if capped:
        verdict = CAPPED
    elif math.isnan(r.ci95_low):
        verdict = "inconclusive (one seed)"
    elif -EQUAL_WITHIN < r.ci95_low and r.ci95_high < EQUAL_WITHIN:
        verdict = "holds"
    elif r.ci95_low > EQUAL_WITHIN or r.ci95_high < -EQUAL_WITHIN:
        verdict = "fails"
    else:
        verdict = "inconclusive"
    return {"dataset": dataset, "claim": f"GRU ≈ LSTM (|difference| < {EQUAL_WITHIN} nats)",
            "seeds": int(r.seeds), "evidence": _interval(r), "verdict": verdict,
            "paper": _paper_says(r.paper_difference, lambda x: abs(x) < EQUAL_WITHIN)}


def _scored_cells(best: pd.DataFrame) -> dict[str, dict[str, int]]:
    return {d: dict(zip(g.cell, g.seeds)) for d, g in best.groupby("dataset")} if not best.empty else {}


def _interval(r) -> str:
    if math.isnan(r.ci95_low):
        return f"{r.name} = {r.difference:+.3f}"
    return f"{r.name} = {r.difference:+.3f} [{r.ci95_low:+.3f}, {r.ci95_high:+.3f}]"


def _paper_says(value: float, rule) -> str:
    return "" if value is None or math.isnan(value) else f"{'yes' if rule(value) else 'no'} ({value:+.2f})"


def pruned_runs(runs: pd.DataFrame) -> pd.DataFrame:
    if runs.empty or "status" not in runs:
        return pd.DataFrame()
    p = runs[runs["status"] == "pruned"]
    return p[["dataset", "cell", "lr", "seed", "epochs", "valid_nll", "stop_reason"]].reset_index(drop=True)


def status_table(runs: pd.DataFrame) -> pd.DataFrame:
    if runs.empty:
        return runs
    t = runs.groupby(["dataset", "cell", "status"]).size().unstack(fill_value=0).reset_index()
    return t


# --------------------------------------------------------------------------- writing

def _write_table(df: pd.DataFrame, out: Path, stem: str, floatfmt: str = ".4f") -> list[Path]:
    from .fileio import atomic_write_text

    paths = [atomic_write_text(out / f"{stem}.csv", df.to_csv(index=False, float_format="%.6g"))]
    paths.append(atomic_write_text(out / f"{stem}.md", _markdown(df, floatfmt) + "\n"))
    paths.append(atomic_write_text(out / f"{stem}.tex", _latex(df)))
    return paths


def _latex(df: pd.DataFrame) -> str:
    """LaTeX table: rates and other small numbers with 3 significant digits, NLLs with 2 decimals,
    empty cells empty."""
    def fmt(col: str):
        def f(v):
            if v is None or (not isinstance(v, str) and pd.isna(v)):
                return ""
            if isinstance(v, float):
                return format_lr(v) if col == "lr" else f"{v:.3g}" if v != 0 and abs(v) < 0.01 else f"{v:.2f}"
            return str(v)
        return f

    return df.to_latex(index=False, escape=True, formatters={c: fmt(str(c)) for c in df.columns}, na_rep="")


def _cell_text(v, col: str, floatfmt: str = ".4f") -> str:
    """One table cell as the Markdown tables print it: learning rates with 3 significant digits
    (0.00152, 0.00130), other floats with ``floatfmt``, missing values empty."""
    if isinstance(v, float):
        return "" if math.isnan(v) else format_lr(v) if col == "lr" else format(v, floatfmt)
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return ""
    v = str(v)
    return v if v.isprintable() else qname(v)  # (a name holding a newline would break a table: quoted, one line)


def formatted(df: pd.DataFrame, floatfmt: str = ".4f") -> pd.DataFrame:
    """The table as strings, formatted as in the report's Markdown tables (for notebooks)."""
    cols = [str(c) for c in df.columns]
    return pd.DataFrame([[_cell_text(v, c, floatfmt) for v, c in zip(row, cols)] for row in df.itertuples(index=False)],
                        columns=cols)


def _markdown(df: pd.DataFrame, floatfmt: str = ".4f") -> str:
    """A GitHub Markdown table without the optional tabulate dependency."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_cell_text(v, c, floatfmt).replace("|", "\\|") for v, c in zip(row, cols)) + " |")
    return "\n".join(lines)


def read_metrics(run_dir: Path, checked: bool = False) -> pd.DataFrame:
    """A run's metrics.csv (empty when missing; when damaged, empty too, or with ``checked`` the
    :class:`RunFileError` naming it)."""
    from .runs import read_metrics as read_checked

    try:
        return read_checked(run_dir)
    except RunFileError:
        if checked:
            raise
        return pd.DataFrame()


def selected_curves(sweep_dirs: Iterable[str | Path], runs: pd.DataFrame, best: pd.DataFrame,
                    damaged: list | None = None):
    """What the figures draw: the metrics of each dataset x cell's selected run (the lowest seed at
    the selected rate), the (datasets, cells) order, and per pair the rate, seed, units, seeds,
    task and best epoch -- or ``no_result`` ("diverged", "not finished") for a pair without a run
    to draw.  ``curves, order, info`` as :func:`rnnbench.figures.plot_curves` takes them.  A
    selected run whose metrics.csv is damaged gets no curve, and goes into ``damaged`` (``{sweep,
    run, problem}``) where that list is given."""
    labels = sweep_labels(sweep_dirs)
    curves, info = {}, {}
    for r in best.itertuples():
        sweep = next(s for s, label in labels.items() if label == r.sweep)
        try:
            curves[(r.dataset, r.cell)] = read_metrics(sweep / r.run, checked=True)
        except RunFileError as exc:  # named, not silently an empty curve
            curves[(r.dataset, r.cell)] = pd.DataFrame()
            if damaged is not None:
                damaged.append({"sweep": r.sweep, "run": r.run, "problem": str(exc)})
        row = runs[(runs["sweep"] == r.sweep) & (runs["run"] == r.run)].iloc[0]
        info[(r.dataset, r.cell)] = {"lr": r.lr, "seed": row.get("seed"), "seeds": r.seeds, "units": r.units,
                                     "task": row.get("task"), "best_epoch": row.get("best_epoch")}
    for key, why in _unscored(runs, best).items():
        info[key] = {"no_result": why}
    cells = _cell_order(list(best.cell) + [c for _, c in info])
    return curves, (_order(best.dataset, DATASET_ORDER), cells), info


def report_tables(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The report's tables from :func:`collect_runs`'s rows, as :func:`write_report` writes them
    (for notebooks): ``runs`` (labelled variants named as cells of their own), ``best`` (every
    selected cell), ``table2`` (faithful cells only), ``variants``, ``differences``, ``claims``."""
    runs = variant_cells(runs)
    best = select_best(runs)
    faithful_runs = runs[~runs["cell"].map(is_variant).astype(bool)] if not runs.empty else runs
    best_faithful = best[~best["cell"].map(is_variant).astype(bool)] if not best.empty else best
    empty = pd.DataFrame()
    t = {"runs": runs, "best": best, "best_faithful": best_faithful, "faithful_runs": faithful_runs,
         "table2": table2(best_faithful, faithful_runs) if not best_faithful.empty else empty,
         "variants": variants_table(best, runs) if not best.empty else empty}
    t["differences"] = paired_differences(runs, best) if not best.empty else empty
    capped = {(d, c) for d, c, n in zip(best.dataset, best.cell, best.stopped_by_budget) if n} if not best.empty else set()
    t["claims"] = (claims(t["differences"], _unscored(faithful_runs, best_faithful), _scored_cells(best_faithful),
                          capped) if not t["differences"].empty else empty)
    return t


# the files write_report may write, by stem (one per table, one per figure)
REPORT_FILES = ("table2", "selected_runs", "variants", "differences", "claims", "table1", "missing", "pruned",
                "curves_updates", "curves_seconds", "curves_variants_updates", "curves_variants_seconds", "grad_norms")


def write_report(sweep_dirs: list[str | Path], out: str | Path) -> dict:
    """Collect, tabulate and plot; return what was written and what is missing or failed."""
    from .fileio import atomic_write_text
    from .figures import paper_figure, plot_curves, plot_grad_norms

    sweep_dirs = [Path(s) for s in sweep_dirs]
    out = Path(out)
    for sweep in sweep_dirs:  # a damaged multirun.yaml is refused before anything is written
        expected_configs(sweep)
    runs = collect_runs(sweep_dirs)
    if runs.empty:
        raise FileNotFoundError(f"no run directories under {', '.join(map(str, sweep_dirs))}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # (under a file, read-only, ...)
        raise WriteError(out, exc) from exc
    written = [atomic_write_text(out / "runs.csv", runs.to_csv(index=False, float_format="%.6g"))]
    missing = missing_runs(sweep_dirs, runs)
    tables = report_tables(runs)  # (a labelled variant is selected and compared as a cell of its own)
    runs, best, best_faithful = tables["runs"], tables["best"], tables["best_faithful"]
    problems = runs[~runs["status"].isin(ENDED + ("unreadable",))][["sweep", "run", "dataset", "cell", "status"]]
    # a run that diverged after its best epoch has a result (its best-validation weights, scored);
    # one that diverged before any has none; the rest are still training, stopped or not started
    after_best = _scored(runs)[problems.index] & (runs.loc[problems.index, "status"] == "diverged")
    diverged_after = problems[after_best]
    diverged_before = problems[~after_best & (problems["status"] == "diverged")]
    unfinished = problems[problems["status"] != "diverged"]
    unreadable = runs[runs["status"] == "unreadable"][["sweep", "run", "problem"]] if "problem" in runs else \
        runs.iloc[0:0][["sweep", "run"]]
    pruned = pruned_runs(runs)
    sections = ["# Results", ""]
    if not best_faithful.empty:
        t2 = tables["table2"]
        written += _write_table(t2, out, "table2")
        written += _write_table(best, out, "selected_runs")
        sections += ["## Table 2: test NLL per time step, best learning rate on validation", "",
                     _markdown(t2), ""]
        if best_faithful["stopped_by_budget"].any():
            sections += ["`*`: the selected run (of some seed) was stopped by an epoch or time budget "
                         "(`stop_reason` max_epochs or time_budget), not by early stopping.", ""]
        if best_faithful["at_paper_cap"].any():
            sections += [f"`‡`: the selected run (of some seed) reached the paper's {PAPER_MAX_EPOCHS}-epoch cap "
                         "without early stopping (its validation NLL was still falling): it ended as the paper's "
                         "recipe ends runs, and its claims are judged.", ""]
        if t2.isin(["diverged"]).any().any():
            sections += ["`diverged`: every run of the cell ended with a non-finite loss or gradient before a best "
                         "epoch, so it has no number (see Runs that diverged before a best epoch).", ""]
        if t2.isin(["not finished"]).any().any():
            sections += ["`not finished`: the cell's runs are still training or stopped unfinished; no number yet.", ""]
        if best_faithful["diverged_after_best"].any():
            sections += ["`†`: a selected run (of some seed) diverged (a non-finite loss or gradient) after its "
                         "best epoch; its best-validation weights are reported, as for a run that stopped early "
                         "(see Runs that diverged after their best epoch).", ""]
    if not best.empty:
        variants = tables["variants"]
        if not variants.empty:
            written += _write_table(variants, out, "variants")
            sections += ["## Labelled variants (never in Table 2)", "",
                         "Runs that depart from the paper's protocol on purpose (another weight noise, speech cut "
                         "into chunks), selected on validation like any cell and compared with the faithful cells "
                         "below; Table 2 holds faithful runs only.", "", _markdown(variants), ""]
        diffs = tables["differences"]
        if not diffs.empty:
            written += _write_table(diffs, out, "differences")
            sections += ["## Paired differences between cells (test NLL, paired by seed, 95% t-interval)", "",
                         "Positive: the second cell is better.", "", _markdown(diffs, ".3f"), ""]
            cl = tables["claims"]
            if not cl.empty:
                written += _write_table(cl, out, "claims")
                sections += ["## The paper's claims, tested", "", "Verdicts on the 95% intervals above (holds / "
                             "fails / inconclusive); the paper's column applies the same rule to its Table 2.", "",
                             _markdown(cl), ""]
    t1 = table1(runs)
    if not t1.empty:
        written += _write_table(t1, out, "table1")
        sections += ["## Table 1: units and parameters", "", _markdown(t1, ".0f"), ""]
    st = status_table(runs)
    sections += ["## Runs by status", "", _markdown(st), ""]
    if not missing.empty:
        written += _write_table(missing, out, "missing")
        sections += [f"## Missing runs ({len(missing)})", "", _markdown(missing), ""]
    if not unreadable.empty:
        sections += [f"## Unreadable runs ({len(unreadable)})", "", "Damaged files, named; every other run is in "
                     "the tables above. Running a run's command again repairs what can be repaired.", "",
                     _markdown(unreadable), ""]
    if not pruned.empty:
        written += _write_table(pruned, out, "pruned")
        sections += [f"## Runs stopped by successive halving ({len(pruned)})", "", _markdown(pruned), ""]
    if not diverged_after.empty:
        sections += [f"## Runs that diverged after their best epoch ({len(diverged_after)})", "",
                     "A non-finite loss or gradient ended them after their best validation epoch: that epoch's "
                     "weights are scored and count like those of a run that stopped early (`†` in Table 2 where "
                     "one is a selected run).", "", _markdown(diverged_after), ""]
    if not diverged_before.empty:
        sections += [f"## Runs that diverged before a best epoch ({len(diverged_before)})", "",
                     "A non-finite loss or gradient ended them before any epoch had a finite validation NLL: "
                     "they have no result.", "", _markdown(diverged_before), ""]
    if not unfinished.empty:
        sections += [f"## Runs not finished ({len(unfinished)})", "", _markdown(unfinished), ""]
    if not best_faithful.empty:
        damaged: list[dict] = []
        curves, order, info = selected_curves(sweep_dirs, tables["faithful_runs"], best_faithful, damaged)
        written += plot_curves(curves, out, order=order, info=info)
        sections += ["## Learning curves of the selected runs", "",
                     "Training and validation NLL of the selected run (the lowest seed at the selected learning "
                     f"rate) of each cell, against parameter updates and against seconds of training (the top and "
                     f"bottom rows of {paper_figure(i['task'] for i in info.values() if i.get('task'))}); the star marks the best "
                     "validation epoch, whose weights are scored.",
                     "", "![updates](curves_updates.png)", "", "![seconds](curves_seconds.png)", ""]
        if best["cell"].map(is_variant).any():
            vcurves, vorder, vinfo = selected_curves(sweep_dirs, runs, best, damaged)
            written += plot_curves(vcurves, out, order=vorder, info=vinfo, prefix="curves_variants")
            sections += ["The same with the labelled variants beside the faithful cells (never in Table 2):", "",
                         "![updates](curves_variants_updates.png)", "", "![seconds](curves_variants_seconds.png)", ""]
            norms = plot_grad_norms(vcurves, out, vorder, vinfo)
            if norms:
                written += norms
                sections += ["Their gradient norms before clipping, per epoch (runs that recorded them):", "",
                             "![gradient norms](grad_norms.png)", ""]
        if damaged:
            damaged = list({(d["sweep"], d["run"]): d for d in damaged}.values())
            sections += [f"## Curves left out ({len(damaged)})", "", "The metrics.csv of these selected runs is "
                         "damaged, so their curves are not drawn (their results above come from summary.json).", "",
                         _markdown(pd.DataFrame(damaged)), ""]
    written.append(atomic_write_text(out / "report.md", "\n".join(sections)))
    # a table or figure an earlier report wrote into ``out`` and this one has not (no runs missing
    # any more, say) would contradict report.md: remove it (only the report's own file names)
    names = {Path(p).name for p in written}
    for stem in REPORT_FILES:
        for ext in ("csv", "md", "tex", "png", "pdf"):
            stale = out / f"{stem}.{ext}"
            if stale.name not in names and stale.is_file():
                stale.unlink()
    return {"written": written, "runs": runs, "best": best, "missing": missing, "problems": problems,
            "diverged_after_best": diverged_after, "diverged_before_best": diverged_before, "unfinished": unfinished,
            "pruned": pruned, "unreadable": unreadable}
