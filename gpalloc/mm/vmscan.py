"""Shrinkers and reclaim (include/linux/shrinker.h, mm/vmscan.c, fs/drop_caches.c, v5.11).

``do_shrink_slab`` follows the v5.11 formula step by step (deferred work,
``(freeable >> priority) * 4 / seeks``, the anti-windup clamp, the 2×freeable cap,
batches of 128).  Reclaim of ordinary memory is abstracted to one reclaimable
pool per node: the background "page cache" extents a workload allocated
(``k.lru[nid]``, a ``lruvec``, oldest first).  kswapd and direct reclaim walk priority 12 → 0
and call ``shrink_slab`` on every pass, as ``shrink_node`` does.
"""

from dataclasses import dataclass

from ..errno import ENOMEM
from . import compaction as _compaction
from . import page_alloc as _pa
from .gfp import __GFP_DIRECT_RECLAIM, GFP_KERNEL, gfp_t
from .page import pageblock_order

SHRINK_STOP = (1 << 64) - 1
SHRINK_EMPTY = (1 << 64) - 2
SHRINK_BATCH = 128
DEFAULT_SEEKS = 2
SHRINKER_NUMA_AWARE, SHRINKER_MEMCG_AWARE, SHRINKER_NONSLAB = 1, 2, 4
DEF_PRIORITY = 12
SWAP_CLUSTER_MAX = 32


@dataclass
class shrink_control:
    """struct shrink_control."""

    gfp_mask: int
    nid: int = 0
    nr_to_scan: int = 0
    nr_scanned: int = 0
    memcg: object = None


class shrinker:
    """struct shrinker: count/scan callbacks, batch, seeks, flags and nr_deferred."""

    def __init__(self, count_objects, scan_objects, seeks=DEFAULT_SEEKS, batch=0, flags=0,
                 name="shrinker"):
        self.count_objects, self.scan_objects = count_objects, scan_objects
        self.seeks, self.batch, self.flags, self.name = seeks, batch, flags, name
        self.nr_deferred = None

    def __repr__(self):
        return f"<shrinker {self.name} nr_deferred={self.nr_deferred}>"


def register_shrinker(k, s):
    """register_shrinker(): prealloc nr_deferred (per node if NUMA aware), then list it.

    Returns 0 or -ENOMEM; ``Machine(faults=("register_shrinker",))`` injects the failure.
    """
    if "register_shrinker" in k.faults:
        return -ENOMEM
    s.nr_deferred = [0] * (k.nr_nodes if s.flags & SHRINKER_NUMA_AWARE else 1)
    k.shrinker_list.append(s)
    return 0


def unregister_shrinker(k, s):
    """unregister_shrinker()."""
    if s in k.shrinker_list:
        k.shrinker_list.remove(s)
    s.nr_deferred = None


