"""The mixture head's share of a speech training step, old way against new, interleaved in one process.

    python scripts/bench_speech_head_ab.py                          # K = 1, 30 FSDD utterances, 3 rounds
    python scripts/bench_speech_head_ab.py --members 10 --updates 8

"old" is the head as at 3d81a7d, inside this checkout: ``loss_and_grad`` declines and
``frame_nll`` runs the head under ``vmap`` over the members, so the step goes through autograd;
"new" is this checkout's hand-written step.  Everything else (weight noise, the fused recurrences,
clipping, RMSProp) is the same code in both, so the difference is the head's alone.  Each round
runs old then new on the same real FSDD training utterances (the trainer's first ``--updates``
batches, batch 1, the paper's units, one thread, weight noise 0.02), timed in CPU seconds of this
process (``time.process_time``: on a shared machine, less disturbed by waiting for a core than wall
time), and prints µs per member-frame per round, the medians and their ratio.  Used for the
decisions of issue 22 on a loaded machine; the real-epoch A/B against the old checkout is
``scripts/bench_speech.py --old``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
UNITS = {"tanh": 400, "gru": 227, "lstm": 195}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", nargs="*", default=["tanh", "gru", "lstm"])
    ap.add_argument("--updates", type=int, default=30)
    ap.add_argument("--members", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data-root", default=os.environ.get("RNNBENCH_DATA", str(REPO.parent / "shared" / "data")))
    args = ap.parse_args(argv)
    import torch
    from hydra import compose, initialize_config_dir
    from torch.func import functional_call, vmap

    from rnnbench import fused, stack
    from rnnbench.data import iterate
    from rnnbench.model import SequenceModel
    from rnnbench.recipe import Splits
    from rnnbench.stack import StackedModel, _HeadNLL

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    fused.load()
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train", overrides=["dataset=fsdd", f"data_root={args.data_root}"])
    data = Splits(cfg)
    order = data.train_batches(cfg.train, torch.Generator().manual_seed(1))[: args.updates]
    batches = list(iterate(data.seqs["train"], order))
    frames = sum(b.frames for b in batches)
    K = args.members

    def old_frame_nll(self, inputs, targets, flat=None):  # (3d81a7d's frame_nll for a mixture head)
        v = self.views(flat)
        T, B = inputs.shape[:2]
        n = next(iter(v.values())).shape[0]
        h = self._fused_features(inputs, v)
        hk = h.view(T, n, B, -1).permute(1, 0, 2, 3).reshape(n, T * B, -1).view(n, T, B, -1)
        hp = {k: w for k, w in v.items() if k.startswith("head.")}
        head = self.proto.head
        return vmap(lambda q, x: functional_call(_HeadNLL(head), q, (x, targets)), in_dims=(0, 0), out_dims=1)(hp, hk)

    modes = {"old": (lambda *a, **k: None, old_frame_nll),
             "new": (StackedModel.loss_and_grad, StackedModel.frame_nll)}
    print(f"# {len(batches)} FSDD training utterances ({frames} frames), K = {K}, 1 thread, kernels "
          f"{fused.kernels()}, CPU time; us per member-frame")
    try:
        for cell in args.cells:
            torch.manual_seed(0)
            proto = SequenceModel.for_corpus(cell, UNITS[cell], data.corpus)
            res: dict = {"old": [], "new": []}
            for _ in range(args.rounds):
                for mode in ("old", "new"):
                    StackedModel.loss_and_grad, StackedModel.frame_nll = modes[mode]
                    model = StackedModel(proto, K)
                    opt = stack.StackedRMSprop(model, [1e-4] * K, cfg.optim)
                    gens = [torch.Generator().manual_seed(2 + k) for k in range(K)]
                    stack.training_step(model, batches[0], gens, 0.02, 1.0)  # (warm)
                    t = time.process_time()
                    for b in batches:
                        _, grad, _ = stack.training_step(model, b, gens, 0.02, 1.0)
                        opt.step(grad, [True] * K)
                    res[mode].append((time.process_time() - t) / (frames * K) * 1e6)
            o, n = statistics.median(res["old"]), statistics.median(res["new"])
            print(f"{cell:<5} K={K:<3} old {o:7.2f}  new {n:7.2f}  {o / n:5.2f}x   rounds: old "
                  f"{' '.join(f'{x:.1f}' for x in res['old'])} | new {' '.join(f'{x:.1f}' for x in res['new'])}",
                  flush=True)
    finally:
        StackedModel.loss_and_grad, StackedModel.frame_nll = modes["new"]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
