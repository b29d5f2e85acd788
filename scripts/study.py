"""The converged studies: the learning-rate search, then more seeds at each selected rate.

    python scripts/study.py                       # music: 4 datasets x 3 cells, 2 pairs at a time
    python scripts/study.py --datasets jsb --cells gru --jobs 1
    python scripts/study.py --task speech         # speech: YESNO and FSDD x 3 cells, then the tanh variants
    python scripts/study.py --task speech --plan  # how far it is, and at most how much is left

``--task speech`` runs the same protocol with ``experiment=chung2014_speech`` (the paper's speech
sizes, the mixture head) on YESNO and FSDD, stacked as the music study is (successive halving is a
stack's decision), under ``RUNS/search`` and ``RUNS/seeds``; then, for the 400-unit tanh RNN that
cannot train under the paper's weight noise (docs/speech.md), two labelled variants that never
enter the faithful Table 2:

* ``RUNS/tanh_sigma0.02/{search,seeds}``: the whole protocol for tanh at ``train.weight_noise=0.02``;
* ``RUNS/tanh_diagnostics``: seed 0 at that variant's selected draw with ``train.weight_noise`` 0
  and 0.04, and 0.075 with ``dataset.chunk_steps=50``: where training breaks, and why.

Each dataset's variant is one more job of the same queue, taken by the first worker that frees up
(it needs none of the faithful runs); its diagnostics are three more, one each, queued when the
variant's search has selected its draw, so that free workers train them beside the variant's seeds
and one another rather than after them (``--jobs`` still bounds the commands under way);
``--variants none`` skips both.  Speech's epoch caps are
per corpus (``SPEECH_MAX_EPOCHS``: YESNO the paper's 500, FSDD 200, the cap its projection asks
for: results/speed/README.md); ``train.max_epochs=N`` after ``--`` sets one cap for every command
instead, as any override after ``--`` applies to every command.

In the default order (``--order cheapest-first``) a dataset's jobs, its variants included, are all
taken before the next dataset's: YESNO's runs end hours before FSDD's.

For every dataset x cell pair, one after another on each of ``--jobs`` workers:

1. the search: the paper's 10 learning-rate draws (seed 0) as one stack, to early stopping on
   validation (``train.patience``) or the paper's 500-epoch cap, with successive halving of the
   draws clearly behind (``hparams_search=paper_lr_halving``)::

       rnnbench-train -m experiment=chung2014_music hparams_search=paper_lr_halving dataset=D cell=C \\
           hydra.sweep.dir=RUNS/search hydra.launcher.n_jobs=1

2. the selection: the draw with the best validation NLL (never test), as ``rnnbench-report`` selects;
3. the seeds: seeds 1-4 at that draw, sharing seed 0's data order (``train.order_seed=0``: each seed
   its own initial weights and weight noise), as one stack::

       rnnbench-train -m experiment=chung2014_music dataset=D cell=C search.draw=K seed=1,2,3,4 \\
           train.order_seed=0 hydra.sweep.dir=RUNS/seeds hydra.launcher.n_jobs=1

   ``--seed-stacks 2`` trains them as two stacks of two, side by side (``hydra.launcher.max_members=2
   hydra.launcher.n_jobs=2``): when the last pair's seeds are all that is left, the second core
   need not idle.  A member's numbers are bit for bit those of the one stack
   (tests/test_speech_train.py).

Every step is an ordinary ``rnnbench-train`` command: running this script again skips finished
runs and resumes unfinished ones from their last epoch.  Each pair logs to ``RUNS/logs/D-C.log``.
Then ``rnnbench-report RUNS/search RUNS/seeds`` writes the tables.

To stop a study cleanly, ``touch RUNS/STOP``: every stack under way ends its epoch and writes its
``last.pt`` (nothing of the epoch is lost, as it would be by a kill), no further command starts,
and the script exits.  Running it again removes the file and resumes (the commands get
``RNNBENCH_STOP_FILE=RUNS/STOP`` unless it is set already).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

COST = {"musedata": 0, "nottingham": 1, "piano": 2, "jsb": 3, "fsdd": 0, "yesno": 1}  # the longest first
DATASETS = {"music": ["jsb", "nottingham", "musedata", "piano"], "speech": ["yesno", "fsdd"]}
TANH_SIGMA = 0.02  # the speech tanh variant's weight noise
# the speech study's epoch caps: YESNO (40 updates an epoch) the paper's 500; FSDD (2,400) 200, as
# issue 26 asks when the projection at 500 exceeds about 15 hours of both cores
SPEECH_MAX_EPOCHS = {"yesno": 500, "fsdd": 200}
TANH_DIAGNOSTICS = {"sigma0": ["train.weight_noise=0"], "sigma0.04": ["train.weight_noise=0.04"],
                    "sigma0.075_chunk50": ["train.weight_noise=0.075", "dataset.chunk_steps=50"]}


def _draw_of(run_dir: Path) -> int | None:
    """``search.draw`` of a run, from its config.yaml."""
    try:
        text = (run_dir / "config.yaml").read_text()
    except OSError:
        return None
    return next((int(line.split(":")[1]) for line in text.splitlines() if line.strip().startswith("draw:")), None)


def selected_draw(search_dir: Path, dataset: str, cell: str) -> int | None:
    """The draw of the best validation NLL among the pair's seed-0 runs that ended: finished, pruned,
    or diverged after a best epoch (whose best-validation weights stand, as the report counts them)."""
    best = None
    for summary in sorted((search_dir / dataset / cell).glob("*/summary.json")):
        s = json.loads(summary.read_text())
        ended = s.get("status") in ("finished", "pruned") or (s.get("status") == "diverged" and s.get("best_epoch"))
        if not ended or s.get("valid_nll") is None or int(s.get("seed", 0)) != 0:
            continue
        draw = _draw_of(summary.parent)
        if math.isfinite(s["valid_nll"]) and (best is None or s["valid_nll"] < best[0]):
            best = (s["valid_nll"], draw)
    return None if best is None else best[1]


def stop_path(args) -> Path:
    """The file that stops the study at the end of the epochs under way."""
    return Path(os.environ.get("RNNBENCH_STOP_FILE") or Path(args.runs) / "STOP")


def _cap_override(args) -> int | None:
    """The epoch cap the command line after ``--`` sets for every command, if it sets one."""
    return next((int(e.split("=", 1)[1]) for e in args.extra if e.lstrip("+").startswith("train.max_epochs=")), None)


def max_epochs(dataset: str, args) -> int:
    """The cap a corpus's runs train to: the command line's after ``--``, else the speech corpus's
    (``SPEECH_MAX_EPOCHS``), else the experiment's 500."""
    override = _cap_override(args)
    if override is not None:
        return override
    return SPEECH_MAX_EPOCHS.get(dataset, 500) if args.task == "speech" else 500


