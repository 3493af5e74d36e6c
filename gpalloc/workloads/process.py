"""Workloads that run as processes: fork/exec/exit events and what each process holds.

The per-process costs are measured on this project's live 6.18 VM (2 vCPUs) from the
CALIBRATION captures of boot b2 (data/measurements/README.md), as per-process deltas of
/proc/meminfo and /proc/slabinfo active_objs between ``00-before`` and the phase with
all N processes alive:

* ``small-exec`` — b2-17-sleep-n400: 400 × /bin/sleep (dynamically linked C program,
  posix_spawn = vfork + exec).  PageTables +19,668 kB / 400 = 49.17 kB = 12.29 pages,
  of which 1 is the PGD (this 6.18 build has no PTI: b2-16's trace has no order-1
  GFP_PGTABLE_USER request) → ``page_tables`` 11; v5.11 with PTI: ``pgd_order`` 1.
  KernelStack +16.06 kB and VmallocUsed +15.96 kB per process: one 16 KiB vmalloc'd
  stack each (the 2-slot per-CPU cache cannot hold 400).  slabinfo per process:
  vm_area_struct 35.6, filp 15.8, anon_vma_chain 11.8, anon_vma 7.6, task_struct 0.97,
  sighand 0.90, signal 0.89, kmalloc-cg-2k 0.91, mm_struct 0.70, files 0.62 (rounded;
  the per-task caches count 1); maple_node 4.9 is 6.18's VMA tree (v5.11 has rbtrees in
  the VMA: left out).  AnonPages +107.8 kB = 27 pages.  SUnreclaim +24.1 kB per process
  agrees with the objects' bytes (≈ 24.5 kB).
* ``python-fork`` — b2-16-procs-n400-k100 minus its filter-only twin b2-15-filters-n400-k100
  (same N, K): the ``gpalloc live bpf-procs`` children, forked (never exec'd) from the
  Python parent.  PageTables +38,544 kB / 400 = 96.36 kB = 24.09 pages − 1 PGD (order 0,
  6.18 without PTI) → 23.  slabinfo per process (b2-16 − b2-15): vm_area_struct 182.7,
  anon_vma_chain 158.7, anon_vma 78.9, maple_node 18.1, kmalloc-192 11.3,
  kmalloc-512 6.4, kmalloc-2k 1.96 − 0.89 = 1.07.  AnonPages +632,316 kB / 400 = 395
  pages (copy-on-write copies of the parent's heap).  Left out: the Reclaimable caches
  that grew in the same phase (ext4_inode_cache, proc_inode_cache, dentry,
  buffer_head: 25-60 objects per process, not made by fork; the machine was shared).

What is not measured (estimates, said so): the mm a fork copies before exec for
``ProcessBpfLoad`` (taken equal to ``small-exec``: a shell parent), the packet socket
and map sizes of a samples/bpf program (§4.4: packet_sock ≈ 1.5 KB → kmalloc-2k, an
array map of 256 × 8 B → kmalloc-4k), v5.11's object sizes (6.18's are used).
"""

from dataclasses import dataclass

from ..kernel.bpf.core import bpf_prog_load, bpf_prog_put
from ..kernel.fork import ProcessCost, do_exit, exec_mmap, kernel_clone
from ..kernel.workqueue import queue_work
from ..mm.slab import kfree, kmalloc, kmem_cache_alloc, kmem_cache_free, kmem_cache_of
from ..net.filter import sk_attach_filter, sock_close

SMALL_EXEC = ProcessCost(
    "small-exec", page_tables=11, pgd_order=1,
    slab=(("vm_area_struct", 36), ("filp", 16), ("anon_vma_chain", 12), ("anon_vma", 8),
          ("kmalloc-2k", 1)),
    anon_pages=27,
    source="b2-17-sleep-n400: PageTables, slabinfo, AnonPages deltas / 400 (module docstring)")
PYTHON_FORK = ProcessCost(
    "python-fork", page_tables=23, pgd_order=0,
    slab=(("vm_area_struct", 183), ("anon_vma_chain", 159), ("anon_vma", 79),
          ("maple_node", 18), ("kmalloc-192", 11), ("kmalloc-512", 6), ("kmalloc-2k", 1)),
    anon_pages=395,
    source="b2-16-procs-n400-k100 − b2-15-filters-n400-k100, per process (module docstring)")
