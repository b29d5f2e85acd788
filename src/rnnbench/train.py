"""The training recipe of Chung et al. (2014): :func:`train`, the public entry that trains (or resumes) one run.

RMSProp; Gaussian weight noise drawn afresh for every update (the gradient is taken
at the noisy weights and applied to the clean ones; evaluation is noise-free);
gradient norm clipped; early stopping on validation NLL.

A lone run is a stack of one: the one training loop is :mod:`rnnbench.stack`, built from the
pieces of :mod:`rnnbench.recipe` (splits and batches, random streams, device, RMSProp's settings);
the run directory it writes and reads back is :mod:`rnnbench.runs` (:class:`~rnnbench.runs.Run`);
a configuration is checked by :func:`rnnbench.schema.validate_config`.  Nothing imports this module
back: it is the top of the training code.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from .stack import train_stack


def train(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Train (or resume, or skip if already done) the run described by ``cfg`` in ``run_dir``: a
    stack of one (:func:`rnnbench.stack.train_stack`, the one training loop)."""
    return train_stack([cfg], [run_dir])[0]
