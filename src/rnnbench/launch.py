"""What the ``stacked`` Hydra launcher does (``hydra_plugins/rnnbench_stacked_launcher``).

1. Compose every job's configuration and its run directory, exactly as Hydra's basic launcher
   would (``<sweep dir>/<subdir>``, with ``.hydra/{config,hydra,overrides}.yaml``).
2. Group the jobs into stacks: equal configurations but for the learning rate
   (:func:`rnnbench.stack.group_for_stacks`).
3. Train the stacks, ``n_jobs`` processes at a time (joblib), each with
   :func:`rnnbench.stack.train_stack`, logging to ``stack-<first job>.log`` beside the runs.

While they train, progress lines name each running stack ("stack 1 of 3, jsb/gru seed 0 (10 runs):
4 of 10 runs finished, epoch 12 of 500, ~2.5 h left") and the sweep (runs finished, run-epochs
done, time left), every ``progress_every``
seconds and whenever a stack ends; each stack's result lines are printed as it ends, rounded
for people (the files keep full precision).

A stack that fails does not stop the others; its jobs are reported failed, as Hydra reports a
failed job, with the one-line error (no traceback).  A refused stack (bad configuration or data)
leaves nothing on disk: its runs' ``.hydra`` folders and its log go.  A worker never outlives the
launcher: it watches the launcher's pid and exits at once (as after ``kill -9``, from which every
run resumes) when the launcher is gone.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, _save_config, configure_log, filter_overrides, setup_globals
from hydra.errors import CompactHydraException
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from .errors import RnnbenchError, RunFileError, StopRequested, WriteError, qname
from .progress import duration
from .runs import discard_unstarted, read_summary, remove_empty_parents, result_line, run_label

log = logging.getLogger(__name__)
LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"


class JobFailed(CompactHydraException):
    """A job's one-line error, which Hydra prints without a traceback."""


class JobStopped(JobFailed):
    """A job the stop file stopped (or kept from starting): reported as stopped, not failed."""


def one_line(exc: BaseException) -> str:
    """An error as one line for people: rnnbench's own messages as they are, an OS error as
    ``<path>: <what>`` (``No space left on device``), anything else with its type."""
    if isinstance(exc, (RnnbenchError, JobFailed)):
        return str(exc)
    if isinstance(exc, OSError):
        where = qname(exc.filename) if exc.filename is not None else None
        what = exc.strerror or str(exc)
        return f"{where}: {what}" if where else what
    return f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- jobs

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
    try:
        out.mkdir(parents=True, exist_ok=True)
        if sweep_config.hydra.output_subdir is not None:
            hydra_out = out / str(sweep_config.hydra.output_subdir)
            _save_config(task_cfg, "config.yaml", hydra_out)
            _save_config(copy.deepcopy(HydraConfig.instance().cfg), "hydra.yaml", hydra_out)
            _save_config(sweep_config.hydra.overrides.task, "overrides.yaml", hydra_out)
    except OSError as exc:
        raise WriteError(exc.filename or out, exc) from exc
    return sweep_config, task_cfg, out


_watching: int | None = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def die_with(launcher_pid: int, every: float = 0.5) -> None:
    """In a worker process: exit at once when the launcher ``launcher_pid`` is gone (``kill -9``
    of the launcher included), so that no orphan goes on training runs a re-run would then train
    beside it.  A thread checks every ``every`` seconds whether this process was re-parented
    (the launcher is its parent) or, failing that, whether ``launcher_pid`` still exists.  Exiting
    mid-epoch is safe: every file is written atomically and the run resumes from its last epoch."""
    global _watching
    if launcher_pid == os.getpid() or _watching == launcher_pid:
        return
    _watching = launcher_pid
    parent = os.getppid()

    def gone() -> bool:
        return os.getppid() != parent if parent == launcher_pid else not _alive(launcher_pid)

    def watch() -> None:
        while True:
            time.sleep(every)
            if gone():
                try:  # (not through logging: its lock may be held by the thread we stop)
                    os.write(2, f"rnnbench: the launcher (pid {launcher_pid}) is gone; worker {os.getpid()} stops "
                                f"(its runs resume from their last epoch)\n".encode())
                finally:
                    os._exit(70)

    threading.Thread(target=watch, name="rnnbench-die-with-launcher", daemon=True).start()


