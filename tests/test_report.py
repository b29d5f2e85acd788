"""The report: collecting run directories, selection on validation, Table 2 with intervals over
seeds, paired differences between cells, the paper's claims put to the test, pruned and
budget-stopped runs named, byte-identical regeneration."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from rnnbench.report import collect_runs, expected_configs, select_best, write_report


# ----------------------------------------------------------------------------- report

def fake_run(sweep: Path, dataset, cell, draw, seed, lr, valid, test, train=None, status="finished", epochs=3):
    """A run directory as train() writes it (used to test the report's logic on known numbers)."""
    run = sweep / dataset / cell / f"search.draw={draw},seed={seed}"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"search:\n  draw: {draw}\ndataset:\n  name: {dataset}\ncell:\n  name: {cell}\nseed: {seed}\n")
    train = valid - 0.2 if train is None else train
    summary = {"status": status, "stop_reason": "early_stopping" if status == "finished" else None,
               "dataset": dataset, "task": "music", "cell": cell, "units": {"tanh": 100, "gru": 46, "lstm": 36}[cell],
               "params_recurrent": 1, "params_total": 2, "lr": lr, "seed": seed, "batch_size": 1,
               "weight_noise": 0.075, "best_epoch": epochs, "train_nll": train, "valid_nll": valid, "test_nll": test,
               "epochs": epochs, "updates": 10 * epochs, "wall_seconds": 1.0 * epochs, "fingerprint": "x"}
    (run / "summary.json").write_text(json.dumps(summary))
    lines = ["epoch,updates,wall_seconds,train_nll,valid_nll,test_nll,train_loss_noisy,lr"]
    for e in range(1, epochs + 1):
        lines.append(f"{e},{10 * e},{1.0 * e},{train + (epochs - e)},{valid + (epochs - e)},{test + (epochs - e)},0,{lr}")
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    return run


@pytest.fixture
def fake_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    for seed in (0, 1, 2):
        # draw 0 has the better validation NLL; draw 1 the better *test* NLL: selection must pick draw 0
        for cell, base in (("gru", 8.0), ("lstm", 8.3), ("tanh", 8.6)):
            fake_run(sweep, "jsb", cell, 0, seed, 1e-3, valid=base + 0.01 * seed, test=base + 0.1 + 0.02 * seed)
            fake_run(sweep, "jsb", cell, 1, seed, 1e-4, valid=base + 0.5, test=base - 1.0)
    fake_run(sweep, "nottingham", "gru", 0, 0, 1e-3, valid=3.0, test=3.1)
    fake_run(sweep, "nottingham", "lstm", 0, 0, 1e-3, valid=float("nan"), test=float("nan"), status="diverged")
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    params:\n      dataset: jsb,nottingham\n      cell: tanh,gru,lstm\n"
        "      search.draw: range(0,2)\n      seed: 0,1,2\n  overrides:\n    task: []\nseed: 0\n")
    return sweep


def test_selection_is_on_validation_never_on_test(fake_sweep):
    best = select_best(collect_runs([fake_sweep])).set_index(["dataset", "cell"])
    assert best.loc[("jsb", "gru"), "lr"] == 1e-3
    assert best.loc[("jsb", "gru"), "seeds"] == 3
    assert best.loc[("jsb", "gru"), "test_nll"] == pytest.approx(8.0 + 0.1 + 0.02)
    assert best.loc[("jsb", "gru"), "test_std"] == pytest.approx(0.02)
    assert best.loc[("jsb", "gru"), "paper_test"] == 8.54
    assert ("nottingham", "lstm") not in best.index  # diverged runs are never selected


def test_report_tables_interval_missing_and_failed(fake_sweep, tmp_path):
    result = write_report([fake_sweep], tmp_path / "rep")
    t2 = pd.read_csv(tmp_path / "rep" / "table2.csv")
    jsb_test = t2[(t2.dataset == "JSB Chorales") & (t2.split == "test")].iloc[0]
    assert jsb_test["gru"] == "8.12 ± 0.02"
    diffs = pd.read_csv(tmp_path / "rep" / "differences.csv").set_index(["dataset", "pair"])
    cmp = diffs.loc[("jsb", "gru - lstm")]
    assert cmp["difference"] == pytest.approx(-0.3) and cmp["seeds"] == 3
    assert cmp["ci95_low"] == pytest.approx(-0.3) and cmp["ci95_high"] == pytest.approx(-0.3)  # no spread
    assert diffs.loc[("jsb", "tanh - gru"), "paper_difference"] == pytest.approx(9.10 - 8.54)
    claims = pd.read_csv(tmp_path / "rep" / "claims.csv").set_index(["dataset", "claim"])
    assert claims.loc[("jsb", "GRU beats tanh"), "verdict"] == "holds"
    assert claims.loc[("jsb", "gated beats tanh"), "verdict"] == "holds"
    assert claims.loc[("jsb", "GRU ≈ LSTM (|difference| < 0.1 nats)"), "verdict"] == "fails"
    assert claims.loc[("jsb", "GRU ≈ LSTM (|difference| < 0.1 nats)"), "paper"] == "no (-0.13)"
    missing = pd.read_csv(tmp_path / "rep" / "missing.csv")
    # 2 datasets x 3 cells x 2 draws x 3 seeds = 36 asked for; 18 + 2 present
    assert len(missing) == 36 - 20
    assert ((missing.dataset == "nottingham") & (missing.cell == "tanh")).sum() == 6
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "diverged" in report and "Missing runs (16)" in report
    for name in ("table2.md", "table2.tex", "table1.csv", "curves_updates.png", "curves_seconds.pdf", "runs.csv"):
        assert (tmp_path / "rep" / name).stat().st_size > 0
    assert len(result["problems"]) == 1


def test_report_regenerates_identical_files(fake_sweep, tmp_path):
    write_report([fake_sweep], tmp_path / "a")
    write_report([fake_sweep], tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_expected_configs_from_multirun_yaml(fake_sweep):
    exp = expected_configs(fake_sweep)
    assert len(exp) == 36
    assert {"dataset": "jsb", "cell": "gru", "draw": "1", "seed": "2"} in exp


def test_report_cli_on_empty_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    p = subprocess.run([sys.executable, "-m", "rnnbench.cli.report", str(tmp_path / "empty")], capture_output=True,
                       text=True)
    assert p.returncode == 2 and "no run directories" in p.stderr


def quick_sweep_lacking_tanh(tmp_path):
    """A sweep of the quick study's shape (3 cells, one draw, the dataset fixed by the experiment)
    whose tanh run is missing."""
    sweep = tmp_path / "quick"
    for cell in ("gru", "lstm"):
        fake_run(sweep, "chorales", cell, 0, 0, 1e-3, valid=8.0, test=8.1)
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    params:\n      cell: tanh,gru,lstm\n      search.draw: range(0,1)\n"
        "  overrides:\n    task: []\nseed: 0\n")
    return sweep

