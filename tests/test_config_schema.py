"""The configuration schema (rnnbench.schema) and rnnbench-train's checks of its command line
(rnnbench.cli.trainconf): what is unknown or invalid is one line and exit 2, and nothing is
written; what was valid before stays valid, with the same configuration and fingerprint."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from rnnbench.cli.train import main
from rnnbench.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

# Fingerprint and sha256 of the resolved config.yaml text of each composition, computed with
# conf/train.yaml before the schema existed (its keys were then written in the YAML file).
BEFORE_THE_SCHEMA = {
    "": ("1329c9a9993b5adf", "62abe3ac3962edc3"),
    "cell=tanh": ("bb00aeb0d194d0ce", "05fdb67e2c3114bd"),
    "dataset=fsdd cell=lstm": ("750fc217dd6b66ab", "2aa955813f167af8"),
    "dataset=yesno": ("8d9a870543b366c9", "28ad59f6806a8ac9"),
    "dataset=chorales cell=gru_after": ("f6ee9531cd17eba2", "ba2771501ccbf689"),
    "experiment=chung2014_music search.draw=3 dataset=piano": ("7983fd69ce931bec", "d70c0df8da04f95d"),
    "experiment=chung2014_speech dataset=fsdd search.draw=9": ("a6f50ac1bbbd0b6e", "0cd653cc95c5806e"),
    "experiment=quick cell=tanh search.draw=1": ("3b6f18c3624297cc", "c546451fa32288da"),
    "experiment=quick_jsb search.draw=2": ("44dbfc0046fc9704", "ea251d45d6976167"),
    # (the halving of 2026-12-01, written out: paper_lr_halving has since lost its epoch-40 checkpoint;
    # and search.halving became resumable, so the fingerprint no longer counts it -- the one change of
    # fingerprint here, which a run bridges through its config.yaml: Run._same_config_as_stored)
    "hparams_search=paper_lr_halving search.draw=4 search.halving.epochs=[10,20,40] search.halving.min_keep=2":
        ("c36ef8730ac92487", "981f46fe3b57a374"),
    "dataset=scores_folder dataset.path=/tmp/x": ("2bb4936d7de17ab0", "153c36342e0240c1"),
    "dataset=audio_folder dataset.path=/tmp/y": ("4449051a4d3afa32", "ffa9737eb26b8f78"),
    "dataset=torchaudio +dataset.split_kwargs={train:{url:a}}": ("f0de1296d979674e", "48d170fe541e3060"),
    "train.weight_noise=0 train.max_minutes=5 optim.lr=0.002 seed=3 train.order_seed=1 train.skip_nonfinite=true":
        ("fef89db3ba3abb0e", "fe611f85192b9d5d"),
    "cell.units=10 train.batch_size=8 train.clip_norm=null train.eval_max_waste=null":
        ("f9762e694d8c4775", "c54fd97cec7f456a"),
}


def test_the_schema_changes_no_configuration_and_no_fingerprint():
    """Runs made before the schema resume: every composed configuration, its config.yaml text
    (integers stay integers: train.weight_noise=0) and its fingerprint are as before."""
    from hydra import compose, initialize_config_dir

    from rnnbench.runs import config_fingerprint

    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        for overrides, (fingerprint, text) in BEFORE_THE_SCHEMA.items():
            cfg = compose("train", overrides=overrides.split(" ") if overrides else [])
            fingerprint_now = config_fingerprint(cfg)
            if OmegaConf.select(cfg, "dataset.max_piece_frames") == 100_000:  # (added later at its neutral
                with open_dict(cfg.dataset):                                 # value: not in the table's text)
                    del cfg.dataset["max_piece_frames"]
            got = (fingerprint_now, hashlib.sha256(OmegaConf.to_yaml(cfg, resolve=True).encode()).hexdigest()[:16])
            assert got == (fingerprint, text), overrides


def test_the_schema_is_the_one_place_of_the_defaults():
    """conf/train.yaml holds no value of its own outside hydra: the schema's defaults are the run's."""
    from hydra import compose, initialize_config_dir

    from rnnbench.schema import schema_fields

    raw = OmegaConf.load(REPO / "conf" / "train.yaml")
    assert set(raw) == {"defaults", "hydra"}
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train")
    for key, f in schema_fields():
        if f.metadata["type"] == "group" or key == "data_root":
            continue
        assert OmegaConf.select(cfg, key) == f.default, key
        assert f.metadata["help"] and f.metadata["type"], key
        if f.metadata.get("check") is not None:
            assert f.metadata["check"](f.default), key  # every default passes its own check


# --------------------------------------------------------------------------- refused in one line

@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """rnnbench-train in this process, from an empty folder: (exit status, stderr lines)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RNNBENCH_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)

    def run(*argv: str):
        with pytest.raises(SystemExit) as exit_:
            main(list(argv))
        err = capsys.readouterr().err
        return exit_.value.code, [line for line in err.splitlines() if line.strip()]

    return run


