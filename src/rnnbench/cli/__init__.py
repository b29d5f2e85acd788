"""Command-line entry points."""

import os
from pathlib import Path


def conf_dir() -> str:
    """The Hydra config folder: ``$RNNBENCH_CONF``, else ``conf/`` of the source checkout."""
    env = os.environ.get("RNNBENCH_CONF")
    if env:
        return str(Path(env).resolve())
    return str(Path(__file__).resolve().parents[3] / "conf")
