"""What the ``stacked`` Hydra launcher does (``hydra_plugins/rnnbench_stacked_launcher``).

1. Compose every job's configuration and its run directory, exactly as Hydra's basic launcher
   would (``<sweep dir>/<subdir>``, with ``.hydra/{config,hydra,overrides}.yaml``).
2. Group the jobs into stacks: equal configurations but for the learning rate
   (:func:`rnnbench.stack.group_for_stacks`).
3. Train the stacks, ``n_jobs`` processes at a time (joblib), each with
   :func:`rnnbench.stack.train_stack`, logging to ``stack-<first job>.log`` beside the runs.

A stack that fails does not stop the others; its jobs are reported failed, as Hydra reports
a failed job.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, _save_config, configure_log, filter_overrides, setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)
LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"


def _prepare(launcher, overrides: Sequence[str], idx: int) -> tuple[DictConfig, DictConfig, Path]:
    """A job's full config (with ``hydra``), its task config and its run directory, written as
    ``run_job`` writes them."""
    sweep_config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = idx
        sweep_config.hydra.job.num = idx
    HydraConfig.instance().set_config(sweep_config)
    out = Path(str(OmegaConf.select(sweep_config, "hydra.sweep.dir"))) / str(
        OmegaConf.select(sweep_config, "hydra.sweep.subdir"))
    with read_write(sweep_config.hydra.runtime), open_dict(sweep_config.hydra.runtime):
        sweep_config.hydra.runtime.output_dir = str(out.resolve())
    HydraConfig.instance().set_config(sweep_config)
    task_cfg = copy.deepcopy(sweep_config)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    out.mkdir(parents=True, exist_ok=True)
    if sweep_config.hydra.output_subdir is not None:
        hydra_out = out / str(sweep_config.hydra.output_subdir)
        _save_config(task_cfg, "config.yaml", hydra_out)
        _save_config(copy.deepcopy(HydraConfig.instance().cfg), "hydra.yaml", hydra_out)
        _save_config(sweep_config.hydra.overrides.task, "overrides.yaml", hydra_out)
    return sweep_config, task_cfg, out


def _run_group(cfgs: list[DictConfig], dirs: list[Path], log_file: Path, max_members, verbose: bool) -> list:
    """One stack, in this process or a worker: a summary (or the exception) per run."""
    from rnnbench.stack import train_stack

    root = logging.getLogger()
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) for h in root.handlers):
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(stream)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    try:
        return train_stack(cfgs, dirs, max_members=max_members)
    except Exception as exc:  # reported per job below, like a failed Hydra job
        logging.getLogger("rnnbench.launch").error("stack in %s failed: %s", dirs[0].parent, exc)
        return [exc] * len(cfgs)
    finally:
        root.removeHandler(handler)
        handler.close()


def launch_stacked(launcher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    from rnnbench.stack import MEMBER_KEYS, group_for_stacks

    setup_globals()
    config = launcher.config
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    orig = HydraConfig.instance().cfg
    jobs = []
    try:
        for i, overrides in enumerate(job_overrides):
            jobs.append((list(overrides), *_prepare(launcher, overrides, initial_job_idx + i)))
    finally:
        HydraConfig.instance().cfg = orig
    groups = group_for_stacks([task for _, _, task, _ in jobs])
    cap = launcher.max_members
    stacks = []  # job indices of each stack: groups split at `cap`; groups too small run one job each
    for g in groups:
        size = 1 if len(g) < max(1, launcher.min_members) else (cap or len(g))
        stacks += [g[k:k + size] for k in range(0, len(g), size)]
    work = [(idx, jobs[idx[0]][3].parent / f"stack-{initial_job_idx + idx[0]}.log") for idx in stacks]
    verbose = bool(config.hydra.verbose)
    args = [([jobs[i][2] for i in idx], [jobs[i][3] for i in idx], log_file, cap, verbose) for idx, log_file in work]
    n_jobs = int(launcher.n_jobs)
    n_jobs = n_jobs if n_jobs > 0 else max(1, (os.cpu_count() or 1) + 1 + n_jobs)  # -1: every core, as joblib
    log.info("Launching %d jobs as %d stacks (at most %s runs each), %d at a time", len(jobs), len(work),
             cap or "all", n_jobs)
    for idx, log_file in work:
        own = [[o for o in filter_overrides(jobs[i][0]) if o.split("=", 1)[0].lstrip("+~") in MEMBER_KEYS]
               for i in idx]
        log.info("\tstack of %d in %s (%s)", len(idx), log_file.parent,
                 "; ".join(" ".join(o) for o in own) or "one run")
    if n_jobs == 1 or len(args) == 1:
        outcomes = [_run_group(*a) for a in args]
    else:
        from joblib import Parallel, delayed

        outcomes = Parallel(n_jobs=min(n_jobs, len(args)), backend="loky")(delayed(_run_group)(*a) for a in args)

    returns: list[JobReturn | None] = [None] * len(jobs)
    for (idx, _), results in zip(work, outcomes):
        for i, result in zip(idx, results):
            overrides, sweep_config, task_cfg, out = jobs[i]
            ret = JobReturn()
            ret.overrides, ret.cfg, ret.hydra_cfg = overrides, task_cfg, sweep_config
            ret.working_dir, ret.task_name = os.getcwd(), str(sweep_config.hydra.job.name)
            if isinstance(result, BaseException):
                ret.return_value, ret.status = result, JobStatus.FAILED
            else:
                ret.return_value, ret.status = result["valid_nll"], JobStatus.COMPLETED
                print(f"{result['dataset']}/{result['cell']}: {result['status']} ({result['stop_reason']}), "
                      f"best epoch {result['best_epoch']}: valid {result['valid_nll']}, test {result['test_nll']}  "
                      f"[{out}]")
            returns[i] = ret
    return returns  # type: ignore[return-value]
