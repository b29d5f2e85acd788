"""Files that are never half-written, files that are checked when read back, and a lock per folder.

* Atomic writes: a file is either absent, its old version, or the complete new one.  The new
  version is written to a temporary name in the same folder, flushed to disk (``fsync``) and
  renamed over the old one, so ``kill -9``, a full disk or a crash at any moment leaves the old
  version intact.  ``keep_previous`` also keeps the old version under a second name until the
  new one is complete (``last.pt`` -> ``last.prev.pt``).  An operating-system error (``No space
  left on device``, ...) becomes a :class:`~rnnbench.errors.WriteError` naming the file.
* Checked reads (:func:`read_json`, :func:`read_torch`, :func:`load_npz`): a truncated, empty or
  garbled file raises :class:`~rnnbench.errors.RunFileError` naming it, never a bare
  ``JSONDecodeError``/``EOFError``/``PytorchStreamReader`` error.
* :class:`FolderLock`: one process at a time in a folder (``fcntl.flock`` on a file in it, which
  the operating system releases when its holder dies, ``kill -9`` included).
"""

from __future__ import annotations

import errno
import io
import json
import os
import socket
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Callable

from .errors import RunFileError, WriteError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    """Flush ``path``'s data to the disk, so that a write error (a full disk) shows up here, before
    the rename, and not later when nobody is listening.  (About 6 ms a file on the project's
    machine, some 1% of a stacked music epoch; ``RNNBENCH_FSYNC=0`` turns it off, e.g. on a slow
    network file system.)"""
    if os.environ.get("RNNBENCH_FSYNC", "1").strip().lower() in ("0", "false", "no", "off"):
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):  # (where fsync is not supported)
            raise
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], keep_previous: str | None = None) -> Path:
    """Call ``write(tmp_path)``, flush it to disk, then rename the temporary file onto ``path``.

    ``keep_previous``: a file name in the same folder under which the version of ``path`` being
    replaced is kept (a hard link, so no copy; replaced in turn by the next write).  An
    :class:`OSError` (disk full, ...) becomes a :class:`WriteError` naming ``path``; the
    previous version stays intact either way.
    """
    path = Path(path)
    tmp_path: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        write(tmp_path)
        _fsync(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        if keep_previous and path.is_file():
            replace_with_copy(path, path.parent / keep_previous)
        os.replace(tmp_path, path)
    except OSError as exc:
        if tmp_path is not None:
            _unlink_quietly(tmp_path)
        raise WriteError(_named(exc, path), exc) from exc
    except BaseException:
        if tmp_path is not None:
            _unlink_quietly(tmp_path)
        raise
    return path


def _named(exc: OSError, path: Path) -> Path:
    """The file to name in the error: ``path`` rather than a temporary file the error may name (but
    the folder, if creating it failed)."""
    if not exc.filename:
        return path
    name = Path(os.fsdecode(exc.filename))
    return path if name.name.endswith(".tmp") and name.name.startswith(".") else name


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def replace_with_copy(path: str | os.PathLike, copy: str | os.PathLike, link: bool = True) -> None:
    """``copy`` becomes the current version of ``path``, atomically: a hard link (``link``; a copy
    where the file system has none) or a copy under a temporary name, renamed onto ``copy``.
    (rnnbench never writes into an existing file, so two names sharing one file is safe; a copy
    keeps them apart when one of them stays in place for long.)"""
    path, copy = Path(path), Path(copy)
    tmp: Path | None = None
    try:
        if copy.exists() and os.path.samefile(path, copy):
            # already the current version (a write killed after linking and before its rename): renaming a
            # second link of the same file onto it would do nothing and leave the temporary behind
            return
        fd, name = tempfile.mkstemp(prefix=f".{copy.name}.", suffix=".tmp", dir=copy.parent)
        os.close(fd)
        tmp = Path(name)
        tmp.unlink()
        try:
            if not link:
                raise OSError("copy")
            os.link(path, tmp)
        except OSError:  # no hard links here: copy
            import shutil

            shutil.copy2(path, tmp)
            _fsync(tmp)
        os.replace(tmp, copy)
        if tmp.exists():  # (rename of two links of one file: POSIX does nothing)
            _unlink_quietly(tmp)
    except OSError as exc:
        if tmp is not None:
            _unlink_quietly(tmp)
        raise WriteError(copy, exc) from exc
    except BaseException:
        if tmp is not None:
            _unlink_quietly(tmp)
        raise


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete what an :func:`atomic_write` killed mid-write (``kill -9``) left in ``folder``: its
    temporary files, never renamed.  Call it only where no other process is writing (a run
    directory's lock holder)."""
    gone = []
    for tmp in Path(folder).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
        gone.append(tmp)
    return gone


def atomic_write_bytes(path: str | os.PathLike, data: bytes, keep_previous: str | None = None) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data), keep_previous)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_torch_save(path: str | os.PathLike, obj: Any, keep_previous: str | None = None) -> Path:
    """``torch.save`` made atomic.  The checkpoint is serialised in memory and written with plain
    file writes, so a full disk is reported as such (``torch.save`` onto a full disk only says
    ``unexpected pos ...``)."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue(), keep_previous)


# --------------------------------------------------------------------------- checked reads

def _describe(exc: BaseException) -> str:
    """``Type: first sentence of the message`` (torch's errors go on for a paragraph)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text.split(". ")[0].rstrip(".")[:160]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def read_text(path: str | os.PathLike, remedy: str | None = None) -> str:
    """A UTF-8 text file; :class:`RunFileError` when it cannot be read or is not text."""
    path = Path(path)
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RunFileError(path, f"damaged (not UTF-8 text: {exc.reason} at byte {exc.start})", remedy) from exc
    except OSError as exc:
        raise RunFileError(path, f"unreadable ({exc.strerror or exc})", remedy) from exc


def read_json(path: str | os.PathLike, remedy: str | None = None) -> Any:
    """A JSON file; :class:`RunFileError` naming it when it is empty, truncated or not JSON."""
    text = read_text(path, remedy)
    if not text.strip():
        raise RunFileError(path, "damaged (empty file)", remedy)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise RunFileError(path, f"damaged (not valid JSON: {_describe(exc)})", remedy) from exc


def read_torch(path: str | os.PathLike, map_location=None, remedy: str | None = None) -> Any:
    """``torch.load`` of a file this project wrote; :class:`RunFileError` naming it when it is
    empty, truncated, or not a checkpoint."""
    import torch

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise RunFileError(path, f"unreadable ({exc.strerror or exc})", remedy) from exc
    if size == 0:
        raise RunFileError(path, "damaged (empty file)", remedy)
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except MemoryError as exc:
        # garbled bytes can announce a tensor of any size: a file far smaller than the memory left
        # that cannot be loaded in it is damaged; a file as large as the memory left may be sound
        from .memory import available_bytes

        left, _ = available_bytes()
        if left is not None and size * 4 < left:
            raise RunFileError(path, f"damaged or not a checkpoint (its {size:,} bytes announce more than the "
                                     f"memory left)", remedy) from exc
        raise
    except Exception as exc:  # (torch raises RuntimeError, UnpicklingError, EOFError, KeyError, ...)
        raise RunFileError(path, f"damaged or not a checkpoint ({_describe(exc)})", remedy) from exc


def load_npz(path: str | os.PathLike, remedy: str | None = None) -> dict:
    """Every array of an ``.npz`` file, read in full (so a damaged member shows up here);
    :class:`RunFileError` naming the file when it is empty, truncated or garbled."""
    import numpy as np

    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except MemoryError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, RuntimeError) as exc:
        raise RunFileError(path, f"damaged or not an .npz file ({_describe(exc)})", remedy) from exc
    except Exception as exc:  # (zlib.error on a garbled member, ...)
        raise RunFileError(path, f"damaged ({_describe(exc)})", remedy) from exc


