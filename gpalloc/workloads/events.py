"""Kernel events a workload is made of, and the driver that plays them on a machine.

An event is a small tuple; ``play(k, events)`` runs them in order, advancing the
logical clock after each so deferred frees (RCU, workqueues) happen in between,
and interleaving background churn.  The same event list played on two machines
with the same seed is the baseline-vs-grouped comparison.
"""

from dataclasses import dataclass

from ..arch.x86.ftrace import create_trampoline, tramp_free
from ..arch.x86.kprobes import alloc_insn_page, free_insn_page
from ..kernel.bpf.core import bpf_prog_load, bpf_prog_put
from ..kernel.module import free_module, load_module
from ..kernel.workqueue import flush_deferred, queue_work, tick
from ..net.filter import close_all, sk_attach_filter
from . import background
from .process import PROCESS_EVENTS, run_process_event

KEEP = None   # lifetime: never freed during the run


@dataclass(frozen=True)
class ModuleLoad:
    """insmod: load_module() with core (text, rodata, ro_after_init, data) and init pages."""

    name: str
    core: tuple
    init: tuple
    lifetime: object = KEEP


@dataclass(frozen=True)
class BpfLoad:
    """BPF_PROG_LOAD of insn_cnt instructions whose x86 JIT image is jited_bytes long."""

    insn_cnt: int
    jited_bytes: int
    lifetime: object = KEEP   # events until the last fd is closed (0 = close at once)
    jit: bool = True


@dataclass(frozen=True)
class SocketFilter:
    """socket() + SO_ATTACH_FILTER of a classic program of ``insns`` instructions, held."""

    insns: int


@dataclass(frozen=True)
class CloseSockets:
    """Close every socket the workload holds, in the order they were opened."""


@dataclass(frozen=True)
class Trampoline:
    """A BPF trampoline/dispatcher page (fentry/fexit attach)."""

    lifetime: object = KEEP


@dataclass(frozen=True)
class FtraceTrampoline:
    """An ftrace_ops with a private trampoline (function tracer instance, perf, livepatch)."""

    lifetime: object = KEEP


@dataclass(frozen=True)
class KprobePage:
    """A kprobe instruction-slot page."""

    lifetime: object = KEEP


def _schedule(k, lifetime, fn, what):
    if lifetime is not KEEP:
        queue_work(k, fn, lifetime, what)


def run_event(k, ev):
    """Execute one event; schedule its free if it has a lifetime."""
    if isinstance(ev, BpfLoad):
        prog = bpf_prog_load(k, ev.insn_cnt, ev.jited_bytes, jit=ev.jit)
        if prog is not None and ev.lifetime is not KEEP:
            if ev.lifetime == 0:
                bpf_prog_put(k, prog)
            else:
                queue_work(k, lambda: bpf_prog_put(k, prog), ev.lifetime, "close prog fd")
    elif isinstance(ev, SocketFilter):
        sk_attach_filter(k, ev.insns)
    elif isinstance(ev, CloseSockets):
        close_all(k)
    elif isinstance(ev, ModuleLoad):
        mod = load_module(k, ev.name, ev.core, ev.init)
        if mod is not None:
            _schedule(k, ev.lifetime, lambda: free_module(k, mod), f"rmmod {ev.name}")
    elif isinstance(ev, Trampoline):
        image = k.design.bpf_trampoline_alloc(k)
        if image:
            _schedule(k, ev.lifetime, lambda: k.design.bpf_trampoline_free(k, image), "detach")
    elif isinstance(ev, FtraceTrampoline):
        tramp = create_trampoline(k)
        if tramp:
            _schedule(k, ev.lifetime, lambda: tramp_free(k, tramp), "ftrace_ops free")
    elif isinstance(ev, KprobePage):
        page = alloc_insn_page(k)
        if page:
            _schedule(k, ev.lifetime, lambda: free_insn_page(k, page), "kprobe gc")
    elif isinstance(ev, PROCESS_EVENTS):   # fork/exec/exit (gpalloc.workloads.process)
        run_process_event(k, ev)
    else:
        raise ValueError(f"event: unknown kind {ev!r}")


def play(k, events, churn_per_event=0, progress=None, finish=True, kernel_churn_per_event=0,
         migrate_every=0):
    """Run events in order: each is one tick of the clock plus background churn.

    ``churn_per_event``: page-cache extents replaced per event; ``kernel_churn_per_event``:
    unmovable kernel blocks replaced per event; ``migrate_every``: the workload's task
    moves to another CPU every so many events (0 = never).  ``progress(n)`` is called
    every 256 events (a tqdm update, say).  With ``finish`` every pending deferred
    free runs at the end (rcu_barrier).
    """
    done = 0
    for ev in events:
        run_event(k, ev)
        tick(k)
        if churn_per_event:
            background.age(k, churn_per_event)
        if kernel_churn_per_event:
            background.kernel_churn(k, kernel_churn_per_event)
        if migrate_every and k.clock % migrate_every == 0 and k.nr_cpus > 1:
            k.cpu = (k.cpu + 1 + k.rng.randrange(k.nr_cpus - 1)) % k.nr_cpus
        done += 1
        if progress is not None and done % 256 == 0:
            progress(256)
    if finish:
        flush_deferred(k)
    if progress is not None:
        progress(done % 256)
