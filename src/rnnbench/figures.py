"""Figures like the paper's Figures 2 (music) and 3 (speech): learning curves of each cell's selected run.

Each figure reads on its own: a title naming the datasets and what is drawn, the dataset and each
cell's selected learning rate in every panel's title, one legend for the whole figure (cells by
colour, validation and training NLL by line style), the seed in the title, and markers wherever a
curve has few points (a train curve evaluated every 10th epoch, a 3-epoch quick study).  Where a
few points would crush a panel's curves onto one line (a spike: a density's NLL per step is
unbounded above), the axis ends above the curves and those points are marked at its top, with how
many and how high (:func:`off_scale`).
"""

from __future__ import annotations

import textwrap
import zlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import EngFormatter  # noqa: E402

from .runs import format_lr  # noqa: E402

COLORS = {"tanh": "tab:blue", "gru": "tab:red", "lstm": "tab:green", "gru_after": "tab:orange"}
_MORE_COLORS = ("tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray", "goldenrod", "navy",
                "teal", "magenta")


def cell_color(cell: str) -> str:
    """The paper's cells keep their colours; any other cell (one's own, a labelled variant) gets one
    picked from its name, not from the order it is met (see :func:`cell_colors` for a figure)."""
    if cell in COLORS:
        return COLORS[cell]
    return _MORE_COLORS[zlib.crc32(cell.encode()) % len(_MORE_COLORS)]


def cell_colors(cells) -> dict[str, str]:
    """The colour of each cell of one figure: :func:`cell_color`, except that two cells whose names
    pick the same colour get different ones (the later name in sorted order takes the next free
    colour), so a figure never draws two cells alike; the same cells get the same colours in every
    figure."""
    colors = {c: COLORS[c] for c in cells if c in COLORS}
    for cell in sorted(c for c in set(cells) if c not in COLORS):
        start = _MORE_COLORS.index(cell_color(cell))
        free = [_MORE_COLORS[(start + k) % len(_MORE_COLORS)] for k in range(len(_MORE_COLORS))]
        colors[cell] = next((c for c in free if c not in colors.values()), free[0])
    return colors


CELL_NAMES = {"tanh": "tanh", "gru": "GRU", "lstm": "LSTM", "gru_after": "GRU (reset after)"}
TITLES = {"nottingham": "Nottingham", "jsb": "JSB Chorales", "musedata": "MuseData", "piano": "Piano-midi.de",
          "fsdd": "FSDD (speech)", "yesno": "YESNO (speech)", "chorales": "Bach chorales (music21)",
          "folk": "O'Neill's Irish tunes (music21)"}
SPARSE = 40  # a curve with at most this many points is drawn with a marker at each


def _save(fig, out: Path, stem: str) -> list[Path]:
    from .fileio import atomic_write

    paths = []
    for ext, meta in (("png", {"Software": None}), ("pdf", {"CreationDate": None, "Producer": None})):
        paths.append(atomic_write(out / f"{stem}.{ext}",
                                  lambda p, ext=ext, meta=meta: fig.savefig(p, format=ext, metadata=meta, dpi=120,
                                                                            bbox_inches="tight")))
    plt.close(fig)
    return paths


def cell_label(cell: str, info: dict | None = None) -> str:
    """``GRU-46`` (with the units when known)."""
    name = CELL_NAMES.get(cell, cell)
    units = (info or {}).get("units")
    return f"{name}-{int(units)}" if units is not None and not pd.isna(units) else name


def _seeds_text(info: dict) -> str:
    """Which seed the curves are of, and of how many at each selected rate: "seed 0 (of 5 per rate)"."""
    seeds = sorted({int(i["seed"]) for i in info.values() if i.get("seed") is not None and not pd.isna(i["seed"])})
    if not seeds:
        return ""
    text = f"seed {seeds[0]}" if len(seeds) == 1 else "seeds " + ", ".join(map(str, seeds))
    counts = sorted({int(i["seeds"]) for i in info.values() if i.get("seeds") is not None and not pd.isna(i["seeds"])})
    if counts and max(counts) > 1:
        text += (f" of the {counts[0]} at each selected rate" if len(counts) == 1 else
                 f" (each selected rate has {counts[0]}-{counts[-1]} seeds)")
    return text


