"""Rick Edgecombe's RFC "Group pages on the direct map for permissioned vmallocs" (2021, v5.11).

One class per patch, each building on the one before, as the series does:

* :class:`RFCPatch1` — 1/3 "list: Support getting most recent element in list_lru":
  the kernel gains ``list_lru_get_mru()`` (gpalloc.mm.list_lru).
* :class:`RFCPatch2` — 2/3 "vmalloc: Support grouped page allocations": with
  CONFIG_ARCH_HAS_HPAGE_DIRECT_MAP_PERMS, VM_GROUP_PAGES areas take pages from a
  per-node cache carved out of 2 MiB blocks, fall back to order-0, serve
  NUMA_NO_NODE round-robin, refuse GFP flags other than GFP_GROUPED, and give
  pages back through a NUMA-aware shrinker.  In the RFC all of it is in
  mm/vmalloc.c; here it is this module, with the same function names, plugged
  into vmalloc through the RFC's own hooks vm_alloc_page()/vm_free_page().
* :class:`RFC` — 3/3 "x86/module: Use VM_GROUP_PAGES flag": module_alloc()
  passes VM_GROUP_PAGES, so modules, BPF JIT images, ftrace trampolines and
  kprobe pages come from the cache.

Pages are cut from 2 MiB (order-9) blocks with split_page(); free pages wait on a
per-node list_lru, most recently freed first (list_lru_get_mru).  The free-list
link lives either in the page's own memory via its direct-map address (the RFC,
``list_head="contents"``) or in ``struct page`` with an explicit node (what the
reviewers asked for, ``list_head="struct_page"``).  Placement and counters are the
same; only what can go wrong differs.  ``unmapped_cache`` (not the RFC) also
removes cached pages from the direct map: the idea the cache would have to grow
into, which faults with in-page list_heads.
"""

