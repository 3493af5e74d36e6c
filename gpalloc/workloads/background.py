"""Background memory: the page cache and anonymous memory that fill a real machine.

The notebooks' *memory pressure* knob.  ``set_memory_pressure(k, level)`` gives
back all background memory, fills every node down to its min watermark with
Movable "page cache" extents (GFP_HIGHUSER_MOVABLE without reclaim, so the fill
does not evict itself), then frees extents at random until free memory is at the
target: level 0.0 = an idle machine (everything free), 1.0 = nothing free above
the min watermark.  Random frees leave free memory scattered: the higher the
level, the fewer 2 MiB (order-9) blocks survive.  The surviving extents are put
on the LRU in random order (mixed lifetimes), so reclaim frees scattered memory.
``age(k, steps)`` is churn: each step frees one random extent and allocates a
fresh one.  A share of the background is unmovable kernel memory (slab, page
tables, stacks) so that unmovable pageblocks are spread through memory too.

Bulk simplification (said so in the notebooks): the kernel allocates page cache
one 4 KiB page at a time; the model allocates and frees it in extents of
32–512 KiB (orders 3–7, like readahead windows), so a few thousand objects stand
for gigabytes.  Extents are reclaimable: kswapd and direct reclaim evict the
oldest first.
"""

from ..mm.gfp import (
    __GFP_MEMALLOC,
    __GFP_NOWARN,
    __GFP_RECLAIM,
    __GFP_THISNODE,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    gfp_t,
)
from ..mm.page import OWNER_PAGECACHE, OWNER_SLAB
from ..mm.page_alloc import __free_pages, alloc_pages, alloc_pages_node

GFP_BACKGROUND_FILL = gfp_t((GFP_HIGHUSER_MOVABLE & ~__GFP_RECLAIM) | __GFP_NOWARN
                            | __GFP_THISNODE)
GFP_KERNEL_FILL = gfp_t((GFP_KERNEL & ~__GFP_RECLAIM) | __GFP_NOWARN | __GFP_THISNODE)
EXTENT_ORDERS = (3, 4, 5, 6, 7)
# Unmovable kernel memory (slab, page tables, kernel stacks) as a share of background
# pages: Slab + PageTables + KernelStack are a few percent of used memory on
# ordinary systems (e.g. /proc/meminfo of the captures in data/).  Orders 0–3 are
# the slab page sizes of the common caches.
KERNEL_SHARE = 0.04
KERNEL_ORDERS = (0, 0, 1, 2, 3)
# A freshly *booted* machine is not an empty one: by the time anything can call vmalloc,
# boot has unpacked the initramfs, started udev and systemd, filled and freed memory, and
# left slab, page tables and page cache behind.  The pressure level of such a machine:
# data/machines/debian11-5.10-qemu/meminfo.txt (v5.10, up 102 s) has
# 1 - MemFree/MemTotal = 1 - 1,473,248 / 2,030,236 = 0.27 of its RAM in use.
FRESH_BOOT_PRESSURE = 0.27


def _node_free(k, nid):
    return sum(z.nr_free_pages for z in k.node_zones[nid])


def _node_min(k, nid):
    return sum(z.min_wmark_pages() for z in k.node_zones[nid])


def _add(k, page, order, owner, pools):
    if page is None:
        return False
    page.owner = owner
    pools[page.nid].add(page.pfn, order)
    return True


def _release(k, pool, pfn):
    order = pool.remove(pfn)
    __free_pages(k, k.pages.pfn_to_page(pfn), order)


def add_extent(k, nid, order, gfp=GFP_BACKGROUND_FILL):
    """Allocate one page-cache extent on a node and put it on the node's LRU (newest)."""
    return _add(k, alloc_pages_node(k, nid, gfp, order), order, OWNER_PAGECACHE, k.lru)


def release_extent(k, nid, pfn):
    """Free one extent (the file was deleted / the process exited)."""
    _release(k, k.lru[nid], pfn)


def release_all(k):
    """Give every background extent and kernel block back (the machine goes idle)."""
    for nid in range(k.nr_nodes):
        for pfn in list(k.lru[nid]):
            release_extent(k, nid, pfn)
        for pfn in list(k.kernel_blocks[nid]):
            release_kernel_block(k, nid, pfn)


