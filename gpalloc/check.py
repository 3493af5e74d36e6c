"""Machine.check(): the model's invariants, each failure naming the invariant broken."""

from .arch.x86.pgtable_types import _PAGE_NX, _PAGE_PRESENT, _PAGE_RW
from .bug import InvariantError
from .mm.page import (
    MAX_ORDER,
    OWNER_ANON,
    OWNER_PAGECACHE,
    OWNER_PAGETABLE,
    OWNER_PCP,
    OWNER_SLAB,
    OWNER_VMALLOC,
    PAGES_PER_1G,
    PAGES_PER_2M,
    PageBuddy,
)
from .mm.vmalloc import busy_areas, vmalloc_nr_pages


def fail(invariant, detail):
    """Raise InvariantError naming the broken invariant."""
    raise InvariantError(f"invariant '{invariant}' broken: {detail}")


def check(k):
    """Run every invariant; raise InvariantError on the first that does not hold."""
    check_page_ownership(k)
    check_direct_map(k)
    check_vmalloc(k)
    check_w_xor_x(k)
    k.design.check(k)


def _intervals(k):
    out = [(s, e, "reserved") for s, e in k.layout.reserved]
    for z in k.zones:
        free = 0
        for start, end in z.pristine:
            out.append((start, end, "buddy"))
            free += end - start
        for order in range(MAX_ORDER):
            n = sum(len(lst) for lst in z.free_area[order])
            if order == MAX_ORDER - 1:
                n += sum((e - s) >> order for s, e in z.pristine)
            if n != z.nr_free[order]:
                fail("free_area nr_free", f"{z!r} order {order}: nr_free={z.nr_free[order]}, "
                                          f"lists hold {n}")
            for lst in z.free_area[order]:
                for pfn in lst:
                    page = k.pages.peek(pfn)
                    if not PageBuddy(page) or page.private != order or page._refcount:
                        fail("buddy head", f"pfn {pfn:#x} on the order-{order} list is {page!r}")
                    out.append((pfn, pfn + (1 << order), "buddy"))
                    free += 1 << order
        if free != z.nr_free_pages:
            fail("NR_FREE_PAGES", f"{z!r}: counter {z.nr_free_pages}, free lists hold {free}")
        for cpu, pcp in z.pcp.items():
            n = 0
            for lst, order in zip(pcp.lists, pcp.list_orders, strict=True):
                for pfn in lst:
                    page = k.pages.peek(pfn)
                    if page is None or page.owner != OWNER_PCP or page._refcount:
                        fail("pcp page", f"cpu {cpu} {z!r}: pfn {pfn:#x} is {page!r}")
                    out.append((pfn, pfn + (1 << order), OWNER_PCP))
                    n += 1 << order
            if n != pcp.count:
                fail("pcp count", f"cpu {cpu} {z!r}: count {pcp.count}, lists hold {n}")
    for page in k.pages.touched():
        if page._refcount > 0:
            if page.owner is None or PageBuddy(page):
                fail("allocated page has an owner", f"{page!r}")
            out.append((page.pfn, page.pfn + (1 << page.order), page.owner))
    return out


def check_page_ownership(k):
    """Every pfn has exactly one owner: reserved, buddy, pcp, or one allocated block."""
    spans = sorted(_intervals(k))
    cur = 0
    for start, end, owner in spans:
        if start < cur:
            fail("one owner per pfn", f"pfn {start:#x} ({owner}) is also inside an earlier block")
        if start > cur:
            fail("one owner per pfn", f"pfns {cur:#x}-{start:#x} belong to nobody")
        cur = end
    if cur != k.max_pfn:
        fail("one owner per pfn", f"pfns {cur:#x}-{k.max_pfn:#x} belong to nobody")
    owners = {}
    for _s, _e, owner in spans:
        owners[owner] = owners.get(owner, 0) + 1
    in_areas = sum(len(a.pages) for a in busy_areas(k))
    if owners.get(OWNER_VMALLOC, 0) != in_areas:
        fail("vmalloc pages", f"{owners.get(OWNER_VMALLOC, 0)} pages owned by vmalloc, "
                              f"{in_areas} in live areas")
    if owners.get(OWNER_PAGETABLE, 0) != len(k.dmap.pt_pages):
        fail("page-table pages", f"{owners.get(OWNER_PAGETABLE, 0)} owned, "
                                 f"{len(k.dmap.pt_pages)} recorded by splits")
    slab = sum(len(b) for b in k.kernel_blocks)
    if owners.get(OWNER_SLAB, 0) != slab:
        fail("kernel blocks", f"{owners.get(OWNER_SLAB, 0)} owned, {slab} recorded")
    anon = sum(len(a) for a in k.anon)
    if owners.get(OWNER_ANON, 0) != anon:
        fail("anon extents", f"{owners.get(OWNER_ANON, 0)} owned, {anon} recorded")
    cached = sum(len(lru) for lru in k.lru)
    if owners.get(OWNER_PAGECACHE, 0) != cached:
        fail("page cache extents", f"{owners.get(OWNER_PAGECACHE, 0)} owned, {cached} on LRUs")


