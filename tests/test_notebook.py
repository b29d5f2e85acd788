"""The results notebook is committed executed, and re-executing it on the committed results gives
the committed outputs; every table it shows equals the committed report's file."""

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))

# appended to the notebook in the test only: each table the notebook computed (TABLES) written as
# rnnbench-report writes its csv files, against the committed report's file of that name
CHECK_TABLES = """
import json as _json
_compared, _differ = [], []
for (_study, _stem), _df in TABLES.items():
    _committed = RESULTS / REPORTS[_study] / f"{_stem}.csv"
    _compared.append(f"{REPORTS[_study]}/{_stem}.csv")
    if not _committed.is_file() or _df.to_csv(index=False, float_format="%.6g") != _committed.read_text():
        _differ.append(f"{REPORTS[_study]}/{_stem}.csv")
print(_json.dumps({"compared": _compared, "differ": _differ}))
"""


def _outputs(nb):
    """What each code cell showed (execution counts included)."""
    return [(c.get("execution_count"), c.get("outputs", [])) for c in nb.cells if c.cell_type == "code"]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_reexecutes_to_its_committed_outputs_and_the_reports_tables(path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    if not (REPO / "results" / "music" / "runs").is_dir():
        pytest.fail("results/music/runs is missing: the committed reproduction must be in the repository")
    committed = nbformat.read(path, as_version=4)
    text = path.read_text()
    assert str(REPO) not in text and "/work/" not in text and "/home/" not in text  # no absolute paths
    assert all("execution" not in c.get("metadata", {}) for c in committed.cells)  # no timestamps
    assert all(c.get("outputs") for c in committed.cells if c.cell_type == "code"), \
        "a code cell has no output: run python scripts/run_notebooks.py and commit the notebook"
    assert not [o for _, outs in _outputs(committed) for o in outs if o.get("output_type") == "error"]

    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(CHECK_TABLES))
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    check = nb.cells.pop()
    result = json.loads("".join(o["text"] for o in check.outputs if o.get("output_type") == "stream"))
    assert result["differ"] == [], result
    if path.name == "results.ipynb":
        music = {f"music/report/{stem}.csv"
                 for stem in ("table2", "selected_runs", "differences", "claims", "pruned", "table1")}
        assert music <= set(result["compared"])
        speech = {c for c in result["compared"] if c.startswith("speech/")}
        assert {c.rsplit("/", 1)[1] for c in speech} >= {"table2.csv", "selected_runs.csv", "claims.csv"}
    assert _outputs(nb) == _outputs(committed), \
        "the committed notebook is not what executing it gives: run python scripts/run_notebooks.py and commit it"
