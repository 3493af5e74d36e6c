"""QEMU's physical layout (mm/mmzone.py Layout) and THP's min_free_kbytes, against captures.

Sources: docs/reference/v5.11-fragmentation.md §5.1 (set_recommended_min_free_kbytes) and
§5.3 (QEMU q35/pc below-4G split, the zones of an 8 GiB guest; managed figures ±1 %), and
data/machines/debian11-5.10-qemu/zoneinfo.txt (a 2 GiB QEMU guest, v5.10, THP on).
"""

from pathlib import Path

import pytest

from gpalloc import Machine
from gpalloc.mm.mmzone import Layout, set_recommended_min_free_kbytes
from gpalloc.procfs import parse_zoneinfo

ROOT = Path(__file__).resolve().parent.parent
DEBIAN = ROOT / "data/machines/debian11-5.10-qemu/zoneinfo.txt"
GiB = (1 << 30) >> 12


def zones_of(m):
    lay = m.k.layout
    return {z.name: dict(start=z.zone_start_pfn, spanned=z.zone_end_pfn - z.zone_start_pfn,
                         present=lay.present_pages(z.zone_start_pfn, z.zone_end_pfn),
                         managed=z.managed_pages, min=z.min_wmark_pages(),
                         low=z.low_wmark_pages(), high=z.high_wmark_pages())
            for z in m.k.zones}


def near(model, real, tol):
    return abs(model - real) <= tol * real


def test_q35_8g_guest_has_2g_of_dma32_and_normal_from_4g():
    z = zones_of(Machine(node_mem="8G", layout="qemu-q35"))
    # §5.3's table: DMA 3,998 present; DMA32 ≈ 520,157 (16 MiB – 2 GiB); Normal 6 GiB at 4 GiB
    assert z["DMA"]["present"] == 3998
    assert z["DMA32"]["spanned"] == 4 * GiB - 4096      # the span runs to 4 GiB, the hole too
    assert z["DMA32"]["present"] == 520157
    assert z["Normal"]["start"] == 4 * GiB
    assert z["Normal"]["present"] == 6 * GiB
    # §5.3's managed estimates (±1 %): DMA32 ≈ 491,000 (kernel image, 64 MiB swiotlb),
    # Normal ≈ 1,538,000 (memmap at the top)
    assert near(z["DMA32"]["managed"], 491000, 0.01)
    assert near(z["Normal"]["managed"], 1538000, 0.01)


def test_pc_8g_guest_has_3g_below_the_hole():
    z = zones_of(Machine(node_mem="8G", layout="qemu-pc"))
    assert near(z["DMA32"]["present"], 782300, 0.001)       # §5.3: ≈ 782,300
    assert z["Normal"]["present"] == 5 * GiB


def test_flat_layout_is_unchanged_dma32_to_4g_without_holes():
    z = zones_of(Machine(node_mem="8G"))
    assert z["DMA32"]["present"] == z["DMA32"]["spanned"] == 4 * GiB - 4096
    assert z["Normal"]["present"] == 4 * GiB


def test_swiotlb_is_reserved_in_dma32_only_with_ram_above_4g():
    big = Layout(1, 8 * GiB, "qemu-q35")
    small = Layout(1, 2 * GiB, "qemu-q35")
    top = 2 * GiB - 35
    assert all(big.is_reserved(p) for p in (top - 16384, top - 1))   # 64 MiB below the top
    assert not small.is_reserved(top - 16384)


def test_q35_2g_guest_matches_the_debian_qemu_capture():
    real = {z["zone"]: z for z in parse_zoneinfo(DEBIAN) if z["present"]}
    model = zones_of(Machine(node_mem="2G", layout="qemu-q35", thp=True))
    assert set(model) == set(real) == {"DMA", "DMA32"}      # all RAM below 2.75 GiB: no Normal
    for name in ("DMA", "DMA32"):
        assert model[name]["present"] == real[name]["present"]
        assert near(model[name]["spanned"], real[name]["spanned"], 0.001)
    # managed: present − memblock reservations; v5.10 reserved less of the first MiB than the
    # model (which reserves all of it, as 5.13+ do: 3,840 on the 6.18 captures)
    assert near(model["DMA32"]["managed"], real["DMA32"]["managed"], 0.01)
    # THP's recommended min_free_kbytes: 2 zones × 11 × 512 = 11,264 pages in all
    assert abs(sum(z["min"] for z in model.values())
               - sum(z["min"] for z in real.values())) <= 2
    assert near(model["DMA32"]["low"], real["DMA32"]["low"], 0.002)
    assert near(model["DMA32"]["high"], real["DMA32"]["high"], 0.002)


def test_thp_min_free_kbytes_is_67584_with_three_zones():
    for layout in ("flat", "qemu-q35"):
        m = Machine(node_mem="8G", layout=layout, thp=True)
        assert m.k.min_free_kbytes == 67584
        assert sum(z.min_wmark_pages() for z in m.k.zones) in range(16896 - 3, 16897)
    plain = Machine(node_mem="8G")
    assert plain.k.min_free_kbytes == 11459          # int_sqrt(lowmem_kbytes * 16)
    assert plain.k.min_free_kbytes < 67584 / 5


def test_thp_recommendation_is_capped_at_5_percent_of_buffer_pages():
    m = Machine(node_mem="256M", thp=True)            # 2 zones: 11,264 pages wanted
    managed = sum(z.managed_pages for z in m.k.zones)
    assert m.k.min_free_kbytes < 11264 * 4
    assert m.k.min_free_kbytes <= managed * 4 // 20
    assert set_recommended_min_free_kbytes(m.k.zones, 10 ** 6) == 10 ** 6   # never lowers


def test_two_node_q35_puts_the_hole_in_node_0():
    m = Machine(nodes=2, node_mem="4G", layout="qemu-q35")
    lay = m.k.layout
    # node 0: guest RAM 0–4 GiB = pfns 0–2 GiB and 4–6 GiB; node 1 right after
    assert lay.node_spans == [(0, 6 * GiB), (6 * GiB, 10 * GiB)]
    assert lay.pfn_node_zone(3 * GiB) == (0, 1)
    assert lay.pfn_node_zone(6 * GiB) == (1, 2)
    m.check()


def test_a_layout_machine_allocates_and_checks():
    m = Machine(node_mem="8G", layout="qemu-q35", thp=True)
    m.set_memory_pressure(0.3)
    m.check()
    used = [p.pfn for p in m.k.pages.touched() if p._refcount > 0]
    assert len(used) > 1000
    assert not [pfn for pfn in used if 2 * GiB - 35 <= pfn < 4 * GiB]   # nothing in the hole


@pytest.mark.parametrize("kw, flag", [(dict(layout="q35"), "layout"),
                                      (dict(thp="yes"), "thp")])
def test_bad_layout_options_name_the_argument(kw, flag):
    with pytest.raises(ValueError, match=f"^{flag}: "):
        Machine(**kw)
