"""kprobe instruction pages (arch/x86/kernel/kprobes/core.c, v5.11).

alloc_insn_page(): one module_alloc() page, VM_FLUSH_RESET_PERMS, RO first and
then X (no W+X window).  The generic slot cache carves many probes' slots out of
one page and frees it with free_insn_page() once all are garbage collected.
From 6.10 the page is execmem_alloc(EXECMEM_KPROBES); where that arrives
read-only and executable (execmem_is_rox) no permission change follows.
"""

from ...mm.execmem import EXECMEM_KPROBES, execmem_alloc, execmem_free, execmem_is_rox
from ...mm.page import PAGE_SIZE
from ...mm.vmalloc import set_vm_flush_reset_perms
from . import set_memory as cpa

CALLER = "alloc_insn_page"


def alloc_insn_page(k):
    """alloc_insn_page(): RO + X page for kprobe instruction slots."""
    page = execmem_alloc(k, EXECMEM_KPROBES, PAGE_SIZE, CALLER)
    if page is None or execmem_is_rox(k, EXECMEM_KPROBES):
        return page
    set_vm_flush_reset_perms(k, page)
    cpa.set_memory_ro(k, page, 1)
    cpa.set_memory_x(k, page, 1)
    k.stat["kprobe_insn_pages"] += 1
    return page


def free_insn_page(k, page):
    """free_insn_page() → module_memfree() (execmem_free() from 6.10)."""
    execmem_free(k, EXECMEM_KPROBES, page, PAGE_SIZE)
