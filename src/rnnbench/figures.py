"""Figures like the paper's Figures 2-3: learning curves of each cell's selected run."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

COLORS = {"tanh": "tab:blue", "gru": "tab:red", "lstm": "tab:green", "gru_after": "tab:orange"}
TITLES = {"nottingham": "Nottingham", "jsb": "JSB Chorales", "musedata": "MuseData", "piano": "Piano-midi.de",
          "fsdd": "FSDD (speech)", "yesno": "YESNO (speech)"}


def _save(fig, out: Path, stem: str) -> list[Path]:
    from .fileio import atomic_write

    paths = []
    for ext, meta in (("png", {"Software": None}), ("pdf", {"CreationDate": None, "Producer": None})):
        paths.append(atomic_write(out / f"{stem}.{ext}",
                                  lambda p, ext=ext, meta=meta: fig.savefig(p, format=ext, metadata=meta, dpi=120)))
    plt.close(fig)
    return paths


def plot_curves(curves: dict[tuple[str, str], pd.DataFrame], out: Path, order) -> list[Path]:
    """One panel per dataset; train (dashed, at the epochs it was evaluated: every
    ``train.eval_train_every`` epochs and the best one) and validation (solid, every epoch) NLL per
    cell, against updates and against wall-clock seconds of training."""
    datasets, cells = order
    paths = []
    for xkey, xlabel, stem in (("updates", "parameter updates", "curves_updates"),
                               ("wall_seconds", "wall-clock seconds (training only)", "curves_seconds")):
        fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.4), squeeze=False)
        for ax, dataset in zip(axes[0], datasets):
            for cell in cells:
                m = curves.get((dataset, cell))
                if m is None or m.empty:
                    continue
                v = m.dropna(subset=["valid_nll"])
                ax.plot(v[xkey], v["valid_nll"], color=COLORS.get(cell), label=f"{cell} valid")
                t = m.dropna(subset=["train_nll"])  # (every train.eval_train_every epochs, and the best one)
                ax.plot(t[xkey], t["train_nll"], color=COLORS.get(cell), ls="--", marker=".", ms=3, alpha=0.7,
                        label=f"{cell} train")
            ax.set_title(TITLES.get(dataset, dataset))
            ax.set_xlabel(xlabel)
            ax.set_ylabel("NLL per time step (nats)")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        paths += _save(fig, out, stem)
    return paths
