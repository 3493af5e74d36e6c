"""BPF program images (kernel/bpf/core.c, include/linux/filter.h, arch/x86/net/bpf_jit_comp.c).

Per load: ``bpf_prog_alloc`` vmallocs the struct bpf_prog with its instructions
(the vmalloc range, never grouped); the verifier vzallocs its per-instruction
aux data and vfrees it when done; the x86 JIT allocates its image with
``bpf_jit_binary_alloc`` (module_alloc) and locks it RO+X.  Freeing a program
waits for an RCU grace period and a workqueue, then frees the JIT image
(VM_FLUSH_RESET_PERMS) and the bpf_prog.  Without a JIT (and without
CONFIG_BPF_JIT_ALWAYS_ON) the bpf_prog itself is made RO.

Sizes the model assumes (spec §4.2, §11): sizeof(struct bpf_binary_header) = 8
(u32 + 8-byte image alignment since v5.5), so an image takes
ceil((proglen + 136) / 4096) pages; struct bpf_prog header 72 bytes + 8 bytes per
instruction; verifier aux data 64 bytes per instruction
(approximate, v5.11 struct bpf_insn_aux_data).
"""

from dataclasses import dataclass

from ...arch.x86 import set_memory as cpa
from ...arch.x86.module import module_alloc, module_memfree
from ...mm.gfp import __GFP_ZERO, GFP_KERNEL, GFP_KERNEL_ACCOUNT
from ...mm.page import PAGE_SHIFT, PAGE_SIZE
from ...mm.vmalloc import NUMA_NO_NODE, __vmalloc_node, set_vm_flush_reset_perms, vfree
from ..workqueue import queue_work
from . import prog_pack

BPF_BINARY_HEADER = 8
BPF_PROG_HEADER, BPF_INSN_SIZE, BPF_AUX_SIZE = 72, 8, 64
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
    packed_size: int = 0   # >0: the image lives in a bpf_prog_pack (a later design)


def round_up_pages(nbytes):
    """round_up(n, PAGE_SIZE) >> PAGE_SHIFT."""
    return (nbytes + PAGE_SIZE - 1) >> PAGE_SHIFT


def bpf_jit_binary_pages(proglen):
    """Pages of a JIT image: round_up(proglen + sizeof(header) + 128, PAGE_SIZE)."""
    return round_up_pages(proglen + BPF_BINARY_HEADER + 128)


def bpf_prog_alloc(k, insn_cnt):
    """bpf_prog_alloc(): __vmalloc(struct + insns, GFP_KERNEL_ACCOUNT | __GFP_ZERO)."""
    pages = round_up_pages(BPF_PROG_HEADER + BPF_INSN_SIZE * insn_cnt)
    area = __vmalloc_node(k, pages << PAGE_SHIFT, 1, GFP_KERNEL_ACCOUNT | __GFP_ZERO,
                          NUMA_NO_NODE, "bpf_prog_alloc_no_stats")
    return bpf_prog(area.addr, pages, insn_cnt) if area else None


def bpf_check(k, prog):
    """bpf_check(): the verifier's insn_aux_data, vzalloc'd then vfree'd."""
    aux = __vmalloc_node(k, max(BPF_AUX_SIZE * prog.len, 1), 1, GFP_KERNEL | __GFP_ZERO,
                         NUMA_NO_NODE, "bpf_check")
    if aux is None:
        return -12
    vfree(k, aux.addr)
    return 0


def bpf_jit_binary_alloc(k, proglen):
    """bpf_jit_binary_alloc(): charge, then bpf_jit_alloc_exec() = module_alloc()."""
    pages = bpf_jit_binary_pages(proglen)
    hdr = module_alloc(k, pages << PAGE_SHIFT, caller="bpf_jit_binary_alloc")
    if hdr is None:
        return 0, 0
    k.stat["bpf_jit_pages"] += pages
    return hdr, pages


def bpf_jit_binary_lock_ro(k, hdr, pages):
    """bpf_jit_binary_lock_ro(): VM_FLUSH_RESET_PERMS, then RO, then X."""
    set_vm_flush_reset_perms(k, hdr)
    cpa.set_memory_ro(k, hdr, pages)
    cpa.set_memory_x(k, hdr, pages)


def bpf_int_jit_compile(k, prog, jited_bytes):
    """bpf_int_jit_compile() (x86): allocate the image once, emit, lock it.

    With the later bpf_prog_pack design (``features=("bpf_prog_pack",)``) the image
    is carved from a pack that is already RO+X: no permission change per program.
    """
    if "bpf_prog_pack" in k.features:
        size = jited_bytes + BPF_BINARY_HEADER + 128
        hdr = prog_pack.bpf_prog_pack_alloc(k, size)
        if hdr:
            prog.jited, prog.header, prog.packed_size = True, hdr, size
            prog.header_pages = round_up_pages(size)
        return prog
    hdr, pages = bpf_jit_binary_alloc(k, jited_bytes)
    if not hdr:
        return prog   # falls back to the interpreter
    bpf_jit_binary_lock_ro(k, hdr, pages)
    prog.jited, prog.header, prog.header_pages = True, hdr, pages
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
    if prog.packed_size:
        prog_pack.bpf_prog_pack_free(k, prog.header, prog.packed_size)
    elif prog.jited:
        module_memfree(k, prog.header)      # bpf_jit_binary_free()
    vfree(k, prog.fp)


def bpf_prog_put(k, prog, delay=PROG_FREE_DELAY):
    """bpf_prog_put(): the last reference: free after an RCU grace period + workqueue."""
    queue_work(k, lambda: __bpf_prog_free(k, prog), delay, "bpf_prog_free_deferred")