def epoch_cap(dataset: str, args) -> list[str]:
    """``train.max_epochs=N`` of a speech corpus (``SPEECH_MAX_EPOCHS``), unless the command line
    after ``--`` sets its own cap; nothing for music (the experiment's 500)."""
    if args.task != "speech" or dataset not in SPEECH_MAX_EPOCHS or _cap_override(args) is not None:
        return []
    return [f"train.max_epochs={SPEECH_MAX_EPOCHS[dataset]}"]


def seed_stack_count(args) -> int:
    """How many stacks a pair's seeds train as (``--seed-stacks``, at least 1, at most one per seed)."""
    return max(1, min(int(getattr(args, "seed_stacks", 1) or 1), len(args.seeds)))


def seed_stacks(args) -> list[str]:
    """The launcher overrides that split a pair's seeds into ``--seed-stacks N`` stacks trained side
    by side (N processes); nothing for one stack.  A member's numbers do not depend on the stack it
    trains in (tests/test_speech_train.py), so this changes the wall time only."""
    n = seed_stack_count(args)
    if n == 1:
        return []
    return [f"hydra.launcher.max_members={math.ceil(len(args.seeds) / n)}", f"hydra.launcher.n_jobs={n}"]


def run_pair(dataset: str, cell: str, args, root: Path | None = None, extra: tuple = (),
             selected=None) -> str:
    """Search, selection and seeds of one dataset x cell under ``root`` (default ``--runs``), with
    ``extra`` overrides on top of the study's own; ``selected(draw)``, if given, is called once the
    search has selected its draw, before the seeds start."""
    root = Path(args.runs) if root is None else root
    tag = "" if root == Path(args.runs) else f"{root.name}: "
    log = root / "logs" / f"{dataset}-{cell}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    exe = str(Path(sys.executable).with_name("rnnbench-train"))
    common = [f"dataset={dataset}", f"cell={cell}", "hydra/launcher=stacked", "hydra.launcher.n_jobs=1",
              *epoch_cap(dataset, args), *args.extra, *extra]
    experiment = f"experiment=chung2014_{args.task}"
    with open(log, "a") as f:
        def call(cmd):
            if stop_path(args).exists():
                return None
            f.write(f"\n$ {' '.join(cmd)}\n")
            f.flush()
            t0 = time.time()
            rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
            f.write(f"# exit {rc} after {time.time() - t0:.0f} s\n")
            f.flush()
            return rc

        search = [exe, "-m", experiment, "hparams_search=paper_lr_halving", *common,
                  f"hydra.sweep.dir={root / 'search'}"]
        rc = call(search)
        if stop_path(args).exists():
            return f"{tag}{dataset}/{cell}: stopped by {stop_path(args)} (the search {'not started' if rc is None else 'paused'})"
        if rc != 0:
            return f"{tag}{dataset}/{cell}: search failed (see {log})"
        draw = selected_draw(root / "search", dataset, cell)
        if draw is None:
            return f"{tag}{dataset}/{cell}: no draw reached a best epoch (see {log})"
        if selected is not None:
            selected(draw)
        if not args.seeds:
            return f"{tag}{dataset}/{cell}: draw {draw} selected"
        seeds = [exe, "-m", experiment, *common, f"search.draw={draw}",
                 "seed=" + ",".join(str(s) for s in args.seeds), "train.order_seed=0",
                 f"hydra.sweep.dir={root / 'seeds'}", *seed_stacks(args)]
        rc = call(seeds)
        if stop_path(args).exists():
            return f"{tag}{dataset}/{cell}: stopped by {stop_path(args)} (the seeds {'not started' if rc is None else 'paused'})"
        if rc != 0:
            return f"{tag}{dataset}/{cell}: seeds failed (see {log})"
        return f"{tag}{dataset}/{cell}: draw {draw} selected, seeds {args.seeds} done"


