"""The buddy allocator (mm/page_alloc.c, v5.11): free lists, per-CPU lists, watermarks.

Modelled: orders 0..10 with merging on free (buddy_merge_likely() puts a block that
will probably merge soon at the list tail; boot frees go to the tail), three
migratetypes with __rmqueue_fallback stealing (ALLOC_NOFRAGMENT's whole-pageblock
preference; steal_suitable_fallback() claims a pageblock only when free + alike
pages reach half of it, otherwise the block stays *mixed*; moved free pages go to
the tail), set_pcppage_migratetype() caching the *requested* type on a pcp refill,
frees by pageblock type, watermark boosting (boost_watermark() on a fragmenting
fallback, ZONE_BOOSTED_WATERMARK waking kswapd from rmqueue()), per-CPU order-0
lists (LIFO, batch/high, round-robin bulk free), watermarks min/low/high (+ boost)
with lowmem_reserve, the order ≥ 9 availability test that makes a 2 MiB request
fail on fragmented memory, and the slow path (wake kswapd, retry at min, direct
reclaim, give up on costly orders).

Simplified, and said so in the notebooks: compaction is gpalloc.mm.compaction's
(direct compaction from the slow path and kcompactd, at the granularity of the
model's page-cache extents), no HIGHATOMIC/CMA/ISOLATE lists, no page shuffling
(page_alloc.shuffle=0, the default), no OOM killer (an order-0 allocation that
reclaim cannot satisfy returns NULL with a warning), kswapd and kcompactd run to
completion at once when woken.  docs/reference/v5.11-fragmentation.md §1–3 gives
the kernel semantics each function follows.
"""

from collections import OrderedDict

from ..bug import WARN
from . import compaction as _compaction
from . import vmscan as _vmscan
from .gfp import (
    __GFP_ATOMIC,
    __GFP_DIRECT_RECLAIM,
    __GFP_HIGH,
    __GFP_KSWAPD_RECLAIM,
    __GFP_MEMALLOC,
    __GFP_NOMEMALLOC,
    __GFP_NORETRY,
    __GFP_NOWARN,
    __GFP_RETRY_MAYFAIL,
    __GFP_THISNODE,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
    ZONE_DMA32,
    ZONE_NORMAL,
    gfp_migratetype,
    gfp_t,
    gfp_zone,
    gfpflags_allow_blocking,
)
from .mmzone import (
    WMARK_HIGH,
    WMARK_MIN,
    ZONE_BOOSTED_WATERMARK,
    get_pageblock_migratetype,
    per_cpu_pages,
)
from .page import (
    MAX_ORDER,
    MOVABLE_OWNERS,
    OWNER_KERNEL,
    OWNER_PCP,
    PG_buddy,
    pageblock_order,
    virt_to_pfn,
)

ALLOC_WMARK_MIN, ALLOC_WMARK_LOW, ALLOC_WMARK_HIGH = 0, 1, 2
ALLOC_WMARK_MASK = 3
ALLOC_NO_WATERMARKS = 0x04
ALLOC_HARDER, ALLOC_HIGH = 0x10, 0x20
ALLOC_NOFRAGMENT, ALLOC_KSWAPD = 0x100, 0x800
PAGE_ALLOC_COSTLY_ORDER = 3
MAX_RECLAIM_RETRIES = 16
pageblock_nr_pages = 1 << pageblock_order
# /proc/sys/vm/watermark_boost_factor (mm/page_alloc.c: 15000 unless CONFIG_DISCONTIGMEM);
# the same value is set on the measured 6.18 VM
watermark_boost_factor = 15000
# PageLRU() || __PageMovable(): the owners whose pages move_freepages_block() counts as
# movable (the model's LRU holds page cache; anon owners join here when the model has them)
LRU_OWNERS = frozenset(MOVABLE_OWNERS)   # PageLRU: page cache and anonymous memory

fallbacks = {
    MIGRATE_UNMOVABLE: (MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE),
    MIGRATE_MOVABLE: (MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE),
    MIGRATE_RECLAIMABLE: (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE),
}


# ---------------------------------------------------------------- free lists

def add_to_free_list(k, zone, pfn, order, mt):
    """add_to_free_list(): make pfn the head of a free block and push it on the list head."""
    page = k.pages.pfn_to_page(pfn)
    page.page_type, page.private, page.owner, page._refcount = PG_buddy, order, None, 0
    zone.free_area[order][mt][pfn] = None
    zone.nr_free[order] += 1


def add_to_free_list_tail(k, zone, pfn, order, mt):
    """add_to_free_list_tail(): make pfn the head of a free block and put it at the list tail.

    The tail is the dict's first key; a list that gets a tail insertion becomes an
    OrderedDict (move_to_end(last=False) is O(1)).
    """
    page = k.pages.pfn_to_page(pfn)
    page.page_type, page.private, page.owner, page._refcount = PG_buddy, order, None, 0
    _list_add_tail(zone, order, mt, pfn)
    zone.nr_free[order] += 1


