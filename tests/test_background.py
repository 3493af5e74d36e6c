"""The background from captures (workloads/background.py background_from_capture, machine_state).

The fill level, the kernel/anon/page-cache split and the free blocks per order come from a real
machine's meminfo and buddyinfo (data/machines/); docs/reference/v5.11-fragmentation.md §5.2.
"""

import pytest

from gpalloc import Machine
from gpalloc.mm.gfp import MIGRATE_MOVABLE
from gpalloc.mm.mmzone import get_pageblock_migratetype
from gpalloc.mm.page import MOVABLE_OWNERS, OWNER_ANON, OWNER_PAGECACHE
from gpalloc.procfs import read_proc_dir
from gpalloc.resources import data_root
from gpalloc.workloads.background import background_from_capture, capture_targets
from gpalloc.workloads.machine_state import MACHINE_STATES, load_capture, machine_state_names

DEBIAN = read_proc_dir(data_root() / "machines/debian11-5.10-qemu")
UBUNTU = read_proc_dir(data_root() / "machines/ubuntu1404-3.13")


def orders(m):
    bi = m.buddyinfo()
    return [sum(v[o] for v in bi.values()) for o in range(11)]


def capture_orders(cap):
    return [sum(r["free"][o] for r in cap["buddyinfo"]) for o in range(11)]


@pytest.fixture(scope="module")
def debian_2g():
    """The debian capture's own size: a 2 GiB q35 guest with THP (its zoneinfo's min)."""
    m = Machine(node_mem="2G", layout="qemu-q35", thp=True, seed=3)
    background_from_capture(m.k, DEBIAN, "ram")
    return m


def test_fill_level_and_free_blocks_reproduce_the_capture(debian_2g):
    m, mi = debian_2g, DEBIAN["meminfo"]
    model = m.meminfo()
    assert abs(model["MemFree"] / model["MemTotal"] - mi["MemFree"] / mi["MemTotal"]) < 0.01
    got, real = orders(m), capture_orders(DEBIAN)
    for order in range(9):                     # small free blocks, one by one (±2: pcp drain)
        assert abs(got[order] - real[order]) <= 2, (order, got, real)
    big = lambda c: c[9] * 512 + c[10] * 1024  # noqa: E731
    assert abs(big(got) - big(real)) <= 0.02 * big(real)
    assert abs(got[10] - real[10]) <= 0.02 * real[10]   # the order-9/10 split too
    m.check()


def test_anon_and_page_cache_amounts_come_from_meminfo(debian_2g):
    m, mi = debian_2g, DEBIAN["meminfo"]
    share = sum(z.managed_pages for z in m.k.zones) * 4 / mi["MemTotal"]   # "ram" scale
    anon_kb = sum(a.nr_pages for a in m.k.anon) * 4
    assert mi["AnonPages"] * share <= anon_kb <= mi["AnonPages"] * share + 2048   # ≤ 2 MiB over
    cached = m.meminfo()["Cached"]
    assert abs(cached - (mi["Cached"] + mi["Buffers"])) <= 0.02 * mi["Cached"]
    kernel_kb = sum(b.nr_pages for b in m.k.kernel_blocks) * 4
    itemised = mi["Slab"] + mi["PageTables"] + mi["KernelStack"]
    assert kernel_kb >= itemised


def test_anon_is_movable_lru_memory_that_reclaim_leaves(debian_2g):
    assert OWNER_ANON in MOVABLE_OWNERS and OWNER_PAGECACHE in MOVABLE_OWNERS
    m = Machine(node_mem="2G", layout="qemu-q35", seed=1)
    background_from_capture(m.k, DEBIAN, "ram")
    k = m.k
    in_movable = 0
    for pfn, order in k.anon[0]._lru.items():
        page = k.pages.peek(pfn)
        assert page.owner == OWNER_ANON and page._refcount == 1 and page.order == order
        if get_pageblock_migratetype(k.zone_of(pfn), pfn) == MIGRATE_MOVABLE:
            in_movable += 1 << order
    # movable allocations: Movable pageblocks, but for the last pages that fell back (mixed)
    assert in_movable >= 0.95 * k.anon[0].nr_pages
    anon = k.anon[0].nr_pages
    m.drop_caches(3)                        # no swap: only the file LRU goes
    assert m.meminfo()["Cached"] == 0 and k.anon[0].nr_pages == anon
    m.set_memory_pressure(0.0)              # the knob gives everything back, anon too
    assert not k.anon[0] and not k.lru[0]
    m.check()


def test_absolute_scale_keeps_the_kilobytes_ram_scale_keeps_the_share():
    mi = DEBIAN["meminfo"]
    used = mi["MemTotal"] - mi["MemFree"]
    m = Machine(node_mem="8G", layout="qemu-q35", thp=True)
    t_abs = capture_targets(m.k, 0, DEBIAN, "absolute")
    t_ram = capture_targets(m.k, 0, DEBIAN, "ram")
    used_abs = (t_abs["kernel"] + t_abs["anon"] + t_abs["cache"] + t_abs["other"]) * 4
    assert abs(used_abs - used) <= 16
    assert t_ram["cache"] > 3.5 * t_abs["cache"]          # 8 GiB / 2 GB
    assert t_abs["small"] == capture_orders(DEBIAN)[:9]
    background_from_capture(m.k, DEBIAN, "absolute")
    model = m.meminfo()
    assert abs((model["MemTotal"] - model["MemFree"]) - used) <= 0.02 * used
    m.check()


def test_a_fragmented_capture_leaves_its_small_blocks_and_no_more():
    m = Machine(node_mem="8G", layout="qemu-q35", seed=2)
    background_from_capture(m.k, UBUNTU, "ram")
    got, real = orders(m), capture_orders(UBUNTU)
    for order in range(11):
        assert abs(got[order] - real[order]) <= max(3, 0.01 * real[order]), (order, got, real)
    m.check()


def test_same_seed_same_state():
    a, b = (Machine(node_mem="2G", layout="qemu-q35", seed=5) for _ in range(2))
    for m in (a, b):
        m.set_machine_state("fresh-boot")
    assert a.proc_buddyinfo() == b.proc_buddyinfo()
    assert list(a.k.lru[0]) == list(b.k.lru[0])


@pytest.mark.parametrize("name", machine_state_names())
def test_every_named_state_cites_a_capture_with_meminfo_and_buddyinfo(name):
    cap = load_capture(name)
    assert {"meminfo", "buddyinfo"} <= set(cap)
    assert MACHINE_STATES[name]["about"]
    assert (data_root() / MACHINE_STATES[name]["capture"] / "meminfo.txt").is_file()


def test_bad_state_and_scale_name_the_argument():
    m = Machine(node_mem="2G")
    with pytest.raises(ValueError, match="^state: unknown machine state 'idle'"):
        m.set_machine_state("idle")
    with pytest.raises(ValueError, match="^scale: "):
        background_from_capture(m.k, DEBIAN, "percent")
    with pytest.raises(ValueError, match="^capture: "):
        background_from_capture(m.k, {"buddyinfo": []})
