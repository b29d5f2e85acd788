"""Drawing samples from trained models, one module per task (``music``, ``speech``).

Each task module offers::

    sample_run(run_dir: Path, out_dir: Path, *, num: int, length: int, temperature: float,
               seed: int, primer: bool) -> list[Path]

which writes its files (MIDI and piano-roll pictures, or WAV and waveform/spectrogram plots)
into ``out_dir`` and returns their paths.  ``rnnbench-sample RUN_DIR`` picks the module from
the run's task.
"""
