"""The interface every kernel design implements: the seams the kernel itself grew.

A *design* is one way a kernel hands out and protects executable memory: plain
v5.11, the RFC, bpf_prog_pack, the execmem ROX cache, CPA merge-back, ...  The
model's mechanisms (buddy allocator, vmalloc, CPA, callers) are shared; each
design plugs into them only here, through seams that mirror the ones upstream
(or the RFC) introduced:

* ``vm_alloc_page`` / ``vm_free_page`` — where vmalloc gets and frees each page
  (RFC 2/3's hooks in mm/vmalloc.c), and ``vm_area_alloc_pages`` — how vmalloc fills an
  area's page array (v5.11: one vm_alloc_page() at a time; 5.13+: the bulk allocator),
  ``vm_area_free_pages`` — __vunmap()'s loop over vm_free_page();
* ``rmqueue`` / ``free_frozen_pages`` — the page allocator's own fast paths (v5.11's
  per-migratetype pcp lists and __rmqueue_fallback; 6.18's per-order lists and
  claim/steal), called from get_page_from_freelist() and __free_pages();
* ``execmem_alloc(type, size)`` / ``execmem_free`` / ``execmem_is_rox`` — where
  executable memory of each type comes from (mm/execmem.c, 6.10);
* ``bpf_jit_alloc`` / ``bpf_jit_free`` — how the x86 JIT gets its image
  (bpf_jit_binary_alloc in v5.11, bpf_jit_binary_pack_alloc from 5.18);
* ``cpa_pte_prot`` / ``cpa_after_change`` / ``cpa_alias_masks`` — what CPA does
  when it changes a 4K entry and its direct-map alias (merge-back, later kernels'
  "the direct map is never executable");
* ``init``, ``stats``, ``pools`` and ``check`` — boot, counters, a view of the
  design's own memory pool, and its invariants for Machine.check() (plus the
  views of RFC 2/3's cache the course uses: ``grouped_blocks``,
  ``grouped_cache_pfns``, ``poison_check``).

A design instance holds its own state and belongs to one machine (``k.design``).
Subclass :class:`gpalloc.designs.v5_11.Linux511` and override what differs;
register the class in ``gpalloc/designs/__init__.py`` (one line).
"""

import abc


class Design(abc.ABC):
    """One kernel design: its name, options, state and the seams above."""

    #: registry name, e.g. "5.11" (what ``--kernel`` and ``Machine(design=...)`` take)
    name = None
    #: one line: what the design is and where it comes from
    summary = ""
    #: options this design takes from Machine(...), name → default
    OPTIONS = {}
    #: kernel functions this design adds to v5.11 (e.g. "list_lru_get_mru", RFC 1/3)
    symbols = frozenset()
    #: vm_flags module_alloc() adds (RFC 3/3: VM_GROUP_PAGES)
    module_vm_flags = 0
    #: counters (k.stat keys) this design reports in Machine.stats() even when zero
    stat_keys = ()
    #: sizeof(struct bpf_prog) in this kernel, bytes before the instructions (v5.11: 72)
    bpf_prog_struct_size = 72

    def __init__(self, **options):
        for key, default in self.OPTIONS.items():
            setattr(self, key, options.get(key, default))

    def __repr__(self):
        opts = ", ".join(f"{key}={getattr(self, key)!r}" for key in self.OPTIONS)
        return f"<design {self.name}{' ' + opts if opts else ''}>"

    def provides(self, symbol):
        """Does this kernel have the function ``symbol`` (kallsyms, in miniature)?"""
        return symbol in self.symbols

    def init(self, k):
        """Boot-time set-up, after zones, the direct map and vmalloc exist (an initcall)."""
        return None   # v5.11 has nothing to set up

    # ------------------------------------------------------------ vmalloc
    @abc.abstractmethod
    def vm_alloc_page(self, k, node, vm_flags, gfp):
        """vm_alloc_page(): one page for a vmalloc area, or None."""

    @abc.abstractmethod
    def vm_free_page(self, k, page, vm_flags):
        """vm_free_page(): give one page of a freed vmalloc area back."""

    def vm_area_free_pages(self, k, pages, vm_flags):
        """__vunmap()'s loop: vm_free_page() for each page of the area, in order."""
        for page in pages:
            self.vm_free_page(k, page, vm_flags)

    # ------------------------------------------------------------ executable memory
    @abc.abstractmethod
    def execmem_alloc(self, k, type, size, caller):
        """execmem_alloc(type, size): an address, or None."""

    @abc.abstractmethod
    def execmem_free(self, k, type, addr, size):
        """execmem_free(): undo execmem_alloc()."""

    @abc.abstractmethod
    def execmem_is_rox(self, type):
        """execmem_is_rox(type): does this type arrive read-only + executable?"""

    @abc.abstractmethod
    def bpf_jit_alloc(self, k, prog, jited_bytes):
        """Give a loading BPF program its JIT image (fills prog.header etc.)."""

    @abc.abstractmethod
    def bpf_jit_free(self, k, prog):
        """bpf_jit_free(): give a freed program's JIT image back."""

    # ------------------------------------------------------------ CPA
    def cpa_pte_prot(self, prot):
        """The prot CPA writes into a 4K direct-map entry (v5.11: as computed)."""
        return prot

    def cpa_after_change(self, k, region):
        """Called after CPA changed a 4K entry of this 2 MiB region (v5.11: nothing)."""
        return None

    def cpa_alias_masks(self, set_, clr):
        """The (set, clear) masks cpa_process_alias() applies to the direct-map alias."""
        return set_, clr

    def adopt_captured_packs(self, k, packs, free_chunks):
        """Take over the bpf_prog_packs a captured machine holds (Machine.from_proc).

        ``packs``: one list of 512 pfns per pack; ``free_chunks``: free chunks at the end
        of the first one (the others are full).  True if this kernel has such packs;
        False leaves their pages as ordinary kernel memory (v5.11 has no packs).
        """
        return False

    # ------------------------------------------------------------ views
    def stats(self, k):
        """Design-specific counters and state for Machine.stats() (a dict)."""
        return {}

    def pools(self, k):
        """The design's own pools: dicts of kind, addr, pool_bytes, in_use_bytes (or None)."""
        return []

    def check(self, k):
        """Raise gpalloc.InvariantError if the design's own state is inconsistent."""
        return None   # no state of its own

    def grouped_blocks(self, k):
        """RFC 2/3's view of its replenished 2 MiB blocks; [] for designs without the cache."""
        return []

    def grouped_cache_pfns(self, k, nid):
        """RFC 2/3's cache list of one node as pfns, oldest first; [] without the cache."""
        return []

    def poison_check(self, k):
        """RFC 2/3's page-poisoning view of its cached pages; [] without the cache."""
        return []
