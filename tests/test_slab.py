"""The SLUB model (gpalloc.mm.slab): v5.11's slab orders, allocate_slab, partial slabs."""

import gzip

import pytest

from gpalloc.machine import Machine
from gpalloc.mm import slab
from gpalloc.mm.gfp import (
    __GFP_DIRECT_RECLAIM,
    __GFP_KSWAPD_RECLAIM,
    __GFP_NORETRY,
    __GFP_RECLAIMABLE,
    GFP_KERNEL,
)
from gpalloc.validate import MEASUREMENTS

IDLE = MEASUREMENTS / "b2-15-filters-n400-k100" / "phases" / "00-before" / "slabinfo.txt.gz"


def free_kb(m):
    """MemFree + the per-CPU lists: every page the allocator could hand out."""
    return m.meminfo()["MemFree"] + 4 * sum(p.count for z in m.k.zones for p in z.pcp.values())


def _slabinfo(path):
    out = {}
    with gzip.open(path, "rt") as f:
        for line in f:
            if line.startswith(("slabinfo", "#")):
                continue
            name, _act, _num, size, objs, pages = line.split()[:6]
            out[name] = (int(size), int(objs), int(pages))
    return out


def test_two_cpu_orders_are_the_measured_vms():
    """b2-15 ran on a 2-vCPU VM: calculate_order gives every modelled cache's slab size."""
    measured = _slabinfo(IDLE)
    checked = 0
    for name, (size, _flags) in slab.CACHES.items():
        if name not in measured or measured[name][0] != size:
            continue
        order = slab.calculate_order(size, 2)
        assert (slab.order_objects(order, size), 1 << order) == measured[name][1:], name
        checked += 1
    assert checked >= 15


@pytest.mark.parametrize(("size", "two", "four"), [
    (5888, 3, 3),    # task_struct
    (1152, 2, 3),    # signal_cache moves up on 4 CPUs
    (1344, 2, 3),    # UDP
    (584, 1, 2),     # radix_tree_node
    (192, 0, 0),     # vm_area_struct
])
def test_orders_for_2_and_4_cpus(size, two, four):
    assert slab.calculate_order(size, 2) == two
    assert slab.calculate_order(size, 4) == four


def test_min_objects_formula():
    # 4 * (fls(nr_cpus) + 1): 12 objects wanted on 2 CPUs, 16 on 4 — visible for a 1 KiB cache
    assert slab.order_objects(slab.calculate_order(1024, 2), 1024) == 16   # 12 → order 2
    assert slab.order_objects(slab.calculate_order(1024, 1), 1024) == 8    # 8 → order 1


def test_allocate_slab_tries_the_order_without_reclaim_then_the_minimum(monkeypatch):
    m = Machine(node_mem="256M", cpus_per_node=4)
    calls = []

    def fake(k, gfp, order):
        calls.append((gfp, order))
        return None if len(calls) == 1 else m.k.pages.pfn_to_page(0x1000)
    monkeypatch.setattr(slab, "alloc_pages", fake)
    s = slab.kmem_cache_of(m.k, "task_struct")
    sl = slab.allocate_slab(m.k, s, GFP_KERNEL)
    (g1, o1), (g2, o2) = calls
    assert (o1, o2) == (3, slab.get_order(5888)) == (3, 1)
    assert g1 & __GFP_NORETRY and not g1 & (__GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM)
    assert g2 == GFP_KERNEL
    assert (sl.order, sl.objects) == (1, 1)
    assert m.k.stat["slab_order_fallback"] == 1


def test_reclaimable_caches_allocate_reclaimable(monkeypatch):
    m = Machine(node_mem="256M")
    seen = []
    real = slab.alloc_pages
    monkeypatch.setattr(slab, "alloc_pages", lambda k, gfp, order: seen.append(gfp)
                        or real(k, gfp, order))
    slab.kmem_cache_alloc(m.k, slab.kmem_cache_of(m.k, "dentry"))
    slab.kmem_cache_alloc(m.k, slab.kmem_cache_of(m.k, "filp"))
    assert seen[0] & __GFP_RECLAIMABLE and not seen[1] & __GFP_RECLAIMABLE


def test_objects_fill_a_slab_and_empty_slabs_stay_up_to_min_partial():
    m = Machine(node_mem="256M")
    k = m.k
    free0 = free_kb(m)
    s = slab.kmem_cache_of(k, "vm_area_struct")   # 21 per order-0 slab, min_partial 5
    assert (s.objects, s.order, s.min_partial) == (21, 0, 5)
    objs = [slab.kmem_cache_alloc(k, s) for _ in range(21 * 8)]
    assert len(s.slabs) == 8 and k.stat["slab_pages"] == 8
    for obj in objs:
        slab.kmem_cache_free(k, s, obj)
    assert len(s.slabs) == 5 and k.stat["slab_pages"] == 5   # sticky: min_partial kept
    slab.kmem_cache_shrink(k, s)
    assert not s.slabs and k.stat["slab_pages"] == 0
    assert free_kb(m) == free0
    m.check()


def test_kmalloc_sizes_and_large():
    m = Machine(node_mem="256M")
    k = m.k
    assert slab.kmalloc_cache_name(96) == "kmalloc-96"
    assert slab.kmalloc_cache_name(1500) == "kmalloc-2k"
    assert slab.kmalloc_cache_name(8192) == "kmalloc-8k"
    big = slab.kmalloc(k, 9000)
    assert big[0] == "large" and big[2] == 2 and k.stat["kmalloc_large_pages"] == 4
    slab.kfree(k, big)
    assert slab.slab_model_pages(k) == 0
    with pytest.raises(ValueError, match="slab: no cache 'nope'"):
        slab.kmem_cache_of(k, "nope")