def do_shrink_slab(k, sc, s, priority):
    """do_shrink_slab(): how much of a shrinker's cache to scan at this priority."""
    nid = sc.nid if s.flags & SHRINKER_NUMA_AWARE else 0
    batch_size = s.batch or SHRINK_BATCH
    freeable = s.count_objects(s, sc)
    if freeable == 0 or freeable == SHRINK_EMPTY:
        return freeable
    nr = s.nr_deferred[nid]
    s.nr_deferred[nid] = 0
    if s.seeks:
        delta = (freeable >> priority) * 4 // s.seeks
    else:
        delta = freeable // 2
    total_scan = nr + delta
    next_deferred = total_scan
    if delta < freeable // 4:
        total_scan = min(total_scan, freeable // 2)
    if total_scan > freeable * 2:
        total_scan = freeable * 2
    freed = scanned = 0
    while total_scan >= batch_size or total_scan >= freeable:
        nr_to_scan = min(batch_size, total_scan)
        sc.nr_to_scan = sc.nr_scanned = nr_to_scan
        ret = s.scan_objects(s, sc)
        k.stat["shrinker_calls"] += 1
        if ret == SHRINK_STOP:
            k.stat["shrinker_stop"] += 1
            break
        freed += ret
        k.stat["slabs_scanned"] += sc.nr_scanned
        total_scan -= sc.nr_scanned
        scanned += sc.nr_scanned
    next_deferred = max(next_deferred - scanned, 0)
    if next_deferred > 0:
        s.nr_deferred[nid] += next_deferred
    k.stat["shrinker_freed"] += freed
    k.trace("do_shrink_slab", shrinker=s.name, nid=nid, priority=priority, freeable=freeable,
            delta=delta, deferred_in=nr, deferred_out=s.nr_deferred[nid], freed=freed)
    return freed


def shrink_slab(k, gfp_mask, nid, memcg, priority):
    """shrink_slab(): call every registered shrinker for one node (root/global reclaim)."""
    freed = 0
    for s in list(k.shrinker_list):
        if memcg is not None and not s.flags & SHRINKER_MEMCG_AWARE:
            continue   # shrink_slab_memcg() only calls memcg-aware shrinkers
        sc = shrink_control(gfp_mask=gfp_t(gfp_mask), nid=nid, memcg=memcg)
        ret = do_shrink_slab(k, sc, s, priority)
        if ret == SHRINK_EMPTY:
            ret = 0
        freed += ret
    return freed


def drop_slab_node(k, nid):
    """drop_slab_node(): priority-0 shrink_slab passes until one frees 10 or fewer."""
    while True:
        freed = shrink_slab(k, GFP_KERNEL, nid, None, 0)
        if freed <= 10:
            return


def drop_slab(k):
    """drop_slab(): every node."""
    for nid in range(k.nr_nodes):
        drop_slab_node(k, nid)


def drop_pagecache(k):
    """drop_pagecache_sb() for every sb: free every clean background page-cache extent."""
    for nid in range(k.nr_nodes):
        while k.lru[nid]:
            _reclaim_one_extent(k, nid)


def drop_caches(k, mode):
    """echo mode > /proc/sys/vm/drop_caches: 1 page cache, 2 slab (shrinkers), 3 both."""
    if mode not in (1, 2, 3):
        raise ValueError(f"drop_caches: mode must be 1, 2 or 3, got {mode!r}")
    if mode & 1:
        drop_pagecache(k)
    if mode & 2:
        drop_slab(k)
    k.stat[f"drop_caches_{mode}"] += 1


# ---------------------------------------------------------------- page reclaim

def _reclaim_one_extent(k, nid):
    lru = k.lru[nid]
    pfn = lru.oldest()
    order = lru.remove(pfn)
    page = k.pages.pfn_to_page(pfn)
    _pa.__free_pages(k, page, order)
    k.stat["pgsteal"] += 1 << order
    return 1 << order


def lru_pages(k, nid):
    """lruvec_lru_size() summed: reclaimable background pages on a node."""
    return k.lru[nid].nr_pages


def shrink_node(k, nid, gfp_mask, priority, nr_to_reclaim):
    """shrink_node(): scan the node's LRU (size >> priority), then shrink_slab()."""
    size = lru_pages(k, nid)
    target = min(size >> priority, nr_to_reclaim)
    if size and priority == 0:
        target = min(size, nr_to_reclaim)
    reclaimed = 0
    while reclaimed < target and k.lru[nid]:
        reclaimed += _reclaim_one_extent(k, nid)
    k.stat["pgscan"] += target
    shrink_slab(k, gfp_mask, nid, None, priority)
    return reclaimed


def try_to_free_pages(k, gfp_mask, order, nid):
    """try_to_free_pages() → do_try_to_free_pages(): direct reclaim, 32 pages, priority 12→0."""
    nodes = [(nid + i) % k.nr_nodes for i in range(k.nr_nodes)]
    reclaimed = 0
    for priority in range(DEF_PRIORITY, -1, -1):
        for n in nodes:
            reclaimed += shrink_node(k, n, gfp_mask, priority, SWAP_CLUSTER_MAX - reclaimed)
            if reclaimed >= SWAP_CLUSTER_MAX:
                break
        k.stat["direct_reclaim_passes"] += 1
        if reclaimed >= SWAP_CLUSTER_MAX:
            break
    k.trace("try_to_free_pages", nid=nid, order=order, reclaimed=reclaimed,
            priority=priority)
    return reclaimed


def pgdat_balanced(k, nid, order, highest_zoneidx):
    """pgdat_balanced(): any eligible zone above its high watermark for this order."""
    for z in k.node_zones[nid]:
        if z.zid <= highest_zoneidx and z.managed_pages:
            if _pa.zone_watermark_ok(z, order, z.high_wmark_pages(), highest_zoneidx, 0):
                return True
    return False


def pgdat_watermark_boosted(k, nid, highest_zoneidx):
    """pgdat_watermark_boosted(): does any eligible zone of the node carry a boost?"""
    return any(z.watermark_boost for z in k.node_zones[nid] if z.zid <= highest_zoneidx)


def balance_pgdat(k, nid, order, highest_zoneidx):
    """balance_pgdat() (v5.11 vmscan.c): kswapd's loop, priority 12 → 1.

    Normal reclaim runs until the node is balanced (pgdat_balanced() at high + boost).
    Boosted reclaim (the zones' watermark_boost, snapshot at entry) reclaims about the
    boost even on a balanced node: clean page cache only (may_writepage = may_swap = 0;
    the model's LRU holds only clean page cache, so nothing else changes), priority not
    raised past DEF_PRIORITY - 2, stopping once the boost is reclaimed or a pass frees
    nothing; an unbalanced node drops the boost goal and restarts as normal reclaim.
    At the end each zone's boost loses its snapshot and kcompactd is woken at pageblock
    order (wakeup_kcompactd()).
    kswapd_shrink_node(): nr_to_reclaim is Σ max(high + boost, 32).  Counts pageoutrun,
    pgscan_kswapd and pgsteal_kswapd.
    """
    k.stat["kswapd_runs"] += 1
    k.stat["pageoutrun"] += 1
    zones = [z for z in k.node_zones[nid] if z.zid <= highest_zoneidx and z.managed_pages]
    zone_boosts = [z.watermark_boost for z in zones]
    nr_boost_reclaim = sum(zone_boosts)
    boosted = nr_boost_reclaim != 0
    steal0, scan0 = k.stat["pgsteal"], k.stat["pgscan"]
    priority, nr_reclaimed = DEF_PRIORITY, 0
    while priority >= 1:
        raise_priority = True
        balanced = pgdat_balanced(k, nid, order, highest_zoneidx)
        if not balanced and nr_boost_reclaim:
            nr_boost_reclaim = 0          # goto restart: normal reclaim from DEF_PRIORITY
            priority = DEF_PRIORITY
            continue
        if not nr_boost_reclaim and balanced:
            break
        if nr_boost_reclaim and priority == DEF_PRIORITY - 2:
            raise_priority = False
        nr_to_reclaim = sum(max(z.high_wmark_pages(), SWAP_CLUSTER_MAX) for z in zones)
        reclaimed = shrink_node(k, nid, GFP_KERNEL, priority, nr_to_reclaim)
        nr_reclaimed += reclaimed   # sc->nr_reclaimed: the whole run's, not this pass's
        if order and nr_reclaimed >= 2 << order:   # kswapd_shrink_node(): compaction's turn
            order = 0
        if reclaimed >= nr_to_reclaim:
            raise_priority = False
        nr_boost_reclaim -= min(nr_boost_reclaim, reclaimed)
        if nr_boost_reclaim and not reclaimed:
            break
        if raise_priority or not reclaimed:
            priority -= 1
    if boosted:
        for z, boost in zip(zones, zone_boosts, strict=True):
            if boost:
                z.watermark_boost -= min(z.watermark_boost, boost)
        _compaction.wakeup_kcompactd(k, nid, pageblock_order, highest_zoneidx)
    k.stat["pgsteal_kswapd"] += k.stat["pgsteal"] - steal0
    k.stat["pgscan_kswapd"] += k.stat["pgscan"] - scan0
    return priority


def wakeup_kswapd(k, order, zonelist, gfp=None):
    """wakeup_kswapd(): the model runs kswapd's balance_pgdat() at once (synchronously).

    Not woken when the node is balanced and not boosted (v5.11), nor from inside reclaim;
    then a request that cannot reclaim itself (no __GFP_DIRECT_RECLAIM in ``gfp``) wakes
    kcompactd instead.
    """
    nid = zonelist[0].nid
    highest = max(z.zid for z in zonelist if z.nid == nid)
    if pgdat_balanced(k, nid, order, highest) and not pgdat_watermark_boosted(k, nid, highest):
        # enough free memory, maybe too fragmented for this order: kcompactd decides
        if gfp is not None and not gfp & __GFP_DIRECT_RECLAIM:
            _compaction.wakeup_kcompactd(k, nid, order, highest)
        return
    if k.in_reclaim:
        return
    k.in_reclaim = True
    try:
        balance_pgdat(k, nid, order, highest)
        _compaction.reset_isolation_suitable(k, nid)   # kswapd_try_to_sleep(): skip bits
        # Not modelled: kswapd_try_to_sleep()'s wakeup_kcompactd(order).  The kernel's kswapd
        # goes to sleep long after the allocating task went through its own slow path (direct
        # compaction); run here, inside the allocation, kcompactd would compact first.
    finally:
        k.in_reclaim = False
