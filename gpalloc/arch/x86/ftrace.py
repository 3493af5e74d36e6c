"""ftrace trampolines (arch/x86/kernel/ftrace.c, v5.11): one module_alloc() page each.

create_trampoline() copies the ftrace_caller template (well under a page), sets
VM_FLUSH_RESET_PERMS, makes it RO (skipped while the system is still booting,
fixed up later by set_ftrace_ops_ro()) and X.  alloc_tramp() is
execmem_alloc(EXECMEM_FTRACE) from 6.10.  Where ftrace memory comes from the ROX cache
(execmem_is_rox; x86 6.17+) alloc_tramp() is execmem_alloc_rw() — the piece is made
RW (NX, then RW on it and its direct-map alias) so the template can be copied in —
and create_trampoline() ends with set_memory_rox().
"""

from ...mm.execmem import (
    EXECMEM_FTRACE,
    execmem_alloc,
    execmem_alloc_rw,
    execmem_free,
    execmem_is_rox,
)
from ...mm.vmalloc import set_vm_flush_reset_perms
from . import set_memory as cpa

TRAMPOLINE_BYTES = 400   # template + ret + ops pointer: < 1 page (UNVERIFIED exact size)
CALLER = "arch_ftrace_update_trampoline"


def create_trampoline(k, booting=False):
    """create_trampoline() → alloc_tramp(): RO (unless booting) + X."""
    if execmem_is_rox(k, EXECMEM_FTRACE):
        tramp = execmem_alloc_rw(k, EXECMEM_FTRACE, TRAMPOLINE_BYTES, CALLER)
        if tramp is not None:
            cpa.set_memory_rox(k, tramp, 1)
            k.stat["ftrace_trampolines"] += 1
        return tramp
    caller = CALLER
    if booting:
        caller += " (booting)"
        k.wx_exempt.add(caller)   # RW+X until set_ftrace_ops_ro(), as in v5.11
    tramp = execmem_alloc(k, EXECMEM_FTRACE, TRAMPOLINE_BYTES, caller)
    if tramp is None:
        return None
    set_vm_flush_reset_perms(k, tramp)
    if not booting:
        cpa.set_memory_ro(k, tramp, 1)
    cpa.set_memory_x(k, tramp, 1)
    k.stat["ftrace_trampolines"] += 1
    return tramp


def tramp_free(k, tramp):
    """tramp_free() → module_memfree() (execmem_free() from 6.10)."""
    execmem_free(k, EXECMEM_FTRACE, tramp, TRAMPOLINE_BYTES)