@pytest.mark.parametrize("override, near", [
    ("+train.max_epoch=5", "train.max_epochs"),      # Hydra's own advice for the line below, refused too
    ("train.max_epoch=5", "train.max_epochs"),
    ("++train.pateince=3", "train.patience"),
    ("+search.draws=3", "search.draw"),
    ("+optim.learning_rate=0.1", "optim.lr"),
    ("+seeds=1", "seed"),
    ("+dataset.fromat=pickle", "dataset.format"),     # a key of the chosen dataset's file
    ("+cell.unit=8", "cell.units"),
    ("+dataset.split_kwargs={}", "dataset."),         # torchaudio's optional key, not jsb's
])
def test_an_unknown_key_is_refused_even_with_plus(cli, tmp_path, override, near):
    code, err = cli(override, "train.max_epochs=1")
    assert code == 2 and len(err) == 1, err
    key = override.lstrip("+").split("=")[0]
    assert err[0].startswith(f"rnnbench-train: error: unknown config key '{key}'") and near in err[0], err
    assert not (tmp_path / "runs").exists() and not list(tmp_path.rglob(".hydra"))


def test_cfg_job_checks_the_keys_too(cli, capsys):
    code, err = cli("--cfg", "job", "+train.max_epoch=5")
    assert code == 2 and len(err) == 1 and "unknown config key 'train.max_epoch'" in err[0]


def test_a_sweep_without_multirun_and_a_deleted_schema_key_are_one_line(cli):
    code, err = cli("seed=0,1")
    assert code == 2 and err == ["rnnbench-train: error: seed=0,1: a sweep needs -m (--multirun)"]
    code, err = cli("~train.bucket")
    assert code == 2 and len(err) == 1 and "~train.bucket" in err[0]


def test_a_key_already_there_is_set_without_plus(cli):
    code, err = cli("+seed=3")
    assert code == 2 and err == ["rnnbench-train: error: +seed: seed is already a key: set it without the '+' "
                                 "(seed=VALUE)"]


@pytest.mark.parametrize("argv, line", [
    (["cell=gur"], "cell=gur: no such cell (did you mean cell=gru?); expected one of gru, gru_after, lstm, tanh"),
    (["dataset=jsbb"], "dataset=jsbb: no such dataset (did you mean dataset=jsb?); expected one of audio_folder, "),
    (["-m", "cell=tanh,gur"], "cell=gur: no such cell (did you mean cell=gru?)"),
    (["experiment=quick_js"], "experiment=quick_js: no such experiment (did you mean experiment=quick_jsb?)"),
    (["hydra/launcher=stackd"], "hydra/launcher=stackd: no such launcher (did you mean hydra/launcher=stacked?)"),
])
def test_a_misspelled_group_option_is_one_line_naming_the_options(cli, tmp_path, argv, line):
    code, err = cli(*argv)
    assert code == 2 and len(err) == 1 and err[0].startswith(f"rnnbench-train: error: {line}"), err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("argv, line", [
    (["seed=99999999999999999999"], "seed=99999999999999999999 is invalid: expected an integer from 0 to "),
    (["seed=-1"], "seed=-1 is invalid: expected an integer from 0 to "),
    (["-m", "seed=0,-3"], "seed=-3 is invalid"),                       # every value of a sweep
    (["search.seed=-5", "hparams_search=paper_lr"], "search.seed=-5 is invalid"),
    (["search.draw=-1", "hparams_search=paper_lr"], "search.draw=-1 is invalid: expected an integer >= 0"),
    (["-m", "hparams_search=paper_lr", "search.draw=0,-2"], "search.draw=-2 is invalid"),
    (["train.weight_noise=inf"], "train.weight_noise=inf is invalid: expected a finite number >= 0"),
    (["train.weight_noise=nan"], "train.weight_noise=nan is invalid: expected a finite number >= 0"),
    (["train.weight_noise=-0.1"], "train.weight_noise=-0.1 is invalid: expected a finite number >= 0"),
    (["train.max_epochs=2.5"], "train.max_epochs=2.5 is invalid: expected an integer >= 1"),
    (["train.bucket=maybe"], "train.bucket='maybe' is invalid: expected true or false"),
    (["train.device=tpu"], "train.device='tpu' is invalid: expected cpu, cuda, cuda:N or auto"),
    (["optim.eps=inf"], "optim.eps=inf is invalid: expected a positive number"),
    (["hparams_search=paper_lr_halving", "search.halving.keep=2"], "search.halving.keep=2 is invalid"),
])
def test_a_bad_value_is_one_line_naming_it(cli, tmp_path, argv, line):
    code, err = cli(*argv)
    assert code == 2 and len(err) == 1 and err[0].startswith(f"rnnbench-train: error: config value {line}"), err
    assert not (tmp_path / "runs").exists()


