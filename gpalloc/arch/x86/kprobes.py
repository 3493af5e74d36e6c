"""kprobe instruction pages (arch/x86/kernel/kprobes/core.c, v5.11).

alloc_insn_page(): one module_alloc() page, VM_FLUSH_RESET_PERMS, RO first and
then X (no W+X window).  The generic slot cache carves many probes' slots out of
one page and frees it with free_insn_page() once all are garbage collected.
"""

from ...mm import execmem
from ...mm.page import PAGE_SIZE
from ...mm.vmalloc import set_vm_flush_reset_perms
from . import set_memory as cpa
from .module import module_alloc


def alloc_insn_page(k):
    """alloc_insn_page(): RO + X page for kprobe instruction slots."""
    if "execmem_rox" in k.features:   # later design: from the ROX cache, no CPA
        return execmem.execmem_alloc(k, PAGE_SIZE, "alloc_insn_page")
    page = module_alloc(k, PAGE_SIZE, caller="alloc_insn_page")
    if page is None:
        return None
    set_vm_flush_reset_perms(k, page)
    cpa.set_memory_ro(k, page, 1)
    cpa.set_memory_x(k, page, 1)
    k.stat["kprobe_insn_pages"] += 1
    return page


def free_insn_page(k, page):
    """free_insn_page() → module_memfree()."""
    execmem.free_exec(k, page, PAGE_SIZE)