def _list_add_tail(zone, order, mt, pfn):
    lst = zone.free_area[order][mt]
    if type(lst) is not OrderedDict:
        lst = zone.free_area[order][mt] = OrderedDict(lst)
    lst[pfn] = None
    lst.move_to_end(pfn, last=False)


def move_to_free_list(zone, page, order, mt):
    """move_to_free_list() (v5.10+): move a free block to the tail of mt's list."""
    for lst in zone.free_area[order]:
        lst.pop(page.pfn, None)
    _list_add_tail(zone, order, mt, page.pfn)


def del_page_from_free_list(zone, page, order):
    """del_page_from_free_list(): unlink a free block (it is no longer PageBuddy)."""
    for lst in zone.free_area[order]:
        if page.pfn in lst:
            del lst[page.pfn]
            break
    else:
        raise AssertionError(f"pfn {page.pfn:#x} is PageBuddy but on no order-{order} list")
    page.page_type, page.private = None, 0
    zone.nr_free[order] -= 1


def _take_head(k, zone, order, mt):
    """get_page_from_free_area(): the head block of one list, or None."""
    lst = zone.free_area[order][mt]
    if lst:
        pfn = next(reversed(lst))
    elif order == MAX_ORDER - 1 and mt == MIGRATE_MOVABLE and zone.pristine:
        pfn = zone.pristine[0][0]
        return k.pages.pfn_to_page(pfn), True
    else:
        return None, False
    return k.pages.pfn_to_page(pfn), False


def _unlink(k, zone, page, order, from_pristine):
    if from_pristine:
        run = zone.pristine[0]
        run[0] += 1 << order
        if run[0] >= run[1]:
            zone.pristine.pop(0)
        zone.nr_free[order] -= 1
    else:
        del_page_from_free_list(zone, page, order)


def _list_nonempty(zone, order, mt):
    return bool(zone.free_area[order][mt]) or (
        order == MAX_ORDER - 1 and mt == MIGRATE_MOVABLE and bool(zone.pristine))


def expand(k, zone, pfn, low, high, mt):
    """expand(): split a 2^high block down to 2^low, freeing the upper halves."""
    size = 1 << high
    while high > low:
        high -= 1
        size >>= 1
        add_to_free_list(k, zone, pfn + size, high, mt)


def __rmqueue_smallest(k, zone, order, mt):
    """__rmqueue_smallest(): the smallest free block ≥ order on this migratetype's lists."""
    for current in range(order, MAX_ORDER):
        page, pristine = _take_head(k, zone, current, mt)
        if page is None:
            continue
        _unlink(k, zone, page, current, pristine)
        expand(k, zone, page.pfn, order, current, mt)
        return page
    return None


def can_steal_fallback(order, start_mt):
    """can_steal_fallback(): may this request claim the whole pageblock it steals from?"""
    if order >= pageblock_order:
        return True
    return (order >= pageblock_order // 2 or start_mt == MIGRATE_RECLAIMABLE
            or start_mt == MIGRATE_UNMOVABLE)


def find_suitable_fallback(zone, order, mt):
    """find_suitable_fallback(): first other migratetype with a free block of this order."""
    if zone.nr_free[order] == 0:
        return -1, False
    for fmt in fallbacks[mt]:
        if _list_nonempty(zone, order, fmt):
            return fmt, can_steal_fallback(order, mt)
    return -1, False


def move_freepages_block(k, zone, pfn, mt):
    """move_freepages_block() + move_freepages() (v5.11): a pageblock's free blocks to mt.

    Walks the aligned pageblock: every free buddy block moves to the *tail* of mt's
    list (move_to_free_list()) and counts 2^order free pages; every other page counts
    as movable when PageLRU() (``LRU_OWNERS``; an LRU extent counts all its pages, as
    PageLRU reads the compound head).  Returns (free pages moved, movable pages).  As in
    the kernel, a pageblock starting below the zone is walked from ``pfn``, and one
    ending past the zone moves nothing (0, 0).  Simplification: the walk skips an
    allocated block's tail pages in one step (they are never free, and never LRU
    unless the head is).
    """
    start = pfn & ~(pageblock_nr_pages - 1)
    end = start + pageblock_nr_pages
    if end > zone.zone_end_pfn:
        return 0, 0
    if start < zone.zone_start_pfn:
        start = pfn
    moved = movable = 0
    cur = start
    peek, free_area = k.pages.peek, zone.free_area
    while cur < end:
        page = peek(cur)
        if page is None:
            cur += 1
            continue
        if page.page_type == PG_buddy:
            order = page.private
            if order >= MAX_ORDER - 1 or not any(cur in lst for lst in free_area[order]):
                cur += 1
                continue
            move_to_free_list(zone, page, order, mt)
            moved += 1 << order
            cur += 1 << order
            continue
        if page._refcount:
            n = 1 << page.order
            if page.owner in LRU_OWNERS:
                movable += n
            cur += n
            continue
        cur += 1
    return moved, movable


