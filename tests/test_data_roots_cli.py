"""rnnbench-train from a fresh clone whose data root points nowhere: one error naming it, exit 2,
no traceback, for a single run and for a stacked sweep."""

from __future__ import annotations

import os
import subprocess
import sys


def _train(args, cwd, **env_extra):
    env = dict(os.environ, RNNBENCH_RUNS=str(cwd / "runs"), **env_extra)
    env.pop("RNNBENCH_DATA", None)
    env.pop("RNNBENCH_CACHE", None)  # as in a fresh clone: the cache is data/ in the working directory
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "rnnbench.cli.train", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_single_run_with_a_data_root_that_does_not_exist(tmp_path):
    p = _train(["dataset=jsb", "cell=gru", "train.max_epochs=1"], tmp_path, RNNBENCH_DATA="../shared/data")
    out = p.stdout + p.stderr
    assert p.returncode == 2, out
    expected = (f"data root does not exist: RNNBENCH_DATA=../shared/data, which from {tmp_path} is "
                f"{tmp_path.parent / 'shared' / 'data'}.")
    assert out.count(expected) == 1 and "Traceback" not in out
    assert not (tmp_path / "data").exists()  # nothing downloaded, no empty cache folders


def test_single_run_with_a_missing_corpus_lists_where_it_looked(tmp_path):
    (tmp_path / "mydata").mkdir()
    p = _train(["dataset=jsb", "cell=gru", "data_root=mydata", "dataset.download=false"], tmp_path)
    out = p.stdout + p.stderr
    assert p.returncode == 2, out
    assert f"{tmp_path / 'mydata' / 'polyphonic' / 'JSB_Chorales.mat'}  (the config key data_root)" in out
    assert f"{tmp_path / 'data' / 'polyphonic' / 'JSB_Chorales.mat'}  (the download cache" in out
    assert out.count("polyphonic/JSB_Chorales.mat not found") == 1 and "Traceback" not in out


def test_stacked_sweep_with_a_data_root_that_does_not_exist_says_so_once(tmp_path):
    p = _train(["-m", "dataset=jsb", "cell=gru,lstm", "search.draw=0,1", "hparams_search=paper_lr",
                "hydra/launcher=stacked", "hydra.launcher.n_jobs=1", "train.max_epochs=1"],
               tmp_path, RNNBENCH_DATA=str(tmp_path / "nowhere"))
    out = p.stdout + p.stderr
    assert p.returncode != 0 and "Traceback" not in out, out
    assert out.count(f"data root does not exist: RNNBENCH_DATA={tmp_path / 'nowhere'}.") == 1, out
    assert not list((tmp_path / "runs").rglob(".hydra")), "a refused sweep leaves no run folders"