def test_a_report_rewritten_in_place_leaves_no_stale_table(tmp_path):
    """Regenerated into the same folder after the missing runs arrived, the report no longer has
    a missing.* table (which would list runs that exist); files that are not the report's stay."""
    from rnnbench.report import write_report

    sweep = quick_sweep_lacking_tanh(tmp_path)
    out = tmp_path / "rep"
    write_report([sweep], out)
    assert {p.name for p in out.glob("missing.*")} == {"missing.csv", "missing.md", "missing.tex"}
    (out / "notes.md").write_text("mine")
    fake_run(sweep, "chorales", "tanh", 0, 0, 1e-3, valid=8.5, test=8.6)
    result = write_report([sweep], out)
    assert result["missing"].empty and not list(out.glob("missing.*"))
    assert (out / "notes.md").read_text() == "mine"
    assert {p.name for p in out.iterdir()} == {Path(p).name for p in result["written"]} | {"notes.md"}


def test_missing_runs_compare_only_swept_keys(tmp_path):
    """A dataset fixed by the experiment (not swept) must not make every run look missing."""
    sweep = quick_sweep_lacking_tanh(tmp_path)
    from rnnbench.report import missing_runs

    missing = missing_runs([sweep], collect_runs([sweep]))
    assert missing.to_dict("records") == [{"sweep": "quick", "cell": "tanh", "draw": "0", "seed": "0"}]


def test_selection_uses_the_seeds_every_draw_has_and_marks_budget_and_pruned(tmp_path):
    """Seeds 1-4 trained only at the selected rate do not enter the selection; a pruned draw is a
    candidate that lost; a run stopped by its epoch cap is marked in Table 2; the LaTeX table
    prints rates, not 0.00, and empty cells, not NaN."""
    sweep = tmp_path / "study"
    fake_run(sweep, "jsb", "gru", 0, 0, 1.5e-3, valid=8.0, test=8.1)
    fake_run(sweep, "jsb", "gru", 1, 0, 1e-4, valid=8.05, test=8.0)
    fake_run(sweep, "jsb", "gru", 2, 0, 1e-5, valid=9.5, test=9.5, status="pruned")
    for seed, valid in ((1, 8.4), (2, 8.3)):  # seeds at draw 0 only, worse on average than draw 1's seed 0
        fake_run(sweep, "jsb", "gru", 0, seed, 1.5e-3, valid=valid, test=8.2)
    summary = json.loads((sweep / "jsb/gru/search.draw=0,seed=2/summary.json").read_text())
    summary["stop_reason"] = "max_epochs"
    (sweep / "jsb/gru/search.draw=0,seed=2/summary.json").write_text(json.dumps(summary))
    best = select_best(collect_runs([sweep])).set_index(["dataset", "cell"]).loc[("jsb", "gru")]
    assert best["lr"] == 1.5e-3 and best["seeds"] == 3 and best["selected_on_seeds"] == "0"
    assert best["draws_compared"] == 3 and best["draws_pruned"] == 1 and best["stopped_by_budget"] == 1
    assert best["test_nll"] == pytest.approx((8.1 + 8.2 + 8.2) / 3)
    write_report([sweep], tmp_path / "rep")
    t2 = pd.read_csv(tmp_path / "rep" / "table2.csv")
    test_row = t2[(t2.dataset == "JSB Chorales") & (t2.split == "test")].iloc[0]
    assert test_row["gru"].endswith(" *")
    assert t2["split"].str.contains("95% interval").any()
    pruned = pd.read_csv(tmp_path / "rep" / "pruned.csv")
    assert list(pruned["lr"]) == [1e-5]
    tex = (tmp_path / "rep" / "selected_runs.tex").read_text()
    assert "0.0015" in tex and "NaN" not in tex and "nan" not in tex
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "successive halving (1)" in report and "not by early stopping" in report


def test_damaged_runs_are_listed_by_name_and_the_rest_reported(fake_sweep, tmp_path):
    bad = fake_sweep / "jsb" / "gru" / "search.draw=1,seed=2"
    (bad / "summary.json").write_text('{"status": "finis')  # cut short
    (fake_sweep / "jsb" / "lstm" / "search.draw=1,seed=2" / "summary.json").write_bytes(b"\xff\xfe\x00garbage")
    result = write_report([fake_sweep], tmp_path / "rep")
    assert len(result["unreadable"]) == 2
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "Unreadable runs (2)" in report and "search.draw=1,seed=2/summary.json" in report
    assert (tmp_path / "rep" / "table2.csv").is_file()  # the others are still reported


def test_damaged_score_cache_is_rebuilt_not_a_crash(tmp_path):
    from rnnbench.data.scores import _load_pieces

    cache = tmp_path / "cut.npz"
    cache.write_bytes(b"PK\x03\x04" + b"\x00" * 40)  # a zip header, cut short
    assert _load_pieces(cache, "key") is None


def test_report_on_a_missing_folder_says_so(tmp_path):
    p = subprocess.run([sys.executable, "-m", "rnnbench.cli.report", str(tmp_path / "nowhere")], capture_output=True,
                       text=True)
    assert p.returncode == 2 and "no such folder" in p.stderr
    assert not (tmp_path / "nowhere").exists()


def test_a_run_that_diverged_after_its_best_epoch_counts_and_is_marked(tmp_path):
    """A tanh RNN whose gradient overflowed at epoch 120, after its best epoch, keeps that epoch's
    result (selected on validation like any run's), marked with a dagger; a run that diverged
    before any best epoch is never selected."""
    sweep = tmp_path / "s"
    fake_run(sweep, "nottingham", "tanh", 1, 0, 1.3e-3, valid=3.66, test=3.82, status="diverged")
    fake_run(sweep, "nottingham", "tanh", 2, 0, 5e-4, valid=4.43, test=4.5, status="pruned")
    fake_run(sweep, "nottingham", "tanh", 3, 0, 3e-3, valid=float("nan"), test=float("nan"), status="diverged",
             epochs=0)
    best = select_best(collect_runs([sweep])).set_index(["dataset", "cell"]).loc[("nottingham", "tanh")]
    assert best["lr"] == 1.3e-3 and best["test_nll"] == pytest.approx(3.82) and best["diverged_after_best"] == 1
    write_report([sweep], tmp_path / "rep")
    t2 = pd.read_csv(tmp_path / "rep" / "table2.csv")
    assert t2[(t2.dataset == "Nottingham") & (t2.split == "test")].iloc[0]["tanh"].endswith("†")


