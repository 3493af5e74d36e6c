"""Machine: the facade the notebooks, the CLI and the tests use.

It validates its configuration up front (the reason is in the error), boots a
:class:`~gpalloc.state.Kernel`, and forwards each call to the kernel-named
function that models it.  Views (``meminfo``, ``stats``, /proc text) only read.
Every public method goes through :func:`_kernel_call`: a WARN the call caused is also
issued as a Python :class:`~gpalloc.bug.KernelWarning`, and after a
:class:`~gpalloc.bug.KernelBUG` the machine refuses every further call.  Kernel
addresses come back as :class:`KernelAddress`, an int that prints in hex.
"""

import functools
import inspect
import sys
import warnings as _warnings

from . import designs as _designs
from . import views as _views
from .arch.x86 import set_memory as _cpa
from .arch.x86.module import module_alloc as _module_alloc
from .arch.x86.module import module_memfree as _module_memfree
from .arch.x86.pgtable_types import PAGE_KERNEL
from .bug import KernelBUG, KernelWarning
from .check import check as _check
from .mm import page_alloc as _pa
from .mm import vmalloc as _vm
from .mm import vmscan as _vmscan
from .mm.gfp import GFP_KERNEL, gfp_t
from .mm.mmzone import LAYOUTS as _LAYOUTS
from .mm.mmzone import NUMA_NO_NODE
from .mm.mmzone import Layout as _Layout
from .mm.page import MAX_ORDER, OWNER_KERNEL, PAGE_SIZE
from .mm.vmstat import ALWAYS_REPORTED
from .proc import meminfo as _meminfo
from .proc import pagetypeinfo_showblockcount as _blockcount
from .proc import pagetypeinfo_showmixedcount as _mixedcount
from .proc import proc_buddyinfo as _buddyinfo
from .proc import proc_meminfo as _proc_meminfo
from .proc import proc_vmallocinfo as _vmallocinfo
from .state import KNOWN_FAULTS, Kernel, boot_4k_region_list
from .units import memparse
from .workloads import background as _bg
from .workloads import events as _events
from .workloads import from_proc as _from_proc
from .workloads import machine_state as _machine_state

_vmalloc_node_range = _vm.__vmalloc_node_range   # module level: no class-name mangling
_free_pages = _pa.__free_pages
_UNSET = object()   # a design option the caller did not give


