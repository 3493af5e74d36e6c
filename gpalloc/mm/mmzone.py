"""Nodes and zones (include/linux/mmzone.h, mm/page_alloc.c boot code), x86-64 layout.

Two physical layouts (``Layout(..., layout=...)``):

* ``"flat"`` (the model's original, simplified one): node ``n`` owns the contiguous range
  ``[n*node_mem, (n+1)*node_mem)``; ZONE_DMA is the first 16 MiB, ZONE_DMA32 runs to
  4 GiB, ZONE_NORMAL above; there are no E820 holes.
* ``"qemu-q35"`` / ``"qemu-pc"``: a QEMU x86 guest's RAM as the firmware's E820 map gives
  it (docs/reference/v5.11-fragmentation.md §5.3): QEMU's ``pc_q35_init()``
  (hw/i386/pc_q35.c) puts 2 GiB below 4 GiB when RAM ≥ 2.75 GiB, ``pc_init1()``
  (hw/i386/pc_piix.c) 3 GiB when RAM ≥ 3.5 GiB; the rest starts at 4 GiB.  The PCI hole
  between ``lowmem`` and 4 GiB, the E820 holes below 1 MiB (pfn 0 and the EBDA/BIOS area
  0x9f000–0xfffff) and the firmware's reserved top of low RAM are *holes*: inside a zone's
  span, not present.  With RAM above 4 GiB the kernel reserves the 64 MiB swiotlb bounce
  buffer below 4 GiB (v5.11 arch/x86/kernel/pci-swiotlb.c ``pci_swiotlb_detect_4gb()``,
  kernel/dma/swiotlb.c ``swiotlb_init()``: ``memblock_alloc_low`` of ``IO_TLB_DEFAULT_SIZE``).
  Simplification: the direct map covers the holes too (the kernel maps E820 RAM only), as
  for a captured machine's holes (gpalloc.workloads.from_proc.CapturedLayout).

Memblock reservations that never reach the buddy allocator are, in both: the first 1 MiB,
the kernel image (48 MiB at 16 MiB) and each node's memmap (64 bytes per 4 KiB page, at the
top of the node, as memblock allocates top-down).
"""

from bisect import bisect_right
from collections import OrderedDict
from math import isqrt

from .gfp import MIGRATE_MOVABLE, MIGRATE_PCPTYPES, ZONE_DMA, ZONE_DMA32, ZONE_NAMES, ZONE_NORMAL
from .page import MAX_ORDER, PAGE_SHIFT, pageblock_order

pageblock_nr_pages = 1 << pageblock_order

NUMA_NO_NODE = -1   # include/linux/numa.h: "any node" (the local one, or round-robin)
ZONE_LIMITS = {ZONE_DMA: (16 << 20) >> PAGE_SHIFT, ZONE_DMA32: (4 << 30) >> PAGE_SHIFT}
KERNEL_IMAGE = ((16 << 20) >> PAGE_SHIFT, (64 << 20) >> PAGE_SHIFT)  # [start, end) pfns
sysctl_lowmem_reserve_ratio = (256, 256, 32)
watermark_scale_factor = 10
WMARK_MIN, WMARK_LOW, WMARK_HIGH = 0, 1, 2
ZONE_BOOSTED_WATERMARK = "ZONE_BOOSTED_WATERMARK"   # enum zone_flags bit (zone->flags)
LAYOUTS = ("flat", "qemu-q35", "qemu-pc")
GiB_PAGES = (1 << 30) >> PAGE_SHIFT
MAX_DMA32_PFN = (4 << 30) >> PAGE_SHIFT
# QEMU's split of guest RAM below 4 GiB (docs/reference/v5.11-fragmentation.md §5.3):
# (RAM at or above which the split applies, lowmem then) — q35: pc_q35_init()
# "ram_size >= 0xb0000000 → lowmem 0x80000000"; pc/i440fx: pc_init1()
# "ram_size >= 0xe0000000 → lowmem 0xc0000000" (gigabyte_align, current machine types).
QEMU_LOWMEM = {"qemu-q35": (0xB0000000 >> PAGE_SHIFT, 0x80000000 >> PAGE_SHIFT),
               "qemu-pc": (0xE0000000 >> PAGE_SHIFT, 0xC0000000 >> PAGE_SHIFT)}