def paper_figure(tasks) -> str:
    """Which of the paper's figures the curves redraw: Figure 2 for music (Nottingham and
    MuseData), Figure 3 for speech (Ubisoft A and B), each iterations above and wall-clock time
    below."""
    number = {"music": "Figure 2", "speech": "Figure 3"}
    tasks = set(tasks)
    if len(tasks) == 1 and next(iter(tasks)) in number:
        return "the paper's " + number[next(iter(tasks))]
    return "the paper's Figures 2 (music) and 3 (speech)"


def _legend_rows(rows: list[list], ncol: int) -> list:
    """Handles in the order that makes ``fig.legend(ncol=ncol)`` (which fills column by column)
    show each of ``rows`` on lines of its own, at most ``ncol`` to a line."""
    blank = Line2D([], [], alpha=0, label=" ")
    lines = []
    for row in rows:
        for i in range(0, max(len(row), 1), ncol):
            part = row[i:i + ncol]
            lines.append(part + [blank] * (ncol - len(part)))
    return [line[c] for c in range(ncol) for line in lines]


def off_scale(series: list) -> tuple[tuple[float, float], list] | None:
    """Where a panel's y axis ends when a few points would crush it, and which points lie above.

    ``series``: the ``(x, y)`` arrays of a panel's curves.  Learning curves start high and come
    down, so the panel spans the lowest point to the highest *first* point of any curve.  A point
    more than that whole span above the highest first point is off the scale: a spike (a density's
    NLL per step is unbounded above: one epoch's validation at 1e5 where the others read -13) that
    would otherwise squash every curve onto one line.  Returns ``None`` when no point is that far
    up (every music curve: the axis is matplotlib's own), else the axis's ``(bottom, top)`` (5% of
    the span beyond the lowest and the highest point kept) and ``[(x, y), ...]`` of the points
    above it."""
    import numpy as np

    firsts, ys = [], []
    for x, y in series:
        y = np.asarray(y, dtype=float)
        y = y[np.isfinite(y)]
        if len(y):
            firsts.append(y[0])
            ys.append(y)
    if not ys:
        return None
    values = np.concatenate(ys)
    low, high = float(values.min()), max(firsts)
    if not high > low:
        return None
    limit = high + (high - low)
    if not (values > limit).any():
        return None
    kept = float(values[values <= limit].max())
    pad = 0.05 * (kept - low)
    top = kept + pad
    # (a point just above the limit may still lie below the padded top: drawn, so not "above")
    off = [(float(xx), float(yy)) for x, y in series for xx, yy in zip(np.asarray(x, dtype=float),
                                                                       np.asarray(y, dtype=float))
           if np.isfinite(yy) and yy > top]
    return ((low - pad, top), off) if off else None


def plot_curves(curves: dict[tuple[str, str], pd.DataFrame], out: Path, order,
                info: dict[tuple[str, str], dict] | None = None, prefix: str = "curves") -> list[Path]:
    """Draw the figures of :func:`curves_figures` and write each as ``<stem>.png`` and ``.pdf``
    (``<prefix>_updates``, ``<prefix>_seconds``)."""
    paths = []
    for stem, fig in curves_figures(curves, order, info):
        paths += _save(fig, out, prefix + stem[len("curves"):])
    return paths


