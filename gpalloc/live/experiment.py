"""One live experiment, phase by phase: capture, (fill), load, hold, close, settle, (release).

Phases (folders under ``phases/``): ``00-before``; ``01-filled`` with ``--fill``; per round r
``NN-loaded-rR`` (all N programs held) and ``NN-closed-rR`` (after close and settle); and
``NN-released`` after the fill file is removed.  Every exit path - an error, ``--timeout``,
Ctrl-C (SIGINT), SIGTERM - closes the sockets, reaps the children, removes the fill file and
the tracefs instance (unmounting tracefs if this run mounted it), and records in
``provenance.json`` how far the run got.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import resource
import shlex
import signal
import sys
import time
from pathlib import Path

from gpalloc import procfs

from . import bounds, capture
from .bpf import DEFAULT_INSNS, FilterProcs, FilterSet, SockFprog, check_deadline
from .fill import Fill, fill_bytes, stale_fills
from .trace import KmemTrace, covered_pfns, stale_instances, write_events

KINDS = ("bpf-filters", "bpf-procs")
SETTLE_POLL_S = 0.1
SETTLE_STABLE_S = 0.5          # unchanged this long = settled
PROG_CALLERS = ("bpf_prog_alloc_no_stats", "bpf_prog_realloc")


class Interrupted(KeyboardInterrupt):
    """SIGTERM/SIGHUP, raised like Ctrl-C so every clean-up path runs (never caught as OSError)."""


class LiveInterrupted(OSError):
    """The one-line report of an interrupted run, after the clean-up."""


@dataclasses.dataclass
class Params:
    """A live experiment's parameters (the command line's flags)."""

    kind: str = "bpf-filters"
    programs: int = 500
    insns: int = DEFAULT_INSNS
    rounds: int = 1
    fill: str | None = None
    fill_kind: str = "pagecache"
    trace: bool = False
    pack_probe: bool = False
    hold: float = 0.0
    settle: float = 2.0
    timeout: float = 600.0
    out: str = "live-captures"
    name: str | None = None
    note: str | None = None

    def command(self) -> str:
        """The command line that repeats this run (every flag spelled out)."""
        args = ["python", "-m", "gpalloc", "live", self.kind, "--programs", str(self.programs),
                "--insns", str(self.insns), "--rounds", str(self.rounds)]
        if self.fill:
            args += ["--fill", self.fill, "--fill-kind", self.fill_kind]
        args += ["--trace"] * self.trace + ["--pack-probe"] * self.pack_probe
        args += ["--hold", f"{self.hold:g}", "--settle", f"{self.settle:g}",
                 "--timeout", f"{self.timeout:g}", "--out", self.out]
        if self.name:
            args += ["--name", self.name]
        if self.note:
            args += ["--note", self.note]
        return shlex.join(args)

    def default_name(self, boot: str | None) -> str:
        """``<boot id prefix>-<kind>-n<N>-k<K>[-r<R>][-fill<LEVEL><kind>]-<UTC time>``."""
        parts = [(boot or "noboot")[:8], self.kind, f"n{self.programs}", f"k{self.insns}"]
        if self.rounds > 1:
            parts.append(f"r{self.rounds}")
        if self.fill:
            parts.append(f"fill{self.fill.replace('%', 'pct')}{self.fill_kind}")
        parts.append(time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
        return "-".join(parts)


def require_linux() -> None:
    """Live experiments need a Linux /proc (reading captures does not)."""
    if not sys.platform.startswith("linux") or not Path("/proc/meminfo").is_file():
        raise OSError(f"live: needs a running Linux kernel (this is {sys.platform}); "
                      "captures can still be read with gpalloc.live.read_capture()")


def bpf_areas() -> tuple[int, int] | None:
    """(bpf_prog_pack areas, bpf_prog areas) in /proc/vmallocinfo; None without root.

    Counts caller names in the raw text, not parsed lines: --pack-probe calls this after
    every attach, and the file grows by a line per program.
    """
    if not capture.is_root():
        return None
    raw = capture.read_proc("vmallocinfo")
    count = {name: raw.count(f" {name}+".encode()) for name in capture.PACK_CALLERS + PROG_CALLERS}
    return (sum(count[n] for n in capture.PACK_CALLERS), sum(count[n] for n in PROG_CALLERS))


def settle(limit: float) -> dict:
    """Wait until the BPF vmalloc areas (VmallocUsed without root) stop changing, <= limit s.

    Programs are freed after an RCU grace period by a work item (bpf_prog_free_deferred()),
    so a closed socket's pages come back a little later.
    """
    def state():
        return bpf_areas() or capture.vmalloc_used_kb()
    start = time.monotonic()
    last, since = state(), start
    while time.monotonic() - start < limit:
        time.sleep(SETTLE_POLL_S)
        now = state()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= SETTLE_STABLE_S:
            return {"settle_s": round(time.monotonic() - start, 3), "stable": True}
    return {"settle_s": round(time.monotonic() - start, 3), "stable": False}


@contextlib.contextmanager
def signals_raise():
    """SIGTERM and SIGHUP raise ``Interrupted`` (like SIGINT's KeyboardInterrupt) while inside."""
    def handler(signum, frame):
        raise Interrupted(signal.Signals(signum).name)
    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class SignalGuard:
    """Saves the signal dispositions; ``ignore()`` makes the clean-up uninterruptible.

    Entered first on the clean-up stack, so it is left last, when it restores them.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __enter__(self):
        self.saved = {s: signal.getsignal(s) for s in self.SIGNALS}
        return self

    def ignore(self) -> None:
        for s in self.SIGNALS:
            signal.signal(s, signal.SIG_IGN)

    def __exit__(self, *exc):
        for s, h in self.saved.items():
            signal.signal(s, h)


@contextlib.contextmanager
def nofile_limit(needed: int):
    """RLIMIT_NOFILE raised to ``needed`` (root may raise the hard limit), restored after."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft, hard = old
    if soft == resource.RLIM_INFINITY or soft >= needed:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        if os.geteuid() != 0:
            raise ValueError(f"--programs: needs {needed} open files; the hard RLIMIT_NOFILE "
                             f"is {hard} (root can raise it)")
        hard = needed
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)