PROCESS_COSTS = {c.name: c for c in (SMALL_EXEC, PYTHON_FORK)}
LIBBPF_PROBES = 3          # probe_loading, PROG_NAME, EXP_ATTACH_TYPE (§4.5)
PROBE_INSNS, PROBE_JITED = 2, 16
SAMPLE_MAP_BYTES = 2336    # array map of 256 × 8 B + struct bpf_array (§4.6, ESTIMATE)
PACKET_SOCK_BYTES = 1536   # struct packet_sock (§4.4, UNVERIFIED) → kmalloc-2k
BPF_PROG_AUX_BYTES = 2048  # kmalloc-cg-2k, 0.89 per filter in b2-15 (bpf_prog_aux)


def process_cost(name):
    """A measured ProcessCost by name (PROCESS_COSTS)."""
    if name not in PROCESS_COSTS:
        raise ValueError(f"process: unknown cost {name!r}; choose from "
                         f"{', '.join(PROCESS_COSTS)}")
    return PROCESS_COSTS[name]


@dataclass(frozen=True)
class ProcessFilter:
    """A forked child (no exec) that opens a UDP socket and attaches a classic filter."""

    insns: int
    cost: str = "python-fork"


@dataclass(frozen=True)
class ProcessBpfLoad:
    """A samples/bpf-style loader, run by a shell and held: fork + exec, libbpf's probe
    loads (each loaded and closed), an array map, a packet socket, then its program."""

    insn_cnt: int
    jited_bytes: int
    cost: str = "small-exec"
    probes: int = LIBBPF_PROBES


@dataclass(frozen=True)
class ShortProcess:
    """A process forked and exec'd that exits after ``lifetime`` events (a test runner)."""

    lifetime: int
    cost: str = "small-exec"


@dataclass(frozen=True)
class ExitProcesses:
    """Every process the workload holds exits, oldest first."""


PROCESS_EVENTS = (ProcessFilter, ProcessBpfLoad, ShortProcess, ExitProcesses)


def processes(k):
    """The processes a workload holds (oldest first)."""
    return k.__dict__.setdefault("processes", [])


def _hold(task, release):
    task.held.append(release)


def _spawn(k, cost):
    """fork from the shell (its mm copied: the same cost, ESTIMATE), then exec."""
    task = kernel_clone(k, cost)
    if task is not None and exec_mmap(k, task, cost):
        do_exit(k, task)
        return None
    return task


def _kmalloc_held(k, task, size):
    handle = kmalloc(k, size)
    if handle is not None:
        _hold(task, lambda: kfree(k, handle))
    return handle


def _packet_socket(k, task):
    """socket(PF_PACKET, SOCK_RAW): sock_inode_cache, packet_sock (kmalloc), dentry, filp."""
    objs = []
    for name in ("sock_inode_cache", "dentry", "filp"):
        cache = kmem_cache_of(k, name)
        obj = kmem_cache_alloc(k, cache)
        if obj is not None:
            objs.append((cache, obj))

    def release():
        for cache, obj in objs:
            kmem_cache_free(k, cache, obj)
    _hold(task, release)
    _kmalloc_held(k, task, PACKET_SOCK_BYTES)


def _load_held(k, task, insn_cnt, jited_bytes):
    prog = bpf_prog_load(k, insn_cnt, jited_bytes)
    if prog is not None:
        _kmalloc_held(k, task, BPF_PROG_AUX_BYTES)
        _hold(task, lambda: bpf_prog_put(k, prog))
    return prog


def run_process_event(k, ev):
    """Execute one process event (gpalloc.workloads.events.run_event hands them here)."""
    if isinstance(ev, ProcessFilter):
        task = kernel_clone(k, process_cost(ev.cost))
        if task is None:
            return
        sock = sk_attach_filter(k, ev.insns)
        if sock is not None:
            _hold(task, lambda: sock_close(k, sock))
        processes(k).append(task)
    elif isinstance(ev, ProcessBpfLoad):
        task = _spawn(k, process_cost(ev.cost))
        if task is None:
            return
        for _ in range(ev.probes):   # bpf_object__probe_loading + kernel_supports() probes
            probe = bpf_prog_load(k, PROBE_INSNS, PROBE_JITED)
            if probe is not None:
                bpf_prog_put(k, probe)
        _kmalloc_held(k, task, SAMPLE_MAP_BYTES)   # bpf_map_area_alloc → kmalloc
        _packet_socket(k, task)
        _load_held(k, task, ev.insn_cnt, ev.jited_bytes)
        processes(k).append(task)
    elif isinstance(ev, ShortProcess):
        task = _spawn(k, process_cost(ev.cost))
        if task is not None:
            queue_work(k, lambda: do_exit(k, task), ev.lifetime, "exit")
    elif isinstance(ev, ExitProcesses):
        held = processes(k)
        while held:
            do_exit(k, held.pop(0))
    else:
        raise ValueError(f"event: unknown kind {ev!r}")