def curves_figures(curves: dict[tuple[str, str], pd.DataFrame], order,
                   info: dict[tuple[str, str], dict] | None = None) -> list[tuple[str, plt.Figure]]:
    """One panel per dataset; train (dashed, at the epochs it was evaluated: every
    ``train.eval_train_every`` epochs and the best one) and validation (solid, every epoch) NLL per
    cell, against updates and against wall-clock seconds of training.

    ``info[(dataset, cell)]`` may give the run drawn: ``lr``, ``seed``, ``units``, ``seeds`` (how
    many seeds the selected rate has), ``task`` and ``best_epoch``; they go into the titles and the
    legend.  ``no_result`` (e.g. "diverged") names a cell that has no curve, in its panel's title."""
    datasets, cells = order
    info = info or {}
    drawn = [c for c in cells if any((d, c) in curves and not curves[(d, c)].empty for d in datasets)]
    tasks = {i["task"] for i in info.values() if i.get("task")}
    unit = "NLL per 10-sample step (nats)" if tasks == {"speech"} else "NLL per time step (nats)"
    names = ", ".join(TITLES.get(d, d) for d in datasets)
    seeds = _seeds_text({k: v for k, v in info.items() if k in curves})
    figure = paper_figure(tasks)
    colors = cell_colors(drawn)
    width = max(4.6 * len(datasets), 9.0)
    # the legend: cells on lines of their own, then the line styles
    ncol = max(3, min(len(drawn), len(datasets) + 1))
    lines = -(-max(len(drawn), 1) // ncol) + 1
    height = 4.2 + 0.27 * (lines - 2)
    figures = []
    for xkey, xlabel, stem, what in (
            ("updates", "parameter updates", "curves_updates", f"against parameter updates (as the top row of {figure})"),
            ("wall_seconds", "seconds of training (evaluation not counted)", "curves_seconds",
             f"against seconds of training (as the bottom row of {figure})")):
        fig, axes = plt.subplots(1, len(datasets), figsize=(width, height), squeeze=False)
        for ax, dataset in zip(axes[0], datasets):
            rates, notes, drawn_here = [], [], []
            for cell in cells:
                m = curves.get((dataset, cell))
                if m is None or m.empty:
                    if info.get((dataset, cell), {}).get("no_result"):  # e.g. every run diverged at once
                        notes.append(f"{CELL_NAMES.get(cell, cell)} {info[(dataset, cell)]['no_result']}")
                    continue
                i = info.get((dataset, cell), {})
                color = colors[cell]
                v = m.dropna(subset=["valid_nll"])
                ax.plot(v[xkey], v["valid_nll"], color=color, marker="o" if len(v) <= SPARSE else None, ms=3)
                t = m.dropna(subset=["train_nll"])  # (every train.eval_train_every epochs, and the best one)
                ax.plot(t[xkey], t["train_nll"], color=color, ls="--", marker="o" if len(t) <= SPARSE else ".",
                        ms=3.5, mfc="white", alpha=0.8)
                drawn_here += [(v[xkey], v["valid_nll"], color), (t[xkey], t["train_nll"], color)]
                best = i.get("best_epoch")
                if best is not None and not pd.isna(best):
                    b = v[v["epoch"] == int(best)] if "epoch" in v else v.iloc[0:0]
                    if not b.empty:
                        ax.plot(b[xkey], b["valid_nll"], color=color, marker="*", ms=11, mec="black", mew=0.6,
                                ls="none", zorder=5)
                if i.get("lr") is not None:
                    rates.append(f"{CELL_NAMES.get(cell, cell)} {format_lr(i['lr'])}")
            scale = off_scale([(x, y) for x, y, _ in drawn_here])
            if scale is not None:  # a few spikes would crush the curves: cut the axis, mark them at its top
                (bottom, top), off = scale
                ax.set_ylim(bottom, top)
                for x, y, color in drawn_here:
                    above = [xx for xx, yy in zip(x, y) if not pd.isna(yy) and yy > top]
                    if above:  # (an empty line drawn off the clip would stretch the layout to the origin)
                        ax.plot(above, [top] * len(above), ls="none", marker="^", ms=5, color=color, mec="black",
                                mew=0.4, clip_on=False, zorder=6)
                ax.text(0.99, 0.97, f"▲ {len(off)} point{'s' * (len(off) != 1)} above the axis "
                        f"(up to {max(y for _, y in off):.3g})", transform=ax.transAxes, ha="right", va="top",
                        fontsize=7.5, bbox=dict(facecolor="white", edgecolor="none", alpha=0.8, pad=1))
            detail = ("learning rate: " + ", ".join(rates) if rates else "") + (
                ("; " if rates else "") + ", ".join(notes) + " (no curve)" if notes else "")
            ax.set_title("\n".join([TITLES.get(dataset, dataset)] + textwrap.wrap(detail, int(13 * width / len(datasets)))),
                         fontsize=9.5)
            ax.set_xlabel(xlabel)
            if ax is axes[0][0]:
                ax.set_ylabel(unit)
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))
            ax.grid(alpha=0.3)
        cell_handles = [Line2D([], [], color=colors[c], lw=2, label=cell_label(c, next(
            (info[(d, c)] for d in datasets if info.get((d, c), {}).get("units")), None))) for c in drawn]
        style_handles = [Line2D([], [], color="black", label="validation NLL (every epoch)"),
                         Line2D([], [], color="black", ls="--", marker="o", ms=3.5, mfc="white",
                                label="training NLL, no weight noise (every 10th epoch by default, and the best)"),
                         Line2D([], [], color="black", marker="*", ms=11, ls="none", mec="black",
                                label="best validation epoch (the weights scored)")]
        handles = _legend_rows([cell_handles, style_handles], ncol)
        fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8, frameon=False, bbox_to_anchor=(0.5, 0.0))
        title = f"{names}: training and validation NLL of each cell's selected run {what}" + (
            f"; {seeds}" if seeds else "")
        fig.suptitle(textwrap.fill(title, width=int(12 * fig.get_figwidth())), fontsize=11)
        fig.tight_layout(rect=(0, 0.273 * lines / height, 1, 1))
        figures.append((stem, fig))
    return figures