def sweep_stale() -> list[str]:
    """Remove what a killed earlier run left (fill files, tracefs instances of dead pids)."""
    removed = []
    for path in stale_fills():
        path.unlink(missing_ok=True)
        removed.append(str(path))
    for path in stale_instances():
        path.rmdir()
        removed.append(str(path))
    return removed


KEPT_CLOSED = ("events of pfns handed out while loading (mm_page_alloc, zone_locked), and "
               "mm_page_free by kworkers (bpf_prog_free_deferred() frees the programs and "
               "packs, including pages the untraced bulk allocator took from per-CPU lists)")


MIGRATE_MOVABLE = 1


def _user_page(event: dict) -> bool:
    """A user page: an allocation with GFP_HIGHUSER* (anonymous memory, copy-on-write after
    fork()) or a refill of a Movable per-CPU list.  Counted, not kept: bpf-procs children make
    hundreds each, and none of them touches the direct map's permissions."""
    if event["event"] == "mm_page_alloc":
        return event["gfp"].startswith("GFP_HIGHUSER")
    return (event["event"] == "mm_page_alloc_zone_locked"
            and event["migratetype"] == MIGRATE_MOVABLE)


def _worker_free(event: dict) -> bool:
    return event["event"] == "mm_page_free" and event["task"].startswith("kworker")


class Run:
    """The phases of one run: numbering, timing, capture, trace files."""

    def __init__(self, folder: Path, tracer: KmemTrace | None):
        self.folder, self.tracer = folder, tracer
        self.t0 = time.monotonic()
        self.phases: list[dict] = []
        self.number = 0

    def capture(self, name: str, meta: dict) -> dict:
        """Capture phase ``NN-name``, NN = ``self.number``, which then moves on by one."""
        meta = {"phase": f"{self.number:02d}-{name}", "t_s": round(time.monotonic() - self.t0, 3),
                "uptime_s": capture.uptime_s(), **meta}
        self._dir(meta["phase"]).mkdir(parents=True)
        if "events" in meta:
            events = meta.pop("events")
            path = write_events(self._dir(meta["phase"]), events)
            meta["trace"] = {**meta.get("trace", {}), "events": len(events), "file": path.name}
        self.phases.append(capture.capture_phase(self._dir(meta["phase"]), meta))
        self.number += 1
        return meta

    def _dir(self, phase: str) -> Path:
        return self.folder / "phases" / phase

    @contextlib.contextmanager
    def traced(self, meta: dict, pids: list[int] | None, keep_pfns: set[int] | None = None):
        """Trace the body into ``meta["events"]`` when --trace is on."""
        if self.tracer is None:
            yield
            return
        with self.tracer.phase(pids) as events:
            yield
        user = [e for e in events if _user_page(e)]
        events = [e for e in events if not _user_page(e)]
        if keep_pfns is not None:    # system-wide phase: keep what concerns the programs
            events = [e for e in events if e["pfn"] in keep_pfns or _worker_free(e)]
        meta["events"] = events
        meta["trace"] = {"pid_filter": pids, "overruns": self.tracer.overruns,
                         "user_page_events_dropped": len(user),
                         "kept": KEPT_CLOSED if keep_pfns is not None
                         else "pid filter in the kernel (event-fork: children too)"}


