"""``rnnbench-train``: one training run (or with ``-m`` a sweep of runs), configured with Hydra.

See ``conf/train.yaml`` and the schema, ``rnnbench.schema``; ``rnnbench-train --help`` lists every key.

The command line is checked first (``rnnbench.cli.trainconf``): an unknown key or group option,
a bad value (of any value of a sweep) or a directory that cannot be made is one line and exit
status 2, with or without ``-m``, and nothing is written.

Exit status of a single run (without ``-m``): 0 finished (or already finished), 2 refused or
failed (a bad value, missing data, a damaged file, a full disk: one line names the culprit and
what to do, and a refused run leaves nothing on disk), 3 the run diverged, 4 another process is
training the run (it holds the run directory's lock), 5 stopped by the stop file (below).  A
multirun goes on past a diverged or skipped run; an error stops it with the same one line
(Hydra's exit status 1).

Stopping cleanly: with ``RNNBENCH_STOP_FILE`` set to a path, creating that file makes every run
and stack under way stop at the end of its epoch (its ``last.pt`` written; nothing of the epoch
is lost) and no run start while the file is there; remove it and run the same command to resume.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ..errors import RnnbenchError, StopRequested
from ..launch import JobFailed, JobStopped, one_line
from ..runs import discard_unstarted, is_unstarted, result_line
from ..schema import validate_config
from ..train import train
from . import conf_dir

log = logging.getLogger("rnnbench")

EXIT_FAILED, EXIT_DIVERGED, EXIT_BUSY, EXIT_STOPPED = 2, 3, 4, 5


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="train")
def _app(cfg: DictConfig) -> float | None:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode.name == "MULTIRUN"
    if not multirun and run_dir.name == "default" and is_unstarted(run_dir) and (run_dir.parent / "last.pt").is_file():
        log.warning("a run without overrides from before runs went to .../default lies in %s: move its files "
                    "(config.yaml, metrics.csv, summary.json, best.pt, last.pt, .hydra) into %s to resume it there",
                    run_dir.parent, run_dir)
    try:
        validate_config(cfg)
        summary = train(cfg, run_dir)
    except StopRequested as exc:  # (asked for: a warning, and the run's files are what a resume needs)
        message = one_line(exc)
        log.warning("%s", message)
        if exc.epoch is None:  # nothing trained: Hydra's .hydra/ and log go as for a refused run
            also = [f"{hc.job.name}.log"] + ([str(hc.output_subdir)] if hc.output_subdir is not None else [])
            discard_unstarted(run_dir, also=also, stop_at=Path(str(hc.sweep.dir)) if multirun else None)
        if not multirun:
            print(f"rnnbench-train: {message}", file=sys.stderr)
            sys.exit(EXIT_STOPPED)
        raise JobStopped(message) from exc
    except (RnnbenchError, OSError) as exc:
        message = one_line(exc)
        log.error("%s", message)
        # a refused run leaves nothing on disk: Hydra's .hydra/ and log go if the run wrote nothing
        also = [f"{hc.job.name}.log"] + ([str(hc.output_subdir)] if hc.output_subdir is not None else [])
        discard_unstarted(run_dir, also=also, stop_at=Path(str(hc.sweep.dir)) if multirun else None)
        if not multirun:
            sys.exit(EXIT_FAILED)
        raise JobFailed(message) from exc
    print(result_line(summary, run_dir), flush=True)
    if not multirun and summary["status"] == "diverged":
        print(f"rnnbench-train: the run diverged at epoch {summary['epochs']} ({summary['stop_reason']}); "
              f"its files are kept in {run_dir}", file=sys.stderr)
        sys.exit(EXIT_DIVERGED)
    if not multirun and summary["status"] == "skipped":
        print(f"rnnbench-train: not trained here: {summary['stop_reason']} ({run_dir})", file=sys.stderr)
        sys.exit(EXIT_BUSY)
    return summary["valid_nll"]


def main(argv: list[str] | None = None) -> None:
    """Check the command line (:mod:`rnnbench.cli.trainconf`: one line and exit 2 for what cannot
    run, before anything is written), answer ``--help``, then hand over to Hydra."""
    from . import trainconf

    logging.raiseExceptions = False  # (a full disk must not print a traceback for every log line)
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    argv = sys.argv[1:]
    try:
        args = trainconf.hydra_args(argv)
        if args.help:
            print(trainconf.help_text(argv), end="")
            sys.exit(0)
        trainconf.check(argv)
    except RnnbenchError as exc:
        print(f"rnnbench-train: error: {one_line(exc)}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    _app()


if __name__ == "__main__":
    main()
