"""gpalloc: a runnable model of Linux v5.11's direct map, vmalloc and page allocator,
and of Rick Edgecombe's 2021 RFC "Group pages on the direct map for permissioned vmallocs".

    >>> from gpalloc import Machine
    >>> m = Machine(nodes=2, node_mem="4G", patches=(1, 2, 3))
"""

from ._version import __version__
from .arch.x86.pgtable_types import PAGE_KERNEL, PAGE_KERNEL_RO, PAGE_KERNEL_ROX
from .bug import InvariantError, KernelBUG, KernelWarning
from .machine import NUMA_NO_NODE, KernelAddress, Machine
from .mm.gfp import (
    GFP_ATOMIC,
    GFP_GROUPED,
    GFP_KERNEL,
    GFP_KERNEL_ACCOUNT,
    GFP_NOFS,
    GFP_NOIO,
    GFP_NOWAIT,
    gfp_t,
    parse_gfp,
)
from .mm.vmalloc import VM_FLUSH_RESET_PERMS, VM_GROUP_PAGES

__all__ = [
    "GFP_ATOMIC", "GFP_GROUPED", "GFP_KERNEL", "GFP_KERNEL_ACCOUNT", "GFP_NOFS", "GFP_NOIO",
    "GFP_NOWAIT", "InvariantError", "KernelAddress", "KernelBUG", "KernelWarning", "Machine",
    "NUMA_NO_NODE", "PAGE_KERNEL",
    "PAGE_KERNEL_RO", "PAGE_KERNEL_ROX", "VM_FLUSH_RESET_PERMS", "VM_GROUP_PAGES", "gfp_t",
    "parse_gfp", "__version__",
]