def check_direct_map(k):
    """DirectMap counters × sizes == mapped RAM, and agree with the page tables."""
    dm = k.dmap
    c = dm.direct_pages_count
    if c[1] + c[2] * PAGES_PER_2M + c[3] * PAGES_PER_1G != k.max_pfn:
        fail("DirectMap covers RAM", f"4k={c[1]} 2M={c[2]} 1G={c[3]} entries ≠ {k.max_pfn} pages")
    if c[1] != len(dm.pte) * 512 or c[3] != len(dm.gb):
        fail("DirectMap counters", f"counters {c[1:]} vs {len(dm.pte)} PTE tables, "
                                   f"{len(dm.gb)} 1G entries")
    for p in dm.pte:
        if p >> 9 in dm.gb:
            fail("DirectMap levels", f"2M region {p} has a PTE table inside a 1G entry")


def check_vmalloc(k):
    """VmallocUsed matches live areas; no page is both free and mapped."""
    total = 0
    for area in busy_areas(k):
        total += area.nr_pages
        if len(area.pages) != area.nr_pages or len(area.prot) != area.nr_pages:
            fail("vm_struct pages", f"{area!r}: {len(area.pages)} pages, {len(area.prot)} PTEs")
        for page in area.pages:
            if page.owner != OWNER_VMALLOC or page._refcount != 1 or PageBuddy(page):
                fail("no page free and mapped", f"{area!r} maps {page!r} (owner {page.owner})")
    if total != vmalloc_nr_pages(k):
        fail("VmallocUsed", f"nr_vmalloc_pages={vmalloc_nr_pages(k)}, areas hold {total}")


_WX_MASK = _PAGE_PRESENT | _PAGE_RW | _PAGE_NX
_W, _X = 1, 2


def _wx(prot):
    """What a mapping with this prot allows: _W, _X, both or neither (not present: neither)."""
    if not prot & _PAGE_PRESENT:
        return 0
    return (_W if prot & _PAGE_RW else 0) | (0 if prot & _PAGE_NX else _X)


def check_w_xor_x(k):
    """W^X on every pfn: no pfn is writable through one mapping and executable through another.

    A pfn's mappings are its direct-map alias and every live vmalloc area that maps it (a
    lazily freed area has no PTEs left).  The direct map is walked entry by entry — every
    1G, 2M and 4K entry, so every pfn — and each area page by page, together with the
    alias of its pfn.  Exempt, by caller name in ``k.wx_exempt``: areas the v5.11 kernel
    itself keeps RW+X (BPF trampolines and dispatchers) — a real wart the model keeps.
    """
    dm, bad = k.dmap, _PAGE_PRESENT | _PAGE_RW   # present, writable and not NX
    for shift, entries in ((18, dm.gb), (9, dm.pmd)):
        for idx, prot in entries.items():
            if prot & _WX_MASK == bad:
                fail("W^X", f"direct-map entry of pfns {idx << shift:#x}+ is writable and "
                            "executable")
    for idx, table in dm.pte.items():
        for i, prot in enumerate(table):
            if prot & _WX_MASK == bad:
                fail("W^X", f"pfn {(idx << 9) + i:#x}: its direct-map alias is writable and "
                            "executable")
    allowed = {}   # pfn → what its mappings so far allow
    for area in busy_areas(k):
        if area.caller in k.wx_exempt:
            continue
        for page, vprot in zip(area.pages, area.prot, strict=True):
            pfn = page.pfn
            was = allowed.get(pfn)
            now = (_wx(k.dmap.lookup_address(pfn)[1]) if was is None else was) | _wx(vprot)
            if now == _W | _X:
                fail("W^X", f"pfn {pfn:#x} of {area!r} is writable and executable "
                            "(through this area or another mapping of it)")
            allowed[pfn] = now
