"""RFC 2/3 "vmalloc: Support grouped page allocations": the VM_GROUP_PAGES page cache.

In the RFC this code sits in mm/vmalloc.c under CONFIG_ARCH_HAS_HPAGE_DIRECT_MAP_PERMS;
the model keeps it in this sibling module with the same function names.  When
patch 2 is not applied the config is off: ``k.grouped`` is None and VM_GROUP_PAGES
is ignored.

Pages are cut from 2 MiB (order-9) blocks with split_page(); free pages wait on a
per-node list_lru, most recently freed first (list_lru_get_mru).  The free-list
link lives either in the page's own memory via its direct-map address (the RFC,
``storage="contents"``) or in ``struct page`` with an explicit node (what the
reviewers asked for, ``storage="struct_page"``).  Placement and counters are the
same; only what can go wrong differs.
"""

from ..arch.x86 import set_memory as _cpa
from ..arch.x86.pgtable_types import _PAGE_PRESENT, _PAGE_RW
from ..bug import WARN, KernelBUG
from . import page_alloc as _pa
from . import vmalloc as _vm
from .gfp import GFP_GROUPED
from .list_lru import (
    LRU_REMOVED,
    list_lru_add,
    list_lru_add_node,
    list_lru_count_node,
    list_lru_get_mru,
    list_lru_init,
    list_lru_isolate_move,
    list_lru_shrink_count,
    list_lru_shrink_walk,
)
from .page import HUGETLB_PAGE_ORDER, page_address
from .vmscan import (
    DEFAULT_SEEKS,
    SHRINK_EMPTY,
    SHRINK_STOP,
    SHRINKER_NUMA_AWARE,
    register_shrinker,
    shrinker,
)

NUMA_NO_NODE = -1
HPAGE_NR = 512   # HPAGE_SIZE >> PAGE_SHIFT
STORAGE_VARIANTS = ("contents", "struct_page")


class grouped_cache:
    """The RFC's statics: grouped_pages_lru, grouped_page_en, nid_round_robin, the shrinker."""

    def __init__(self, storage, nr_scanned_quirk, unmapped=False):
        if storage not in STORAGE_VARIANTS:
            raise ValueError(f"list_head: must be one of {STORAGE_VARIANTS}, got {storage!r}")
        self.storage = storage
        self.unmapped = unmapped   # hypothetical: cached pages removed from the direct map
        self.nr_scanned_quirk = nr_scanned_quirk
        self.grouped_pages_lru = None
        self.grouped_page_en = False
        self.nid_round_robin = 0
        self.shrinker = None
        self.blocks = {}   # base pfn of each replenished 2 MiB block → node
        self.replenish_per_node = None   # set by grouped_page_init (model-only counter)


def grouped_page_init(k):
    """grouped_page_init() (device_initcall): list_lru, then the shrinker; enable on success."""
    g = k.grouped
    g.replenish_per_node = [0] * k.nr_nodes
    if g.storage == "contents":
        def nid_of(item):   # page_to_nid(virt_to_page(item))
            return k.pages.virt_to_page(item).nid
    else:
        def nid_of(item):
            return item.nid
    g.grouped_pages_lru = list_lru_init(k, nid_of, name="grouped_pages_lru")
    g.shrinker = shrinker(lambda s, sc: grouped_shrink_count(k, s, sc),
                          lambda s, sc: grouped_shrink_scan(k, s, sc),
                          seeks=DEFAULT_SEEKS, flags=SHRINKER_NUMA_AWARE,
                          name="grouped_page_shrinker")
    g.grouped_page_en = register_shrinker(k, g.shrinker) == 0
    if not g.grouped_page_en:
        g.grouped_pages_lru = None   # list_lru_destroy()
    return 0 if g.grouped_page_en else 1


def vmalloc_grouped_page_enabled(k, vm_flags):
    """vmalloc_grouped_page_enabled(): grouped_page_en && (vm_flags & VM_GROUP_PAGES)."""
    g = k.grouped
    return g is not None and g.grouped_page_en and bool(vm_flags & 0x400)