# SeaBIOS's E820 map below 1 MiB: pfn 0 is not memory to the kernel (the DMA zone starts
# at pfn 1) and 0x9fc00–0xfffff is reserved (EBDA, VGA, BIOS; the partial page at 0x9f000
# is dropped): 4095 spanned − 97 = 3,998 present pages, as every QEMU capture's zoneinfo
# shows (data/machines/debian11-5.10-qemu/zoneinfo.txt: DMA spanned 4095, present 3998).
E820_LOW_HOLES = ((0, 1), (0x9F, 0x100))
# The top of low RAM the firmware keeps (ACPI tables, reserved): the 2 GiB guest's DMA32
# ends at pfn 0x7ffdd, 35 pages short of 2 GiB (same capture: DMA32 start 4096 + spanned
# 520,157 = 0x7ffdd).
E820_LOWMEM_TOP_RESERVED = 0x80000 - 0x7FFDD
IO_TLB_DEFAULT_PAGES = (64 << 20) >> PAGE_SHIFT   # swiotlb: IO_TLB_DEFAULT_SIZE = 64 MiB


class Layout:
    """Which node and zone each pfn belongs to, which pfns are holes and which memblock reserved.

    ``layout``: one of LAYOUTS (the module docstring says what each models).  ``holes``
    are E820 holes (not present); ``reserved`` holds the holes and every memblock
    reservation (not managed): present = spanned − holes, managed = present − the rest.
    """

    def __init__(self, nodes, node_pages, layout="flat"):
        if layout not in LAYOUTS:
            raise ValueError(f"layout: unknown layout {layout!r}; known: {LAYOUTS}")
        self.nodes, self.node_pages, self.layout = nodes, node_pages, layout
        ram = nodes * node_pages
        self.holes = []
        if layout == "flat":
            self.lowmem = ram
        else:
            threshold, split = QEMU_LOWMEM[layout]
            self.lowmem = split if ram >= threshold else ram
            top = min(self.lowmem, ram)
            self.holes = [*E820_LOW_HOLES, (top - E820_LOWMEM_TOP_RESERVED, top)]
            if ram > self.lowmem:
                self.holes.append((self.lowmem, MAX_DMA32_PFN))
        self.max_pfn = self.ram_to_pfn(ram - 1) + 1
        # node n: guest RAM [n*node_pages, (n+1)*node_pages), holes inside its span
        self.node_spans = [(self.ram_to_pfn(n * node_pages),
                            self.ram_to_pfn((n + 1) * node_pages - 1) + 1)
                           for n in range(nodes)]
        self._node_starts = [s for s, _ in self.node_spans]
        self.reserved = list(self.holes)  # sorted, disjoint [start, end) pfn ranges
        for nid, (_start, end) in enumerate(self.node_spans):
            memmap = -(-node_pages * 64 // 4096)           # pages of struct page
            memmap = -(-memmap // 512) * 512                # memblock: 2 MiB aligned
            if nid == 0:
                self.reserved.append((0, 256))              # real-mode / BIOS area
                self.reserved.append(KERNEL_IMAGE)
            self.reserved.append((end - memmap, end))
        if self.holes and self.max_pfn > MAX_DMA32_PFN:    # swiotlb, below the top hole
            top = min(self.lowmem, ram) - E820_LOWMEM_TOP_RESERVED
            self.reserved.append((top - IO_TLB_DEFAULT_PAGES, top))
        self.reserved = _merge_ranges(self.reserved)
        self._res_starts = [r[0] for r in self.reserved]
        self.zone_spans = []   # (nid, zid, start, end)
        for nid, (start, end) in enumerate(self.node_spans):
            lo = start
            for zid in (ZONE_DMA, ZONE_DMA32, ZONE_NORMAL):
                hi = min(end, ZONE_LIMITS.get(zid, end))
                if hi > lo:
                    self.zone_spans.append((nid, zid, lo, hi))
                    lo = hi

    def ram_to_pfn(self, index):
        """The pfn of the index-th page of guest RAM (RAM above ``lowmem`` starts at 4 GiB)."""
        if index < self.lowmem:
            return index
        return index - self.lowmem + MAX_DMA32_PFN

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
        if not self.holes:
            return pfn // self.node_pages, zid
        return bisect_right(self._node_starts, pfn) - 1, zid

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

    def present_pages(self, start, end):
        """zone->present_pages for a span: its pages minus the E820 holes in it."""
        return (end - start) - sum(max(0, min(end, he) - max(start, hs))
                                   for hs, he in self.holes)


def _merge_ranges(ranges):
    """Sorted, disjoint [start, end) ranges covering the same pfns."""
    out = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
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


def init_per_zone_wmark_min(zones):
    """init_per_zone_wmark_min() (v5.11 mm/page_alloc.c): min_free_kbytes = √(lowmem kB × 16).

    Clamped to 128 kB … 256 MiB (v5.11's upper bound is 262,144 kB); lowmem = every zone's
    managed pages (64-bit: no highmem).
    """
    lowmem_kbytes = sum(z.managed_pages for z in zones) * 4
    return min(max(isqrt(lowmem_kbytes * 16), 128), 262144)


def set_recommended_min_free_kbytes(zones, min_free_kbytes):
    """set_recommended_min_free_kbytes() (v5.11 mm/khugepaged.c): THP's min_free_kbytes.

    Run when khugepaged starts (THP ``enabled`` = always or madvise): for every populated
    zone up to gfp_zone(GFP_USER) (ZONE_NORMAL), two pageblocks free plus
    MIGRATE_PCPTYPES² pageblocks for fragmentation avoidance — 512 × nr_zones × (2 + 9)
    pages — capped at 5 % of nr_free_buffer_pages() (managed − high watermark, summed over
    the zones), and used only when larger than the current value.  With DMA, DMA32 and
    Normal populated: 16,896 pages = 67,584 kB (docs/reference/v5.11-fragmentation.md §5.1,
    confirmed by /proc/sys/vm/min_free_kbytes on the 6.18 VM here).
    """
    populated = [z for z in zones if z.managed_pages and z.zid <= ZONE_NORMAL]
    recommended = pageblock_nr_pages * len(populated) * (2 + MIGRATE_PCPTYPES * MIGRATE_PCPTYPES)
    buffer_pages = sum(max(0, z.managed_pages - z.high_wmark_pages()) for z in populated)
    recommended = min(recommended, buffer_pages // 20) << (PAGE_SHIFT - 10)
    return max(recommended, min_free_kbytes)


def setup_per_zone_wmarks(zones, thp=False):
    """__setup_per_zone_wmarks() from min_free_kbytes; returns min_free_kbytes.

    min_free_kbytes is init_per_zone_wmark_min()'s, then — with ``thp`` (khugepaged
    running) — set_recommended_min_free_kbytes()'s, which recomputes the watermarks.
    """
    min_free_kbytes = init_per_zone_wmark_min(zones)
    _set_wmarks(zones, min_free_kbytes)
    if thp:
        min_free_kbytes = set_recommended_min_free_kbytes(zones, min_free_kbytes)
        _set_wmarks(zones, min_free_kbytes)
    return min_free_kbytes


def _set_wmarks(zones, min_free_kbytes):
    """__setup_per_zone_wmarks(): min shared by managed pages, low/high gaps above it."""
    lowmem_pages = sum(z.managed_pages for z in zones)
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