def run_tanh_variants(dataset: str, args, selected=None) -> list[str]:
    """The speech tanh RNN at weight noise ``TANH_SIGMA``: the whole protocol, in labelled folders
    that never enter the faithful Table 2.  ``selected(draw)`` is called once its search has selected
    a draw (``main`` queues the diagnostics then, to train beside the variant's seeds)."""
    variant = Path(args.runs) / f"tanh_sigma{TANH_SIGMA}"
    lines = [run_pair(dataset, "tanh", args, variant, (f"train.weight_noise={TANH_SIGMA}",), selected)]
    if not stop_path(args).exists() and selected_draw(variant / "search", dataset, "tanh") is None:
        lines.append(f"tanh_diagnostics: {dataset}: no selected draw at sigma {TANH_SIGMA}")
    return lines


def run_tanh_diagnostics(dataset: str, draw: int, args, names=None) -> list[str]:
    """Seed 0 at the tanh variant's selected ``draw`` under each of ``TANH_DIAGNOSTICS`` (or those
    ``names``), one after another: where training breaks, and why.  ``main`` gives each diagnostic
    a job of its own, so that free workers train them side by side; each logs to
    ``RUNS/tanh_diagnostics/logs/<dataset>-tanh-<name>.log``."""
    lines = []
    root = Path(args.runs) / "tanh_diagnostics"
    exe = str(Path(sys.executable).with_name("rnnbench-train"))
    for name in (names or TANH_DIAGNOSTICS):
        overrides = TANH_DIAGNOSTICS[name]
        if stop_path(args).exists():
            lines.append(f"tanh_diagnostics: {dataset} {name}: stopped by {stop_path(args)}")
            continue
        log = root / "logs" / f"{dataset}-tanh-{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [exe, f"experiment=chung2014_{args.task}", f"dataset={dataset}", "cell=tanh", f"search.draw={draw}",
               "seed=0", *epoch_cap(dataset, args), *args.extra, *overrides,
               f"hydra.run.dir={root / dataset / 'tanh' / f'{name}_draw{draw}'}"]
        with open(log, "a") as f:
            f.write(f"\n$ {' '.join(cmd)}\n")
            f.flush()
            rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
        # (exit 3: diverged, which is what some of these show; 5: stopped by the stop file)
        lines.append(f"tanh_diagnostics: {dataset} {name} at draw {draw}: exit {rc}")
    return lines


