"""Linux 6.18 (x86-64), the kernel every machine of this project runs — design ``6.18``.

Sources: docs/reference/kernel-6.18-bpf-jit.md (a 6.18.35 tree, this VM's /proc and
config, patch mails).  What this design changes from v5.11, by mechanism:

* **BPF JIT images** (kernel/bpf/core.c): ``bpf_prog_pack``s of
  SZ_2M × num_possible_nodes() (2 MiB here) made of ordinary 4 KiB pages, carved in
  64-byte chunks first-fit (gpalloc.designs.prog_pack).  A pack is
  ``bpf_jit_alloc_exec()`` = execmem_alloc(EXECMEM_BPF): a __vmalloc_node_range() in
  module space, PAGE_KERNEL, VM_FLUSH_RESET_PERMS, *no* VM_ALLOW_HUGE_VMAP and never the
  ROX cache on x86; then one ``set_memory_rox(pack, 512)``.  CPA walks the pack's 4K
  PTEs one page at a time, so each page's direct-map alias goes read-only (never
  executable, 6.2+) on its own: the first page in a 1 GiB entry splits it, the first
  page in each 2 MiB region splits that, even for an aligned contiguous pack; nothing
  collapses back on the direct map.  Images above a pack get their own area, locked
  the same way.  The image takes round_up(round_up(jited, 4) + 8 + 16, 64) bytes; the
  struct bpf_prog has a 96-byte header (32-byte digest).
* **Freeing**: a pack goes when its last chunk does: vfree() → VM_FLUSH_RESET_PERMS
  resets each page's alias (already 4K: no new split) → each page to the pcp list of
  its pageblock's type.
* **vmalloc's page array** (vm_area_alloc_pages()): order-0 pages from
  ``alloc_pages_bulk`` in requests of at most 100; a short request ends bulk mode and
  the rest come one at a time from the ordinary allocator.  memcg-accounted areas
  (the struct bpf_prog, GFP_KERNEL_ACCOUNT) always take the single-page path.
* **Page allocator** (gpalloc.mm.page_alloc_6_18): 6.18's per-order pcp lists with
  zone_highsize() sizing and refill scaling, and __rmqueue()'s NORMAL → CLAIM → STEAL.
* **CPA**: cpa_process_alias() leaves the direct map's NX bits alone (6.2+).

* **Executable memory of other types** (mm/execmem.c, x86 execmem_arch_setup()): with
  CONFIG_MODULES (STRICT_MODULE_RWX, as distribution kernels are built) module text,
  ftrace trampolines and kprobe pages come from the ROX cache (gpalloc.mm.execmem),
  6.17 rules: ftrace and module text are written through execmem_alloc_rw(), a failed
  2 MiB populate retries with the exact size, and a free makes the piece RW, fills it
  and restores ROX.  Module data and BPF are ordinary execmem_vmalloc() areas.  The
  measured VM is built without modules (so without ARCH_HAS_EXECMEM_ROX); the BPF path,
  the only one its experiments use, is the same either way.
* **BPF trampolines** (6.8+): a page-sized slice of a pack (arch_alloc_bpf_trampoline()),
  after arch_bpf_trampoline_size() allocated and freed one execmem page as scratch —
  that free resets (and so splits) the scratch page's direct-map region.

Simplified, and said so in the notebooks: the pack's descriptor, its RW staging buffer
and the slab objects of a program are not pages of this design's own (the
socket-filter workload allocates what it needs, gpalloc.net.filter).
"""

