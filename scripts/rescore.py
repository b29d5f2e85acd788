"""Re-score committed checkpoints with an evaluator that shares no code with rnnbench.

    python scripts/rescore.py results/music/runs/search results/music/runs/seeds \\
        --selected results/music/report/selected_runs.csv --out results/music/rescore.md

For every run directory (one holding ``config.yaml`` and ``summary.json``; found recursively under
each path given) the model is rebuilt from ``best.pt`` and ``config.yaml`` alone, the split
(``--split``, default ``test``) is read from the corpus files and scored, and the result is
compared with ``summary.json``'s ``<split>_nll``.  Writes a Markdown table (``--out``, else
stdout) and a one-line verdict; exits 1 when any run disagrees or cannot be scored, 2 on a
configuration this script does not support (named in one line, nothing guessed).

Independence: this file imports nothing from ``rnnbench`` (only the standard library, numpy,
torch, yaml, and scipy / soundfile to read the corpora); the cells, heads, metric, corpus
readers, splits and framing below were written from the equations and the data's description
(tests/test_rescore.py checks the imports).

* Cells (``W`` = ``cell.weight_ih`` (D, G*H), ``U`` = ``cell.weight_hh`` (H, G*H), ``b`` =
  ``cell.bias``; gate blocks of H columns in the order written):
  tanh ``h = tanh(xW + hU + b)``;
  gru (z, r, candidate) ``z, r = s(.)``, ``h~ = tanh(xW_h + (r*h)U_h + b_h)``, ``h = (1-z)h + z h~``
  (reset before the product, Chung et al. 2014);
  lstm (i, f, c, o; ``cell.weight_peep`` rows i, f, o, Graves 2013)
  ``i = s(. + p_i c)``, ``f = s(. + p_f c)``, ``c = f c + i tanh(.)``, ``o = s(. + p_o c_new)``, ``h = o tanh(c)``.
* Heads (``head.linear``): Bernoulli over the keys, per-frame NLL ``sum_k log(1 + e^l) - y l``;
  mixture of K diagonal Gaussians over D values: outputs ``[K logits | K*D means | K*D raw scales]``
  (component-major), ``sigma = min_scale + softplus(raw)`` (softplus = raw above 20, as torch's),
  NLL ``-logsumexp_k(log_softmax(logits)_k + sum_d log N(y_d; mu_kd, sigma_kd))``.
* Metric: per-frame NLLs (in the model's dtype) summed in float64 over every real frame of the
  split, divided by the number of frames (every frame weighs the same; padding never counts).
* Music (``dataset.kind: benchmark``, ``format: mat``): MATLAB v5 ``<split>data`` cell arrays of
  (T, 88) rolls; the input at step t is frame t-1, a zero frame at t=0.
* Speech (``dataset.kind: fsdd`` or ``yesno``): WAVs read with soundfile (float64, channels
  averaged, then float32), refused when not at ``sample_rate`` (no resampling here); fewer than
  30 samples: left out; per-utterance normalisation in float64 from the float32 samples
  (``standard``: ``(x - mean) / std`` with the population std; ``rms``; ``peak``; ``none``),
  back to float32; step t reads samples [10t, 10t+20) and predicts [10t+20, 10t+30), T =
  (N - 20) // 10; ``max_steps`` keeps the first steps, ``chunk_steps`` cuts consecutive pieces
  (state restarts), ``max_utterances`` keeps an evenly spaced subset of each split.
  FSDD: ``{digit}_{speaker}_{index}.wav``, index in ``test_indices`` test, in ``valid_indices``
  valid, else train.  YESNO: sorted by file name, position i % holdout_every == 0 test, == 1 valid.

``--float64`` runs the model in float64 (the weights and the corpus's float32 values cast up):
the same checkpoint without float32 rounding.  ``--selected REPORT/selected_runs.csv`` keeps the
runs whose dataset, cell (a labelled variant such as ``tanh (σ=0.02)`` by its weight noise and
chunking) and learning rate match a row of a report's selected runs (every seed),
and checks that each row finds as many seeds as its ``seeds`` column says.

A checkpoint that disagrees is scored again one sequence at a time (another summation order), in
the chosen dtype and in float64, beside the first score: a tampered checkpoint scores the same
each way, while one whose recurrence rounding can tip into another regime (a hidden state driven
into saturation; FSDD's GRU at 1.30e-3 scores -6.41, +25105 or -5.93 nats per step by these three)
disagrees with itself, and the report says so ("rounding decides"); the exit status stays 1.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import re
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import yaml

SPLITS = ("train", "valid", "test")
MUSIC_FILES = {"jsb": "JSB_Chorales.mat", "nottingham": "Nottingham.mat", "musedata": "MuseData.mat",
               "piano": "Piano_midi.mat"}
N_KEYS = 88
IN_SAMPLES, OUT_SAMPLES = 20, 10
GATES = {"tanh": 1, "gru": 3, "lstm": 4}
SPEECH_KEYS = {"name", "kind", "task", "path", "download", "sample_rate", "resample", "normalize", "skip_bad_files",
               "chunk_steps", "max_steps", "max_utterances", "components", "min_scale"}
FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)$")


class Unsupported(Exception):
    """A run this evaluator does not know how to rebuild or score (refused, never guessed)."""


# --------------------------------------------------------------------------- runs

def find_runs(paths: list[str]) -> list[Path]:
    """Run directories (``config.yaml`` + ``summary.json``) at or under each path, sorted, unique."""
    found: set[Path] = set()
    for p in map(Path, paths):
        if not p.exists():
            raise SystemExit(f"rescore: {p}: not found")
        if (p / "config.yaml").is_file() and (p / "summary.json").is_file():
            found.add(p)
            continue
        found.update(c.parent for c in p.rglob("config.yaml") if (c.parent / "summary.json").is_file())
    return sorted(found)


def read_run(run: Path) -> dict:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    summary = json.loads((run / "summary.json").read_text())
    if not isinstance(cfg, dict) or not isinstance(cfg.get("dataset"), dict) or not isinstance(cfg.get("cell"), dict):
        raise Unsupported(f"{run}/config.yaml: no dataset and cell sections")
    if "${" in json.dumps(cfg):
        raise Unsupported(f"{run}/config.yaml: holds unresolved interpolations (${{...}})")
    cell = cfg["cell"]
    if "_target_" in cell or cell.get("name") not in GATES:
        raise Unsupported(f"{run}: cell {cell.get('_target_') or cell.get('name')!r} is not supported "
                          f"(only {sorted(GATES)})")
    if "_target_" in cfg["dataset"]:
        raise Unsupported(f"{run}: dataset._target_ is not supported")
    return {"dir": run, "cfg": cfg, "summary": summary, "dataset": str(cfg["dataset"].get("name")),
            "cell": str(cell["name"]), "label": variant_label(str(cell["name"]), cfg, summary),
            "lr": float(cfg.get("optim", {}).get("lr", float("nan"))),
            "seed": cfg.get("seed"), "has_best": (run / "best.pt").is_file()}


def variant_label(cell: str, cfg: dict, summary: dict) -> str:
    """How a report names the run's cell: the cell, or for a labelled variant (a weight noise other
    than the paper's 0.075; speech cut into chunks) ``"<cell> (σ=0.02)"``, ``"<cell> (50-step chunks)"``
    or both, comma-separated, as rnnbench-report's selected_runs.csv writes it."""
    parts = []
    noise = summary.get("weight_noise", (cfg.get("train") or {}).get("weight_noise"))
    try:
        noise = float(noise)
    except (TypeError, ValueError):
        noise = math.nan
    if math.isfinite(noise) and abs(noise - 0.075) > 1e-12:
        parts.append(f"σ={noise:g}")
    chunk = cfg["dataset"].get("chunk_steps")
    if cfg["dataset"].get("task") == "speech" and chunk:
        parts.append(f"{int(chunk)}-step chunks")
    return f"{cell} ({', '.join(parts)})" if parts else cell