def test_a_run_directory_that_cannot_be_made_is_one_line(cli, tmp_path):
    (tmp_path / "a_file").write_text("x")
    code, err = cli(f"hydra.run.dir={tmp_path}/a_file/run")
    assert code == 2 and err == [f"rnnbench-train: error: run directory hydra.run.dir '{tmp_path}/a_file/run' cannot "
                                 f"be created ('{tmp_path}/a_file' is a file, not a folder): expected a folder that "
                                 f"can be made there"], err
    code, err = cli("hydra.run.dir=/proc/rnnbench-run")
    assert code == 2 and len(err) == 1 and "hydra.run.dir '/proc/rnnbench-run' cannot be created" in err[0]
    code, err = cli("-m", "seed=0,1", f"hydra.sweep.dir={tmp_path}/a_file/sweep")
    assert code == 2 and len(err) == 1 and f"sweep directory hydra.sweep.dir '{tmp_path}/a_file/sweep'" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"] + (["cache"] if (tmp_path / "cache").exists()
                                                                       else [])


def test_the_cli_refuses_in_one_line_with_exit_2_and_writes_nothing(tmp_path):
    """As a user runs it: a separate process, Hydra's machinery and all."""
    env = dict(os.environ, RNNBENCH_RUNS=str(tmp_path / "runs"))
    env.pop("HYDRA_FULL_ERROR", None)
    p = subprocess.run([sys.executable, "-m", "rnnbench.cli.train", "+train.max_epoch=5"], capture_output=True,
                       text=True, env=env, cwd=tmp_path, timeout=300)
    assert p.returncode == 2 and p.stdout == "", p.stdout + p.stderr
    assert p.stderr.splitlines() == ["rnnbench-train: error: unknown config key 'train.max_epoch': not in the schema "
                                     "nor in the config files; nearest known keys: train.max_epochs, "
                                     "train.max_minutes, train.eval_max_waste (rnnbench-train --help lists them all)"]
    assert [p.name for p in tmp_path.iterdir() if p.name != "cache"] == []


# --------------------------------------------------------------------------- still accepted

@pytest.mark.parametrize("argv", [
    ["-m", "experiment=chung2014_music"],
    ["-m", "experiment=chung2014_speech", "hydra/launcher=joblib"],
    ["-m", "experiment=quick", "hydra/launcher=basic"],
    ["-m", "experiment=quick_jsb", "hydra/launcher=submitit_local"],
    ["-m", "hparams_search=paper_lr_halving", "dataset=jsb"],
    ["dataset=scores_folder", "dataset.path=/tmp/scores", "dataset.name=mine", "dataset.step=0.5"],
    ["dataset=audio_folder", "dataset.path=/tmp/audio", "dataset.split=hash"],
    ["dataset=torchaudio", "dataset.dataset=LIBRISPEECH", "dataset.path=/tmp/ls",
     "+dataset.split_kwargs={train: {url: train-clean-100}, valid: {url: dev-clean}, test: {url: test-clean}}"],
    ["dataset=torchaudio", "+dataset.kwargs.subset=x"],       # inside a mapping the file holds
    ["++train.max_epochs=3", "seed=4", "train.order_seed=0", "train.max_minutes=1.5"],
])
def test_every_existing_config_and_override_still_passes(tmp_path, monkeypatch, argv):
    from rnnbench.cli.trainconf import check

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RNNBENCH_RUNS", str(tmp_path / "runs"))
    assert check(argv) is not None
    assert not (tmp_path / "runs").exists()  # (the run directory was tried and removed)