# --------------------------------------------------------------------------- lock

try:
    import fcntl as _fcntl
except ImportError:  # not POSIX
    _fcntl = None


class FolderLock:
    """An exclusive lock on a folder, held by one process at a time: ``flock`` on ``<folder>/.lock``
    (on Windows ``msvcrt.locking``).  The operating system releases it when its holder exits or is
    killed, so a lock is never left behind.  The holder writes its pid, host and start time into
    the file (:meth:`holder` reads them for messages)."""

    NAME = ".lock"

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / self.NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        """Take the lock if it is free (never waits); ``False`` if another holder has it."""
        if self._fd is not None:
            return True
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            while True:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
                if not _try_lock(fd):
                    os.close(fd)
                    return False
                try:  # the file locked may have been removed meanwhile (discard_unstarted): lock the new one
                    same = os.path.samestat(os.fstat(fd), os.stat(self.path))
                except FileNotFoundError:
                    same = False
                if same:
                    break
                os.close(fd)
        except OSError as exc:
            raise WriteError(self.path, exc) from exc
        self._fd = fd
        try:  # (best effort: a full disk must not stop a run from resuming)
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
                     .encode())
        except OSError:
            pass
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        os.close(fd)  # (closing the descriptor releases the lock)

    def holder(self) -> str:
        """Who holds the lock, as its holder wrote it (``"another process"`` when unknown)."""
        try:
            text = self.path.read_text(errors="replace").strip()
        except OSError:
            text = ""
        return text or "another process"

    def __enter__(self) -> "FolderLock":
        if not self.acquire():
            from .errors import RunBusyError

            raise RunBusyError(f"{self.folder} is in use by {self.holder()}")
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _try_lock(fd: int) -> bool:
    if _fcntl is not None:
        try:
            _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
    try:
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return True
    except ImportError:  # neither: no locking
        return True
    except OSError:
        return False
