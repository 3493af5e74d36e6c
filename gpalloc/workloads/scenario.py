"""The experiments' workloads and every calibration parameter, in one documented place.

Nothing here is a result: each number is an input with its source.  The
baseline and grouped runs play the *same* event list on machines with the same
seed; only ``patches`` differs.

Machine for ``fedora-bpf`` (a 2021 Fedora VM, as plausible as we can make it):

* 1 NUMA node, 8 GiB, 4 vCPUs, 1G direct-map pages on: a typical developer VM
  (the RHCOS capture in data/lsmod is an 8 GB, 2 vCPU VM; QEMU's host-model CPU
  passes pdpe1gb, so gbpages are used).  The cover letter does not give its machine's
  size, and the result depends on it: v5.11's splits are bounded by the Unmovable
  pageblocks of ZONE_NORMAL (about KERNEL_SHARE of it, gpalloc.workloads.background),
  the RFC's are not.  ``gpalloc.experiments.ram_sweep`` runs 4–64 GiB
  (data/results/fedora-bpf-by-ram.csv).
* ``boot_4k`` = 30 MiB: DirectMap4k of a booted VM *before* modules split
  anything — 30,720 kB on the 6.18 Firecracker VM booted with ``nomodule``
  (data/machines/fcvm-6.18/meminfo.txt).  Larger captures (65–140 MB) already
  include module and BPF splits, which the model adds itself.
* background ``pressure`` 0.3: page cache and user memory of a booted desktop VM
  running a test suite (about a third of RAM used, free memory scattered);
  ``churn_per_event`` 1: one background extent freed and one allocated for every
  kernel event (systemd, journald, the test runner's own reads and writes).
* ``kernel_churn_per_event`` 1 (ESTIMATE): one unmovable kernel block (slab page,
  page table, socket buffer, BPF map memory; orders 0–3) freed and one allocated
  per kernel event, on the running CPU.
* ``migrate_every`` 50 (ESTIMATE): the test runner is moved to another vCPU every
  50 kernel events (≈ tens of ms at ≈ 1 ms per program load), so deferred frees
  (RCU, workqueues) land on a CPU the allocations no longer run on.

Modules: ``data/lsmod/rhcos418-hyperv-modules.txt`` (RHEL 8 / RHCOS, a Fedora 28
fork — no Fedora lsmod with sizes and provenance could be found; data/lsmod/README.md).
/proc/modules lists the newest module first, so modules load in reverse listing
order.  Section sizes per module: gpalloc.workloads.sections.module_layout().

Boot-time BPF: 96 JIT images kept loaded (95 of one page, 1 of three pages) —
systemd's cgroup programs in the same RHCOS capture's /proc/vmallocinfo.

BPF selftests: data/bpf_selftests_v5_11.json (counts from a v5.11 tree, JIT sizes
measured; estimates marked there).  test_verifier and test_tag programs are
closed right after loading; test_progs programs live until their test ends.
"""

import math
from dataclasses import dataclass

from ..kernel.bpf.core import bpf_jit_binary_size
from ..mm.page import PAGE_SIZE
from ..resources import data_root
from .bpf_profile import parse_bpf_profile
from .events import KEEP, BpfLoad, CloseSockets, ModuleLoad, SocketFilter, Trampoline
from .lsmod import parse_modules
from .process import ExitProcesses, ProcessBpfLoad, ProcessFilter, ShortProcess
from .sections import module_layout

DATA = data_root()
DEFAULT_LSMOD = DATA / "lsmod" / "rhcos418-hyperv-modules.txt"
DEFAULT_PROFILE = DATA / "bpf_selftests_v5_11.json"
BOOT_BPF_ONE_PAGE, BOOT_BPF_THREE_PAGE = 95, 1
TEST_PROGS_TESTS = 146            # top-level test_progs tests in v5.11 (bpf-selftests-v5.11.md)


