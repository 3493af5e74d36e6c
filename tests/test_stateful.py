"""Stateful property test: random operation sequences through a Machine.

Hypothesis drives vmalloc / module_alloc / set_memory_* / vfree / alloc_pages /
free_pages / drop_caches / shrink_slab / memory pressure / compaction / CPU switches / the
kernel's executable-memory callers (BPF programs, trampolines, ftrace, kprobes,
modules, through each design's seams) through one Machine per run, and calls
``m.check()`` after every step.  A run starts from (START):

* a small machine: 1–2 nodes of 256M–1G, or
* a live capture, ``Machine.from_proc``: data/measurements/b1-00-idle (the idle
  6.18 VM the measurements start from) and the data/machines captures with
  modules, with their nodes, 1G pages and module list (RAM scaled down to
  CAPTURE_NODE_MEM so a step stays cheap);

running one kernel (KERNELS): every registered design (gpalloc.designs.names())
and the RFC patch subsets that are not one (patches (1,) and (1, 2)), with the
design's options drawn too (both list_head variants, either nr_scanned variant).

Budgets (tests/hypothesis_profile.py): the CI profile runs at least MIN_STEPS
steps (counted, and asserted); ``GPALLOC_TEST_PROFILE=long`` (``make
stateful-long``) runs many more, randomised.  A failure shrinks to a short
sequence and prints it as Python to replay.

Extending: a new operation is one ``@rule`` method (a helper may go with it); what
it must not break is an ``@invariant``.  Both see ``self.m`` (the Machine) and the
test's own bookkeeping (``self.live`` areas, ``self.held_pages``).

Besides check(), the spec §10.3 invariants that check() does not cover from the
outside:

* DirectMap counters only move down a level (v5.11 never merges; a design
  with CPA merge-back may): DirectMap1G never grows, DirectMap4k never shrinks;
  the three cover RAM exactly; DirectMap4k kB == 4 × the number of 4K entries.
* Page accounting: MemFree + pcp + every live vmalloc area + grouped cache +
  page tables + pages the test holds + background page cache (Cached) and
  kernel blocks == MemTotal (so never more than MemTotal).
* VmallocUsed == the pages of all live areas; the test's own areas are among
  them with the size it asked for.
* With patch 2 a cached page is never mapped by a live area.
* set_memory_x/nx never touch the direct map; ro/rw change the alias too.
* After vfree of a VM_FLUSH_RESET_PERMS area every page's alias is a 4K,
  present+RW PTE; with grouping every page is back in the cache.

The test plays a well-behaved kernel caller: it never makes a page RW and X
at once (x only on pages that are RO, rw only on pages that are NX), and it
restores RW+NX before a vfree of an area without VM_FLUSH_RESET_PERMS (or sets
the flag when the restore fails).
"""

import time
from pathlib import Path

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from hypothesis_profile import LONG, budget, profile

from gpalloc import GFP_KERNEL, NUMA_NO_NODE, VM_FLUSH_RESET_PERMS, VM_GROUP_PAGES, Machine
from gpalloc import designs as registry
from gpalloc.arch.x86.module import MODULES_END
from gpalloc.arch.x86.pgtable_types import _PAGE_NX, _PAGE_PRESENT, _PAGE_RW, PG_LEVEL_4K
from gpalloc.designs.v5_11 import Linux511
from gpalloc.kernel import fork as _fork
from gpalloc.mm import compaction
from gpalloc.mm.gfp import __GFP_ZERO, GFP_HIGHUSER_MOVABLE, gfp_zone
from gpalloc.mm.page import PAGE_OFFSET, PAGE_SIZE
from gpalloc.mm.page_alloc import build_zonelist, prep_new_page
from gpalloc.mm.slab import slab_model_pages
from gpalloc.mm.vmalloc import VMALLOC_END, busy_areas
from gpalloc.procfs import read_proc_dir
from gpalloc.workloads.events import (
    KEEP,
    BpfLoad,
    FtraceTrampoline,
    KprobePage,
    ModuleLoad,
    Trampoline,
)
from gpalloc.workloads.process import PROCESS_COSTS