def test_a_sweep_with_no_ended_run_is_reported_not_a_crash(tmp_path):
    # every run still training, or diverged before a best epoch (a speech sweep cut short)
    sweep = tmp_path / "sweep"
    for draw in (0, 1):
        fake_run(sweep, "jsb", "gru", draw, 0, 1e-3 / (draw + 1), valid=8.0 + draw, test=float("nan"), status="running")
        fake_run(sweep, "jsb", "tanh", draw, 0, 1e-3 / (draw + 1), valid=float("nan"), test=float("nan"),
                 status="diverged", epochs=0)
    runs = collect_runs([sweep])
    assert select_best(runs).empty
    out = tmp_path / "report"
    write_report([sweep], out)
    text = (out / "report.md").read_text()
    assert "Runs not finished (2)" in text and text.count("| gru | running |") == 2
    assert "Runs that diverged before a best epoch (2)" in text and text.count("| tanh | diverged |") == 2


def test_table2_says_why_a_cell_has_no_number(tmp_path):
    """A cell whose every run diverged before a best epoch (the speech tanh RNN) reads "diverged" in
    Table 2, one still training "not finished"; the cells with results are as before."""
    sweep = tmp_path / "sweep"
    for draw in (0, 1):
        fake_run(sweep, "jsb", "gru", draw, 0, 1e-3 / (draw + 1), valid=8.0 + draw, test=8.1 + draw)
        fake_run(sweep, "jsb", "tanh", draw, 0, 1e-3 / (draw + 1), valid=float("nan"), test=float("nan"),
                 status="diverged", epochs=0)
        fake_run(sweep, "jsb", "lstm", draw, 0, 1e-3 / (draw + 1), valid=8.5, test=float("nan"), status="running")
    write_report([sweep], tmp_path / "rep")
    t2 = pd.read_csv(tmp_path / "rep" / "table2.csv", dtype=str).set_index("split")
    assert list(t2.columns) == ["dataset", "tanh", "gru", "lstm"]
    assert t2.loc["test", "tanh"] == "diverged" and t2.loc["train", "tanh"] == "diverged"
    assert t2.loc["test", "lstm"] == "not finished"
    assert t2.loc["test", "gru"] == "8.10"
    assert t2.loc["test (paper)", "tanh"] == "9.10"  # the paper's number stands beside it
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "`diverged`: every run of the cell" in text and "`not finished`" in text


