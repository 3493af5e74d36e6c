"""GFP flags (include/linux/gfp.h, v5.11 bit values) and their readable names.

``str(gfp)`` decomposes a mask the way the kernel's ``%pGg`` printk format does
(include/trace/events/mmflags.h): composite names first, in the kernel's table
order, then single bits.  The model is built without CONFIG_LOCKDEP, so
``__GFP_NOLOCKDEP`` does not exist and the valid bits are 0..22.
"""

__GFP_BITS_SHIFT = 23
_GFP_BITS_MASK = (1 << __GFP_BITS_SHIFT) - 1  # __GFP_BITS_MASK


class gfp_t(int):
    """A GFP mask: an int that prints as the kernel prints it and refuses unknown bits."""

    def __new__(cls, value=0):
        if type(value) is cls:   # fast path: already a checked mask (gfp_t is immutable)
            return value
        value = int(value)
        if value < 0 or value & ~_GFP_BITS_MASK:
            bad = value & ~_GFP_BITS_MASK if value >= 0 else value
            raise ValueError(
                f"gfp: {value:#x} has bits that are not GFP flags in v5.11 ({bad:#x}); "
                f"valid bits are {_GFP_BITS_MASK:#x}")
        return super().__new__(cls, value)

    def __or__(self, other):
        if type(other) is gfp_t:   # fast path: two checked masks give a valid one
            return int.__new__(gfp_t, int.__or__(self, other))
        return gfp_t(int(self) | int(other))

    __ror__ = __or__

    def __and__(self, other):   # a plain int: masks are tested, not printed
        return int(self) & int(other)

    __rand__ = __and__

    def __invert__(self):
        return gfp_t(~int(self) & _GFP_BITS_MASK)

    def __str__(self):
        return format_gfp(self)

    def __repr__(self):
        return f"gfp_t({int(self):#x}: {format_gfp(self)})"


__GFP_DMA = gfp_t(0x01)
__GFP_HIGHMEM = gfp_t(0x02)
__GFP_DMA32 = gfp_t(0x04)
__GFP_MOVABLE = gfp_t(0x08)
__GFP_RECLAIMABLE = gfp_t(0x10)
__GFP_HIGH = gfp_t(0x20)
__GFP_IO = gfp_t(0x40)
__GFP_FS = gfp_t(0x80)
__GFP_ZERO = gfp_t(0x100)
__GFP_ATOMIC = gfp_t(0x200)
__GFP_DIRECT_RECLAIM = gfp_t(0x400)
__GFP_KSWAPD_RECLAIM = gfp_t(0x800)
__GFP_WRITE = gfp_t(0x1000)
__GFP_NOWARN = gfp_t(0x2000)
__GFP_RETRY_MAYFAIL = gfp_t(0x4000)
__GFP_NOFAIL = gfp_t(0x8000)
__GFP_NORETRY = gfp_t(0x10000)
__GFP_MEMALLOC = gfp_t(0x20000)
__GFP_COMP = gfp_t(0x40000)
__GFP_NOMEMALLOC = gfp_t(0x80000)
__GFP_HARDWALL = gfp_t(0x100000)
__GFP_THISNODE = gfp_t(0x200000)
__GFP_ACCOUNT = gfp_t(0x400000)

__GFP_RECLAIM = __GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM
GFP_ATOMIC = __GFP_HIGH | __GFP_ATOMIC | __GFP_KSWAPD_RECLAIM
GFP_KERNEL = __GFP_RECLAIM | __GFP_IO | __GFP_FS
GFP_KERNEL_ACCOUNT = GFP_KERNEL | __GFP_ACCOUNT
GFP_NOWAIT = __GFP_KSWAPD_RECLAIM
GFP_NOIO = __GFP_RECLAIM
GFP_NOFS = __GFP_RECLAIM | __GFP_IO
GFP_USER = GFP_KERNEL | __GFP_HARDWALL
GFP_DMA = __GFP_DMA
GFP_DMA32 = __GFP_DMA32
GFP_HIGHUSER = GFP_USER | __GFP_HIGHMEM
GFP_HIGHUSER_MOVABLE = GFP_HIGHUSER | __GFP_MOVABLE
GFP_TRANSHUGE_LIGHT = gfp_t((GFP_HIGHUSER_MOVABLE | __GFP_COMP | __GFP_NOMEMALLOC
                             | __GFP_NOWARN) & ~__GFP_RECLAIM)
GFP_TRANSHUGE = GFP_TRANSHUGE_LIGHT | __GFP_DIRECT_RECLAIM
GFP_RECLAIM_MASK = (__GFP_RECLAIM | __GFP_IO | __GFP_FS | __GFP_NOWARN | __GFP_RETRY_MAYFAIL
                    | __GFP_NOFAIL | __GFP_NORETRY | __GFP_MEMALLOC | __GFP_NOMEMALLOC)
