import os

import pytest

from rnnbench.fileio import atomic_write, atomic_write_json, atomic_write_text


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")

    def broken(p):
        p.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_files_get_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        path = atomic_write_json(tmp_path / "s.json", {"a": 1})
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644
    assert path.read_text() == '{\n  "a": 1\n}\n'


# --------------------------------------------------------------------------- faults

import errno
import json
import subprocess
import sys
from pathlib import Path

from rnnbench.errors import RunFileError, WriteError
from rnnbench.fileio import (FolderLock, atomic_torch_save, atomic_write_bytes, load_npz, read_json, read_torch,
                             replace_with_copy)


def _enospc_after(monkeypatch, keep_bytes: int):
    """Writes stop with ENOSPC after ``keep_bytes`` bytes (as a full disk does)."""
    real = Path.write_bytes

    def full(self, data):
        real(self, bytes(data)[:keep_bytes])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_bytes", full)


def test_a_full_disk_names_the_file_and_keeps_the_old_version(tmp_path, monkeypatch):
    target = tmp_path / "last.pt"
    atomic_torch_save(target, {"epoch": 1})
    _enospc_after(monkeypatch, 10)
    with pytest.raises(WriteError) as info:
        atomic_torch_save(target, {"epoch": 2, "big": list(range(1000))}, keep_previous="last.prev.pt")
    msg = str(info.value)
    assert str(target) in msg and "No space left on device" in msg and ".tmp" not in msg
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert read_torch(target) == {"epoch": 1}  # the old version, intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary left, no half previous


def test_keep_previous_keeps_the_replaced_version(tmp_path):
    target = tmp_path / "last.pt"
    atomic_write_bytes(target, b"one", keep_previous="last.prev.pt")
    assert not (tmp_path / "last.prev.pt").exists()
    atomic_write_bytes(target, b"two", keep_previous="last.prev.pt")
    assert target.read_bytes() == b"two" and (tmp_path / "last.prev.pt").read_bytes() == b"one"
    atomic_write_bytes(target, b"three", keep_previous="last.prev.pt")
    assert target.read_bytes() == b"three" and (tmp_path / "last.prev.pt").read_bytes() == b"two"
    assert not os.path.samefile(target, tmp_path / "last.prev.pt")
    replace_with_copy(tmp_path / "last.prev.pt", target, link=False)
    assert target.read_bytes() == b"two" and not os.path.samefile(target, tmp_path / "last.prev.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.prev.pt", "last.pt"]


DAMAGES = {
    "truncated": lambda good: good[: len(good) // 2],
    "random": lambda good: os.urandom(max(64, len(good))),
    "empty": lambda good: b"",
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_files_are_named_on_read(tmp_path, damage):
    import numpy as np

    j, t, z = tmp_path / "s.json", tmp_path / "c.pt", tmp_path / "a.npz"
    j.write_text(json.dumps({"status": "finished", "values": list(range(50))}))
    atomic_torch_save(t, {"model": {"w": __import__("torch").zeros(100)}})
    np.savez(z, a=np.arange(1000), b=np.ones((10, 10)))
    for path, read in ((j, read_json), (t, read_torch), (z, load_npz)):
        path.write_bytes(DAMAGES[damage](path.read_bytes()))
        with pytest.raises(RunFileError) as info:
            read(path, remedy="do this")
        assert str(path) in str(info.value) and "damaged" in str(info.value) and "do this" in str(info.value)
        assert info.value.path == str(path)


def test_folder_lock_is_exclusive_and_released_when_its_holder_dies(tmp_path):
    a, b = FolderLock(tmp_path / "run"), FolderLock(tmp_path / "run")
    assert a.acquire() and not b.acquire()
    assert f"pid {os.getpid()}" in b.holder()
    a.release()
    assert b.acquire()
    b.release()
    # a holder killed with kill -9 leaves no lock behind
    code = ("import sys, time; from rnnbench.fileio import FolderLock; l = FolderLock(sys.argv[1]); "
            "assert l.acquire(); print('held', flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        assert not a.acquire() and f"pid {p.pid}" in a.holder()
    finally:
        p.kill()
        p.wait()
    assert a.acquire()
    a.release()


def test_a_lock_file_removed_meanwhile_is_not_shared(tmp_path):
    """A process that opened the lock file just before it was removed must not end up holding a
    lock on the removed file while another holds the new one."""
    a = FolderLock(tmp_path)
    assert a.acquire()
    stale = os.open(a.path, os.O_RDWR)
    a.path.unlink()
    a.release()
    import fcntl

    fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)  # (someone holds the removed file)
    b = FolderLock(tmp_path)
    assert b.acquire() and os.path.samestat(os.fstat(b._fd), os.stat(b.path))
    b.release()
    os.close(stale)


def test_keeping_the_previous_version_after_a_killed_write_leaves_no_temporary(tmp_path):
    """A write killed after last.pt was linked to last.prev.pt and before the new last.pt was renamed
    in leaves the two names on one file; the next write must not leave a temporary behind (a rename
    of two links of one file does nothing)."""
    import os

    from rnnbench.fileio import atomic_write_bytes

    last, prev = tmp_path / "last.pt", tmp_path / "last.prev.pt"
    last.write_text("epoch 3")
    os.link(last, prev)  # the state such a kill leaves
    atomic_write_bytes(last, b"epoch 4", keep_previous="last.prev.pt")
    assert last.read_text() == "epoch 4" and prev.read_text() == "epoch 3"
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_small_checkpoint_that_runs_out_of_memory_is_named_as_damaged(tmp_path, monkeypatch):
    """Random bytes can announce a tensor of any size (torch.load then raises MemoryError): a file
    far smaller than the memory left is damaged, named in one line; a file too large for what is
    left may be sound, and the MemoryError goes on."""
    import torch

    import rnnbench.memory as memory
    from rnnbench.errors import RunFileError
    from rnnbench.fileio import read_torch

    path = tmp_path / "last.pt"
    path.write_bytes(b"\x80\x02garbled" * 100)

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(torch, "load", no_memory)
    monkeypatch.setattr(memory, "available_bytes", lambda: (1 << 30, "MemAvailable"))
    with pytest.raises(RunFileError, match=r"last.pt.*damaged or not a checkpoint \(its 900 bytes announce"):
        read_torch(path)
    monkeypatch.setattr(memory, "available_bytes", lambda: (1000, "MemAvailable"))
    with pytest.raises(MemoryError):
        read_torch(path)