def test_runs_that_diverged_after_their_best_epoch_are_said_so_not_unfinished(tmp_path):
    """The converged music study's Nottingham tanh seeds that overflowed after their best epoch are
    results (scored, marked †): the report and the command's summary line say "diverged after their
    best epoch", never "not finished"."""
    sweep = tmp_path / "s"
    fake_run(sweep, "nottingham", "tanh", 1, 0, 1.3e-3, valid=3.66, test=3.82, status="diverged")
    fake_run(sweep, "nottingham", "tanh", 1, 1, 1.3e-3, valid=3.70, test=3.85, status="diverged")
    fake_run(sweep, "nottingham", "gru", 1, 0, 1.3e-3, valid=3.6, test=3.7)
    out = tmp_path / "rep"
    p = subprocess.run([sys.executable, "-m", "rnnbench.cli.report", str(sweep), "--out", str(out)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    text = (out / "report.md").read_text()
    assert "Runs that diverged after their best epoch (2)" in text and "not finished" not in text
    last = p.stdout.strip().splitlines()[-1]
    assert "2 diverged after their best epoch (scored)" in last and "0 not finished" in last


def test_tables_print_learning_rates_with_three_significant_digits(tmp_path):
    """0.001299 is 0.00130 in every Markdown and LaTeX table, never 0.001 (the csv keeps 6 digits)."""
    from rnnbench.report import formatted

    sweep = tmp_path / "s"
    for draw, lr in ((0, 0.001521), (1, 0.001299), (2, 2.64e-5)):
        fake_run(sweep, "jsb", "gru", draw, 0, lr, valid=8.0 + draw, test=8.1)
    fake_run(sweep, "jsb", "tanh", 1, 0, 0.001299, valid=8.0, test=8.2)
    best = select_best(collect_runs([sweep]))
    assert list(formatted(best)["lr"]) == ["0.00130", "0.00152"]
    write_report([sweep], tmp_path / "rep")
    md = (tmp_path / "rep" / "selected_runs.md").read_text()
    assert "| 0.00130 |" in md and "| 0.00152 |" in md
    tex = (tmp_path / "rep" / "selected_runs.tex").read_text()
    assert "0.00130" in tex and "0.00152" in tex
    assert "0.001299" in (tmp_path / "rep" / "selected_runs.csv").read_text()


def test_figures_read_alone(tmp_path, monkeypatch):
    """Each figure names its datasets and what it shows, has one legend for the whole figure, gives
    each cell's selected learning rate and the seed drawn, marks sparse curves point by point, and
    names a cell that has no curve (the quick study: a chorales panel of 3-epoch runs)."""
    import rnnbench.figures as figures

    figs = []
    monkeypatch.setattr(figures, "_save", lambda fig, out, stem: figs.append(fig) or [])
    sweep = tmp_path / "quick"
    for cell in ("tanh", "gru", "lstm"):
        for draw, lr in enumerate((0.001521, 0.001299)):
            fake_run(sweep, "chorales", cell, draw, 0, lr, valid=9.0 + draw, test=9.1, epochs=3)
    fake_run(sweep, "jsb", "gru", 0, 0, 0.001521, valid=8.5, test=8.6, epochs=60)
    fake_run(sweep, "jsb", "tanh", 0, 0, 0.001521, valid=float("nan"), test=float("nan"), status="diverged", epochs=0)
    write_report([sweep], tmp_path / "rep")
    assert len(figs) == 2
    for fig, what in zip(figs, ("parameter updates", "seconds of training")):
        title = fig._suptitle.get_text().replace("\n", " ")
        assert "JSB Chorales" in title and "Bach chorales" in title and what in title and "seed 0" in title
        assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)
        labels = [t.get_text() for t in fig.legends[0].get_texts()]
        assert {"tanh-100", "GRU-46", "LSTM-36"} <= set(labels) and any("validation" in x for x in labels)
        jsb, chorales = sorted(fig.axes, key=lambda ax: "Bach" in ax.get_title())
        assert "Bach chorales" in chorales.get_title() and "learning rate: tanh 0.00152, GRU 0.00152, LSTM 0.00152" \
            in chorales.get_title()
        assert "GRU 0.00152" in jsb.get_title() and "tanh diverged" in jsb.get_title()
        curves = [line for line in chorales.get_lines() if len(line.get_xdata()) > 1]
        assert curves and all(line.get_marker() not in (None, "None", "") for line in curves)
        dense = [line for line in jsb.get_lines() if len(line.get_xdata()) == 60 and line.get_linestyle() == "-"]
        assert dense and all(line.get_marker() in (None, "None", "") for line in dense)


def test_figures_cut_the_axis_above_a_spike_and_mark_what_lies_above():
    """A density's NLL per step is unbounded above: one validation epoch at 2.5e5 among values near
    -13 would crush every curve onto one line.  The panel's axis then spans the curves (lowest point
    to 5% above the highest kept), each point above is marked at the top in its cell's colour, and
    the panel says how many and how high; a panel of ordinary learning curves (they start high and
    come down) keeps matplotlib's own axis."""
    import numpy as np
    import pandas as pd
    from rnnbench.figures import curves_figures, off_scale

    epochs = np.arange(1, 61)
    smooth = 5.0 - 18.0 * (1 - np.exp(-epochs / 10))  # +3.2 at epoch 1 down to -13
    assert off_scale([(epochs, smooth), (epochs, smooth + 1.0)]) is None
    assert off_scale([(epochs, 9.0 - 0.01 * epochs), (epochs, np.full(60, np.nan))]) is None
    spiked = smooth.copy()
    spiked[28] = 2.5e5  # (epoch 29: the training NLL, every 10th epoch, has no spike)
    (bottom, top), off = off_scale([(epochs, spiked), (epochs, smooth + 1.0)])
    assert off == [(29.0, 2.5e5)]
    kept_low, kept_high = smooth.min(), smooth[0] + 1.0
    assert bottom == pytest.approx(kept_low - 0.05 * (kept_high - kept_low))
    assert top == pytest.approx(kept_high + 0.05 * (kept_high - kept_low))
    # a point just above the limit (first 10, lowest 0: the limit is 20) but below the padded top is
    # drawn inside the axis, so it is not counted above it
    edge = np.array([10.0, 0.0, 19.9, 20.5, 1e5])
    (_, top), off = off_scale([(np.arange(5), edge)])
    assert top == pytest.approx(19.9 + 0.05 * 19.9) and off == [(4.0, 1e5)]

    def metrics(valid):
        return pd.DataFrame({"epoch": epochs, "updates": 40 * epochs, "wall_seconds": 2.0 * epochs,
                             "valid_nll": valid, "train_nll": np.where(epochs % 10 == 0, valid - 1.0, np.nan)})

    curves = {("yesno", "gru"): metrics(spiked), ("yesno", "lstm"): metrics(smooth - 1.5),
              ("fsdd", "gru"): metrics(smooth), ("fsdd", "lstm"): metrics(smooth - 1.0)}
    info = {k: {"lr": 1e-3, "seed": 0, "seeds": 5, "units": 227 if k[1] == "gru" else 195, "task": "speech",
                "best_epoch": 60} for k in curves}
    for _, fig in curves_figures(curves, (["fsdd", "yesno"], ["gru", "lstm"]), info):
        fsdd, yesno = sorted(fig.axes, key=lambda ax: "YESNO" in ax.get_title())
        low, high = yesno.get_ylim()
        assert low < (smooth - 1.5).min() and smooth[0] < high < 10
        notes = [t.get_text() for t in yesno.texts]
        assert notes == ["▲ 1 point above the axis (up to 2.5e+05)"]
        marks = [line for line in yesno.get_lines() if line.get_marker() == "^"]
        assert len(marks) == 1 and list(marks[0].get_ydata()) == [high] and not marks[0].get_clip_on()
        assert marks[0].get_color() == "tab:red"  # (the GRU's colour)
        assert len(fsdd.texts) == 0 and not any(line.get_marker() == "^" for line in fsdd.get_lines())
        assert fsdd.get_ylim()[1] > smooth[0]  # (matplotlib's own limits)


def test_figures_name_the_papers_figure_and_draw_every_cell_in_a_colour_of_its_own():
    """Music curves redraw the paper's Figure 2, speech curves its Figure 3 (iterations above,
    wall-clock time below); labelled variants and one's own cells never share a colour in a figure,
    and keep it from figure to figure."""
    from rnnbench.figures import COLORS, cell_colors, paper_figure

    assert paper_figure(["music", "music"]) == "the paper's Figure 2"
    assert paper_figure({"speech"}) == "the paper's Figure 3"
    assert "Figures 2 (music) and 3 (speech)" in paper_figure(["music", "speech"])
    cells = ["tanh", "gru", "lstm", "tanh (σ=0)", "tanh (σ=0.02)", "tanh (σ=0.04)", "tanh (50-step chunks)", "mgu"]
    colors = cell_colors(cells)
    assert len(set(colors.values())) == len(cells)
    assert all(colors[c] == COLORS[c] for c in ("tanh", "gru", "lstm"))
    assert cell_colors(list(reversed(cells))) == colors


REPO = Path(__file__).resolve().parents[1]
# each committed report folder and the sweeps its README's command reads (results/music/README.md,
# results/speech/README.md)
COMMITTED_REPORTS = {
    "results/music/report": ["results/music/runs/search", "results/music/runs/seeds"],
    "results/speech/archive/2026-12-02_three_draws": ["results/speech/runs/speech", "results/speech/runs/speech_fsdd"],
    "results/speech/archive/2026-11-29_budget": ["results/speech/runs/speech_budget"],
}
if (REPO / "results" / "speech" / "report" / "runs.csv").is_file():  # the converged study, once it has a report
    COMMITTED_REPORTS["results/speech/report"] = [
        f"results/speech/runs/study/{s}" for s in ("search", "seeds", "tanh_sigma0.02/search", "tanh_sigma0.02/seeds",
                                                   "tanh_diagnostics")]


@pytest.mark.slow
@pytest.mark.parametrize("report", sorted(COMMITTED_REPORTS))
def test_committed_reports_regenerate_byte_for_byte(report, tmp_path):
    """``rnnbench-report`` on the committed runs rewrites every file of the committed report as it is
    (tables, report.md and figures), and writes nothing the committed folder lacks."""
    out = tmp_path / "report"
    p = subprocess.run([sys.executable, "-m", "rnnbench.cli.report", *COMMITTED_REPORTS[report], "--out", str(out)],
                       cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    committed = {f.name: f.read_bytes() for f in (REPO / report).iterdir() if f.is_file()}
    made = {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()}
    assert sorted(made) == sorted(committed)
    assert [name for name in sorted(made) if made[name] != committed[name]] == []


# ----------------------------------------------------------------------------- sweeps of every shape, damaged multirun.yaml

def _hydra_record(run: Path, **choices):
    """The .hydra/hydra.yaml Hydra writes beside a job (only the part the report reads)."""
    (run / ".hydra").mkdir(exist_ok=True)
    lines = ["hydra:", "  runtime:", "    choices:"] + [f"      {k}: {v}" for k, v in choices.items()]
    (run / ".hydra" / "hydra.yaml").write_text("\n".join(lines) + "\n")


def _report_cli(*args):
    return subprocess.run([sys.executable, "-m", "rnnbench.cli.report", *map(str, args)], capture_output=True,
                          text=True)


def test_a_plain_seed_sweep_is_reported_with_its_missing_seed(tmp_path):
    """`seed=0,1` on the command line: Hydra writes hydra.sweeper.params as null (no sweeper
    params); the report reads the seeds from the overrides and names the one missing."""
    sweep = tmp_path / "seeds"
    run = fake_run(sweep, "jsb", "gru", 0, 0, 1e-3, valid=8.0, test=8.1)
    run.rename(run.parent / "seed=0")
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    _target_: hydra._internal.core_plugins.basic_sweeper.BasicSweeper\n"
        "    max_batch_size: null\n    params: null\n  overrides:\n    hydra: []\n    task:\n    - seed=0,1\nseed: 0\n")
    assert expected_configs(sweep) == [{"seed": "0", "draw": None}, {"seed": "1", "draw": None}]
    p = _report_cli(sweep)
    assert p.returncode == 0, p.stderr
    assert pd.read_csv(sweep / "report" / "missing.csv").to_dict("records") == [{"sweep": "seeds", "seed": 1}]


def test_a_sweep_over_a_folder_dataset_finds_its_runs(tmp_path):
    """`dataset=scores_folder,jsb`: the runs are named after the folder (scores-mine-...) or after
    dataset.name, not after the config option; Hydra's record of the option matches them, and a
    run without that record still matches by a literal name (jsb)."""
    from rnnbench.report import missing_runs

    sweep = tmp_path / "folders"
    for cell in ("gru", "lstm"):
        _hydra_record(fake_run(sweep, "scores-mine-1a2b3c4d", cell, 0, 0, 1e-3, valid=8.0, test=8.1),
                      dataset="scores_folder", cell=cell)
    fake_run(sweep, "jsb", "gru", 0, 0, 1e-3, valid=8.0, test=8.1)  # no .hydra: matched by its name
    _hydra_record(fake_run(sweep, "bach_mine", "lstm", 0, 0, 1e-3, valid=8.0, test=8.1),  # dataset.name=bach_mine
                  dataset="jsb", cell="lstm")
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    params:\n      dataset: scores_folder,jsb\n      cell: gru,lstm\n"
        "      search.draw: range(0,1)\n  overrides:\n    task: []\nseed: 0\n")
    assert missing_runs([sweep], collect_runs([sweep])).empty
    (sweep / "scores-mine-1a2b3c4d" / "lstm").rename(tmp_path / "gone")
    missing = missing_runs([sweep], collect_runs([sweep]))
    assert missing.to_dict("records") == [{"sweep": "folders", "dataset": "scores_folder", "cell": "lstm",
                                           "draw": "0", "seed": "0"}]