# RFC 2/3 (mm/vmalloc.c): the only mask VM_GROUP_PAGES accepts.
GFP_GROUPED = __GFP_NOWARN | __GFP_HIGHMEM | GFP_KERNEL

# Order of include/trace/events/mmflags.h (__def_gfpflag_names): composites first.
_NAMES = [
    ("GFP_TRANSHUGE", GFP_TRANSHUGE), ("GFP_TRANSHUGE_LIGHT", GFP_TRANSHUGE_LIGHT),
    ("GFP_HIGHUSER_MOVABLE", GFP_HIGHUSER_MOVABLE), ("GFP_HIGHUSER", GFP_HIGHUSER),
    ("GFP_USER", GFP_USER), ("GFP_KERNEL_ACCOUNT", GFP_KERNEL_ACCOUNT),
    ("GFP_KERNEL", GFP_KERNEL), ("GFP_NOFS", GFP_NOFS), ("GFP_ATOMIC", GFP_ATOMIC),
    ("GFP_NOIO", GFP_NOIO), ("GFP_NOWAIT", GFP_NOWAIT), ("GFP_DMA", GFP_DMA),
    ("__GFP_HIGHMEM", __GFP_HIGHMEM), ("GFP_DMA32", GFP_DMA32), ("__GFP_HIGH", __GFP_HIGH),
    ("__GFP_ATOMIC", __GFP_ATOMIC), ("__GFP_IO", __GFP_IO), ("__GFP_FS", __GFP_FS),
    ("__GFP_NOWARN", __GFP_NOWARN), ("__GFP_RETRY_MAYFAIL", __GFP_RETRY_MAYFAIL),
    ("__GFP_NOFAIL", __GFP_NOFAIL), ("__GFP_NORETRY", __GFP_NORETRY),
    ("__GFP_COMP", __GFP_COMP), ("__GFP_ZERO", __GFP_ZERO),
    ("__GFP_NOMEMALLOC", __GFP_NOMEMALLOC), ("__GFP_MEMALLOC", __GFP_MEMALLOC),
    ("__GFP_HARDWALL", __GFP_HARDWALL), ("__GFP_THISNODE", __GFP_THISNODE),
    ("__GFP_RECLAIMABLE", __GFP_RECLAIMABLE), ("__GFP_MOVABLE", __GFP_MOVABLE),
    ("__GFP_ACCOUNT", __GFP_ACCOUNT), ("__GFP_WRITE", __GFP_WRITE),
    ("__GFP_RECLAIM", __GFP_RECLAIM), ("__GFP_DIRECT_RECLAIM", __GFP_DIRECT_RECLAIM),
    ("__GFP_KSWAPD_RECLAIM", __GFP_KSWAPD_RECLAIM),
]


def format_gfp(gfp):
    """The kernel's %pGg text for a mask, e.g. ``GFP_KERNEL|__GFP_NOWARN``."""
    rest = int(gfp)
    if rest == 0:
        return "0"
    parts = []
    for name, mask in _NAMES:
        mask = int(mask)
        if rest & mask == mask:
            parts.append(name)
            rest &= ~mask
        if not rest:
            break
    return "|".join(parts)


def parse_gfp(text):
    """``gfp_t`` from text like ``"GFP_KERNEL|__GFP_ZERO"`` or ``"0xcc0"``."""
    value = 0
    for part in str(text).replace(" ", "").split("|"):
        if part == "0":
            continue
        if part.lower().startswith("0x"):
            value |= int(part, 16)
        elif part in globals() and isinstance(globals()[part], gfp_t):
            value |= globals()[part]
        else:
            raise ValueError(f"gfp: unknown flag {part!r} in {text!r}")
    return gfp_t(value)


# include/linux/mmzone.h migrate types (no CMA in the model)
MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE = 0, 1, 2
MIGRATE_PCPTYPES = 3
MIGRATE_TYPE_NAMES = ("Unmovable", "Movable", "Reclaimable")

ZONE_DMA, ZONE_DMA32, ZONE_NORMAL = 0, 1, 2
ZONE_NAMES = ("DMA", "DMA32", "Normal")


def gfp_migratetype(gfp):
    """gfp_migratetype(): __GFP_MOVABLE → MOVABLE, __GFP_RECLAIMABLE → RECLAIMABLE."""
    return (int(gfp) & (__GFP_MOVABLE | __GFP_RECLAIMABLE)) >> 3


def gfp_zone(gfp):
    """gfp_zone(): the highest zone the mask may use (64-bit: no ZONE_HIGHMEM)."""
    if gfp & __GFP_DMA:
        return ZONE_DMA
    if gfp & __GFP_DMA32:
        return ZONE_DMA32
    return ZONE_NORMAL


def gfpflags_allow_blocking(gfp):
    """gfpflags_allow_blocking(): may this allocation sleep (direct reclaim)?"""
    return bool(gfp & __GFP_DIRECT_RECLAIM)
