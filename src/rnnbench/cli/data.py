"""``rnnbench-data``: fetch, verify and describe the corpora."""

from __future__ import annotations

import sys
from pathlib import Path

from ..data.music import MUSIC_DATASETS, load_music
from ..data.sources import MUSIC_FILES, check_root, locate
from ..data.speech import SPEECH_DATASETS
from ..errors import RnnbenchError
from .helpfmt import HelpFormatter, parser


def _load_speech(name: str, root):
    """A speech corpus as its ``conf/dataset/<name>.yaml`` describes it (framing, split, rate)."""
    from omegaconf import OmegaConf

    from ..data import load_dataset
    from . import conf_dir

    return load_dataset(OmegaConf.load(Path(conf_dir()) / "dataset" / f"{name}.yaml"), root)


def _is_scores(name: str) -> bool:
    """Whether ``conf/dataset/<name>.yaml`` builds its corpus from scores (``kind: scores``)."""
    from omegaconf import OmegaConf

    from . import conf_dir

    path = Path(conf_dir()) / "dataset" / f"{name}.yaml"
    return name not in MUSIC_DATASETS and path.is_file() and OmegaConf.load(path).get("kind") == "scores"


def _load_music(name: str, args):
    """A benchmark by name, or a score dataset (``chorales``, ``folk``) as its config describes it."""
    if _is_scores(name):
        corpus = _load_speech(name, args.root)  # (the loader reads any conf/dataset/<name>.yaml)
        print(f"# {name}: {len(corpus.skipped)} score file(s) skipped; cache {corpus.cache_path}", file=sys.stderr)
        return corpus
    if name in MUSIC_FILES:  # looked up here so that the error names --root when it was given
        path = locate(MUSIC_FILES[name][args.format], root=args.root, download_missing=not args.no_download,
                      root_setting="--root" if args.root is not None else None)
        return load_music(name, fmt=args.format, path=path)
    return load_music(name, root=args.root, fmt=args.format, download=not args.no_download)


def _speech_stats(names, args) -> None:
    print(f"{'dataset':<11} {'split':<6} {'utterances':>10} {'sequences':>9} {'steps':>9} {'seconds':>8} "
          f"{'min_len':>7} {'max_len':>7}")
    for name in names:
        corpus = _load_speech(name, args.root)
        print(f"# {name}: {corpus.source} ({corpus.sample_rate} Hz, 20 samples in, 10 out per step; "
              f"{len(corpus.skipped)} file(s) skipped)", file=sys.stderr)
        for r in corpus.stats():
            print(f"{r['dataset']:<11} {r['split']:<6} {r['utterances']:>10,} {r['sequences']:>9,} {r['frames']:>9,} "
                  f"{r['seconds']:>8.1f} {r['min_len']:>7} {r['max_len']:>7}")


def _stats(args) -> int:
    speech = [n for n in args.datasets if n in SPEECH_DATASETS]
    if speech:
        _speech_stats(speech, args)
        if len(speech) == len(args.datasets):
            return 0
    rows = []
    for name in [n for n in args.datasets if n not in SPEECH_DATASETS] or MUSIC_DATASETS:
        corpus = _load_music(name, args)
        rows.extend(corpus.stats())
        print(f"# {name}: {corpus.source}", file=sys.stderr)
    header = f"{'dataset':<11} {'split':<6} {'sequences':>9} {'frames':>9} {'notes/frame':>11} {'min_len':>7} {'max_len':>7}"
    print(header)
    for r in rows:
        print(f"{r['dataset']:<11} {r['split']:<6} {r['sequences']:>9,} {r['frames']:>9,} "
              f"{r['notes_per_frame']:>11.3f} {r['min_len']:>7} {r['max_len']:>7}")
    return 0


DESCRIPTION = """\
Find, verify and describe the corpora.

A corpus is looked up under --root, then $RNNBENCH_DATA, then the download
cache (data/ in the working directory, or $RNNBENCH_CACHE); each root has the
layout of the reference copy (polyphonic/JSB_Chorales.mat,
speech/fsdd/recordings, speech/yesno/waves_yesno).  A root that does not exist
is an error.  A music benchmark found nowhere is downloaded from its public
home into the cache and checked against its sha256; speech corpora are never
downloaded.  Score datasets (chorales, folk) are built from the
scores music21 ships and cached under the cache's scores/ folder."""

EPILOG = """\
examples:
  rnnbench-data stats                           the four music benchmarks
  rnnbench-data stats chorales                  build (once) and describe the chorale rolls
  rnnbench-data fetch jsb --no-download         is JSB Chorales here, and intact?
  rnnbench-data stats fsdd yesno --root /data   the speech corpora under /data"""


def main(argv: list[str] | None = None) -> int:
    p = parser("rnnbench-data", DESCRIPTION, EPILOG)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    datasets = ", ".join(MUSIC_DATASETS + SPEECH_DATASETS)
    for cmd, help_ in (("stats", "print sequences, frames and notes per frame (or seconds) of each split"),
                       ("fetch", "find (or download) and verify each corpus")):
        s = sub.add_parser(cmd, help=help_, description=help_[0].upper() + help_[1:] + ".",
                           formatter_class=HelpFormatter)
        s.add_argument("datasets", nargs="*", metavar="DATASET",
                       help=f"any of {datasets}, or a score dataset of conf/dataset (chorales, folk) "
                            f"(default: the {len(MUSIC_DATASETS)} music benchmarks)")
        s.add_argument("--root", default=None, metavar="DIR",
                       help="data root, absolute or from the working directory (default: $RNNBENCH_DATA, "
                            "then the cache)")
        s.add_argument("--format", default="mat", choices=["mat", "pickle"],
                       help="file format of the music benchmarks: .mat, or Boulanger-Lewandowski's pickles")
        s.add_argument("--no-download", action="store_true", help="fail instead of downloading a missing file")
    args = p.parse_args(argv)
    try:
        if args.root is not None:  # a root that points nowhere is an error naming --root
            args.root = str(check_root(args.root, "--root"))
        if args.cmd == "stats":
            return _stats(args)
        for name in args.datasets or MUSIC_DATASETS:
            if name in SPEECH_DATASETS:  # not downloaded: found under the data root, or an error saying where
                corpus = _load_speech(name, args.root)
            else:
                corpus = _load_music(name, args)
            print(f"{name}: ok  {corpus.source}")
        return 0
    except RnnbenchError as exc:
        print(f"rnnbench-data: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
