"""The paper's learning-rate search: seeded log-uniform draws, and successive halving of them.

The k-th draw is lr = exp(U(log_low, log_high)); successive halving of the draws
(``search.halving``) is optional, off by default.

Draw ``k`` under search seed ``s`` is a pure function of ``(s, k)``, so a sweep draws the same
rates every time it runs (and draw k is the same rate for every dataset and cell: comparisons
between cells are paired).  In configs: ``${rnnbench.loguniform:seed,draw,low,high}``.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from omegaconf import DictConfig, OmegaConf


def loguniform_draw(seed: int, draw: int, log_low: float = -12.0, log_high: float = -6.0) -> float:
    if draw is None or int(draw) < 0:
        from .errors import ConfigError

        raise ConfigError(f"config value search.draw={draw!r} is invalid: expected an integer >= 0")
    if not log_low < log_high:
        from .errors import ConfigError

        raise ConfigError(f"search.log_low={log_low} must be below search.log_high={log_high}")
    u = np.random.default_rng([int(seed), int(draw)]).random()
    # rounded to 4 significant digits, so the rate reads the same in configs, tables and file names
    return float(f"{math.exp(log_low + (log_high - log_low) * u):.4g}")


# --------------------------------------------------------------------------- successive halving

def halving_settings(cfg) -> dict | None:
    """``search.halving`` of a run configuration, checked and completed, or ``None`` (off: the
    paper's full search)."""
    search = cfg.get("search") if isinstance(cfg, (Mapping, DictConfig)) else None
    h = search.get("halving") if isinstance(search, (Mapping, DictConfig)) else None
    if h is None:
        return None
    from .errors import ConfigError

    h = OmegaConf.to_container(h, resolve=True) if isinstance(h, DictConfig) else dict(h)
    epochs = h.get("epochs")
    if not isinstance(epochs, list) or not epochs or not all(isinstance(e, int) and e >= 1 for e in epochs):
        raise ConfigError(f"config value search.halving.epochs={epochs!r} is invalid: expected a list of epochs >= 1")
    keep = h.get("keep", 0.5)
    if not isinstance(keep, (int, float)) or not 0 < keep < 1:
        raise ConfigError(f"config value search.halving.keep={keep!r} is invalid: expected a number in (0, 1)")
    min_keep = h.get("min_keep", 2)
    if not isinstance(min_keep, int) or min_keep < 1:
        raise ConfigError(f"config value search.halving.min_keep={min_keep!r} is invalid: expected an integer >= 1")
    margin = h.get("margin", 0.0)
    if not isinstance(margin, (int, float)) or margin < 0:
        raise ConfigError(f"config value search.halving.margin={margin!r} is invalid: expected a number >= 0")
    unknown = set(h) - {"epochs", "keep", "min_keep", "margin"}
    if unknown:
        raise ConfigError(f"config search.halving has unknown keys {sorted(unknown)}: expected epochs, keep, "
                          f"min_keep, margin")
    return {"epochs": sorted(set(epochs)), "keep": float(keep), "min_keep": min_keep, "margin": float(margin)}


def halving_schedule(settings: Mapping | None, draws: int) -> list[tuple[int, int]]:
    """``[(last epoch, draws running up to it), ...]`` of one seed's ``draws`` under the halving
    ``settings`` (:func:`halving_settings`; ``None``: no halving), when every draw behind the
    margin stops (the fewest it keeps); the last entry runs to any epoch."""
    if not settings:
        return [(10 ** 9, draws)]
    out, n = [], draws
    for e in settings["epochs"]:
        out.append((e, n))
        n = min(n, max(settings["min_keep"], math.ceil(settings["keep"] * n)))
    return out + [(10 ** 9, n)]


def halving_decision(best_valid: Mapping, settings: Mapping) -> dict:
    """Which draws successive halving stops at a checkpoint.

    ``best_valid`` maps each draw still running (any id) to its best validation NLL so far.  The
    ``ceil(keep * n)`` best (at least ``min_keep``) go on; of the others, those more than
    ``margin`` nats behind the best stop.  Returns ``{id: (best valid of the leader, leader id)}``
    for the draws that stop.  Training (``rnnbench.stack``) and the replay on stored curves
    (:func:`replay_halving`) both use it.
    """
    ranked = sorted(best_valid, key=lambda i: (best_valid[i] if math.isfinite(best_valid[i]) else math.inf, str(i)))
    if not ranked:
        return {}
    n_keep = max(int(settings["min_keep"]), math.ceil(float(settings["keep"]) * len(ranked)))
    leader = ranked[0]
    top = best_valid[leader]
    return {i: (top, leader) for i in ranked[n_keep:]
            if not math.isfinite(best_valid[i]) or best_valid[i] > top + float(settings["margin"])}


def replay_halving(curves: Mapping[object, Sequence[float]], settings: Mapping) -> dict:
    """Successive halving replayed on the validation curves of a full search (one list of
    validation NLLs per draw, epoch 1 first, as far as each run went).

    Returns ``{"stopped": {draw: epoch}, "epochs": {draw: epochs it would have trained},
    "selected": draw with the best validation NLL among what would have been trained,
    "selected_full": the same on the whole curves}``.
    """
    length = {d: len(c) for d, c in curves.items()}
    stopped: dict = {}
    for e in settings["epochs"]:
        running = {d: min(curves[d][:e]) for d in curves if d not in stopped and length[d] >= e and e < length[d]}
        for d in halving_decision(running, settings):
            stopped[d] = e
    epochs = {d: stopped.get(d, length[d]) for d in curves}
    best = {d: min(curves[d][:epochs[d]]) for d in curves if epochs[d]}
    full = {d: min(c) for d, c in curves.items() if c}
    return {"stopped": stopped, "epochs": epochs, "selected": min(best, key=best.get) if best else None,
            "selected_full": min(full, key=full.get) if full else None}


def register_resolvers() -> None:
    OmegaConf.register_new_resolver(
        "rnnbench.loguniform", lambda s, k, lo=-12.0, hi=-6.0: loguniform_draw(int(s), int(k), float(lo), float(hi)),
        replace=True,
    )


register_resolvers()