# Module level on purpose: a name starting with "__" inside a class body is mangled.
GFP_KERNEL_ZERO = GFP_KERNEL | __GFP_ZERO
MAX_AREA_PAGES = 40
P_RW = _PAGE_PRESENT | _PAGE_RW
ENOMEM, EFAULT = 12, 14
# (nodes, node_mem): small enough to run out of memory.  2 × 1G is the only shape with a
# 1G direct-map entry (the first 1G never is one), so it is listed twice.
SHAPES = [(1, "256M"), (2, "256M"), (1, "512M"), (2, "512M"), (2, "1G"), (2, "1G")]
ROOT = Path(__file__).resolve().parents[1]
# Live captures to start from, parsed once: the idle measurement machine, and the
# captures that list modules (loaded at boot by from_proc).
CAPTURES = {name: read_proc_dir(ROOT / path) for name, path in (
    ("b1-00-idle", "data/measurements/b1-00-idle/phases/00-idle"),
    ("debian11-5.10-qemu", "data/machines/debian11-5.10-qemu"),
    ("rhcos418-hyperv", "data/machines/rhcos418-hyperv"),
    ("ubuntu1404-3.13", "data/machines/ubuntu1404-3.13"))}
CAPTURE_NODE_MEM = "1G"
# Half the runs from a small machine, half from a capture.
STARTS = st.one_of(st.tuples(st.just("shape"), st.sampled_from(SHAPES)),
                   st.tuples(st.just("capture"), st.sampled_from(list(CAPTURES))))
# Every kernel: each registered design by name, and each RFC patch subset that is not one
# (patches () is design "5.11", (1, 2, 3) is "rfc").
KERNELS = ([("design", name) for name in registry.names()]
           + [("patches", p) for p, cls in registry.BY_PATCHES.items()
              if cls not in registry.REGISTRY.values()])
# Executable memory the kernel's callers ask for, as workload events (lifetime in ticks).
LIFETIMES = st.sampled_from([0, 1, 3, KEEP])
EVENTS = st.one_of(
    st.builds(BpfLoad, st.integers(1, 4096), st.integers(1, 3 * PAGE_SIZE), lifetime=LIFETIMES),
    st.builds(Trampoline, lifetime=LIFETIMES),
    st.builds(FtraceTrampoline, lifetime=LIFETIMES),
    st.builds(KprobePage, lifetime=LIFETIMES),
    st.builds(ModuleLoad, st.sampled_from(["m0", "m1", "m2"]),
              st.tuples(*[st.integers(0, 3)] * 4).filter(lambda c: c[0] > 0),
              st.tuples(*[st.integers(0, 2)] * 3), lifetime=st.sampled_from([1, 3])))
MIN_STEPS = budget(ci=10_000, long=200_000)   # over all KERNELS
SETTINGS = profile(max_examples=budget(ci=20, long=150),
                   stateful_step_count=budget(ci=100, long=250))


class Area:
    """What the test knows about one live vmalloc area."""

    def __init__(self, addr, npages, grouped, reset_perms):
        self.addr, self.npages = addr, npages
        self.grouped = grouped            # pages come from (and go back to) the grouped cache
        self.reset_perms = reset_perms    # VM_FLUSH_RESET_PERMS set
        self.maybe_w = [True] * npages    # page may be writable (vmalloc PTE and alias)
        self.maybe_x = [False] * npages   # page may be executable
        self.touched = False              # any set_memory_* call

    def end(self):
        return self.addr + (self.npages + 1) * PAGE_SIZE   # + guard page

    def __repr__(self):
        return f"Area({self.addr:#x}, {self.npages}p)"


class Held:
    """A block the test got from alloc_pages."""

    def __init__(self, page, order):
        self.page, self.order = page, order

    def __repr__(self):
        return f"Held(pfn={self.page.pfn:#x}, order={self.order})"


def _directmap(m):
    mi = m.meminfo()
    return mi["DirectMap4k"], mi["DirectMap2M"], mi.get("DirectMap1G", 0)


def _cached_pfns(m):
    """pfns of every page waiting in the grouped cache."""
    g = m.k.design
    if getattr(g, "grouped_pages_lru", None) is None:
        return set()
    out = set()
    for nlru in g.grouped_pages_lru.node:
        for item in nlru.lru.list:
            page = m.k.pages.virt_to_page(item) if g.list_head == "contents" else item
            out.add(page.pfn)
    return out


def _merges_back(m):
    """Does this design's CPA merge split mappings back (so DirectMap4k may shrink)?"""
    return type(m.design).cpa_after_change is not Linux511.cpa_after_change


