"""Fill memory before an experiment: page cache (a file on disk) or shmem (a file in /dev/shm).

Page cache pages come from GFP_HIGHUSER_MOVABLE allocations (movable pageblocks) and are
reclaimable; shmem pages are movable too but stay until the file is removed (no swap here).
The file is removed afterwards on every path, which frees its pages at once.
"""

from __future__ import annotations

import os
from pathlib import Path

from gpalloc.units import memparse

from .bpf import check_deadline

FILL_KINDS = ("pagecache", "shmem")
FILL_DIRS = {"pagecache": Path("/var/tmp"), "shmem": Path("/dev/shm")}
FILL_PREFIX = "gpalloc-live-fill-"
MAX_FILL_SHARE = 0.8           # of MemAvailable
DISK_MARGIN = 1 << 30          # free disk space left after a page-cache fill
CHUNK = 1 << 20
RAM_FS = ("tmpfs", "ramfs")


def fill_bytes(level: str, meminfo: dict[str, int]) -> int:
    """Bytes for ``--fill LEVEL``: ``"50%"`` of MemTotal, or a size such as ``"8G"``.

    Refuses more than ``MAX_FILL_SHARE`` of MemAvailable with one line naming the flag.
    """
    text = level.strip()
    if text.endswith("%"):
        try:
            share = float(text[:-1])
        except ValueError:
            raise ValueError(f"--fill: cannot read {level!r}; write e.g. 50% or 8G") from None
        if not 0 < share <= 100:
            raise ValueError(f"--fill: {level!r} must be between 0% and 100% of MemTotal")
        nbytes = int(meminfo["MemTotal"] * 1024 * share / 100)
    else:
        nbytes = memparse(text, "--fill")
    limit = int(meminfo["MemAvailable"] * 1024 * MAX_FILL_SHARE)
    if nbytes > limit:
        raise ValueError(f"--fill {level}: {nbytes >> 20} MiB is more than "
                         f"{MAX_FILL_SHARE:.0%} of MemAvailable ({limit >> 20} MiB)")
    return nbytes


def fstype(path: Path, mounts: str = "/proc/self/mounts") -> str:
    """The file system type of the mount holding ``path`` (longest mount-point prefix)."""
    real = os.path.realpath(path)
    best, kind = "", ""
    with open(mounts, encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            point = fields[1].replace("\\040", " ")
            inside = real == point or real.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):
                best, kind = point, fields[2]
    return kind


def check_fill_dir(kind: str, nbytes: int) -> Path:
    """The folder for a ``kind`` fill, checked: page cache needs a disk, shmem a tmpfs."""
    folder = FILL_DIRS[kind]
    if not folder.is_dir():
        raise ValueError(f"--fill-kind {kind}: {folder} does not exist")
    on_ram = fstype(folder) in RAM_FS
    if kind == "pagecache" and on_ram:
        raise ValueError(f"--fill-kind pagecache: {folder} is on {fstype(folder)}, not a disk")
    if kind == "shmem" and not on_ram:
        raise ValueError(f"--fill-kind shmem: {folder} is not a tmpfs")
    if kind == "pagecache":
        st = os.statvfs(folder)
        free = st.f_bavail * st.f_frsize
        if nbytes + DISK_MARGIN > free:
            raise ValueError(f"--fill: {nbytes >> 20} MiB of page cache needs that much free "
                             f"disk in {folder} (+1 GiB); {free >> 20} MiB free")
    return folder


class Fill:
    """A file of ``nbytes`` zeros written (and, for page cache, fsync'ed), removed on exit."""

    def __init__(self, kind: str, nbytes: int):
        if kind not in FILL_KINDS:
            raise ValueError(f"--fill-kind: {kind!r} is not one of {', '.join(FILL_KINDS)}")
        self.kind, self.nbytes = kind, nbytes
        self.path = check_fill_dir(kind, nbytes) / f"{FILL_PREFIX}{os.getpid()}"
        self.written = 0

    def write(self, deadline: float) -> None:
        """Write the file; clean writeback (fsync) so page cache pages end up clean."""
        block = bytes(CHUNK)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            while self.written < self.nbytes:
                check_deadline(deadline, f"filling {self.path}")
                self.written += os.write(fd, block[: min(CHUNK, self.nbytes - self.written)])
            if self.kind == "pagecache":
                os.fsync(fd)
        finally:
            os.close(fd)

    def remove(self) -> None:
        """Unlink the file (its pages go back to the buddy allocator)."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def stale_fills() -> list[Path]:
    """Fill files left by a gpalloc run that was killed (its pid no longer exists)."""
    out = []
    for folder in FILL_DIRS.values():
        if not folder.is_dir():
            continue
        for path in folder.glob(f"{FILL_PREFIX}*"):
            pid = path.name.removeprefix(FILL_PREFIX)
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                out.append(path)
    return out
