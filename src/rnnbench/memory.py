"""How much memory this process may still take, and refusing what will not fit before allocating it.

:func:`available_bytes` is the smallest of the limits that apply here: the kernel's
``MemAvailable`` (``/proc/meminfo``: free memory plus what it can reclaim), the memory left under
the control group's limit (cgroup v2 ``memory.max`` - ``memory.current``, or v1
``memory.limit_in_bytes`` - ``memory.usage_in_bytes``; what a container or a SLURM job is
allowed), and the address-space limit (``ulimit -v``).  :func:`check_fits` compares an
estimate with it and raises :class:`~rnnbench.errors.ConfigError` naming both when the estimate
does not fit, so a model or a sample that would exhaust the machine is refused in one line
instead of growing until the kernel kills the process.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

# Refuse when the estimate exceeds this share of what is available: the estimate leaves out
# PyTorch's own workspace, the data set and Python's objects.
HEADROOM = 0.9


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except (OSError, ValueError):
        return None
    if not text or text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return value if 0 < value < 2**62 else None  # (v1 writes a huge number for "no limit")


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_left() -> int | None:
    """Memory left under this process's control group limit, or None when there is none."""
    root = Path(os.environ.get("RNNBENCH_CGROUP_ROOT", "/sys/fs/cgroup"))
    rel, rel_v1 = "", ""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            parts = line.split(":", 2)
            if len(parts) == 3 and parts[0] == "0":  # cgroup v2: 0::/path
                rel = parts[2].lstrip("/")
            elif len(parts) == 3 and "memory" in parts[1].split(","):  # cgroup v1: N:memory:/path
                rel_v1 = parts[2].lstrip("/")
    except OSError:
        pass
    lefts = []
    for folder in {root / rel, root}:  # (inside a container the group is usually mounted at the root)
        limit = _read_int(folder / "memory.max")
        if limit is not None:
            used = _read_int(folder / "memory.current") or 0
            lefts.append(max(0, limit - used))
    for v1 in {root / "memory" / rel_v1, root / "memory"}:
        limit = _read_int(v1 / "memory.limit_in_bytes")
        if limit is not None:
            lefts.append(max(0, limit - (_read_int(v1 / "memory.usage_in_bytes") or 0)))
    return min(lefts) if lefts else None


def _address_space_left() -> int | None:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return None
    try:  # what this process already maps counts against it
        with open("/proc/self/statm") as f:
            mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        mapped = 0
    return max(0, soft - mapped)


def available_bytes() -> tuple[int | None, str]:
    """The memory this process can still take, and where that number comes from; ``(None, "")``
    where nothing can be read (not Linux): then nothing is refused."""
    found = {"MemAvailable": _meminfo_available(), "cgroup limit": _cgroup_left(), "ulimit -v": _address_space_left()}
    found = {k: v for k, v in found.items() if v is not None}
    if not found:
        return None, ""
    source = min(found, key=found.get)
    return found[source], source


def fmt_bytes(n: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def check_fits(estimate: float, what: str, remedy: str) -> None:
    """:class:`ConfigError` when ``estimate`` bytes exceed :data:`HEADROOM` of what is available:
    ``what`` names the thing and the value that sized it, ``remedy`` what to change."""
    avail, source = available_bytes()
    if avail is None or estimate <= HEADROOM * avail:
        return
    raise ConfigError(f"{what} needs an estimated {fmt_bytes(estimate)} of memory; {fmt_bytes(avail)} is available "
                      f"({source}); {remedy}")
