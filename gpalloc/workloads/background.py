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

``background_from_capture(k, capture)`` is the measured alternative to the knob (the
experiments' named machine states, gpalloc.workloads.machine_state): the fill level,
the split between kernel memory, anonymous memory and page cache, and the free blocks
per order all come from a real machine's /proc/meminfo and /proc/buddyinfo.

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
from ..mm.mmzone import WMARK_MIN
from ..mm.page import MAX_ORDER, OWNER_ANON, OWNER_PAGECACHE, OWNER_SLAB, pageblock_order
from ..mm.page_alloc import __free_pages, alloc_pages, alloc_pages_node, drain_all_pages

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
    # the configured min watermark: the boost that the fill's own fallbacks raise is not a
    # level of the knob (it goes away once kswapd reclaims it)
    return sum(z._watermark[WMARK_MIN] for z in k.node_zones[nid])


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
    """Give every background extent, anon extent and kernel block back (the machine goes idle)."""
    for nid in range(k.nr_nodes):
        for pfn in list(k.lru[nid]):
            release_extent(k, nid, pfn)
        for pfn in list(k.anon[nid]):
            _release(k, k.anon[nid], pfn)
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


# ============================================================================ from a capture

CAPTURE_KERNEL_FIELDS = ("Slab", "PageTables", "KernelStack")   # unmovable kernel memory
SCALES = ("ram", "absolute")
CARVE_ORDERS = 3   # a hole is cut from an extent at most this many orders up (object bound)


def capture_targets(k, nid, capture, scale):
    """Pages of kernel memory, anon, page cache and free blocks per order for one node.

    From the capture's /proc/meminfo (kB): kernel = Slab + PageTables + KernelStack,
    anon = AnonPages, page cache = Cached + Buffers, other = the rest of MemTotal − MemFree
    (memory meminfo does not itemise: vmalloc and driver pages, percpu, a balloon driver's
    pages — all unmovable); free = MemFree.  From /proc/buddyinfo: free
    blocks of orders 0–8 (summed over the capture's nodes and zones), and the share of the
    order ≥ 9 free memory in order-10 blocks (``share10``).  ``scale``:
    "ram" — each amount as the same share of RAM (a machine whose page cache has grown
    with its RAM); "absolute" — the same kB and block counts (a machine just booted:
    boot reads the same files whatever the RAM).  Each node gets 1/nodes of the capture.
    """
    if scale not in SCALES:
        raise ValueError(f"scale: must be one of {SCALES}, got {scale!r}")
    mi = capture["meminfo"]
    managed = sum(z.managed_pages for z in k.node_zones[nid])
    total = mi["MemTotal"] // 4
    factor = managed / total if scale == "ram" else 1 / k.nr_nodes
    kernel = sum(mi.get(f, 0) for f in CAPTURE_KERNEL_FIELDS) // 4
    anon = mi.get("AnonPages", 0) // 4
    used = total - mi["MemFree"] // 4
    cache = (mi.get("Cached", 0) + mi.get("Buffers", 0)) // 4
    small, large = [0] * pageblock_order, [0, 0]
    for row in capture.get("buddyinfo", ()):
        for order in range(pageblock_order):
            small[order] += row["free"][order]
        large[0] += row["free"][pageblock_order] << pageblock_order
        large[1] += row["free"][MAX_ORDER - 1] << (MAX_ORDER - 1)
    out = dict(kernel=kernel * factor, anon=anon * factor, cache=cache * factor,
               other=max(0, used - kernel - anon - cache) * factor,
               small=[round(n * factor) for n in small])
    out["free"] = managed - out["kernel"] - out["anon"] - out["cache"] - out["other"]
    out = {key: (v if key == "small" else int(v)) for key, v in out.items()}
    out["share10"] = large[1] / sum(large) if sum(large) else 1.0
    return out


def _fill_movable(k, nid):
    """Movable extents over every free page of a node: order 9 first, then what is left.

    Returns {pfn: order}.  Like fill_node, the last pages below the min watermark are taken
    too (__GFP_MEMALLOC), so the frees that follow decide all of the free memory.
    """
    out = {}
    for order in range(pageblock_order, -1, -1):
        while True:
            page = alloc_pages_node(k, nid, GFP_BACKGROUND_FILL | __GFP_MEMALLOC, order)
            if page is None:
                break
            out[page.pfn] = order
    return out


def _carve(k, extents, by_order, hole_order):
    """Free one order-``hole_order`` block out of a larger allocated extent.

    The extent (a random one of one of the CARVE_ORDERS smallest larger orders held: a bound
    on the pieces each hole makes) is cut the way the buddy
    allocator's expand() would cut it: the hole, and one piece of each order from the
    hole's up to the extent's (its buddies), which stay allocated — so the hole cannot
    merge, and stays a free block of exactly that order, as in the capture's buddyinfo.
    """
    orders = [o for o in range(hole_order + 1, MAX_ORDER) if by_order[o]][:CARVE_ORDERS]
    if not orders:
        return False
    rng = k.rng
    order = rng.choice(orders)
    lst = by_order[order]
    i = rng.randrange(len(lst))
    lst[i], lst[-1] = lst[-1], lst[i]
    pfn = lst.pop()
    del extents[pfn]
    hole = pfn + (rng.randrange(1 << (order - hole_order)) << hole_order)
    for o in range(hole_order, order):
        piece = (hole & ~((1 << o) - 1)) ^ (1 << o)
        page = k.pages.pfn_to_page(piece)
        page._refcount, page.owner, page.order = 1, OWNER_PAGECACHE, o
        extents[piece] = o
        by_order[o].append(piece)
    page = k.pages.pfn_to_page(hole)
    page._refcount, page.owner, page.order = 1, OWNER_PAGECACHE, hole_order
    __free_pages(k, page, hole_order)
    return True


def _free_pageblocks(k, extents, pages, share10):
    """Free whole order-9 extents (pageblocks) for ``pages`` of free memory; returns pages freed.

    ``share10`` of them in buddy pairs (they merge into order-10 blocks), the rest alone with
    their buddy kept allocated (they stay order-9 blocks) — the capture's order-9/10 split.
    """
    whole = [pfn for pfn, order in extents.items() if order == pageblock_order]
    k.rng.shuffle(whole)
    step, freed, kept = 1 << pageblock_order, 0, set()
    for pfn in whole:   # pairs first
        if freed + 2 * step > pages * share10:
            break
        buddy = pfn ^ step
        if pfn & step or extents.get(buddy) != pageblock_order:
            continue
        for p in (pfn, buddy):
            __free_pages(k, k.pages.pfn_to_page(p), pageblock_order)
            del extents[p]
        freed += 2 * step
    for pfn in whole:   # then single pageblocks whose buddy stays in use
        if freed + step > pages:
            break
        if pfn in kept or extents.get(pfn) != pageblock_order:
            continue
        kept.add(pfn ^ step)
        __free_pages(k, k.pages.pfn_to_page(pfn), pageblock_order)
        del extents[pfn]
        freed += step
    return freed


def background_from_capture(k, capture, scale="ram"):
    """Set every node's background from a real machine's meminfo and buddyinfo.

    The model's stand-ins, in the kernel's terms (docs/reference/v5.11-fragmentation.md §5):
    kernel memory (Slab, PageTables, KernelStack) as unmovable blocks of orders 0–3
    (GFP_KERNEL: they claim Unmovable pageblocks, as slab growth does); the memory meminfo
    does not itemise as unmovable blocks as large as fit, up to 2 MiB (hv_balloon's
    alloc_balloon_pages() takes 2 MiB GFP_HIGHUSER blocks; vmalloc's order-0 pages are
    bulked: an ESTIMATE of their placement); anonymous memory
    (do_anonymous_page(): GFP_HIGHUSER_MOVABLE, order 0; no swap, so reclaim leaves it)
    and page cache (page_cache_ra_unbounded(): GFP_HIGHUSER_MOVABLE order-0 pages on the
    file LRU) as movable extents; then the free memory: the capture's free blocks of
    orders 0–8, each freed out of an allocated extent so that it stays that order (what
    order-0 page-cache and anon frees leave), and the rest of MemFree as whole pageblocks,
    paired into order-10 blocks in the capture's proportion.
    Simplification (bulk, so object counts stay bounded): used memory is held in
    buddy-aligned extents of orders 0–9, not page by page; reclaim frees an extent at a
    time; LRU order is random (mixed lifetimes).  ``scale``: see capture_targets().
    """
    if "meminfo" not in capture or "MemTotal" not in capture["meminfo"]:
        raise ValueError("capture: needs a meminfo with MemTotal and MemFree")
    release_all(k)
    rng = k.rng
    for nid in range(k.nr_nodes):
        t = capture_targets(k, nid, capture, scale)
        kernel = 0
        while kernel < t["kernel"]:
            order = rng.choice(KERNEL_ORDERS)
            if not add_kernel_block(k, nid, order):
                break
            kernel += 1 << order
        order, other = pageblock_order, 0
        while other < t["other"] and order >= 0:
            while (1 << order) > t["other"] - other and order:
                order -= 1
            if add_kernel_block(k, nid, order):
                other += 1 << order
            else:
                order -= 1
        extents = _fill_movable(k, nid)
        small = sum(n << order for order, n in enumerate(t["small"]))
        freed = _free_pageblocks(k, extents, max(0, t["free"] - small), t["share10"])
        by_order = [[] for _ in range(MAX_ORDER)]
        for pfn, order in extents.items():
            by_order[order].append(pfn)
        for order in range(pageblock_order - 1, -1, -1):
            for _ in range(t["small"][order]):
                if freed + (1 << order) > t["free"] or not _carve(k, extents, by_order, order):
                    break
                freed += 1 << order
        order_lru = list(extents)
        rng.shuffle(order_lru)
        anon = 0
        for pfn in order_lru:
            order = extents[pfn]
            if anon < t["anon"]:
                k.pages.pfn_to_page(pfn).owner = OWNER_ANON
                k.anon[nid].add(pfn, order)
                anon += 1 << order
            else:
                k.pages.pfn_to_page(pfn).owner = OWNER_PAGECACHE
                k.lru[nid].add(pfn, order)
    drain_all_pages(k)
    k.trace("background_from_capture", scale=scale)
