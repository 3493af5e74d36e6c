"""The modelled kernel's global state and its boot sequence (start_kernel, in miniature).

Every function named after a kernel function takes this object as its first
argument ``k`` — the model's stand-in for the kernel's globals.
"""

import random
from collections import Counter, deque

from .arch.x86.set_memory import kernel_physical_mapping_init
from .mm.mmzone import (
    Layout,
    lruvec,
    setup_per_zone_lowmem_reserve,
    setup_per_zone_wmarks,
    zone,
    zone_batchsize,
)
from .mm.page import PAGES_PER_2M, PageStore
from .mm.page_alloc import free_boot_memory
from .mm.vmalloc import vmap_state

KNOWN_FAULTS = ("register_shrinker",)
TRACE_LEN = 2000


class Kernel:
    """All state of one modelled machine, booted by the constructor (start_kernel).

    ``design`` (a gpalloc.designs.Design) is the kernel design this machine runs;
    its own state lives on it, and it is initialised last, like an initcall.
    ``layout``: a gpalloc.mm.mmzone.Layout (or a capture's); ``thp``: khugepaged runs,
    so min_free_kbytes is set_recommended_min_free_kbytes()'s.
    """

    def __init__(self, *, nodes, node_pages, cpus_per_node, gbpages, boot_4k_regions, seed,
                 design, kaslr, faults, layout=None, thp=False):
        self.nr_nodes, self.node_pages = nodes, node_pages
        # a layout of the model's own, or one taken from a capture (workloads.from_proc)
        self.layout = layout or Layout(nodes, node_pages)
        self.max_pfn = self.layout.max_pfn
        self.cpus_per_node = cpus_per_node
        self.nr_cpus = nodes * cpus_per_node
        self.cpu = 0
        self.gbpages = gbpages
        self.design = design
        self.kaslr = kaslr
        self.faults = frozenset(faults)
        self.seed = seed
        self.rng = random.Random(seed)
        self.stat = Counter()
        self.warnings = []
        self.warned_once = set()
        self.events = deque(maxlen=TRACE_LEN)
        self.shrinker_list = []
        self.sockets = []   # sockets a workload holds open (gpalloc.net.filter), oldest first
        self.lru = [lruvec() for _ in range(nodes)]   # background page-cache extents
        self.kernel_blocks = [lruvec() for _ in range(nodes)]   # background unmovable blocks
        self.anon = [lruvec() for _ in range(nodes)]   # background anonymous memory (no swap)
        self.in_reclaim = False
        self.clock, self.work_seq, self.deferred = 0, 0, []   # kernel/workqueue.py
        self.module_load_offset = None
        self.wx_exempt = set()   # callers v5.11 leaves RW+X (BPF trampolines)
        self.pages = PageStore(self.layout)
        self.node_zones = [[] for _ in range(nodes)]
        self.zones = []
        for nid, zid, start, end in self.layout.zone_spans:
            z = zone(nid, zid, start, end)
            free_boot_memory(self, z, self.layout.free_ranges(start, end))
            z.pcp_batch = max(1, zone_batchsize(z.managed_pages))
            z.pcp_high = 6 * z.pcp_batch
            self.node_zones[nid].append(z)
            self.zones.append(z)
        self._zone_by = {(z.nid, z.zid): z for z in self.zones}
        # zone_of()'s fast path: 2 MiB region → zone, except regions a zone boundary cuts
        self._region_zone = {}
        self._cut_regions = frozenset(
            pfn >> 9 for _, _, start, end in self.layout.zone_spans for pfn in (start, end)
            if pfn & 511) | ({self.max_pfn >> 9} if self.max_pfn & 511 else frozenset())
        self.alloc_ctx = {}   # (gfp, preferred node) → zonelist, zone, migratetype, flags
        self.thp = thp   # khugepaged runs (THP enabled = always or madvise)
        self.min_free_kbytes = setup_per_zone_wmarks(self.zones, thp)
        setup_per_zone_lowmem_reserve(self.node_zones)
        self.boot_4k_regions = frozenset(boot_4k_regions)
        self.dmap = kernel_physical_mapping_init(self, boot_4k_regions, gbpages)
        self.vmap = vmap_state(self.nr_cpus)
        design.init(self)

    def numa_node_id(self):
        """numa_node_id(): the node of the CPU we are running on."""
        return self.cpu // self.cpus_per_node

    def check_nid(self, nid):
        """Refuse a node that does not exist (ValueError naming it)."""
        if isinstance(nid, bool) or not isinstance(nid, int) or not 0 <= nid < self.nr_nodes:
            raise ValueError(f"node: {nid!r} does not exist (nodes 0..{self.nr_nodes - 1}, "
                             "or NUMA_NO_NODE = -1)")

    def zone_of(self, pfn):
        """page_zone(): the zone of a pfn, remembered per 2 MiB region.

        A region no zone boundary cuts lies in one zone, so after its first pfn the answer
        is one dict look-up; the reading path is :meth:`page_zone` (tests/test_fast_paths.py).
        """
        zone = self._region_zone.get(pfn >> 9)
        if zone is None:
            zone = self.page_zone(pfn)
            if pfn >> 9 not in self._cut_regions:
                self._region_zone[pfn >> 9] = zone
        return zone

    def page_zone(self, pfn):
        """page_zone(): page_to_nid() and page_zonenum() → the struct zone."""
        return self._zone_by[self.layout.pfn_node_zone(pfn)]

    def trace(self, event, **fields):
        """A tracepoint: recent events are kept for the notebooks' timelines."""
        self.events.append((event, fields))


def boot_4k_region_list(boot_4k_bytes, max_pfn):
    """The 2 MiB regions boot maps with 4K pages: region 0, then upward from 16 MiB."""
    n = boot_4k_bytes // (PAGES_PER_2M * 4096)
    regions = [0] + [8 + i for i in range(n - 1)]
    if regions[-1] >= max_pfn // PAGES_PER_2M:
        raise ValueError(f"boot_4k: {boot_4k_bytes} bytes of boot-time 4K mappings do not fit "
                         "in the first node")
    return regions