@dataclass
class Calibration:
    """Machine and background parameters of an experiment (see the module docstring)."""

    nodes: int = 1
    node_mem: str = "8G"
    cpus_per_node: int = 4
    gbpages: bool = True
    boot_4k: str = "30M"
    pressure: float = 0.3
    churn_per_event: int = 1
    kernel_churn_per_event: int = 1
    migrate_every: int = 50
    capture: str | None = None   # start from this capture's state instead (Machine.from_proc)
    # The background: a named real machine's state (gpalloc.workloads.machine_state), or
    # None for the ``pressure`` knob.  fresh-boot: the one QEMU guest capture, v5.10 (the
    # nearest to v5.11), 102 s after boot, the time a selftest VM starts its tests
    # (data/machines/debian11-5.10-qemu).
    state: str | None = "fresh-boot"
    # QEMU's q35 memory map (the 2021 Fedora VM is a QEMU/KVM guest): 2 GiB below the PCI
    # hole, the rest from 4 GiB; THP on (Fedora's default: khugepaged raises min_free_kbytes).
    layout: str = "qemu-q35"
    thp: bool = True
    # fedora-bpf: each selftest runner (test_verifier, test_progs, test_tag) is a process of
    # its own, forked and exec'd by the shell, living while its programs load (v5.11's
    # test_progs runs its tests serially in that one process; parallel workers came later,
    # UNVERIFIED which release).  False: no process memory (the model before issue 12).
    selftest_processes: bool = True

    @classmethod
    def for_capture(cls, capture):
        """The machine of a capture, as it was: no pressure, no churn, one CPU for the run."""
        return cls(pressure=0.0, churn_per_event=0, kernel_churn_per_event=0, migrate_every=0,
                   capture=str(capture), state=None)

    def machine_kwargs(self):
        """The Machine(...) arguments (a model machine of its own, not a capture's)."""
        return dict(nodes=self.nodes, node_mem=self.node_mem, cpus_per_node=self.cpus_per_node,
                    gbpages=self.gbpages, boot_4k=self.boot_4k, layout=self.layout,
                    thp=self.thp)

    def machine(self, machine_cls, design, seed):
        """A booted machine for one run: the capture's state, or a new one with its
        background: the named machine state, else the pressure knob."""
        if self.capture is not None:
            return machine_cls.from_proc(self.capture, design=design, seed=seed)
        m = machine_cls(seed=seed, design=design, **self.machine_kwargs())
        if self.state is not None:
            m.set_machine_state(self.state)
        else:
            m.set_memory_pressure(self.pressure)
        return m


def jited_bytes_for_pages(pages):
    """A JIT length that needs exactly ``pages`` pages under the v5.11 rule (64 bytes spare)."""
    return max(1, pages * PAGE_SIZE - bpf_jit_binary_size(0) - 64)


def module_events(modules):
    """insmod of every module, oldest first (listings are newest first)."""
    out = []
    for mod in reversed(modules):
        layout = module_layout(mod)
        out.append(ModuleLoad(mod.name, tuple(layout[:4]), tuple(layout[4:])))
    return out


def boot_bpf_events():
    """systemd's boot-time BPF programs (RHCOS 4.18 vmallocinfo: 95 × 1 page, 1 × 3 pages)."""
    return ([BpfLoad(64, jited_bytes_for_pages(1)) for _ in range(BOOT_BPF_ONE_PAGE)]
            + [BpfLoad(1500, jited_bytes_for_pages(3)) for _ in range(BOOT_BPF_THREE_PAGE)])


def interleave(rng, a, b):
    """Merge two event lists keeping each one's order, at random positions."""
    out, i, j = [], 0, 0
    while i < len(a) or j < len(b):
        if j >= len(b) or (i < len(a) and rng.random() < (len(a) - i) / (len(a) - i + len(b) - j)):
            out.append(a[i])
            i += 1
        else:
            out.append(b[j])
            j += 1
    return out


def test_verifier_events(profile, rng):
    """test_verifier: one-page accepted programs, the fill_helper programs, the scale tests."""
    tv = profile.test_verifier
    bpi = profile.jit_bytes_per_insn.imm
    events = []
    for _ in range(tv.one_page_images.value):
        insns = rng.randint(4, 120)
        events.append(BpfLoad(insns, math.ceil(bpi * insns) + 20, lifetime=0))
    for prog in tv.fill_helper_programs.programs:
        main_pages = prog.pages - (prog.images - 1)
        events.append(BpfLoad(prog.insns, jited_bytes_for_pages(main_pages), lifetime=0))
        events.extend(BpfLoad(2, 30, lifetime=0) for _ in range(prog.images - 1))
    rng.shuffle(events)
    return events