class GpallocStateMachine(RuleBasedStateMachine):
    areas = Bundle("areas")
    held = Bundle("held")
    tasks = Bundle("tasks")
    kernel = ("design", "5.11")   # test_stateful runs one subclass per entry of KERNELS
    steps = runs = 0   # over every run of a test: rules run (after boot), runs
    starts = set()     # where the runs started

    def __init__(self):
        super().__init__()
        self.m = None
        self.live = {}        # addr → Area
        self.freed = []       # addresses of areas already vfree'd
        self.held_pages = 0   # pages held through alloc_pages
        self.prev_dm = None
        self.pressured = False

    # ------------------------------------------------------------ setup
    @initialize(start=STARTS, list_head=st.sampled_from(["contents", "struct_page"]),
                nr_scanned_quirk=st.booleans(), seed=st.integers(0, 3),
                cpu=st.sampled_from([3, 0, 1, 2]))
    def boot(self, start, list_head, nr_scanned_quirk, seed, cpu):
        how, what = self.kernel
        cls = registry.design_class(what) if how == "design" else registry.from_patches(what)
        wanted = dict(list_head=list_head, nr_scanned_quirk=nr_scanned_quirk)
        kw = {how: what, "seed": seed, **{k: v for k, v in wanted.items() if k in cls.OPTIONS}}
        kind, where = start
        if kind == "shape":
            nodes, node_mem = where
            self.m = Machine(nodes=nodes, node_mem=node_mem, **kw)
        else:
            self.m = Machine.from_proc(CAPTURES[where], node_mem=CAPTURE_NODE_MEM, **kw)
        self.m.cpu = cpu % self.m.k.nr_cpus   # 3: start on the last node (its 1G entry)
        self.prev_dm = _directmap(self.m)
        type(self).starts.add(start)

    # ------------------------------------------------------------ helpers
    def _node(self, node):
        return NUMA_NO_NODE if node == NUMA_NO_NODE else min(node, self.m.k.nr_nodes - 1)

    def _grouping(self, vm_flags):
        g = self.m.k.design
        return bool(vm_flags & VM_GROUP_PAGES) and getattr(g, "grouped_page_en", False)

    def _new_area(self, addr, size, grouped, reset_perms):
        npages = -(-size // PAGE_SIZE)
        vm = self.m.find_vm_area(addr)
        assert vm is not None and vm.addr == addr, f"no vm_struct at {addr:#x}"
        assert vm.nr_pages == npages, f"{vm!r}: expected {npages} pages"
        assert addr not in self.live, f"{addr:#x} handed out twice"
        for a in self.live.values():
            assert addr + (npages + 1) * PAGE_SIZE <= a.addr or addr >= a.end(), \
                f"new area {addr:#x} overlaps live {a!r}"
        area = Area(addr, npages, grouped, reset_perms)
        self.live[addr] = area
        return area

    def _alias(self, area):
        """(level, prot) of the direct-map alias of every page of an area."""
        vm = self.m.find_vm_area(area.addr)
        return [self.m.k.dmap.lookup_address(p.pfn) for p in vm.pages]

    def _expect_unchanged_dm(self, before, what):
        assert _directmap(self.m) == before, \
            f"{what} changed DirectMap {before} -> {_directmap(self.m)}"

    def _stable(self):
        """Snapshot for operations that must not touch the direct map."""
        return _directmap(self.m)

    # ------------------------------------------------------------ vmalloc
    @rule(target=areas, size=st.integers(1, MAX_AREA_PAGES * PAGE_SIZE))
    def vmalloc(self, size):
        before, used = self._stable(), self.m.meminfo()["VmallocUsed"]
        addr = self.m.vmalloc(size)
        self._expect_unchanged_dm(before, "vmalloc")
        if addr is None:
            assert self.m.meminfo()["VmallocUsed"] == used
            return multiple()
        return self._new_area(addr, size, False, False).addr

    @rule(target=areas, size=st.integers(1, MAX_AREA_PAGES * PAGE_SIZE),
          node=st.integers(-1, 1),
          vm_flags=st.sampled_from([0, VM_GROUP_PAGES, VM_FLUSH_RESET_PERMS,
                                    VM_GROUP_PAGES | VM_FLUSH_RESET_PERMS]),
          zero=st.booleans())
    def vmalloc_node_range(self, size, node, vm_flags, zero):
        gfp = GFP_KERNEL_ZERO if zero else GFP_KERNEL
        grouped = self._grouping(vm_flags)
        before, nwarn = self._stable(), len(self.m.warnings)
        used = self.m.meminfo()["VmallocUsed"]
        addr = self.m.vmalloc_node_range(size, gfp=gfp, vm_flags=vm_flags,
                                         node=self._node(node))
        if addr is not None or not vm_flags & VM_FLUSH_RESET_PERMS:
            # (a failure part-way vfrees the pages it got: with the flag, that resets them)
            self._expect_unchanged_dm(before, "vmalloc_node_range")
        if grouped and zero:   # RFC 2/3: exact GFP_GROUPED or WARN + NULL
            assert addr is None, "VM_GROUP_PAGES with __GFP_ZERO must fail"
            assert any("Unsupported GFP flags for VM_GROUP_PAGES" in w
                       for w in self.m.warnings[nwarn:]), self.m.warnings[nwarn:]
        if addr is None:
            assert self.m.meminfo()["VmallocUsed"] == used
            return multiple()
        return self._new_area(addr, size, grouped, bool(vm_flags & VM_FLUSH_RESET_PERMS)).addr

    @rule(target=areas, size=st.integers(1, MAX_AREA_PAGES * PAGE_SIZE))
    def module_alloc(self, size):
        before = self._stable()
        addr = self.m.module_alloc(size)
        self._expect_unchanged_dm(before, "module_alloc")
        if addr is None:
            return multiple()
        grouped = self._grouping(self.m.k.design.module_vm_flags)
        return self._new_area(addr, size, grouped, False).addr

    @rule(addr=areas)
    def set_vm_flush_reset_perms(self, addr):
        before = self._stable()
        assert self.m.set_vm_flush_reset_perms(addr)
        self._expect_unchanged_dm(before, "set_vm_flush_reset_perms")
        self.live[addr].reset_perms = True

    # ------------------------------------------------------------ permissions
    def _range(self, area, whole, start, count):
        if whole:
            return 0, area.npages
        i = start % area.npages
        return i, min(count, area.npages - i)

    def _set_memory(self, area, op, i, n, overrun=False):
        """set_memory_{op} on pages [i, i+n) of an area (+ the guard page if overrun), checked.

        Returns 0 or -errno: -ENOMEM when a split finds no page-table page, -EFAULT (with
        the kernel's "zero pte" WARN) when the range runs into the guard page.
        """
        m = self.m
        fn = {"ro": m.set_memory_ro, "rw": m.set_memory_rw,
              "x": m.set_memory_x, "nx": m.set_memory_nx}[op]
        area.touched = True
        if op == "rw":
            area.maybe_w[i:i + n] = [True] * n
        elif op == "x":
            area.maybe_x[i:i + n] = [True] * n
        alias_before, dm_before, nwarn = self._alias(area), _directmap(m), len(m.warnings)
        ret = fn(area.addr + i * PAGE_SIZE, n + overrun)
        alias_after = self._alias(area)
        if op in ("x", "nx"):   # NX-only changes skip the alias
            assert alias_after == alias_before, f"set_memory_{op} changed the direct map"
            assert _directmap(m) == dm_before, f"set_memory_{op} changed DirectMap counters"
        if overrun:
            assert ret in (-EFAULT, -ENOMEM), f"set_memory_{op} into the guard page: {ret}"
        else:
            assert ret in (0, -ENOMEM), f"set_memory_{op}: {ret}"
        if ret == -EFAULT:
            assert any("CPA: called for zero pte" in w for w in m.warnings[nwarn:])
        if ret:
            return ret
        vm = m.find_vm_area(area.addr)
        for j in range(i, i + n):
            vprot, (_, dprot) = vm.prot[j], alias_after[j]
            if op == "ro":
                assert not vprot & _PAGE_RW and not dprot & _PAGE_RW, f"ro page {j}"
                area.maybe_w[j] = False
            elif op == "rw":
                assert vprot & _PAGE_RW and dprot & P_RW == P_RW, f"rw page {j}"
            elif op == "x":
                assert not vprot & _PAGE_NX, f"x page {j}"
            else:
                assert vprot & _PAGE_NX, f"nx page {j}"
                area.maybe_x[j] = False
        return 0

    def _set_memory_rule(self, op, addr, whole, start, count, overrun):
        """set_memory_{op} on a whole area or part of it; overrun: one page into the guard."""
        area = self.live[addr]
        i, n = self._range(area, whole, start, count)
        overrun = overrun and i + n == area.npages
        # W^X as a kernel caller keeps it: x only after ro, rw only after nx.
        if op == "x" and any(area.maybe_w[i:i + n]):
            if self._set_memory(area, "ro", i, n, overrun):
                return
        if op == "rw" and any(area.maybe_x[i:i + n]):
            if self._set_memory(area, "nx", i, n, overrun):
                return
        self._set_memory(area, op, i, n, overrun)

    @rule(addr=areas, whole=st.booleans(), start=st.integers(0, MAX_AREA_PAGES - 1),
          count=st.integers(1, MAX_AREA_PAGES), overrun=st.booleans())
    def set_memory_ro(self, addr, whole, start, count, overrun):
        self._set_memory_rule("ro", addr, whole, start, count, overrun)

    @rule(addr=areas, whole=st.booleans(), start=st.integers(0, MAX_AREA_PAGES - 1),
          count=st.integers(1, MAX_AREA_PAGES), overrun=st.booleans())
    def set_memory_rw(self, addr, whole, start, count, overrun):
        self._set_memory_rule("rw", addr, whole, start, count, overrun)

    @rule(addr=areas, whole=st.booleans(), start=st.integers(0, MAX_AREA_PAGES - 1),
          count=st.integers(1, MAX_AREA_PAGES), overrun=st.booleans())
    def set_memory_x(self, addr, whole, start, count, overrun):
        self._set_memory_rule("x", addr, whole, start, count, overrun)

    @rule(addr=areas, whole=st.booleans(), start=st.integers(0, MAX_AREA_PAGES - 1),
          count=st.integers(1, MAX_AREA_PAGES), overrun=st.booleans())
    def set_memory_nx(self, addr, whole, start, count, overrun):
        self._set_memory_rule("nx", addr, whole, start, count, overrun)

    def _stale(self):
        """Addresses of vfree'd areas that no live area (the test's or a caller's) covers now."""
        spans = [(v.addr, v.addr + v.size) for v in busy_areas(self.m.k)]
        return [a for a in self.freed if not any(s <= a < e for s, e in spans)]

    @precondition(lambda self: self.freed)
    @rule(op=st.sampled_from(["ro", "rw", "x", "nx"]))
    def set_memory_freed(self, op):
        """set_memory_* on an address vfree'd earlier: WARN and -EFAULT, nothing changes."""
        m = self.m
        stale = self._stale()
        if not stale:
            return
        before, nwarn = _directmap(m), len(m.warnings)
        ret = getattr(m, f"set_memory_{op}")(stale[-1], 1)
        assert ret == -EFAULT, f"set_memory_{op} on freed {stale[-1]:#x}: {ret}"
        assert any("CPA: called for zero pte" in w for w in m.warnings[nwarn:])
        self._expect_unchanged_dm(before, f"set_memory_{op} on a freed area")

    # ------------------------------------------------------------ vfree
    @rule(addr=consumes(areas))
    def vfree(self, addr):
        m = self.m
        area = self.live[addr]
        if area.touched and not area.reset_perms:
            # Give the pages back as the allocator handed them out: RW+NX.
            if self._set_memory(area, "nx", 0, area.npages) \
                    or self._set_memory(area, "rw", 0, area.npages):
                assert m.set_vm_flush_reset_perms(addr)
                area.reset_perms = True
        pages = list(m.find_vm_area(addr).pages)
        before, used = _directmap(m), m.meminfo()["VmallocUsed"]
        nwarn = len(m.warnings)
        m.vfree(addr)
        del self.live[addr]
        self.freed.append(addr)
        assert not [w for w in m.warnings[nwarn:] if "vfree" in w], m.warnings[nwarn:]
        assert m.find_vm_area(addr) is None, f"{addr:#x} still mapped after vfree"
        assert m.meminfo()["VmallocUsed"] == used - 4 * area.npages
        if not area.reset_perms:
            self._expect_unchanged_dm(before, "vfree without VM_FLUSH_RESET_PERMS")
        else:   # §10.3: every alias split to 4K and reset to present+RW
            # (a split that found no page-table page leaves the large entry as it was)
            # (a design with CPA merge-back may merge the reset entries back)
            nomem = any("page allocation failure" in w for w in m.warnings[nwarn:])
            for p in pages:
                level, prot = m.k.dmap.lookup_address(p.pfn)
                assert prot & P_RW == P_RW and (level == PG_LEVEL_4K or nomem
                                                or _merges_back(m)), \
                    f"pfn {p.pfn:#x} after reset-perms vfree: level {level} prot {prot:#x}"
        if area.grouped:
            cached = _cached_pfns(m)
            assert all(p.pfn in cached for p in pages), "grouped page not back in the cache"

    @rule(kind=st.sampled_from(["freed", "misaligned", "far_vmalloc", "far_module",
                                "direct_map", "null"]),
          offset=st.integers(1, PAGE_SIZE - 1))
    def vfree_bogus(self, kind, offset):
        """vfree of an address no live area starts at: a WARN, never an exception."""
        m = self.m
        if kind == "null":   # vfree(NULL) is fine and silent
            nwarn = len(m.warnings)
            m.vfree(None)
            m.vfree(0)
            assert len(m.warnings) == nwarn
            return

        def in_live(a):
            return any(x.addr <= a < x.end() for x in self.live.values())

        addr = None
        if kind == "freed":
            stale = self._stale()
            addr = stale[-1] if stale else None
        elif kind == "misaligned" and self.live:
            addr = next(iter(self.live)) + offset
        elif kind == "direct_map":
            addr = PAGE_OFFSET + (m.k.max_pfn // 2) * PAGE_SIZE
        elif kind == "far_module":
            addr = MODULES_END - PAGE_SIZE
        if addr is None:
            addr = (VMALLOC_END + 1) - PAGE_SIZE
        assert kind == "misaligned" or not in_live(addr)
        before, used, nwarn = _directmap(m), m.meminfo()["VmallocUsed"], len(m.warnings)
        m.vfree(addr)   # must WARN, not raise
        new = m.warnings[nwarn:]
        assert len(new) == 1 and "Trying to vfree()" in new[0], new
        assert m.meminfo()["VmallocUsed"] == used
        self._expect_unchanged_dm(before, "bogus vfree")
        for a in self.live:
            assert m.find_vm_area(a) is not None, f"bogus vfree({addr:#x}) freed {a:#x}"

    # ------------------------------------------------------------ page allocator
    @rule(target=held, order=st.integers(0, 10),
          gfp=st.sampled_from([GFP_KERNEL, GFP_HIGHUSER_MOVABLE]), node=st.integers(-1, 1))
    def alloc_pages(self, order, gfp, node):
        before = self._stable()
        page = self.m.alloc_pages(gfp, order, self._node(node))
        self._expect_unchanged_dm(before, "alloc_pages")
        if page is None:
            return multiple()
        assert page._refcount == 1 and page.owner == "kernel"
        assert page.pfn % (1 << order) == 0, f"order-{order} block at pfn {page.pfn:#x}"
        self.held_pages += 1 << order
        return Held(page, order)

    @rule(target=held, order=st.integers(7, 10), share=st.sampled_from([4, 2, 1]),
          gfp=st.sampled_from([GFP_KERNEL, GFP_HIGHUSER_MOVABLE]))
    def alloc_pages_many(self, order, share, gfp):
        """Memory pressure: 1/share of RAM in order-`order` blocks, or until one fails."""
        before, out = self._stable(), []
        for _ in range(self.m.k.max_pfn // share >> order):
            page = self.m.alloc_pages(gfp, order)
            if page is None:
                break
            self.held_pages += 1 << order
            out.append(Held(page, order))
        self._expect_unchanged_dm(before, "alloc_pages")
        return multiple(*out)

    @rule(h=consumes(held))
    def free_pages(self, h):
        before = self._stable()
        self.m.free_pages(h.page, h.order)
        self.held_pages -= 1 << h.order
        self._expect_unchanged_dm(before, "free_pages")

    # ------------------------------------------------------------ reclaim
    @rule(mode=st.sampled_from([1, 2, 3]))
    def drop_caches(self, mode):
        before = self._stable()
        self.m.drop_caches(mode)
        self._expect_unchanged_dm(before, "drop_caches")
        if mode & 1:
            assert self.m.meminfo()["Cached"] == 0, "drop_caches(1) left page cache"
        if mode & 2:   # §10.5 S7: the cache is emptied
            assert self.m.stats().get("grouped_cache_pages", 0) == 0, "drop_caches(2) left cache"

    @precondition(lambda self: not self.pressured)   # a refill costs ~0.1 s: once a run
    @rule(level=st.sampled_from([0.5, 0.9, 1.0]))
    def set_memory_pressure(self, level):
        """Background page cache + unmovable kernel blocks down to a free-memory target."""
        self.pressured = True
        before = self._stable()
        self.m.set_memory_pressure(level)
        self._expect_unchanged_dm(before, "set_memory_pressure")

    @precondition(lambda self: self.pressured)   # churns the background memory
    @rule(steps=st.integers(1, 50))
    def age(self, steps):
        before = self._stable()
        self.m.age(steps)
        self._expect_unchanged_dm(before, "age")

    @rule(nid=st.integers(0, 1), priority=st.integers(0, 12))
    def shrink_slab(self, nid, priority):
        before, cached = self._stable(), self.m.stats().get("grouped_cache_pages", 0)
        freed = self.m.shrink_slab(min(nid, self.m.k.nr_nodes - 1), priority)
        self._expect_unchanged_dm(before, "shrink_slab")
        assert 0 <= freed <= cached
        assert self.m.stats().get("grouped_cache_pages", 0) == cached - freed

    @rule(order=st.integers(1, 10), prio=st.sampled_from([0, 1, 2]), kcompactd=st.booleans(),
          gfp=st.sampled_from([GFP_KERNEL, GFP_HIGHUSER_MOVABLE]))
    def compact(self, order, prio, kcompactd, gfp):
        """Direct compaction (try_to_compact_pages at a priority) or a kcompactd wake on the
        CPU's node: pages move, the page cache keeps its size, the direct map is untouched."""
        k = self.m.k
        before, cached = self._stable(), self.m.meminfo()["Cached"]
        nid = k.numa_node_id()
        if kcompactd:
            compaction.wakeup_kcompactd(k, nid, order, max(z.zid for z in k.node_zones[nid]))
        else:
            zonelist = build_zonelist(k, nid, gfp_zone(gfp))
            rc, page = compaction.try_to_compact_pages(k, gfp, order, 0, zonelist,
                                                       gfp_zone(gfp), prio)
            if page is not None:   # a captured block: the caller owns it, and frees it
                prep_new_page(page, order)
                self.m.free_pages(page, order)
            assert page is None or rc == compaction.COMPACT_SUCCESS
        self._expect_unchanged_dm(before, "compaction")
        assert self.m.meminfo()["Cached"] == cached, "compaction changed the page cache size"

    @rule(cpu=st.integers(0, 3))
    def set_cpu(self, cpu):
        self.m.cpu = cpu % self.m.k.nr_cpus
        assert self.m.k.numa_node_id() == self.m.cpu // self.m.k.cpus_per_node

    # ------------------------------------------------------------ executable-memory callers
    @rule(events=st.lists(EVENTS, min_size=1, max_size=6))
    def play(self, events):
        """The kernel's own callers (BPF, trampolines, ftrace, kprobes, modules): each design's
        execmem/JIT seams; what they free with a lifetime is freed by the end (rcu_barrier)."""
        before = {a.addr for a in busy_areas(self.m.k)}
        self.m.play(events)
        for addr, area in self.live.items():   # the test's own areas are untouched
            assert self.m.find_vm_area(addr) is not None and addr in before, area

    # ------------------------------------------------------------ processes
    @rule(target=tasks, cost=st.sampled_from(sorted(PROCESS_COSTS)), exec_=st.booleans())
    def fork(self, cost, exec_):
        """kernel_clone() (+ exec): stack, PGD, page tables, slab objects, anon pages."""
        k = self.m.k
        anon = k.stat["anon_pages"]
        task = _fork.kernel_clone(k, PROCESS_COSTS[cost])
        if task is None:   # out of memory: what it took is given back
            assert k.stat["anon_pages"] == anon
            return multiple()
        assert task.mm.pgd.order == PROCESS_COSTS[cost].pgd_order
        if exec_:
            _fork.exec_mmap(k, task, PROCESS_COSTS[cost])
        return task

    @rule(task=consumes(tasks))
    def exit(self, task):
        """do_exit(): the mm, the per-task objects (after RCU), the stack (to the CPU cache)."""
        _fork.do_exit(self.m.k, task)
        assert task.mm is None and not task.stack

    # ------------------------------------------------------------ invariants
    @invariant()
    def count_step(self):   # invariants run after boot and after every rule
        type(self).steps += 1

    def teardown(self):
        type(self).runs += 1

    @invariant()
    def model_check(self):
        if self.m is not None:
            self.m.check()

    @invariant()
    def directmap_only_moves_down(self):
        if self.m is None:
            return
        m = self.m
        d4k, d2m, d1g = now = _directmap(m)
        p4k, _p2m, p1g = self.prev_dm
        if not _merges_back(m):
            assert d1g <= p1g, f"DirectMap1G grew {p1g} -> {d1g}"
            assert d4k >= p4k, f"DirectMap4k shrank {p4k} -> {d4k}"
        assert d4k + d2m + d1g == m.k.max_pfn * 4, "DirectMap does not cover RAM"
        dm = m.k.dmap
        assert d4k == 4 * sum(len(t) for t in dm.pte.values()), "DirectMap4k vs PTE entries"
        assert d1g == (1 << 20) * len(dm.gb), "DirectMap1G vs 1G entries"
        self.prev_dm = now

    @invariant()
    def pages_add_up(self):
        if self.m is None:
            return
        m = self.m
        mi, st_ = m.meminfo(), m.stats()
        pcp = sum(p.count for z in m.k.zones for p in z.pcp.values())
        busy = {a.addr: a.nr_pages for a in busy_areas(m.k)}
        for addr, area in self.live.items():
            assert busy.get(addr) == area.npages, f"{area!r} is not live with its size"
        in_areas = sum(busy.values())   # the test's, and the callers' (modules, BPF, packs)
        assert mi["VmallocUsed"] == 4 * in_areas, \
            f"VmallocUsed {mi['VmallocUsed']} kB, live areas hold {in_areas} pages"
        slab = sum(blocks.nr_pages for blocks in m.k.kernel_blocks)   # unmovable background
        slab += sum(anon.nr_pages for anon in m.k.anon)                # anonymous background
        procs = (slab_model_pages(m.k) + m.k.stat["page_table_user_pages"]
                 + m.k.stat["anon_pages"])   # processes' kernel memory (kernel/fork.py)
        used = (pcp + in_areas + st_.get("grouped_cache_pages", 0) + st_["page_table_pages"]
                + self.held_pages + slab + procs) * 4 + mi["Cached"]
        assert mi["MemFree"] + used <= mi["MemTotal"], f"{mi} + {used} kB in use"
        assert mi["MemFree"] + used == mi["MemTotal"], \
            f"MemFree {mi['MemFree']} + in use {used} != MemTotal {mi['MemTotal']} kB"

    @invariant()
    def cached_pages_not_mapped(self):
        if self.m is None or getattr(self.m.k.design, "grouped_pages_lru", None) is None:
            return
        cached = _cached_pfns(self.m)
        for addr in self.live:
            for p in self.m.find_vm_area(addr).pages:
                assert p.pfn not in cached, f"cached pfn {p.pfn:#x} mapped by {addr:#x}"


@pytest.mark.parametrize("kernel", KERNELS, ids=[f"{how}={what}" for how, what in KERNELS])
def test_stateful(kernel):
    """Every kernel its own test: at least MIN_STEPS / len(KERNELS) steps, from small
    machines and from captures; prints the count (``pytest -rP``)."""
    sm = type("GpallocStateMachine", (GpallocStateMachine,), {"kernel": kernel})
    sm.steps, sm.runs, sm.starts = 0, 0, set()
    start = time.monotonic()
    run_state_machine_as_test(sm, settings=SETTINGS)
    steps = sm.steps - sm.runs   # the check after boot is not a step
    print(f"stateful {kernel[0]}={kernel[1]}: {steps} steps in {sm.runs} runs, "
          f"{time.monotonic() - start:.0f} s, {len(sm.starts)} starts "
          f"({'long' if LONG else 'CI'} profile)")
    assert steps >= -(-MIN_STEPS // len(KERNELS))
    assert {kind for kind, _ in sm.starts} == {"shape", "capture"}