def _item_to_page(k, item):
    if k.grouped.storage == "contents":
        page = k.pages.virt_to_page(item)   # virt_to_page(head)
        page.contents = "stale list_head"   # the memory still holds the old link
    else:
        page = item
        page.lru = None
    if k.grouped.unmapped:
        _cpa.set_direct_map_default_noflush(k, page)
    return page


def __remove_first_page(k, node):
    """__remove_first_page(): MRU page of one node, or round-robin over nodes for NUMA_NO_NODE."""
    g = k.grouped
    lru = g.grouped_pages_lru
    if node != NUMA_NO_NODE:
        item = list_lru_get_mru(lru, node)
        return _item_to_page(k, item) if item is not None else None
    start = g.nid_round_robin % k.nr_nodes      # atomic_fetch_inc(&nid_round_robin)
    g.nid_round_robin += 1
    for i in range(k.nr_nodes):
        item = list_lru_get_mru(lru, (start + i) % k.nr_nodes)
        if item is not None:
            return _item_to_page(k, item)
    return None


def __free_grouped_page(k, page):
    """__free_grouped_page(): INIT_LIST_HEAD in the page (or struct page), list_lru_add it."""
    g = k.grouped
    page.owner = "grouped"
    if g.unmapped:   # not the RFC: the "cache of unmapped pages" idea it would have to grow into
        _cpa.set_direct_map_invalid_noflush(k, page)
    if g.storage == "contents":
        addr = page_address(page)
        _write_through_direct_map(k, page, addr)
        page.contents = "list_head"
        list_lru_add(g.grouped_pages_lru, addr)
    else:
        page.lru = "grouped_pages_lru"
        list_lru_add_node(g.grouped_pages_lru, page, page.nid)


def _write_through_direct_map(k, page, addr):
    """A store to page_address(page): faults if the direct map does not map it writable."""
    _, prot = k.dmap.lookup_address(page.pfn)
    if not prot & _PAGE_PRESENT:
        raise KernelBUG(f"BUG: unable to handle page fault for address: {addr:#x} "
                        f"(#PF: supervisor write access in kernel mode, not-present page) "
                        f"in __free_grouped_page")
    if not prot & _PAGE_RW:
        raise KernelBUG(f"BUG: unable to handle page fault for address: {addr:#x} "
                        f"(#PF: supervisor write access, protection violation) "
                        f"in __free_grouped_page")


def __replenish_grouped_pages(k, node):
    """__replenish_grouped_pages(): one order-9 block → 511 pages cached, page 0 returned.

    If no 2 MiB block can be had, one order-0 GFP_GROUPED page (not cached now).
    """
    page = _vm.__vm_alloc_page_order(k, node, GFP_GROUPED, HUGETLB_PAGE_ORDER)
    if page is None:
        k.stat["grouped_fallback"] += 1
        k.trace("grouped_fallback", node=node)
        return _vm.__vm_alloc_page_order(k, node, GFP_GROUPED, 0)
    k.stat["grouped_replenish"] += 1
    _pa.split_page(k, page, HUGETLB_PAGE_ORDER)
    k.grouped.blocks[page.pfn] = page.nid
    k.grouped.replenish_per_node[page.nid] += 1
    k.trace("grouped_replenish", node=node, pfn=page.pfn, nid=page.nid)
    for i in range(1, HPAGE_NR):
        __free_grouped_page(k, k.pages.pfn_to_page(page.pfn + i))
    return page


def __get_grouped_page(k, node, gfp_mask):
    """__get_grouped_page(): exact GFP_GROUPED or WARN+NULL; cache first, then replenish."""
    if gfp_mask != GFP_GROUPED:
        WARN(k, "Unsupported GFP flags for VM_GROUP_PAGES")
        k.stat["grouped_bad_gfp"] += 1
        return None
    page = __remove_first_page(k, node)
    if page is not None:
        k.stat["grouped_hits"] += 1
        if page.nid != k.numa_node_id():
            k.stat["grouped_cross_node"] += 1
        return page
    return __replenish_grouped_pages(k, node)


