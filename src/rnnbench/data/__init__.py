"""Corpora and batches.  The training loop only reads what this package returns.

A data source registers a builder with :func:`register_dataset_kind`; ``dataset.kind`` in the
config picks it, and :func:`load_dataset` turns a ``dataset`` config into a :class:`Corpus`.
Every corpus lists the source files it left out in ``Corpus.skipped`` (``[{"file", "reason"}]``).
Importing the package registers the config resolver ``${rnnbench.folder_name:<kind>}`` (the
default ``dataset.name`` of folder datasets).

Modules, one job each:

============  ================================================================================
``corpus``    the :class:`Corpus` every source hands to the trainer; dataset kinds; group splits
``sources``   where corpora live: data roots, the download cache, public homes, checksums
``music``     the four piano-roll benchmarks (``.mat`` / ``.pickle``)
``midi``      Standard MIDI File bytes to note events, paired into notes (damaged files refused)
``rolls``     scores to notes to piano rolls (frames, transposition), and rolls back to MIDI
``scores``    ``dataset.kind=scores``: corpora of score files, read, cached, deduplicated, split
``audio``     audio files to mono samples through soundfile (damaged files refused)
``framing``   resampling, per-utterance normalisation, framing (read 20 samples, predict 10)
``speech``    the speech corpora (``fsdd``, ``yesno``, ``audio_folder``, ``torchaudio``), their splits
``batching``  padded, masked, time-major batches
============  ================================================================================
"""

from .batching import Batch, batch_indices, iterate, make_batch, padding_waste
from .corpus import (DATASET_KINDS, SPLITS, Corpus, folder_dataset_name, group_keys, load_dataset, log_skipped,
                     register_dataset_kind, seq_len, split_groups)
from .music import MUSIC_DATASETS, N_KEYS, MusicCorpus, load_mat, load_music, load_pickle, notes_to_roll, roll_to_notes
from .sources import ENV_DATA, MUSIC_FILES, RemoteFile, locate, sha256_of

# Importing these registers their dataset kinds; music21, soundfile and torchaudio load lazily.
from . import scores  # noqa: E402,F401  dataset.kind=scores
from . import speech  # noqa: E402,F401  dataset.kind=fsdd, yesno, audio_folder, torchaudio

__all__ = [
    "Batch", "batch_indices", "iterate", "make_batch", "padding_waste",
    "DATASET_KINDS", "SPLITS", "Corpus", "load_dataset", "register_dataset_kind", "seq_len",
    "folder_dataset_name", "group_keys", "log_skipped", "split_groups",
    "MUSIC_DATASETS", "N_KEYS", "MusicCorpus", "load_mat", "load_music", "load_pickle",
    "notes_to_roll", "roll_to_notes", "ENV_DATA", "MUSIC_FILES", "RemoteFile", "locate", "sha256_of",
]