def _run_group(index: int, cfgs: list[DictConfig], dirs: list[Path], log_file: Path, max_members, verbose: bool,
               launcher_pid: int | None = None, sweep_dir: Path | None = None,
               output_subdir: str | None = ".hydra") -> tuple[int, list]:
    """One stack, in this process or a worker: ``(index, [a summary, or a JobFailed, per run])``."""
    from rnnbench.stack import train_stack

    if launcher_pid is not None:
        die_with(launcher_pid)
    logging.raiseExceptions = False  # (a full disk must not print a traceback per log line)
    root = logging.getLogger()
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) for h in root.handlers):
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(stream)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    refused = False
    try:
        return index, train_stack(cfgs, dirs, max_members=max_members)
    except StopRequested as exc:  # (asked for: each run under way has its last.pt; one not started, nothing)
        logging.getLogger("rnnbench.launch").warning("stack in %s: %s", dirs[0].parent, one_line(exc))
        refused = exc.epoch is None
        return index, [JobStopped(one_line(exc))] * len(cfgs)
    except Exception as exc:  # reported per job below, like a failed Hydra job
        message = one_line(exc)
        logging.getLogger("rnnbench.launch").error("stack in %s failed: %s", dirs[0].parent, message)
        refused = True
        return index, [JobFailed(message)] * len(cfgs)
    finally:
        root.removeHandler(handler)
        handler.close()
        if refused:  # a refused stack leaves nothing on disk (runs that had files keep them)
            also = (output_subdir,) if output_subdir else ()
            gone = [discard_unstarted(d, also=also, stop_at=sweep_dir) for d in dirs]
            if all(gone):
                log_file.unlink(missing_ok=True)
                remove_empty_parents(log_file.parent, stop_at=sweep_dir)


# --------------------------------------------------------------------------- progress

