"""The buddy allocator (mm/page_alloc.c, v5.11): spec §7.

Orders 0..10, merging on free, split_page, per-CPU lists (LIFO, batch/high), the order ≥ 9
availability test that fails a 2 MiB request on fragmented memory, watermarks,
/proc/buddyinfo and MemFree.
"""

from math import isqrt

import pytest

from gpalloc import GFP_KERNEL, Machine
from gpalloc.mm import page_alloc as pa
from gpalloc.mm.gfp import __GFP_NOWARN, ZONE_DMA32, ZONE_NAMES, ZONE_NORMAL
from gpalloc.mm.page import MAX_ORDER, PageBuddy

NOWARN = GFP_KERNEL | __GFP_NOWARN


def _zone(m, nid=0, zid=ZONE_DMA32):
    return next(z for z in m.k.zones if z.nid == nid and z.zid == zid)


def _order10(m):
    return [z.nr_free[MAX_ORDER - 1] for z in m.k.zones]


@pytest.fixture
def small():
    return Machine(node_mem="256M", seed=0)


@pytest.fixture
def big():
    return Machine(node_mem="4G", seed=0)


# ---------------------------------------------------------------- orders


def test_max_order_is_11():
    assert MAX_ORDER == 11


@pytest.mark.parametrize("order", range(1, MAX_ORDER))
def test_each_order_allocates_an_aligned_block_and_frees_back(big, order):
    before = big.meminfo()["MemFree"]
    buddy = big.proc_buddyinfo()
    page = big.alloc_pages(GFP_KERNEL, order)
    assert page is not None
    assert page.order == order
    assert page._refcount == 1
    assert page.pfn % (1 << order) == 0
    # higher orders come straight from the buddy: MemFree drops by exactly 2^order pages
    assert big.meminfo()["MemFree"] == before - (4 << order)
    big.free_pages(page, order)
    assert big.meminfo()["MemFree"] == before
    assert big.proc_buddyinfo() == buddy     # merged all the way back up
    big.check()


def test_order_0_allocation(big):
    page = big.alloc_pages(GFP_KERNEL, 0)
    assert page is not None and page.order == 0 and page._refcount == 1
    assert not PageBuddy(page)


@pytest.mark.parametrize("order", [-1, 11, 12])
def test_bad_order_refused(big, order):
    with pytest.raises(ValueError, match="order"):
        big.alloc_pages(GFP_KERNEL, order)


def test_order_10_blocks_are_4mib(big):
    a = big.alloc_pages(GFP_KERNEL, 10)
    b = big.alloc_pages(GFP_KERNEL, 10)
    assert abs(a.pfn - b.pfn) >= 1024
    assert a.pfn % 1024 == 0 and b.pfn % 1024 == 0


# ---------------------------------------------------------------- merging


def test_order0_pages_merge_back_into_order10_blocks(small):
    m, k = small, small.k
    before10 = _order10(m)
    buddy = m.proc_buddyinfo()
    pages = [m.alloc_pages(GFP_KERNEL, 0) for _ in range(3000)]
    assert all(p is not None for p in pages)
    assert len({p.pfn for p in pages}) == 3000
    assert sum(_order10(m)) < sum(before10)     # blocks were broken up
    for p in pages:
        m.free_pages(p, 0)
    pa.drain_all_pages(k)                        # pcp pages back to the buddy
    assert _order10(m) == before10
    assert m.proc_buddyinfo() == buddy
    m.check()


def test_buddies_merge_only_when_both_free(small):
    m, k = small, small.k
    page = m.alloc_pages(GFP_KERNEL, 1)
    pa.split_page(k, page, 1)
    lo, hi = page, k.pages.pfn_to_page(page.pfn + 1)
    m.free_pages(lo, 0)
    pa.drain_all_pages(k)
    # the low half is a free order-0 block: its buddy is still allocated
    assert PageBuddy(lo) and lo.private == 0
    m.free_pages(hi, 0)
    pa.drain_all_pages(k)
    # both halves free: merged, so the low half is no longer an order-0 head
    assert not (PageBuddy(lo) and lo.private == 0)
    assert not PageBuddy(hi)
    m.check()


# ---------------------------------------------------------------- split_page


def test_split_page_gives_refcount_one_pages(big):
    m, k = big, big.k
    before = m.meminfo()["MemFree"]
    page = m.alloc_pages(GFP_KERNEL, 3)
    pa.split_page(k, page, 3)
    pages = [k.pages.pfn_to_page(page.pfn + i) for i in range(8)]
    assert [p._refcount for p in pages] == [1] * 8
    assert all(p.order == 0 for p in pages)
    assert all(p.owner == "kernel" for p in pages)
    m.check()
    for p in pages:                     # each can be freed on its own
        m.free_pages(p, 0)
    pa.drain_all_pages(k)
    assert m.meminfo()["MemFree"] == before
    m.check()


# ---------------------------------------------------------------- per-CPU lists