def change_pageblock_range(zone, pfn, order, mt):
    """change_pageblock_range(): every pageblock of a 2^order block (order ≥ 9) to mt."""
    for b in range(pfn >> pageblock_order, (pfn + (1 << order)) >> pageblock_order):
        zone.pageblock_mt[b] = mt


def boost_watermark(zone):
    """boost_watermark() (v5.11 page_alloc.c): raise every watermark by a pageblock.

    No boost when watermark_boost_factor is 0 or the zone is under four pageblocks;
    the boost is capped at watermark_boost_factor/10000 of the high watermark (at
    least one pageblock).  Returns whether the boost was raised.
    """
    if not watermark_boost_factor:
        return False
    if pageblock_nr_pages * 4 > zone.managed_pages:
        return False
    max_boost = zone._watermark[WMARK_HIGH] * watermark_boost_factor // 10000   # mult_frac
    if not max_boost:
        return False
    max_boost = max(pageblock_nr_pages, max_boost)
    zone.watermark_boost = min(zone.watermark_boost + pageblock_nr_pages, max_boost)
    return True


def steal_suitable_fallback(k, zone, page, alloc_flags, start_type, whole_block, current_order):
    """steal_suitable_fallback() (v5.11): take a free block of another type, maybe its pageblock.

    A block of pageblock order or more re-types every pageblock it spans and does not
    boost.  Below that the fallback fragments: boost_watermark() (ZONE_BOOSTED_WATERMARK
    when the caller may wake kswapd); if ``whole_block`` (can_steal_fallback()) every
    free block of the pageblock moves to start_type's lists, and the pageblock is
    claimed when free + "alike" pages reach half of it.  Otherwise, or when it is not
    claimed, the pageblock keeps its old type: a *mixed* pageblock.  Alike pages: LRU
    pages for a Movable request; for Unmovable/Reclaimable stealing from a Movable
    block, every allocated page that is not LRU.  HIGHATOMIC blocks are not modelled.
    """
    old_block_type = get_pageblock_migratetype(zone, page.pfn)
    if current_order >= pageblock_order:
        change_pageblock_range(zone, page.pfn, current_order, start_type)
        move_to_free_list(zone, page, current_order, start_type)
        return
    if boost_watermark(zone) and alloc_flags & ALLOC_KSWAPD:
        zone.flags.add(ZONE_BOOSTED_WATERMARK)
    if whole_block:
        free_pages, movable_pages = move_freepages_block(k, zone, page.pfn, start_type)
        if start_type == MIGRATE_MOVABLE:
            alike_pages = movable_pages
        elif old_block_type == MIGRATE_MOVABLE:
            alike_pages = pageblock_nr_pages - (free_pages + movable_pages)
        else:
            alike_pages = 0
        if free_pages:   # 0: the pageblock straddles the zone's end
            if free_pages + alike_pages >= pageblock_nr_pages >> 1:
                zone.pageblock_mt[page.pfn >> pageblock_order] = start_type
            return
    move_to_free_list(zone, page, current_order, start_type)   # single_page


def __rmqueue_fallback(k, zone, order, start_mt, alloc_flags):
    """__rmqueue_fallback(): steal from another migratetype, largest block first.

    Traces mm_page_alloc_extfrag with the kernel's fields (pfn of the stolen block,
    fragmenting = fallback below pageblock order, change_ownership = the pageblock
    now has the requested type).
    """
    min_order = pageblock_order if alloc_flags & ALLOC_NOFRAGMENT else order
    found = None
    for current in range(MAX_ORDER - 1, min_order - 1, -1):
        fmt, can_steal = find_suitable_fallback(zone, current, start_mt)
        if fmt == -1:
            continue
        if not can_steal and start_mt == MIGRATE_MOVABLE and current > order:
            break   # find_smallest
        found = (current, fmt, can_steal)
        break
    else:
        return False
    if found is None:
        for current in range(order, MAX_ORDER):
            fmt, can_steal = find_suitable_fallback(zone, current, start_mt)
            if fmt != -1:
                found = (current, fmt, can_steal)
                break
        else:
            return False
    current, fmt, can_steal = found
    page, pristine = _take_head(k, zone, current, fmt)
    if pristine:   # materialise the pristine block as an ordinary free block first
        _unlink(k, zone, page, current, True)
        add_to_free_list(k, zone, page.pfn, current, fmt)
    steal_suitable_fallback(k, zone, page, alloc_flags, start_mt, can_steal, current)
    k.stat["pgalloc_fallback"] += 1
    k.trace("mm_page_alloc_extfrag", pfn=page.pfn, alloc_order=order, fallback_order=current,
            pageblock_order=pageblock_order, alloc_migratetype=start_mt,
            fallback_migratetype=fmt, fragmenting=int(current < pageblock_order),
            change_ownership=int(get_pageblock_migratetype(zone, page.pfn) == start_mt))
    return True


