"""Page-table protection bits and pgprot values (arch/x86/include/asm/pgtable_types.h).

The model tracks the bits that matter here: PRESENT, RW, GLOBAL and NX
(ACCESSED/DIRTY are left out of every value, so comparisons stay meaningful).
"""

_PAGE_PRESENT = 0x001
_PAGE_RW = 0x002
_PAGE_GLOBAL = 0x100
_PAGE_NX = 1 << 63


class pgprot_t(int):
    """A protection value that prints like ``RW NX G P``."""

    def __str__(self):
        return format_prot(self)

    def __repr__(self):
        return f"pgprot_t({format_prot(self)})"


def format_prot(prot):
    """Short text for a prot: present/RW/NX/global, in the kernel ptdump's spirit."""
    if not prot & _PAGE_PRESENT:
        return "not present"
    parts = ["RW" if prot & _PAGE_RW else "ro", "NX" if prot & _PAGE_NX else "x"]
    if prot & _PAGE_GLOBAL:
        parts.append("GLB")
    return " ".join(parts)


PAGE_KERNEL = pgprot_t(_PAGE_PRESENT | _PAGE_RW | _PAGE_GLOBAL | _PAGE_NX)
PAGE_KERNEL_RO = pgprot_t(_PAGE_PRESENT | _PAGE_GLOBAL | _PAGE_NX)
PAGE_KERNEL_ROX = pgprot_t(_PAGE_PRESENT | _PAGE_GLOBAL)

PG_LEVEL_4K, PG_LEVEL_2M, PG_LEVEL_1G = 1, 2, 3
