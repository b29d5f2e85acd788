"""The ``stacked`` launcher class (see the package docstring); the work is in ``rnnbench.launch``."""

from __future__ import annotations

from typing import Optional, Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class StackedLauncher(Launcher):
    def __init__(self, n_jobs: int = -1, max_members: Optional[int] = 10, min_members: int = 2,
                 progress_every: float = 60.0) -> None:
        self.n_jobs, self.max_members, self.min_members = int(n_jobs), max_members, int(min_members)
        self.progress_every = float(progress_every)
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from rnnbench.launch import launch_stacked

        assert self.config is not None and self.hydra_context is not None
        return launch_stacked(self, job_overrides, initial_job_idx)