from ..arch.x86 import set_memory as cpa
from ..arch.x86.module import MODULE_ALIGN, MODULES_END, MODULES_VADDR, get_module_load_offset
from ..arch.x86.pgtable_types import _PAGE_NX, PAGE_KERNEL
from ..mm import execmem as _execmem
from ..mm import page_alloc_6_18 as pa618
from ..mm.execmem import EXECMEM_BPF, EXECMEM_FTRACE, EXECMEM_KPROBES, EXECMEM_MODULE_TEXT
from ..mm.gfp import __GFP_NOWARN, GFP_KERNEL
from ..mm.mmzone import NUMA_NO_NODE, zone_batchsize
from ..mm.page import OWNER_VMALLOC, PAGE_SIZE
from ..mm.page_alloc import alloc_pages, alloc_pages_node
from ..mm.vmalloc import (
    VM_ALLOC,
    VM_FLUSH_RESET_PERMS,
    __get_vm_area_node,
    __vmalloc_node_range,
    set_vm_flush_reset_perms,
)
from .prog_pack import (
    BPF_PROG_CHUNK_SIZE,
    PACK_CALLER,
    Linux518,
    bpf_prog_pack,
    bpf_prog_pack_alloc,
    bpf_prog_pack_free,
    check_packs,
    pack_pools,
)

SZ_2M = 2 << 20
_get_vm_area_node = __get_vm_area_node   # module level: a "__" name in a class body is mangled
EXECMEM_CALLER = "execmem_vmalloc"


def execmem_vmalloc(k, size, caller):
    """execmem_vmalloc(): module space, PAGE_KERNEL, VM_FLUSH_RESET_PERMS, 4K pages."""
    return __vmalloc_node_range(k, size, MODULE_ALIGN, MODULES_VADDR + get_module_load_offset(k),
                                MODULES_END, GFP_KERNEL | __GFP_NOWARN, PAGE_KERNEL,
                                VM_FLUSH_RESET_PERMS, NUMA_NO_NODE, caller)