def _wait(seconds: float, deadline: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        check_deadline(deadline, "holding the programs")
        time.sleep(min(0.1, max(0.0, end - time.monotonic())))


def _load(params: Params, run: Run, fprog: SockFprog, deadline: float, stack) -> tuple:
    """Load N programs (sockets here, or children); returns (holder, loaded-phase meta)."""
    meta: dict = {"action": f"{params.kind}: {params.programs} programs of {params.insns} "
                            "instructions attached and held", "programs_held": params.programs}
    openings: list[dict] = []

    def probe(i):
        packs = bpf_areas()[0]
        if not openings or packs != openings[-1]["packs"]:
            openings.append({"after_program": i + 1, "packs": packs})

    start = time.monotonic()
    with run.traced(meta, [os.getpid()]):
        if params.kind == "bpf-filters":
            holder = stack.enter_context(FilterSet(fprog))
            holder.load(params.programs, deadline, probe if params.pack_probe else None)
        else:
            holder = stack.enter_context(FilterProcs(fprog))
            holder.load(params.programs, deadline)
    meta["load_s"] = round(time.monotonic() - start, 3)
    if params.pack_probe:
        meta["pack_openings"] = openings
    return holder, meta


def _close(params: Params, run: Run, holder, loaded: dict) -> dict:
    """Close every socket (or release the children) and wait for the frees to settle."""
    meta: dict = {"action": "programs closed, then settled", "programs_held": 0}
    keep = covered_pfns(loaded.get("events", [])) if params.trace else None
    start = time.monotonic()
    with run.traced(meta, None, keep):
        if isinstance(holder, FilterSet):
            holder.close()
        else:
            holder.release()
        meta["close_s"] = round(time.monotonic() - start, 3)
        meta["settle"] = settle(params.settle)
    return meta


def run(params: Params) -> dict:
    """Run the experiment; returns {folder, command, provenance, phases, completed}."""
    require_linux()
    if params.kind not in KINDS:
        raise ValueError(f"live: unknown experiment {params.kind!r} (known: {', '.join(KINDS)})")
    bounds.check(params.kind, params.programs, params.insns, params.rounds, params.hold,
                 params.settle, params.timeout)
    fprog = SockFprog(params.insns)
    meminfo = procfs.parse_meminfo(capture.read_proc("meminfo").decode())
    fill = Fill(params.fill_kind, fill_bytes(params.fill, meminfo)) if params.fill else None
    if (params.trace or params.pack_probe) and not capture.is_root():
        flag = "--trace" if params.trace else "--pack-probe"
        raise PermissionError(f"{flag}: needs root (tracefs / /proc/vmallocinfo); "
                              "run without it")
    out = Path(params.out)
    folder = out / (params.name or params.default_name(capture.boot_id()))
    if folder.exists():
        raise ValueError(f"--name: {folder} already exists; captures are never overwritten")
    deadline = time.monotonic() + params.timeout
    prov = capture.provenance(params.command(), dataclasses.asdict(params), out, params.note)
    folder.mkdir(parents=True)
    capture.write_json(folder / "provenance.json", prov)
    result = {"folder": str(folder), "command": params.command(), "provenance": prov,
              "phases": [], "completed": False}
    try:
        with signals_raise(), contextlib.ExitStack() as stack:
            guard = stack.enter_context(SignalGuard())
            try:
                _phases(params, folder, fill, fprog, deadline, stack, result)
            finally:
                guard.ignore()       # nothing interrupts the clean-up that follows
        result["completed"] = True
    except KeyboardInterrupt as err:
        prov["error"] = f"interrupted ({str(err) or 'SIGINT'})"
        raise LiveInterrupted(f"live: {prov['error']}; cleaned up, partial capture in "
                              f"{folder}") from None
    except (OSError, ValueError) as err:
        prov["error"] = str(err)
        raise
    finally:
        prov.update(completed=result["completed"], phases=[p["phase"] for p in result["phases"]],
                    elapsed_s=round(time.monotonic() - (deadline - params.timeout), 3))
        capture.write_json(folder / "provenance.json", prov)
    return result


def _phases(params: Params, folder: Path, fill: Fill | None, fprog: SockFprog, deadline: float,
            stack: contextlib.ExitStack, result: dict) -> None:
    result["provenance"]["swept_stale"] = sweep_stale()
    stack.enter_context(nofile_limit(bounds.files_needed(params.kind, params.programs)))
    tracer = stack.enter_context(KmemTrace()) if params.trace else None
    run_ = Run(folder, tracer)
    result["phases"] = run_.phases
    run_.capture("before", {"action": "nothing yet"})
    if fill is not None:
        stack.enter_context(fill)
        start = time.monotonic()
        fill.write(deadline)
        run_.capture("filled", {"action": f"{fill.written >> 20} MiB of {fill.kind} written "
                                          f"to {fill.path}", "fill_bytes": fill.written,
                                "fill_s": round(time.monotonic() - start, 3)})
    run_.number = 2                  # 01 is "filled", with or without a fill
    for r in range(1, params.rounds + 1):
        with contextlib.ExitStack() as round_stack:
            holder, loaded = _load(params, run_, fprog, deadline, round_stack)
            loaded["round"] = r
            run_.capture(f"loaded-r{r}", loaded)     # keeps loaded["events"] for _close
            _wait(params.hold, deadline)
            closed = _close(params, run_, holder, loaded)
            closed["round"] = r
        run_.capture(f"closed-r{r}", closed)
    if fill is not None:
        fill.remove()
        run_.capture("released", {"action": f"fill file {fill.path} removed"})
