"""ftrace trampolines (arch/x86/kernel/ftrace.c, v5.11): one module_alloc() page each.

create_trampoline() copies the ftrace_caller template (well under a page), sets
VM_FLUSH_RESET_PERMS, makes it RO (skipped while the system is still booting,
fixed up later by set_ftrace_ops_ro()) and X.
"""

from ...mm import execmem
from ...mm.vmalloc import set_vm_flush_reset_perms
from . import set_memory as cpa
from .module import module_alloc

TRAMPOLINE_BYTES = 400   # template + ret + ops pointer: < 1 page (UNVERIFIED exact size)


def create_trampoline(k, booting=False):
    """create_trampoline() → alloc_tramp() = module_alloc(): RO (unless booting) + X."""
    caller = "arch_ftrace_update_trampoline"
    if "execmem_rox" in k.features:   # later design: from the ROX cache, no CPA
        return execmem.execmem_alloc(k, TRAMPOLINE_BYTES, caller)
    if booting:
        caller += " (booting)"
        k.wx_exempt.add(caller)   # RW+X until set_ftrace_ops_ro(), as in v5.11
    tramp = module_alloc(k, TRAMPOLINE_BYTES, caller=caller)
    if tramp is None:
        return None
    set_vm_flush_reset_perms(k, tramp)
    if not booting:
        cpa.set_memory_ro(k, tramp, 1)
    cpa.set_memory_x(k, tramp, 1)
    k.stat["ftrace_trampolines"] += 1
    return tramp


def tramp_free(k, tramp):
    """tramp_free() → module_memfree()."""
    execmem.free_exec(k, tramp, TRAMPOLINE_BYTES)
