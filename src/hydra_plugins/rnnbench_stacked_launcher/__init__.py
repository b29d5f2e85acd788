"""Hydra launcher ``stacked``: a multirun's jobs that differ only in learning rate train together.

    rnnbench-train -m experiment=chung2014_music hydra/launcher=stacked
    rnnbench-train -m experiment=chung2014_music hydra/launcher=stacked hydra.launcher.n_jobs=1

Jobs whose configurations are equal but for ``optim.lr``/``search.draw`` (the draws of one
dataset x cell x seed) form a stack (``rnnbench.stack``); stacks run ``n_jobs`` at a time (default:
one per core), one process each.  Every job gets the run directory, ``.hydra`` files and results it would get from
the basic launcher, and an interrupted sweep resumes the same way.  Progress lines (each running
stack's and the sweep's runs finished, epochs and time left) come every ``progress_every``
seconds and when a stack ends.  (Hydra finds launchers only in the ``hydra_plugins`` package; the
work is done in ``rnnbench.launch``.)
"""

from dataclasses import dataclass
from typing import Optional

from hydra.core.config_store import ConfigStore


@dataclass
class StackedLauncherConf:
    _target_: str = "hydra_plugins.rnnbench_stacked_launcher.stacked_launcher.StackedLauncher"
    n_jobs: int = -1  # stacks trained at the same time, one process each; -1: one per core
    max_members: Optional[int] = 10  # runs per stack; a larger group is split
    min_members: int = 2  # groups smaller than this run one job at a time, as the basic launcher would
    progress_every: float = 60.0  # seconds between progress lines (0: only when a stack ends)


ConfigStore.instance().store(group="hydra/launcher", name="stacked", node=StackedLauncherConf, provider="rnnbench")
