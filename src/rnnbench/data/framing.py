"""From samples to training items: resampling, per-utterance normalisation, framing (read 20, predict 10).

Framing
    Step ``t`` of an utterance of ``N`` samples reads samples ``[10t, 10t + 20)`` and predicts
    ``[10t + 20, 10t + 30)``; there are ``T = (N - 20) // 10`` steps (:func:`num_steps`), so
    every sample after the first 20 is predicted exactly once, except a tail of fewer than 10
    samples (:func:`frame_signal`, and :func:`unframe` back).  :func:`chunk` cuts an
    utterance's frames into consecutive pieces of at most ``chunk_steps`` steps (no step is
    lost: a piece's first input is real signal, only the recurrent state restarts).

Signal
    :func:`resample` is ``torchaudio.functional.resample`` (band-limited, its default sinc
    filter; torchaudio is optional).  :func:`normalize` is per utterance: ``standard`` subtracts
    the mean and divides by the standard deviation; ``rms`` divides by the root mean square;
    ``peak`` by the largest absolute sample; ``none`` keeps soundfile's [-1, 1] scale; a silent
    signal raises ``ValueError``.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .audio import SILENCE_STD, require_torchaudio

INPUT_SAMPLES = 20  # samples read at each step
OUTPUT_SAMPLES = 10  # samples predicted at each step (and the stride between steps)
NORMALIZATIONS = ("standard", "rms", "peak", "none")


def num_steps(n_samples: int) -> int:
    """Steps of an utterance of ``n_samples`` samples: ``(N - 20) // 10`` (0 when N < 30)."""
    return max(0, (int(n_samples) - INPUT_SAMPLES) // OUTPUT_SAMPLES)


def frame_signal(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``(T, 20)`` = samples ``[10t, 10t+20)`` and targets ``(T, 10)`` = ``[10t+20, 10t+30)``."""
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    T = num_steps(len(x))
    if T == 0:
        return np.zeros((0, INPUT_SAMPLES), np.float32), np.zeros((0, OUTPUT_SAMPLES), np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(x[: INPUT_SAMPLES + OUTPUT_SAMPLES * T],
                                                       INPUT_SAMPLES + OUTPUT_SAMPLES)[::OUTPUT_SAMPLES]
    assert len(windows) == T
    # copies: writable arrays that do not share memory with ``x`` (or with each other)
    return windows[:, :INPUT_SAMPLES].copy(order="C"), windows[:, INPUT_SAMPLES:].copy(order="C")


def unframe(inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The signal back from one utterance's (unchunked) frames: first input, then every target."""
    return np.concatenate([np.asarray(inputs[0]), np.asarray(targets).reshape(-1)])


def chunk(inputs: np.ndarray, targets: np.ndarray, chunk_steps: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Consecutive pieces of at most ``chunk_steps`` steps (all of it when ``None``)."""
    T = len(inputs)
    if T == 0:
        return []
    if not chunk_steps or chunk_steps >= T:
        return [(inputs, targets)]
    return [(inputs[s:s + chunk_steps], targets[s:s + chunk_steps]) for s in range(0, T, chunk_steps)]


def resample(x: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Band-limited resampling (``torchaudio.functional.resample``, its default sinc filter)."""
    if orig_rate == new_rate:
        return x
    import torch

    AF = require_torchaudio(f"resampling {orig_rate} Hz audio to {new_rate} Hz (dataset.resample=true)").functional
    y = AF.resample(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), int(orig_rate), int(new_rate))
    return y.numpy()


def normalize(x: np.ndarray, method: str = "standard") -> np.ndarray:
    """Per-utterance normalisation; raises ``ValueError`` on a silent signal."""
    x = np.asarray(x, dtype=np.float64)
    if not np.isfinite(x).all():  # (float files can hold them; the mixture's targets must be finite)
        raise ValueError(f"{int((~np.isfinite(x)).sum())} non-finite samples (NaN or infinity)")
    if method == "none":
        return x.astype(np.float32)
    std = x.std()
    if not std > SILENCE_STD:
        raise ValueError("silent recording (all samples equal): nothing to normalise")
    if method == "standard":
        y = (x - x.mean()) / std
    elif method == "rms":
        y = x / np.sqrt(np.mean(x * x))
    elif method == "peak":
        y = x / np.abs(x).max()
    else:
        raise ConfigError(f"config value dataset.normalize={method!r} is invalid: expected one of {NORMALIZATIONS}")
    return y.astype(np.float32)
