"""BPF trampolines and dispatchers (kernel/bpf/trampoline.c, v5.11).

``bpf_jit_alloc_exec_page`` takes one bpf_jit_alloc_exec() page (module_alloc()
in v5.11), sets VM_FLUSH_RESET_PERMS and makes it executable only: it stays
writable (RW+X) so attach/detach can rewrite it.  That is a real v5.11 W^X
exception, so the model exempts these pages from its W^X invariant by caller
name.  Nothing touches the direct map until the page is freed.  Where a trampoline
comes from is the running design's (``k.design.bpf_trampoline_alloc``): this page in
v5.11 and 5.18, a slice of a bpf_prog_pack from 6.8 (gpalloc.designs.linux_6_18).
"""

from ...arch.x86 import set_memory as cpa
from ...mm.execmem import EXECMEM_BPF, execmem_alloc, execmem_free
from ...mm.page import PAGE_SIZE
from ...mm.vmalloc import set_vm_flush_reset_perms

CALLER = "bpf_jit_alloc_exec_page"


def bpf_jit_alloc_exec_page(k):
    """bpf_jit_alloc_exec_page(): one RW+X page in module space."""
    image = execmem_alloc(k, EXECMEM_BPF, PAGE_SIZE, CALLER)
    if image is None:
        return image
    k.wx_exempt.add(CALLER)
    set_vm_flush_reset_perms(k, image)
    cpa.set_memory_x(k, image, 1)
    k.stat["bpf_trampolines"] += 1
    return image


def bpf_trampoline_free(k, image):
    """bpf_jit_free_exec() of a trampoline page."""
    execmem_free(k, EXECMEM_BPF, image, PAGE_SIZE)