def __rmqueue(k, zone, order, mt, alloc_flags):
    """__rmqueue(): smallest block of the right type, else steal and retry."""
    while True:
        page = __rmqueue_smallest(k, zone, order, mt)
        if page is not None:
            return page
        if not __rmqueue_fallback(k, zone, order, mt, alloc_flags):
            return None


# ---------------------------------------------------------------- per-CPU lists

def get_pcp(k, zone, cpu=None):
    """this_cpu_ptr(zone->pageset)->pcp."""
    cpu = k.cpu if cpu is None else cpu
    pcp = zone.pcp.get(cpu)
    if pcp is None:
        pcp = zone.pcp[cpu] = _new_pcp(zone)
    return pcp


def _new_pcp(zone):
    return per_cpu_pages(zone.pcp_high, zone.pcp_batch)


def rmqueue_bulk(k, zone, count, lst, mt, alloc_flags):
    """rmqueue_bulk(): refill a pcp list with `count` order-0 pages (list_add_tail each).

    Each page caches the *requested* migratetype (v5.11 __rmqueue_smallest()'s
    set_pcppage_migratetype()), whatever its pageblock's type: a refill page drained
    unused goes back to the requested type's free list.
    """
    taken = []
    for _ in range(count):
        page = __rmqueue(k, zone, 0, mt, alloc_flags)
        if page is None:
            break
        page.owner = OWNER_PCP
        page.pcp_mt = mt
        taken.append(page.pfn)
    zone.nr_free_pages -= len(taken)
    lst[:0] = reversed(taken)   # tail of the kernel list = start of ours
    return len(taken)


def rmqueue_pcplist(k, zone, mt, alloc_flags):
    """rmqueue_pcplist() / __rmqueue_pcplist(): take the head of this CPU's list."""
    pcp = get_pcp(k, zone)
    lst = pcp.lists[mt]
    if not lst:
        pcp.count += rmqueue_bulk(k, zone, pcp.batch, lst, mt, alloc_flags)
        if not lst:
            return None
    pcp.count -= 1
    return k.pages.pfn_to_page(lst.pop())


def rmqueue(k, zone, order, gfp, alloc_flags, mt):
    """rmqueue(): order 0 from the pcp list, higher orders straight from the buddy.

    At its end (pcp path always, buddy path on success) a set ZONE_BOOSTED_WATERMARK is
    cleared and kswapd woken for the zone (order 0).  The model's kswapd runs at once;
    while reclaim is already running (k.in_reclaim) the bit stays set for a later call.
    """
    if order == 0:
        page = rmqueue_pcplist(k, zone, mt, alloc_flags)
    else:
        page = __rmqueue(k, zone, order, mt, alloc_flags)
        if page is None:
            return None
        zone.nr_free_pages -= 1 << order
    if zone.flags and ZONE_BOOSTED_WATERMARK in zone.flags and not k.in_reclaim:
        zone.flags.discard(ZONE_BOOSTED_WATERMARK)
        _vmscan.wakeup_kswapd(k, 0, [zone])
    return page


def free_pcppages_bulk(k, zone, count, pcp):
    """free_pcppages_bulk(): return `count` pages, round-robin over lists, from the tails."""
    mt, batch_free, out = 0, 0, []
    while count:
        while True:
            batch_free += 1
            mt = (mt + 1) % MIGRATE_PCPTYPES
            if pcp.lists[mt]:
                break
        if batch_free == MIGRATE_PCPTYPES:
            batch_free = count
        lst = pcp.lists[mt]
        while True:
            out.append(lst.pop(0))
            pcp.count -= 1
            count -= 1
            batch_free -= 1
            if not (count and batch_free and lst):
                break
    for pfn in out:
        page = k.pages.pfn_to_page(pfn)
        mt = page.pcp_mt
        page.owner, page.pcp_mt = None, None
        __free_one_page(k, zone, pfn, 0, mt)