class Linux618(Linux518):
    """Linux 6.18 as configured on this project's Firecracker VMs (see the module docstring)."""

    name = "6.18"
    summary = ("Linux 6.18: 2 MiB bpf_prog_packs of 4K pages made ROX page by page, "
               "bulk vmalloc, per-order pcp, claim/steal")
    bpf_prog_struct_size = 96
    stat_keys = ("bpf_prog_packs", "pgalloc_claim", "pgalloc_steal")
    #: the types execmem_arch_setup() gives EXECMEM_ROX_CACHE (6.17+: ftrace and kprobes too)
    execmem_rox_types = frozenset({EXECMEM_MODULE_TEXT, EXECMEM_FTRACE, EXECMEM_KPROBES})
    execmem_populate_exact = True   # 6.17: a failed 2 MiB populate retries the exact size
    execmem_free_rw = True          # 6.17: execmem_cache_free() goes RW, fills, back to ROX

    def __init__(self, **options):
        super().__init__(**options)
        self.rox_cache = _execmem.execmem_cache()

    def init(self, k):
        """Boot: 6.18's per-CPU lists on every zone (zone_set_pageset_high_and_batch())."""
        self.pack_size = SZ_2M * k.nr_nodes   # num_possible_nodes(): every node is possible
        cpus = range(k.nr_cpus)
        for z in k.zones:
            batch = max(1, zone_batchsize(z.managed_pages))
            pa618.zone_set_pageset_high_and_batch(z, batch, k.cpus_per_node, cpus)

    # ------------------------------------------------------------ page allocator
    def rmqueue(self, k, zone, order, gfp, alloc_flags, mt):
        """rmqueue() (6.18): per-order pcp lists, claim/steal."""
        return pa618.rmqueue(k, zone, order, gfp, alloc_flags, mt)

    def drain_pages_zone(self, k, zone, cpu):
        """drain_pages_zone() (6.18): every per-order list of one CPU."""
        pa618.drain_pages_zone(k, zone, cpu)

    def free_frozen_pages(self, k, page, order):
        """__free_frozen_pages() (6.18)."""
        pa618.free_frozen_pages(k, page, order)

    def vm_area_alloc_pages(self, k, area, node, gfp, nr_pages, vm_flags):
        """vm_area_alloc_pages() (6.18): bulk requests of ≤ 100, then one page at a time."""
        nid = k.numa_node_id() if node == NUMA_NO_NODE else node
        pages = []
        while len(pages) < nr_pages:
            want = min(pa618.VM_BULK_REQUEST_MAX, nr_pages - len(pages))
            got = pa618.alloc_pages_bulk(k, gfp, nid, want)
            pages += got
            if len(got) != want:
                break
        while len(pages) < nr_pages:
            page = alloc_pages(k, gfp, 0) if node == NUMA_NO_NODE else \
                alloc_pages_node(k, node, gfp, 0)
            if page is None:
                break
            pages.append(page)
        return pages

    # ------------------------------------------------------------ executable memory
    def execmem_alloc(self, k, type, size, caller):
        """execmem_alloc(): ROX-cached types from the cache, the rest execmem_vmalloc()."""
        if type in self.execmem_rox_types:
            return _execmem.execmem_cache_alloc(k, size)
        return execmem_vmalloc(k, size, caller)

    def execmem_free(self, k, type, addr, size):
        """execmem_free(): back to the ROX cache, or vfree() (VM_FLUSH_RESET_PERMS)."""
        _execmem.execmem_cache_free_exec(k, type, addr, size)

    def execmem_is_rox(self, type):
        """execmem_is_rox(): the ROX-cached types."""
        return type in self.execmem_rox_types

    def bpf_trampoline_alloc(self, k):
        """arch_bpf_trampoline_size()'s scratch page, then arch_alloc_bpf_trampoline()."""
        scratch = _execmem.execmem_alloc(k, EXECMEM_BPF, PAGE_SIZE, "arch_bpf_trampoline_size")
        if scratch is not None:
            _execmem.execmem_free(k, EXECMEM_BPF, scratch, PAGE_SIZE)
        image = bpf_prog_pack_alloc(k, PAGE_SIZE)
        if image is not None:
            k.stat["bpf_trampolines"] += 1
        return image

    def bpf_trampoline_free(self, k, image):
        """arch_free_bpf_trampoline(): the slice goes back to its pack."""
        bpf_prog_pack_free(k, image, PAGE_SIZE)

    def pack_lock_ro(self, k, ptr, pages):
        """alloc_new_pack(): traps (no direct-map effect), set_vm_flush_reset_perms, ROX."""
        set_vm_flush_reset_perms(k, ptr)
        cpa.set_memory_rox(k, ptr, pages)

    def adopt_captured_packs(self, k, packs, free_chunks):
        """The captured packs as this kernel made them: module-space areas, ROX, chunks used."""
        chunks = self.pack_size // BPF_PROG_CHUNK_SIZE
        for i, pfns in enumerate(packs):
            area = _get_vm_area_node(k, self.pack_size, MODULE_ALIGN,
                                     VM_ALLOC | VM_FLUSH_RESET_PERMS,
                                     MODULES_VADDR + get_module_load_offset(k), MODULES_END,
                                     NUMA_NO_NODE, GFP_KERNEL, PACK_CALLER)
            area.pages = [k.pages.pfn_to_page(pfn) for pfn in pfns]
            for page in area.pages:
                page._refcount, page.owner, page.order = 1, OWNER_VMALLOC, 0
            area.nr_pages, area.prot = len(pfns), [int(PAGE_KERNEL)] * len(pfns)
            k.vmap.nr_vmalloc_pages += len(pfns)
            cpa.set_memory_rox(k, area.addr, len(pfns))
            pack = bpf_prog_pack(area.addr, chunks)
            pack.used = chunks - free_chunks if i == 0 else chunks
            pack.bitmap[:pack.used] = b"\x01" * pack.used
            self.packs.append(pack)
        return True

    def cpa_alias_masks(self, set_, clr):
        """6.2+ cpa_process_alias(): the direct map stays NX whatever the request."""
        return set_ & ~_PAGE_NX, clr & ~_PAGE_NX

    def pools(self, k):
        """The packs, then the ROX cache's chunks."""
        return pack_pools(k) + _execmem.execmem_cache_pools(k)

    def check(self, k):
        """Packs and ROX cache are consistent."""
        check_packs(k)
        _execmem.check_execmem_cache(k)