def select(runs: list[dict], selected_csv: Path) -> tuple[list[dict], list[str]]:
    """The runs matching a row (dataset, cell, lr) of ``selected_runs.csv``, and problems found."""
    rows = list(csv.DictReader(open(selected_csv, newline="")))
    need = {"dataset", "cell", "lr"}
    if not rows or not need <= set(rows[0]):
        raise SystemExit(f"rescore: {selected_csv}: expected a CSV with columns {sorted(need)}")
    keep, problems = [], []
    for row in rows:
        lr = float(row["lr"])
        hit = [r for r in runs if r["dataset"] == row["dataset"] and r["label"] == row["cell"]
               and math.isclose(r["lr"], lr, rel_tol=1e-4)]
        seeds = [r["seed"] for r in hit]
        if len(set(map(str, seeds))) != len(seeds):
            problems.append(f"{row['dataset']}/{row['cell']} lr={row['lr']}: two runs share a seed "
                            f"({', '.join(str(r['dir']) for r in hit)})")
        want = row.get("seeds")
        if want not in (None, "") and int(float(want)) != len(hit):
            problems.append(f"{row['dataset']}/{row['cell']} lr={row['lr']}: the report counts {int(float(want))} "
                            f"seeds, {len(hit)} run(s) found")
        keep += hit
    return keep, problems