class Progress:
    """How far a sweep's stacks are, read from their runs' ``summary.json`` (written after every
    epoch), so workers need not report anything.  Times left are estimates: a stack's seconds
    per epoch so far (training and evaluation) times the epochs its runs may still train, at most
    ``train.max_epochs`` (early stopping ends runs sooner)."""

    ENDED = ("finished", "diverged", "pruned")

    def __init__(self, stacks: list[dict], n_parallel: int):
        self.stacks = stacks  # each: label, dirs, max_epochs
        self.n_parallel = max(1, n_parallel)
        self.ended: dict[int, list[str]] = {}  # stack -> its runs' final statuses (failed: "failed")
        self.seen: dict[int, tuple[float, int]] = {}  # stack -> (time, epoch) when first seen training

    def _summaries(self, k: int) -> list[dict | None]:
        out = []
        for d in self.stacks[k]["dirs"]:
            try:
                out.append(read_summary(d))
            except RunFileError:  # (being written: atomic, so only a damaged file; the run says so itself)
                out.append(None)
        return out

    def end(self, k: int, results: list) -> None:
        """Stack ``k`` is over: its runs' results (summaries, or exceptions for failed runs)."""
        self.ended[k] = [("stopped" if isinstance(r, JobStopped) else "failed") if isinstance(r, BaseException)
                         else str(r.get("status")) for r in results]

    def stack_status(self, k: int) -> dict:
        st = self.stacks[k]
        cap, over = int(st["max_epochs"]), k in self.ended
        sums = self._summaries(k)
        if over:  # what the stack returned, not what the files say (a skipped run is another process's)
            sums = [dict(s or {}, status=final) for s, final in zip(sums, self.ended[k])]
        known = [s for s in sums if s is not None]
        running = [s for s in known if s.get("status") == "running"]
        ended = sum(1 for s in known if s.get("status") in self.ENDED)
        others = {x: sum(1 for s in known if s.get("status") == x) for x in ("skipped", "failed", "stopped")}
        epoch = max((int(s.get("epochs") or 0) for s in (running or known)), default=0)
        per_epoch = None
        for s in running or known:  # (from the run's own clock: training and evaluation, not writing files)
            if s.get("epochs"):
                per_epoch = (float(s.get("wall_seconds") or 0) + float(s.get("eval_seconds") or 0)) / int(s["epochs"])
                break
        if running and not over:  # better: the epochs seen going by here
            now = time.monotonic()
            t0, e0 = self.seen.setdefault(k, (now, epoch))
            if epoch > e0 and now > t0:
                per_epoch = (now - t0) / (epoch - e0)
        left_epochs = 0 if over else max([cap - int(s.get("epochs") or 0) for s in running]
                                         + [cap for s in sums if s is None], default=0)
        run_epochs = sum(cap if (s is not None and s.get("status") in self.ENDED + ("failed",))
                         else int((s or {}).get("epochs") or 0) for s in sums)
        return {"runs": len(sums), "ended": ended, "others": others, "epoch": epoch, "cap": cap, "per_epoch": per_epoch,
                "left_epochs": left_epochs, "run_epochs": run_epochs, "running": bool(running) and not over,
                "left": None if per_epoch is None else per_epoch * left_epochs}

    def stack_line(self, k: int, status: dict | None = None) -> str:
        s = self.stack_status(k) if status is None else status
        left = "" if s["left"] is None or k in self.ended else f", ~{duration(s['left'])} left"
        others = "".join(f", {n} {what}" for what, n in s["others"].items() if n)
        return (f"stack {k + 1} of {len(self.stacks)}, {self.stacks[k]['label']}: {s['ended']} of {s['runs']} runs "
                f"finished{others}, epoch {s['epoch']} of {s['cap']}{left}")

    def sweep_line(self, statuses: list[dict] | None = None) -> str:
        ss = [self.stack_status(k) for k in range(len(self.stacks))] if statuses is None else statuses
        runs, ended = sum(s["runs"] for s in ss), sum(s["ended"] for s in ss)
        done, total = sum(s["run_epochs"] for s in ss), sum(s["runs"] * s["cap"] for s in ss)
        others = "".join(f", {n} {what}" for what in ("skipped", "failed", "stopped")
                         if (n := sum(s["others"][what] for s in ss)))
        line = f"sweep: {ended} of {runs} runs finished{others}, {done} of {total} run-epochs"
        known = [s["per_epoch"] for s in ss if s["per_epoch"]]
        todo = [s for k, s in enumerate(ss) if k not in self.ended and s["left_epochs"]]
        if known and todo:  # stacks not started yet: the mean seconds per epoch of those that have
            mean = sum(known) / len(known)
            secs = [(s["per_epoch"] or mean) * s["left_epochs"] for s in todo]
            left = max(sum(secs) / self.n_parallel, max(secs))
            line += f", ~{duration(left)} left (at most: early stopping ends runs sooner)"
        return line

    def report(self, only_running: bool = True) -> None:
        statuses = [self.stack_status(k) for k in range(len(self.stacks))]
        for k, s in enumerate(statuses):
            if k not in self.ended and (s["running"] or not only_running):
                log.info("progress: %s", self.stack_line(k, s))
        log.info("progress: %s", self.sweep_line(statuses))

    def every(self, seconds: float) -> threading.Event:
        """Report every ``seconds`` in a thread until the returned event is set."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(seconds):
                try:
                    self.report()
                except Exception as exc:  # (progress must never stop a sweep)
                    log.debug("progress report failed: %s", exc)

        if seconds and seconds > 0 and math.isfinite(seconds):
            threading.Thread(target=loop, name="rnnbench-progress", daemon=True).start()
        return stop


def _stack_label(task_cfgs: list[DictConfig]) -> str:
    c = task_cfgs[0]
    seeds = sorted({int(t.seed) for t in task_cfgs})
    seed = f" seed {seeds[0]}" if len(seeds) == 1 else f" seeds {','.join(map(str, seeds))}"
    return f"{c.dataset.name}/{c.cell.name}{seed} ({len(task_cfgs)} run{'s' if len(task_cfgs) > 1 else ''})"


# --------------------------------------------------------------------------- launching

def launch_stacked(launcher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    from rnnbench.stack import MEMBER_KEYS, group_for_stacks

    setup_globals()
    config = launcher.config
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    orig = HydraConfig.instance().cfg
    jobs = []
    try:
        for i, overrides in enumerate(job_overrides):
            jobs.append((list(overrides), *_prepare(launcher, overrides, initial_job_idx + i)))
    except (RnnbenchError, OSError) as exc:  # (a full disk, say: one line, no traceback)
        raise JobFailed(one_line(exc)) from exc
    finally:
        HydraConfig.instance().cfg = orig
    _preflight(jobs, sweep_dir, None if config.hydra.output_subdir is None else str(config.hydra.output_subdir))
    groups = group_for_stacks([task for _, _, task, _ in jobs])
    cap = launcher.max_members
    stacks = []  # job indices of each stack: groups split at `cap`; groups too small run one job each
    for g in groups:
        size = 1 if len(g) < max(1, launcher.min_members) else (cap or len(g))
        stacks += [g[k:k + size] for k in range(0, len(g), size)]
    work = [(idx, jobs[idx[0]][3].parent / f"stack-{initial_job_idx + idx[0]}.log") for idx in stacks]
    verbose = bool(config.hydra.verbose)
    subdir = None if config.hydra.output_subdir is None else str(config.hydra.output_subdir)
    n_jobs = int(launcher.n_jobs)
    n_jobs = n_jobs if n_jobs > 0 else max(1, (os.cpu_count() or 1) + 1 + n_jobs)  # -1: every core, as joblib
    parallel = n_jobs > 1 and len(work) > 1
    me = os.getpid() if parallel else None
    args = [(k, [jobs[i][2] for i in idx], [jobs[i][3] for i in idx], log_file, cap, verbose, me, sweep_dir, subdir)
            for k, (idx, log_file) in enumerate(work)]
    log.info("Launching %d jobs as %d stacks (at most %s runs each), %d at a time", len(jobs), len(work),
             cap or "all", n_jobs)
    for k, (idx, log_file) in enumerate(work):
        own = [[o for o in filter_overrides(jobs[i][0]) if o.split("=", 1)[0].lstrip("+~") in MEMBER_KEYS]
               for i in idx]
        log.info("\tstack %d of %d (%d run%s) in %s (%s)", k + 1, len(work), len(idx), "s" if len(idx) > 1 else "",
                 log_file.parent,
                 "; ".join(" ".join(o) for o in own) or "one run")
    progress = Progress([{"label": _stack_label([jobs[i][2] for i in idx]), "dirs": [jobs[i][3] for i in idx],
                          "max_epochs": int(jobs[idx[0]][2].train.max_epochs)} for idx, _ in work],
                        min(n_jobs, len(work)))
    stop = progress.every(float(getattr(launcher, "progress_every", 60) or 0))
    outcomes: dict[int, list] = {}
    try:
        if parallel:
            from joblib import Parallel, delayed

            results = Parallel(n_jobs=min(n_jobs, len(args)), backend="loky", return_as="generator_unordered")(
                delayed(_run_group)(*a) for a in args)
        else:
            results = (_run_group(*a) for a in args)
        for k, result in results:
            outcomes[k] = result
            progress.end(k, result)
            idx = work[k][0]
            for i, r in zip(idx, result):
                out = jobs[i][3]
                if isinstance(r, BaseException):
                    what = "" if isinstance(r, JobStopped) else "failed: "  # ("stopped after ...", "not started: ...")
                    print(f"{run_label(_summary_of(jobs[i][2]))}: {what}{r}  [{out}]", flush=True)
                else:
                    print(result_line(r, out), flush=True)
            log.info("progress: %s", progress.stack_line(k))
            log.info("progress: %s", progress.sweep_line())
    finally:
        stop.set()

    returns: list[JobReturn | None] = [None] * len(jobs)
    for k, (idx, _) in enumerate(work):
        for i, result in zip(idx, outcomes[k]):
            overrides, sweep_config, task_cfg, out = jobs[i]
            ret = JobReturn()
            ret.overrides, ret.cfg, ret.hydra_cfg = overrides, task_cfg, sweep_config
            ret.working_dir, ret.task_name = os.getcwd(), str(sweep_config.hydra.job.name)
            if isinstance(result, BaseException):
                ret.return_value, ret.status = result, JobStatus.FAILED
            else:
                ret.return_value, ret.status = result["valid_nll"], JobStatus.COMPLETED
            returns[i] = ret
    return returns  # type: ignore[return-value]


def _preflight(jobs: list, sweep_dir: Path, output_subdir: str | None) -> None:
    """Before any stack starts: every job's configuration is valid and each corpus of the sweep
    loads (once here, not once per stack and run).  Otherwise the sweep is refused with one line
    and leaves nothing on disk (the ``.hydra`` folders just written go)."""
    import json

    from rnnbench.data import load_dataset
    from rnnbench.schema import validate_config

    try:
        seen = set()
        for _, _, task_cfg, _ in jobs:
            validate_config(task_cfg)
            key = json.dumps(OmegaConf.to_container(OmegaConf.create({"d": task_cfg.dataset, "r": task_cfg.get("data_root")}),
                                                    resolve=True), sort_keys=True, default=str)
            if key not in seen:
                seen.add(key)
                t0 = time.perf_counter()
                corpus = load_dataset(task_cfg.dataset, task_cfg.get("data_root"))
                log.info("corpus %s: %d/%d/%d sequences (%.1f s)", task_cfg.dataset.name,
                         *(len(corpus[s]) for s in ("train", "valid", "test")), time.perf_counter() - t0)
                del corpus
    except (RnnbenchError, OSError) as exc:
        also = (output_subdir,) if output_subdir else ()
        for _, _, _, out in jobs:
            discard_unstarted(out, also=also, stop_at=sweep_dir)
        raise JobFailed(one_line(exc)) from exc


def _summary_of(task_cfg: DictConfig) -> dict:
    return {"dataset": OmegaConf.select(task_cfg, "dataset.name"), "cell": OmegaConf.select(task_cfg, "cell.name"),
            "lr": OmegaConf.select(task_cfg, "optim.lr"), "seed": OmegaConf.select(task_cfg, "seed")}