def free_unref_page(k, page):
    """free_unref_page(): an order-0 page goes to the head of this CPU's pcp list."""
    zone = k.zone_of(page.pfn)
    mt = get_pageblock_migratetype(zone, page.pfn)
    page.owner, page.pcp_mt, page.order = OWNER_PCP, mt, 0
    pcp = get_pcp(k, zone)
    pcp.lists[mt].append(page.pfn)
    pcp.count += 1
    if pcp.count >= pcp.high:
        free_pcppages_bulk(k, zone, pcp.batch, pcp)


def drain_pages_zone(k, zone, cpu):
    """drain_pages_zone(): give one CPU's whole pcp list back to the buddy."""
    pcp = zone.pcp.get(cpu)
    if pcp and pcp.count:
        free_pcppages_bulk(k, zone, pcp.count, pcp)


def drain_all_pages(k):
    """drain_all_pages(NULL): every CPU, every zone (the running kernel's pcp lists)."""
    for zone in k.zones:
        for cpu in list(zone.pcp):
            k.design.drain_pages_zone(k, zone, cpu)


# ---------------------------------------------------------------- freeing

def buddy_merge_likely(k, zone, pfn, buddy_pfn, order):
    """buddy_merge_likely() (v5.11): is the enclosing order+1 block's buddy free already?

    Then the block just freed will probably merge soon and goes to the list tail, so
    it is handed out last.  Only below order MAX_ORDER-2.
    """
    if order >= MAX_ORDER - 2:
        return False
    higher_buddy = (pfn & buddy_pfn) ^ (1 << (order + 1))
    if not zone.zone_start_pfn <= higher_buddy < zone.zone_end_pfn:
        return False   # page_is_buddy(): the buddy must be in the same zone
    page = k.pages.peek(higher_buddy)
    return page is not None and page.page_type == PG_buddy and page.private == order + 1


def __free_one_page(k, zone, pfn, order, mt):
    """__free_one_page() (v5.11): merge with free buddies, then the list head or tail.

    The merged block goes on mt's list (the freed page's type); to the tail when
    buddy_merge_likely() (no FPI_TO_TAIL caller and no shuffling here: boot's tail
    frees are free_boot_memory()).
    """
    zone.nr_free_pages += 1 << order
    peek = k.pages.peek
    buddy_pfn = None
    while order < MAX_ORDER - 1:
        buddy_pfn = pfn ^ (1 << order)
        if not zone.zone_start_pfn <= buddy_pfn < zone.zone_end_pfn:
            break
        buddy = peek(buddy_pfn)
        if buddy is None or buddy.page_type != PG_buddy or buddy.private != order:
            break
        del_page_from_free_list(zone, buddy, order)
        pfn &= buddy_pfn
        order += 1
    if order < MAX_ORDER - 2 and buddy_merge_likely(k, zone, pfn, buddy_pfn, order):
        add_to_free_list_tail(k, zone, pfn, order, mt)
    else:
        add_to_free_list(k, zone, pfn, order, mt)


def __free_pages_ok(k, page, order):
    """__free_pages_ok(): a higher-order block goes straight back to the buddy."""
    zone = k.zone_of(page.pfn)
    mt = get_pageblock_migratetype(zone, page.pfn)
    page.owner, page.order = None, 0
    __free_one_page(k, zone, page.pfn, order, mt)


def _no_reference_to_drop(page):
    """What __free_pages() raises for a page whose refcount is already 0 (a double free)."""
    return AssertionError(f"__free_pages: {page!r} has no reference to drop (double free?)")


def __free_pages(k, page, order):
    """__free_pages(): drop a reference; at zero the block goes back to the allocator."""
    if page._refcount <= 0:
        raise _no_reference_to_drop(page)
    page._refcount -= 1
    if page._refcount:
        return
    k.design.free_frozen_pages(k, page, order)   # the running kernel's free path


def free_page(k, addr):
    """free_page(addr): free the order-0 page at a direct-map address."""
    __free_pages(k, k.pages.pfn_to_page(virt_to_pfn(addr)), 0)


def split_page(k, page, order):
    """split_page(): a non-compound order-N block becomes 2^N order-0 pages, refcount 1 each."""
    owner = page.owner
    page.order = 0
    for pfn in range(page.pfn + 1, page.pfn + (1 << order)):
        p = k.pages.pfn_to_page(pfn)
        p._refcount, p.owner, p.order = 1, owner, 0


# ---------------------------------------------------------------- allocating

def zone_watermark_ok(zone, order, mark, classzone_idx, alloc_flags, free_pages=None):
    """__zone_watermark_ok(): enough free pages above mark, and a big-enough free block."""
    free = zone.nr_free_pages if free_pages is None else free_pages
    free -= (1 << order) - 1
    if alloc_flags & ALLOC_HIGH:
        mark -= mark // 2
    if alloc_flags & ALLOC_HARDER:
        mark -= mark // 4
    if free <= mark + zone.lowmem_reserve[classzone_idx]:
        return False
    if order == 0:
        return True
    for o in range(order, MAX_ORDER):
        if not zone.nr_free[o]:
            continue
        for mt in range(MIGRATE_PCPTYPES):
            if _list_nonempty(zone, o, mt):
                return True
    return False


