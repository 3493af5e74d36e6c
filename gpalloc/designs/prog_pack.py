"""bpf_prog_pack (kernel/bpf/core.c, Song Liu, 5.18): JIT images share RO+X packs — design ``5.18``.

Not in v5.11; a later design.  The x86-64 JIT carves images out of shared "packs"
in 64-byte chunks (first fit over the packs in creation order, no alignment); a pack
is made read-only + executable once, so loading or freeing a program changes no
permissions; a pack is freed when its last image goes.  Images bigger than a pack
get their own allocation, made RO+X the same way.  The image size is
round_up(round_up(jited, 4) + sizeof(struct bpf_binary_header) + 16, 64)
(bpf_jit_binary_pack_alloc()), without v5.11's 128-byte hole.

**Pack size, by kernel** (docs/reference/kernel-6.18-bpf-jit.md §5.1):
x86-64 5.18 shipped 4 KiB packs — select_bpf_prog_pack_size() kept PMD_SIZE only when
module_alloc() came back huge, which x86 no longer does once huge vmalloc became
opt-in (5.18-rc4) — so a pack is one module_alloc() page made RO then X, and every
image above 4 KiB takes its own module_alloc() (Song Liu: "As of 5.18-rc6, x86_64
uses bpf_prog_pack on 4kB pages").  From 6.0 (ea2babac63d4) a pack is
SZ_2M × num_possible_nodes() of ordinary 4 KiB pages: that is the 6.x designs'
(gpalloc.designs.linux_6_18), which reuse the functions below with their own
``pack_size`` and ``pack_lock_ro``.

Everything but the JIT is v5.11 here (page allocator and vmalloc included: 5.18's
bulk vmalloc makes no difference for one-page packs).  Simplified: the RW staging
buffer (kvmalloc, copied in with text_poke) is not modelled in this design — for
one-page images it is slab memory; 5.18 did not yet fill packs with traps.
"""

from ..arch.x86 import set_memory as cpa
from ..check import fail
from ..kernel.bpf.core import bpf_jit_alloc_exec, bpf_jit_binary_pack_size, bpf_jit_free_exec
from ..mm.page import PAGE_SHIFT, PAGE_SIZE, PFN_UP
from ..mm.vmalloc import set_vm_flush_reset_perms
from .v5_11 import Linux511

BPF_PROG_CHUNK_SHIFT = 6
BPF_PROG_CHUNK_SIZE = 1 << BPF_PROG_CHUNK_SHIFT
PACK_CALLER = "bpf_prog_pack_alloc"


class bpf_prog_pack:
    """struct bpf_prog_pack: the pack's address and its chunk bitmap (a bytearray)."""

    def __init__(self, ptr, chunks):
        self.ptr = ptr
        self.bitmap = bytearray(chunks)
        self.used = 0


def alloc_new_pack(k):
    """alloc_new_pack(): one bpf_jit_alloc_exec() of a pack, made read-only + executable once."""
    d = k.design
    ptr = bpf_jit_alloc_exec(k, d.pack_size, PACK_CALLER)
    if ptr is None:
        return None
    d.pack_lock_ro(k, ptr, d.pack_size >> PAGE_SHIFT)
    pack = bpf_prog_pack(ptr, d.pack_size // BPF_PROG_CHUNK_SIZE)
    d.packs.append(pack)
    k.stat["bpf_prog_packs"] += 1
    return pack


def bpf_prog_pack_alloc(k, size):
    """bpf_prog_pack_alloc(): first fit of size's chunks in a pack, or a new pack.

    An image larger than a pack gets its own page-rounded bpf_jit_alloc_exec().
    """
    d = k.design
    if size > d.pack_size:
        size = PFN_UP(size) << PAGE_SHIFT
        ptr = bpf_jit_alloc_exec(k, size, PACK_CALLER)
        if ptr is not None:
            d.pack_lock_ro(k, ptr, size >> PAGE_SHIFT)
        return ptr
    nbits = -(-size // BPF_PROG_CHUNK_SIZE)
    want = bytes(nbits)
    for pack in d.packs:
        pos = pack.bitmap.find(want)
        if pos >= 0:
            break
    else:
        pack = alloc_new_pack(k)
        if pack is None:
            return None
        pos = 0
    pack.bitmap[pos:pos + nbits] = b"\x01" * nbits
    pack.used += nbits
    return pack.ptr + pos * BPF_PROG_CHUNK_SIZE


def bpf_prog_pack_free(k, ptr, size):
    """bpf_prog_pack_free(): clear the chunks; free the pack when it is empty."""
    d = k.design
    if size > d.pack_size:
        bpf_jit_free_exec(k, ptr, size)
        return
    for pack in d.packs:
        if pack.ptr <= ptr < pack.ptr + d.pack_size:
            break
    else:
        raise ValueError(f"bpf_prog_pack_free: {ptr:#x} is in no pack")
    pos = (ptr - pack.ptr) // BPF_PROG_CHUNK_SIZE
    nbits = -(-size // BPF_PROG_CHUNK_SIZE)
    pack.bitmap[pos:pos + nbits] = bytes(nbits)
    pack.used -= nbits
    if pack.used == 0:
        bpf_jit_free_exec(k, pack.ptr, d.pack_size)
        d.packs.remove(pack)


def pack_pools(k):
    """One row per pack: its size, the bytes of its chunks in use."""
    size = k.design.pack_size
    return [{"kind": "bpf_prog_pack", "addr": p.ptr, "pool_bytes": size,
             "in_use_bytes": p.used * BPF_PROG_CHUNK_SIZE} for p in k.design.packs]


def check_packs(k):
    """Each pack's used count equals its bitmap; no empty pack is kept."""
    for p in k.design.packs:
        if p.used != sum(p.bitmap):
            fail("bpf_prog_pack used", f"pack {p.ptr:#x} used={p.used}, "
                                       f"bitmap holds {sum(p.bitmap)}")
        if p.used == 0:
            fail("bpf_prog_pack freed when empty", f"pack {p.ptr:#x} is empty but listed")


class Linux518(Linux511):
    """v5.11 with 5.18's bpf_prog_pack: x86-64 packs of one 4 KiB page, RO then X."""

    name = "5.18"
    summary = "5.18 bpf_prog_pack (Song Liu): x86-64 JIT images share 4 KiB RO+X packs"
    pack_size = PAGE_SIZE   # select_bpf_prog_pack_size(): x86 module_alloc() is never huge

    def __init__(self, **options):
        super().__init__(**options)
        self.packs = []

    def pack_lock_ro(self, k, ptr, pages):
        """5.18: set_vm_flush_reset_perms(), set_memory_ro(), set_memory_x() on the pack."""
        set_vm_flush_reset_perms(k, ptr)
        cpa.set_memory_ro(k, ptr, pages)
        cpa.set_memory_x(k, ptr, pages)

    def bpf_jit_alloc(self, k, prog, jited_bytes):
        """bpf_jit_binary_pack_alloc(): a slice of a pack that is already RO+X."""
        size = bpf_jit_binary_pack_size(jited_bytes)
        hdr = bpf_prog_pack_alloc(k, size)
        if hdr:
            prog.jited, prog.header, prog.header_size = True, hdr, size
            prog.header_pages = PFN_UP(size)

    def bpf_jit_free(self, k, prog):
        """bpf_jit_binary_pack_free(): the chunks go back to the pack."""
        bpf_prog_pack_free(k, prog.header, prog.header_size)

    def pools(self, k):
        """One row per pack."""
        return pack_pools(k)

    def check(self, k):
        """Packs are consistent."""
        check_packs(k)
