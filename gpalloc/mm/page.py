"""struct page (include/linux/mm_types.h) and the memmap that holds them.

Only pages the model has touched exist as objects (``PageStore`` is a dict keyed
by pfn), so memory grows with pages touched, not with RAM size.  A pfn that has
never been touched is described by the allocator's boot-time ranges instead.
"""

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PMD_SHIFT, PUD_SHIFT = 21, 30
PAGES_PER_2M = 1 << (PMD_SHIFT - PAGE_SHIFT)   # 512
PAGES_PER_1G = 1 << (PUD_SHIFT - PAGE_SHIFT)   # 262144
MAX_ORDER = 11                                  # orders 0..10 (v5.11 meaning)
pageblock_order = HUGETLB_PAGE_ORDER = 9
# x86-64, 4-level paging, no KASLR of the direct map: where the direct map starts.
PAGE_OFFSET = 0xFFFF888000000000

# page_type values kept in the _mapcount union (include/linux/page-flags.h)
PG_buddy, PG_table = "buddy", "table"

# Who holds an allocated page (model-only bookkeeping in Page.owner; None = free).
OWNER_KERNEL = "kernel"        # an alloc_pages() caller (split_page pieces too)
OWNER_PCP = "pcp"              # on a per-CPU free list
OWNER_VMALLOC = "vmalloc"      # mapped by a vmalloc area
OWNER_GROUPED = "grouped"      # waiting in RFC 2/3's grouped page cache
OWNER_PAGECACHE = "pagecache"  # background page-cache extent
OWNER_SLAB = "slab"            # background unmovable kernel block
OWNER_PAGETABLE = "pagetable"  # a direct-map page table made by a CPA split
OWNER_ANON = "anon"            # background anonymous (user) memory: movable, not file LRU
PAGE_OWNERS = (OWNER_KERNEL, OWNER_PCP, OWNER_VMALLOC, OWNER_GROUPED, OWNER_PAGECACHE,
               OWNER_SLAB, OWNER_PAGETABLE, OWNER_ANON)
# Owners whose pages are PageLRU() and movable (v5.11 mm/page_alloc.c move_freepages_block()
# counts them as movable_pages for steal_suitable_fallback(); compaction migrates them):
# page cache and anonymous memory are both GFP_HIGHUSER_MOVABLE LRU pages.
MOVABLE_OWNERS = (OWNER_PAGECACHE, OWNER_ANON)


class Page:
    """struct page: the fields the RFC review argues about, plus model-only bookkeeping.

    ``lru``/``mapping``/``index``/``private`` are the main union's words; ``contents``
    is the first 16 bytes of the page's *memory* (where RFC 2/3 writes its list_head).
    ``owner`` and ``order`` are model-only: who holds an allocated block and its order.
    """

    __slots__ = ("pfn", "nid", "zid", "_refcount", "page_type", "private", "lru",
                 "mapping", "index", "contents", "owner", "order", "pcp_mt")

    def __init__(self, pfn, nid, zid):
        self.pfn, self.nid, self.zid = pfn, nid, zid
        self._refcount = 0
        self.page_type = None
        self.private = 0
        self.lru = None
        self.mapping = None
        self.index = 0
        self.contents = None
        self.owner = None
        self.order = 0
        self.pcp_mt = None

    def __repr__(self):
        state = self.page_type or self.owner or "free"
        return f"<page pfn={self.pfn:#x} node={self.nid} {state} refcount={self._refcount}>"


def PageBuddy(page):
    """PageBuddy(): is this the head of a free block in the buddy allocator?"""
    return page is not None and page.page_type == PG_buddy


def PFN_UP(nbytes):
    """PFN_UP(): pages needed for nbytes (round up to whole pages)."""
    return (nbytes + PAGE_SIZE - 1) >> PAGE_SHIFT


def pfn_to_virt(pfn):
    """__va(PFN_PHYS(pfn)): the direct-map address of a pfn."""
    return PAGE_OFFSET + (pfn << PAGE_SHIFT)


def page_address(page):
    """page_address(): the page's direct-map address (64-bit: no highmem)."""
    return PAGE_OFFSET + (page.pfn << PAGE_SHIFT)


def virt_to_pfn(addr):
    """__pa(addr) >> PAGE_SHIFT for a direct-map address."""
    return (addr - PAGE_OFFSET) >> PAGE_SHIFT


class _Memmap(dict):
    """pfn → struct page; a missing pfn's page is made on first touch (dict.__missing__)."""

    __slots__ = ("_layout",)

    def __init__(self, layout):
        super().__init__()
        self._layout = layout

    def __missing__(self, pfn):
        nid, zid = self._layout.pfn_node_zone(pfn)
        page = self[pfn] = Page(pfn, nid, zid)
        return page


class PageStore:
    """The memmap (vmemmap): pfn → struct page, materialised on first touch.

    Fast path (issue 13): ``pfn_to_page`` and ``peek`` are bound in ``__init__`` to the
    memmap dict's own ``__getitem__`` (its ``__missing__`` makes the page) and ``get``, so
    the hot path is one C call; the methods below are the reading path and give the same
    pages (tests/test_fast_paths.py).
    """

    def __init__(self, layout):
        self._pages = _Memmap(layout)
        self._layout = layout
        self.pfn_to_page = self._pages.__getitem__
        self.peek = self._pages.get

    def pfn_to_page(self, pfn):   # the reading path; __init__ binds the fast one
        """pfn_to_page(): the struct page of a pfn (created on first touch)."""
        page = self._pages.get(pfn)
        if page is None:
            nid, zid = self._layout.pfn_node_zone(pfn)
            page = self._pages[pfn] = Page(pfn, nid, zid)
        return page

    def peek(self, pfn):
        """The struct page if the model ever touched this pfn, else None."""
        return self._pages.get(pfn)

    def virt_to_page(self, addr):
        """virt_to_page() for a direct-map address."""
        return self.pfn_to_page(virt_to_pfn(addr))

    def touched(self):
        """Every materialised struct page."""
        return self._pages.values()

    def __len__(self):
        return len(self._pages)