def queue(args) -> list[tuple[str, str | None]]:
    """The jobs in the order the workers take them: (dataset, cell), and (dataset, None) for a speech
    dataset's tanh variants."""
    sign = -1 if args.order == "cheapest-first" else 1
    jobs = sorted(((d, c) for d in args.datasets for c in args.cells), key=lambda p: sign * COST.get(p[0], 9))
    if args.task == "speech" and args.variants == "tanh" and "tanh" in args.cells:
        # each dataset's tanh variant is one more job of the queue, after its faithful pairs: it takes
        # the first worker that frees up (it needs none of their results).  Cheapest first, a
        # dataset's variants come before the next dataset's pairs; longest first, after every pair.
        jobs += [(d, None) for d in sorted(args.datasets, key=lambda d: sign * COST.get(d, 9))]
        if args.order == "cheapest-first":
            jobs.sort(key=lambda p: sign * COST.get(p[0], 9))  # (stable: pairs, then the variants)
    return jobs


# --------------------------------------------------------------------------- --plan

def _summaries(folder: Path) -> list[tuple[Path, dict]]:
    out = []
    for path in sorted(folder.glob("*/summary.json")):
        try:
            out.append((path.parent, json.loads(path.read_text())))
        except (OSError, ValueError):
            pass
    return out


def _seconds_per_member_epoch(run_dirs: list[Path]) -> float | None:
    """From the runs' own clocks: the seconds per epoch of the stack that trained the most epochs,
    over its last 10 (training and evaluation, shared by its members), divided by the members it
    had then (the runs of ``run_dirs`` that reached those epochs)."""
    import csv

    rows = {}
    for d in run_dirs:
        try:
            with open(d / "metrics.csv") as f:
                rows[d] = list(csv.DictReader(f))
        except OSError:
            continue
    longest = max(rows.values(), key=len, default=[])
    if len(longest) < 2:
        return None
    a, b = longest[max(0, len(longest) - 11)], longest[-1]
    members = sum(1 for r in rows.values() if len(r) >= int(b["epoch"]))
    secs = (float(b["wall_seconds"]) + float(b.get("eval_seconds") or 0)
            - float(a["wall_seconds"]) - float(a.get("eval_seconds") or 0))
    return secs / (int(b["epoch"]) - int(a["epoch"])) / max(members, 1)


def _search_left(runs: list[dict], cap: int, schedule, draws: int = 10) -> int:
    """At most how many member-epochs a search of ``draws`` draws (one stack) has left."""
    if not runs:
        epoch, running = 0, draws
    else:
        alive = [int(s.get("epochs") or 0) for s in runs if s.get("status") == "running"]
        if not alive and len(runs) >= draws:
            return 0
        epoch, running = (min(alive), len(alive)) if alive else (0, draws)
    left, prev = 0, 0
    for upto, n in schedule:
        lo, hi = max(prev, epoch), min(upto, cap)
        if hi > lo:
            left += min(n, running) * (hi - lo)
        prev = upto
    return left


