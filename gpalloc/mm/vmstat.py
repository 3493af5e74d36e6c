"""The model's event counters (``k.stat``), enumerated in one place, as enum vm_event_item is.

Every key the model ever increments is listed here with what it counts; keys
ending in ``:`` are prefixes (``flush_tlb_all:split`` counts global flushes by
reason).  ``Machine.stats()`` always reports :data:`ALWAYS_REPORTED` (and each
design's own ``stat_keys``), zero or not; the rest appear once they are non-zero.
tests/test_vmstat.py fails if code increments a key that is not listed.
"""

VM_EVENTS = {
    # per-process kernel memory (kernel/fork.py, mm/slab.py; the model's own counts)
    "forks": "processes created (copy_process)",
    "execs": "exec()s: the mm replaced (exec_mmap)",
    "exits": "processes exited (do_exit)",
    "anon_pages": "processes' anonymous pages now held (the model's count)",
    "page_table_user_pages": "processes' page-table pages now held, PGDs included",
    "thread_stack_vmalloc_pages": "kernel-stack pages vmalloc'd (alloc_thread_stack_node)",
    "stack_cache_hits": "kernel stacks reused from the per-CPU cached_stacks",
    "slab_pages": "pages now in the slab model's slabs (mm/slab.py)",
    "slab_order_fallback": "slabs allocated at the minimum order after the first order failed",
    "kmalloc_large_pages": "pages now held by kmalloc_large()",
    # direct map and CPA (arch/x86/mm/pat/set_memory.c)
    "splits_2m": "2M direct-map entries split into 4K (split_large_page)",
    "splits_1g": "1G direct-map entries split into 2M",
    "merges_2m": "split 2M regions merged back (CPA merge-back design)",
    "merges_1g": "1G regions merged back (CPA merge-back design)",
    "cpa_sameprot": "CPA found a large entry already had the new prot",
    "cpa_preserved": "CPA changed a whole large entry without splitting it",
    # TLB (arch/x86/mm/tlb.c)
    "flush_tlb_all": "global TLB flushes (an IPI to every CPU)",
    "flush_tlb_all:": "global TLB flushes by reason (split, cpa, purge, merge, ...)",
    "flush_tlb_range": "ranged TLB flushes",
    "flush_tlb_range:": "ranged TLB flushes by reason",
    "flush_tlb_range_pages": "pages flushed by ranged flushes",
    # vmalloc (mm/vmalloc.c)
    "vmalloc_calls": "__vmalloc_node_range() successes",
    "vmalloc_fail": "__vmalloc_area_node() failures (an order-0 page could not be had)",
    "vfree_calls": "__vunmap() calls that freed an area",
    "lazy_purges": "__purge_vmap_area_lazy() runs",
    "vm_unmap_aliases": "vm_unmap_aliases() calls",
    "reset_perms_frees": "vfree of a VM_FLUSH_RESET_PERMS area (the direct map reset)",
    # RFC 2/3's grouped cache
    "grouped_hits": "VM_GROUP_PAGES pages served from the cache",
    "grouped_replenish": "2 MiB blocks split into the cache",
    "grouped_fallback": "order-9 refills that failed (one order-0 page instead)",
    "grouped_cross_node": "cache hits on a node other than the CPU's",
    "grouped_bad_gfp": "VM_GROUP_PAGES requests refused for their GFP flags",
    # page allocator (mm/page_alloc.c)
    "pgalloc": "pages allocated (order-weighted)",
    "pgalloc_fallback": "__rmqueue_fallback() steals from another migratetype",
    "pgalloc_claim": "6.18 __rmqueue_claim(): a block of another type claimed",
    "pgalloc_steal": "6.18 __rmqueue_steal(): a block of another type taken, type kept",
    "pgalloc_bulk": "order-0 pages handed out by alloc_pages_bulk() (5.13+)",
    "alloc_fail": "page allocations that returned NULL",
    "allocstall": "direct reclaim entries",
    # compaction (mm/compaction.c, mm/migrate.c): the /proc/vmstat names
    "compact_stall": "direct compactions (__alloc_pages_direct_compact)",
    "compact_fail": "direct compactions after which the allocation still failed",
    "compact_success": "direct compactions after which the allocation succeeded",
    "compact_migrate_scanned": "pages the migrate scanner looked at (direct and kcompactd)",
    "compact_free_scanned": "pages the free scanner looked at (direct and kcompactd)",
    "compact_isolated": "pages isolated by either scanner",
    "compact_daemon_wake": "kcompactd_do_work() runs",
    "compact_daemon_migrate_scanned": "pages kcompactd's migrate scanner looked at",
    "compact_daemon_free_scanned": "pages kcompactd's free scanner looked at",
    "pgmigrate_success": "pages migrated",
    # reclaim (mm/vmscan.c, fs/drop_caches.c)
    "kswapd_runs": "kswapd balance_pgdat() runs",
    "pageoutrun": "PAGEOUTRUN: balance_pgdat() runs (the kernel's name for kswapd_runs)",
    "pgscan_kswapd": "page-cache pages scanned by kswapd",
    "pgsteal_kswapd": "page-cache pages kswapd reclaimed",
    "direct_reclaim_passes": "shrink passes made by direct reclaim",
    "pgscan": "page-cache pages scanned by reclaim",
    "pgsteal": "page-cache pages reclaimed",
    "slabs_scanned": "objects shrinkers were asked to scan",
    "shrinker_calls": "shrinker scan_objects() calls",
    "shrinker_freed": "objects shrinkers freed",
    "shrinker_stop": "shrinker scans that returned SHRINK_STOP",
    "drop_caches_": "echo N > /proc/sys/vm/drop_caches, by N",
    # callers (kernel/module.c, kernel/bpf, arch/x86/kernel)
    "modules_loaded": "load_module() successes",
    "modules_unloaded": "free_module() calls",
    "bpf_prog_loads": "BPF programs loaded",
    "bpf_jit_pages": "pages of per-program JIT images (bpf_jit_binary_alloc)",
    "bpf_trampolines": "BPF trampoline pages allocated",
    "ftrace_trampolines": "ftrace trampolines allocated",
    "kprobe_insn_pages": "kprobe instruction pages allocated",
    # later designs
    "bpf_prog_packs": "bpf_prog_packs allocated (5.18+)",
    "execmem_chunks": "execmem ROX cache chunks populated",
    "execmem_populate_fail": "ROX cache refills that found no order-9 block",
    "execmem_fallback": "ROX allocations made from 4K pages instead",
}

ALWAYS_REPORTED = ("splits_2m", "splits_1g", "flush_tlb_all", "flush_tlb_range",
                   "flush_tlb_range_pages", "lazy_purges", "vm_unmap_aliases",
                   "reset_perms_frees", "shrinker_calls", "shrinker_freed", "kswapd_runs",
                   "allocstall", "pgsteal", "alloc_fail", "vmalloc_fail")


def is_vm_event(key):
    """Is this a counter listed in VM_EVENTS (exactly, or under a listed prefix)?"""
    if key in VM_EVENTS:
        return True
    return any(key.startswith(prefix) for prefix in VM_EVENTS if prefix[-1] in ":_")
