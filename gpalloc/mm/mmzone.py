"""Nodes and zones (include/linux/mmzone.h, mm/page_alloc.c boot code), x86-64 layout.

Simplified physical layout (documented in the notebooks): node ``n`` owns the
contiguous range ``[n*node_mem, (n+1)*node_mem)``; ZONE_DMA is the first 16 MiB,
ZONE_DMA32 runs to 4 GiB, ZONE_NORMAL above; there are no E820 holes.  Memblock
reservations that never reach the buddy allocator are: the first 1 MiB, the
kernel image (48 MiB at 16 MiB) and each node's memmap (64 bytes per 4 KiB page,
at the top of the node, as memblock allocates top-down).
"""

from bisect import bisect_right
from collections import OrderedDict
from math import isqrt

from .gfp import MIGRATE_MOVABLE, MIGRATE_PCPTYPES, ZONE_DMA, ZONE_DMA32, ZONE_NAMES, ZONE_NORMAL
from .page import MAX_ORDER, PAGE_SHIFT

NUMA_NO_NODE = -1   # include/linux/numa.h: "any node" (the local one, or round-robin)
ZONE_LIMITS = {ZONE_DMA: (16 << 20) >> PAGE_SHIFT, ZONE_DMA32: (4 << 30) >> PAGE_SHIFT}
KERNEL_IMAGE = ((16 << 20) >> PAGE_SHIFT, (64 << 20) >> PAGE_SHIFT)  # [start, end) pfns
sysctl_lowmem_reserve_ratio = (256, 256, 32)
watermark_scale_factor = 10
WMARK_MIN, WMARK_LOW, WMARK_HIGH = 0, 1, 2
ZONE_BOOSTED_WATERMARK = "ZONE_BOOSTED_WATERMARK"   # enum zone_flags bit (zone->flags)


