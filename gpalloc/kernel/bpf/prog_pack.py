"""bpf_prog_pack (kernel/bpf/core.c, Linux 5.18, Song Liu) — not in v5.11; a later design.

JIT images are carved out of shared 2 MiB "packs" in 64-byte chunks.  A pack is
one bpf_jit_alloc_exec() (module_alloc) made RO+X once, so loading or freeing a
program changes no permissions and splits nothing; the pack's own pages split
their regions once, when it is made RO.  Images bigger than a pack get their own
module_alloc() with the old RO+X sequence.  A pack is freed when its last image
goes.

Simplified: the RW staging buffer (kvmalloc, copied in with text_poke) is not
modelled — it is usually slab memory.
"""

from ...arch.x86 import set_memory as cpa
from ...arch.x86.module import module_alloc
from ...mm import execmem
from ...mm.page import PAGE_SHIFT, PAGE_SIZE
from ...mm.vmalloc import set_vm_flush_reset_perms

BPF_PROG_PACK_SIZE = 2 << 20
BPF_PROG_CHUNK_SIZE = 64
BPF_PROG_CHUNK_COUNT = BPF_PROG_PACK_SIZE // BPF_PROG_CHUNK_SIZE
BPF_PROG_MAX_PACK_PROG_SIZE = BPF_PROG_PACK_SIZE


class bpf_prog_pack:
    """struct bpf_prog_pack: the pack's address and its chunk bitmap (a bytearray)."""

    def __init__(self, ptr):
        self.ptr = ptr
        self.bitmap = bytearray(BPF_PROG_CHUNK_COUNT)
        self.used = 0


def _lock_ro_x(k, ptr, pages):
    set_vm_flush_reset_perms(k, ptr)
    cpa.set_memory_ro(k, ptr, pages)
    cpa.set_memory_x(k, ptr, pages)


def alloc_new_pack(k):
    """alloc_new_pack(): one 2 MiB module_alloc(), filled with traps, made RO+X once.

    With the execmem ROX cache the pack is a cache chunk that is already ROX.
    """
    if "execmem_rox" in k.features:
        ptr = execmem.execmem_alloc(k, BPF_PROG_PACK_SIZE, "bpf_prog_pack_alloc")
    else:
        ptr = module_alloc(k, BPF_PROG_PACK_SIZE, caller="bpf_prog_pack_alloc")
        if ptr is not None:
            _lock_ro_x(k, ptr, BPF_PROG_PACK_SIZE >> PAGE_SHIFT)
    if ptr is None:
        return None
    pack = bpf_prog_pack(ptr)
    k.prog_packs.append(pack)
    k.stat["bpf_prog_packs"] += 1
    return pack


def bpf_prog_pack_alloc(k, size):
    """bpf_prog_pack_alloc(): first fit of size's chunks in a pack, or a new pack."""
    if size > BPF_PROG_MAX_PACK_PROG_SIZE:
        size = (size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        if "execmem_rox" in k.features:
            return execmem.execmem_alloc(k, size, "bpf_prog_pack_alloc")
        ptr = module_alloc(k, size, caller="bpf_prog_pack_alloc")
        if ptr is not None:
            _lock_ro_x(k, ptr, size >> PAGE_SHIFT)
        return ptr
    nbits = -(-size // BPF_PROG_CHUNK_SIZE)
    want = bytes(nbits)
    for pack in k.prog_packs:
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
        execmem.free_exec(k, ptr, size)
        return
    for pack in k.prog_packs:
        if pack.ptr <= ptr < pack.ptr + BPF_PROG_PACK_SIZE:
            break
    else:
        raise ValueError(f"bpf_prog_pack_free: {ptr:#x} is in no pack")
    pos = (ptr - pack.ptr) // BPF_PROG_CHUNK_SIZE
    nbits = -(-size // BPF_PROG_CHUNK_SIZE)
    pack.bitmap[pos:pos + nbits] = bytes(nbits)
    pack.used -= nbits
    if pack.used == 0:
        execmem.free_exec(k, pack.ptr, BPF_PROG_PACK_SIZE)
        k.prog_packs.remove(pack)