def _mark(zone, alloc_flags):
    """wmark_pages(): the watermark alloc_flags selects, plus watermark_boost."""
    return zone._watermark[alloc_flags & ALLOC_WMARK_MASK] + zone.watermark_boost


def _atomic_unboosted_ok(zone, order, gfp, alloc_flags, classzone_idx):
    """zone_watermark_fast(): an order-0 __GFP_ATOMIC request failing at min + boost is
    checked again against the unboosted min watermark."""
    if order or not gfp & __GFP_ATOMIC or not zone.watermark_boost or \
            alloc_flags & ALLOC_WMARK_MASK != ALLOC_WMARK_MIN:
        return False
    return zone_watermark_ok(zone, order, zone._watermark[WMARK_MIN], classzone_idx, alloc_flags)


def alloc_flags_nofragment(k, zone, gfp):
    """alloc_flags_nofragment(): prefer whole-pageblock steals when DMA32 sits below Normal."""
    flags = ALLOC_KSWAPD if gfp & __GFP_KSWAPD_RECLAIM else 0
    if zone.zid != ZONE_NORMAL:
        return flags
    below = [z for z in k.node_zones[zone.nid] if z.zid == ZONE_DMA32]
    if k.nr_nodes > 1 and not below:
        return flags
    return flags | ALLOC_NOFRAGMENT


def get_page_from_freelist(k, gfp, order, alloc_flags, zonelist, classzone_idx, mt):
    """get_page_from_freelist(): first zone in the zonelist that passes its watermark."""
    while True:
        for zone in zonelist:
            if (alloc_flags & ALLOC_NOFRAGMENT and zone.nid != zonelist[0].nid):
                break   # stay local rather than fragment a remote node... then retry without
            mark = _mark(zone, alloc_flags)
            if not alloc_flags & ALLOC_NO_WATERMARKS and \
                    not zone_watermark_ok(zone, order, mark, classzone_idx, alloc_flags) and \
                    not _atomic_unboosted_ok(zone, order, gfp, alloc_flags, classzone_idx):
                continue
            page = k.design.rmqueue(k, zone, order, gfp, alloc_flags, mt)   # the kernel's rmqueue()
            if page is not None:
                return page
        if alloc_flags & ALLOC_NOFRAGMENT:
            alloc_flags &= ~ALLOC_NOFRAGMENT
            continue
        return None


def prep_new_page(page, order):
    """prep_new_page()/set_page_refcounted(): a fresh allocation has refcount 1."""
    page._refcount, page.owner, page.order = 1, OWNER_KERNEL, order
    page.page_type, page.private, page.pcp_mt = None, 0, None


def build_zonelist(k, nid, highest_zid, thisnode=False):
    """build_zonelists() (node order): local zones high→low, then the other nodes.

    __GFP_THISNODE selects the node's ZONELIST_NOFALLBACK list: its own zones only.
    """
    out = []
    for i in range(1 if thisnode else k.nr_nodes):
        n = (nid + i) % k.nr_nodes
        out.extend(z for z in reversed(k.node_zones[n]) if z.zid <= highest_zid)
    return out


