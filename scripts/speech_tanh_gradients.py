"""Why the 400-unit tanh RNN diverges on YESNO: its gradient at initialisation, with and without
the paper's weight noise, on the first few training recordings.

    RNNBENCH_DATA=../shared/data python scripts/speech_tanh_gradients.py
    python scripts/speech_tanh_gradients.py dataset=fsdd cell=gru --recordings 5

Prints, per recording and noise level, the loss per step, whether every gradient entry is finite,
the largest entry, and the gradient norm in float32 (what clipping sees) and in float64.  Extra
arguments are Hydra overrides of ``experiment=chung2014_speech``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", help="Hydra overrides (default: dataset=yesno cell=tanh)")
    ap.add_argument("--recordings", type=int, default=3)
    ap.add_argument("--noise", type=float, nargs="*", default=[0.0, 0.075])
    args = ap.parse_args(argv)
    from hydra import compose, initialize_config_dir

    from rnnbench.data import load_dataset, make_batch
    from rnnbench.model import SequenceModel
    from rnnbench.stack import StackedModel, training_step

    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose(config_name="train", overrides=["experiment=chung2014_speech", "dataset=yesno", "cell=tanh",
                                                      *args.overrides])
    torch.set_num_threads(1)
    corpus = load_dataset(cfg.dataset, cfg.get("data_root"))
    torch.manual_seed(int(cfg.seed))
    model = StackedModel(SequenceModel.for_corpus(cfg.cell, int(cfg.cell.units), corpus), 1)
    seqs = corpus["train"]
    print(f"{cfg.dataset.name} {cfg.cell.name}-{cfg.cell.units}, initial weights of seed {cfg.seed}")
    for noise in args.noise:
        for i in range(min(args.recordings, len(seqs))):
            b = make_batch([seqs[i]], [i])
            loss, grad, norm = training_step(model, b, [torch.Generator().manual_seed(i)], noise, None)
            print(f"noise {noise:<6} recording {i}  {b.frames:5d} steps  loss/step {float(loss[0]) / b.frames:8.3f}  "
                  f"finite {bool(torch.isfinite(grad).all())!s:5}  max|g| {grad.abs().max().item():9.3g}  "
                  f"norm float32 {norm[0].item():9.3g}  float64 {grad.double().norm().item():9.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