class Layout:
    """Which node and zone each pfn belongs to, and which pfns memblock reserved."""

    def __init__(self, nodes, node_pages):
        self.nodes, self.node_pages = nodes, node_pages
        self.max_pfn = nodes * node_pages
        self.reserved = []  # sorted, disjoint [start, end) pfn ranges
        for nid in range(nodes):
            start = nid * node_pages
            end = start + node_pages
            memmap = -(-node_pages * 64 // 4096)           # pages of struct page
            memmap = -(-memmap // 512) * 512                # memblock: 2 MiB aligned
            if nid == 0:
                self.reserved.append((0, 256))              # real-mode / BIOS area
                self.reserved.append(KERNEL_IMAGE)
            self.reserved.append((end - memmap, end))
        self.reserved.sort()
        self._res_starts = [r[0] for r in self.reserved]
        self.zone_spans = []   # (nid, zid, start, end)
        for nid in range(nodes):
            start, end = nid * node_pages, (nid + 1) * node_pages
            lo = start
            for zid in (ZONE_DMA, ZONE_DMA32, ZONE_NORMAL):
                hi = min(end, ZONE_LIMITS.get(zid, end))
                if hi > lo:
                    self.zone_spans.append((nid, zid, lo, hi))
                    lo = hi

    def pfn_node_zone(self, pfn):
        """page_to_nid() and page_zonenum() for a pfn."""
        if not 0 <= pfn < self.max_pfn:
            raise ValueError(f"pfn {pfn:#x} is outside RAM (0..{self.max_pfn:#x})")
        if pfn < ZONE_LIMITS[ZONE_DMA]:
            zid = ZONE_DMA
        elif pfn < ZONE_LIMITS[ZONE_DMA32]:
            zid = ZONE_DMA32
        else:
            zid = ZONE_NORMAL
        return pfn // self.node_pages, zid

    def is_reserved(self, pfn):
        """memblock_is_reserved() for a pfn."""
        i = bisect_right(self._res_starts, pfn) - 1
        return i >= 0 and pfn < self.reserved[i][1]

    def free_ranges(self, start, end):
        """The unreserved [start, end) ranges inside a span (what boot frees to the buddy)."""
        out, cur = [], start
        for rs, re in self.reserved:
            if re <= cur or rs >= end:
                continue
            if rs > cur:
                out.append((cur, rs))
            cur = max(cur, re)
        if cur < end:
            out.append((cur, end))
        return out


class per_cpu_pages:
    """struct per_cpu_pages: one CPU's order-0 cache for one zone, a list per migratetype.

    Each list is a Python list whose *end* is the kernel list's head (LIFO end).
    """

    __slots__ = ("count", "high", "batch", "lists")
    list_orders = (0,) * MIGRATE_PCPTYPES   # the order of the pages on each list

    def __init__(self, high, batch):
        self.count, self.high, self.batch = 0, high, batch
        self.lists = [[] for _ in range(MIGRATE_PCPTYPES)]

    def list_for(self, mt, order=0):
        """The list a page of this migratetype (order 0 only, in v5.11) sits on."""
        if order:
            raise ValueError(f"order: v5.11 per-CPU lists hold order-0 pages, got {order}")
        return self.lists[mt]


class zone:
    """struct zone: free_area lists, watermarks, lowmem_reserve and per-CPU lists.

    ``free_area[order][mt]`` is a dict used as an ordered set of head pfns: the
    dict's last key is the kernel list's head, its first key the tail (a list that
    receives a tail insertion becomes an OrderedDict: page_alloc.add_to_free_list_tail).
    Order-10 Movable blocks that boot freed and nobody touched since are kept as
    ``pristine`` pfn runs that sit at the list's tail (boot frees to the tail, ascending).
    """

    def __init__(self, nid, zid, start, end):
        self.nid, self.zid, self.name = nid, zid, ZONE_NAMES[zid]
        self.zone_start_pfn, self.zone_end_pfn = start, end
        self.managed_pages = 0
        self.free_area = [[{} for _ in range(MIGRATE_PCPTYPES)] for _ in range(MAX_ORDER)]
        self.nr_free = [0] * MAX_ORDER
        self.pristine = []          # [[next_pfn, end_pfn], ...] of order-10 Movable blocks
        self.nr_free_pages = 0      # NR_FREE_PAGES (buddy only; pcp pages are not counted)
        self._watermark = [0, 0, 0]
        self.watermark_boost = 0    # pages added to every watermark (boost_watermark())
        self.flags = set()          # zone->flags: ZONE_BOOSTED_WATERMARK
        self.lowmem_reserve = [0, 0, 0]
        self.pageblock_mt = {}      # pageblock index → migratetype (default Movable)
        self.pcp = {}               # cpu → per_cpu_pages
        self.pcp_high, self.pcp_batch = 0, 1
        # compaction (mm/compaction.c): cached scanner positions, deferral, skip bits
        self.compact_cached_free_pfn = (end - 1) & ~511      # pageblock_start_pfn(end - 1)
        self.compact_cached_migrate_pfn = [start, start]     # [async, sync]
        self.compact_init_migrate_pfn, self.compact_init_free_pfn = start, (end - 1) & ~511
        self.compact_considered = self.compact_defer_shift = self.compact_order_failed = 0
        self.compact_blockskip_flush = False
        self.pageblock_skip = set()  # PB_migrate_skip: pageblock indexes compaction skips

    def __repr__(self):
        return f"<zone Node {self.nid} {self.name} free={self.nr_free_pages}>"

    def min_wmark_pages(self):
        """min_wmark_pages(): the min watermark plus watermark_boost (v5.11 mmzone.h)."""
        return self._watermark[WMARK_MIN] + self.watermark_boost

    def low_wmark_pages(self):
        """low_wmark_pages(): the low watermark plus watermark_boost (v5.11 mmzone.h)."""
        return self._watermark[WMARK_LOW] + self.watermark_boost

    def high_wmark_pages(self):
        """high_wmark_pages(): the high watermark plus watermark_boost (v5.11 mmzone.h)."""
        return self._watermark[WMARK_HIGH] + self.watermark_boost


def zone_batchsize(managed):
    """zone_batchsize(): pcp batch from zone size (≈ 1/4 MiB worth, power of two − 1)."""
    batch = managed // 1024
    if batch * 4096 > 1 << 20:
        batch = (1 << 20) // 4096
    batch //= 4
    if batch < 1:
        batch = 1
    n = batch + batch // 2
    return (1 << (n.bit_length() - 1)) - 1 if n > 1 else 0


def setup_per_zone_wmarks(zones):
    """__setup_per_zone_wmarks() with init_per_zone_wmark_min()'s min_free_kbytes."""
    lowmem_pages = sum(z.managed_pages for z in zones)
    lowmem_kbytes = lowmem_pages * 4
    min_free_kbytes = min(max(isqrt(lowmem_kbytes * 16), 128), 262144)
    pages_min = min_free_kbytes >> 2
    for z in zones:
        tmp = pages_min * z.managed_pages // lowmem_pages
        gap = max(tmp >> 2, z.managed_pages * watermark_scale_factor // 10000)
        z._watermark = [tmp, tmp + gap, tmp + 2 * gap]


def setup_per_zone_lowmem_reserve(nodes_zones):
    """setup_per_zone_lowmem_reserve(): pages a lower zone keeps back from higher-zone requests."""
    for zones in nodes_zones:
        by_id = {z.zid: z for z in zones}
        for z in zones:
            z.lowmem_reserve = [0, 0, 0]
            total = 0
            for j in range(z.zid + 1, 3):
                if j in by_id:
                    total += by_id[j].managed_pages
                z.lowmem_reserve[j] = total // sysctl_lowmem_reserve_ratio[z.zid]


def get_pageblock_migratetype(zone, pfn):
    """get_pageblock_migratetype(): every pageblock starts Movable at boot."""
    return zone.pageblock_mt.get(pfn >> 9, MIGRATE_MOVABLE)


class lruvec:
    """struct lruvec, reduced to what the model reclaims: page-cache extents, oldest first.

    ``pfn → order`` in LRU order, plus an index for picking a random extent in O(1)
    (background churn frees random ones; reclaim takes the oldest).
    """

    def __init__(self):
        self._lru = OrderedDict()
        self._keys, self._pos = [], {}
        self.nr_pages = 0

    def __len__(self):
        return len(self._lru)

    def __contains__(self, pfn):
        return pfn in self._lru

    def __iter__(self):
        return iter(self._lru)

    def add(self, pfn, order):
        """Add an extent as the newest (tail)."""
        self._lru[pfn] = order
        self._pos[pfn] = len(self._keys)
        self._keys.append(pfn)
        self.nr_pages += 1 << order

    def remove(self, pfn):
        """Take an extent off the LRU; returns its order."""
        order = self._lru.pop(pfn)
        i = self._pos.pop(pfn)
        last = self._keys.pop()
        if last != pfn:
            self._keys[i] = last
            self._pos[last] = i
        self.nr_pages -= 1 << order
        return order

    def oldest(self):
        """The extent reclaim takes next."""
        return next(iter(self._lru))

    def random(self, rng):
        """A random extent (for churn)."""
        return self._keys[rng.randrange(len(self._keys))]

    def make_newest(self, pfn):
        """Move an extent to the tail (it was just used)."""
        self._lru.move_to_end(pfn)
