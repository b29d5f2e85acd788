"""``rnnbench-sample RUN_DIR``: draw samples from a trained run and write files you can hear and see."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from ..errors import RnnbenchError
from ..runs import load_config


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="rnnbench-sample", description=__doc__)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, default=None, help="output folder (default: RUN_DIR/samples)")
    p.add_argument("--num", type=int, default=1, help="how many samples")
    p.add_argument("--length", type=int, default=None, help="time steps per sample (default: task-specific)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--primer", action="store_true", help="start from the beginning of a test sequence")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.run_dir)
        task = cfg.dataset.task
        try:
            module = importlib.import_module(f"rnnbench.sampling.{task}")
        except ModuleNotFoundError as exc:
            raise RnnbenchError(f"{args.run_dir}: no sampler for task {task!r}") from exc
        kwargs = dict(num=args.num, temperature=args.temperature, seed=args.seed, primer=args.primer)
        if args.length is not None:
            kwargs["length"] = args.length
        paths = module.sample_run(args.run_dir, args.out or args.run_dir / "samples", **kwargs)
    except RnnbenchError as exc:
        print(f"rnnbench-sample: error: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
