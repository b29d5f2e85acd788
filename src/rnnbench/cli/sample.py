"""``rnnbench-sample RUN_DIR``: draw samples from a trained run and write files you can hear and see."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from ..errors import RnnbenchError
from ..runs import load_config
from .helpfmt import parser


DESCRIPTION = """\
Draw samples from a trained run and write files you can hear and see.

A music run gives one MIDI file and one piano-roll picture (PNG) per sample;
a speech run one 16-bit WAV file and one picture of its waveform and
spectrogram (PNG).  The weights are those of the run's best validation epoch
(best.pt).  The same seed gives the same samples."""

EPILOG = """\
examples:
  rnnbench-sample runs/sweeps/quick_jsb/jsb/gru/search.draw=0
  rnnbench-sample RUN_DIR --num 4 --temperature 0.8 --primer
  rnnbench-sample RUN_DIR --out /tmp/samples --length 400 --seed 1"""


def main(argv: list[str] | None = None) -> int:
    p = parser("rnnbench-sample", DESCRIPTION, EPILOG)
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                   help="a run directory written by rnnbench-train (with config.yaml and best.pt)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="output folder (default: RUN_DIR/samples)")
    p.add_argument("--num", type=int, default=1, metavar="N", help="how many samples")
    p.add_argument("--length", type=int, default=None, metavar="STEPS",
                   help="time steps per sample (default: 200 frames for music; 2 seconds for speech, "
                        "1,600 steps of 10 samples at 8 kHz)")
    p.add_argument("--temperature", type=float, default=1.0, metavar="T",
                   help="below 1 sharpens the model's predicted distribution, above 1 flattens it")
    p.add_argument("--seed", type=int, default=0, help="random seed of the draws")
    p.add_argument("--primer", action="store_true",
                   help="start each sample from the beginning of a test sequence (music: its first 16 "
                        "frames; speech: up to half the length) and let the model continue it; reads the "
                        "run's corpus, so its data must be found")
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
