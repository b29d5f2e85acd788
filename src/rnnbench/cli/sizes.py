"""``rnnbench-sizes``: units and parameter counts of each cell (the paper's Table 1)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import RnnbenchError
from ..launch import one_line
from ..sizes import format_size_table, size_table
from . import conf_dir
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


def _cell_config(name: str, config_dir: str | None) -> dict:
    """``cell/NAME.yaml`` from ``config_dir`` (first) or the shipped configs, with its sizes."""
    from omegaconf import OmegaConf

    from ..errors import ConfigError

    places = [Path(d) / "cell" / f"{name}.yaml" for d in (config_dir, conf_dir()) if d]
    path = next((p for p in places if p.is_file()), None)
    if path is None:
        raise ConfigError(f"cell {name!r}: no cell file, looked for {', '.join(repr(str(p)) for p in places)}")
    try:
        cfg = OmegaConf.to_container(OmegaConf.load(path))
    except Exception as exc:
        raise ConfigError(f"{str(path)!r}: cannot be read as YAML ({type(exc).__name__})") from exc
    sizes = cfg.get("sizes") if isinstance(cfg, dict) else None
    if not (isinstance(sizes, dict) and all(isinstance(sizes.get(t), int) and sizes[t] >= 1 for t in ("music", "speech"))):
        raise ConfigError(f"{str(path)!r}: sizes={sizes!r}; expected sizes: {{music: <units>, speech: <units>}}")
    return cfg


def main(argv: list[str] | None = None) -> int:
    p = parser("rnnbench-sizes", DESCRIPTION, "example:\n  rnnbench-sizes --task music")
    p.add_argument("--task", choices=["music", "speech"], action="append",
                   help="only this task's rows; may be given twice (default: both)")
    p.add_argument("--cell", action="append", default=[], metavar="NAME",
                   help="also this cell (conf/cell/NAME.yaml, or in --config-dir), e.g. a cell of your own "
                        "named by _target_; may be given more than once")
    p.add_argument("--config-dir", metavar="DIR", help="a config folder of your own, as rnnbench-train takes it")
    args = p.parse_args(argv)
    try:
        extra = {name: _cell_config(name, args.config_dir) for name in args.cell}
        rows = size_table(tuple(args.task or ("music", "speech")), extra)
    except RnnbenchError as exc:
        print(f"rnnbench-sizes: error: {one_line(exc)}", file=sys.stderr)
        return 2
    print(format_size_table(rows))
    print()
    print(NOTE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
