"""Memory compaction (mm/compaction.c, v5.11): suitability, deferral, the two scanners, kcompactd.

Sources: docs/reference/v5.11-fragmentation.md §3 (v5.11 mm/compaction.c, mm/vmstat.c
fragmentation index, the compaction half of mm/page_alloc.c's slow path).

What is modelled as the kernel does it: ``compaction_suitable`` with the fragmentation
index and ``sysctl_extfrag_threshold``; deferral per zone; ``compact_zone`` with a migrate
scanner walking up from the zone bottom and a free scanner walking down from the top,
cached scanner positions, ``PB_migrate_skip`` bits, async direct compaction's
same-migratetype sources and ``skip_on_failure``, Movable-only targets, the
``__compact_finished`` stop rule, capture of the freed block for a direct compactor, and
kcompactd's wake-up rule and work loop.  Unmovable pages never move and compaction never
changes a pageblock's type.

Simplified at the model's granularity (each said where it is done):

* Movable memory is the model's LRU: page-cache extents (``OWNER_PAGECACHE``) on
  ``k.lru[nid]`` and anonymous memory (``OWNER_ANON``) on ``k.anon[nid]``.  An extent
  migrates as one unit into the free blocks the free scanner isolated, split into as few
  power-of-two pieces as the free blocks need; each piece goes back on its LRU as the
  newest entry (``putback_lru_page`` after migration).
  Everything else allocated (slab, page tables, vmalloc, pcp-held and reserved pages) is
  an isolation failure.
* A source pageblock is isolated and migrated in one round (the kernel takes
  COMPACT_CLUSTER_MAX pages per round); the free scanner harvests a whole target
  pageblock when it visits it, ignoring async's stride.  ``fast_find_migrateblock`` and
  ``fast_isolate_freepages`` (search shortcuts that change where the scanners start, not
  what they may take) are left out.
* The model has no threads: kcompactd runs its work at once when woken, as the model's
  kswapd runs balance_pgdat() to completion when woken.
* Proactive compaction (5.9+, the kcompactd timeout every 500 ms) is left out: the model
  has no timer, and on the machines the model runs (an 8 GiB VM: Normal holds ~75 % of
  the node) a zone's weighted fragmentation score can never exceed the stop mark of 80,
  so it stops at once in every zone (§3.6).
"""

from collections import deque

from . import page_alloc as _pa
from .gfp import (
    __GFP_IO,
    GFP_KERNEL,
    MIGRATE_MOVABLE,
    gfp_migratetype,
)
from .mmzone import get_pageblock_migratetype
from .page import (
    MAX_ORDER,
    MOVABLE_OWNERS,
    OWNER_PAGECACHE,
    OWNER_PCP,
    PageBuddy,
    pageblock_order,
)

# enum compact_result (include/linux/compaction.h): the order matters, callers take max()
(COMPACT_NOT_SUITABLE_ZONE, COMPACT_SKIPPED, COMPACT_DEFERRED, COMPACT_NO_SUITABLE_PAGE,
 COMPACT_CONTINUE, COMPACT_COMPLETE, COMPACT_PARTIAL_SKIPPED, COMPACT_CONTENDED,
 COMPACT_SUCCESS) = range(9)
COMPACT_INACTIVE = COMPACT_DEFERRED
# enum compact_priority
COMPACT_PRIO_SYNC_FULL, COMPACT_PRIO_SYNC_LIGHT, COMPACT_PRIO_ASYNC = 0, 1, 2
MIN_COMPACT_PRIORITY = COMPACT_PRIO_SYNC_FULL
MIN_COMPACT_COSTLY_PRIORITY = DEF_COMPACT_PRIORITY = COMPACT_PRIO_SYNC_LIGHT
INIT_COMPACT_PRIORITY = COMPACT_PRIO_ASYNC
# enum migrate_mode (MIGRATE_SYNC, full sync, is not used by compaction in v5.11)
MIGRATE_ASYNC, MIGRATE_SYNC_LIGHT = 0, 1
COMPACT_MAX_DEFER_SHIFT = 6
MAX_COMPACT_RETRIES = 16
sysctl_extfrag_threshold = 500
PAGEBLOCK_NR_PAGES = 1 << pageblock_order
PAGE_ALLOC_COSTLY_ORDER = 3
COMPACT_RESULT_NAMES = ("not_suitable_zone", "skipped", "deferred", "no_suitable_page",
                        "continue", "complete", "partial_skipped", "contended", "success")

# what the migrate scanner finds in a pageblock
_FREE, _MOVABLE, _UNMOVABLE = 0, 1, 2