def plot_grad_norms(curves: dict[tuple[str, str], pd.DataFrame], out: Path, order,
                    info: dict[tuple[str, str], dict] | None = None, stem: str = "grad_norms") -> list[Path]:
    """Each drawn run's gradient norms before clipping (``metrics.csv``: the median of each epoch's
    updates, solid, and the largest, dotted) against parameter updates, one panel per dataset, on a
    log scale, beside the clipping threshold; nothing is written when no run recorded them."""
    datasets, cells = order
    have = {k: m for k, m in curves.items() if not m.empty and "grad_norm_median" in m
            and m["grad_norm_median"].notna().any()}
    if not have:
        return []
    info = info or {}
    fig, axes = plt.subplots(1, len(datasets), figsize=(max(4.6 * len(datasets), 9.0), 4.0), squeeze=False)
    colors = cell_colors([c for c in cells if any((d, c) in have for d in datasets)])
    for ax, dataset in zip(axes[0], datasets):
        for cell in cells:
            m = have.get((dataset, cell))
            if m is None:
                continue
            g = m.dropna(subset=["grad_norm_median"])
            color = colors[cell]
            ax.plot(g["updates"], g["grad_norm_median"], color=color, marker="o" if len(g) <= SPARSE else None, ms=3)
            ax.plot(g["updates"], g["grad_norm_max"], color=color, ls=":", alpha=0.8)
        ax.axhline(1.0, color="black", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.set_title(TITLES.get(dataset, dataset), fontsize=9.5)
        ax.set_xlabel("parameter updates")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.grid(alpha=0.3)
        if ax is axes[0][0]:
            ax.set_ylabel("gradient norm before clipping")
    drawn = [c for c in cells if any((d, c) in have for d in datasets)]
    handles = [Line2D([], [], color=colors[c], lw=2, label=cell_label(c, next(
        (info[(d, c)] for d in datasets if info.get((d, c), {}).get("units")), None))) for c in drawn]
    handles += [Line2D([], [], color="black", label="median of the epoch's updates"),
                Line2D([], [], color="black", ls=":", label="largest of the epoch's updates"),
                Line2D([], [], color="black", ls="--", lw=0.8, label="clipping threshold (1)")]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=8, frameon=False)
    fig.suptitle(textwrap.fill("Gradient norms before clipping of each drawn run, per epoch (metrics.csv)",
                               width=int(12 * fig.get_figwidth())), fontsize=11)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    return _save(fig, out, stem)
