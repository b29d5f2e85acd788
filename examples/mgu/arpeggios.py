"""A corpus of your own, named by import path: synthetic piano rolls of climbing arpeggios.

``examples/mgu/conf/dataset/arpeggios.yaml`` names the builder (``_target_: arpeggios.build``);
a builder takes the ``dataset`` config and the data root and returns an ``rnnbench.data.Corpus``.
No files, no network: every piece is drawn from ``dataset.seed``.
"""

import numpy as np

from rnnbench.data import Corpus


def build(cfg, data_root=None) -> Corpus:
    rng = np.random.default_rng(int(cfg.get("seed", 0)))

    def piece():
        T, base = int(rng.integers(cfg.min_frames, cfg.max_frames + 1)), int(rng.integers(20, 60))
        roll = np.zeros((T, 88), dtype=np.uint8)
        for t in range(T):
            k = base + (t % 12)
            roll[t, [k, k + 4, k + 7]] = 1  # a major triad climbing one key a step, around an octave
        return roll

    splits = {split: [piece() for _ in range(int(n))] for split, n in cfg.pieces.items()}
    return Corpus(name=cfg.name, splits=splits, task="music")
