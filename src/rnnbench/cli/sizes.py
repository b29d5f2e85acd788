"""``rnnbench-sizes``: units and parameter counts of each cell (the paper's Table 1)."""

from __future__ import annotations

from ..sizes import format_size_table, size_table
from .helpfmt import parser

NOTE = """\
recurrent: parameters of the recurrent layer (input and recurrent weights,
biases, peepholes), as the paper counts them; +output: with the output layer.
The paper's music counts fit a ~100-wide input (its data used 93-108-wide
frames); with 88 keys the same units give 6-9% fewer parameters.  We keep the
paper's units."""


DESCRIPTION = """\
Units and parameter counts of each cell, the paper's Table 1: the paper's
units for the tanh RNN, GRU and LSTM, our parameter counts beside the paper's,
and the counts at the paper's input width.

""" + NOTE


def main(argv: list[str] | None = None) -> int:
    p = parser("rnnbench-sizes", DESCRIPTION, "example:\n  rnnbench-sizes --task music")
    p.add_argument("--task", choices=["music", "speech"], action="append",
                   help="only this task's rows; may be given twice (default: both)")
    args = p.parse_args(argv)
    print(format_size_table(size_table(tuple(args.task or ("music", "speech")))))
    print()
    print(NOTE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