@pytest.mark.parametrize("text, says", [
    ("- dataset\n- cell\n", "expected a mapping of keys, found a ListConfig"),
    ("hydra: {sweeper: {params: [\n", "not valid YAML"),
    ("hydra: 7\n", "hydra is a int, expected a mapping"),
    ("hydra:\n  sweeper:\n    params: [seed]\n", "hydra.sweeper.params is a ListConfig"),
    ("hydra:\n  overrides:\n    task: seed=0,1\n", "hydra.overrides.task is a str"),
    ("hydra:\n  sweeper:\n    params:\n      seed: range(0,\n", "sweep of seed is 'range(0,'"),
    ("seed: 0\n", "no 'hydra' section"),
])
def test_a_damaged_multirun_yaml_is_named_and_nothing_is_written(fake_sweep, text, says):
    """Not silently a report without its missing-run check: one line naming the file and what is
    wrong with it, exit 2, no report folder."""
    (fake_sweep / "multirun.yaml").write_text(text)
    p = _report_cli(fake_sweep)
    assert p.returncode == 2 and p.stdout == ""
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert "multirun.yaml" in p.stderr and says in p.stderr, p.stderr
    assert not (fake_sweep / "report").exists()


def test_report_out_under_a_file_is_one_line(fake_sweep, tmp_path):
    (tmp_path / "afile").write_text("x")
    p = _report_cli(fake_sweep, "--out", tmp_path / "afile" / "rep")
    assert p.returncode == 2 and "Traceback" not in p.stderr and "afile" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("column, value", [("wall_seconds", "inf"), ("lr", "nan"), ("updates", "-inf"),
                                           ("valid_nll", "inf")])
def test_a_non_finite_metrics_row_is_named(fake_sweep, tmp_path, column, value):
    """A metrics.csv row with a non-finite value where none can be (any bookkeeping column; a
    validation NLL before the last epoch: a non-finite one ends a run) is named with its line,
    by the reader and in the report (whose curve of that run is left out, not drawn empty)."""
    from rnnbench.errors import RunFileError
    from rnnbench.runs import read_metrics

    run = fake_sweep / "jsb" / "gru" / "search.draw=0,seed=0"
    lines = (run / "metrics.csv").read_text().splitlines()
    cols = lines[0].split(",")
    row = lines[1].split(",")
    row[cols.index(column)] = value
    lines[1] = ",".join(row)
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(RunFileError, match=rf"metrics.csv: damaged \(line 2, epoch '1': {column} is '{value}'"
                                           if column != "valid_nll" else r"line 2, epoch 1: valid_nll is 'inf'"):
        read_metrics(run)
    write_report([fake_sweep], tmp_path / "rep")
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "Curves left out (1)" in report and "search.draw=0,seed=0/metrics.csv" in report


def test_a_diverged_runs_last_validation_nll_may_be_nan(tmp_path):
    from rnnbench.runs import read_metrics

    run = fake_run(tmp_path / "s", "jsb", "gru", 0, 0, 1e-3, valid=8.0, test=8.1, status="diverged")
    text = (run / "metrics.csv").read_text().splitlines()
    last = text[-1].split(",")
    last[4] = "nan"
    (run / "metrics.csv").write_text("\n".join(text[:-1] + [",".join(last)]) + "\n")
    assert len(read_metrics(run)) == 3


