"""Execute the notebooks under ``notebooks/`` in place, so that they are committed with their outputs.

    python scripts/run_notebooks.py [NOTEBOOK ...]

Each notebook runs in a fresh kernel (this Python's ``python3`` kernel, from ``notebooks/`` as the
working directory, reading the committed ``results/``) and is written back only when every cell ran
without an error.  The outputs are made to be committed: no execution timestamps are recorded, and
the notebooks print no absolute path, so executing them again on the same committed results
changes nothing (the tests check that).  Needs the test extras (``nbclient``, ``nbformat``,
``ipykernel``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def execute(path: Path, timeout: int = 600):
    """The notebook at ``path``, executed (not written)."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    for cell in nb.cells:
        cell.get("metadata", {}).pop("execution", None)
    return nb


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/*.ipynb")
    args = p.parse_args(argv)
    import nbclient
    import nbformat

    paths = args.notebooks or sorted((REPO / "notebooks").glob("*.ipynb"))
    for path in paths:
        try:
            nb = execute(path.resolve())
        except nbclient.exceptions.CellExecutionError as exc:
            print(f"{path}: a cell failed, notebook left as it was:\n{exc}", file=sys.stderr)
            return 1
        nbformat.write(nb, path)
        print(f"{path}: executed, outputs written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
