"""A cell and a corpus of one's own, named by import path in a config folder of one's own: the
example in examples/mgu trained through the CLI as a user would (a lone run that resumes, stacked
and joblib sweeps, the report, sizes, sampling), and the one-line refusals of a _target_ that
cannot work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO

EXAMPLE = REPO / "examples" / "mgu"


def env_with(tmp_path, *paths):
    return dict(os.environ, RNNBENCH_RUNS=str(tmp_path / "runs"),
                PYTHONPATH=os.pathsep.join([*map(str, paths), os.environ.get("PYTHONPATH", "")]))


def train_cmd(data, config_dir, *extra, multirun=False):
    """``data``: the dataset overrides (a list), or the path of a toy .mat."""
    data = data if isinstance(data, list) else [f"dataset.path={data}", "dataset.name=toy"]
    return [sys.executable, "-m", "rnnbench.cli.train", *(["-m"] if multirun else []), "--config-dir", str(config_dir),
            *data, "train.batch_size=4", *extra]


def tool(name, *args, env):
    return subprocess.run([str(Path(sys.executable).with_name(name)), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_example_cell_trains_resumes_sweeps_and_is_reported(tmp_path):
    toy_mat = ["dataset=arpeggios"]  # (the example's own corpus: examples/mgu/arpeggios.py)
    env = env_with(tmp_path, EXAMPLE)
    one = subprocess.run(train_cmd(toy_mat, EXAMPLE / "conf", "cell=mgu", "train.max_epochs=1"), env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    [run] = [p.parent for p in (tmp_path / "runs" / "arpeggios" / "mgu").glob("*/summary.json")]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["cell"] == "mgu" and summary["units"] == 62 and summary["params_recurrent"] == 2 * 62 * (88 + 62 + 1)
    again = subprocess.run(train_cmd(toy_mat, EXAMPLE / "conf", "cell=mgu", "train.max_epochs=2"), env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stdout + again.stderr and json.loads((run / "summary.json").read_text())["epochs"] == 2

    sweeps = {}
    for launcher in ("stacked", "joblib"):
        sweep = tmp_path / f"sweep_{launcher}"
        out = subprocess.run(train_cmd(toy_mat, EXAMPLE / "conf", "cell=mgu,gru", "cell.units=6",
                                       "optim.lr=1e-2,3e-2", "train.max_epochs=2", f"hydra/launcher={launcher}",
                                       "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}", multirun=True),
                             env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        sweeps[launcher] = {p.parent.relative_to(sweep).as_posix(): json.loads(p.read_text())
                            for p in sweep.rglob("summary.json")}
        assert len(sweeps[launcher]) == 4 and {s["cell"] for s in sweeps[launcher].values()} == {"mgu", "gru"}
    for name, s in sweeps["stacked"].items():  # (stacked or one per process: the same numbers, to rounding)
        assert s["valid_nll"] == pytest.approx(sweeps["joblib"][name]["valid_nll"], rel=1e-4)

    report = tool("rnnbench-report", tmp_path / "sweep_stacked", "--out", tmp_path / "report", env=env)
    assert report.returncode == 0, report.stderr
    table = (tmp_path / "report" / "table2.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| dataset"))
    assert header.split("|")[3:5] == [" gru ", " mgu "]  # the paper's cells first, then one's own
    differences = (tmp_path / "report" / "differences.md").read_text()
    assert "gru - mgu" in differences

    sizes = tool("rnnbench-sizes", "--config-dir", EXAMPLE / "conf", "--cell", "mgu", env=env)
    assert sizes.returncode == 0 and "music  mgu       62" in sizes.stdout
    sample = tool("rnnbench-sample", run, "--out", tmp_path / "samples", "--length", "8", env=env)
    assert sample.returncode == 0, sample.stderr
    assert any(p.suffix == ".png" for p in (tmp_path / "samples").iterdir())


BAD_CELLS = {
    "nomodule": ("nowhere_such_module.Cell", "", "cannot be imported"),
    "notacell": ("bad_cells.NotACell", "class NotACell:\n    GATES = 1\n", "expected a subclass of rnnbench.cells.RecurrentCell"),
    "nostep": ("bad_cells.NoStep", "class NoStep(RecurrentCell):\n    GATES = 1\n", "has no step"),
    "dataset": ("bad_cells.no_such_builder", "", "'no_such_builder' is not found"),
    "gates": ("bad_cells.WrongGates", (
        "class WrongGates(RecurrentCell):\n    GATES = 3\n"
        "    def __init__(self, input_size, hidden_size):\n        super().__init__(input_size, hidden_size)\n"
        "        self.weight_ih = torch.nn.Parameter(torch.zeros(input_size, 2 * hidden_size))\n"
        "    def step(self, xw, h):\n        return torch.tanh(xw[:, :self.hidden_size])\n"), "weight_ih has shape"),
}


@pytest.mark.parametrize("case", sorted(BAD_CELLS))
def test_a_target_that_cannot_work_is_one_line_and_writes_nothing(toy_mat, tmp_path, case):
    target, source, expected = BAD_CELLS[case]
    module_dir = tmp_path / "mine"
    module_dir.mkdir()
    (module_dir / "bad_cells.py").write_text("import torch\nfrom rnnbench.cells import RecurrentCell\n\n" + source)
    group = "dataset" if case == "dataset" else "cell"
    conf = tmp_path / "conf" / group
    conf.mkdir(parents=True)
    if group == "cell":
        (conf / f"{case}.yaml").write_text(f"_target_: {target}\nname: {case}\nsizes: {{music: 4, speech: 4}}\n"
                                           "units: ${cell.sizes.${dataset.task}}\n")
    else:
        (conf / "mine.yaml").write_text(f"_target_: {target}\nname: {case}\ntask: music\n")
    override = "dataset=mine" if group == "dataset" else f"cell={case}"
    out = subprocess.run(train_cmd([] if group == "dataset" else toy_mat, tmp_path / "conf", override,
                                   "train.max_epochs=1"),
                         env=env_with(tmp_path, module_dir), capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert len(lines) == 1 and expected in lines[0] and repr(target) in lines[0] and f"{group}/{case}.yaml" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_a_subclass_that_rewrites_step_does_not_run_its_parents_kernel():
    from rnnbench.cells import GRUCell, has_fused, make_cell

    class Rewritten(GRUCell):
        def step(self, xw, h):
            return torch.tanh(xw[:, : self.hidden_size]) + 0 * h

    class WithKernel(Rewritten):
        def fused(self, xw, state, weights=None):
            return None

    assert has_fused(make_cell("gru", 3, 2)) and not has_fused(Rewritten(3, 2)) and has_fused(WithKernel(3, 2))
    cell = Rewritten(3, 2)
    x = torch.randn(4, 1, 3)
    assert torch.equal(cell(x)[0], cell(x, reference=True)[0])
