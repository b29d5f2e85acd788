"""A cell of your own, named by import path: the minimal gated unit (Zhou et al. 2016).

One gate ``f`` both forgets and resets (compare the GRU's two)::

    f = s(W_f x + U_f h + b_f)
    n = tanh(W_n x + U_n (f * h) + b_n)
    h_t = (1 - f) * h + f * n

``examples/mgu/conf/cell/mgu.yaml`` names it (``_target_: mgu_cell.MGUCell``); with this folder on
the Python path, ``rnnbench-train --config-dir examples/mgu/conf cell=mgu`` trains it (README,
"Extending rnnbench").  It has no fused kernel: it runs the reference loop of ``step``.
"""

import torch

from rnnbench.cells import RecurrentCell


class MGUCell(RecurrentCell):
    GATES = 2  # blocks of `units` columns in the input projection W x + b and in U: f, n

    def step(self, xw, h):
        """``xw``: this step's ``W x + b``, shape ``(batch, 2 * units)``; ``h``: ``(batch, units)``."""
        H = self.hidden_size
        f = torch.sigmoid(xw[:, :H] + h @ self.weight_hh[:, :H])
        n = torch.tanh(xw[:, H:] + (f * h) @ self.weight_hh[:, H:])
        return (1 - f) * h + f * n