def test_names_with_a_newline_keep_errors_on_one_line(fake_sweep, tmp_path):
    """A sweep folder, a run directory or a run folder for rnnbench-sample whose name holds a
    newline is quoted (repr-style) in messages, which stay one line."""
    nowhere = str(tmp_path / "no\nsuch")
    p = _report_cli(nowhere)
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        f"rnnbench-report: error: {nowhere!r}: no such folder (give the sweep directory, e.g. runs/sweeps/quick)"]
    odd = fake_sweep / "jsb" / "gru" / "search.draw=0,seed=0"
    odd = odd.rename(odd.parent / "odd\nrun")
    (odd / "summary.json").write_text("{")
    result = write_report([fake_sweep], tmp_path / "rep")
    (problem,) = result["unreadable"]["problem"]
    assert "\n" not in problem and "odd\\nrun/summary.json'" in problem
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "odd\\nrun" in report and not any(line.startswith("run") for line in report.splitlines())
    s = subprocess.run([sys.executable, "-m", "rnnbench.cli.sample", str(odd)], capture_output=True, text=True)
    assert s.returncode == 2 and len(s.stderr.strip().splitlines()) == 1 and "odd\\nrun" in s.stderr


@pytest.mark.parametrize("patch, says", [
    ({"units": "x"}, "units is 'x', expected an integer >= 1"),
    ({"valid_nll": "abc"}, "valid_nll is 'abc', expected a number"),
    ({"seed": "s"}, "seed is 's', expected an integer"),
    ({"seed": 1.5}, "seed is 1.5, expected an integer"),
    ({"epochs": 1e308}, "epochs is 1e+308, expected an integer >= 0"),
    ({"test_nll": [1, 2]}, "test_nll is [1, 2], expected a number"),
    ({"batch_size": "one"}, "batch_size is 'one', expected an integer >= 1"),
    ({"best_epoch": None}, "finished but no best_epoch"),
    ({"cell": 5}, "cell is 5, expected a string"),
])
def test_a_summary_value_of_the_wrong_type_is_named_not_a_crash(fake_sweep, tmp_path, patch, says):
    """summary.json that is JSON but holds a value no run writes: the run is listed as unreadable
    with the key and value, and the rest is reported (was: a ValueError/TypeError traceback)."""
    run = fake_sweep / "jsb" / "gru" / "search.draw=0,seed=0"
    summary = json.loads((run / "summary.json").read_text())
    summary.update(patch)
    (run / "summary.json").write_text(json.dumps(summary))
    runs = collect_runs([fake_sweep])
    (problem,) = runs.dropna(subset=["problem"])["problem"]
    assert "search.draw=0,seed=0/summary.json: damaged (" + says in problem
    assert len(select_best(runs)) == 4  # (the others are still selected and reported)


def test_two_sweeps_of_one_name_are_kept_apart(tmp_path):
    """runs/a/quick and runs/b/quick: each sweep's runs are checked against its own
    multirun.yaml (a run of one never counts as present in the other)."""
    from rnnbench.report import missing_runs

    a = quick_sweep_lacking_tanh(tmp_path / "a")
    b = tmp_path / "b" / "quick"
    fake_run(b, "chorales", "tanh", 0, 0, 1e-3, valid=8.5, test=8.6)
    (b / "multirun.yaml").write_text((a / "multirun.yaml").read_text())
    runs = collect_runs([a, b])
    assert set(runs["sweep"]) == {"a/quick", "b/quick"}
    missing = missing_runs([a, b], runs)
    assert sorted(zip(missing["sweep"], missing["cell"])) == [("a/quick", "tanh"), ("b/quick", "gru"), ("b/quick", "lstm")]
    write_report([a, b], tmp_path / "rep")  # (the curves find each selected run in its own sweep)


# ----------------------------------------------------------------------------- labelled variants (issue 26)

def _variant(run: Path, weight_noise=None, chunk_steps=None, task="speech"):
    """Make a fake run a speech run at another weight noise and/or cut into chunks."""
    s = json.loads((run / "summary.json").read_text())
    s["task"] = task
    if weight_noise is not None:
        s["weight_noise"] = weight_noise
    (run / "summary.json").write_text(json.dumps(s))
    if chunk_steps is not None:
        text = (run / "config.yaml").read_text().replace("dataset:\n  name:", f"dataset:\n  chunk_steps: {chunk_steps}\n  name:")
        (run / "config.yaml").write_text(text)
    return run


def test_variant_label():
    from rnnbench.report import variant_label

    assert variant_label(0.075, None, "speech") == ""
    assert variant_label(0.02, None, "speech") == "σ=0.02"
    assert variant_label(0.075, 50, "speech") == "50-step chunks"
    assert variant_label(0, 50, "speech") == "σ=0, 50-step chunks"
    assert variant_label(0.075, 50, "music") == ""  # (music pieces are never chunked by this key)


def test_a_variant_without_a_result_leaves_the_counts_of_the_others_counts(tmp_path):
    """A variant still training (a diagnostic at σ=0) has an empty row, and the other variants'
    draw, seeds, epochs and flags still print as counts (2, not 2.0000) in every format."""
    main, var = tmp_path / "search", tmp_path / "tanh_sigma0.02"
    for cell in ("gru", "lstm"):
        _variant(fake_run(main, "yesno", cell, 2, 0, 1e-3, valid=-9.0, test=-9.1))
    _variant(fake_run(var, "yesno", "tanh", 2, 0, 5e-4, valid=-5.0, test=-5.1, epochs=7), weight_noise=0.02)
    _variant(fake_run(var, "yesno", "tanh", 2, 1, 5e-4, valid=-4.0, test=-4.1, status="running"), weight_noise=0)
    out = tmp_path / "report"
    p = _report_cli(main, var, "--out", out)
    assert p.returncode == 0, p.stderr
    md = (out / "variants.md").read_text().splitlines()[2:]
    assert [row.split(" | ")[2:5] for row in md] == [["σ=0", "100", "not finished"], ["σ=0.02", "100", ""]]
    row = dict(zip((out / "variants.md").read_text().splitlines()[0].strip("| ").split(" | "),
                   md[1].strip("| ").split(" | ")))
    assert (row["draw"], row["seeds"], row["best_epoch"], row["epochs"], row["stopped_by_budget"]) == ("2", "1", "7", "7", "0")
    assert ",σ=0.02,100,,0.0005,2,1,1,-5.2,-5,-5.1,,,,7,7,early_stopping,0,0,0," in (out / "variants.csv").read_text()
    assert " & 2 & 1 & 1 & " in (out / "variants.tex").read_text()