def load_checkpoint(run: dict) -> dict[str, torch.Tensor]:
    ck = torch.load(run["dir"] / "best.pt", map_location="cpu", weights_only=True)
    sd = ck["model"] if isinstance(ck, dict) and "model" in ck else None
    if not isinstance(sd, dict):
        raise Unsupported(f"{run['dir']}/best.pt: no 'model' state dict")
    cell, units = run["cell"], int(run["cfg"]["cell"]["units"])
    want = {"cell.weight_ih", "cell.weight_hh", "cell.bias", "head.linear.weight", "head.linear.bias"}
    if cell == "lstm":
        want.add("cell.weight_peep")
    if set(sd) != want:
        raise Unsupported(f"{run['dir']}/best.pt: parameters {sorted(sd)}; expected {sorted(want)} for cell {cell!r}")
    if ck.get("cell", cell) != cell or int(ck.get("units", units)) != units:
        raise Unsupported(f"{run['dir']}/best.pt: holds a {ck.get('cell')} of {ck.get('units')} units, config.yaml "
                          f"says {cell} of {units}")
    G = GATES[cell]
    W, U, b = sd["cell.weight_ih"], sd["cell.weight_hh"], sd["cell.bias"]
    if U.shape != (units, G * units) or W.shape[1] != G * units or b.shape != (G * units,) \
            or sd["head.linear.weight"].shape[1] != units:
        raise Unsupported(f"{run['dir']}/best.pt: weight shapes {[tuple(v.shape) for v in sd.values()]} do not fit "
                          f"{cell} with {units} units")
    return sd


# --------------------------------------------------------------------------- model

def recurrence(cell: str, sd: dict, x: torch.Tensor) -> torch.Tensor:
    """Hidden states (T, B, H) of the cell over time-major inputs ``x`` (T, B, D), zero initial state."""
    W, U, b = sd["cell.weight_ih"], sd["cell.weight_hh"], sd["cell.bias"]
    T, B, _ = x.shape
    H = U.shape[0]
    xw = (x.reshape(T * B, -1) @ W + b).reshape(T, B, -1)
    h = x.new_zeros(B, H)
    c = x.new_zeros(B, H)
    out = x.new_empty(T, B, H)
    if cell == "gru":
        U_zr, U_h = U[:, :2 * H], U[:, 2 * H:]
    if cell == "lstm":
        p_i, p_f, p_o = sd["cell.weight_peep"]
    for t in range(T):
        a = xw[t]
        if cell == "tanh":
            h = torch.tanh(a + h @ U)
        elif cell == "gru":
            zr = torch.sigmoid(a[:, :2 * H] + h @ U_zr)
            z, r = zr[:, :H], zr[:, H:]
            cand = torch.tanh(a[:, 2 * H:] + (r * h) @ U_h)
            h = (1 - z) * h + z * cand
        else:
            g = a + h @ U
            i = torch.sigmoid(g[:, :H] + p_i * c)
            f = torch.sigmoid(g[:, H:2 * H] + p_f * c)
            c = f * c + i * torch.tanh(g[:, 2 * H:3 * H])
            o = torch.sigmoid(g[:, 3 * H:] + p_o * c)
            h = o * torch.tanh(c)
        out[t] = h
    return out


