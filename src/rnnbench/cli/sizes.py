"""``rnnbench-sizes``: units and parameter counts of each cell (the paper's Table 1)."""

from __future__ import annotations

import argparse

from ..sizes import format_size_table, size_table

NOTE = """\
recurrent: parameters of the recurrent layer (input and recurrent weights, biases, peepholes), as the paper
counts them; +output: with the output layer.  The paper's music counts fit a ~100-wide input (its data used
93-108-wide frames); with 88 keys the same units give 6-9% fewer parameters.  We keep the paper's units."""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="rnnbench-sizes", description=__doc__)
    p.add_argument("--task", choices=["music", "speech"], action="append", help="default: both")
    args = p.parse_args(argv)
    print(format_size_table(size_table(tuple(args.task or ("music", "speech")))))
    print()
    print(NOTE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
