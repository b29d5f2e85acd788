"""Cost of one member-frame: training (noise, forward, backward, clipping, RMSProp) and evaluation.

    python scripts/bench_member_frame.py                    # this checkout's code
    python scripts/bench_member_frame.py --src OLD/src      # another checkout's code (e.g. before a change)

A *member-frame* is one frame of one sequence for one of the K runs trained as a stack (K = 1: a
run alone).  For the music task the frames are Nottingham's real training sequences (piano rolls,
in the trainer's batch order, batch 1); for the speech task synthetic 20-sample frames with the
20-Gaussian mixture head (batch 1, 200 steps).  Each cell at the paper's units; K = 1 and K = 10.

Training: the wall time of ``--updates`` updates of the trainer's own step, divided by the
member-frames they hold; each member draws its own weight noise from its own generator, as in a
stack of learning-rate draws (before 2026-12-02 this script drew one noise for all members; the
two-loop code's API, ``--src`` of a checkout before fc60b98, still does).  Evaluation: the trainer's evaluator on Nottingham's validation split
(music) or the same synthetic batches (speech), with the trainer's default evaluation batches.
Achieved GFLOP/s counts the dense-equivalent multiply-adds of a training step (forward, the two
backward products, 2 FLOPs each) against a 2048 x 2048 float32 matrix product timed in the same
run, one thread.  All numbers come from this one run.  Subnormal floats are flushed to zero, as the
trainer runs (before 2026-12-02 evening this script did not: the mixture head's gradients at speech
size then hold subnormal numbers, on which x86 arithmetic is many times slower, and a stack of 10
tanh-400 members measured 2.5x what it costs in training).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
UNITS = {"music": {"tanh": 100, "gru": 46, "lstm": 36}, "speech": {"tanh": 400, "gru": 227, "lstm": 195}}
GATES = {"tanh": 1, "gru": 3, "lstm": 4}


def macs_per_frame(task: str, cell: str, D: int, head_out: int) -> int:
    H, G = UNITS[task][cell], GATES[cell]
    return D * G * H + H * G * H + H * head_out


def gemm_gflops(torch) -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    t = time.perf_counter()
    for _ in range(5):
        a @ b
    return 5 * 2 * 2048 ** 3 / (time.perf_counter() - t) / 1e9


class Step:
    """One training update of K stacked members through whichever API the imported rnnbench has."""

    def __init__(self, rnnbench, proto, K: int, lr: float, optim_cfg):
        import torch

        self.torch, self.stack = torch, importlib.import_module("rnnbench.stack")
        self.model = self.stack.StackedModel(proto, K)
        self.new = hasattr(self.model, "flat")
        # each member its own noise generator, as the trainer gives every run of a stack (one
        # draw per member per update; a generator shared by all would draw once for all)
        self.gens = [torch.Generator().manual_seed(2 + k) for k in range(K)]
        if self.new:
            self.opt = self.stack.StackedRMSprop(self.model, [lr] * K, optim_cfg)
        else:
            self.opt = self.stack.StackedRMSprop(self.model.weights, [lr] * K, optim_cfg)
            self.noise = importlib.import_module("rnnbench.train").weight_noise
        self.K = K

    def __call__(self, batch) -> None:
        K = self.K
        if self.new:
            _, grad, _ = self.stack.training_step(self.model, batch, self.gens, 0.075, 1.0)
            self.opt.step(grad, [True] * K)
            return
        m = self.model
        with self.noise([m.weights[i] for i in m.noisy], 0.075, self.gens[0], lead=1):
            nll = m.frame_nll(batch.inputs, batch.targets)
            loss = nll.permute(1, 0, 2)[:, batch.mask].sum(1)
            self.opt.zero_grad()
            (loss / batch.frames).sum().backward()
        self.stack.clip_members(m.weights, 1.0)
        self.opt.step([True] * K)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=None, help="import rnnbench from this src/ folder instead")
    ap.add_argument("--updates", type=int, default=60)
    ap.add_argument("--members", nargs="*", type=int, default=[1, 10])
    ap.add_argument("--tasks", nargs="*", default=["music", "speech"])
    ap.add_argument("--cells", nargs="*", default=["tanh", "gru", "lstm"])
    args = ap.parse_args(argv)
    if args.src:
        sys.path.insert(0, str(Path(args.src).resolve()))
    import torch
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    rnnbench = importlib.import_module("rnnbench")
    # Splits: rnnbench.recipe, or rnnbench.train in a checkout from before the recipe had its own module
    recipe = importlib.import_module("rnnbench.recipe" if importlib.util.find_spec("rnnbench.recipe") else "rnnbench.train")
    stack = importlib.import_module("rnnbench.stack")
    data_mod = importlib.import_module("rnnbench.data")
    from rnnbench import fused
    from rnnbench.model import SequenceModel

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)  # as the trainer runs (subnormal floats flushed to zero)
    fused.load()
    conf = Path(rnnbench.__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(version_base="1.3", config_dir=str(conf)):
        cfg = compose("train", overrides=["dataset=nottingham", "experiment=chung2014_music", "search.draw=0",
                                          f"data_root={os.environ.get('RNNBENCH_DATA', '../shared/data')}"])
    new_api = hasattr(stack.StackedModel, "views")
    kernels = fused.kernels() if hasattr(fused, "kernels") else "fused"
    print(f"# member-frame costs, rnnbench from {Path(rnnbench.__file__).parent} ({'one loop' if new_api else 'two loops'}),"
          f" torch {torch.__version__}, 1 thread, {platform.processor() or platform.machine()}, kernels {kernels}")
    gemm = gemm_gflops(torch)
    print(f"# 2048 x 2048 float32 matrix product: {gemm:.1f} GFLOP/s")
    print(f"{'task':<7}{'cell':<6}{'units':>6}{'K':>4}{'train us':>10}{'GFLOP/s':>9}{'of GEMM':>9}{'eval us':>9}")
    music_new = None
    for task in args.tasks:
        for cell in args.cells:
            H = UNITS[task][cell]
            for K in args.members:
                torch.manual_seed(0)
                if task == "music":
                    if new_api:  # (the trainer's own evaluation batches: 4096 frames per member, or 400000 in all before)
                        music_new = music_new or recipe.Splits(cfg)
                        data = music_new
                    else:
                        data = recipe.Splits(cfg, 400000 // K)
                    proto = SequenceModel.for_corpus(cell, H, data.corpus)
                    g = torch.Generator().manual_seed(1)
                    order = data.train_batches(cfg.train, g)[: args.updates]
                    batches = list(data_mod.iterate(data.seqs["train"], order))
                    ev_seqs, ev_batches = data.seqs["valid"], data.eval_batches["valid"]
                    D, out = 88, 88
                else:
                    D, out = 20, 20 * 21
                    proto = SequenceModel(cell, D, H, 10, head="gmm", head_kwargs={"components": 20})
                    g = torch.Generator().manual_seed(1)
                    seqs = [(torch.randn(200, D, generator=g).numpy(), torch.randn(200, 10, generator=g).numpy())
                            for _ in range(args.updates)]
                    batches = list(data_mod.iterate(seqs, [[i] for i in range(len(seqs))]))
                    ev_seqs = seqs
                    ev_batches = data_mod.batch_indices([200] * len(seqs), batch_size=10 ** 9, shuffle=False,
                                                        max_frames=(4096 if new_api else 400000 // K))
                step = Step(rnnbench, proto, K, 1e-3, OmegaConf.create(cfg.optim))
                step(batches[0])
                frames = sum(b.frames for b in batches[1:])
                t = time.perf_counter()
                for b in batches[1:]:
                    step(b)
                train_us = (time.perf_counter() - t) / (frames * K) * 1e6
                stack.evaluate_members(step.model, ev_seqs, ev_batches[:1], "cpu")
                t = time.perf_counter()
                stack.evaluate_members(step.model, ev_seqs, ev_batches, "cpu")
                ev_frames = sum(len(s) if task == "music" else 200 for s in ev_seqs)
                eval_us = (time.perf_counter() - t) / (ev_frames * K) * 1e6
                gflops = 3 * 2 * macs_per_frame(task, cell, D, out) / (train_us * 1e3)
                print(f"{task:<7}{cell:<6}{H:>6}{K:>4}{train_us:>10.2f}{gflops:>9.2f}{gflops / gemm:>9.1%}{eval_us:>9.2f}",
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
