"""GFP flags: v5.11 bit values (include/linux/gfp.h), %pGg names (mmflags.h), parse_gfp.

Spec §1.3 and §10.6: GFP_KERNEL = 0xCC0, GFP_GROUPED = 0x2CC2.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpalloc
from gpalloc import (
    GFP_ATOMIC,
    GFP_GROUPED,
    GFP_KERNEL,
    GFP_KERNEL_ACCOUNT,
    GFP_NOFS,
    GFP_NOIO,
    GFP_NOWAIT,
    gfp_t,
    parse_gfp,
)
from gpalloc.mm import gfp as gfpmod

# (name, v5.11 value) for every single-bit flag in include/linux/gfp.h (no LOCKDEP).
SINGLE_BITS = [
    ("__GFP_DMA", 0x01), ("__GFP_HIGHMEM", 0x02), ("__GFP_DMA32", 0x04),
    ("__GFP_MOVABLE", 0x08), ("__GFP_RECLAIMABLE", 0x10), ("__GFP_HIGH", 0x20),
    ("__GFP_IO", 0x40), ("__GFP_FS", 0x80), ("__GFP_ZERO", 0x100),
    ("__GFP_ATOMIC", 0x200), ("__GFP_DIRECT_RECLAIM", 0x400),
    ("__GFP_KSWAPD_RECLAIM", 0x800), ("__GFP_WRITE", 0x1000), ("__GFP_NOWARN", 0x2000),
    ("__GFP_RETRY_MAYFAIL", 0x4000), ("__GFP_NOFAIL", 0x8000), ("__GFP_NORETRY", 0x10000),
    ("__GFP_MEMALLOC", 0x20000), ("__GFP_COMP", 0x40000), ("__GFP_NOMEMALLOC", 0x80000),
    ("__GFP_HARDWALL", 0x100000), ("__GFP_THISNODE", 0x200000), ("__GFP_ACCOUNT", 0x400000),
]

COMPOSITES = [
    (GFP_KERNEL, 0xCC0),
    (GFP_GROUPED, 0x2CC2),
    (GFP_ATOMIC, 0xA20),          # __GFP_HIGH | __GFP_ATOMIC | __GFP_KSWAPD_RECLAIM
    (GFP_NOFS, 0xC40),            # __GFP_RECLAIM | __GFP_IO
    (GFP_NOIO, 0xC00),            # __GFP_RECLAIM
    (GFP_NOWAIT, 0x800),          # __GFP_KSWAPD_RECLAIM
    (GFP_KERNEL_ACCOUNT, 0x400CC0),
    (gfpmod.GFP_USER, 0x100CC0),
    (gfpmod.GFP_HIGHUSER, 0x100CC2),
    (gfpmod.GFP_HIGHUSER_MOVABLE, 0x100CCA),
    (gfpmod.GFP_TRANSHUGE_LIGHT, 0x1C20CA),
    (gfpmod.GFP_TRANSHUGE, 0x1C24CA),
    (gfpmod.__GFP_RECLAIM, 0xC00),
]


@pytest.mark.parametrize("name,value", SINGLE_BITS)
def test_single_bit_values(name, value):
    assert int(getattr(gfpmod, name)) == value


@pytest.mark.parametrize("mask,value", COMPOSITES)
def test_composite_values(mask, value):
    assert int(mask) == value


def test_gfp_grouped_is_kernel_plus_nowarn_plus_highmem():
    # RFC 2/3: GFP_GROUPED = __GFP_NOWARN | __GFP_HIGHMEM | GFP_KERNEL
    assert GFP_GROUPED == GFP_KERNEL | gfpmod.__GFP_NOWARN | gfpmod.__GFP_HIGHMEM
    assert GFP_GROUPED == 0x2CC2


def test_exports_are_gfp_t():
    for mask in (GFP_KERNEL, GFP_GROUPED, GFP_ATOMIC, GFP_NOFS, GFP_NOIO, GFP_NOWAIT):
        assert isinstance(mask, gfp_t)
    assert isinstance(GFP_KERNEL | gfpmod.__GFP_ZERO, gfp_t)
    # & tests bits: it gives a plain int (cheap in the allocator's hot path)
    assert type(GFP_KERNEL & gfpmod.__GFP_IO) is int and GFP_KERNEL & gfpmod.__GFP_IO == 0x40


@pytest.mark.parametrize("mask,text", [
    (GFP_KERNEL, "GFP_KERNEL"),
    (GFP_KERNEL | gfpmod.__GFP_NOWARN, "GFP_KERNEL|__GFP_NOWARN"),
    (GFP_GROUPED, "GFP_KERNEL|__GFP_HIGHMEM|__GFP_NOWARN"),
    (GFP_KERNEL | gfpmod.__GFP_ZERO, "GFP_KERNEL|__GFP_ZERO"),
    (GFP_KERNEL_ACCOUNT, "GFP_KERNEL_ACCOUNT"),
    (GFP_KERNEL_ACCOUNT | gfpmod.__GFP_ZERO, "GFP_KERNEL_ACCOUNT|__GFP_ZERO"),
    (GFP_ATOMIC, "GFP_ATOMIC"),
    (GFP_ATOMIC | gfpmod.__GFP_NOWARN, "GFP_ATOMIC|__GFP_NOWARN"),
    (GFP_NOFS, "GFP_NOFS"),
    (GFP_NOIO, "GFP_NOIO"),
    (GFP_NOWAIT, "GFP_NOWAIT"),
    (GFP_NOWAIT | gfpmod.__GFP_NOWARN, "GFP_NOWAIT|__GFP_NOWARN"),
    (gfpmod.GFP_TRANSHUGE, "GFP_TRANSHUGE"),
    (gfpmod.GFP_HIGHUSER_MOVABLE, "GFP_HIGHUSER_MOVABLE"),
    (gfpmod.__GFP_DIRECT_RECLAIM, "__GFP_DIRECT_RECLAIM"),
    (gfpmod.__GFP_DIRECT_RECLAIM | gfpmod.__GFP_HIGH, "__GFP_HIGH|__GFP_DIRECT_RECLAIM"),
    # composites are matched first: 0x820 contains GFP_NOWAIT (0x800)
    (gfpmod.__GFP_KSWAPD_RECLAIM | gfpmod.__GFP_HIGH, "GFP_NOWAIT|__GFP_HIGH"),
    (gfpmod.__GFP_HIGHMEM | gfpmod.__GFP_ACCOUNT, "__GFP_HIGHMEM|__GFP_ACCOUNT"),
    (GFP_KERNEL | gfpmod.__GFP_NORETRY | gfpmod.__GFP_COMP,
     "GFP_KERNEL|__GFP_NORETRY|__GFP_COMP"),
])
def test_str_uses_kernel_names_in_mmflags_order(mask, text):
    assert str(mask) == text
    assert text in repr(mask)


def test_repr_shows_hex_value():
    assert "0xcc0" in repr(GFP_KERNEL).lower()


@pytest.mark.parametrize("text,value", [
    ("GFP_KERNEL", 0xCC0),
    ("GFP_KERNEL|__GFP_NOWARN", 0x2CC0),
    ("GFP_KERNEL | __GFP_ZERO", 0xDC0),
    ("GFP_GROUPED", 0x2CC2),
    ("0xcc0", 0xCC0),
    ("0x2CC2", 0x2CC2),
    ("GFP_ATOMIC|0x2000", 0x2A20),
])
def test_parse_gfp(text, value):
    got = parse_gfp(text)
    assert isinstance(got, gfp_t)
    assert got == value


@pytest.mark.parametrize("mask,_value", COMPOSITES)
def test_parse_gfp_round_trips_composites(mask, _value):
    assert parse_gfp(str(mask)) == mask


@given(st.integers(min_value=1, max_value=(1 << 23) - 1))
def test_parse_gfp_round_trips_every_valid_mask(value):
    mask = gfp_t(value)
    text = str(mask)
    assert "0x" not in text          # every valid bit has a name
    assert parse_gfp(text) == value


def test_parse_gfp_round_trips_empty_mask():
    # str(gfp_t(0)) must be text that parse_gfp accepts again.
    assert parse_gfp(str(gfp_t(0))) == 0


@pytest.mark.parametrize("value", [1 << 23, 1 << 24, 0xCC0 | (1 << 30), -1])
def test_unknown_bits_refused(value):
    with pytest.raises(ValueError, match="gfp"):
        gfp_t(value)


def test_or_with_unknown_bit_refused():
    with pytest.raises(ValueError, match="gfp"):
        GFP_KERNEL | (1 << 23)


@pytest.mark.parametrize("text", ["GFP_BOGUS", "GFP_KERNEL|__GFP_NOLOCKDEP",
                                  "0x800000", "GFP_KERNEL|0x1000000", ""])
def test_parse_gfp_refuses_unknown(text):
    with pytest.raises(ValueError, match="gfp"):
        parse_gfp(text)


def test_invert_stays_within_valid_bits():
    inv = ~GFP_KERNEL
    assert isinstance(inv, gfp_t)
    assert int(inv) == ((1 << 23) - 1) & ~0xCC0


def test_top_level_exports():
    for name in ("GFP_ATOMIC", "GFP_GROUPED", "GFP_KERNEL", "GFP_KERNEL_ACCOUNT", "GFP_NOFS",
                 "GFP_NOIO", "GFP_NOWAIT", "gfp_t", "parse_gfp"):
        assert name in gpalloc.__all__


def test_migratetype_and_zone_from_gfp():
    # GFP_KERNEL and GFP_GROUPED are UNMOVABLE (spec §7); __GFP_HIGHMEM → ZONE_NORMAL on 64-bit
    assert gfpmod.gfp_migratetype(GFP_KERNEL) == gfpmod.MIGRATE_UNMOVABLE
    assert gfpmod.gfp_migratetype(GFP_GROUPED) == gfpmod.MIGRATE_UNMOVABLE
    assert gfpmod.gfp_migratetype(gfpmod.GFP_HIGHUSER_MOVABLE) == gfpmod.MIGRATE_MOVABLE
    assert gfpmod.gfp_migratetype(GFP_KERNEL | gfpmod.__GFP_RECLAIMABLE) == \
        gfpmod.MIGRATE_RECLAIMABLE
    assert gfpmod.gfp_zone(GFP_GROUPED) == gfpmod.ZONE_NORMAL
    assert gfpmod.gfp_zone(GFP_KERNEL | gfpmod.__GFP_DMA32) == gfpmod.ZONE_DMA32
    assert gfpmod.gfp_zone(GFP_KERNEL | gfpmod.__GFP_DMA) == gfpmod.ZONE_DMA
