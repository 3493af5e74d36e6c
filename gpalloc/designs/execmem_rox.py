"""The execmem ROX cache for module text (mm/execmem.c, M. Rapoport; x86-64 6.15): design ``6.15``.

Not in v5.11; a later design.  execmem 6.10 gave every executable type one seam; 6.13
added the ROX cache, which x86 disabled in January 2025 and re-enabled, reworked, for
6.15 (kernel-spec §9.8; the release is UNVERIFIED there).  On x86-64 6.15 only
**module text** (EXECMEM_MODULE_TEXT) is cached: pieces of 2 MiB chunks that are
populated as one PMD-mapped order-9 block and made ROX in one set_memory_rox() — the
chunk's direct-map alias goes read-only without a 2 MiB split (a 1 GiB entry around it
still splits).  gpalloc.mm.execmem has the cache and the rules that make it split after
all: a populate that finds no order-9 block falls back to 512 order-0 pages for the
same chunk (every region they touch splits); loading text into a piece makes it RW
first (execmem_make_temp_rw(): the chunk's 2 MiB region splits at its first module
load); a wholly free chunk is given back.  6.15 frees a piece by text poking traps
into it (no permission change) and has no exact-size populate retry — both 6.17.

Everything else is the 6.x kernel of gpalloc.designs.linux_6_18 (BPF in 2 MiB packs
of 4K pages — **never** from the ROX cache on x86 —, ftrace trampolines and kprobe
pages as ordinary execmem_alloc() areas made RO+X by their callers, bulk vmalloc,
6.x page allocator, NX-preserving CPA alias): what changed between 6.15 and 6.18 in
those is not modelled.  Modules' other sections are ordinary allocations made RO as
in v5.11.
"""

from ..mm.execmem import EXECMEM_MODULE_TEXT
from .linux_6_18 import Linux618


class Linux615(Linux618):
    """6.15: the x86 ROX cache for module text only, 6.15's free and populate rules."""

    name = "6.15"
    summary = "6.15 execmem ROX cache (Mike Rapoport): module text in PMD-mapped ROX chunks"
    stat_keys = ("bpf_prog_packs", "execmem_chunks", "execmem_fallback")
    execmem_rox_types = frozenset({EXECMEM_MODULE_TEXT})
    execmem_populate_exact = False
    execmem_free_rw = False