def test_a_tanh_that_diverged_and_its_sigma_variant(tmp_path):
    """The speech study's shape: the faithful tanh diverges before any best epoch (Table 2 says
    so, and the gated cells beat it without an interval), a σ=0.02 tanh trains (its own rows,
    claims judged on intervals, never in Table 2), and a one-seed diagnostic in chunks."""
    main, var, diag = tmp_path / "search", tmp_path / "tanh_sigma0.02", tmp_path / "tanh_diagnostics"
    for seed in (0, 1, 2):
        for cell, base in (("gru", -9.0), ("lstm", -9.5)):
            _variant(fake_run(main, "yesno", cell, 0, seed, 1e-3, valid=base + 0.01 * seed, test=base + 0.1 * seed))
        _variant(fake_run(main, "yesno", "tanh", 0, seed, 1e-3, valid=float("nan"), test=float("nan"),
                          status="diverged", epochs=0))
        _variant(fake_run(var, "yesno", "tanh", 0, seed, 1e-3, valid=-5.0 + 0.01 * seed, test=-5.0 + 0.1 * seed),
                 weight_noise=0.02)
    _variant(fake_run(diag, "yesno", "tanh", 0, 0, 1e-3, valid=-4.0, test=-4.0), weight_noise=0.075, chunk_steps=50)
    for sweep in (main, var, diag):
        for s in sweep.rglob("summary.json"):  # (a diverged run has no best epoch)
            d = json.loads(s.read_text())
            if d["status"] == "diverged":
                d["best_epoch"] = None
                s.write_text(json.dumps(d))
    m = var / "yesno" / "tanh" / "search.draw=0,seed=0" / "metrics.csv"  # (seed 0 of the variant, the run its curves draw, recorded its norms)
    rows = pd.read_csv(m)
    rows["grad_norm_median"], rows["grad_norm_max"], rows["clipped_updates"] = 0.5, 3.0, 2
    rows.to_csv(m, index=False)
    out = tmp_path / "report"
    p = _report_cli(main, var, diag, "--out", out)
    assert p.returncode == 0, p.stderr
    assert (out / "grad_norms.png").is_file() and "![gradient norms](grad_norms.png)" in (out / "report.md").read_text()
    t2 = pd.read_csv(out / "table2.csv")
    assert list(t2.columns) == ["dataset", "split", "tanh", "gru", "lstm"]  # no variant column in Table 2
    assert t2.loc[t2.split == "test", "tanh"].iloc[0] == "diverged"
    v = pd.read_csv(out / "variants.csv", dtype={"result": str}).fillna({"result": ""})
    assert v[["cell", "variant", "seeds"]].to_dict("records") == [
        {"cell": "tanh", "variant": "σ=0.02", "seeds": 3}, {"cell": "tanh", "variant": "50-step chunks", "seeds": 1}]
    assert v.loc[0, "test_nll"] == pytest.approx(-4.9)
    cl = pd.read_csv(out / "claims.csv").fillna("")
    assert list(cl.claim) == ["GRU beats tanh", "LSTM beats tanh", "gated beats tanh",
                              "GRU ≈ LSTM (|difference| < 0.1 nats)",
                              "GRU beats tanh (σ=0.02)", "LSTM beats tanh (σ=0.02)", "gated beats tanh (σ=0.02)"]
    assert list(cl.verdict[:3]) == ["holds (tanh diverged)"] * 3
    assert list(cl.verdict[4:7]) == ["holds", "holds", "holds"]  # (the one-seed diagnostic is judged nowhere)
    assert cl.paper[0] == "yes (+6.74)"  # (Ubisoft B: other data, the paper's own verdict)
    d = pd.read_csv(out / "differences.csv")
    assert {"tanh (σ=0.02) - gru", "tanh (50-step chunks) - lstm"} <= set(d.pair) and "tanh - gru" not in set(d.pair)
    for stem in ("curves_updates", "curves_seconds", "curves_variants_updates", "curves_variants_seconds"):
        assert (out / f"{stem}.png").is_file()
    runs = pd.read_csv(out / "runs.csv", dtype={"variant": str}).fillna({"variant": ""})
    assert set(runs.variant) == {"", "σ=0.02", "50-step chunks"} and set(runs.cell) == {"tanh", "gru", "lstm"}
    report = (out / "report.md").read_text()
    assert "## Labelled variants (never in Table 2)" in report


def test_a_sweep_without_variants_has_no_variant_column(fake_sweep, tmp_path):
    write_report([fake_sweep], tmp_path / "rep")
    assert "variant" not in pd.read_csv(tmp_path / "rep" / "runs.csv").columns
    assert "variant" not in pd.read_csv(tmp_path / "rep" / "selected_runs.csv").columns
    assert not (tmp_path / "rep" / "variants.csv").exists()


def test_claims_are_judged_on_converged_runs_only(fake_sweep, tmp_path):
    """A selected run stopped by the epoch cap (`*` in Table 2) leaves every claim of its cell
    unjudged, its interval still shown; the other cells' claims stand."""
    for s in (fake_sweep / "jsb" / "gru").glob("search.draw=0,*/summary.json"):
        d = json.loads(s.read_text())
        d["stop_reason"] = "max_epochs"
        s.write_text(json.dumps(d))
    write_report([fake_sweep], tmp_path / "rep")
    cl = pd.read_csv(tmp_path / "rep" / "claims.csv").set_index("claim")
    capped = "not judged (* stopped by the epoch cap)"
    assert cl.loc["GRU beats tanh", "verdict"] == capped and cl.loc["GRU beats tanh", "evidence"].startswith("tanh - gru")
    assert cl.loc["LSTM beats tanh", "verdict"] == "holds"
    assert cl.loc["gated beats tanh", "verdict"] == capped
    assert cl.loc["GRU ≈ LSTM (|difference| < 0.1 nats)", "verdict"] == capped
    t2 = pd.read_csv(tmp_path / "rep" / "table2.csv")
    assert t2[(t2.dataset == "JSB Chorales") & (t2.split == "test")]["gru"].iloc[0].endswith(" *")


