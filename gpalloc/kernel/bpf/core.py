"""BPF program images (kernel/bpf/core.c, include/linux/filter.h, arch/x86/net/bpf_jit_comp.c).

Per load: ``bpf_prog_alloc`` vmallocs the struct bpf_prog with its instructions
(the vmalloc range, never grouped); the verifier vzallocs its per-instruction
aux data and vfrees it when done; the x86 JIT gets its image from the running
design (``k.design.bpf_jit_alloc``: in v5.11 ``bpf_jit_binary_alloc`` =
bpf_jit_alloc_exec() = module_alloc(), locked RO+X).  Freeing a program waits
for an RCU grace period and a workqueue, then frees the JIT image
(VM_FLUSH_RESET_PERMS) and the bpf_prog.  Without a JIT (and without
CONFIG_BPF_JIT_ALWAYS_ON) the bpf_prog itself is made RO.

Sizes the model assumes: sizeof(struct bpf_binary_header) = 8
(u32 + 8-byte image alignment since v5.5), so an image takes
ceil((proglen + 136) / 4096) pages; sizeof(struct bpf_prog) is the running design's
``bpf_prog_struct_size`` (72 bytes in v5.11, 96 in 6.18 where the tag became a
32-byte digest) + 8 bytes per instruction; verifier aux data 64 bytes per instruction
(approximate, v5.11 struct bpf_insn_aux_data).
"""

from dataclasses import dataclass

from ...arch.x86 import set_memory as cpa
from ...errno import ENOMEM
from ...mm.execmem import EXECMEM_BPF, execmem_alloc, execmem_free
from ...mm.gfp import __GFP_ZERO, GFP_KERNEL, GFP_KERNEL_ACCOUNT
from ...mm.mmzone import NUMA_NO_NODE
from ...mm.page import PAGE_SHIFT, PFN_UP
from ...mm.vmalloc import __vmalloc_node, set_vm_flush_reset_perms, vfree
from ..workqueue import queue_work

BPF_BINARY_HEADER = 8
BPF_JIT_HOLE = 128   # bpf_jit_binary_alloc() reserves 128 bytes for the random start
BPF_INSN_SIZE, BPF_AUX_SIZE = 8, 64
PROG_FREE_DELAY = 8   # kernel events for call_rcu() + bpf_prog_free_deferred()


@dataclass
class bpf_prog:
    """struct bpf_prog: the parts the memory model needs."""

    fp: int            # address of the vmalloc'd struct bpf_prog
    pages: int
    len: int
    jited: bool = False
    header: int = 0    # struct bpf_binary_header *, the JIT image
    header_pages: int = 0
    header_size: int = 0   # bpf_binary_header.size: bytes taken in a pack (5.18+ designs)


def bpf_jit_binary_size(proglen):
    """Bytes bpf_jit_binary_alloc() asks for: proglen + sizeof(header) + 128 (the hole)."""
    return proglen + BPF_BINARY_HEADER + BPF_JIT_HOLE


