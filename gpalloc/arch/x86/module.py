"""x86-64 module space and module_alloc() (arch/x86/kernel/module.c, v5.11; RFC 3/3).

With RFC patch 3 applied, module_alloc() passes VM_GROUP_PAGES
(``k.design.module_vm_flags``), so modules, BPF JIT images, ftrace trampolines
and kprobe pages come from the grouped cache.
KASAN shadows are not modelled (kasan_module_alloc is a no-op here).
"""

from ...mm.gfp import GFP_KERNEL
from ...mm.mmzone import NUMA_NO_NODE
from ...mm.page import PAGE_SIZE
from ...mm.vmalloc import __vmalloc_node_range, vfree
from .pgtable_types import PAGE_KERNEL

__START_KERNEL_map = 0xFFFFFFFF80000000
KERNEL_IMAGE_SIZE = 1 << 30             # with CONFIG_RANDOMIZE_BASE
MODULES_VADDR = __START_KERNEL_map + KERNEL_IMAGE_SIZE
MODULES_END = 0xFFFFFFFFFF000000
MODULES_LEN = MODULES_END - MODULES_VADDR
MODULE_ALIGN = PAGE_SIZE


def get_module_load_offset(k):
    """get_module_load_offset(): with KASLR, 1..1024 random pages chosen once per boot."""
    if k.module_load_offset is None:
        k.module_load_offset = ((k.rng.randrange(1024) + 1) * PAGE_SIZE) if k.kaslr else 0
    return k.module_load_offset


def module_alloc(k, size, caller="module_alloc"):
    """module_alloc(): PAGE_KERNEL (RW+NX) in [MODULES_VADDR + offset, MODULES_END)."""
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError(f"size: must be a non-negative number of bytes, got {size!r}")
    if (size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1) > MODULES_LEN:
        return None
    return __vmalloc_node_range(k, size, MODULE_ALIGN, MODULES_VADDR + get_module_load_offset(k),
                                MODULES_END, GFP_KERNEL, PAGE_KERNEL, k.design.module_vm_flags,
                                NUMA_NO_NODE, caller)


def module_memfree(k, addr):
    """module_memfree() (kernel/module.c weak default): vfree."""
    vfree(k, addr)
