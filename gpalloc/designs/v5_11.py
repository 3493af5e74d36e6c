"""Plain Linux v5.11 (x86-64): the kernel the RFC was written against, and every design's base.

vmalloc takes one order-0 page at a time (alloc_page, or alloc_pages_node for a
node); every executable-memory caller uses module_alloc() and then changes the
permissions itself (set_vm_flush_reset_perms, set_memory_ro, set_memory_x); the
x86 JIT gives each program its own module_alloc() image
(bpf_jit_binary_alloc + bpf_jit_binary_lock_ro); CPA never merges anything back.
"""

from ..arch.x86.module import module_alloc, module_memfree
from ..kernel.bpf.core import bpf_jit_binary_alloc, bpf_jit_binary_free, bpf_jit_binary_lock_ro
from ..kernel.bpf.trampoline import bpf_jit_alloc_exec_page, bpf_trampoline_free
from ..mm.mmzone import NUMA_NO_NODE
from ..mm.page import OWNER_KERNEL
from ..mm.page_alloc import (
    __free_pages,
    __free_pages_ok,
    alloc_order0_run,
    alloc_page,
    alloc_pages_node,
    drain_pages_zone,
    free_order0_run,
    free_unref_page,
    rmqueue,
)
from .base import Design

# module level: a "__" name inside a class body is mangled
_free_pages, _free_pages_ok = __free_pages, __free_pages_ok


class Linux511(Design):
    """v5.11 as released (no RFC patch, no later mechanism)."""

    name = "5.11"
    summary = "Linux v5.11 (x86-64): one page at a time, module_alloc, per-program JIT images"

    def __init__(self, **options):
        super().__init__(**options)
        # Fast path (issue 13): where a design keeps v5.11's rmqueue(), the allocator calls
        # mm/page_alloc.rmqueue itself (k.design.rmqueue(k, ...)), not this method's wrapper
        # of it, which stays the reading path (tests/test_fast_paths.py).
        if type(self).rmqueue is Linux511.rmqueue:
            self.rmqueue = rmqueue
            # and vmalloc's page loops take runs of pages at once where every page is a
            # plain order-0 one (mm/page_alloc.alloc_order0_run / free_order0_run)
            if type(self).free_frozen_pages is Linux511.free_frozen_pages and \
                    type(self).vm_area_alloc_pages is Linux511.vm_area_alloc_pages and \
                    type(self).vm_area_free_pages is Design.vm_area_free_pages:
                self.vm_area_alloc_pages = self._vm_area_alloc_order0_run
                self.vm_area_free_pages = self._vm_area_free_order0_run

    def rmqueue(self, k, zone, order, gfp, alloc_flags, mt):
        """rmqueue(): order 0 from this CPU's pcp list, higher orders from the buddy."""
        return rmqueue(k, zone, order, gfp, alloc_flags, mt)

    def drain_pages_zone(self, k, zone, cpu):
        """drain_pages_zone(): one CPU's pcp lists of a zone back to the buddy."""
        drain_pages_zone(k, zone, cpu)

    def free_frozen_pages(self, k, page, order):
        """__free_pages()'s last step: order 0 to the pcp list, higher orders to the buddy."""
        if order == 0:
            free_unref_page(k, page)
        else:
            _free_pages_ok(k, page, order)

    def vm_area_alloc_pages(self, k, area, node, gfp, nr_pages, vm_flags):
        """__vmalloc_area_node()'s loop: one vm_alloc_page() per page; stops at the first NULL."""
        pages = []
        vm_alloc_page, append = self.vm_alloc_page, pages.append
        for _ in range(nr_pages):
            page = vm_alloc_page(k, node, vm_flags, gfp)
            if page is None:
                break
            append(page)
        return pages

    def _vm_area_alloc_order0_run(self, k, area, node, gfp, nr_pages, vm_flags):
        """vm_area_alloc_pages(), fast: the same pages as its loop, a pcp run at a time."""
        if self.vm_pages_are_order0(k, vm_flags):
            return alloc_order0_run(k, node, gfp, nr_pages)
        return Linux511.vm_area_alloc_pages(self, k, area, node, gfp, nr_pages, vm_flags)

    def _vm_area_free_order0_run(self, k, pages, vm_flags):
        """vm_area_free_pages(), fast: __vunmap()'s loop with free_unref_page() inline."""
        if self.vm_pages_are_order0(k, vm_flags):
            free_order0_run(k, pages, OWNER_KERNEL)
        else:
            Design.vm_area_free_pages(self, k, pages, vm_flags)

    def vm_pages_are_order0(self, k, vm_flags):
        """Does vm_alloc_page()/vm_free_page() reduce to alloc_page()/__free_pages(page, 0)
        for an area with these flags?  (A subclass that overrides either hook says when.)"""
        return type(self).vm_alloc_page is Linux511.vm_alloc_page and \
            type(self).vm_free_page is Linux511.vm_free_page

    def vm_alloc_page(self, k, node, vm_flags, gfp):
        """__vmalloc_area_node()'s per-page step: alloc_page(), or alloc_pages_node()."""
        if node == NUMA_NO_NODE:
            return alloc_page(k, gfp)
        return alloc_pages_node(k, node, gfp, 0)

    def vm_free_page(self, k, page, vm_flags):
        """__vunmap()'s per-page step: __free_pages(page, 0)."""
        page.owner = OWNER_KERNEL
        _free_pages(k, page, 0)

    def execmem_alloc(self, k, type, size, caller):
        """Every type is module_alloc() in v5.11 (bpf_jit_alloc_exec, alloc_tramp, ...)."""
        return module_alloc(k, size, caller)

    def execmem_free(self, k, type, addr, size):
        """module_memfree(): vfree()."""
        module_memfree(k, addr)

    def execmem_is_rox(self, type):
        """Nothing arrives read-only: callers make it RO+X themselves."""
        return False

    def bpf_jit_alloc(self, k, prog, jited_bytes):
        """bpf_int_jit_compile(): bpf_jit_binary_alloc(), emit, bpf_jit_binary_lock_ro()."""
        hdr, pages = bpf_jit_binary_alloc(k, jited_bytes)
        if not hdr:
            return   # the program runs in the interpreter (not with JIT_ALWAYS_ON)
        bpf_jit_binary_lock_ro(k, hdr, pages)
        prog.jited, prog.header, prog.header_pages = True, hdr, pages

    def bpf_jit_free(self, k, prog):
        """bpf_jit_free(): bpf_jit_binary_free() of the image."""
        bpf_jit_binary_free(k, prog.header, prog.header_pages)

    def bpf_trampoline_alloc(self, k):
        """A BPF trampoline/dispatcher image: bpf_jit_alloc_exec_page() (RW+X)."""
        return bpf_jit_alloc_exec_page(k)

    def bpf_trampoline_free(self, k, image):
        """bpf_jit_free_exec() of the trampoline page."""
        bpf_trampoline_free(k, image)
