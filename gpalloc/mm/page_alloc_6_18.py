"""The page allocator as Linux 6.18 runs it: per-order pcp lists, claim/steal, the bulk path.

mm/page_alloc.c and include/linux/mmzone.h of 6.18 (docs/reference/kernel-6.18-bpf-jit.md
§3 gives the sources), the parts that differ from v5.11 (gpalloc.mm.page_alloc).  The
6.18 design (gpalloc.designs.linux_6_18) routes rmqueue(), the free path and vmalloc's
page array here; everything else (zonelists, watermarks, the slow path) is shared.

* **Per-CPU lists** (``per_cpu_pages``): one list per (migratetype, order) for orders
  0..3 and two THP lists (order 9), 14 in all.  ``batch`` 63 on zones ≥ 1 GiB; ``high``
  moves between ``high_min`` (the low watermark shared by the node's CPUs) and
  ``high_max`` (managed/8 shared likewise): a refill grows it by one batch, a free
  burst raises it to hold the burst.  Refills double (``alloc_factor``) on allocations
  without frees, up to batch << CONFIG_PCP_BATCH_SCALE_MAX (2016 pages); a free halves
  it.  A full list drains from its tail (oldest), the list just freed to first.
* **Buddy fallback** (``__rmqueue``): NORMAL → CLAIM → STEAL, remembered for the rest of
  one ``rmqueue_bulk`` batch.  CLAIM takes the largest other-type block from order 10
  down and, at order ≥ 9, the whole block (every pageblock in it re-typed); below that
  it claims the pageblock only if free + alike pages ≥ 256.  STEAL takes the smallest
  block from the request's order up and leaves the pageblock's type alone.
* **Freeing** (``__free_one_page``): merging past a pageblock re-types the buddy's
  pageblock to the freed page's type.
* **alloc_pages_bulk**: the first zone passing its low watermark + nr_pages, pages from
  the head of this CPU's order-0 list; memcg-accounted or single-page requests (and a
  first page that fails) take the ordinary single-page path.

Simplified, and said so in the notebooks: no watermark boosting (try_to_claim_block()
below pageblock order does not raise the watermark or wake kswapd), no compaction, no
decay_pcp_high() (the vmstat worker's 1/8-per-second decay of ``high``: the model has
no seconds), no buddy_merge_likely() "free to the tail", no page reporting, no
HIGHATOMIC/CMA/ISOLATE lists; ZONE_BELOW_HIGH is "free pages below the high watermark"
at the time it is read, ZONE_RECLAIM_ACTIVE is "reclaim is running" (k.in_reclaim).
"""

from .gfp import (
    __GFP_ACCOUNT,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
    gfp_migratetype,
    gfp_t,
    gfp_zone,
)
from .mmzone import get_pageblock_migratetype
from .page import MAX_ORDER, OWNER_PAGECACHE, OWNER_PCP, PageBuddy, pageblock_order
from .page_alloc import (
    ALLOC_NOFRAGMENT,
    ALLOC_WMARK_LOW,
    PAGE_ALLOC_COSTLY_ORDER,
    __alloc_pages_nodemask,
    __rmqueue_smallest,
    _take_head,
    _unlink,
    add_to_free_list,
    build_zonelist,
    del_page_from_free_list,
    expand,
    fallbacks,
    prep_new_page,
    zone_watermark_ok,
)

MAX_PAGE_ORDER = MAX_ORDER - 1          # 6.4+: the largest order, inclusive (10)
NR_LOWORDER_PCP_LISTS = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1)
NR_PCP_THP = 2                           # CONFIG_TRANSPARENT_HUGEPAGE: movable, other
NR_PCP_LISTS = NR_LOWORDER_PCP_LISTS + NR_PCP_THP
CONFIG_PCP_BATCH_SCALE_MAX = 5           # /proc/config.gz of the measured VM
MIN_PERCPU_PAGELIST_HIGH_FRACTION = 8
PCPF_PREV_FREE_HIGH_ORDER, PCPF_FREE_HIGH_BATCH = 0x01, 0x02
RMQUEUE_NORMAL, RMQUEUE_CLAIM, RMQUEUE_STEAL = "normal", "claim", "steal"   # enum rmqueue_mode
VM_BULK_REQUEST_MAX = 100                # vm_area_alloc_pages(): pages per bulk call


