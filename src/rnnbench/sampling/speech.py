"""Listen to a trained speech model: generate raw audio step by step.

At every step the model reads the last 20 samples of the waveform so far, draws the next 10
from its Gaussian mixture, and appends them, so that the next input is again the last 20
samples.  Without a primer the waveform starts with 20 zeros (the normalised signal's mean);
with ``primer`` it starts with a test utterance, fed to the model for the first half of the
requested steps (at most the whole utterance) before the model continues on its own.

The samples are in the corpus's normalised units (per-utterance, see ``docs/speech.md``), so
the absolute loudness is unknown: each WAV is peak-normalised to -1 dBFS and written as
16-bit PCM at the corpus's sample rate.  Beside each WAV a PNG shows the waveform and its
spectrogram (the primer shaded).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..data.framing import INPUT_SAMPLES, OUTPUT_SAMPLES, unframe
from ..data.speech import speech_corpus_stub
from ..errors import ConfigError, RnnbenchError
from ..fileio import atomic_write
from ..runs import load_config, load_model

PEAK = 10 ** (-1 / 20)  # -1 dBFS
DEFAULT_SECONDS = 2.0


@torch.no_grad()
def generate(model, steps: int, num: int = 1, temperature: float = 1.0, generator: torch.Generator | None = None,
             primer: np.ndarray | None = None, primer_steps: int = 0) -> np.ndarray:
    """``(num, 20 + 10 * steps)`` samples.

    ``primer`` (``(num, 20 + 10 * primer_steps)`` or longer) gives the start of each waveform;
    its first ``primer_steps`` steps are read, not drawn.
    """
    if steps < 1:
        raise RnnbenchError(f"sample length must be >= 1 step, got {steps}")
    if not temperature > 0:
        raise RnnbenchError(f"temperature must be > 0, got {temperature}")
    model.eval()
    n_total = INPUT_SAMPLES + OUTPUT_SAMPLES * steps
    wave = torch.zeros(num, n_total)
    state = None
    t0 = 0
    if primer is not None and primer_steps > 0:
        primer_steps = min(primer_steps, steps)
        known = INPUT_SAMPLES + OUTPUT_SAMPLES * primer_steps
        wave[:, :known] = torch.as_tensor(np.asarray(primer)[:, :known], dtype=torch.float32)
        # inputs of the primer's steps: samples [10t, 10t+20)
        inputs = wave[:, :known].unfold(1, INPUT_SAMPLES, OUTPUT_SAMPLES)[:, :primer_steps].transpose(0, 1)
        _, state = model.cell(inputs.contiguous(), None)
        t0 = primer_steps
    for t in range(t0, steps):
        x = wave[:, OUTPUT_SAMPLES * t: OUTPUT_SAMPLES * t + INPUT_SAMPLES].unsqueeze(0)
        h, state = model.cell(x, state)
        y = model.head.sample(h[0], generator=generator, temperature=temperature)
        start = INPUT_SAMPLES + OUTPUT_SAMPLES * t
        wave[:, start:start + OUTPUT_SAMPLES] = y
    return wave.numpy()


def to_pcm16(x: np.ndarray) -> np.ndarray:
    """Peak-normalise to -1 dBFS and quantise to int16 (non-finite samples become 0)."""
    x = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    peak = np.abs(x).max() if x.size else 0.0
    if peak > 0:
        x = x / peak * PEAK
    return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)


def write_wav(path: Path, x: np.ndarray, rate: int) -> Path:
    import soundfile as sf

    pcm = to_pcm16(x)
    return atomic_write(path, lambda p: sf.write(str(p), pcm, int(rate), subtype="PCM_16", format="WAV"))


def write_plot(path: Path, x: np.ndarray, rate: int, title: str, primer_seconds: float = 0.0) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 5), layout="constrained")
    ax_w, ax_s = fig.subplots(2, 1, sharex=True)
    t = np.arange(len(x)) / rate
    ax_w.plot(t, x, linewidth=0.5, color="tab:blue")
    ax_w.set_ylabel("amplitude (normalised)")
    ax_w.set_title(title)
    nfft = 256 if len(x) >= 256 else max(16, 2 ** int(np.log2(max(len(x), 16))))
    ax_s.specgram(x, NFFT=nfft, Fs=rate, noverlap=nfft // 2, cmap="magma")
    ax_s.set_ylabel("frequency (Hz)")
    ax_s.set_xlabel("time (s)")
    if primer_seconds > 0:
        for ax in (ax_w, ax_s):
            ax.axvspan(0, primer_seconds, color="grey", alpha=0.25, label="primer")
        ax_w.legend(loc="upper right")
    return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=100))


def sample_run(run_dir, out_dir, *, num: int = 1, length: int | None = None, temperature: float = 1.0,
               seed: int = 0, primer: bool = False) -> list[Path]:
    """Write ``num`` generated waveforms (WAV + PNG) of ``length`` steps (default: 2 s) into ``out_dir``."""
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ConfigError(f"num={num!r} is invalid: expected an integer >= 1")
    if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 1):
        raise ConfigError(f"length={length!r} is invalid: expected an integer >= 1 (steps of 10 samples)")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"temperature={temperature!r} is invalid: expected a positive finite number")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ConfigError(f"seed={seed!r} is invalid: expected an integer from 0 to 2**63 - 1")
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    cfg = load_config(run_dir)
    if cfg.dataset.get("task") != "speech":
        raise RnnbenchError(f"{run_dir}: task {cfg.dataset.get('task')!r} is not speech")
    if primer or cfg.dataset.get("sample_rate") is None:
        from ..data import load_dataset

        corpus = load_dataset(cfg.dataset, cfg.get("data_root"))
    else:
        corpus = speech_corpus_stub(cfg.dataset)
    _, model = load_model(run_dir, corpus=corpus)
    rate = int(corpus.sample_rate)
    steps = int(length) if length is not None else int(DEFAULT_SECONDS * rate) // OUTPUT_SAMPLES
    from ..memory import check_fits

    # the waveforms (float32), their float64 copy for the WAV and the picture's spectrogram
    check_fits(num * (INPUT_SAMPLES + OUTPUT_SAMPLES * steps) * 4 * 6,
               f"{num} sample(s) of {steps:,} steps (--num {num} --length {steps})", "ask for fewer or shorter samples")
    gen = torch.Generator().manual_seed(int(seed))

    primer_wave, primer_steps, primer_names = None, 0, []
    if primer:
        test = corpus["test"] or corpus["valid"] or corpus["train"]
        rng = np.random.default_rng(int(seed))
        picks = rng.choice(len(test), size=num, replace=len(test) < num)
        seqs = [test[i] for i in picks]
        primer_steps = max(1, min(steps // 2, min(len(s[0]) for s in seqs)))
        primer_wave = np.stack([unframe(s[0][:primer_steps], s[1][:primer_steps]) for s in seqs])
        split = "test" if corpus["test"] else "valid" if corpus["valid"] else "train"
        names = corpus.utterances.get(split, []) if hasattr(corpus, "utterances") else []
        # sequences and utterances coincide unless utterances were chunked
        primer_names = [names[i] if len(names) == len(test) else f"{split}[{i}]" for i in picks]

    waves = generate(model, steps, num, temperature, gen, primer_wave, primer_steps)
    paths: list[Path] = []
    cell = cfg.cell.name
    for i, x in enumerate(waves):
        # (named like music's samples: the temperature is in the name, so two temperatures never overwrite)
        stem = f"sample_T{temperature:g}_seed{seed}_{i:02d}" + ("_primed" if primer else "")
        title = (f"{cfg.dataset.name} / {cell} ({int(cfg.cell.units)} units): {steps} steps, "
                 f"T={temperature:g}, seed {seed}" + (f", primer {primer_names[i]}" if primer else ""))
        paths.append(write_wav(out_dir / f"{stem}.wav", x, rate))  # (not with_suffix: "T0.8" holds a dot)
        paths.append(write_plot(out_dir / f"{stem}.png", x, rate, title,
                                (INPUT_SAMPLES + OUTPUT_SAMPLES * primer_steps) / rate if primer else 0.0))
    return paths
