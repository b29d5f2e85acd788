"""Errors that name what was wrong and what to do about it."""

from __future__ import annotations

import errno as _errno
import os


class RnnbenchError(Exception):
    """Base class of every error rnnbench raises on purpose."""


class DataError(RnnbenchError):
    """A data file is missing, corrupt, truncated or of the wrong format."""


class ConfigError(RnnbenchError, ValueError):
    """A configuration value is invalid."""


class RunFileError(RnnbenchError):
    """A file of a run directory (``last.pt``, ``best.pt``, ``summary.json``, ``metrics.csv``,
    ``config.yaml``, ``.hydra/*.yaml``, ...) or another stored file is damaged or unreadable.

    ``path`` is the file, ``reason`` what is wrong with it; the message adds what to do."""

    def __init__(self, path: str | os.PathLike, reason: str, remedy: str | None = None):
        self.path, self.reason, self.remedy = str(path), reason, remedy
        super().__init__(f"{qname(path)}: {reason}" + (f"; {remedy}" if remedy else ""))

    def __reduce__(self):  # (picklable, e.g. back from a worker process)
        return type(self), (self.path, self.reason, self.remedy)


class WriteError(RnnbenchError):
    """Writing a file failed (disk full, read-only file system, permissions, ...).

    Files are written to a temporary name and renamed, so the previous version of ``path``
    (if any) is intact.  ``errno`` is the operating system's error number (``errno.ENOSPC``)."""

    def __init__(self, path: str | os.PathLike, exc: OSError):
        self.path, self.errno, self.strerror = str(path), exc.errno, exc.strerror or str(exc)
        what = self.strerror
        if exc.errno in (_errno.ENOSPC, getattr(_errno, "EDQUOT", -1)):
            todo = "free some space"
        elif exc.errno in (_errno.EACCES, _errno.EPERM, _errno.EROFS):
            todo = "make it writable"
        else:
            todo = "fix the cause"
        super().__init__(f"cannot write {qname(path)}: {what}.  Nothing already written was lost (the file's previous "
                         f"version, if any, is intact): {todo} and run the same command again")

    def __reduce__(self):
        return type(self), (self.path, OSError(self.errno, self.strerror))


class StopRequested(RnnbenchError):
    """Training stopped, or did not start, because the stop file (``RNNBENCH_STOP_FILE``) exists.

    ``epoch`` is the epoch after which it stopped (every run of the stack has its ``last.pt`` of
    that epoch), or None when nothing was trained."""

    def __init__(self, path: str | os.PathLike, epoch: int | None = None):
        self.path, self.epoch = str(path), epoch
        if epoch is None:
            text = (f"not started: the stop file {qname(path)} exists (RNNBENCH_STOP_FILE); remove it and run the "
                    "same command again to train")
        else:
            text = (f"stopped after epoch {epoch} as the stop file {qname(path)} asks (RNNBENCH_STOP_FILE); every "
                    "run under way has its last.pt: remove the file and run the same command again to resume")
        super().__init__(text)

    def __reduce__(self):
        return type(self), (self.path, self.epoch)


class RunBusyError(RnnbenchError):
    """A run directory is being trained by another process (it holds the directory's lock)."""


def qname(path: str | os.PathLike) -> str:
    """A file name as messages show it: as it is when it is plain, else quoted as Python's
    ``repr`` quotes it (``'a\\nb.wav'``), so that a name holding a newline, a tab, a control or
    other unprintable character (or surrogate-escaped bytes that are not UTF-8) keeps an error
    on one line and says exactly which file it is."""
    s = os.fspath(path)
    if isinstance(s, bytes):
        s = os.fsdecode(s)
    if s.isprintable() and "\\" not in s and s == s.strip():
        return s
    return repr(s)


def single_line(text: str) -> str:
    """``text`` with its line breaks written as ``\\n`` (``\\r``): a message that quotes
    something holding a newline stays one line (names themselves are quoted by :func:`qname`)."""
    return str(text).replace("\r", "\\r").replace("\n", "\\n")