def pcp_allowed_order(order):
    """pcp_allowed_order(): orders 0..3, and pageblock_order for THP."""
    return order <= PAGE_ALLOC_COSTLY_ORDER or order == pageblock_order


def order_to_pindex(mt, order):
    """order_to_pindex(): list index of (migratetype, order); order 9 has the two THP lists."""
    if order > PAGE_ALLOC_COSTLY_ORDER:
        return NR_LOWORDER_PCP_LISTS + (mt == MIGRATE_MOVABLE)
    return MIGRATE_PCPTYPES * order + mt


def pindex_to_order(pindex):
    """pindex_to_order()."""
    return pageblock_order if pindex >= NR_LOWORDER_PCP_LISTS else pindex // MIGRATE_PCPTYPES


class per_cpu_pages:
    """struct per_cpu_pages (6.18): counts in pages, 14 lists; a list's *end* is its head."""

    __slots__ = ("count", "high", "high_min", "high_max", "batch", "flags", "alloc_factor",
                 "free_count", "lists")
    list_orders = tuple(pindex_to_order(i) for i in range(NR_PCP_LISTS))

    def __init__(self, batch, high_min, high_max):
        self.count, self.batch, self.flags = 0, batch, 0
        self.high_min, self.high_max, self.high = high_min, high_max, high_min
        self.alloc_factor = self.free_count = 0
        self.lists = [[] for _ in range(NR_PCP_LISTS)]

    def list_for(self, mt, order=0):
        """The list a page of this migratetype and order sits on."""
        return self.lists[order_to_pindex(mt, order)]


# ---------------------------------------------------------------- pcp sizing

