"""The paper's learning-rate search: the k-th draw of lr = exp(U(log_low, log_high)).

Draw ``k`` under search seed ``s`` is a pure function of ``(s, k)``, so a sweep draws the same
rates every time it runs (and draw k is the same rate for every dataset and cell: comparisons
between cells are paired).  In configs: ``${rnnbench.loguniform:seed,draw,low,high}``.
"""

from __future__ import annotations

import math

import numpy as np
from omegaconf import OmegaConf


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


def register_resolvers() -> None:
    OmegaConf.register_new_resolver(
        "rnnbench.loguniform", lambda s, k, lo=-12.0, hi=-6.0: loguniform_draw(int(s), int(k), float(lo), float(hi)),
        replace=True,
    )


register_resolvers()