def __alloc_pages_slowpath(k, gfp, order, zonelist, classzone_idx, mt):
    """__alloc_pages_slowpath() (v5.11): kswapd, the min watermark, an initial async
    compaction for costly or non-movable high orders, then direct reclaim and direct
    compaction on every retry; costly orders without __GFP_RETRY_MAYFAIL give up after one.

    should_reclaim_retry() is the model's: retry while reclaim makes progress, at most
    MAX_RECLAIM_RETRIES passes; then should_compact_retry() (v5.11).  No OOM killer.
    """
    costly_order = order > PAGE_ALLOC_COSTLY_ORDER
    alloc_flags = ALLOC_WMARK_MIN | (ALLOC_HIGH if gfp & __GFP_HIGH else 0)
    if gfp & __GFP_ATOMIC and not gfp & __GFP_DIRECT_RECLAIM:
        alloc_flags |= ALLOC_HARDER
    if gfp & __GFP_KSWAPD_RECLAIM:
        _vmscan.wakeup_kswapd(k, order, zonelist, gfp)
    page = get_page_from_freelist(k, gfp, order, alloc_flags, zonelist, classzone_idx, mt)
    if page is not None:
        return page
    pfmemalloc = bool(gfp & __GFP_MEMALLOC and not gfp & __GFP_NOMEMALLOC)
    # PF_MEMALLOC: an allocation made while reclaiming or compacting does neither again
    can_direct_reclaim = gfpflags_allow_blocking(gfp) and not k.in_reclaim
    compact_result = _compaction.COMPACT_SKIPPED
    compact = [_compaction.DEF_COMPACT_PRIORITY, 0]   # compact_priority, compaction_retries
    if can_direct_reclaim and not pfmemalloc and (
            costly_order or (order > 0 and mt != MIGRATE_MOVABLE)):
        page, compact_result = _compaction.__alloc_pages_direct_compact(
            k, gfp, order, alloc_flags, zonelist, classzone_idx, mt,
            _compaction.INIT_COMPACT_PRIORITY)
        if page is not None:
            return page
        if costly_order and gfp & __GFP_NORETRY:
            if compact_result in (_compaction.COMPACT_SKIPPED, _compaction.COMPACT_DEFERRED):
                return None
            compact[0] = _compaction.INIT_COMPACT_PRIORITY
    retries = 0
    while True:   # retry:
        if gfp & __GFP_KSWAPD_RECLAIM:
            _vmscan.wakeup_kswapd(k, order, zonelist, gfp)
        page = get_page_from_freelist(k, gfp, order, alloc_flags, zonelist, classzone_idx, mt)
        if page is None and pfmemalloc:
            # __gfp_pfmemalloc_flags(): __GFP_MEMALLOC may dip into the reserves
            page = get_page_from_freelist(k, gfp, order, ALLOC_NO_WATERMARKS, zonelist,
                                          classzone_idx, mt)
        if page is not None or not can_direct_reclaim:
            return page
        k.stat["allocstall"] += 1
        k.in_reclaim = True
        try:
            progress = _vmscan.try_to_free_pages(k, gfp, order, zonelist[0].nid)
        finally:
            k.in_reclaim = False
        page = get_page_from_freelist(k, gfp, order, alloc_flags, zonelist, classzone_idx, mt)
        if page is not None:
            return page
        page, compact_result = _compaction.__alloc_pages_direct_compact(
            k, gfp, order, alloc_flags, zonelist, classzone_idx, mt, compact[0])
        if page is not None:
            return page
        if gfp & __GFP_NORETRY:
            return None
        if costly_order and not gfp & __GFP_RETRY_MAYFAIL:
            return None
        retries += 1
        if progress and retries < MAX_RECLAIM_RETRIES:
            continue
        if progress and _compaction.should_compact_retry(
                k, order, alloc_flags, compact_result, compact, zonelist, classzone_idx):
            continue
        return None


def __alloc_pages_nodemask(k, gfp, order, preferred_nid):
    """__alloc_pages_nodemask(): fast path at the low watermark, then the slow path."""
    if type(gfp) is not gfp_t:
        gfp = gfp_t(gfp)
    if not 0 <= order < MAX_ORDER:
        raise ValueError(f"order: must be 0..{MAX_ORDER - 1}, got {order}")
    ctx = k.alloc_ctx.get((gfp, preferred_nid))
    if ctx is None:   # everything below depends only on (gfp, node): computed once
        highest = gfp_zone(gfp)
        zonelist = build_zonelist(k, preferred_nid, highest, bool(gfp & __GFP_THISNODE))
        ctx = k.alloc_ctx[(gfp, preferred_nid)] = (
            zonelist, highest, gfp_migratetype(gfp),
            ALLOC_WMARK_LOW | alloc_flags_nofragment(k, zonelist[0], gfp))
    zonelist, highest, mt, alloc_flags = ctx
    page = get_page_from_freelist(k, gfp, order, alloc_flags, zonelist, highest, mt)
    if page is None:
        page = __alloc_pages_slowpath(k, gfp, order, zonelist, highest, mt)
    if page is None:
        k.stat["alloc_fail"] += 1
        if not gfp & __GFP_NOWARN:
            WARN(k, f"page allocation failure: order:{order}, mode:{gfp:#x}({gfp}), "
                    f"nodemask=(null)")
        return None
    prep_new_page(page, order)
    k.stat["pgalloc"] += 1 << order
    return page


def alloc_pages(k, gfp, order):
    """alloc_pages(): prefer the node of the CPU we run on."""
    return __alloc_pages_nodemask(k, gfp, order, k.numa_node_id())


def alloc_page(k, gfp):
    """alloc_page()."""
    return alloc_pages(k, gfp, 0)


def alloc_pages_node(k, nid, gfp, order):
    """alloc_pages_node(): NUMA_NO_NODE means the local node."""
    if nid == -1:
        nid = k.numa_node_id()
    k.check_nid(nid)
    return __alloc_pages_nodemask(k, gfp, order, nid)