def test_each_value_of_an_experiments_sweep_is_checked(tmp_path, monkeypatch):
    """The sweeper's own parameters (conf/experiment/*.yaml) are checked value by value too."""
    from rnnbench.cli.trainconf import check

    (tmp_path / "mine" / "experiment").mkdir(parents=True)
    (tmp_path / "mine" / "experiment" / "typo.yaml").write_text(
        "# @package _global_\nhydra:\n  sweeper:\n    params:\n      cell: tnah,gru\n      seed: 0,1,-1\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"^cell=tnah: no such cell \(did you mean cell=tanh\?\)"):
        check(["-m", "--config-dir", str(tmp_path / "mine"), "experiment=typo"])
    with pytest.raises(ConfigError, match=r"^config value seed=-1 is invalid"):
        check(["-m", "--config-dir", str(tmp_path / "mine"), "experiment=typo", "cell=tanh,gru"])


def test_a_draw_beyond_the_papers_ten_is_said(tmp_path, monkeypatch, capsys):
    from rnnbench.cli.trainconf import check

    monkeypatch.chdir(tmp_path)
    check(["hparams_search=paper_lr", "search.draw=12"])
    assert "search.draw=12 is not one of the paper's 10 draws (0 to 9)" in capsys.readouterr().err
    check(["-m", "hparams_search=paper_lr", "search.draw=range(8,11)"])
    assert "search.draw=10 is not one of the paper's 10 draws" in capsys.readouterr().err
    check(["hparams_search=paper_lr", "search.draw=9"])
    assert capsys.readouterr().err == ""


def test_a_cell_of_ones_own_may_carry_keys_of_its_own(tmp_path, monkeypatch):
    """--config-dir: a user's cell file with a _target_ and keys the schema does not know."""
    from rnnbench.cli.trainconf import check

    (tmp_path / "mine" / "cell").mkdir(parents=True)
    (tmp_path / "mine" / "cell" / "mgu.yaml").write_text(
        "_target_: mgu_cell.MGUCell  # a cell class of one's own\nname: mgu\nsizes: {music: 60, speech: 280}\n"
        "units: ${cell.sizes.${dataset.task}}\nforget_bias: 1.0  # added to the forget gate\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(REPO / "examples" / "mgu"))  # (the target is imported and checked)
    cfg = check(["--config-dir", str(tmp_path / "mine"), "cell=mgu", "cell.forget_bias=2.0"])
    assert cfg.cell.forget_bias == 2.0 and cfg.cell._target_ == "mgu_cell.MGUCell"
    with pytest.raises(ConfigError, match="unknown config key 'cell.forget_bais'.*cell.forget_bias"):
        check(["--config-dir", str(tmp_path / "mine"), "cell=mgu", "+cell.forget_bais=2.0"])
    with pytest.raises(ConfigError, match="cell=mug: no such cell .did you mean cell=mgu.*gru, gru_after, lstm, mgu"):
        check(["--config-dir", str(tmp_path / "mine"), "cell=mug"])


# --------------------------------------------------------------------------- --help

def test_help_describes_every_key_with_type_and_default(cli, capsys):
    from rnnbench.schema import schema_fields

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    flat = " ".join(out.split())
    for key, f in schema_fields():
        if f.metadata["type"] == "group":
            continue
        assert f"{key} ({f.metadata['type']}, default " in flat, key
        assert " ".join(f.metadata["help"].split()) in flat, key
    assert "train.weight_noise (float, default 0.075) std of the Gaussian weight noise" in flat
    # the chosen groups' keys, described by their files' comments, and every group's options
    assert "dataset.format (str, default mat) mat (reference copy) or pickle" in flat
    assert "cell.units (int, default 46)" in flat
    assert "cell [gru], gru_after, lstm, tanh" in flat and "experiment [null], chung2014_music" in flat
    assert "hydra/launcher [basic], joblib, stacked, submitit_local" in flat
    assert "0 finished" in flat and "2 refused" in flat and "3 diverged" in flat and "4 another process" in flat
    # under overrides: the keys and values that command would have
    with pytest.raises(SystemExit):
        main(["dataset=fsdd", "cell=lstm", "train.patience=7", "--help"])
    flat = " ".join(capsys.readouterr().out.split())
    assert "dataset.sample_rate (int, default 8000) Hz; every file is brought to this rate" in flat
    assert "cell.units (int, default 195)" in flat and "train.patience (int, default 7)" in flat
    assert "folk, [fsdd], jsb" in flat and "dataset.format" not in flat


def test_a_run_directory_on_a_read_only_file_system_is_one_line(cli, tmp_path):
    import shutil

    mnt = tmp_path / "ro"
    mnt.mkdir()
    if not shutil.which("mount") or subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mnt)],
                                                   capture_output=True).returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        code, err = cli(f"hydra.run.dir={mnt}/runs/x")
        assert code == 2 and err == [f"rnnbench-train: error: run directory hydra.run.dir '{mnt}/runs/x' cannot be "
                                     f"created (Read-only file system): expected a folder that can be made there"], err
        code, err = cli(f"hydra.run.dir={mnt}")  # (it exists, but nothing can be written in it)
        assert code == 2 and err == [f"rnnbench-train: error: run directory hydra.run.dir '{mnt}' cannot be written "
                                     f"(Read-only file system): expected a folder files can be written in"], err
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