def test_a_run_stopped_by_the_papers_own_cap_is_marked_and_its_claims_are_judged(fake_sweep, tmp_path):
    """The paper trains "at most 500 epochs": a selected run that reaches them ended as the paper's
    recipe ends runs, so its claims are judged (unlike a lower cap's), and Table 2 marks it ‡."""
    for s in (fake_sweep / "jsb" / "gru").glob("search.draw=0,*/summary.json"):
        d = json.loads(s.read_text())
        d.update(stop_reason="max_epochs", epochs=500)
        s.write_text(json.dumps(d))
    write_report([fake_sweep], tmp_path / "rep")
    cl = pd.read_csv(tmp_path / "rep" / "claims.csv").set_index("claim")
    assert cl.loc["GRU beats tanh", "verdict"] == "holds" and cl.loc["gated beats tanh", "verdict"] == "holds"
    t2 = pd.read_csv(tmp_path / "rep" / "table2.csv")
    assert t2[(t2.dataset == "JSB Chorales") & (t2.split == "test")]["gru"].iloc[0].endswith(" ‡")
    best = pd.read_csv(tmp_path / "rep" / "selected_runs.csv").set_index(["dataset", "cell"])
    assert best.loc[("jsb", "gru"), "at_paper_cap"] == 3 and best.loc[("jsb", "gru"), "stopped_by_budget"] == 0
    assert "`‡`: the selected run (of some seed) reached the paper's 500-epoch cap" in (tmp_path / "rep" / "report.md").read_text()


def test_sweeps_of_one_name_are_told_apart_by_the_ends_of_their_paths(tmp_path, monkeypatch):
    """The converged speech study has study/search and study/tanh_sigma0.02/search: each is named by
    the shortest end of its path that no other sweep shares, the same from any working directory
    and for relative or absolute paths (so a report regenerates byte for byte)."""
    from rnnbench.report import sweep_labels

    study = tmp_path / "results" / "speech" / "runs" / "study"
    given = [study / "search", study / "seeds", study / "tanh_sigma0.02" / "search", study / "tanh_diagnostics"]
    want = ["study/search", "seeds", "tanh_sigma0.02/search", "tanh_diagnostics"]
    assert list(sweep_labels(given).values()) == want
    monkeypatch.chdir(tmp_path)
    assert list(sweep_labels([p.relative_to(tmp_path) for p in given]).values()) == want
    assert list(sweep_labels(["runs/a/quick", tmp_path / "b" / "quick"]).values()) == ["a/quick", "b/quick"]


def test_export_keeps_the_layout_below_the_sweeps_parent_and_the_selected_checkpoints_of_every_variant(tmp_path):
    """scripts/export_runs.py on the converged speech study's five sweeps: each lands at its path
    below their common parent (search, tanh_sigma0.02/search, ...), and --best selected copies the
    best.pt of every seed at each selected rate, the σ = 0.02 variant selected as a cell of its own
    (its better rate is not the faithful tanh's), never another run's."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("export_runs", REPO / "scripts" / "export_runs.py")
    export_runs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(export_runs)
    study = tmp_path / "work" / "study"
    for sweep, base, better_lr in ((study / "search", 0.0, 1e-3), (study / "tanh_sigma0.02" / "search", 1.0, 1e-4)):
        for draw, lr in enumerate((1e-3, 1e-4)):
            valid = base + (0.0 if lr == better_lr else 0.5)
            run = fake_run(sweep, "yesno", "tanh", draw, 0, lr, valid=valid, test=valid)
            _variant(run, weight_noise=0.075 if base == 0.0 else 0.02)
    for seed in (1, 2):
        _variant(fake_run(study / "seeds", "yesno", "tanh", 0, seed, 1e-3, valid=0.1, test=0.1), 0.075)
        _variant(fake_run(study / "tanh_sigma0.02" / "seeds", "yesno", "tanh", 1, seed, 1e-4, valid=1.1, test=1.1), 0.02)
    _variant(fake_run(study / "tanh_diagnostics", "yesno", "tanh", 1, 0, 1e-4, valid=2.0, test=2.0), 0.0)
    for summary in study.rglob("summary.json"):
        (summary.parent / "best.pt").write_bytes(b"weights")
    sweeps = [study / "search", study / "seeds", study / "tanh_sigma0.02" / "search", study / "tanh_sigma0.02" / "seeds",
              study / "tanh_diagnostics"]
    dest = tmp_path / "results" / "study"
    stale = dest / "search" / "yesno" / "tanh" / "search.draw=1,seed=0" / "best.pt"  # (an earlier export's)
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old weights")
    assert export_runs.main([*map(str, sweeps), "--dest", str(dest), "--best", "selected"]) == 0
    assert not stale.exists()
    kept = sorted(p.parent.relative_to(dest).as_posix() for p in dest.rglob("best.pt"))
    assert kept == ["search/yesno/tanh/search.draw=0,seed=0", "seeds/yesno/tanh/search.draw=0,seed=1",
                    "seeds/yesno/tanh/search.draw=0,seed=2", "tanh_diagnostics/yesno/tanh/search.draw=1,seed=0",
                    "tanh_sigma0.02/search/yesno/tanh/search.draw=1,seed=0",
                    "tanh_sigma0.02/seeds/yesno/tanh/search.draw=1,seed=1",
                    "tanh_sigma0.02/seeds/yesno/tanh/search.draw=1,seed=2"]
    assert len(list(dest.rglob("summary.json"))) == 9


def test_export_of_an_unfinished_run_carries_the_best_next_pt_a_kill_left(tmp_path):
    """A run killed between its new best's best.next.pt and best.pt (runs.py): `--last unfinished`
    copies best.next.pt beside its last.pt, so the copy resumes as the original would; once the run
    has ended, the copy is removed with its last.pt."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("export_runs", REPO / "scripts" / "export_runs.py")
    export_runs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(export_runs)
    sweep = tmp_path / "work" / "search"
    run = fake_run(sweep, "yesno", "gru", 0, 0, 1e-3, valid=1.0, test=1.0)
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "status": "running"}))
    for name in ("last.pt", "best.pt", "best.next.pt"):
        (run / name).write_bytes(name.encode())
    dest = tmp_path / "results"
    assert export_runs.main([str(sweep), "--dest", str(dest), "--best", "selected", "--last", "unfinished"]) == 0
    out = dest / run.relative_to(sweep.parent)  # (the layout below the sweeps' parent)
    assert {p.name for p in out.glob("*.pt")} == {"last.pt", "best.pt", "best.next.pt"}
    assert (out / "best.next.pt").read_bytes() == b"best.next.pt"
    (run / "summary.json").write_text(json.dumps(summary))  # it ended (its files settled)
    (run / "best.next.pt").unlink()
    assert export_runs.main([str(sweep), "--dest", str(dest), "--best", "selected", "--last", "unfinished"]) == 0
    assert not (out / "best.next.pt").exists() and not (out / "last.pt").exists()