def plan(args) -> list[str]:
    """How far the study is and at most how much is left, job by job (``--plan``): upper bounds
    (every run to its cap; early stopping ends runs sooner), timed by each pair's own runs."""
    from hydra import compose, initialize_config_dir

    from rnnbench.search import halving_schedule, halving_settings

    with initialize_config_dir(version_base="1.3", config_dir=str(Path(__file__).resolve().parents[1] / "conf")):
        schedule = halving_schedule(halving_settings(compose("train", overrides=[
            f"experiment=chung2014_{args.task}", "hparams_search=paper_lr_halving"])), 10)
    runs = Path(args.runs)
    lines, total, untimed, per_dataset, longest = [], 0.0, 0, {}, 0.0
    for d, c in queue(args):
        cap = max_epochs(d, args)
        roots = [(runs, c)] if c is not None else [(runs / f"tanh_sigma{TANH_SIGMA}", "tanh")]
        left, parts, dirs = 0, [], []
        for root, cell in roots:
            search = _summaries(root / "search" / d / cell)
            s_left = _search_left([s for _, s in search], cap, schedule)
            draw = selected_draw(root / "search", d, cell) if search and s_left == 0 else None
            seeds = [(p, s) for p, s in _summaries(root / "seeds" / d / cell) if draw is None or _draw_of(p) == draw]
            dirs += [p for p, _ in search + seeds]
            ended = sum(1 for _, s in search if s.get("status") != "running")
            alive = [int(s.get("epochs") or 0) for _, s in search if s.get("status") == "running"]
            no_draw = search and s_left == 0 and not any(s.get("best_epoch") for _, s in search)
            seeds_left = 0 if no_draw else sum(cap - int(s.get("epochs") or 0) for _, s in seeds
                                               if s.get("status") == "running") + cap * max(0, len(args.seeds) - len(seeds))
            left += s_left + seeds_left
            parts.append(f"search {ended} of 10 ended" + (f", {len(alive)} at epoch {max(alive)}" if alive else "")
                         + ("; no draw reached a best epoch" if no_draw else
                            f"; seeds {sum(1 for _, s in seeds if s.get('status') != 'running')} of "
                            f"{len(args.seeds)} ended"))
        seeds_chain = math.ceil(seeds_left / seed_stack_count(args))  # (--seed-stacks: side by side)
        chain = left - seeds_left + seeds_chain  # the member-epochs one after another: the job's own length
        if c is None:
            diag = _summaries(runs / "tanh_diagnostics" / d / "tanh")
            dirs += [p for p, _ in diag]
            each = [] if no_draw else ([cap - int(s.get("epochs") or 0) for _, s in diag if s.get("status") == "running"]
                                       + [cap] * (len(TANH_DIAGNOSTICS) - len(diag)))  # (member-epochs each has left)
            diag_left = sum(each)
            left += diag_left
            # the diagnostics, a job each, train beside the seeds and one another where workers are
            # free (the longest path: the search, then the longest of them), after them where not
            chain = s_left + (max(seeds_chain, max(each, default=0)) if args.jobs > 1 else seeds_chain + diag_left)
            parts.append(f"diagnostics {sum(1 for _, s in diag if s.get('status') != 'running')} of "
                         f"{len(TANH_DIAGNOSTICS)} ended" + (f" (beside the seeds: ≤ {chain} member-epochs one after "
                                                              "another)" if args.jobs > 1 and left else ""))
        per = _seconds_per_member_epoch(dirs)
        if per is not None:
            per_dataset.setdefault(d, per)
        per = per if per is not None else per_dataset.get(d)
        name = f"{d}/{c}" if c is not None else f"{d}/tanh (σ={TANH_SIGMA}) + diagnostics"
        hours = "" if per is None else f", ≤ {left * per / 3600:.1f} h of one core at {per:.1f} s each"
        if per is None:
            untimed += left
        else:
            total += left * per
            longest = max(longest, chain * per)
        lines.append(f"{name}: {'; '.join(parts)}; left ≤ {left} member-epochs (cap {cap}){hours}")
    # a job is one process on one core, so the whole takes no less than its longest job, however many
    # workers share the cores (more workers than cores only time-share them)
    cores = max(1, min(args.jobs, os.cpu_count() or 1))
    wall = max(total / cores, longest)
    lines.append(f"in all ≤ {total / 3600:.1f} h of one core; on {args.jobs} worker{'s' if args.jobs > 1 else ''}"
                 f" ({cores} core{'s' if cores > 1 else ''}), ≤ {wall / 3600:.1f} h if the cores never idle "
                 f"(the larger of {total / 3600:.1f} h / {cores} and the longest job, {longest / 3600:.1f} h)"
                 + (f", and ≤ {untimed} member-epochs of corpora no run has timed yet" if untimed else "")
                 + ": upper bounds, every run to its cap (early stopping ends runs sooner)")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=sorted(DATASETS), default="music")
    ap.add_argument("--datasets", nargs="*", default=None, help="default: the task's (music: jsb nottingham "
                    "musedata piano; speech: yesno fsdd)")
    ap.add_argument("--cells", nargs="*", default=["tanh", "gru", "lstm"])
    ap.add_argument("--seeds", nargs="*", type=int, default=[1, 2, 3, 4])
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="pairs trained at a time")
    ap.add_argument("--runs", default=os.path.join(os.environ.get("RNNBENCH_RUNS", "runs"), "sweeps", "study"))
    ap.add_argument("--order", choices=["longest-first", "cheapest-first"], default="cheapest-first",
                    help="cheapest-first: whole datasets (search and seeds) are done early; longest-first: "
                         "the jobs finish closer together")
    ap.add_argument("--variants", choices=["tanh", "none"], default="tanh",
                    help="speech only: after the faithful study, the tanh RNN at weight noise "
                         f"{TANH_SIGMA} and its diagnostics (default), or none")
    ap.add_argument("--seed-stacks", type=int, default=1, metavar="N",
                    help="train each pair's seeds as N stacks side by side, N processes (default 1: one "
                         "stack, one process); for the last pairs of a study, when cores would idle. "
                         "A seed's numbers are the same in any stack")
    ap.add_argument("--plan", action="store_true", help="print how far the study is and at most how much is "
                    "left (from the runs' own clocks), train nothing")
    ap.add_argument("extra", nargs="*", help="further rnnbench-train overrides for every command")
    args = ap.parse_args(argv)
    if args.datasets is None:
        args.datasets = DATASETS[args.task]
    default_runs = os.path.join(os.environ.get("RNNBENCH_RUNS", "runs"), "sweeps", "study")
    if args.task == "speech" and args.runs == default_runs:
        args.runs = default_runs + "_speech"
    if args.plan:
        try:
            print("\n".join(plan(args)), flush=True)
        except BrokenPipeError:  # (| head)
            sys.stdout = None
        return 0
    jobs = queue(args)
    stop = stop_path(args)
    if stop.exists():
        stop.unlink()
        print(f"{stop} removed: the study resumes", flush=True)
    os.environ.setdefault("RNNBENCH_STOP_FILE", str(stop.resolve()))  # (for every command it runs)
    t0 = time.time()

    futures, lock = [], threading.Lock()

    def submit(fn, *a):
        with lock:
            futures.append(pool.submit(fn, *a))

    def job(d, c):
        if c is not None:
            return [run_pair(d, c, args)]
        # the diagnostics need only the variant's selected draw: queued then, each a job of its own,
        # they take the free workers and train beside the variant's seeds (and one another) rather
        # than after them
        return run_tanh_variants(d, args, lambda draw: [submit(run_tanh_diagnostics, d, draw, args, (name,))
                                                        for name in TANH_DIAGNOSTICS])

    reported = set()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for j in jobs:
            submit(job, *j)
        while True:
            with lock:  # (a job still running may queue another before it ends, never after)
                pending = [fut for fut in futures if fut not in reported]
            if not pending:
                break
            for future in wait(pending, return_when=FIRST_COMPLETED).done:
                reported.add(future)
                for line in future.result():
                    print(f"[{time.time() - t0:7.0f} s] {line}", flush=True)
    if stop.exists():
        print(f"study stopped by {stop} after {(time.time() - t0) / 3600:.2f} h: every run under way has its "
              "last.pt; run the same command again to resume", flush=True)
        return 5
    more = "" if args.task != "speech" or args.variants != "tanh" else (
        f" {args.runs}/tanh_sigma{TANH_SIGMA}/search {args.runs}/tanh_sigma{TANH_SIGMA}/seeds {args.runs}/tanh_diagnostics")
    print(f"study done in {(time.time() - t0) / 3600:.2f} h; next: rnnbench-report {args.runs}/search {args.runs}/seeds{more}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