def bpf_jit_binary_pack_size(proglen):
    """Bytes bpf_jit_binary_pack_alloc() takes (5.18+): round_up(proglen' + header + 16, 64).

    proglen' is the x86 JIT's length rounded up to 4 (its alignment); no extable for the
    programs modelled.
    """
    proglen = -(-proglen // 4) * 4
    return -(-(proglen + BPF_BINARY_HEADER + 16) // 64) * 64


def bpf_jit_binary_pages(proglen):
    """Pages of a JIT image: round_up(proglen + sizeof(header) + 128, PAGE_SIZE)."""
    return PFN_UP(bpf_jit_binary_size(proglen))


def bpf_jit_alloc_exec(k, size, caller):
    """bpf_jit_alloc_exec(): module_alloc() in v5.11, execmem_alloc(EXECMEM_BPF) later."""
    return execmem_alloc(k, EXECMEM_BPF, size, caller)


def bpf_jit_free_exec(k, addr, size):
    """bpf_jit_free_exec(): module_memfree() in v5.11, execmem_free() later."""
    execmem_free(k, EXECMEM_BPF, addr, size)


def bpf_prog_size(k, insn_cnt):
    """bpf_prog_size(): sizeof(struct bpf_prog) (the running kernel's) + the instructions."""
    return k.design.bpf_prog_struct_size + BPF_INSN_SIZE * insn_cnt


def bpf_prog_alloc(k, insn_cnt):
    """bpf_prog_alloc(): __vmalloc(struct + insns, GFP_KERNEL_ACCOUNT | __GFP_ZERO)."""
    pages = PFN_UP(bpf_prog_size(k, insn_cnt))
    area = __vmalloc_node(k, pages << PAGE_SHIFT, 1, GFP_KERNEL_ACCOUNT | __GFP_ZERO,
                          NUMA_NO_NODE, "bpf_prog_alloc_no_stats")
    return bpf_prog(area.addr, pages, insn_cnt) if area else None


def bpf_check(k, prog):
    """bpf_check(): the verifier's insn_aux_data, vzalloc'd then vfree'd."""
    aux = __vmalloc_node(k, max(BPF_AUX_SIZE * prog.len, 1), 1, GFP_KERNEL | __GFP_ZERO,
                         NUMA_NO_NODE, "bpf_check")
    if aux is None:
        return -ENOMEM
    vfree(k, aux.addr)
    return 0


def bpf_jit_binary_alloc(k, proglen):
    """bpf_jit_binary_alloc(): charge, then bpf_jit_alloc_exec() of whole pages."""
    pages = bpf_jit_binary_pages(proglen)
    hdr = bpf_jit_alloc_exec(k, pages << PAGE_SHIFT, "bpf_jit_binary_alloc")
    if hdr is None:
        return 0, 0
    k.stat["bpf_jit_pages"] += pages
    return hdr, pages


def bpf_jit_binary_free(k, hdr, pages):
    """bpf_jit_binary_free(): bpf_jit_free_exec() of the image."""
    bpf_jit_free_exec(k, hdr, pages << PAGE_SHIFT)


def bpf_jit_binary_lock_ro(k, hdr, pages):
    """bpf_jit_binary_lock_ro(): VM_FLUSH_RESET_PERMS, then RO, then X."""
    set_vm_flush_reset_perms(k, hdr)
    cpa.set_memory_ro(k, hdr, pages)
    cpa.set_memory_x(k, hdr, pages)


def bpf_int_jit_compile(k, prog, jited_bytes):
    """bpf_int_jit_compile() (x86): the image comes from the running design, then is locked.

    v5.11: its own bpf_jit_binary_alloc() area made RO+X; with bpf_prog_pack (5.18+)
    a slice of a shared pack that is already RO+X.  No image: the interpreter runs it.
    """
    k.design.bpf_jit_alloc(k, prog, jited_bytes)
    return prog


def bpf_prog_lock_ro(k, prog, jit_always_on):
    """bpf_prog_lock_ro(): only without CONFIG_BPF_JIT_ALWAYS_ON and only if not JITed."""
    if not jit_always_on and not prog.jited:
        set_vm_flush_reset_perms(k, prog.fp)
        cpa.set_memory_ro(k, prog.fp, prog.pages)


def bpf_prog_load(k, insn_cnt, jited_bytes, jit=True, jit_always_on=True):
    """BPF_PROG_LOAD: bpf_prog_alloc, bpf_check, bpf_prog_select_runtime. None on failure."""
    prog = bpf_prog_alloc(k, insn_cnt)
    if prog is None:
        return None
    if bpf_check(k, prog):
        vfree(k, prog.fp)
        return None
    if jit:
        bpf_int_jit_compile(k, prog, jited_bytes)
    bpf_prog_lock_ro(k, prog, jit_always_on)
    k.stat["bpf_prog_loads"] += 1
    return prog


def __bpf_prog_free(k, prog):
    """bpf_prog_free_deferred(): bpf_jit_free() the image, then free the bpf_prog."""
    if prog.jited:
        k.design.bpf_jit_free(k, prog)      # bpf_jit_free()
    vfree(k, prog.fp)


def bpf_prog_put(k, prog, delay=PROG_FREE_DELAY):
    """bpf_prog_put(): the last reference: free after an RCU grace period + workqueue."""
    queue_work(k, lambda: __bpf_prog_free(k, prog), delay, "bpf_prog_free_deferred")
