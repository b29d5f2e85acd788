"""``--help`` of the argparse commands: plain text (no reStructuredText markup), defaults shown."""

from __future__ import annotations

import pytest

from rnnbench.cli.data import main as data_main
from rnnbench.cli.sample import main as sample_main
from rnnbench.cli.sizes import main as sizes_main


def _help(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "``" not in out and "(default: None)" not in out and "(default: False)" not in out
    return out


def test_sample_help_is_plain_text_with_defaults(capsys):
    out = _help(sample_main, ["--help"], capsys)
    assert out.startswith("usage: rnnbench-sample ")
    assert "Draw samples from a trained run and write files you can hear and see." in out
    assert "MIDI file" in out and "WAV file" in out  # what it writes, for each task
    for default in ("(default: RUN_DIR/samples)", "(default: 1)", "(default: 1.0)", "(default: 0)",
                    "(default: 200 frames for music; 2"):
        assert default in " ".join(out.split()), default
    assert "examples:\n  rnnbench-sample " in out  # the epilog keeps its line breaks


def test_data_help_is_plain_text_with_defaults(capsys):
    out = _help(data_main, ["--help"], capsys)
    assert out.startswith("usage: rnnbench-data ") and "Find, verify and describe the corpora." in out
    assert "stats" in out and "fetch" in out and "examples:\n  rnnbench-data stats " in out
    for cmd in ("stats", "fetch"):
        sub = " ".join(_help(data_main, [cmd, "--help"], capsys).split())
        assert "(default: mat)" in sub and "(default: $RNNBENCH_DATA, then the cache)" in sub
        assert "(default: the 4 music benchmarks)" in sub and "chorales" in sub


def test_sizes_help_is_plain_text_with_defaults(capsys):
    out = " ".join(_help(sizes_main, ["--help"], capsys).split())
    assert out.startswith("usage: rnnbench-sizes ") and "the paper's Table 1" in out
    assert "(default: both)" in out and "We keep the paper's units." in out
