"""The fused kernels at each SIMD level this CPU has, one against the other in one run.

    python scripts/bench_kernels.py                 # every level this CPU has
    python scripts/bench_kernels.py avx2 avx512     # these levels
    python scripts/bench_kernels.py --task speech   # the speech sizes (tanh 400, GRU 227, LSTM 195)

Each cell's forward and backward time loop (``torch.ops.rnnbench.*_forward/_backward``) at the
paper's music sizes (tanh 100, GRU 46, LSTM 36 units) or speech sizes, K = 10 stacked members
(``--members``) with one row each (the paper's batch of one sequence, ``--rows``), T = 250 steps
(a Nottingham sequence), float32, one thread;
and the Bernoulli NLL with its gradient over 88 outputs.  Levels alternate, twice; the best of 5
repeats of 10 calls counts.  Time per row-step (the kernels) or per output (Bernoulli), and the
recurrent multiply-adds per nanosecond.  Choose a level for training with ``$RNNBENCH_KERNELS``.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from rnnbench import fused

UNITS = {"music": {"tanh": 100, "gru": 46, "lstm": 36}, "speech": {"tanh": 400, "gru": 227, "lstm": 195}}
GATES = {"tanh": 1, "gru": 3, "lstm": 4}


def best_time(f, per: int, n: int = 10, repeats: int = 5) -> float:
    """Best nanoseconds per unit of ``per`` over ``repeats`` runs of ``n`` calls."""
    f()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            f()
        best = min(best, (time.perf_counter() - t) / n / per * 1e9)
    return best


def one_cell(cell: str, H: int, G: int, K: int, T: int, rows: int = 1):
    """(recurrent multiply-adds per row-step, forward call, backward call) for one cell."""
    ops = torch.ops.rnnbench
    g = torch.Generator().manual_seed(0)
    R = K * rows
    xw = torch.randn(T, R, G * H, generator=g) * 0.5
    U = torch.randn(K, H, G * H, generator=g) * (0.5 / H ** 0.5)
    h0 = torch.zeros(R, H)
    dhs = torch.randn(T, R, H, generator=g) * 0.1
    if cell == "tanh":
        hs = ops.tanh_forward(xw, h0, U)
        return H * G * H, (lambda: ops.tanh_forward(xw, h0, U)), (lambda: ops.tanh_backward(dhs, hs, U))
    if cell == "gru":
        hs, gates = ops.gru_forward(xw, h0, U)
        return H * G * H, (lambda: ops.gru_forward(xw, h0, U)), (lambda: ops.gru_backward(dhs, hs, h0, U, gates))
    c0, P = torch.zeros(R, H), torch.randn(K, 3, H, generator=g) * 0.1
    hs, cs, tcs, gates = ops.lstm_forward(xw, h0, c0, U, P)
    dcs = torch.zeros_like(cs)
    return (H * G * H, (lambda: ops.lstm_forward(xw, h0, c0, U, P)),
            (lambda: ops.lstm_backward(dhs, dcs, cs, tcs, c0, U, P, gates)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("levels", nargs="*", help="SIMD levels to compare (default: all this CPU has)")
    ap.add_argument("--members", type=int, default=10)
    ap.add_argument("--rows", type=int, default=1, help="rows (sequences) per member")
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--task", choices=sorted(UNITS), default="music")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)  # as the trainer runs (subnormal floats flushed to zero)
    if not fused.load():
        raise SystemExit(f"the fused extension is unavailable: {fused._state['error']}")
    levels = args.levels or fused.available_kernels()
    K, T, B = args.members, args.steps, args.rows
    work = {cell: one_cell(cell, H, GATES[cell], K, T, B) for cell, H in UNITS[args.task].items()}
    logits = torch.randn(K, 2500, 88, generator=torch.Generator().manual_seed(1)) * 3
    y = (torch.rand(2500, 88, generator=torch.Generator().manual_seed(2)) < 0.05).float()
    res: dict = {}
    before = fused.set_kernels("auto")
    try:
        for _ in range(2):
            for level in levels:
                fused.set_kernels(level)
                for cell, (_, fwd, bwd) in work.items():
                    res.setdefault((cell, "forward", level), []).append(best_time(fwd, T * K * B))
                    res.setdefault((cell, "backward", level), []).append(best_time(bwd, T * K * B))
                res.setdefault(("bernoulli", "nll+grad", level), []).append(
                    best_time(lambda: torch.ops.rnnbench.bernoulli_nll(logits, y, True), logits.numel()))
    finally:
        fused.set_kernels(before)
    print(f"# fused kernels, {args.task} sizes, torch {torch.__version__}, 1 thread, {platform.machine()}, "
          f"K={K} members x {B} row(s), T={T}; levels alternate twice, best of 5 x 10 calls")
    print(f"{'kernel':<10}{'pass':<10}" + "".join(f"{lv + ' ns':>14}{'MAC/ns':>8}" for lv in levels)
          + (f"{levels[0] + ' vs ' + levels[-1]:>18}" if len(levels) > 1 else ""))
    for cell, (macs, _, _) in list(work.items()) + [("bernoulli", (None, None, None))]:
        for pas in (("forward", "backward") if cell != "bernoulli" else ("nll+grad",)):
            t = {lv: min(res[(cell, pas, lv)]) for lv in levels}
            row = f"{cell:<10}{pas:<10}" + "".join(
                f"{t[lv]:>14.1f}" + (f"{macs / t[lv]:>8.1f}" if macs else f"{'':>8}") for lv in levels)
            if len(levels) > 1:
                row += f"{t[levels[-1]] / t[levels[0]]:>17.2f}x"
            print(row)
    print("# ns: per row-step (the kernels) or per output (bernoulli); the last column: how many times faster "
          "the first level runs than the last")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
