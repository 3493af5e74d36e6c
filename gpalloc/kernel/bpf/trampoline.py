"""BPF trampolines and dispatchers (kernel/bpf/trampoline.c, v5.11).

``bpf_jit_alloc_exec_page`` takes one module_alloc() page, sets
VM_FLUSH_RESET_PERMS and makes it executable only: it stays writable (RW+X) so
attach/detach can rewrite it.  That is a real v5.11 W^X exception, so the model
exempts these pages from its W^X invariant by caller name.  Nothing touches the
direct map until the page is freed.
"""

from ...arch.x86 import set_memory as cpa
from ...arch.x86.module import module_alloc
from ...mm import execmem
from ...mm.page import PAGE_SIZE
from ...mm.vmalloc import set_vm_flush_reset_perms

CALLER = "bpf_jit_alloc_exec_page"


def bpf_jit_alloc_exec_page(k):
    """bpf_jit_alloc_exec_page(): one RW+X page in module space."""
    if "execmem_rox" in k.features:   # later design: from the ROX cache (text_poke'd)
        return execmem.execmem_alloc(k, PAGE_SIZE, CALLER)
    k.wx_exempt.add(CALLER)
    image = module_alloc(k, PAGE_SIZE, caller=CALLER)
    if image is None:
        return None
    set_vm_flush_reset_perms(k, image)
    cpa.set_memory_x(k, image, 1)
    k.stat["bpf_trampolines"] += 1
    return image


def bpf_trampoline_free(k, image):
    """bpf_jit_free_exec() of a trampoline page."""
    execmem.free_exec(k, image, PAGE_SIZE)