class compact_control:
    """struct compact_control: one compaction run's parameters and scanner state."""

    def __init__(self, order, gfp_mask, mode, *, direct_compaction=False, whole_zone=False,
                 ignore_skip_hint=False, ignore_block_suitable=False, alloc_flags=0,
                 highest_zoneidx=2):
        self.order, self.gfp_mask, self.mode = order, gfp_mask, mode
        self.direct_compaction, self.whole_zone = direct_compaction, whole_zone
        self.ignore_skip_hint, self.ignore_block_suitable = ignore_skip_hint, ignore_block_suitable
        self.alloc_flags, self.highest_zoneidx = alloc_flags, highest_zoneidx
        self.migratetype = gfp_migratetype(gfp_mask)
        self.zone = None
        self.migrate_pfn = self.free_pfn = 0
        self.freepages = deque()          # isolated free blocks (pfn, order), lowest first
        self.nr_freepages = 0
        self.total_migrate_scanned = self.total_free_scanned = 0
        self.rescan = False


class capture_control:
    """struct capture_control: a direct compactor's claim on the block it frees."""

    def __init__(self, cc):
        self.cc, self.page = cc, None


# ---------------------------------------------------------------- suitability

def fill_contig_page_info(zone, suitable_order):
    """fill_contig_page_info() (mm/vmstat.c): free blocks, free pages, suitable blocks."""
    total = pages = suitable = 0
    for order in range(MAX_ORDER):
        blocks = zone.nr_free[order]
        total += blocks
        pages += blocks << order
        if order >= suitable_order:
            suitable += blocks << (order - suitable_order)
    return total, pages, suitable