def test_pcp_batch_and_high_for_a_4g_zone(big):
    # zone_batchsize(): ~1/4 MiB, rounded to 2^n - 1 → 63; high = 6 × batch (/proc/zoneinfo)
    z = _zone(big)
    assert z.pcp_batch == 63
    assert z.pcp_high == 378


def test_pcp_is_lifo(big):
    m = big
    a = m.alloc_pages(GFP_KERNEL, 0)
    pfn = a.pfn
    m.free_pages(a, 0)
    b = m.alloc_pages(GFP_KERNEL, 0)
    assert b.pfn == pfn
    # and with several frees: last freed is first reused
    xs = [m.alloc_pages(GFP_KERNEL, 0) for _ in range(3)]
    pfns = [x.pfn for x in xs]
    for x in xs:
        m.free_pages(x, 0)
    again = [m.alloc_pages(GFP_KERNEL, 0).pfn for _ in range(3)]
    assert again == list(reversed(pfns))


def test_pcp_refill_takes_a_batch_from_the_buddy(big):
    m, k = big, big.k
    z = _zone(m)
    free_before = z.nr_free_pages
    m.alloc_pages(GFP_KERNEL, 0)
    pcp = pa.get_pcp(k, z)
    assert pcp.count == z.pcp_batch - 1
    assert z.nr_free_pages == free_before - z.pcp_batch
    # MemFree does not count pages sitting on per-CPU lists
    assert m.meminfo()["MemFree"] == pa.nr_free_pages(k) * 4


def test_pcp_free_drains_a_batch_when_count_reaches_high(big):
    m, k = big, big.k
    z = _zone(m)
    n = z.pcp_high + 10
    pages = [m.alloc_pages(GFP_KERNEL, 0) for _ in range(n)]
    pcp = pa.get_pcp(k, z)
    # drain so we start from an empty list
    pa.drain_pages_zone(k, z, k.cpu)
    assert pcp.count == 0
    drained_at = []
    for p in pages:
        before_count, before_free = pcp.count, z.nr_free_pages
        m.free_pages(p, 0)
        assert pcp.count < pcp.high
        if pcp.count != before_count + 1:
            drained_at.append(before_count + 1)
            assert pcp.count == pcp.high - pcp.batch
            assert z.nr_free_pages == before_free + pcp.batch
        else:
            assert z.nr_free_pages == before_free
    assert drained_at and all(c == pcp.high for c in drained_at)
    m.check()


def test_pcp_lists_are_per_cpu(big):
    m = big
    m.cpu = 0
    a = m.alloc_pages(GFP_KERNEL, 0)
    m.free_pages(a, 0)
    m.cpu = 1
    b = m.alloc_pages(GFP_KERNEL, 0)
    assert b.pfn != a.pfn           # CPU 1 has its own list and refills it itself
    m.cpu = 0
    assert m.alloc_pages(GFP_KERNEL, 0).pfn == a.pfn


# ---------------------------------------------------------------- fragmentation


def _fragment(m):
    """Take every order-9 block the allocator will give, keep one page of each."""
    k = m.k
    kept = []
    while True:
        block = m.alloc_pages(NOWARN, 9)
        if block is None:
            break
        pa.split_page(k, block, 9)
        kept.append(block)
        for i in range(1, 512):
            m.free_pages(k.pages.pfn_to_page(block.pfn + i), 0)
    return kept


def test_order9_fails_without_a_free_2mib_block(small):
    m, k = small, small.k
    kept = _fragment(m)
    assert len(kept) > 50
    for z in k.zones:
        assert z.nr_free[9] == 0 and z.nr_free[10] == 0
    # plenty of free memory, far above every watermark...
    free_pages = pa.nr_free_pages(k)
    assert free_pages > 40000
    assert all(z.nr_free_pages > z.high_wmark_pages() for z in k.zones)
    # ...but no order >= 9 block: a 2 MiB request fails (returns None) and warns
    nwarn = len(m.warnings)
    assert m.alloc_pages(GFP_KERNEL, 9) is None
    assert len(m.warnings) == nwarn + 1
    assert "page allocation failure: order:9" in m.warnings[-1]
    assert "GFP_KERNEL" in m.warnings[-1]
    # __GFP_NOWARN suppresses the splat
    assert m.alloc_pages(NOWARN, 9) is None
    assert len(m.warnings) == nwarn + 1
    assert m.stats()["alloc_fail"] >= 2
    # a smaller order still succeeds
    assert m.alloc_pages(GFP_KERNEL, 8) is not None
    m.check()


def test_order9_succeeds_again_once_a_block_is_whole(small):
    m, k = small, small.k
    kept = _fragment(m)
    assert m.alloc_pages(NOWARN, 9) is None
    m.free_pages(kept[0], 0)
    pa.drain_all_pages(k)
    page = m.alloc_pages(NOWARN, 9)
    assert page is not None
    assert page.pfn == kept[0].pfn


# ---------------------------------------------------------------- watermarks