def zone_highsize(zone, batch, nr_split_cpus, high_fraction):
    """zone_highsize(): low watermark (or managed/high_fraction) shared by the node's CPUs."""
    total = zone.low_wmark_pages() if not high_fraction else zone.managed_pages // high_fraction
    return max(total // max(1, nr_split_cpus), batch << 2)


def zone_set_pageset_high_and_batch(zone, batch, nr_split_cpus, cpus):
    """zone_set_pageset_high_and_batch(): one pcp per CPU with batch, high_min and high_max."""
    high_min = zone_highsize(zone, batch, nr_split_cpus, 0)
    high_max = zone_highsize(zone, batch, nr_split_cpus, MIN_PERCPU_PAGELIST_HIGH_FRACTION)
    zone.pcp = {cpu: per_cpu_pages(batch, high_min, high_max) for cpu in cpus}
    zone.pcp_batch, zone.pcp_high = batch, high_min


def zone_below_high(zone):
    """test_bit(ZONE_BELOW_HIGH): free pages under the high watermark."""
    return zone.nr_free_pages < zone.high_wmark_pages()


# ---------------------------------------------------------------- the buddy, 6.18

def set_pageblock_migratetype(zone, pfn, mt):
    """set_pageblock_migratetype()."""
    zone.pageblock_mt[pfn >> pageblock_order] = mt


def change_pageblock_range(zone, pfn, order, mt):
    """change_pageblock_range(): re-type every pageblock of a 2^order block."""
    for block in range(pfn >> pageblock_order, (pfn + (1 << order)) >> pageblock_order):
        zone.pageblock_mt[block] = mt


def find_suitable_fallback(zone, order, mt, claimable):
    """find_suitable_fallback(): first fallback type with a block of this order; -2 = too small."""
    if claimable and not should_try_claim_block(order, mt):
        return -2
    if zone.nr_free[order] == 0:
        return -1
    for fmt in fallbacks[mt]:
        if zone.free_area[order][fmt] or (order == MAX_PAGE_ORDER and fmt == MIGRATE_MOVABLE
                                         and zone.pristine):
            return fmt
    return -1


def should_try_claim_block(order, start_mt):
    """should_try_claim_block(): ≥ pageblock_order/2, or any order for unmovable/reclaimable."""
    return (order >= pageblock_order // 2 or start_mt in (MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE))


def prep_move_freepages_block(k, zone, pfn):
    """prep_move_freepages_block(): (start pfn, free pages, movable pages) of pfn's pageblock.

    None when the pageblock crosses the zone's edge.  Movable pages are page-cache pages
    (the model's PageLRU).
    """
    start = pfn & ~((1 << pageblock_order) - 1)
    end = start + (1 << pageblock_order)
    if start < zone.zone_start_pfn or end > zone.zone_end_pfn:
        return None
    free = movable = 0
    cur = start
    while cur < end:
        page = k.pages.peek(cur)
        if PageBuddy(page):
            free += 1 << page.private
            cur += 1 << page.private
        elif page is not None and page._refcount and page.owner == OWNER_PAGECACHE:
            movable += 1 << page.order
            cur += 1 << page.order
        else:
            cur += 1
    return start, free, movable


def __move_freepages_block(k, zone, start, old_mt, new_mt):
    """__move_freepages_block(): every free block of the pageblock onto new_mt's lists."""
    cur, end = start, start + (1 << pageblock_order)
    while cur < end:
        page = k.pages.peek(cur)
        if PageBuddy(page):
            order = page.private
            lst = zone.free_area[order][old_mt]
            if cur in lst:
                del lst[cur]
                zone.free_area[order][new_mt][cur] = None
            cur += 1 << order
        else:
            cur += 1


def _take_block(k, zone, order, mt):
    """get_page_from_free_area() + del_page_from_free_list(): the head block, off its list."""
    page, pristine = _take_head(k, zone, order, mt)
    if page is not None:
        _unlink(k, zone, page, order, pristine)
    return page


def try_to_claim_block(k, zone, page, current_order, order, start_mt, block_mt):
    """try_to_claim_block(): take a whole ≥ pageblock block, or a pageblock that is mostly ours.

    ``page`` is the head of block_mt's list at current_order, still on it.
    """
    if current_order >= pageblock_order:
        page, pristine = _take_head(k, zone, current_order, block_mt)
        _unlink(k, zone, page, current_order, pristine)
        change_pageblock_range(zone, page.pfn, current_order, start_mt)
        expand(k, zone, page.pfn, order, current_order, start_mt)
        return page
    prep = prep_move_freepages_block(k, zone, page.pfn)
    if prep is None:
        return None
    start, free, movable = prep
    if start_mt == MIGRATE_MOVABLE:
        alike = movable
    elif block_mt == MIGRATE_MOVABLE:
        alike = (1 << pageblock_order) - (free + movable)
    else:
        alike = 0
    if free + alike >= 1 << (pageblock_order - 1):
        __move_freepages_block(k, zone, start, block_mt, start_mt)
        set_pageblock_migratetype(zone, start, start_mt)
        return __rmqueue_smallest(k, zone, order, start_mt)
    return None


def __rmqueue_claim(k, zone, order, start_mt, alloc_flags):
    """__rmqueue_claim(): the largest other-type block, from order 10 down, claimed for us."""
    min_order = order
    if order < pageblock_order and alloc_flags & ALLOC_NOFRAGMENT:
        min_order = pageblock_order
    for current in range(MAX_PAGE_ORDER, min_order - 1, -1):
        fmt = find_suitable_fallback(zone, current, start_mt, True)
        if fmt == -1:
            continue
        if fmt == -2:
            break
        head, _ = _take_head(k, zone, current, fmt)
        page = try_to_claim_block(k, zone, head, current, order, start_mt, fmt)
        if page is not None:
            k.stat["pgalloc_claim"] += 1
            k.trace("mm_page_alloc_extfrag", pfn=page.pfn, order=order, fallback_order=current,
                    migratetype=start_mt, fallback_migratetype=fmt, change_ownership=1)
            return page
    return None


def __rmqueue_steal(k, zone, order, start_mt):
    """__rmqueue_steal(): the smallest other-type block from this order up; its type stays."""
    for current in range(order, MAX_PAGE_ORDER + 1):
        fmt = find_suitable_fallback(zone, current, start_mt, False)
        if fmt == -1:
            continue
        page = _take_block(k, zone, current, fmt)
        expand(k, zone, page.pfn, order, current, fmt)   # page_del_and_expand()
        k.stat["pgalloc_steal"] += 1
        k.trace("mm_page_alloc_extfrag", pfn=page.pfn, order=order, fallback_order=current,
                migratetype=start_mt, fallback_migratetype=fmt, change_ownership=0)
        return page
    return None


def __rmqueue(k, zone, order, mt, alloc_flags, mode):
    """__rmqueue(): NORMAL → CLAIM → STEAL; ``mode`` ([enum rmqueue_mode]) lasts one batch."""
    if mode[0] == RMQUEUE_NORMAL:
        page = __rmqueue_smallest(k, zone, order, mt)
        if page is not None:
            return page
    if mode[0] in (RMQUEUE_NORMAL, RMQUEUE_CLAIM):
        page = __rmqueue_claim(k, zone, order, mt, alloc_flags)
        if page is not None:
            mode[0] = RMQUEUE_NORMAL   # our own lists are replenished: back to normal
            return page
    if not alloc_flags & ALLOC_NOFRAGMENT:
        page = __rmqueue_steal(k, zone, order, mt)
        if page is not None:
            mode[0] = RMQUEUE_STEAL
            return page
    return None


def rmqueue_bulk(k, zone, order, count, lst, mt, alloc_flags):
    """rmqueue_bulk(): up to count blocks under one zone->lock, each list_add_tail()ed."""
    mode, taken = [RMQUEUE_NORMAL], []
    for _ in range(count):
        page = __rmqueue(k, zone, order, mt, alloc_flags, mode)
        if page is None:
            break
        page.owner, page.order = OWNER_PCP, order
        taken.append(page.pfn)
    zone.nr_free_pages -= len(taken) << order
    lst[:0] = reversed(taken)   # tail of the kernel list = start of ours
    return len(taken)


def rmqueue_buddy(k, zone, order, alloc_flags, mt):
    """rmqueue_buddy(): a block straight from the buddy lists."""
    page = __rmqueue(k, zone, order, mt, alloc_flags, [RMQUEUE_NORMAL])
    if page is not None:
        zone.nr_free_pages -= 1 << order
    return page


# ---------------------------------------------------------------- pcp allocation

def nr_pcp_alloc(pcp, zone, order):
    """nr_pcp_alloc(): how many blocks a refill takes; grows high and alloc_factor."""
    base = pcp.batch
    high = pcp.high = min(max(pcp.high, pcp.high_min), pcp.high_max)
    if high < base:
        return 1
    batch = base if order else base << pcp.alloc_factor
    if pcp.high_min != pcp.high_max and not zone_below_high(zone):
        high = pcp.high = min(high + batch, pcp.high_max)
    if not order:
        max_nr_alloc = max(high - pcp.count - base, base)
        if batch <= max_nr_alloc and pcp.alloc_factor < CONFIG_PCP_BATCH_SCALE_MAX:
            pcp.alloc_factor += 1
        batch = min(batch, max_nr_alloc)
    if batch > 1:
        batch = max(batch >> order, 2)
    return batch


def __rmqueue_pcplist(k, zone, order, mt, alloc_flags, pcp, lst):
    """__rmqueue_pcplist(): the list's head; an empty list is refilled first."""
    if not lst:
        got = rmqueue_bulk(k, zone, order, nr_pcp_alloc(pcp, zone, order), lst, mt, alloc_flags)
        pcp.count += got << order
        if not lst:
            return None
    pcp.count -= 1 << order
    return k.pages.pfn_to_page(lst.pop())


def rmqueue_pcplist(k, zone, order, mt, alloc_flags):
    """rmqueue_pcplist(): an allocation halves free_count, then takes from this CPU's list."""
    pcp = zone.pcp[k.cpu]
    pcp.free_count >>= 1
    return __rmqueue_pcplist(k, zone, order, mt, alloc_flags, pcp, pcp.list_for(mt, order))


def rmqueue(k, zone, order, gfp, alloc_flags, mt):
    """rmqueue() (6.18): pcp-allowed orders from this CPU's lists, the rest from the buddy."""
    if pcp_allowed_order(order):
        page = rmqueue_pcplist(k, zone, order, mt, alloc_flags)
        if page is not None:
            return page
    return rmqueue_buddy(k, zone, order, alloc_flags, mt)


# ---------------------------------------------------------------- freeing

def __free_one_page(k, zone, pfn, order, mt):
    """__free_one_page() (6.18): merge; past a pageblock the buddy's pageblock takes our type."""
    zone.nr_free_pages += 1 << order
    while order < MAX_PAGE_ORDER:
        buddy_pfn = pfn ^ (1 << order)
        if not zone.zone_start_pfn <= buddy_pfn < zone.zone_end_pfn:
            break
        buddy = k.pages.peek(buddy_pfn)
        if not PageBuddy(buddy) or buddy.private != order:
            break
        del_page_from_free_list(zone, buddy, order)
        if order >= pageblock_order and get_pageblock_migratetype(zone, buddy_pfn) != mt:
            set_pageblock_migratetype(zone, buddy_pfn, mt)   # "match buddy type"
        pfn &= buddy_pfn
        order += 1
    add_to_free_list(k, zone, pfn, order, mt)


def __free_pages_ok(k, page, order):
    """__free_pages_ok(): a block the pcp lists do not take goes straight to the buddy."""
    zone = k.zone_of(page.pfn)
    page.owner, page.order = None, 0
    __free_one_page(k, zone, page.pfn, order, get_pageblock_migratetype(zone, page.pfn))


def nr_pcp_free(pcp, batch, high, free_high):
    """nr_pcp_free(): pages to give back; a run of frees gives back more."""
    if free_high:
        return min(pcp.count, batch << CONFIG_PCP_BATCH_SCALE_MAX)
    return min(max(pcp.free_count, batch), max(high - batch, batch))


def nr_pcp_high(k, pcp, zone, batch, free_high):
    """nr_pcp_high(): the count above which a free drains; raised to hold a free burst."""
    high = pcp.high = min(max(pcp.high, pcp.high_min), pcp.high_max)
    if not high:
        return 0
    if free_high:
        pcp.high = max(high - (batch << CONFIG_PCP_BATCH_SCALE_MAX), pcp.high_min)
        return 0
    if k.in_reclaim:   # ZONE_RECLAIM_ACTIVE
        pcp.high = max(high - max(pcp.free_count, batch), pcp.high_min)
        return min(batch << 2, pcp.high)
    if pcp.high_min == pcp.high_max:
        return high
    if zone_below_high(zone):
        pcp.high = max(high - max(pcp.free_count, batch), pcp.high_min)
        high = max(pcp.count, pcp.high_min)
    elif pcp.count >= high:
        need = pcp.free_count + batch
        if pcp.high < need:
            pcp.high = min(max(need, pcp.high_min), pcp.high_max)
    return high


def free_pcppages_bulk(k, zone, count, pcp, pindex):
    """free_pcppages_bulk(): drain from list tails, list pindex first, then round-robin."""
    count = min(pcp.count, count)
    pindex -= 1
    while count > 0:
        while True:
            pindex = 0 if pindex + 1 >= NR_PCP_LISTS else pindex + 1
            lst = pcp.lists[pindex]
            if lst:
                break
        order = pindex_to_order(pindex)
        while count > 0 and lst:
            page = k.pages.pfn_to_page(lst.pop(0))
            count -= 1 << order
            pcp.count -= 1 << order
            page.owner, page.order = None, 0
            # the pageblock's type is read again now, not when the page was freed
            __free_one_page(k, zone, page.pfn, order, get_pageblock_migratetype(zone, page.pfn))


def free_frozen_page_commit(k, zone, pcp, page, mt, order):
    """free_frozen_page_commit(): to the list head; drain past high."""
    pcp.alloc_factor >>= 1
    pindex = order_to_pindex(mt, order)
    page.owner, page.order, page.pcp_mt = OWNER_PCP, order, mt
    pcp.lists[pindex].append(page.pfn)
    pcp.count += 1 << order
    batch = pcp.batch
    free_high = False
    if order and order <= PAGE_ALLOC_COSTLY_ORDER:
        free_high = (pcp.free_count >= batch + pcp.high_min // 2
                     and pcp.flags & PCPF_PREV_FREE_HIGH_ORDER
                     and (not pcp.flags & PCPF_FREE_HIGH_BATCH or pcp.count >= batch))
        pcp.flags |= PCPF_PREV_FREE_HIGH_ORDER
    else:
        pcp.flags &= ~PCPF_PREV_FREE_HIGH_ORDER
    if pcp.free_count < batch << CONFIG_PCP_BATCH_SCALE_MAX:
        pcp.free_count += 1 << order
    high = nr_pcp_high(k, pcp, zone, batch, bool(free_high))
    if pcp.count >= high:
        free_pcppages_bulk(k, zone, nr_pcp_free(pcp, batch, high, bool(free_high)), pcp, pindex)


def free_frozen_pages(k, page, order):
    """__free_frozen_pages(): pcp-allowed orders to this CPU's list, others to the buddy."""
    if not pcp_allowed_order(order):
        __free_pages_ok(k, page, order)
        return
    zone = k.zone_of(page.pfn)
    free_frozen_page_commit(k, zone, zone.pcp[k.cpu], page,
                            get_pageblock_migratetype(zone, page.pfn), order)


def drain_pages_zone(k, zone, cpu):
    """drain_pages_zone(): one CPU's lists back to the buddy."""
    pcp = zone.pcp.get(cpu)
    if pcp and pcp.count:
        free_pcppages_bulk(k, zone, pcp.count, pcp, 0)


# ---------------------------------------------------------------- the bulk allocator

def alloc_pages_bulk(k, gfp, preferred_nid, nr_pages):
    """alloc_pages_bulk_noprof(): up to nr_pages order-0 pages, as a list (maybe shorter).

    Bulk only for more than one page without __GFP_ACCOUNT (memcg kmem is on): the
    first zone of the zonelist passing low watermark + nr_pages, this CPU's list for
    the gfp's migratetype, without ALLOC_NOFRAGMENT.  Otherwise, or if the very first
    page cannot be had, one page from the ordinary allocator.
    """
    gfp = gfp_t(gfp)
    if nr_pages <= 0:
        return []
    if nr_pages > 1 and not gfp & __GFP_ACCOUNT:
        highest, mt = gfp_zone(gfp), gfp_migratetype(gfp)
        zonelist = build_zonelist(k, preferred_nid, highest)
        for zone in zonelist:
            if k.nr_nodes > 1 and zone.nid != preferred_nid:
                break   # no local zone meets the watermark: single-page path
            if zone_watermark_ok(zone, 0, zone.low_wmark_pages() + nr_pages, highest,
                                 ALLOC_WMARK_LOW):
                pages = _bulk_from_pcp(k, zone, mt, nr_pages)
                if pages:
                    return pages
                break
    page = __alloc_pages_nodemask(k, gfp, 0, preferred_nid)
    return [page] if page is not None else []


def _bulk_from_pcp(k, zone, mt, nr_pages):
    """The batch loop of alloc_pages_bulk_noprof(): __rmqueue_pcplist() until nr_pages or NULL."""
    pcp = zone.pcp[k.cpu]
    lst = pcp.list_for(mt, 0)
    pages = []
    while len(pages) < nr_pages:
        page = __rmqueue_pcplist(k, zone, 0, mt, ALLOC_WMARK_LOW, pcp, lst)
        if page is None:
            break
        prep_new_page(page, 0)
        pages.append(page)
    k.stat["pgalloc"] += len(pages)
    k.stat["pgalloc_bulk"] += len(pages)
    return pages