def __fragmentation_index(order, info):
    """__fragmentation_index() (mm/vmstat.c): 0 = lack of memory … 1000 = fragmentation.

    -1000 when a block of the order is free (the allocation would succeed).
    """
    free_blocks_total, free_pages, free_blocks_suitable = info
    if not free_blocks_total:
        return 0
    if free_blocks_suitable:
        return -1000
    return 1000 - (1000 + free_pages * 1000 // (1 << order)) // free_blocks_total


def fragmentation_index(zone, order):
    """fragmentation_index() (mm/vmstat.c) from the zone's free_area counts."""
    return __fragmentation_index(order, fill_contig_page_info(zone, order))


def extfrag_for_order(zone, order):
    """extfrag_for_order() (mm/vmstat.c): % of free memory in blocks smaller than order."""
    _total, free_pages, suitable = fill_contig_page_info(zone, order)
    if not free_pages:
        return 0
    return (free_pages - (suitable << order)) * 100 // free_pages


def compact_gap(order):
    """compact_gap(): free pages compaction needs to work with, 2 << order."""
    return 2 << order


def wmark_pages(zone, i):
    """wmark_pages(): the zone's watermark i plus its watermark boost (when the model has one)."""
    return zone._watermark[i] + getattr(zone, "watermark_boost", 0)


def __compaction_suitable(zone, order, alloc_flags, highest_zoneidx, wmark_target):
    """__compaction_suitable() (v5.11): SUCCESS if the allocation would succeed now,
    SKIPPED without min/low + compact_gap(order) order-0 pages, else CONTINUE."""
    if order == -1:
        return COMPACT_CONTINUE
    watermark = wmark_pages(zone, alloc_flags & _pa.ALLOC_WMARK_MASK)
    if _pa.zone_watermark_ok(zone, order, watermark, highest_zoneidx, alloc_flags):
        return COMPACT_SUCCESS
    watermark = wmark_pages(zone, 1 if order > PAGE_ALLOC_COSTLY_ORDER else 0)
    watermark += compact_gap(order)
    if not _pa.zone_watermark_ok(zone, 0, watermark, highest_zoneidx, 0, wmark_target):
        return COMPACT_SKIPPED
    return COMPACT_CONTINUE


def compaction_suitable(zone, order, alloc_flags, highest_zoneidx):
    """compaction_suitable() (v5.11): for costly orders a fragmentation index of 0..500
    (sysctl_extfrag_threshold) blames lack of memory, and the result is SKIPPED."""
    ret = __compaction_suitable(zone, order, alloc_flags, highest_zoneidx, zone.nr_free_pages)
    if ret == COMPACT_CONTINUE and order > PAGE_ALLOC_COSTLY_ORDER:
        if 0 <= fragmentation_index(zone, order) <= sysctl_extfrag_threshold:
            ret = COMPACT_NOT_SUITABLE_ZONE
    if ret == COMPACT_NOT_SUITABLE_ZONE:
        ret = COMPACT_SKIPPED
    return ret


def _zone_reclaimable_pages(k, zone):
    lru = k.lru[zone.nid]
    return sum(1 << lru._lru[pfn] for pfn in lru
               if zone.zone_start_pfn <= pfn < zone.zone_end_pfn)


def compaction_zonelist_suitable(k, order, alloc_flags, zonelist, highest_zoneidx):
    """compaction_zonelist_suitable() (v5.11): could reclaim make compaction worthwhile?

    Free pages plus the zone's reclaimable LRU pages divided by the order (the kernel's
    heuristic) against __compaction_suitable at the min watermark.
    """
    for zone in zonelist:
        available = _zone_reclaimable_pages(k, zone) // order + zone.nr_free_pages
        if __compaction_suitable(zone, order, alloc_flags, highest_zoneidx,
                                 available) != COMPACT_SKIPPED:
            return True
    return False


# ---------------------------------------------------------------- deferral

def defer_compaction(zone, order):
    """defer_compaction(): skip the next 1 << compact_defer_shift attempts (shift ≤ 6)."""
    zone.compact_considered = 0
    zone.compact_defer_shift = min(zone.compact_defer_shift + 1, COMPACT_MAX_DEFER_SHIFT)
    if order < zone.compact_order_failed:
        zone.compact_order_failed = order


def compaction_deferred(zone, order):
    """compaction_deferred(): True while this attempt is to be skipped."""
    if order < zone.compact_order_failed:
        return False
    zone.compact_considered += 1
    if zone.compact_considered >= 1 << zone.compact_defer_shift:
        zone.compact_considered = 1 << zone.compact_defer_shift
        return False
    return True


def compaction_defer_reset(zone, order, alloc_success):
    """compaction_defer_reset(): after success; an allocation that succeeded clears the shift."""
    if alloc_success:
        zone.compact_considered = 0
        zone.compact_defer_shift = 0
    if order >= zone.compact_order_failed:
        zone.compact_order_failed = order + 1


def compaction_restarting(zone, order):
    """compaction_restarting(): deferred the maximum and the last skip is used up."""
    if order < zone.compact_order_failed:
        return False
    return (zone.compact_defer_shift == COMPACT_MAX_DEFER_SHIFT
            and zone.compact_considered >= 1 << zone.compact_defer_shift)


# ---------------------------------------------------------------- skip bits, cached pfns

def reset_cached_positions(zone):
    """reset_cached_positions(): both scanners back at the zone's ends."""
    zone.compact_cached_migrate_pfn[0] = zone.compact_cached_migrate_pfn[1] = \
        zone.zone_start_pfn
    zone.compact_cached_free_pfn = (zone.zone_end_pfn - 1) & ~(PAGEBLOCK_NR_PAGES - 1)


def __reset_isolation_suitable(zone):
    """__reset_isolation_suitable(): clear every PB_migrate_skip bit of the zone."""
    zone.compact_blockskip_flush = False
    zone.pageblock_skip.clear()
    zone.compact_init_migrate_pfn = zone.zone_start_pfn
    zone.compact_init_free_pfn = (zone.zone_end_pfn - 1) & ~(PAGEBLOCK_NR_PAGES - 1)
    reset_cached_positions(zone)


def reset_isolation_suitable(k, nid):
    """reset_isolation_suitable(pgdat): kswapd going to sleep clears the skip bits of zones
    where a direct compaction let the scanners meet (compact_blockskip_flush)."""
    for zone in k.node_zones[nid]:
        if zone.compact_blockskip_flush:
            __reset_isolation_suitable(zone)


def isolation_suitable(cc, block):
    """isolation_suitable(): the block's skip bit is clear (or the run ignores it)."""
    return cc.ignore_skip_hint or block not in cc.zone.pageblock_skip


def update_cached_migrate(cc, pfn):
    """update_cached_migrate(): move where async (and sync) runs restart, only forward."""
    zone = cc.zone
    pfn = (pfn + PAGEBLOCK_NR_PAGES) & ~(PAGEBLOCK_NR_PAGES - 1)   # pageblock_end_pfn()
    if pfn > zone.compact_cached_migrate_pfn[0]:
        zone.compact_cached_migrate_pfn[0] = pfn
    if cc.mode != MIGRATE_ASYNC and pfn > zone.compact_cached_migrate_pfn[1]:
        zone.compact_cached_migrate_pfn[1] = pfn


def update_pageblock_skip(cc, block):
    """update_pageblock_skip(): a fully scanned free-scanner block is skipped from now on."""
    cc.zone.pageblock_skip.add(block)
    pfn = block << pageblock_order
    if pfn < cc.zone.compact_cached_free_pfn:
        cc.zone.compact_cached_free_pfn = pfn


# ---------------------------------------------------------------- what a pageblock holds

def _in_pristine(zone, pfn):
    for start, end in zone.pristine:
        if start <= pfn < end:
            return end
    return 0


def _reserved_end(k, pfn):
    for start, end in k.layout.reserved:
        if start <= pfn < end:
            return end
    return 0


def _lru_of(k, page):
    """The lruvec a movable page is on: page cache on k.lru, anonymous memory on k.anon."""
    return (k.lru if page.owner == OWNER_PAGECACHE else k.anon)[page.nid]


def _is_movable(k, page):
    """PageLRU (the model's LRU: page-cache and anonymous extents on their node's lruvecs)."""
    return page.owner in MOVABLE_OWNERS and page.pfn in _lru_of(k, page)


def _pageblock_contents(k, zone, block):
    """The objects of one pageblock, lowest pfn first: (pfn, pages, kind, order).

    kind is _FREE (a buddy block; order is its order), _MOVABLE (an LRU extent) or
    _UNMOVABLE (anything isolate_migratepages_block() cannot take: kernel pages, pcp
    pages, reserved memory).  A block covered by an order-10 block whose head is in the
    pageblock below reports that block's kind once.
    """
    start = max(block << pageblock_order, zone.zone_start_pfn)
    end = min((block + 1) << pageblock_order, zone.zone_end_pfn)
    peek = k.pages.peek
    if start & (2 * PAGEBLOCK_NR_PAGES - 1) == PAGEBLOCK_NR_PAGES:
        head = peek(start - PAGEBLOCK_NR_PAGES)
        if head is not None and (PageBuddy(head) and head.private == MAX_ORDER - 1
                                 or head._refcount > 0 and head.order == MAX_ORDER - 1):
            kind = _FREE if PageBuddy(head) else _UNMOVABLE
            return [(start, end - start, kind, -1)]
    out, pfn = [], start
    while pfn < end:
        page = peek(pfn)
        if PageBuddy(page):
            n, kind, order = 1 << page.private, _FREE, page.private
        elif page is not None and page._refcount > 0:
            n, order = 1 << page.order, page.order
            kind = _MOVABLE if _is_movable(k, page) else _UNMOVABLE
        elif page is not None and page.owner == OWNER_PCP:
            n, kind, order = 1, _UNMOVABLE, 0
        else:
            run = _in_pristine(zone, pfn)
            if run:
                n, kind, order = run - pfn, _FREE, -1
            else:
                run = _reserved_end(k, pfn)
                n, kind, order = (run - pfn if run else 1), _UNMOVABLE, 0
        out.append((pfn, min(n, end - pfn), kind, order))
        pfn += n
    return out


# ---------------------------------------------------------------- free scanner

def suitable_migration_target(cc, zone, block, contents):
    """suitable_migration_target(): not a free ≥ pageblock-order block; Movable (unless
    ignore_block_suitable)."""
    first = contents[0]
    if first[2] == _FREE and (first[3] == -1 or first[3] >= pageblock_order):
        return False
    if cc.ignore_block_suitable:
        return True
    return get_pageblock_migratetype(zone, block << pageblock_order) == MIGRATE_MOVABLE


def isolate_freepages_block(k, cc, zone, contents):
    """isolate_freepages_block(): take the block's free buddies off the free lists.

    __isolate_free_page() refuses once the zone would drop to _watermark[WMARK_MIN] +
    (1 << order) order-0 pages; then the block counts as not fully scanned.  Scanned
    counts as in the migrate scanner.  Returns (pages isolated, fully scanned).
    """
    isolated = 0
    for pfn, n, kind, order in contents:
        cc.total_free_scanned += n if kind == _MOVABLE else 1
        if kind != _FREE or order < 0:
            continue
        mark = zone._watermark[0] + (1 << order)
        if not _pa.zone_watermark_ok(zone, 0, mark, 0, 0):
            return isolated, False
        _pa.del_page_from_free_list(zone, k.pages.pfn_to_page(pfn), order)
        zone.nr_free_pages -= 1 << order
        cc.freepages.append((pfn, order))
        cc.nr_freepages += 1 << order
        isolated += 1 << order
    return isolated, True


def isolate_freepages(k, cc, need):
    """isolate_freepages(): walk the free scanner down, block by block, until `need` pages
    are isolated or it reaches the block above the migrate scanner's."""
    zone = cc.zone
    low_block = ((cc.migrate_pfn + PAGEBLOCK_NR_PAGES) >> pageblock_order)   # pageblock_end_pfn
    block = cc.free_pfn >> pageblock_order
    while block >= low_block:
        contents = _pageblock_contents(k, zone, block)
        if suitable_migration_target(cc, zone, block, contents) and isolation_suitable(cc, block):
            got, full = isolate_freepages_block(k, cc, zone, contents)
            k.stat["compact_isolated"] += got
            if full:
                update_pageblock_skip(cc, block)
            if not full:
                break   # isolation failed early (watermark): do not continue needlessly
        block -= 1
        if cc.nr_freepages >= need:
            break
    cc.free_pfn = block << pageblock_order


def compaction_alloc(k, cc, need):
    """compaction_alloc(): the next isolated free block, isolating more when none is left."""
    if not cc.freepages:
        isolate_freepages(k, cc, need)
        if not cc.freepages:
            return None
    pfn, order = cc.freepages.popleft()
    cc.nr_freepages -= 1 << order
    return pfn, order


def release_freepages(k, cc):
    """release_freepages(): give back what was isolated and not used, by pageblock type.

    Returns the highest pfn given back (0 if none).
    """
    high = 0
    while cc.freepages:
        pfn, order = cc.freepages.popleft()
        page = k.pages.pfn_to_page(pfn)
        _pa.prep_new_page(page, order)
        _pa.__free_pages(k, page, order)
        high = max(high, pfn)
    cc.nr_freepages = 0
    return high


# ---------------------------------------------------------------- migrate scanner

def suitable_migration_source(cc, zone, block, contents):
    """suitable_migration_source(): not headed by a ≥ pageblock-order compound page; in
    async direct compaction only blocks of the request's migratetype (Movable for
    Movable requests, Unmovable blocks for Unmovable ones)."""
    first = contents[0]
    if first[2] != _FREE and first[3] >= pageblock_order:
        return False   # pageblock_skip_persistent()
    if cc.mode != MIGRATE_ASYNC or not cc.direct_compaction:
        return True
    return get_pageblock_migratetype(zone, block << pageblock_order) == cc.migratetype


def isolate_migratepages_block(k, cc, contents):
    """isolate_migratepages_block(): the LRU extents of the block that can be isolated.

    Async direct compaction sets skip_on_failure: one page that cannot be isolated gives
    up its whole order-aligned chunk (for order ≥ 9, the pageblock).  Scanned counts one
    per free block or non-LRU head and one per LRU page (the kernel's LRU pages are
    order-0).
    """
    skip_on_failure = cc.direct_compaction and cc.mode == MIGRATE_ASYNC
    extents = []
    for pfn, n, kind, _order in contents:
        cc.total_migrate_scanned += n if kind == _MOVABLE else 1
        if kind == _MOVABLE:
            extents.append((pfn, n))
    if skip_on_failure and extents:
        chunk = 1 << max(0, min(cc.order, pageblock_order))
        failed = {pfn // chunk for pfn, _n, kind, _o in contents if kind == _UNMOVABLE}
        failed.update((pfn + n - 1) // chunk for pfn, n, kind, _o in contents
                      if kind == _UNMOVABLE)
        if failed:
            extents = [(pfn, n) for pfn, n in extents
                       if not any(c in failed for c in range(pfn // chunk,
                                                              (pfn + n - 1) // chunk + 1))]
    isolated = sum(n for _pfn, n in extents)
    k.stat["compact_isolated"] += isolated
    return extents


def migrate_extent(k, cc, pfn, npages):
    """migrate_pages() for one extent: copy it into isolated free blocks, free the source.

    The extent is split into as few power-of-two pieces as the free blocks allow; each
    piece goes on the LRU as the newest entry.  False (nothing changed) if the free
    scanner found too little.
    """
    need, pieces = npages, []
    while need:
        got = compaction_alloc(k, cc, need)
        if got is None:
            for piece in reversed(pieces):
                cc.freepages.appendleft(piece)
                cc.nr_freepages += 1 << piece[1]
            return False
        fpfn, forder = got
        p = min(forder, need.bit_length() - 1)
        for o in range(forder - 1, p - 1, -1):   # the unused rest stays isolated, in order
            cc.freepages.appendleft((fpfn + (1 << o), o))
            cc.nr_freepages += 1 << o
        pieces.append((fpfn, p))
        need -= 1 << p
    src = k.pages.pfn_to_page(pfn)
    owner, lru = src.owner, _lru_of(k, src)
    order = lru.remove(pfn)
    for fpfn, p in pieces:
        page = k.pages.pfn_to_page(fpfn)
        _pa.prep_new_page(page, p)
        page.owner = owner
        lru.add(fpfn, p)
    _pa.__free_pages(k, src, order)
    k.stat["pgmigrate_success"] += npages
    return True


def lru_add_drain_cpu_zone(k, zone):
    """lru_add_drain_cpu_zone(): flush this CPU's pcp lists of the zone so frees merge."""
    _drain_pages_zone(k, zone, k.cpu)


def _drain_pages_zone(k, zone, cpu):
    pcp = zone.pcp.get(cpu)
    if pcp is not None and pcp.count:
        k.design.drain_pages_zone(k, zone, cpu)   # the running kernel's pcp lists


def drain_all_pages_zone(k, zone):
    """drain_all_pages(zone): every CPU's pcp lists of one zone."""
    for cpu in list(zone.pcp):
        _drain_pages_zone(k, zone, cpu)


# ---------------------------------------------------------------- compact_zone

def compact_scanners_met(cc):
    """compact_scanners_met(): the free scanner reached the migrate scanner's pageblock."""
    return cc.free_pfn >> pageblock_order <= cc.migrate_pfn >> pageblock_order


def __compact_finished(k, cc):
    """__compact_finished(): scanners met → COMPLETE/PARTIAL_SKIPPED; a free block of the
    order on the request's list, or one another type's list would let it steal → SUCCESS."""
    zone = cc.zone
    if compact_scanners_met(cc):
        reset_cached_positions(zone)
        if cc.direct_compaction:
            zone.compact_blockskip_flush = True
        return COMPACT_COMPLETE if cc.whole_zone else COMPACT_PARTIAL_SKIPPED
    if cc.order == -1:
        return COMPACT_CONTINUE
    for order in range(cc.order, MAX_ORDER):
        if not zone.nr_free[order]:
            continue
        if _pa._list_nonempty(zone, order, cc.migratetype):
            return COMPACT_SUCCESS
        # find_suitable_fallback(only_stealable=true); the model checks at pageblock
        # boundaries, where an unmovable request may end too
        if _pa.can_steal_fallback(order, cc.migratetype) and any(
                _pa._list_nonempty(zone, order, mt) for mt in _pa.fallbacks[cc.migratetype]):
            return COMPACT_SUCCESS
    return COMPACT_CONTINUE


def compact_finished(k, cc):
    """compact_finished()."""
    return __compact_finished(k, cc)


def _capture(k, cc, capc, block):
    """compaction_capture(): the emptied source block reached cc.order — hand it over.

    Done for orders ≥ pageblock_order, where the source pageblock itself is the block
    (the kernel catches it inside __free_one_page(); smaller orders are left to
    get_page_from_freelist()).
    """
    zone, order = cc.zone, cc.order
    if order < pageblock_order:
        return
    pfn = block << pageblock_order
    head = k.pages.peek(pfn)
    if not PageBuddy(head):
        head = k.pages.peek(pfn - PAGEBLOCK_NR_PAGES) if pfn & PAGEBLOCK_NR_PAGES else None
        if not PageBuddy(head) or head.private != MAX_ORDER - 1:
            return
    if head.private < order:
        return
    mt = get_pageblock_migratetype(zone, head.pfn)
    high = head.private
    _pa.del_page_from_free_list(zone, head, high)
    if head.pfn == pfn or order == high:
        _pa.expand(k, zone, head.pfn, order, high, mt)
        capc.page = head
    else:   # our block is the upper half of an order-10 block: the lower half stays free
        _pa.add_to_free_list(k, zone, head.pfn, pageblock_order, mt)
        capc.page = k.pages.pfn_to_page(pfn)
    zone.nr_free_pages -= 1 << order


def compact_zone(k, cc, capc=None):
    """compact_zone() (v5.11): migrate LRU memory from the zone bottom into free pages at
    the zone top until compaction_finished() says stop."""
    zone = cc.zone
    start_pfn, end_pfn = zone.zone_start_pfn, zone.zone_end_pfn
    sync = int(cc.mode != MIGRATE_ASYNC)
    cc.total_migrate_scanned = cc.total_free_scanned = 0
    cc.migratetype = gfp_migratetype(cc.gfp_mask)
    if cc.order != -1:
        ret = compaction_suitable(zone, cc.order, cc.alloc_flags, cc.highest_zoneidx)
        if ret in (COMPACT_SUCCESS, COMPACT_SKIPPED):
            return ret
    if compaction_restarting(zone, cc.order):
        __reset_isolation_suitable(zone)
    last_block = (end_pfn - 1) >> pageblock_order
    if cc.whole_zone:
        cc.migrate_pfn = start_pfn
        cc.free_pfn = last_block << pageblock_order
    else:
        cc.migrate_pfn = zone.compact_cached_migrate_pfn[sync]
        cc.free_pfn = zone.compact_cached_free_pfn
        if not start_pfn <= cc.free_pfn < end_pfn:
            cc.free_pfn = zone.compact_cached_free_pfn = last_block << pageblock_order
        if not start_pfn <= cc.migrate_pfn < end_pfn:
            cc.migrate_pfn = start_pfn
            zone.compact_cached_migrate_pfn[0] = zone.compact_cached_migrate_pfn[1] = start_pfn
        if cc.migrate_pfn <= zone.compact_init_migrate_pfn:
            cc.whole_zone = True
    last_migrated_block = None
    while True:
        ret = compact_finished(k, cc)
        if ret != COMPACT_CONTINUE:
            break
        block = cc.migrate_pfn >> pageblock_order
        cc.rescan = last_migrated_block == block
        cc.migrate_pfn = (block + 1) << pageblock_order
        if (block + 1) << pageblock_order > cc.free_pfn:
            continue   # isolate_migratepages(): the source block must end below the free scanner
        if not isolation_suitable(cc, block):
            continue
        contents = _pageblock_contents(k, zone, block)
        if not suitable_migration_source(cc, zone, block, contents):
            update_cached_migrate(cc, cc.migrate_pfn)
            continue
        extents = isolate_migratepages_block(k, cc, contents)
        if not extents or cc.rescan:
            zone.pageblock_skip.add(block)
            update_cached_migrate(cc, cc.migrate_pfn)
        if not extents:
            continue
        last_migrated_block = block
        for pfn, npages in extents:
            if not migrate_extent(k, cc, pfn, npages):
                break   # -ENOMEM: the free scanner met the migrate scanner
        lru_add_drain_cpu_zone(k, zone)   # left the order-aligned block it migrated from
        if capc is not None:
            _capture(k, cc, capc, block)
            if capc.page is not None:
                ret = COMPACT_SUCCESS
                break
    if cc.freepages:
        free_pfn = release_freepages(k, cc) & ~(PAGEBLOCK_NR_PAGES - 1)
        if free_pfn > zone.compact_cached_free_pfn:
            zone.compact_cached_free_pfn = free_pfn
    k.stat["compact_migrate_scanned"] += cc.total_migrate_scanned
    k.stat["compact_free_scanned"] += cc.total_free_scanned
    k.trace("compact_zone", zone=zone.name, nid=zone.nid, order=cc.order, mode=cc.mode,
            direct=cc.direct_compaction, result=COMPACT_RESULT_NAMES[ret],
            migrate_scanned=cc.total_migrate_scanned, free_scanned=cc.total_free_scanned)
    return ret


# ---------------------------------------------------------------- direct compaction

def compact_zone_order(k, zone, order, gfp_mask, prio, alloc_flags, highest_zoneidx):
    """compact_zone_order(): ASYNC at COMPACT_PRIO_ASYNC, else SYNC_LIGHT; at
    MIN_COMPACT_PRIORITY the whole zone, ignoring skip bits and target block types.

    Returns (result, captured page or None).
    """
    full = prio == MIN_COMPACT_PRIORITY
    cc = compact_control(order, gfp_mask,
                         MIGRATE_ASYNC if prio == COMPACT_PRIO_ASYNC else MIGRATE_SYNC_LIGHT,
                         direct_compaction=True, whole_zone=full, ignore_skip_hint=full,
                         ignore_block_suitable=full, alloc_flags=alloc_flags,
                         highest_zoneidx=highest_zoneidx)
    cc.zone = zone
    capc = capture_control(cc)
    ret = compact_zone(k, cc, capc)
    return ret, capc.page


def try_to_compact_pages(k, gfp_mask, order, alloc_flags, zonelist, highest_zoneidx, prio):
    """try_to_compact_pages() (v5.11): each zone of the zonelist, skipping deferred ones
    (above MIN_COMPACT_PRIORITY); stop on SUCCESS; sync runs that fail defer.

    Returns (result, captured page or None).
    """
    rc = COMPACT_SKIPPED
    if not gfp_mask & __GFP_IO:
        return rc, None
    for zone in zonelist:
        if prio > MIN_COMPACT_PRIORITY and compaction_deferred(zone, order):
            rc = max(COMPACT_DEFERRED, rc)
            continue
        status, page = compact_zone_order(k, zone, order, gfp_mask, prio, alloc_flags,
                                          highest_zoneidx)
        rc = max(status, rc)
        if status == COMPACT_SUCCESS:
            compaction_defer_reset(zone, order, False)
            return rc, page
        if prio != COMPACT_PRIO_ASYNC and status in (COMPACT_COMPLETE, COMPACT_PARTIAL_SKIPPED):
            defer_compaction(zone, order)
    return rc, None


def __alloc_pages_direct_compact(k, gfp_mask, order, alloc_flags, zonelist, highest_zoneidx,
                                 mt, prio):
    """__alloc_pages_direct_compact() (v5.11 page_alloc.c): compact under PF_MEMALLOC,
    count compact_stall, take the captured page or try the free lists again.

    Returns (page or None, compact_result).
    """
    if not order:
        return None, COMPACT_SKIPPED
    saved, k.in_reclaim = k.in_reclaim, True   # memalloc_noreclaim_save()
    try:
        result, page = try_to_compact_pages(k, gfp_mask, order, alloc_flags, zonelist,
                                            highest_zoneidx, prio)
    finally:
        k.in_reclaim = saved
    k.stat["compact_stall"] += 1
    if page is None:
        page = _pa.get_page_from_freelist(k, gfp_mask, order, alloc_flags, zonelist,
                                          highest_zoneidx, mt)
    if page is not None:
        zone = k.zone_of(page.pfn)
        zone.compact_blockskip_flush = False
        compaction_defer_reset(zone, order, True)
        k.stat["compact_success"] += 1
        return page, result
    k.stat["compact_fail"] += 1
    return None, result


def should_compact_retry(k, order, alloc_flags, compact_result, state, zonelist,
                         highest_zoneidx):
    """should_compact_retry() (v5.11 page_alloc.c): SUCCESS counts a retry; COMPLETE and
    the withdrawn results raise the priority if it can go higher; SKIPPED retries if
    reclaim could help; otherwise up to MAX_COMPACT_RETRIES (a quarter for costly orders).

    ``state`` is [compact_priority, compaction_retries], updated in place.
    """
    if not order:
        return False
    if compact_result == COMPACT_SUCCESS:
        state[1] += 1
    if compact_result == COMPACT_SKIPPED:
        return compaction_zonelist_suitable(k, order, alloc_flags, zonelist, highest_zoneidx)
    if compact_result not in (COMPACT_COMPLETE, COMPACT_DEFERRED, COMPACT_CONTENDED,
                              COMPACT_PARTIAL_SKIPPED):
        max_retries = MAX_COMPACT_RETRIES
        if order > PAGE_ALLOC_COSTLY_ORDER:
            max_retries //= 4
        if state[1] <= max_retries:
            return True
    min_priority = (MIN_COMPACT_COSTLY_PRIORITY if order > PAGE_ALLOC_COSTLY_ORDER
                    else MIN_COMPACT_PRIORITY)
    if state[0] > min_priority:
        state[0] -= 1
        state[1] = 0
        return True
    return False


# ---------------------------------------------------------------- kcompactd

class _kcompactd_pgdat:
    """pgdat->kcompactd_max_order / kcompactd_highest_zoneidx, and whether it is running."""

    def __init__(self, nr_zones):
        self.nr_zones = nr_zones
        self.kcompactd_max_order = 0
        self.kcompactd_highest_zoneidx = nr_zones - 1
        self.running = False


def _pgdat(k, nid):
    states = k.__dict__.get("kcompactd")
    if states is None:
        states = k.kcompactd = [
            _kcompactd_pgdat(max(z.zid for z in zones) + 1 if zones else 1)
            for zones in k.node_zones]
    return states[nid]


def kcompactd_node_suitable(k, nid):
    """kcompactd_node_suitable(): some populated zone ≤ highest would compact (CONTINUE)."""
    pgdat = _pgdat(k, nid)
    for zone in k.node_zones[nid]:
        if zone.zid > pgdat.kcompactd_highest_zoneidx or not zone.managed_pages:
            continue
        if compaction_suitable(zone, pgdat.kcompactd_max_order, 0,
                               pgdat.kcompactd_highest_zoneidx) == COMPACT_CONTINUE:
            return True
    return False


def kcompactd_do_work(k, nid):
    """kcompactd_do_work() (v5.11): sync-light compaction for GFP_KERNEL (Unmovable) at
    kcompactd_max_order in every suitable zone, bottom-up; failures drain and defer."""
    pgdat = _pgdat(k, nid)
    order, highest = pgdat.kcompactd_max_order, pgdat.kcompactd_highest_zoneidx
    k.stat["compact_daemon_wake"] += 1
    k.trace("kcompactd_wake", nid=nid, order=order, highest_zoneidx=highest)
    for zone in k.node_zones[nid]:
        if zone.zid > highest or not zone.managed_pages:
            continue
        if compaction_deferred(zone, order):
            continue
        if compaction_suitable(zone, order, 0, zone.zid) != COMPACT_CONTINUE:
            continue
        cc = compact_control(order, GFP_KERNEL, MIGRATE_SYNC_LIGHT, highest_zoneidx=highest)
        cc.zone = zone
        status = compact_zone(k, cc)
        if status == COMPACT_SUCCESS:
            compaction_defer_reset(zone, order, False)
        elif status in (COMPACT_PARTIAL_SKIPPED, COMPACT_COMPLETE):
            drain_all_pages_zone(k, zone)
            defer_compaction(zone, order)
        k.stat["compact_daemon_migrate_scanned"] += cc.total_migrate_scanned
        k.stat["compact_daemon_free_scanned"] += cc.total_free_scanned
    if pgdat.kcompactd_max_order <= order:
        pgdat.kcompactd_max_order = 0
    if pgdat.kcompactd_highest_zoneidx >= highest:
        pgdat.kcompactd_highest_zoneidx = pgdat.nr_zones - 1


def wakeup_kcompactd(k, nid, order, highest_zoneidx):
    """wakeup_kcompactd() (v5.11): record the order and zone, wake kcompactd if it sleeps
    and the node is suitable.  The model runs kcompactd_do_work() at once (no threads),
    as its kswapd runs to completion when woken.  Returns whether it ran."""
    if not order:
        return False
    pgdat = _pgdat(k, nid)
    if pgdat.kcompactd_max_order < order:
        pgdat.kcompactd_max_order = order
    if pgdat.kcompactd_highest_zoneidx > highest_zoneidx:
        pgdat.kcompactd_highest_zoneidx = highest_zoneidx
    if pgdat.running:   # !wq_has_sleeper(): it is awake and will see the new order
        return False
    if not kcompactd_node_suitable(k, nid):
        return False
    pgdat.running = True
    try:
        kcompactd_do_work(k, nid)
    finally:
        pgdat.running = False
    return True
