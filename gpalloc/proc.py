"""/proc views in kernel format: meminfo, buddyinfo, pagetypeinfo block counts, vmallocinfo.

pagetypeinfo also has the "Number of mixed blocks" table CONFIG_PAGE_OWNER prints.

Views only: every function reads the state through kernel-named accessors.
"""

from .mm.gfp import MIGRATE_MOVABLE, MIGRATE_TYPE_NAMES, MIGRATE_UNMOVABLE, ZONE_NAMES
from .mm.mmzone import get_pageblock_migratetype
from .mm.page import PAGE_SHIFT, PG_buddy, pageblock_order
from .mm.page_alloc import LRU_OWNERS, nr_free_pages, totalram_pages
from .mm.vmalloc import (
    VM_ALLOC,
    VM_DMA_COHERENT,
    VM_IOREMAP,
    VM_MAP,
    VM_UNINITIALIZED,
    VM_USERMAP,
    VMALLOC_END,
    VMALLOC_START,
    busy_areas,
    lazy_areas,
    vmalloc_nr_pages,
)


def meminfo(k):
    """The /proc/meminfo values the model knows, in kB (a dict)."""
    kb = 1 << (PAGE_SHIFT - 10)
    out = {
        "MemTotal": totalram_pages(k) * kb,
        "MemFree": nr_free_pages(k) * kb,
        "Cached": sum(lru.nr_pages for lru in k.lru) * kb,
        "VmallocTotal": (VMALLOC_END - VMALLOC_START + 1) >> 10,
        "VmallocUsed": vmalloc_nr_pages(k) * kb,
        "VmallocChunk": 0,
    }
    dm = k.dmap.kb()
    out["DirectMap4k"], out["DirectMap2M"] = dm["DirectMap4k"], dm["DirectMap2M"]
    if k.gbpages:   # arch_report_meminfo() prints DirectMap1G only with direct_gbpages
        out["DirectMap1G"] = dm["DirectMap1G"]
    return out


def proc_meminfo(k):
    """/proc/meminfo text: ``Label:`` padded to 16 columns, value in 8, then ``kB``."""
    return "".join(f"{name + ':':<16}{value:>8} kB\n" for name, value in meminfo(k).items())


def proc_buddyinfo(k):
    """/proc/buddyinfo: free blocks per order for each node and zone."""
    lines = []
    for z in k.zones:
        counts = "".join(f"{n:6d} " for n in z.nr_free)   # frag_show_print(): "%6lu "
        lines.append(f"Node {z.nid}, zone {ZONE_NAMES[z.zid]:>8} {counts}")
    return "\n".join(lines) + "\n"


def pagetypeinfo_showblockcount(k):
    """pagetypeinfo_showblockcount(): pageblocks of each migratetype, per node and zone.

    The "Number of blocks type" table of /proc/pagetypeinfo, as data:
    {(node, zone name): {"Unmovable": n, "Movable": n, "Reclaimable": n}}.
    """
    out = {}
    for z in k.zones:
        counts = dict.fromkeys(MIGRATE_TYPE_NAMES, 0)
        first = z.zone_start_pfn >> pageblock_order
        last = (z.zone_end_pfn - 1) >> pageblock_order
        for block in range(first, last + 1):
            counts[MIGRATE_TYPE_NAMES[get_pageblock_migratetype(z, block << pageblock_order)]] += 1
        out[(z.nid, ZONE_NAMES[z.zid])] = counts
    return out


def pagetypeinfo_showmixedcount(k):
    """pagetypeinfo_showmixedcount() (mm/page_owner.c): pageblocks holding another type's pages.

    The "Number of mixed blocks" table of /proc/pagetypeinfo (CONFIG_PAGE_OWNER), as
    data like pagetypeinfo_showblockcount(): a pageblock counts under its own type when
    at least one allocated page in it has another migratetype.  Simplification: the
    model keeps no page_owner gfp mask, so an allocated page's migratetype is Movable
    for LRU owners (page cache) and Unmovable for every other owner.
    """
    mixed = {}
    for page in k.pages.touched():
        if page._refcount <= 0 or page.page_type == PG_buddy:
            continue
        mt = MIGRATE_MOVABLE if page.owner in LRU_OWNERS else MIGRATE_UNMOVABLE
        zone = k.zone_of(page.pfn)
        last = (page.pfn + (1 << page.order) - 1) >> pageblock_order
        for block in range(page.pfn >> pageblock_order, last + 1):
            if get_pageblock_migratetype(zone, block << pageblock_order) != mt:
                mixed.setdefault(zone, set()).add(block)
    out = {}
    for z in k.zones:
        counts = dict.fromkeys(MIGRATE_TYPE_NAMES, 0)
        for block in mixed.get(z, ()):
            counts[MIGRATE_TYPE_NAMES[get_pageblock_migratetype(z, block << pageblock_order)]] += 1
        out[(z.nid, ZONE_NAMES[z.zid])] = counts
    return out


def proc_vmallocinfo(k):
    """/proc/vmallocinfo: one line per live area (5.11 s_show(), addresses unhashed)."""
    lines = []
    for v in busy_areas(k):
        parts = [f"0x{v.addr:016x}-0x{v.addr + v.size:016x} {v.size:>7}"]
        if v.caller:
            parts.append(f" {v.caller}")
        if v.nr_pages:
            parts.append(f" pages={v.nr_pages}")
        for bit, word in ((VM_IOREMAP, "ioremap"), (VM_ALLOC, "vmalloc"), (VM_MAP, "vmap"),
                          (VM_USERMAP, "user"), (VM_DMA_COHERENT, "dma-coherent")):
            if v.flags & bit:
                parts.append(f" {word}")
        if v.nested is not None:
            parts.append(" vpages")
        if not v.flags & VM_UNINITIALIZED:
            per_node = [0] * k.nr_nodes
            for page in v.pages:
                per_node[page.nid] += 1
            parts.extend(f" N{n}={c}" for n, c in enumerate(per_node) if c)
        lines.append("".join(parts))
    for va in lazy_areas(k):   # show_purge_info(): lazily freed, not yet purged
        size = va.va_end - va.va_start
        lines.append(f"0x{va.va_start:016x}-0x{va.va_end:016x} {size:>7} unpurged vm_area")
    return "\n".join(lines) + ("\n" if lines else "")
