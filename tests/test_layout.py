"""The package's layout: no import cycle among its modules, and every module says first what it is for.

Every ``import`` statement of ``src/rnnbench`` and ``src/hydra_plugins`` is read, those inside
functions included, and the graph of which module imports which must have no cycle (the trainer,
:mod:`rnnbench.stack`, imports the pieces it is built from; nothing imports the training loop
back).  A submodule importing its own package (``from . import conf_dir`` in ``rnnbench.cli``)
is no cycle: the package's ``__init__`` runs first either way.  ``python tests/test_layout.py``
prints the graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of ``from <level dots><name> import ...`` written in ``module``."""
    if level == 0:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its source (``import x.y``, ``from x
    import y``, ``from . import y`` naming a submodule, at any depth)."""
    files = {_module_name(p): p for top in ("rnnbench", "hydra_plugins") for p in (SRC / top).rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}

    def known(name: str) -> str | None:
        while name and name not in files:  # (``rnnbench.data.music.MUSIC_DATASETS`` -> its module)
            name = name.rpartition(".")[0]
        return name or None

    for mod, path in files.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, is_package, node.level, node.module)
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for t in targets:
                hit = known(t)
                if hit is not None and hit != mod and not mod.startswith(hit + "."):
                    graph[mod].add(hit)  # (a submodule importing its own package's __init__ is no cycle)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first == last), or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_training_loop_is_imported_by_its_entry_only():
    """stack.py (the training loop) imports neither train.py (its public entry) nor anything that
    imports it; train.py imports stack.py."""
    graph = import_graph()
    assert "rnnbench.train" not in graph["rnnbench.stack"]
    assert "rnnbench.stack" in graph["rnnbench.train"]


if __name__ == "__main__":
    g = import_graph()
    for m in sorted(g):
        print(m, "->", ", ".join(sorted(g[m])))
    print("cycle:", find_cycle(g))


def test_every_module_says_first_what_it_is_for():
    """Every module opens with a docstring whose first line is a one-line statement of what the
    module is for (a sentence of its own: it ends there, and a blank line follows if more comes)."""
    bad = []
    for path in sorted(p for top in ("rnnbench", "hydra_plugins") for p in (SRC / top).rglob("*.py")):
        text = path.read_text()
        doc = ast.get_docstring(ast.parse(text), clean=False)
        lines = (doc or "").splitlines()
        if not text.startswith('"""') or not lines or not lines[0].strip().endswith(".") or (
                len(lines) > 1 and lines[1].strip()):
            bad.append(f"{path.relative_to(SRC)}: {lines[0] if lines else '(no docstring)'}")
    assert not bad, "\n".join(bad)