def _check_int(name, value, lo, hi=None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected a whole number, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f"{lo}..{hi}" if hi is not None else f"≥ {lo}"
        raise ValueError(f"{name}: must be {bound}, got {value}")
    return value


class KernelAddress(int):
    """A kernel virtual address: a plain int that prints as hex (repr, str, f"{addr}")."""

    def __repr__(self):
        return f"{int(self):#x}"

    __str__ = __repr__

    def __format__(self, spec):
        return repr(self) if not spec else int.__format__(self, spec)


def _address(addr):
    """addr as a KernelAddress, None (the kernel's NULL) as None."""
    return None if addr is None else KernelAddress(addr)


class Machine:
    """One modelled x86-64 machine running one kernel design (v5.11 by default).

    ``design``: the kernel design, by name (``gpalloc.designs.names()``: "5.11", "rfc",
    "5.18", "cpa-merge", "6.15", "6.18", ...) or a Design class or instance.
    ``patches``: sugar for the RFC's patches on v5.11 — () is plain v5.11, (1,) adds
    list_lru_get_mru, (1, 2) the grouped page cache, (1, 2, 3) module_alloc using it
    (the same as ``design="rfc"``).  Give one of ``design`` and ``patches``.
    Options of the RFC's grouped cache (patches (1, 2) and up):
    ``list_head``: where the cache keeps its free-list link — "contents" (RFC) or
    "struct_page" (the reviewers' alternative).  ``unmapped_cache`` (not the RFC): cached
    pages are also removed from the direct map, the idea the cache would have to grow
    into — with in-page list_heads that faults, which is the reviewers' point.
    ``nr_scanned_quirk``: keep the RFC shrinker's ``sc->nr_scanned += isolated``.
    ``faults``: inject failures, e.g. ("register_shrinker",).
    ``boot_4k``: how much of the direct map boot already maps with 4K pages (2 MiB
    multiples; real machines show 30–150 MB, e.g. 30,720 kB on a 6.18 VM with no
    modules, data/machines/fcvm-6.18/meminfo.txt).
    ``layout``: the physical memory layout (gpalloc.mm.mmzone.LAYOUTS): "flat" (the
    model's simplified one: DMA32 to 4 GiB, no holes), "qemu-q35" or "qemu-pc" (a QEMU
    guest's E820 map: 2 or 3 GiB below the PCI hole, the rest from 4 GiB).
    ``thp``: transparent hugepages enabled (khugepaged runs), so min_free_kbytes is
    set_recommended_min_free_kbytes()'s (67,584 kB with three zones).
    """

    def __init__(self, nodes=1, node_mem="4G", gbpages=True, cpus_per_node=2, seed=0,
                 patches=None, boot_4k="30M", kaslr=True, faults=(), design=None,
                 list_head=_UNSET, nr_scanned_quirk=_UNSET, unmapped_cache=_UNSET,
                 layout="flat", thp=False):
        _check_int("nodes", nodes, 1, 64)
        _check_int("cpus_per_node", cpus_per_node, 1, 256)
        _check_int("seed", seed, 0)
        mem = memparse(node_mem, "node_mem")
        if mem % (4 << 20) or mem < (256 << 20):
            raise ValueError(f"node_mem: must be a multiple of 4M and at least 256M, "
                             f"got {node_mem!r}")
        b4k = memparse(boot_4k, "boot_4k")
        if b4k % (2 << 20):
            raise ValueError(f"boot_4k: must be a multiple of 2M (whole 2 MiB regions), "
                             f"got {boot_4k!r}")
        for f in faults:
            if f not in KNOWN_FAULTS:
                raise ValueError(f"faults: unknown fault {f!r}; known: {KNOWN_FAULTS}")
        options = {key: value for key, value in (("list_head", list_head),
                                                 ("nr_scanned_quirk", nr_scanned_quirk),
                                                 ("unmapped_cache", unmapped_cache))
                   if value is not _UNSET}
        d = _designs.create(design, patches, **options)
        if layout not in _LAYOUTS:
            raise ValueError(f"layout: unknown layout {layout!r}; known: {_LAYOUTS}")
        if not isinstance(thp, bool):
            raise ValueError(f"thp: expected True or False, got {thp!r}")
        node_pages = mem // PAGE_SIZE
        self.config = dict(nodes=nodes, node_mem=node_mem, gbpages=bool(gbpages),
                           cpus_per_node=cpus_per_node, seed=seed, design=d.name,
                           patches=_designs.patches_of(type(d)), boot_4k=boot_4k,
                           kaslr=bool(kaslr), faults=tuple(faults), layout=layout, thp=thp,
                           **{key: getattr(d, key) for key in d.OPTIONS})
        self.capture = None   # set by from_proc(): the parsed /proc data it was built from
        self.k = Kernel(nodes=nodes, node_pages=node_pages, cpus_per_node=cpus_per_node,
                        gbpages=bool(gbpages),
                        boot_4k_regions=boot_4k_region_list(b4k, nodes * node_pages),
                        seed=seed, design=d, kaslr=bool(kaslr), faults=faults,
                        layout=_Layout(nodes, node_pages, layout), thp=thp)

    @property
    def design(self):
        """The kernel design this machine runs (a gpalloc.designs.Design, with its state)."""
        return self.k.design

    @classmethod
    def from_proc(cls, source, load_modules=True, pressure=0.0, **kwargs):
        """A machine shaped like a real one: a folder of /proc captures or parsed data.

        Nodes, RAM, 1G pages and the module list come from the capture
        (gpalloc.workloads.from_proc says what is inferred and how); keyword
        arguments override, e.g. ``patches=(1, 2, 3)``.  ``pressure``: a level for the
        background memory before the modules load, or "capture" for the capture's own.
        """
        return _from_proc.from_proc(cls, source, load_modules, pressure, **kwargs)

    def __repr__(self):
        c = self.config
        kernel = f"patches={c['patches']}" if c["patches"] is not None \
            else f"design={c['design']!r}"
        return (f"Machine(nodes={c['nodes']}, node_mem={c['node_mem']!r}, "
                f"{kernel}, seed={c['seed']})")

    # ------------------------------------------------------------ CPUs
    @property
    def cpu(self):
        """The CPU the next call runs on (decides the local node and the per-CPU list)."""
        return self.k.cpu

    @cpu.setter
    def cpu(self, cpu):
        self.k.cpu = _check_int("cpu", cpu, 0, self.k.nr_cpus - 1)

    @property
    def nr_cpus(self):
        """num_possible_cpus(): nodes × cpus_per_node."""
        return self.k.nr_cpus

    # ------------------------------------------------------------ vmalloc
    def vmalloc(self, size, caller="vmalloc"):
        """vmalloc(size): address, or None on failure."""
        return _address(_vm.vmalloc(self.k, self._size(size), caller))

    def vmalloc_node_range(self, size, align=PAGE_SIZE, start=None, end=None, gfp=GFP_KERNEL,
                           prot=PAGE_KERNEL, vm_flags=0, node=NUMA_NO_NODE, caller=None):
        """__vmalloc_node_range(); start/end None = the vmalloc range."""
        start = _vm.VMALLOC_START if start is None else start
        end = _vm.VMALLOC_END if end is None else end
        return _address(_vmalloc_node_range(self.k, self._size(size), align, start, end,
                                            gfp_t(gfp), prot, vm_flags, node,
                                            caller or "__vmalloc_node_range"))

    def module_alloc(self, size, caller="module_alloc"):
        """module_alloc(size) (RFC 3/3 adds VM_GROUP_PAGES when patch 3 is applied)."""
        return _address(_module_alloc(self.k, self._size(size), caller))

    def module_memfree(self, addr):
        """module_memfree(addr)."""
        _module_memfree(self.k, addr)

    def vfree(self, addr):
        """vfree(addr): a bad address is a WARN (a KernelWarning, and in .warnings)."""
        _vm.vfree(self.k, addr)

    def set_vm_flush_reset_perms(self, addr):
        """set_vm_flush_reset_perms(addr)."""
        return _vm.set_vm_flush_reset_perms(self.k, self._addr(addr))

    def set_memory_ro(self, addr, numpages):
        """set_memory_ro(): 0 or -errno."""
        return _cpa.set_memory_ro(self.k, self._addr(addr), self._npages(numpages))

    def set_memory_rw(self, addr, numpages):
        """set_memory_rw(): 0 or -errno."""
        return _cpa.set_memory_rw(self.k, self._addr(addr), self._npages(numpages))

    def set_memory_x(self, addr, numpages):
        """set_memory_x(): 0 or -errno."""
        return _cpa.set_memory_x(self.k, self._addr(addr), self._npages(numpages))

    def set_memory_nx(self, addr, numpages):
        """set_memory_nx(): 0 or -errno."""
        return _cpa.set_memory_nx(self.k, self._addr(addr), self._npages(numpages))

    def set_memory_np(self, addr, numpages):
        """set_memory_np(): 0 or -errno."""
        return _cpa.set_memory_np(self.k, self._addr(addr), self._npages(numpages))

    def set_memory_4k(self, addr, numpages):
        """set_memory_4k(): 0 or -errno."""
        return _cpa.set_memory_4k(self.k, self._addr(addr), self._npages(numpages))

    def find_vm_area(self, addr):
        """find_vm_area(addr): the vm_struct, or None."""
        return _vm.find_vm_area(self.k, self._addr(addr))

    # ------------------------------------------------------------ page allocator
    def alloc_pages(self, gfp=GFP_KERNEL, order=0, node=NUMA_NO_NODE):
        """alloc_pages_node(node, gfp, order): a struct page, or None."""
        _check_int("order", order, 0, MAX_ORDER - 1)
        if node == NUMA_NO_NODE:
            return _pa.alloc_pages(self.k, gfp_t(gfp), order)
        return _pa.alloc_pages_node(self.k, node, gfp_t(gfp), order)

    def free_pages(self, page, order=0):
        """__free_pages(page, order)."""
        _check_int("order", order, 0, MAX_ORDER - 1)
        if page is None or getattr(page, "_refcount", 0) <= 0 or page.owner != OWNER_KERNEL:
            raise ValueError(f"page: {page!r} is not a page this machine handed out "
                             "with alloc_pages")
        _free_pages(self.k, page, order)

    # ------------------------------------------------------------ reclaim
    def drop_caches(self, mode=3):
        """echo mode > /proc/sys/vm/drop_caches."""
        _vmscan.drop_caches(self.k, mode)

    def shrink_slab(self, nid=0, priority=_vmscan.DEF_PRIORITY, gfp=GFP_KERNEL):
        """shrink_slab(gfp, nid, NULL, priority): one pass over every shrinker; pages freed."""
        self.k.check_nid(nid)
        _check_int("priority", priority, 0, _vmscan.DEF_PRIORITY)
        return _vmscan.shrink_slab(self.k, gfp_t(gfp), nid, None, priority)

    def set_memory_pressure(self, level):
        """Fill memory with background page cache so free memory sits at the level (0.0–1.0)."""
        _bg.set_memory_pressure(self.k, level)

    def set_machine_state(self, name):
        """Set the background from a named real machine's capture (workloads.machine_state)."""
        _machine_state.apply_machine_state(self.k, name)

    def age(self, steps):
        """Background churn: free a random page-cache extent and allocate a new one, per step."""
        _bg.age(self.k, steps)

    def play(self, events, churn_per_event=0, progress=None, kernel_churn_per_event=0,
             migrate_every=0):
        """Run a list of workload events (gpalloc.workloads.events) on this machine."""
        _events.play(self.k, events, churn_per_event, progress,
                     kernel_churn_per_event=kernel_churn_per_event, migrate_every=migrate_every)

    def order9_free_blocks(self, node=None):
        """Free blocks that can serve an order-9 (2 MiB) request, on one node or all."""
        if node is not None:
            self.k.check_nid(node)
        return _bg.order9_free_blocks(self.k, node)

    def grouped_blocks(self):
        """Each replenished 2 MiB block: pages cached / in use / returned / reused, and split."""
        return self.k.design.grouped_blocks(self.k)

    def poison_check(self):
        """What a page-poisoning check of the grouped cache's free pages would report."""
        return self.k.design.poison_check(self.k)

    def grouped_cache_pfns(self, node):
        """pfns on one node's grouped-cache list, head (oldest) to tail (most recent)."""
        self.k.check_nid(node)
        return self.k.design.grouped_cache_pfns(self.k, node)

    def pools(self):
        """The design's own memory pools (grouped cache, packs, ROX chunks): a list of dicts."""
        return self.k.design.pools(self.k)

    # ------------------------------------------------------------ views
    def meminfo(self):
        """/proc/meminfo values (kB) as a dict."""
        return _meminfo(self.k)

    def proc_meminfo(self):
        """/proc/meminfo text."""
        return _proc_meminfo(self.k)

    def proc_buddyinfo(self):
        """/proc/buddyinfo text."""
        return _buddyinfo(self.k)

    def proc_vmallocinfo(self):
        """/proc/vmallocinfo text."""
        return _vmallocinfo(self.k)

    def stats(self):
        """Counters (gpalloc.mm.vmstat) and the design's own figures (e.g. the grouped cache)."""
        k = self.k
        out = {key: k.stat.get(key, 0) for key in (*ALWAYS_REPORTED, *k.design.stat_keys)}
        out.update({key: v for key, v in k.stat.items() if key not in out})
        out["page_table_pages"] = len(k.dmap.pt_pages)
        out.update(k.design.stats(k))
        return out

    def direct_map_regions(self):
        """One code per 2 MiB region of RAM, in physical order (for the direct-map picture).

        0 = inside a 1G mapping, 1 = a 2M mapping, 2 = mapped with 4K pages since boot,
        3 = split to 4K since boot.  Returns a numpy uint8 array.
        """
        return _views.direct_map_regions(self.k)

    def grouped_block_regions(self):
        """2 MiB region indexes of the blocks the grouped cache replenished from."""
        return sorted(b["pfn"] >> 9 for b in self.grouped_blocks())

    def buddyinfo(self):
        """/proc/buddyinfo as data: {(node, zone name): [free blocks of order 0..10]}."""
        return {(z.nid, z.name): list(z.nr_free) for z in self.k.zones}

    def pagetypeinfo(self):
        """/proc/pagetypeinfo's block counts: {(node, zone name): {migratetype: pageblocks}}."""
        return _blockcount(self.k)

    def mixed_pageblocks(self):
        """/proc/pagetypeinfo's mixed blocks (CONFIG_PAGE_OWNER): {(node, zone): {type: n}}.

        Pageblocks of each type that hold an allocated page of another type (the
        fallbacks that stole without claiming leave them).
        """
        return _mixedcount(self.k)

    def lookup_address(self, pfn):
        """lookup_address() of pfn's direct-map alias: (PG_LEVEL_4K/2M/1G, prot)."""
        self._pfn(pfn)
        return self.k.dmap.lookup_address(pfn)

    def struct_page(self, pfn):
        """pfn_to_page(): the struct page of a pfn, to read (writing it corrupts the model)."""
        self._pfn(pfn)
        return self.k.pages.pfn_to_page(pfn)

    def shrinkers(self):
        """The registered shrinkers (shrinker_list), in registration order."""
        return list(self.k.shrinker_list)

    def events(self, last=50):
        """The most recent tracepoint events (name, fields), oldest first."""
        return list(self.k.events)[-last:]

    @property
    def warnings(self):
        """Kernel-style WARN messages emitted so far."""
        return list(self.k.warnings)

    def check(self):
        """Raise gpalloc.InvariantError naming the first broken invariant."""
        _check(self.k)

    # ------------------------------------------------------------ helpers
    @staticmethod
    def _size(size):
        if isinstance(size, str):
            return memparse(size, "size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"size: must be a non-negative number of bytes or a size like "
                             f"'8K', got {size!r}")
        return size

    @staticmethod
    def _addr(addr):
        if isinstance(addr, bool) or not isinstance(addr, int) or addr < 0:
            raise ValueError(f"addr: expected a kernel virtual address (int), got {addr!r}")
        return addr

    def _pfn(self, pfn):
        return _check_int("pfn", pfn, 0, self.k.max_pfn - 1)

    @staticmethod
    def _npages(n):
        return _check_int("numpages", n, 0)


def _kernel_call(method):
    """Wrap a public Machine method: WARNs become KernelWarnings; a KernelBUG is final.

    Like the kernel after an oops, a machine that raised KernelBUG is left
    inconsistent, so every later call (check() included) raises KernelBUG naming the
    first one.  A call that WARNs issues each new message as a KernelWarning
    attributed to the caller's line, each time (the kernel prints every WARN; the
    model records WARN_ONCE once) — except when the caller is gpalloc itself
    (experiments, widgets, the CLI), which counts and shows .warnings its own way.
    The outermost call reports, so a method calling another reports once.
    """
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        if self._crashed:
            raise KernelBUG(f"this machine crashed earlier: {self._crashed}; "
                            "build a new Machine")
        if self._in_call:
            return method(self, *args, **kwargs)
        seen = len(self.k.warnings)
        self._in_call = True
        try:
            return method(self, *args, **kwargs)
        except KernelBUG as bug:
            self._crashed = str(bug)
            raise
        finally:
            self._in_call = False
            new = self.k.warnings[seen:]
            caller = sys._getframe(1)
            module = caller.f_globals.get("__name__", "")
            if new and module.partition(".")[0] != "gpalloc":
                for msg in new:
                    # a fresh registry each time: every WARN shows, filters still apply
                    _warnings.warn_explicit(KernelWarning(msg), KernelWarning,
                                            caller.f_code.co_filename, caller.f_lineno,
                                            module=module, registry={})
    return call


# Set here rather than in the class body, next to the one loop that needs them.
Machine._crashed = ""       # the first KernelBUG's message, once there was one
Machine._in_call = False
for _name, _member in list(vars(Machine).items()):
    if not _name.startswith("_") and inspect.isfunction(_member):
        setattr(Machine, _name, _kernel_call(_member))
