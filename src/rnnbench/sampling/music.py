"""Music from a trained run: piano rolls drawn frame by frame, written as MIDI files and pictures.

The model predicts frame ``t`` from frames ``< t`` (its input at step 0 is the all-zero start
frame, as in training).  Sampling runs the recurrence one step at a time: the Bernoulli
probabilities of the 88 keys, ``sigmoid(logits / temperature)``, give the next frame, which is
fed back as the next input.  ``temperature < 1`` sharpens the distribution, ``> 1`` flattens it.
With ``primer=True`` the model first reads the opening frames of a test piece (sample ``i``
uses test piece ``i mod n``) and continues it; the primer frames are part of the output and
marked in the picture.

One frame lasts ``dataset.step`` quarter lengths for score datasets (``kind=scores``) and one
quarter note for the benchmarks (whose frame duration is not stored with the data); the MIDI
file plays quarter notes at ``tempo`` per minute.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.corpus import SPLITS
from ..data.music import LOWEST_MIDI, N_KEYS, MusicCorpus
from ..data.rolls import roll_to_midi
from ..errors import ConfigError, RnnbenchError
from ..fileio import atomic_write

PRIMER_FRAMES = 16
NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def frame_step(cfg) -> float:
    """Quarter lengths per frame of the run's dataset (1.0 when the dataset does not say)."""
    ds = cfg.dataset
    if ds.get("kind") == "scores" and ds.get("step") is not None:
        return float(ds.step)
    return 1.0


def sample_seed(seed: int, index: int) -> int:
    """Independent, reproducible seed of sample ``index`` (sample 0 of seed 1 != sample 1 of seed 0)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


@torch.no_grad()
def sample_roll(model, length: int, *, temperature: float = 1.0, generator: torch.Generator | None = None,
                primer: np.ndarray | None = None) -> np.ndarray:
    """Draw ``length`` frames from ``model`` (after ``primer``, if given); returns primer + new frames."""
    model.eval()
    param = next(model.parameters())
    primer = np.zeros((0, N_KEYS), dtype=np.uint8) if primer is None else np.asarray(primer, dtype=np.uint8)
    inputs = torch.zeros(len(primer) + 1, 1, N_KEYS, dtype=param.dtype, device=param.device)
    inputs[1:, 0] = torch.from_numpy(primer.astype(np.float32))
    h, state = model(inputs, None)
    last = h[-1]
    frames = []
    for _ in range(length):
        frame = model.head.sample(last, generator=generator, temperature=temperature)  # (1, 88)
        frames.append(frame)
        h, state = model(frame.unsqueeze(0), state)
        last = h[-1]
    new = torch.cat(frames).to(torch.uint8).cpu().numpy() if frames else np.zeros((0, N_KEYS), np.uint8)
    return np.concatenate([primer, new])


def plot_roll(roll: np.ndarray, path: str | Path, *, step: float = 1.0, title: str = "",
              primer_frames: int = 0) -> Path:
    """Piano-roll picture (PNG): time across, keys up; the primer, if any, left of a dashed line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    roll = np.asarray(roll)
    used = np.flatnonzero(roll.any(0))
    lo, hi = (int(used.min()), int(used.max())) if len(used) else (39, 51)  # C4 octave when silent
    lo, hi = max(0, lo - 2), min(N_KEYS - 1, hi + 2)
    fig = Figure(figsize=(min(max(6.0, len(roll) / 20), 30.0), 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(roll[:, lo:hi + 1].T, origin="lower", aspect="auto", cmap="Greys", interpolation="nearest",
              extent=(-0.5, len(roll) - 0.5, lo + LOWEST_MIDI - 0.5, hi + LOWEST_MIDI + 0.5), vmin=0, vmax=1)
    cs = [m for m in range(lo + LOWEST_MIDI, hi + LOWEST_MIDI + 1) if m % 12 == 0]
    ax.set_yticks(cs)
    ax.set_yticklabels([f"C{m // 12 - 1}" for m in cs])
    if primer_frames:
        ax.axvline(primer_frames - 0.5, color="tab:red", linestyle="--", linewidth=1)
    ax.set_xlabel(f"frame (each {step:g} quarter note{'' if step == 1 else 's'})")
    ax.set_ylabel("key")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return atomic_write(path, lambda p: fig.savefig(p, format="png"))


def sample_run(run_dir, out_dir, *, num: int = 1, length: int = 200, temperature: float = 1.0, seed: int = 0,
               primer: bool = False, primer_frames: int = PRIMER_FRAMES, tempo: float = 120.0,
               which: str = "best") -> list[Path]:
    """Draw ``num`` piano rolls from the run in ``run_dir``; write ``.mid`` and ``.png`` files to ``out_dir``.

    Returns the written paths (MIDI, then picture, per sample).  Deterministic given ``seed``.
    """
    from ..data import load_dataset
    from ..runs import load_config, load_model

    if not (isinstance(num, int) and num >= 1):
        raise ConfigError(f"num={num!r} is invalid: expected an integer >= 1")
    if not (isinstance(length, int) and length >= 1):
        raise ConfigError(f"length={length!r} is invalid: expected an integer >= 1 (frames)")
    if not (temperature > 0 and np.isfinite(temperature)):
        raise ConfigError(f"temperature={temperature!r} is invalid: expected a positive number")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ConfigError(f"seed={seed!r} is invalid: expected an integer from 0 to 2**63 - 1")
    from ..memory import check_fits

    check_fits(num * length * 88 * 40, f"{num} sample(s) of {length:,} frames (--num {num} --length {length})",
               "ask for fewer or shorter samples")  # (per sample and frame: the roll, its notes and picture)
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    cfg = load_config(run_dir)
    if cfg.dataset.task != "music":
        raise RnnbenchError(f"{run_dir}: a {cfg.dataset.task!r} run; this sampler draws music")
    if primer:
        corpus = load_dataset(cfg.dataset, cfg.get("data_root"))
    else:  # the model's shapes are those of every piano-roll corpus: no need to read (or find) the data
        corpus = MusicCorpus(name=str(cfg.dataset.name), splits={s: [] for s in SPLITS})
    cfg, model = load_model(run_dir, which=which, corpus=corpus)
    if model.head.__class__.__name__ != "BernoulliHead":
        raise RnnbenchError(f"{run_dir}: expected a Bernoulli output head for piano rolls")
    step = frame_step(cfg)
    tests = corpus["test"]
    paths: list[Path] = []
    for i in range(num):
        gen = torch.Generator().manual_seed(sample_seed(seed, i))
        prime = np.asarray(tests[i % len(tests)][:primer_frames]) if primer and tests else None
        roll = sample_roll(model, length, temperature=temperature, generator=gen, primer=prime)
        stem = f"sample_T{temperature:g}_seed{seed}_{i:02d}" + ("_primed" if prime is not None else "")
        title = (f"{cfg.dataset.name} / {cfg.cell.name} {int(cfg.cell.units)} units, temperature {temperature:g}, "
                 f"seed {seed}, sample {i}" + (f", primer: {len(prime)} test frames" if prime is not None else ""))
        paths.append(roll_to_midi(roll, out_dir / f"{stem}.mid", step=step, tempo=tempo))
        paths.append(plot_roll(roll, out_dir / f"{stem}.png", step=step, title=title,
                               primer_frames=0 if prime is None else len(prime)))
    return paths
