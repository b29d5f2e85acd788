"""Corpora and batches.  The training loop only reads what this package returns."""

from .batching import Batch, batch_indices, iterate, make_batch, padding_waste
from .music import MUSIC_DATASETS, N_KEYS, MusicCorpus, load_mat, load_music, load_pickle, notes_to_roll, roll_to_notes
from .sources import ENV_DATA, MUSIC_FILES, RemoteFile, locate, sha256_of

__all__ = [
    "Batch", "batch_indices", "iterate", "make_batch", "padding_waste",
    "MUSIC_DATASETS", "N_KEYS", "MusicCorpus", "load_mat", "load_music", "load_pickle",
    "notes_to_roll", "roll_to_notes", "ENV_DATA", "MUSIC_FILES", "RemoteFile", "locate", "sha256_of",
]
