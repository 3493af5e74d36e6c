"""execmem_alloc(type, size): the one seam every executable-memory caller goes through.

Upstream introduced it in 6.10 (mm/execmem.c, include/linux/execmem.h) so that
module text, BPF, ftrace and kprobes stop calling module_alloc() directly and an
architecture can put each *type* where it wants.  The model uses the same seam
for every kernel it runs: in v5.11 (and the RFC) each type is simply
module_alloc(); later designs (gpalloc.designs) decide differently.  Callers ask
:func:`execmem_is_rox` whether memory arrives already read-only+executable and
skip their own set_memory_ro/x then, as upstream callers do.

BPF trampolines and dispatchers allocate through bpf_jit_alloc_exec(), i.e.
EXECMEM_BPF, as upstream does.
"""

from enum import IntEnum


class execmem_type(IntEnum):
    """enum execmem_type (include/linux/execmem.h, 6.10+)."""

    EXECMEM_DEFAULT = 0
    EXECMEM_MODULE_TEXT = 0
    EXECMEM_KPROBES = 1
    EXECMEM_FTRACE = 2
    EXECMEM_BPF = 3
    EXECMEM_MODULE_DATA = 4


EXECMEM_DEFAULT = execmem_type.EXECMEM_DEFAULT
EXECMEM_MODULE_TEXT = execmem_type.EXECMEM_MODULE_TEXT
EXECMEM_KPROBES = execmem_type.EXECMEM_KPROBES
EXECMEM_FTRACE = execmem_type.EXECMEM_FTRACE
EXECMEM_BPF = execmem_type.EXECMEM_BPF
EXECMEM_MODULE_DATA = execmem_type.EXECMEM_MODULE_DATA


def execmem_alloc(k, type, size, caller):
    """execmem_alloc(type, size): memory for code of this type, from the running design."""
    return k.design.execmem_alloc(k, type, size, caller)


def execmem_free(k, type, addr, size):
    """execmem_free(addr): give executable memory back the way the design got it."""
    k.design.execmem_free(k, type, addr, size)


def execmem_is_rox(k, type):
    """execmem_is_rox(type): does memory of this type arrive read-only and executable?"""
    return k.design.execmem_is_rox(type)