def add_kernel_block(k, nid, order):
    """Allocate an unmovable kernel block (slab page, page table, stack) on a node."""
    page = alloc_pages_node(k, nid, GFP_KERNEL_FILL, order)
    return _add(k, page, order, OWNER_SLAB, k.kernel_blocks)


def release_kernel_block(k, nid, pfn):
    """Free one unmovable kernel block."""
    _release(k, k.kernel_blocks[nid], pfn)


def fill_node(k, nid):
    """Allocate until the allocator refuses (down to the min watermark).

    Page-cache extents, with an unmovable kernel block interleaved at
    KERNEL_SHARE of the pages, so unmovable pageblocks end up spread through memory.
    """
    rng = k.rng
    failures = kernel_pages = cache_pages = 0
    while failures < len(EXTENT_ORDERS):
        if kernel_pages < KERNEL_SHARE * (kernel_pages + cache_pages):
            order = rng.choice(KERNEL_ORDERS)
            if add_kernel_block(k, nid, order):
                kernel_pages += 1 << order
                continue
        order = rng.choice(EXTENT_ORDERS)
        if add_extent(k, nid, order):
            cache_pages += 1 << order
            failures = 0
        else:
            failures += 1
    # the last few megabytes below the watermark: taken too, so that what the random
    # frees give back is all the free memory there is (no contiguous leftover)
    for order in range(EXTENT_ORDERS[-1], -1, -1):
        while add_extent(k, nid, order, GFP_BACKGROUND_FILL | __GFP_MEMALLOC):
            pass


def target_free_pages(k, nid, level, idle_free):
    """Free pages on a node at a pressure level: idle free … min watermark."""
    return int(idle_free - level * (idle_free - _node_min(k, nid)))


def set_memory_pressure(k, level):
    """Refill background memory so free memory sits at the level's target, scattered."""
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 <= level <= 1:
        raise ValueError(f"level: memory pressure must be between 0.0 and 1.0, got {level!r}")
    release_all(k)
    k.memory_pressure = float(level)
    if level == 0:
        return
    targets = [target_free_pages(k, nid, level, _node_free(k, nid))
               for nid in range(k.nr_nodes)]
    for nid in range(k.nr_nodes):
        fill_node(k, nid)
        blocks = [(0, pfn) for pfn in k.lru[nid]] + [(1, pfn) for pfn in k.kernel_blocks[nid]]
        k.rng.shuffle(blocks)
        for kind, pfn in blocks:
            if _node_free(k, nid) >= targets[nid]:
                break
            (release_kernel_block if kind else release_extent)(k, nid, pfn)
        # mixed lifetimes: LRU age has nothing to do with physical address
        lru = k.lru[nid]
        for kind, pfn in blocks:
            if not kind and pfn in lru:
                lru.make_newest(pfn)
    k.trace("memory_pressure", level=level)


def age(k, steps):
    """Churn: each step frees a random background extent and allocates a new one."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps: must be a whole number ≥ 0, got {steps!r}")
    rng = k.rng
    for _ in range(steps):
        nodes = [n for n in range(k.nr_nodes) if k.lru[n]]
        if not nodes:
            return
        nid = rng.choice(nodes)
        pfn = k.lru[nid].random(rng)
        release_extent(k, nid, pfn)
        add_extent(k, nid, rng.choice(EXTENT_ORDERS))


def kernel_churn(k, steps):
    """Unmovable churn on the running CPU: free a random kernel block, allocate a new one.

    Slab pages, page tables, socket buffers and BPF map memory come and go through
    the same per-CPU Unmovable lists as vmalloc's pages, so they take pages that a
    freed JIT image gave back and make the lists refill from elsewhere.
    """
    rng = k.rng
    for _ in range(steps):
        nodes = [n for n in range(k.nr_nodes) if k.kernel_blocks[n]]
        if nodes:
            nid = rng.choice(nodes)
            release_kernel_block(k, nid, k.kernel_blocks[nid].random(rng))
        order = rng.choice(KERNEL_ORDERS)
        page = alloc_pages(k, GFP_KERNEL | __GFP_NOWARN, order)
        _add(k, page, order, OWNER_SLAB, k.kernel_blocks)


def order9_free_blocks(k, nid=None):
    """How many 2 MiB-capable free blocks exist (order-9 count + 2 × order-10 count)."""
    zones = k.zones if nid is None else k.node_zones[nid]
    return sum(z.nr_free[9] + 2 * z.nr_free[10] for z in zones)