def test_progs_events(profile, rng):
    """test_progs: programs (and trampolines) live until the end of their test."""
    tp = profile.test_progs
    bpi = profile.jit_bytes_per_insn.imm
    tests = [[] for _ in range(TEST_PROGS_TESTS)]
    for _ in range(tp.jit_images.value):
        insns = rng.randint(8, 400)
        tests[rng.randrange(TEST_PROGS_TESTS)].append(("prog", insns, math.ceil(bpi * insns) + 40))
    for _ in range(tp.trampolines.value):
        tests[rng.randrange(TEST_PROGS_TESTS)].append(("tramp", 0, 0))
    pages = tp.bpf_verif_scale_pages_each.value
    for _ in range(tp.bpf_verif_scale_objects.value):
        tests[rng.randrange(TEST_PROGS_TESTS)].append(("prog", 3000, jited_bytes_for_pages(pages)))
    events = []
    for items in tests:
        n = len(items)
        for i, (kind, insns, nbytes) in enumerate(items):
            life = n - i   # freed when the test's skeleton is destroyed
            events.append(BpfLoad(insns, nbytes, lifetime=life) if kind == "prog"
                          else Trampoline(lifetime=life))
    return events


def test_tag_events(profile, stride=1):
    """test_tag: 5 rounds of imm programs (2..4096 insns) and map programs (3..4096), closed
    straight away.  ``stride`` > 1 plays every stride-th load only (for quick looks)."""
    tt = profile.test_tag
    events = []
    for _ in range(tt.rounds):
        for spec, bpi in ((tt.imm_programs_per_round, profile.jit_bytes_per_insn.imm),
                          (tt.map_programs_per_round, profile.jit_bytes_per_insn.map)):
            for insns in range(spec.first_insns, spec.last_insns + 1):
                events.append(BpfLoad(insns, math.ceil(bpi * insns) + 12, lifetime=0))
    return events[::stride]


def runner_process(events):
    """A test runner's phase run inside its own process: fork + exec first, exit at the end."""
    return [ShortProcess(lifetime=len(events) + 1), *events]


def fedora_bpf_events(rng, lsmod=DEFAULT_LSMOD, profile=DEFAULT_PROFILE, test_tag_stride=1,
                      selftest_processes=True):
    """Boot (modules + systemd BPF), then test_verifier, test_progs, test_tag.

    With ``selftest_processes`` each runner is a process (Calibration.selftest_processes).
    """
    modules = parse_modules(lsmod)
    prof = parse_bpf_profile(profile)
    boot = interleave(rng, module_events(modules), boot_bpf_events())
    phases = {"test_verifier": test_verifier_events(prof, rng),
              "test_progs": test_progs_events(prof, rng),
              "test_tag": test_tag_events(prof, test_tag_stride)}
    if selftest_processes:
        phases = {name: runner_process(events) for name, events in phases.items()}
    return {"boot": boot, **phases}


def modules_events(rng, lsmod):
    """Boot with a user's module list only."""
    return {"boot": module_events(parse_modules(lsmod))}


def bpf_load_events(programs, pages, insns=None, rounds=1, per_process=False):
    """N programs kept loaded: eBPF programs of P JIT pages (N instances of a BPF tool), or
    with ``insns`` N classic socket filters of K instructions, held then closed, R rounds
    (``gpalloc live bpf-filters``; phases loaded-rR / closed-rR as its captures name them).

    ``per_process``: each program is loaded and held by its own process — a samples/bpf
    loader (fork + exec, libbpf's probes, a map, a socket, the program: ProcessBpfLoad),
    all exiting in a last phase ``exit``; with ``insns`` a forked child per filter, as
    ``gpalloc live bpf-procs`` runs them (ProcessFilter; closed-rR = the children exit).
    """
    if insns is None:
        if per_process:
            return {"bpf_load": [ProcessBpfLoad(64 * pages, jited_bytes_for_pages(pages))
                                 for _ in range(programs)],
                    "exit": [ExitProcesses()]}
        return {"bpf_load": [BpfLoad(64 * pages, jited_bytes_for_pages(pages))
                             for _ in range(programs)]}
    phases = {}
    for r in range(1, rounds + 1):
        phases[f"loaded-r{r}"] = ([ProcessFilter(insns)] if per_process
                                  else [SocketFilter(insns)]) * programs
        phases[f"closed-r{r}"] = [ExitProcesses()] if per_process else [CloseSockets()]
    return phases


def bpf_churn_events(loads, pages=1):
    """Load-and-close churn like test_tag, of P-page programs."""
    return {"bpf_churn": [BpfLoad(64 * pages, jited_bytes_for_pages(pages), lifetime=0)
                          for _ in range(loads)]}


__all__ = ["KEEP", "Calibration", "fedora_bpf_events", "modules_events", "bpf_load_events",
           "bpf_churn_events"]
