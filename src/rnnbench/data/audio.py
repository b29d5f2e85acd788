"""Reading audio files (WAV, AIFF, FLAC, ... via soundfile) as mono samples; damaged files refused by name.

:func:`read_audio` reads a file with soundfile, mixes it down to mono (mean of the channels)
and returns float32 samples on soundfile's [-1, 1] scale with the sample rate.  A file that
cannot be used raises :class:`~rnnbench.errors.DataError` naming it and the reason: unreadable,
truncated (a WAV or AIFF header announcing more samples than the file holds, which libsndfile
would read as a shorter recording without a word), no samples, a sample rate outside
:data:`MIN_SAMPLE_RATE`..:data:`MAX_SAMPLE_RATE`, non-finite samples, channels that cancel
out in the mono mix-down, or a damaged sample far outside the recording's own spread
(:data:`SPIKE_RATIO`).  Resampling, normalising and framing are :mod:`rnnbench.data.framing`;
the corpora and their splits are :mod:`rnnbench.data.speech`.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import DataError, qname

AUDIO_EXTENSIONS = ("wav", "flac", "ogg", "aiff", "aif", "au")
# Below this standard deviation (in soundfile's [-1, 1] units; one 16-bit step is 3e-5) a
# recording is digital silence and cannot be normalised.
SILENCE_STD = 1e-7

# A recording whose largest deviation from its median exceeds this many times its spread (the
# largest deviation once the few largest are set aside), with that sample beyond full scale
# (|x| > 1: possible in float files only), holds a damaged sample: normalised, the rest of the
# recording would become almost silence.
SPIKE_RATIO = 1000.0
SPIKE_COUNT = 4  # the spread is measured without the largest max(4, N / 1000) deviations
# Sample rates accepted, of files and of dataset.sample_rate: below 1 kHz no recording of speech
# is plausible (a header that lies), and resampling to or from far outside would take the memory.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1_000, 1_000_000
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _wav_data_check(path: str | os.PathLike) -> None:
    """:class:`DataError` when a RIFF/RIFX WAV (or AIFF) file's header announces more sample bytes than the
    file holds (a file cut short, which libsndfile would read as a shorter recording without a
    word).  A data size of 0 or 0xFFFFFFFF (a stream whose length was never written) and files
    that are not RIFF WAV are left to soundfile."""
    import struct

    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) == 12 and head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
                return _aiff_data_check(f, path)
            if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
                return
            end = "<" if head[:4] == b"RIFF" else ">"
            size = os.fstat(f.fileno()).st_size
            block_align = 0
            pos = 12
            while pos + 8 <= size:
                f.seek(pos)
                cid, clen = struct.unpack(end + "4sI", f.read(8))
                if cid == b"fmt " and clen >= 14:
                    fmt = f.read(14)
                    if len(fmt) < 14:
                        return  # (a header cut short: soundfile names it)
                    block_align = struct.unpack(end + "H", fmt[12:14])[0]
                if cid == b"data":
                    held = size - pos - 8
                    if clen not in (0, 0xFFFFFFFF) and clen > held:
                        frames = (f" ({clen // block_align:,} sample frames; it holds {held // block_align:,})"
                                  if block_align else "")
                        raise DataError(f"{qname(path)}: truncated (its header announces {clen:,} bytes of samples, "
                                        f"the file holds {held:,}{frames})")
                    return
                pos += 8 + clen + (clen & 1)
    except (OSError, struct.error):
        return  # (soundfile names an unreadable file)


def _aiff_data_check(f, path) -> None:
    """The AIFF/AIFC part of :func:`_wav_data_check`: the COMM chunk's frame count against the
    sample bytes the SSND chunk holds (libsndfile reads a cut AIFF as a shorter recording)."""
    import struct

    size = os.fstat(f.fileno()).st_size
    frames = channels = width = None
    pos = 12
    while pos + 8 <= size:
        f.seek(pos)
        cid, clen = struct.unpack(">4sI", f.read(8))
        if cid == b"COMM":
            comm = f.read(8)
            if len(comm) < 8:
                return
            channels, frames, bits = struct.unpack(">HIH", comm)
            width = (bits + 7) // 8
        elif cid == b"SSND" and frames is not None:
            held = max(0, size - pos - 16)  # (after the chunk header, its offset and block size)
            announced = frames * channels * width
            if announced > held:
                raise DataError(f"{qname(path)}: truncated (its header announces {frames:,} sample frames, "
                                f"{announced:,} bytes; the file holds {held:,} ({held // max(1, channels * width):,} "
                                f"sample frames))")
            return
        pos += 8 + clen + (clen & 1)


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Mono float32 samples (soundfile's [-1, 1] scale) and the sample rate.

    :class:`DataError` naming the file and the reason when it cannot be read, is truncated (a
    WAV header announcing more samples than the file holds), holds no samples, holds non-finite
    samples (NaN, infinite, or beyond float32's range), has channels that cancel out in the mono
    mix-down, or holds a sample far outside its own spread (:data:`SPIKE_RATIO`)."""
    import soundfile as sf

    name = qname(path)
    _wav_data_check(path)
    try:
        data, rate = sf.read(str(path), dtype="float64", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError, ...
        raise DataError(f"{name}: unreadable audio file ({type(exc).__name__}: {' '.join(str(exc).split())})") from exc
    if data.shape[0] == 0:
        raise DataError(f"{name}: audio file holds no samples")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:  # (resampling 1 Hz to 8 kHz would take 8,000 times its size)
        raise DataError(f"{name}: its header announces a sample rate of {rate:,} Hz; expected audio between "
                        f"{MIN_SAMPLE_RATE:,} and {MAX_SAMPLE_RATE:,} Hz")
    finite = np.isfinite(data)
    if not finite.all():
        first = np.argwhere(~finite)[0]
        raise DataError(f"{name}: holds {int((~finite).sum()):,} non-finite sample(s) (NaN or infinite), the first "
                        f"at sample {int(first[0]):,}" + (f" of channel {int(first[1])}" if data.shape[1] > 1 else "")
                        + f" ({data[tuple(first)]!r}); expected finite numbers")
    big = np.abs(data) > _FLOAT32_MAX
    if big.any():
        i = int(np.argwhere(big)[0][0])
        raise DataError(f"{name}: sample {i:,} is {data[np.argwhere(big)[0][0], np.argwhere(big)[0][1]]:.3g}, beyond "
                        f"the float32 range; expected audio samples (soundfile's scale: [-1, 1])")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if data.shape[1] > 1 and not mono.std() > SILENCE_STD and (data.std(axis=0) > SILENCE_STD).any():
        raise DataError(f"{name}: its {data.shape[1]} channels cancel out in the mono mix-down (the mean of the "
                        f"channels is silent although a channel alone is not: channels in opposite phase); "
                        f"expected channels that add up, e.g. keep one channel of the file")
    dev = np.abs(mono - np.median(mono))
    peak_at = int(dev.argmax())
    k = max(SPIKE_COUNT, len(dev) // 1000)  # the spread leaves out the k largest deviations
    if abs(mono[peak_at]) > 1.0 and len(dev) > k:
        spread = float(np.partition(dev, len(dev) - 1 - k)[len(dev) - 1 - k])
        if dev[peak_at] > SPIKE_RATIO * spread:
            raise DataError(f"{name}: sample {peak_at:,} is {mono[peak_at]:.3g}, beyond full scale and "
                            + (f"{dev[peak_at] / spread:.3g} times" if spread > 0 else "infinitely many times")
                            + f" the recording's own spread ({spread:.3g}: the largest |sample - median| after the "
                            f"{k} largest): a damaged sample, next to which normalisation would make the rest of the "
                            f"recording near-silence; expected no sample more than {SPIKE_RATIO:g} times the spread")
    return np.ascontiguousarray(mono, dtype=np.float32), int(rate)


def require_torchaudio(feature: str):
    """The ``torchaudio`` module, or a :class:`DataError` naming the feature that needs it:
    torchaudio is optional (``pip install "rnnbench[audio]"``), needed only to resample and for
    ``dataset=torchaudio``."""
    try:
        import torchaudio
        import torchaudio.datasets  # noqa: F401
        import torchaudio.functional  # noqa: F401
    except ImportError as exc:
        raise DataError(f"{feature} needs torchaudio, which is not installed: pip install torchaudio "
                        f"(on a machine without a GPU, the CPU build: see docs/install.md)") from exc
    except OSError as exc:  # e.g. PyPI's CUDA build of torchaudio beside a CPU build of torch
        import torch

        raise DataError(f"{feature} needs torchaudio, which is installed but does not load beside torch "
                        f"{torch.__version__} ({exc}); install the torchaudio build that matches it "
                        f"(see docs/install.md)") from exc
    return torchaudio