@pytest.mark.parametrize("kw", [dict(node_mem="256M"), dict(node_mem="4G"),
                                dict(nodes=2, node_mem="4G"), dict(nodes=2, node_mem="8G")])
def test_watermarks_min_low_high(kw):
    m = Machine(**kw)
    k = m.k
    lowmem_pages = sum(z.managed_pages for z in k.zones)
    min_free_kbytes = min(max(isqrt(lowmem_pages * 4 * 16), 128), 262144)
    pages_min = min_free_kbytes >> 2
    for z in k.zones:
        wmin, low, high = z.min_wmark_pages(), z.low_wmark_pages(), z.high_wmark_pages()
        assert 0 < wmin < low < high
        assert wmin == pages_min * z.managed_pages // lowmem_pages
        gap = max(wmin >> 2, z.managed_pages * 10 // 10000)
        assert low == wmin + gap
        assert high == wmin + 2 * gap
    assert sum(z.min_wmark_pages() for z in k.zones) <= pages_min


def test_lowmem_reserve_protects_lower_zones():
    m = Machine(nodes=1, node_mem="8G")
    zones = {z.zid: z for z in m.k.node_zones[0]}
    dma32, normal = zones[ZONE_DMA32], zones[ZONE_NORMAL]
    # DMA32 keeps back normal.managed / 256 pages from ZONE_NORMAL requests
    assert dma32.lowmem_reserve[ZONE_NORMAL] == normal.managed_pages // 256
    assert normal.lowmem_reserve == [0, 0, 0]


# ---------------------------------------------------------------- /proc


def _kernel_buddyinfo(m):
    # mm/vmstat.c frag_show_print(): "Node %d, zone %8s " then "%6lu " per order, then \n
    out = []
    for z in m.k.zones:
        out.append(f"Node {z.nid}, zone {ZONE_NAMES[z.zid]:>8} "
                   + "".join(f"{n:>6} " for n in z.nr_free) + "\n")
    return "".join(out)


@pytest.mark.parametrize("kw", [dict(), dict(nodes=2, node_mem="4G")])
def test_buddyinfo_text_format(kw):
    m = Machine(**kw)
    m.alloc_pages(GFP_KERNEL, 3)
    text = m.proc_buddyinfo()
    assert text == _kernel_buddyinfo(m)


def test_buddyinfo_counts_and_zones():
    m = Machine(nodes=2, node_mem="4G")
    lines = m.proc_buddyinfo().splitlines()
    names = [(int(ln.split(",")[0].split()[1]), ln.split("zone")[1].split()[0]) for ln in lines]
    assert names == [(0, "DMA"), (0, "DMA32"), (1, "Normal")]
    for ln, z in zip(lines, m.k.zones, strict=True):
        counts = [int(x) for x in ln.split("zone")[1].split()[1:]]
        assert len(counts) == MAX_ORDER
        assert counts == z.nr_free
        # counts × block sizes == the zone's free pages
        assert sum(c << o for o, c in enumerate(counts)) == z.nr_free_pages
    # DMA: pfns 256..4096 are free at boot → one order-8, one order-9, three order-10 blocks
    dma = [int(x) for x in lines[0].split("zone")[1].split()[1:]]
    assert dma == [0] * 8 + [1, 1, 3]


def test_memfree_accounting(big):
    m, k = big, big.k
    info = m.meminfo()
    assert info["MemFree"] == info["MemTotal"]          # nothing allocated after boot
    assert info["MemFree"] == sum(z.nr_free_pages for z in k.zones) * 4
    assert info["MemTotal"] == sum(z.managed_pages for z in k.zones) * 4
    # 4 GiB node: minus 1 MiB low memory, 48 MiB kernel image, 64 MiB memmap
    assert info["MemTotal"] == (4 << 20) - 1024 - (48 << 10) - (64 << 10)
    page = m.alloc_pages(GFP_KERNEL, 4)
    assert m.meminfo()["MemFree"] == info["MemFree"] - 64
    m.free_pages(page, 4)
    assert m.meminfo()["MemFree"] == info["MemFree"]
    # MemTotal never moves
    assert m.meminfo()["MemTotal"] == info["MemTotal"]


def test_free_pages_refuses_foreign_pages(big):
    m = big
    page = m.alloc_pages(GFP_KERNEL, 0)
    m.free_pages(page, 0)
    with pytest.raises(ValueError, match="page"):
        m.free_pages(page, 0)                 # double free
    with pytest.raises(ValueError, match="page"):
        m.free_pages(None, 0)


def test_allocation_prefers_local_node():
    m = Machine(nodes=2, node_mem="4G")
    m.cpu = 0
    assert m.alloc_pages(GFP_KERNEL, 0).nid == 0
    m.cpu = 2                    # cpus_per_node=2: CPU 2 is on node 1
    assert m.alloc_pages(GFP_KERNEL, 0).nid == 1
    assert m.alloc_pages(GFP_KERNEL, 0, node=0).nid == 0
    assert m.alloc_pages(GFP_KERNEL, 5, node=1).nid == 1