from ..arch.x86 import set_memory as _cpa
from ..arch.x86.pgtable_types import _PAGE_PRESENT, _PAGE_RW
from ..bug import WARN, KernelBUG
from ..check import fail
from ..mm import page_alloc as _pa
from ..mm.gfp import GFP_GROUPED
from ..mm.list_lru import (
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
from ..mm.mmzone import NUMA_NO_NODE
from ..mm.page import (
    HUGETLB_PAGE_ORDER,
    OWNER_GROUPED,
    OWNER_KERNEL,
    OWNER_PCP,
    OWNER_VMALLOC,
    PAGE_SIZE,
    PAGES_PER_2M,
    PageBuddy,
    page_address,
)
from ..mm.vmalloc import VM_GROUP_PAGES
from ..mm.vmscan import (
    DEFAULT_SEEKS,
    SHRINK_EMPTY,
    SHRINK_STOP,
    SHRINKER_NUMA_AWARE,
    register_shrinker,
    shrinker,
)
from .v5_11 import Linux511

HPAGE_NR = PAGES_PER_2M   # HPAGE_SIZE >> PAGE_SHIFT
STORAGE_VARIANTS = ("contents", "struct_page")


# ---------------------------------------------------------------- RFC 2/3, mm/vmalloc.c

def __vm_alloc_page_order(k, node, gfp, order):
    """__vm_alloc_page_order(): alloc_pages for NUMA_NO_NODE, else alloc_pages_node."""
    if node == NUMA_NO_NODE:
        return _pa.alloc_pages(k, gfp, order)
    return _pa.alloc_pages_node(k, node, gfp, order)


def grouped_page_init(k):
    """grouped_page_init() (device_initcall): list_lru, then the shrinker; enable on success."""
    g = k.design
    g.replenish_per_node = [0] * k.nr_nodes
    if g.list_head == "contents":
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
    return k.design.grouped_page_en and bool(vm_flags & VM_GROUP_PAGES)


def _item_to_page(k, item):
    g = k.design
    if g.list_head == "contents":
        page = k.pages.virt_to_page(item)   # virt_to_page(head)
        page.contents = "stale list_head"   # the memory still holds the old link
    else:
        page = item
        page.lru = None
    if g.unmapped_cache:
        _cpa.set_direct_map_default_noflush(k, page)
    return page


def __remove_first_page(k, node):
    """__remove_first_page(): MRU page of one node, or round-robin over nodes for NUMA_NO_NODE."""
    g = k.design
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
    g = k.design
    page.owner = OWNER_GROUPED
    if g.unmapped_cache:   # not the RFC: the "cache of unmapped pages" idea it would grow into
        _cpa.set_direct_map_invalid_noflush(k, page)
    if g.list_head == "contents":
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
    page = __vm_alloc_page_order(k, node, GFP_GROUPED, HUGETLB_PAGE_ORDER)
    if page is None:
        k.stat["grouped_fallback"] += 1
        k.trace("grouped_fallback", node=node)
        return __vm_alloc_page_order(k, node, GFP_GROUPED, 0)
    k.stat["grouped_replenish"] += 1
    _pa.split_page(k, page, HUGETLB_PAGE_ORDER)
    g = k.design
    g.blocks[page.pfn] = page.nid
    g.replenish_per_node[page.nid] += 1
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
    cnt = list_lru_shrink_count(k.design.grouped_pages_lru, sc)
    return cnt if cnt else SHRINK_EMPTY


def grouped_isolate(item, lst, dispose):
    """grouped_isolate(): every walked page moves to the dispose list."""
    list_lru_isolate_move(lst, item, dispose)
    return LRU_REMOVED


def __dispose_pages(k, dispose):
    """__dispose_pages(): free_page() each one: order-0 back to the buddy (via pcp)."""
    g = k.design
    for item in dispose:
        page = k.pages.virt_to_page(item) if g.list_head == "contents" else item
        if g.unmapped_cache:
            _cpa.set_direct_map_default_noflush(k, page)
        if g.list_head == "contents":
            page.contents = None
            page.owner = OWNER_KERNEL
            _pa.free_page(k, item)
        else:
            page.lru, page.owner = None, OWNER_KERNEL
            _pa.__free_pages(k, page, 0)


def grouped_shrink_scan(k, s, sc):
    """grouped_shrink_scan(): the GFP intersection test, walk from the head, free, report.

    ``sc.nr_scanned += isolated`` is the RFC as written (do_shrink_slab preset
    nr_scanned to nr_to_scan); ``Machine(nr_scanned_quirk=False)`` leaves it as preset.
    """
    if not sc.gfp_mask & GFP_GROUPED:
        return SHRINK_STOP
    dispose = []
    isolated = list_lru_shrink_walk(k.design.grouped_pages_lru, sc, grouped_isolate, dispose)
    __dispose_pages(k, dispose)
    if k.design.nr_scanned_quirk:
        sc.nr_scanned += isolated
    return isolated


# ---------------------------------------------------------------- views of the cache

def _cached_pages(k, nids=None):
    """Every page waiting in the cache, node by node (or on the given nodes), oldest first."""
    g = k.design
    for nid in range(k.nr_nodes) if nids is None else nids:
        for item in g.grouped_pages_lru.node[nid].lru.list:
            yield k.pages.virt_to_page(item) if g.list_head == "contents" else item


def grouped_cache_pages(k, nid=None):
    """Pages waiting in the cache, on one node or all."""
    lru = k.design.grouped_pages_lru
    if lru is None:
        return 0
    if nid is not None:
        return list_lru_count_node(lru, nid)
    return sum(list_lru_count_node(lru, n) for n in range(k.nr_nodes))


def grouped_blocks(k):
    """Each replenished 2 MiB block: how many of its 512 pages are cached, in use, given back.

    "in use" = mapped by a vmalloc area; "returned" = back in the buddy allocator or
    a per-CPU list; "reused" = given back and since allocated by someone else.
    """
    out = []
    for base, nid in k.design.blocks.items():
        counts = {"cached": 0, "in_use": 0, "returned": 0, "reused": 0}
        for pfn in range(base, base + HPAGE_NR):
            page = k.pages.peek(pfn)
            owner = page.owner if page is not None else None
            if owner == OWNER_GROUPED:
                counts["cached"] += 1
            elif owner == OWNER_VMALLOC:
                counts["in_use"] += 1
            elif owner in (None, OWNER_PCP) or page._refcount == 0:
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
    if k.design.grouped_pages_lru is None:
        return []
    return [f"pfn {page.pfn:#x}: cached page holds {page.contents} "
            f"at offset 0 (written through {page_address(page):#x})"
            for page in _cached_pages(k) if page.contents is not None]


def check_list_lru(k):
    """list_lru counts equal list lengths, and every item is on its page's node list."""
    lru = k.design.grouped_pages_lru
    for nid, nlru in enumerate(lru.node):
        lists = [nlru.lru, *nlru.memcg_lrus.values()]
        for lst in lists:
            if lst.nr_items != len(lst.list):
                fail("list_lru count", f"node {nid}: nr_items {lst.nr_items}, "
                                       f"list length {len(lst.list)}")
        if nlru.nr_items != sum(lst.nr_items for lst in lists):
            fail("list_lru node total", f"node {nid}: {nlru.nr_items}")
        for item in nlru.lru.list:
            if lru.nid_of(item) != nid:
                fail("list_lru node", f"item {item!r} of node {lru.nid_of(item)} on node {nid}")


def check_grouped_cache(k):
    """A cached page is owned by the cache, has refcount 1, is not buddy, and is mapped RW."""
    g = k.design
    n = 0
    for page in _cached_pages(k):
        n += 1
        if page.owner != OWNER_GROUPED or page._refcount != 1 or PageBuddy(page):
            fail("grouped cache page", f"{page!r} owner={page.owner}")
        _, prot = k.dmap.lookup_address(page.pfn)
        if not g.unmapped_cache and \
                prot & (_PAGE_PRESENT | _PAGE_RW) != _PAGE_PRESENT | _PAGE_RW:
            fail("grouped cache page mapped RW", f"{page!r} direct-map prot {prot:#x}")
        if g.list_head == "contents" and page.contents != "list_head":
            fail("grouped cache list_head", f"{page!r} contents={page.contents!r}")
    owned = sum(1 for p in k.pages.touched() if p.owner == OWNER_GROUPED and p._refcount)
    if owned != n:
        fail("grouped cache ownership", f"{owned} pages owned by the cache, {n} on its lists")


# ---------------------------------------------------------------- the designs

# module level: a "__" name inside a class body is mangled
_vm_alloc_page_order, _get_grouped_page = __vm_alloc_page_order, __get_grouped_page
_free_grouped_page = __free_grouped_page


class RFCPatch1(Linux511):
    """v5.11 + RFC 1/3: list_lru_get_mru() exists; nothing else changes."""

    name = "rfc-1"
    summary = "v5.11 + RFC 1/3 (list_lru_get_mru)"
    symbols = Linux511.symbols | {"list_lru_get_mru"}


class RFCPatch2(RFCPatch1):
    """v5.11 + RFC 1–2/3: the grouped page cache, for callers that pass VM_GROUP_PAGES."""

    name = "rfc-1-2"
    summary = "v5.11 + RFC 1-2/3 (the VM_GROUP_PAGES cache; module_alloc does not use it)"
    OPTIONS = {"list_head": "contents", "nr_scanned_quirk": True, "unmapped_cache": False}
    stat_keys = ("grouped_hits", "grouped_replenish", "grouped_fallback", "grouped_cross_node",
                 "grouped_bad_gfp")

    def __init__(self, **options):
        super().__init__(**options)
        if self.list_head not in STORAGE_VARIANTS:
            raise ValueError(f"list_head: must be one of {STORAGE_VARIANTS}, "
                             f"got {self.list_head!r}")
        # the RFC's statics (mm/vmalloc.c)
        self.grouped_pages_lru = None
        self.grouped_page_en = False
        self.nid_round_robin = 0
        self.shrinker = None
        # model-only bookkeeping
        self.blocks = {}                 # base pfn of each replenished 2 MiB block → node
        self.replenish_per_node = []

    def init(self, k):
        """CONFIG_ARCH_HAS_HPAGE_DIRECT_MAP_PERMS=y: grouped_page_init() runs at boot."""
        grouped_page_init(k)

    def vm_alloc_page(self, k, node, vm_flags, gfp):
        """vm_alloc_page(): the grouped cache for VM_GROUP_PAGES, else one order-0 page."""
        if vmalloc_grouped_page_enabled(k, vm_flags):
            return _get_grouped_page(k, node, gfp)
        return _vm_alloc_page_order(k, node, gfp, 0)

    def vm_free_page(self, k, page, vm_flags):
        """vm_free_page(): back to the grouped cache, else __free_pages(page, 0)."""
        if vmalloc_grouped_page_enabled(k, vm_flags):
            _free_grouped_page(k, page)
        else:
            super().vm_free_page(k, page, vm_flags)

    def vm_pages_are_order0(self, k, vm_flags):
        """An area without VM_GROUP_PAGES (or with the cache disabled) gets plain pages."""
        return not vmalloc_grouped_page_enabled(k, vm_flags)

    def stats(self, k):
        """The cache's size per node, the round-robin counter, replenishes, nr_deferred."""
        s = self.shrinker
        return {
            "grouped_cache_pages": grouped_cache_pages(k),
            "grouped_cache_pages_per_node": [grouped_cache_pages(k, n)
                                             for n in range(k.nr_nodes)],
            "nid_round_robin": self.nid_round_robin,
            "grouped_replenish_per_node": list(self.replenish_per_node),
            "nr_deferred": list(s.nr_deferred) if s is not None and s.nr_deferred
            else [0] * k.nr_nodes,
        }

    def pools(self, k):
        """One row: the cache (in-use pages of replenished blocks are not tracked by it)."""
        return [{"kind": "grouped cache", "addr": None,
                 "pool_bytes": grouped_cache_pages(k) * PAGE_SIZE, "in_use_bytes": None}]

    def check(self, k):
        """The list_lru and the cached pages (when the cache is enabled)."""
        if self.grouped_pages_lru is not None:
            check_list_lru(k)
            check_grouped_cache(k)

    def grouped_blocks(self, k):
        """Each replenished 2 MiB block: pages cached / in use / returned / reused, and split."""
        return grouped_blocks(k)

    def grouped_cache_pfns(self, k, nid):
        """One node's cache list as pfns, head (oldest) to tail (most recent)."""
        if self.grouped_pages_lru is None:
            return []
        return [page.pfn for page in _cached_pages(k, (nid,))]

    def poison_check(self, k):
        """What a page-poisoning check of the cached pages would report."""
        return poison_check(k)


class RFC(RFCPatch2):
    """v5.11 + the whole RFC: module_alloc() passes VM_GROUP_PAGES (3/3)."""

    name = "rfc"
    summary = "v5.11 + RFC 1-3/3 (Rick Edgecombe, 2021): module_alloc uses the grouped cache"
    module_vm_flags = VM_GROUP_PAGES
