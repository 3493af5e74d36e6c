"""What a CLI run will cost, worked out before it starts, and the bounds past which it refuses.

The cost model is two sums, per kernel run (one design on one machine), measured on the
project's 2-core development machine with ``python -m gpalloc experiment ... --json`` (the
``seconds`` of each run) and ``ru_maxrss``:

* time = RAM in GiB x ``SECONDS_PER_GIB`` (boot, the background-pressure fill and the final
  check; 0 without pressure) + events x (``SECONDS_PER_EVENT`` + JIT pages per event x
  ``SECONDS_PER_PAGE``).  Measured: bpf-load, 40,000 one-page programs on 1G, 10.3 s
  (0.26 ms an event); bpf-churn 0.08-0.18 ms an event (by design), 0.14-0.30 ms with four
  pages; fedora-bpf 43,946 events on 8G, 13.1 s; the fill of 16G at pressure 0.3, 1.4 s.
* memory = pages touched x ``BYTES_PER_PAGE`` + events x ``BYTES_PER_EVENT`` + programs kept
  loaded x ``BYTES_PER_PROGRAM``.  Pages touched: the background fill materialises one
  struct page per page-cache extent head, about RAM pages / ``FILL_PAGES_PER_TOUCHED`` (16G
  at pressure 0.3: 131,304 pages touched, +60 MB); each program kept loaded touches its JIT
  pages.  Measured: 40,000 one-page programs kept, +81 MB (2.0 KB each); 10,000 eight-page
  programs, +54 MB (5.4 KB each); the event list, 150 bytes an event.

Runs are one after another, so time adds up over kernels and memory does not (the
estimate is the largest single run).  The estimate is a guide, good to a factor of two
on an idle machine; a machine that runs out of memory in the model (allocations failing
after reclaim) is slower than it says.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .experiments import build_events
from .units import memparse

SECONDS_PER_GIB = 0.1
SECONDS_PER_EVENT = 0.25e-3
SECONDS_PER_PAGE = 0.04e-3
BYTES_PER_PAGE = 480
BYTES_PER_EVENT = 150
BYTES_PER_PROGRAM = 1400
FILL_PAGES_PER_TOUCHED = 32
EVENTS_PER_PROCESS = 40  # bpf-load --per-process: one process ≈ 6-18 ms (N = 1024-2048 on 8G)
PAGE_SIZE = 4096

# Print the estimate (and show progress at once) past these; refuse without --force past these.
ANNOUNCE_SECONDS, ANNOUNCE_BYTES = 5.0, 256 << 20
MAX_SECONDS, MAX_BYTES = 300.0, 2 << 30
RAM_FLAG = "--node-mem"   # named when the machine's size drives the cost


@dataclass
class Estimate:
    """A command's cost: kernel runs, events in all, seconds in all, peak bytes, and the flag
    that drives the time and the memory (named in a refusal)."""

    runs: int
    events: int
    seconds: float
    bytes: int
    time_flag: str
    memory_flag: str

    def text(self):
        """``2 runs, 2,000,000 events: about 9.7 min and 2.1 GB``."""
        return (f"{self.runs} run{'s' * (self.runs != 1)}, {self.events:,} events: "
                f"about {duration(self.seconds)} and {size(self.bytes)}")

    def named(self, ram_flag):
        """The same estimate, naming ``ram_flag`` (e.g. --nodes) where RAM drives the cost."""
        return replace(self, **{key: ram_flag for key in ("time_flag", "memory_flag")
                                if getattr(self, key) == RAM_FLAG})

    def announce(self):
        """True when the run is long or large enough to print this and show progress at once."""
        return self.seconds > ANNOUNCE_SECONDS or self.bytes > ANNOUNCE_BYTES

    def refusal(self):
        """(flag, what is wrong) when past a bound, else None."""
        if self.seconds > MAX_SECONDS:
            return self.time_flag, (f"{self.text()}, past the bound of {duration(MAX_SECONDS)}; "
                                    "pass --force to run it anyway")
        if self.bytes > MAX_BYTES:
            return self.memory_flag, (f"{self.text()}, past the bound of {size(MAX_BYTES)}; "
                                      "pass --force to run it anyway")
        return None


def duration(seconds):
    """``42 s``, ``9.7 min``, ``3.1 h``."""
    if seconds > 1e6 * 3600:
        return "more than a million hours"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def size(nbytes):
    """``120 MB``, ``2.1 GB`` (decimal units, as ``ru_maxrss`` readers expect)."""
    if nbytes > 1e15:
        return "more than a petabyte"
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:.0f} MB"


def _ram_pages(cal):
    return cal.nodes * memparse(cal.node_mem, "node_mem") // PAGE_SIZE


def estimate(events, kernels, cal, pages=1, kept=0, event_flag="--programs"):
    """The Estimate of ``kernels`` runs of ``events`` events each (``kept`` programs stay loaded).

    ``cal``: the gpalloc.workloads.scenario.Calibration (nodes, node_mem, pressure).
    ``event_flag``: the flag that sets the event count, named when the events dominate.
    """
    ram = _ram_pages(cal)
    fill_s = ram * PAGE_SIZE / (1 << 30) * SECONDS_PER_GIB if cal.pressure else 0.0
    event_s = events * (SECONDS_PER_EVENT + pages * SECONDS_PER_PAGE)
    fill_b = (ram // FILL_PAGES_PER_TOUCHED) * BYTES_PER_PAGE if cal.pressure else 0
    event_b = events * BYTES_PER_EVENT + kept * (BYTES_PER_PROGRAM + pages * BYTES_PER_PAGE)
    ram_flag = RAM_FLAG
    return Estimate(runs=kernels, events=kernels * events, seconds=kernels * (fill_s + event_s),
                    bytes=fill_b + event_b,
                    time_flag=event_flag if event_s >= fill_s else ram_flag,
                    memory_flag=event_flag if event_b >= fill_b else ram_flag)


def event_count(name, lsmod=None, programs=512, loads=1000):
    """Events of ``gpalloc experiment NAME``, per kernel run, without building bpf-load's or
    bpf-churn's list (which is what would not fit); fedora-bpf and modules build theirs, as
    long as the module listing plus the BPF selftest profile."""
    if name == "bpf-load":
        return programs
    if name == "bpf-churn":
        return loads
    return sum(len(v) for v in build_events(name, 0, lsmod=lsmod).values())


def experiment_estimate(name, cal, kernels, lsmod=None, programs=512, pages=1, loads=1000,
                        insns=None, rounds=1, per_process=False):
    """The Estimate of ``gpalloc experiment NAME`` on ``kernels`` designs.

    bpf-load's ``rounds`` multiply its events; with ``per_process`` each program's process
    (fork, exec, probes, map, socket, exit) counts as EVENTS_PER_PROCESS events.
    """
    events = event_count(name, lsmod, programs, loads)
    if name == "bpf-load":
        events *= rounds * (EVENTS_PER_PROCESS if per_process else 1)
    flag = {"bpf-load": "--programs", "bpf-churn": "--loads"}.get(name, "--lsmod")
    return estimate(events, kernels, cal, pages, kept=programs if name == "bpf-load" else 0,
                    event_flag=flag)


def combine(estimates, flag):
    """Commands one after another (ram-sweep's sizes): seconds add up, memory is the largest
    one's; ``flag`` is the option that chose them."""
    return Estimate(runs=sum(e.runs for e in estimates), events=sum(e.events for e in estimates),
                    seconds=sum(e.seconds for e in estimates),
                    bytes=max(e.bytes for e in estimates), time_flag=flag, memory_flag=flag)
