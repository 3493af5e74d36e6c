"""bpf_prog_pack (kernel/bpf/core.c, Linux 5.18, Song Liu): JIT images share 2 MiB packs.

Not in v5.11; a later design.  JIT images are carved out of shared 2 MiB "packs"
in 64-byte chunks.  A pack is one bpf_jit_alloc_exec() (module_alloc) made RO+X
once, so loading or freeing a program changes no permissions and splits
nothing; the pack's own pages split their regions once, when it is made RO.
Images bigger than a pack get their own allocation with the old RO+X sequence.
A pack is freed when its last image goes.  Everything else is v5.11.

Simplified: the RW staging buffer (kvmalloc, copied in with text_poke) is not
modelled — it is usually slab memory.
"""

from ..arch.x86 import set_memory as cpa
from ..check import fail
from ..kernel.bpf.core import bpf_jit_alloc_exec, bpf_jit_binary_size, bpf_jit_free_exec
from ..mm.execmem import EXECMEM_BPF, execmem_is_rox
from ..mm.page import PAGE_SHIFT, PFN_UP
from ..mm.vmalloc import set_vm_flush_reset_perms
from .v5_11 import Linux511

BPF_PROG_PACK_SIZE = 2 << 20
BPF_PROG_CHUNK_SIZE = 64
BPF_PROG_CHUNK_COUNT = BPF_PROG_PACK_SIZE // BPF_PROG_CHUNK_SIZE
BPF_PROG_MAX_PACK_PROG_SIZE = BPF_PROG_PACK_SIZE
PACK_CALLER = "bpf_prog_pack_alloc"


class bpf_prog_pack:
    """struct bpf_prog_pack: the pack's address and its chunk bitmap (a bytearray)."""

    def __init__(self, ptr):
        self.ptr = ptr
        self.bitmap = bytearray(BPF_PROG_CHUNK_COUNT)
        self.used = 0


def _lock_ro_x(k, ptr, pages):
    """The pack (or big image) goes RO+X once, unless it already arrived ROX."""
    if execmem_is_rox(k, EXECMEM_BPF):
        return
    set_vm_flush_reset_perms(k, ptr)
    cpa.set_memory_ro(k, ptr, pages)
    cpa.set_memory_x(k, ptr, pages)


def alloc_new_pack(k):
    """alloc_new_pack(): one 2 MiB bpf_jit_alloc_exec(), filled with traps, made RO+X once."""
    ptr = bpf_jit_alloc_exec(k, BPF_PROG_PACK_SIZE, PACK_CALLER)
    if ptr is None:
        return None
    _lock_ro_x(k, ptr, BPF_PROG_PACK_SIZE >> PAGE_SHIFT)
    pack = bpf_prog_pack(ptr)
    k.design.packs.append(pack)
    k.stat["bpf_prog_packs"] += 1
    return pack


def bpf_prog_pack_alloc(k, size):
    """bpf_prog_pack_alloc(): first fit of size's chunks in a pack, or a new pack."""
    if size > BPF_PROG_MAX_PACK_PROG_SIZE:
        size = PFN_UP(size) << PAGE_SHIFT
        ptr = bpf_jit_alloc_exec(k, size, PACK_CALLER)
        if ptr is not None:
            _lock_ro_x(k, ptr, size >> PAGE_SHIFT)
        return ptr
    nbits = -(-size // BPF_PROG_CHUNK_SIZE)
    want = bytes(nbits)
    for pack in k.design.packs:
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
    if size > BPF_PROG_MAX_PACK_PROG_SIZE:
        bpf_jit_free_exec(k, ptr, size)
        return
    packs = k.design.packs
    for pack in packs:
        if pack.ptr <= ptr < pack.ptr + BPF_PROG_PACK_SIZE:
            break
    else:
        raise ValueError(f"bpf_prog_pack_free: {ptr:#x} is in no pack")
    pos = (ptr - pack.ptr) // BPF_PROG_CHUNK_SIZE
    nbits = -(-size // BPF_PROG_CHUNK_SIZE)
    pack.bitmap[pos:pos + nbits] = bytes(nbits)
    pack.used -= nbits
    if pack.used == 0:
        bpf_jit_free_exec(k, pack.ptr, BPF_PROG_PACK_SIZE)
        packs.remove(pack)


class ProgPack(Linux511):
    """v5.11 with 5.18's bpf_prog_pack: the x86 JIT uses bpf_jit_binary_pack_alloc()."""

    name = "prog-pack"
    summary = "5.18 bpf_prog_pack (Song Liu): JIT images in shared 2 MiB RO+X packs"

    def __init__(self, **options):
        super().__init__(**options)
        self.packs = []

    def bpf_jit_alloc(self, k, prog, jited_bytes):
        """bpf_jit_binary_pack_alloc(): a slice of a pack that is already RO+X."""
        size = bpf_jit_binary_size(jited_bytes)
        hdr = bpf_prog_pack_alloc(k, size)
        if hdr:
            prog.jited, prog.header, prog.header_size = True, hdr, size
            prog.header_pages = PFN_UP(size)

    def bpf_jit_free(self, k, prog):
        """bpf_jit_binary_pack_free(): the chunks go back to the pack."""
        bpf_prog_pack_free(k, prog.header, prog.header_size)

    def pools(self, k):
        """One row per pack: 2 MiB held, the bytes of its chunks in use."""
        return [{"kind": "bpf_prog_pack", "addr": p.ptr, "pool_bytes": BPF_PROG_PACK_SIZE,
                 "in_use_bytes": p.used * BPF_PROG_CHUNK_SIZE} for p in self.packs]

    def check(self, k):
        """Each pack's used count equals its bitmap; packs are live vmalloc areas."""
        for p in self.packs:
            if p.used != sum(p.bitmap):
                fail("bpf_prog_pack used", f"pack {p.ptr:#x} used={p.used}, "
                                           f"bitmap holds {sum(p.bitmap)}")
            if p.used == 0:
                fail("bpf_prog_pack freed when empty", f"pack {p.ptr:#x} is empty but listed")
