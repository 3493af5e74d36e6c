"""Machine.from_proc of a full capture: the model starts in the captured state."""

from pathlib import Path

import pytest

from gpalloc import Machine
from gpalloc.live import read_capture
from gpalloc.live.history import boot_history
from gpalloc.workloads import from_proc

MEAS = Path(__file__).resolve().parent.parent / "data" / "measurements"
IDLE = MEAS / "b1-00-idle" / "phases" / "00-idle"
B105 = MEAS / "b1-05-filters-n500-k800" / "phases" / "00-before"


@pytest.fixture(scope="module")
def b105():
    return Machine.from_proc(B105, design="6.18", seed=0)


def _phase(folder):
    return read_capture(folder.parent.parent)["phases"][0]


def test_free_blocks_pageblocks_and_zones_are_the_captures(b105):
    cap = _phase(B105)
    assert b105.buddyinfo()[(0, "Normal")] == next(
        e["free"] for e in cap["buddyinfo"] if e["zone"] == "Normal")
    z = next(z for z in b105.k.zones if z.name == "Normal")
    zi = next(z for z in cap["zoneinfo"] if z["zone"] == "Normal")
    assert (z.zone_start_pfn, z.managed_pages) == (zi["stats"]["start_pfn"], zi["managed"])
    assert z._watermark == [zi["min"], zi["low"], zi["high"]]
    blocks = next(b["counts"] for b in cap["pagetypeinfo"]["blocks"] if b["zone"] == "Normal")
    mts = list(z.pageblock_mt.values())
    assert (mts.count(0), mts.count(2)) == (blocks["Unmovable"], blocks["Reclaimable"])
    free_u = next(f["free"] for f in cap["pagetypeinfo"]["free"]
                  if f["zone"] == "Normal" and f["type"] == "Unmovable")
    assert [len(z.free_area[o][0]) for o in range(11)] == free_u
    b105.check()


def test_direct_map_and_pcp_are_the_captures(b105):
    cap = _phase(B105)
    mi = b105.meminfo()
    for line in ("DirectMap4k", "DirectMap2M", "DirectMap1G"):
        assert mi[line] == cap["meminfo"][line]
    z = next(z for z in b105.k.zones if z.name == "Normal")
    zi = next(z for z in cap["zoneinfo"] if z["zone"] == "Normal")
    assert [z.pcp[ps["cpu"]].count for ps in zi["pagesets"]] == \
        [ps["count"] for ps in zi["pagesets"]]
    assert z.pcp[1].high == zi["pagesets"][1]["high"]
    # the system's pack, adopted with its calibrated free chunks
    assert [p["in_use_bytes"] for p in b105.pools()] == \
        [(32768 - from_proc.BOOT_PACK_FREE_CHUNKS) * 64]


def test_every_split_region_and_boot_4k_region_lies_outside_1g_entries(b105):
    dm = b105.k.dmap
    assert all(p >> 9 not in dm.gb for p in dm.pte)
    # GiB 0 and the four GiBs of ZONE_NORMAL's initialised part are not 1G (21 of 26 are)
    assert sorted(set(range(26)) - set(dm.gb)) == [0, 4, 5, 6, 7]


def test_the_deferred_part_of_normal_is_not_in_the_buddy(b105):
    layout = b105.k.layout
    start, managed = 1 << 20, 884736
    assert layout.init_ranges(0, 2) == [(start, start + managed)]
    assert layout.is_reserved(start + managed) and not layout.is_reserved(start)


def test_same_seed_same_state_other_seed_other_placement():
    a = Machine.from_proc(B105, design="6.18", seed=0, history=None)
    b = Machine.from_proc(B105, design="6.18", seed=0, history=None)
    c = Machine.from_proc(B105, design="6.18", seed=1, history=None)
    za, zb, zc = (next(z for z in m.k.zones if z.name == "Normal") for m in (a, b, c))
    assert za.pageblock_mt == zb.pageblock_mt and za.pageblock_mt != zc.pageblock_mt
    assert a.k.dmap.pte.keys() == b.k.dmap.pte.keys()


def test_history_places_the_known_split_regions():
    hist = boot_history(B105)
    assert hist.captures == ["b1-01-probe-n1200-k800", "b1-02-probe-n600-k1600",
                             "b1-03-probe-n400-k2400", "b1-04-probe-n2200-k400"]
    m = Machine.from_proc(B105, design="6.18", seed=0)
    assert hist.split_regions <= set(m.k.dmap.pte)
    assert boot_history(IDLE) is None   # nothing traced before the first capture


def test_other_designs_start_from_the_same_state():
    m = Machine.from_proc(B105, design="5.11", seed=0, history=None)
    assert m.pools() == [] and m.meminfo()["DirectMap4k"] == 120832
    m.check()


def test_captures_without_pagetypeinfo_keep_the_old_path():
    m = Machine.from_proc(MEAS.parent / "machines" / "fcvm-6.18", load_modules=False)
    assert m.config["node_mem"] == "26624M" and m.capture is not None
    with pytest.raises(ValueError, match="pressure: a full capture"):
        Machine.from_proc(B105, pressure=0.5)
