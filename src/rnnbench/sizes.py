"""Model sizes matched by parameter count: the paper's Table 1 and ours."""

from __future__ import annotations

from .cells import count_parameters, recurrent_param_count
from .model import SequenceModel

# Chung et al. (2014), Table 1: units and (recurrent-layer) parameters.
PAPER_TABLE1 = {
    "music": {"tanh": (100, 20_100), "gru": (46, 20_200), "lstm": (36, 19_800)},
    "speech": {"tanh": (400, 168_400), "gru": (227, 168_900), "lstm": (195, 169_100)},
}
# Frame widths: our inputs, and the input width that reproduces the paper's music counts
# (its data used 93-108-wide frames, not 88 keys).
INPUT_SIZE = {"music": 88, "speech": 20}
PAPER_INPUT_SIZE = {"music": 100, "speech": 20}
OUTPUT_SIZE = {"music": 88, "speech": 10}
# Output heads: independent Bernoulli per key (music); a mixture of 20 diagonal Gaussians over
# the next 10 samples (speech; its layer gives 20 logits, 200 means and 200 scales).
HEAD = {"music": ("bernoulli", {}), "speech": ("gmm", {"components": 20})}


def size_table(tasks=("music", "speech"), extra_cells: dict | None = None) -> list[dict]:
    """The paper's Table 1 rows, then one row per task for each cell of ``extra_cells`` (name ->
    cell configuration with ``sizes: {music: units, speech: units}``, and ``_target_`` for a cell
    of one's own); those have no paper count."""
    rows = []
    for task in tasks:
        cells = [(cell, cell, units, paper) for cell, (units, paper) in PAPER_TABLE1[task].items()]
        cells += [(name, cfg, int(cfg["sizes"][task]), None) for name, cfg in (extra_cells or {}).items()]
        for name, cell, units, paper in cells:
            ours = recurrent_param_count(cell, INPUT_SIZE[task], units)
            row = {
                "task": task, "cell": name, "units": units, "input": INPUT_SIZE[task],
                "recurrent": ours, "paper": paper,
                "recurrent_at_paper_input": recurrent_param_count(cell, PAPER_INPUT_SIZE[task], units),
                "vs_paper": None if paper is None else ours / paper - 1.0,
                "total": None,
            }
            if OUTPUT_SIZE[task] is not None:
                head, head_kwargs = HEAD[task]
                row["total"] = count_parameters(SequenceModel(cell, INPUT_SIZE[task], units, OUTPUT_SIZE[task],
                                                              head=head, head_kwargs=head_kwargs))
            rows.append(row)
    return rows


def format_size_table(rows: list[dict]) -> str:
    lines = [f"{'task':<7}{'cell':<6}{'units':>6}{'input':>6}{'recurrent':>11}{'+output':>10}"
             f"{'paper':>9}{'ours/paper':>11}{'at paper input':>16}"]
    for r in rows:
        total = f"{r['total']:,}" if r["total"] is not None else "(issue 4)"
        paper = "-" if r["paper"] is None else "~" + format(r["paper"] / 1000, ".1f") + "k"
        vs = "-" if r["vs_paper"] is None else format(r["vs_paper"], "+.1%")
        lines.append(f"{r['task']:<7}{r['cell']:<6}{r['units']:>6}{r['input']:>6}{r['recurrent']:>11,}{total:>10}"
                     f"{paper:>9}{vs:>10}{r['recurrent_at_paper_input']:>16,}")
    return "\n".join(lines)
