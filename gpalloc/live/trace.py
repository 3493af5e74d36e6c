"""The kmem tracepoints of one experiment phase, through a private tracefs instance (root only).

Events: ``mm_page_alloc`` (__alloc_pages(): pfn, order, migratetype, gfp_flags),
``mm_page_alloc_zone_locked`` (__rmqueue_smallest() and friends, taken under the zone lock:
buddy blocks handed out, ``percpu_refill`` when they refill a per-CPU list),
``mm_page_free`` / ``mm_page_free_batched``, ``mm_page_pcpu_drain`` (per-CPU pages given back to
the buddy) and ``mm_page_alloc_extfrag`` (a fallback into another migratetype's pageblock).

A private instance (``instances/gpalloc-<pid>``) has its own ring buffer, event switches and
pid filter, so the global trace is left alone, and removing the instance frees its buffer.
tracefs is mounted at /sys/kernel/tracing if it is not, and unmounted again afterwards.
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import gzip
import io
import os
import re
from pathlib import Path

from gpalloc.sources import read_file

TRACEFS = Path("/sys/kernel/tracing")
INSTANCE_PREFIX = "gpalloc-"
EVENTS = ("mm_page_alloc", "mm_page_alloc_zone_locked", "mm_page_free", "mm_page_free_batched",
          "mm_page_pcpu_drain", "mm_page_alloc_extfrag")
BUFFER_KB = 32768              # per CPU; a 6,000-program phase makes ~10^5 events
MNT_DETACH = 2
# CSV columns; "" where an event has no such field.
COLUMNS = ("ts", "task", "pid", "event", "pfn", "order", "migratetype", "gfp", "percpu_refill",
           "fallback_order", "fallback_migratetype", "change_ownership")
GZIP_OVER = 64 << 10           # a trace CSV bigger than this is stored gzipped

_LINE_RE = re.compile(r"\s*(?P<task>.*?)-(?P<pid>[0-9]+)\s+(?:\(\s*[0-9-]+\)\s+)?"
                      r"\[(?P<cpu>[0-9]+)\]\s+(?:\S+\s+)?(?P<ts>[0-9]+\.[0-9]+): "
                      r"(?P<event>\w+): (?P<body>.*)\Z")


def parse_trace(text: str, name: str = "<trace>") -> list[dict]:
    """Parse the ``trace`` file's kmem lines into dicts with the ``COLUMNS`` keys.

    ``task`` is the comm the trace prints (``<...>`` when it was not recorded), ``pfn`` an int;
    ``order``/``migratetype`` and the extfrag fields are ints; ``gfp`` is the flag text as the
    kernel prints it.  Comment lines (``#``) are skipped; any other line
    that is not a kmem event of ``EVENTS`` is an error (``FILE:LINE:``).
    """
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        match = _LINE_RE.fullmatch(line)
        if not match or match.group("event") not in EVENTS:
            raise ValueError(f"{name}:{lineno}: not a kmem trace line: {line.strip()[:120]!r}")
        fields = dict(tok.split("=", 1) for tok in match.group("body").split() if "=" in tok)
        try:
            out.append(_event(match, fields))
        except (KeyError, ValueError) as err:
            raise ValueError(f"{name}:{lineno}: {match.group('event')}: bad or missing field "
                             f"{err}") from None
    return out


def _event(match: re.Match, f: dict) -> dict:
    event = match.group("event")
    row = dict.fromkeys(COLUMNS, "")
    row.update(ts=match.group("ts"), task=match.group("task").strip(),
               pid=int(match.group("pid")), event=event, pfn=int(f["pfn"], 16))
    if event == "mm_page_alloc_extfrag":
        row.update(order=int(f["alloc_order"]), migratetype=int(f["alloc_migratetype"]),
                   fallback_order=int(f["fallback_order"]),
                   fallback_migratetype=int(f["fallback_migratetype"]),
                   change_ownership=int(f["change_ownership"]))
        return row
    row["order"] = int(f["order"])
    if "migratetype" in f:
        row["migratetype"] = int(f["migratetype"])
    if event == "mm_page_alloc":
        row["gfp"] = f["gfp_flags"]
    if event == "mm_page_alloc_zone_locked":
        row["percpu_refill"] = int(f["percpu_refill"])
    return row


def write_events(folder: Path, events: list[dict]) -> Path:
    """``trace.csv`` (or ``trace.csv.gz`` when bigger than ``GZIP_OVER``) in ``folder``."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for e in events:
        writer.writerow({**e, "pfn": f"0x{e['pfn']:x}"})
    data = buf.getvalue().encode()
    if len(data) > GZIP_OVER:
        path = folder / "trace.csv.gz"
        path.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    else:
        path = folder / "trace.csv"
        path.write_bytes(data)
    return path


def read_events(path: Path) -> list[dict]:
    """Read a ``trace.csv[.gz]`` back: ints where the column is numeric, "" where absent."""
    reader = csv.DictReader(io.StringIO(read_file(path), newline=""))
    try:
        return _read_rows(path, reader)
    except csv.Error as err:   # a field past csv's size limit; line_num is the line before
        raise ValueError(f"{path}:{reader.line_num + 1}: {err}") from None


def _read_rows(path: Path, reader: csv.DictReader) -> list[dict]:
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise ValueError(f"{path}:1: header is not {','.join(COLUMNS)}")
    out = []
    for row in reader:
        lineno = reader.line_num
        try:
            for key in COLUMNS:
                if key in ("ts", "task", "event", "gfp") or row[key] == "":
                    continue
                row[key] = int(row[key], 16) if key == "pfn" else int(row[key])
        except (TypeError, ValueError):
            raise ValueError(f"{path}:{lineno}: {key} {row[key]!r} is not a number") from None
        if row["event"] not in EVENTS:
            raise ValueError(f"{path}:{lineno}: unknown event {row['event']!r}")
        out.append(row)
    return out


def covered_pfns(events: list[dict]) -> set[int]:
    """Every pfn inside a block some allocation event handed out (pfn .. pfn + 2**order - 1)."""
    pfns: set[int] = set()
    for e in events:
        if e["event"] in ("mm_page_alloc", "mm_page_alloc_zone_locked") and e["pfn"]:
            pfns.update(range(e["pfn"], e["pfn"] + (1 << e["order"])))
    return pfns


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _mounted(root: Path) -> bool:
    return (root / "instances").is_dir()


class KmemTrace:
    """Opt-in kmem tracing for an experiment; a context manager that leaves nothing behind."""

    def __init__(self, root: Path = TRACEFS):
        self.root = root
        self.mounted_by_us = False
        self.instance: Path | None = None
        self.overruns: dict[str, int] = {}

    def __enter__(self):
        if os.geteuid() != 0:
            raise PermissionError("--trace: needs root (tracefs); run without --trace")
        try:
            if not _mounted(self.root):
                self._mount()
            for stale in stale_instances(self.root):
                stale.rmdir()
            self.instance = self.root / "instances" / f"{INSTANCE_PREFIX}{os.getpid()}"
            self.instance.mkdir()
            self._write("tracing_on", "0")
            self._write("buffer_size_kb", str(BUFFER_KB))
            self._write("options/event-fork", "1")
            for event in EVENTS:
                self._write(f"events/kmem/{event}/enable", "1")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _mount(self) -> None:
        libc = _libc()
        if libc.mount(b"nodev", str(self.root).encode(), b"tracefs", 0, None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"--trace: mount -t tracefs nodev {self.root}: {os.strerror(err)}")
        self.mounted_by_us = True

    def _write(self, name: str, value: str) -> None:
        with open(self.instance / name, "w", encoding="ascii") as f:
            f.write(value)

    @contextlib.contextmanager
    def phase(self, pids: list[int] | None):
        """Trace the ``with`` body; yields a list that holds the events afterwards.

        ``pids``: record only these processes (and their children, event-fork); ``None``
        records every process, e.g. for frees that run in kworkers after an RCU grace period.
        """
        events: list[dict] = []
        self._write("trace", "")                       # empty the ring buffer
        self._write("set_event_pid", " ".join(map(str, pids or ())))
        self._write("tracing_on", "1")
        try:
            yield events
        finally:
            self._write("tracing_on", "0")
        text = (self.instance / "trace").read_text(encoding="utf-8", errors="replace")
        events.extend(parse_trace(text, str(self.instance / "trace")))
        self.overruns = self._overruns()

    def _overruns(self) -> dict[str, int]:
        """Events lost because the buffer was full, per CPU (``per_cpu/cpuN/stats``)."""
        out = {}
        for stats in sorted((self.instance / "per_cpu").glob("cpu*/stats")):
            for line in stats.read_text().splitlines():
                if line.startswith("overrun:"):
                    out[stats.parent.name] = int(line.split()[1])
        return out

    def __exit__(self, *exc):
        if self.instance is not None and self.instance.is_dir():
            with contextlib.suppress(OSError):
                self._write("tracing_on", "0")
            self.instance.rmdir()                      # frees the buffer, disables the events
            self.instance = None
        if self.mounted_by_us:
            if _libc().umount2(str(self.root).encode(), 0) != 0:
                err = ctypes.get_errno()
                _libc().umount2(str(self.root).encode(), MNT_DETACH)
                raise OSError(err, f"umount {self.root}: {os.strerror(err)} (detached lazily)")
            self.mounted_by_us = False


def stale_instances(root: Path = TRACEFS) -> list[Path]:
    """Instances left by a gpalloc run that was killed (its pid no longer exists)."""
    if not _mounted(root):
        return []
    out = []
    for path in (root / "instances").glob(f"{INSTANCE_PREFIX}*"):
        pid = path.name.removeprefix(INSTANCE_PREFIX)
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            out.append(path)
    return out