def grouped_shrink_count(k, s, sc):
    """grouped_shrink_count(): this node's cached pages, or SHRINK_EMPTY."""
    cnt = list_lru_shrink_count(k.grouped.grouped_pages_lru, sc)
    return cnt if cnt else SHRINK_EMPTY


def grouped_isolate(item, lst, dispose):
    """grouped_isolate(): every walked page moves to the dispose list."""
    list_lru_isolate_move(lst, item, dispose)
    return LRU_REMOVED


def __dispose_pages(k, dispose):
    """__dispose_pages(): free_page() each one: order-0 back to the buddy (via pcp)."""
    for item in dispose:
        if k.grouped.unmapped:
            page = k.pages.virt_to_page(item) if k.grouped.storage == "contents" else item
            _cpa.set_direct_map_default_noflush(k, page)
        if k.grouped.storage == "contents":
            k.pages.virt_to_page(item).contents = None
            k.pages.virt_to_page(item).owner = "kernel"
            _pa.free_page(k, item)
        else:
            item.lru, item.owner = None, "kernel"
            _pa.__free_pages(k, item, 0)


def grouped_shrink_scan(k, s, sc):
    """grouped_shrink_scan(): the GFP intersection test, walk from the head, free, report.

    ``sc.nr_scanned += isolated`` is the RFC as written (do_shrink_slab preset
    nr_scanned to nr_to_scan); ``Machine(nr_scanned_quirk=False)`` leaves it as preset.
    """
    if not sc.gfp_mask & GFP_GROUPED:
        return SHRINK_STOP
    dispose = []
    isolated = list_lru_shrink_walk(k.grouped.grouped_pages_lru, sc, grouped_isolate, dispose)
    __dispose_pages(k, dispose)
    if k.grouped.nr_scanned_quirk:
        sc.nr_scanned += isolated
    return isolated


def grouped_cache_pages(k, nid=None):
    """Pages waiting in the cache, on one node or all."""
    g = k.grouped
    if g is None or g.grouped_pages_lru is None:
        return 0
    if nid is not None:
        return list_lru_count_node(g.grouped_pages_lru, nid)
    return sum(list_lru_count_node(g.grouped_pages_lru, n) for n in range(k.nr_nodes))


def grouped_blocks(k):
    """Each replenished 2 MiB block: how many of its 512 pages are cached, in use, given back.

    "in use" = mapped by a vmalloc area; "returned" = back in the buddy allocator or
    a per-CPU list; "reused" = given back and since allocated by someone else.
    """
    out = []
    for base, nid in k.grouped.blocks.items() if k.grouped else ():
        counts = {"cached": 0, "in_use": 0, "returned": 0, "reused": 0}
        for pfn in range(base, base + HPAGE_NR):
            page = k.pages.peek(pfn)
            owner = page.owner if page is not None else None
            if owner == "grouped":
                counts["cached"] += 1
            elif owner == "vmalloc":
                counts["in_use"] += 1
            elif owner in (None, "pcp") or page._refcount == 0:
                counts["returned"] += 1
            else:
                counts["reused"] += 1
        out.append({"pfn": base, "node": nid, **counts,
                    "split_2m": (base >> 9) in k.dmap.pte})
    return out


def poison_check(k):
    """What a page-poisoning / DEBUG_PAGEALLOC-style check of cached pages would report.

    Dave Hansen's review point: if the cache kept its link in struct page, cached
    pages could be poisoned (or unmapped) like free pages and any write to them
    caught.  With the RFC's in-page list_head the cache itself writes the data.
    """
    g = k.grouped
    if g is None or g.grouped_pages_lru is None:
        return []
    reports = []
    for nlru in g.grouped_pages_lru.node:
        for item in nlru.lru.list:
            page = k.pages.virt_to_page(item) if g.storage == "contents" else item
            if page.contents is not None:
                reports.append(f"pfn {page.pfn:#x}: cached page holds {page.contents} "
                               f"at offset 0 (written through {page_address(page):#x})")
    return reports
