"""Time one training step (forward, loss, backward) of our cells against PyTorch's built-in modules.

    python scripts/bench_step.py                     # music size, batch 32 x length 200, CPU
    python scripts/bench_step.py --task speech --batch 32 --length 200
    python scripts/bench_step.py --device cuda
    python scripts/bench_step.py --batch 1 --members 10   # also: 10 runs stacked (rnnbench.stack)

"fused" is what rnnbench runs (the compiled CPU recurrences where available), "reference" the
plain PyTorch loop of rnnbench.cells.  Our cells are the paper's (peephole LSTM, reset-before GRU); nn.LSTM has no peepholes and nn.GRU
applies the reset gate after the product, so the built-ins are a speed yardstick, not a
substitute.  With ``--members K`` it also times one step of K stacked members (the runs of a
learning-rate search trained as one model, rnnbench.stack) and reports the time per member.
All numbers come from this one run; ratios = ours / built-in (lower is better).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from rnnbench import fused
from rnnbench.model import SequenceModel
from rnnbench.sizes import INPUT_SIZE, PAPER_TABLE1
from rnnbench.stack import StackedModel

BUILTIN = {"tanh": lambda d, h: nn.RNN(d, h, nonlinearity="tanh"), "gru": nn.GRU, "lstm": nn.LSTM}


def time_step(forward_loss, params, device, repeats: int, warmup: int) -> float:
    def once():
        for p in params:
            p.grad = None
        forward_loss().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        once()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=["music", "speech"], default="music")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--length", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cells", nargs="*", default=["tanh", "gru", "lstm"])
    ap.add_argument("--members", type=int, default=0, help="also time K stacked members (0: no)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    D = INPUT_SIZE[args.task]
    out = 88 if args.task == "music" else 10
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.length, args.batch, D, generator=g).to(device)
    y = (torch.rand(args.length, args.batch, out, generator=g) < 0.05).float().to(device)

    def loss_of(h, head):
        logits = head(h)
        if args.task == "music":
            return F.binary_cross_entropy_with_logits(logits, y)
        return F.mse_loss(logits, y)  # stand-in for the mixture head of the speech task

    print(f"# one training step, {args.task} size, batch {args.batch} x length {args.length}, "
          f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}")
    K = args.members
    stacked_head = f"{f'stack of {K}, ms/member':>24}{'stack/built-in':>16}" if K else ""
    print(f"{'cell':<6}{'units':>6}{'fused ms':>10}{'reference ms':>14}{'built-in ms':>13}"
          f"{'fused/built-in':>16}{'reference/built-in':>20}{stacked_head}")
    for cell in args.cells:
        units = PAPER_TABLE1[args.task][cell][0]
        torch.manual_seed(0)
        ours = SequenceModel(cell, D, units, out).to(device)
        times = {}
        for impl in ("auto", "python"):
            fused.set_impl(impl)
            times[impl] = time_step(lambda: loss_of(ours.cell(x)[0], ours.head.linear), list(ours.parameters()),
                                    device, args.repeats, args.warmup)
        fused.set_impl(None)
        ours_t, ref_loop_t = times["auto"], times["python"]
        ref = BUILTIN[cell](D, units).to(device)
        head = nn.Linear(units, out).to(device)
        ref_t = time_step(lambda: loss_of(ref(x)[0], head), list(ref.parameters()) + list(head.parameters()),
                          device, args.repeats, args.warmup)
        stacked = ""
        if K:
            stack = StackedModel(ours, K).to(device)
            # (a Bernoulli NLL for both tasks: the head's cost is not what is compared)
            st = time_step(lambda: stack.frame_nll(x, y).mean(), list(stack.parameters()), device,
                           args.repeats, args.warmup) / K
            stacked = f"{st * 1e3:>24.2f}{st / ref_t:>16.2f}"
        print(f"{cell:<6}{units:>6}{ours_t * 1e3:>10.1f}{ref_loop_t * 1e3:>14.1f}{ref_t * 1e3:>13.1f}"
              f"{ours_t / ref_t:>16.2f}{ref_loop_t / ref_t:>20.2f}{stacked}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