def bernoulli_nll(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-frame NLL of independent Bernoullis with logits ``out``: sum_k log(1 + e^l) - y l."""
    return torch.logaddexp(torch.zeros_like(out), out).sum(-1) - (y * out).sum(-1)


def mixture_nll(out: torch.Tensor, y: torch.Tensor, K: int, min_scale: float) -> torch.Tensor:
    """Per-frame NLL of a K-component diagonal Gaussian mixture over the D values of ``y``."""
    D = y.shape[-1]
    if out.shape[-1] != K + 2 * K * D:
        raise Unsupported(f"head gives {out.shape[-1]} outputs; a {K}-component mixture over {D} values needs "
                          f"{K + 2 * K * D}")
    lead = out.shape[:-1]
    logits = out[..., :K]
    mean = out[..., K:K + K * D].reshape(*lead, K, D)
    raw = out[..., K + K * D:].reshape(*lead, K, D)
    soft = torch.where(raw > 20, raw, torch.log1p(torch.exp(torch.clamp(raw, max=20))))
    scale = min_scale + soft
    log_w = logits - torch.logsumexp(logits, -1, keepdim=True)
    z = (y.unsqueeze(-2) - mean) / scale
    log_comp = -0.5 * (z * z).sum(-1) - torch.log(scale).sum(-1) - 0.5 * D * math.log(2 * math.pi)
    return -torch.logsumexp(log_w + log_comp, -1)


def score(cell: str, sd: dict, items: list, head: dict, dtype: torch.dtype, rows: int = 64) -> tuple[float, int]:
    """NLL per frame over ``items`` (each ``(inputs (T, Din), targets (T, Dout))``) and the frame count."""
    sd = {k: v.to(dtype) for k, v in sd.items()}
    Wo, bo = sd["head.linear.weight"], sd["head.linear.bias"]
    order = sorted(range(len(items)), key=lambda i: -len(items[i][0]))
    total, frames = 0.0, 0
    for s in range(0, len(order), rows):
        batch = [items[i] for i in order[s:s + rows]]
        T, B = len(batch[0][0]), len(batch)
        x = torch.zeros(T, B, batch[0][0].shape[1], dtype=dtype)
        y = torch.zeros(T, B, batch[0][1].shape[1], dtype=dtype)
        mask = torch.zeros(T, B, dtype=torch.bool)
        for j, (a, t) in enumerate(batch):
            x[:len(a), j] = torch.from_numpy(np.asarray(a)).to(dtype)
            y[:len(t), j] = torch.from_numpy(np.asarray(t)).to(dtype)
            mask[:len(a), j] = True
        h = recurrence(cell, sd, x)
        out = h @ Wo.T + bo
        if head["kind"] == "bernoulli":
            nll = bernoulli_nll(out, y)
        else:
            nll = mixture_nll(out, y, head["components"], head["min_scale"])
        total += float(nll[mask].double().sum())
        frames += int(mask.sum())
    return total / frames, frames


# --------------------------------------------------------------------------- corpora

def data_roots(cfg: dict, override: str | None) -> list[Path]:
    cands = [override, cfg.get("data_root"), os.environ.get("RNNBENCH_DATA"), os.environ.get("RNNBENCH_CACHE"), "data"]
    return [Path(c).expanduser() for c in cands if c]


def find_path(path, relpath: str, roots: list[Path], is_dir: bool) -> Path:
    ok = Path.is_dir if is_dir else Path.is_file
    if path not in (None, ""):
        p = Path(str(path)).expanduser()
        for c in [p] + ([r / p for r in roots] if not p.is_absolute() else []):
            if ok(c):
                return c
        raise Unsupported(f"dataset.path={path}: not found")
    for r in roots:
        if ok(r / relpath):
            return r / relpath
    raise Unsupported(f"{relpath}: not found under {', '.join(map(str, roots)) or 'no data root'} "
                      f"(set RNNBENCH_DATA or --data-root)")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def music_items(ds: dict, split: str, roots: list[Path]) -> tuple[list, dict, str]:
    import scipy.io

    if ds.get("format", "mat") != "mat":
        raise Unsupported(f"dataset.format={ds.get('format')!r}: only mat is supported")
    name = ds.get("name")
    if ds.get("path") in (None, "") and name not in MUSIC_FILES:
        raise Unsupported(f"music dataset {name!r} without dataset.path: expected one of {sorted(MUSIC_FILES)}")
    path = find_path(ds.get("path"), f"polyphonic/{MUSIC_FILES.get(name, '')}", roots, is_dir=False)
    mat = scipy.io.loadmat(str(path))
    rolls = [np.asarray(r, dtype=np.float32) for r in mat[f"{split}data"].ravel()]
    items = []
    for r in rolls:
        if r.ndim != 2 or r.shape[1] != N_KEYS or not np.isin(r, (0, 1)).all():
            raise Unsupported(f"{path}: {split}data holds a {r.shape} array, expected (T, 88) of 0/1")
        x = np.zeros_like(r)
        x[1:] = r[:-1]
        items.append((x, r))
    return items, {"kind": "bernoulli"}, f"{path} (sha256 {sha256(path)[:16]})"


def even_subset(items: list, n) -> list:
    if n is None or n >= len(items):
        return items
    idx = np.unique(np.linspace(0, len(items) - 1, int(n)).round().astype(int))
    return [items[i] for i in idx]


def read_wav(path: Path, rate) -> np.ndarray:
    import soundfile as sf

    data, sr = sf.read(str(path), dtype="float64", always_2d=True)
    if rate is not None and sr != rate:
        raise Unsupported(f"{path}: {sr} Hz, dataset.sample_rate={rate}: resampling is not supported here")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return mono.astype(np.float32)


def normalise(x: np.ndarray, method: str, where: Path) -> np.ndarray:
    x = x.astype(np.float64)
    if method == "none":
        return x.astype(np.float32)
    std = x.std()
    if not std > 1e-7:
        raise Unsupported(f"{where}: silent recording, cannot be normalised")
    y = {"standard": lambda: (x - x.mean()) / std, "rms": lambda: x / np.sqrt(np.mean(x * x)),
         "peak": lambda: x / np.abs(x).max()}[method]()
    return y.astype(np.float32)


def frames(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    T = (len(x) - IN_SAMPLES) // OUT_SAMPLES
    idx = OUT_SAMPLES * np.arange(T)[:, None]
    return x[idx + np.arange(IN_SAMPLES)], x[idx + IN_SAMPLES + np.arange(OUT_SAMPLES)]


def speech_files(ds: dict, split: str, roots: list[Path]) -> tuple[list[Path], Path]:
    kind = ds["kind"]
    if kind == "fsdd":
        folder = find_path(ds.get("path"), "speech/fsdd/recordings", roots, is_dir=True)
        test, valid = set(ds.get("test_indices", range(5))), set(ds.get("valid_indices", range(5, 10)))
        keyed = []
        for p in sorted(folder.iterdir()):
            if p.suffix.lower() != ".wav" or not p.is_file():
                continue
            m = FSDD_NAME.match(p.stem)
            if not m:
                raise Unsupported(f"{p}: not an FSDD name {{digit}}_{{speaker}}_{{index}}.wav")
            i = int(m.group(3))
            s = "test" if i in test else "valid" if i in valid else "train"
            keyed.append(((int(m.group(1)), m.group(2), i), s, p))
        return [p for _, s, p in sorted(keyed) if s == split], folder
    folder = find_path(ds.get("path"), "speech/yesno/waves_yesno", roots, is_dir=True)
    every = int(ds.get("holdout_every", 6))
    wavs = sorted((p for p in folder.iterdir() if p.suffix.lower() == ".wav" and p.is_file()), key=lambda p: p.name)
    pos = {"test": 0, "valid": 1}
    return [p for i, p in enumerate(wavs) if (i % every == pos[split] if split in pos else i % every > 1)], folder


def speech_items(ds: dict, split: str, roots: list[Path]) -> tuple[list, dict, str]:
    unknown = set(ds) - SPEECH_KEYS - ({"test_indices", "valid_indices"} if ds["kind"] == "fsdd" else {"holdout_every"})
    if unknown:
        raise Unsupported(f"dataset keys {sorted(unknown)} are not supported")
    if ds.get("skip_bad_files"):
        raise Unsupported("dataset.skip_bad_files=true is not supported (which files the trainer skipped is unknown)")
    method = ds.get("normalize", "standard")
    if method not in ("standard", "rms", "peak", "none"):
        raise Unsupported(f"dataset.normalize={method!r} is not supported")
    files, folder = speech_files(ds, split, roots)
    files = even_subset(files, ds.get("max_utterances"))
    rate, max_steps, chunk = ds.get("sample_rate", 8000), ds.get("max_steps"), ds.get("chunk_steps")
    if rate is None:
        import soundfile as sf

        rates = {sf.info(str(p)).samplerate for p in files}
        if len(rates) > 1:
            raise Unsupported(f"{folder}: files at several rates {sorted(rates)} and no dataset.sample_rate")
    items = []
    for p in files:
        x = read_wav(p, rate)
        if len(x) < IN_SAMPLES + OUT_SAMPLES:
            continue  # (no step to predict: the trainer leaves such files out)
        inp, tgt = frames(normalise(x, method, p))
        if max_steps:
            inp, tgt = inp[:max_steps], tgt[:max_steps]
        step = chunk or len(inp)
        items += [(inp[s:s + step], tgt[s:s + step]) for s in range(0, len(inp), step)]
    head = {"kind": "mixture", "components": int(ds.get("components", 20)), "min_scale": float(ds.get("min_scale", 1e-3))}
    return items, head, f"{folder} ({len(files)} {split} files)"


def load_split(ds: dict, split: str, roots: list[Path]) -> tuple[list, dict, str]:
    kind = ds.get("kind")
    if kind == "benchmark":
        return music_items(ds, split, roots)
    if kind in ("fsdd", "yesno"):
        return speech_items(ds, split, roots)
    raise Unsupported(f"dataset.kind={kind!r} is not supported (only benchmark, fsdd, yesno)")


# --------------------------------------------------------------------------- main

def fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.6f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", help="run directories or folders holding them (searched recursively)")
    ap.add_argument("--out", help="write the Markdown report here (default: stdout)")
    ap.add_argument("--split", default="test", choices=SPLITS)
    ap.add_argument("--selected", help="a report's selected_runs.csv: keep the runs at each pair's selected rate")
    ap.add_argument("--float64", action="store_true", help="run the model in float64")
    ap.add_argument("--rtol", type=float, default=1e-4, help="agreement: |ours - summary| <= atol + rtol * |summary|")
    ap.add_argument("--atol", type=float, default=1e-5)
    ap.add_argument("--data-root", help="look for the corpora here first (then config data_root, RNNBENCH_DATA)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--note", action="append", default=[], help="a line for the report's header (repeatable)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    dtype = torch.float64 if args.float64 else torch.float32

    try:
        runs = [read_run(r) for r in find_runs(args.paths)]
    except Unsupported as exc:
        print(f"rescore: {exc}", file=sys.stderr)
        return 2
    problems: list[str] = []
    if args.selected:
        runs, problems = select(runs, Path(args.selected))
        no_best = []
    else:
        no_best = [r for r in runs if not r["has_best"]]
        runs = [r for r in runs if r["has_best"]]
    if not runs:
        print("rescore: no run directories with best.pt found", file=sys.stderr)
        return 2
    runs.sort(key=lambda r: (r["dataset"], r["cell"], r["lr"], str(r["seed"]), str(r["dir"])))

    cache: dict[str, tuple] = {}
    rows, sources = [], {}
    for r in runs:
        key_name = f"{args.split}_nll"
        want = r["summary"].get(key_name)
        row = {"run": r, "ours": None, "summary": want, "diff": None, "ok": "?"}
        rows.append(row)
        if not r["has_best"]:
            row["ok"] = "no best.pt"
            continue
        try:
            sd = load_checkpoint(r)
            ds = r["cfg"]["dataset"]
            key = json.dumps([ds, r["cfg"].get("data_root"), args.split], sort_keys=True, default=str)
            if key not in cache:
                cache[key] = load_split(ds, args.split, data_roots(r["cfg"], args.data_root))
            items, head, source = cache[key]
            sources[source] = True
            t0 = time.perf_counter()
            row["ours"], row["frames"] = score(r["cell"], sd, items, head, dtype)
            row["seconds"] = time.perf_counter() - t0
        except Unsupported as exc:
            print(f"rescore: {exc}", file=sys.stderr)
            return 2
        if want is None:
            row["ok"] = f"no {key_name}"
            continue
        row["diff"] = abs(row["ours"] - float(want))
        row["rel"] = row["diff"] / max(abs(float(want)), 1e-300)
        row["ok"] = "yes" if math.isfinite(row["ours"]) and row["diff"] <= args.atol + args.rtol * abs(float(want)) \
            else "**NO**"
        if row["ok"] != "yes":  # the same checkpoint, one sequence at a time: another summation order
            row["alone"] = score(r["cell"], sd, items, head, dtype, rows=1)[0]
            row["alone64"] = score(r["cell"], sd, items, head, torch.float64, rows=1)[0]

    wall = time.perf_counter() - start
    compared = [x for x in rows if x["diff"] is not None]
    agree = [x for x in compared if x["ok"] == "yes"]
    bad = [x for x in rows if x["ok"] not in ("yes",) and not x["ok"].startswith("no " + args.split)]
    lines = [
        f"# Re-scored checkpoints ({args.split} split, {'float64' if args.float64 else 'float32'})", "",
        f"Command: `python scripts/rescore.py {' '.join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))}`",
        f"Date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; wall time {wall:.1f} s "
        f"({torch.get_num_threads()} torch thread(s), torch {torch.__version__}).",
        *[f"Note: {n}" for n in args.note],
        "",
        "Evaluator: scripts/rescore.py, which imports nothing from rnnbench: each model rebuilt from best.pt and "
        "config.yaml alone, the split read from the corpus files, NLL per frame averaged over all frames of the split. "
        f"ok: |ours - summary| <= {args.atol:g} + {args.rtol:g} * |summary|.",
        "", "Data: " + "; ".join(sources) + ".", "",
        "| dataset | cell | lr | seed | run | our NLL | summary NLL | abs diff | rel diff | ok |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in rows:
        r = x["run"]
        summ = None if x["summary"] is None else float(x["summary"])
        diff = "-" if x["diff"] is None else f"{x['diff']:.2e}"
        rel = "-" if x["diff"] is None else f"{x['rel']:.2e}"
        lines.append(f"| {r['dataset']} | {r['cell']} | {r['lr']:g} | {r['seed']} | `{r['dir']}` | {fmt(x['ours'])} | "
                     f"{fmt(summ)} | {diff} | {rel} | {x['ok']} |")
    lines.append("")
    examined = [x for x in rows if "alone" in x]
    rounding = 0
    if examined:
        lines += ["Each disagreement scored again one sequence at a time (another summation order), in "
                  f"{'float64' if args.float64 else 'float32'} and in float64: where these differ among themselves "
                  "by more than the tolerance, the checkpoint's score is not fixed by its weights to rounding (a "
                  "recurrence that rounding can tip into another regime), and no evaluator can be expected to "
                  "agree with another.", "",
                  "| dataset | cell | lr | seed | summary NLL | ours, 64 a batch | ours, 1 a batch | float64, 1 a batch "
                  "| rounding decides |", "|---|---|---|---|---|---|---|---|---|"]
        for x in examined:
            r, vals = x["run"], [x["ours"], x["alone"], x["alone64"]]
            finite = [v for v in vals if math.isfinite(v)]
            # (finite one way and not another: rounding decides; not finite any way: the weights do)
            decides = (len(finite) == len(vals) and max(vals) - min(vals) > args.atol + args.rtol * max(map(abs, vals))) \
                or 0 < len(finite) < len(vals)
            lines.append(f"| {r['dataset']} | {r['cell']} | {r['lr']:g} | {r['seed']} | "
                         f"{fmt(None if x['summary'] is None else float(x['summary']))} | {fmt(x['ours'])} | "
                         f"{fmt(x['alone'])} | {fmt(x['alone64'])} | {'yes' if decides else 'no'} |")
            rounding += decides
        lines.append("")
    if no_best:
        lines.append(f"Not scored: {len(no_best)} run director{'y' if len(no_best) == 1 else 'ies'} without best.pt "
                     f"({', '.join('`%s`' % r['dir'] for r in no_best)}).")
        lines.append("")
    for p in problems:
        lines.append(f"Problem: {p}.")
    if problems:
        lines.append("")
    max_abs = max((x["diff"] for x in compared), default=float("nan"))
    max_rel = max((x["rel"] for x in compared), default=float("nan"))
    skipped = len(rows) - len(compared) - len([x for x in rows if x["ok"] == "no best.pt"])
    verdict = (f"Verdict: {len(agree)} of {len(rows)} checkpoints agree with summary.json "
               f"(max abs diff {max_abs:.2e}, max rel diff {max_rel:.2e})"
               + (f"; {skipped} not compared (summary has no {args.split}_nll)" if skipped else "")
               + (f"; {len(bad)} DISAGREE or could not be scored" if bad else "")
               + (f" ({rounding} of them scored differently by this evaluator itself in another summation order: "
                  "rounding decides their score)" if rounding else "")
               + (f"; {len(problems)} problem(s) with the selection" if problems else "") + ".")
    lines.append(verdict)
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(verdict)
    else:
        sys.stdout.write(text)
    return 1 if bad or problems else 0


if __name__ == "__main__":
    sys.exit(main())