# ---------------------------------------------------------------- runs of order-0 pages
# Exact fast paths (issue 13) for v5.11 vmalloc's page loops: the same pages, in the same
# order, leaving the same state as the per-page calls above, which stay the reading path
# (tests/test_fast_paths.py runs both).

def alloc_order0_run(k, node, gfp, nr_pages):
    """``nr_pages`` calls of alloc_page(gfp) (node -1) or alloc_pages_node(node, gfp, 0) in
    a row, stopping at the first NULL: v5.11 __vmalloc_area_node()'s loop.

    While the first zone of the request's zonelist passes its watermark, no boost is
    pending and this CPU's pcp list for the request holds pages, every one of those calls
    takes that list's head, and nothing its checks read (free pages, watermark, boost)
    changes between them: so the checks are made once per run of pcp pages, and anything
    else (an empty list, a failed watermark, a refill) is one call of the reading path.
    The design's rmqueue() must be v5.11's.
    """
    if node != -1 and nr_pages:
        k.check_nid(node)
    pages = []
    append, pfn_to_page, ctxs = pages.append, k.pages.pfn_to_page, k.alloc_ctx
    while len(pages) < nr_pages:
        ctx = ctxs.get((gfp, k.numa_node_id() if node == -1 else node))
        if ctx is not None:
            zonelist, highest, mt, alloc_flags = ctx
            zone = zonelist[0]
            pcp = zone.pcp.get(k.cpu)
            lst = pcp.lists[mt] if pcp is not None else None
            if lst and not (zone.flags and ZONE_BOOSTED_WATERMARK in zone.flags
                            and not k.in_reclaim) and \
                    zone_watermark_ok(zone, 0, _mark(zone, alloc_flags), highest, alloc_flags):
                take = min(len(lst), nr_pages - len(pages))
                run = lst[-take:]   # the list's head is our end: taken last to first
                del lst[-take:]
                for pfn in reversed(run):
                    page = pfn_to_page(pfn)
                    page._refcount, page.owner, page.order = 1, OWNER_KERNEL, 0   # prep_new_page
                    page.page_type, page.private, page.pcp_mt = None, 0, None
                    append(page)
                pcp.count -= take
                k.stat["pgalloc"] += take
                continue
        page = alloc_page(k, gfp) if node == -1 else __alloc_pages_nodemask(k, gfp, 0, node)
        if page is None:
            break
        append(page)
    return pages


def free_order0_run(k, pages, owner):
    """``page.owner = owner; __free_pages(page, 0)`` for each page, in order, where the
    design frees order 0 with v5.11's free_unref_page(): v5.11 __vunmap()'s loop."""
    zone_of, region_zone, cpu = k.zone_of, k._region_zone, k.cpu
    for page in pages:
        page.owner = owner
        if page._refcount <= 0:
            raise _no_reference_to_drop(page)
        page._refcount -= 1
        if page._refcount:
            continue
        pfn = page.pfn
        zone = region_zone.get(pfn >> 9)   # free_unref_page(), inline; zone_of()'s own cache
        if zone is None:
            zone = zone_of(pfn)
        mt = zone.pageblock_mt.get(pfn >> pageblock_order, MIGRATE_MOVABLE)
        page.owner, page.pcp_mt, page.order = OWNER_PCP, mt, 0
        pcp = zone.pcp.get(cpu)
        if pcp is None:
            pcp = get_pcp(k, zone)
        pcp.lists[mt].append(pfn)
        pcp.count += 1
        if pcp.count >= pcp.high:
            free_pcppages_bulk(k, zone, pcp.batch, pcp)


def free_boot_memory(k, zone, ranges):
    """memblock_free_all(): boot hands each free range to the buddy, ascending, to the tail."""
    for start, end in ranges:
        pfn = start
        while pfn < end:
            order = MAX_ORDER - 1
            while order and (pfn & ((1 << order) - 1) or pfn + (1 << order) > end):
                order -= 1
            if order == MAX_ORDER - 1:
                run_end = pfn
                while run_end + (1 << order) <= end:
                    run_end += 1 << order
                zone.pristine.append([pfn, run_end])
                zone.nr_free[order] += (run_end - pfn) >> order
                pfn = run_end
            else:
                # __free_pages_core(): FPI_TO_TAIL, so an earlier (lower) block stays
                # nearer the head
                add_to_free_list_tail(k, zone, pfn, order, MIGRATE_MOVABLE)
                pfn += 1 << order
        zone.managed_pages += end - start
        zone.nr_free_pages += end - start


def totalram_pages(k):
    """totalram_pages(): pages the buddy allocator manages (MemTotal)."""
    return sum(z.managed_pages for z in k.zones)


def nr_free_pages(k):
    """global_zone_page_state(NR_FREE_PAGES): MemFree (per-CPU list pages are not in it)."""
    return sum(z.nr_free_pages for z in k.zones)
