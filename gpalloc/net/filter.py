"""Classic-BPF socket filters (net/core/filter.c, 6.18): what ``SO_ATTACH_FILTER`` allocates.

The path the live lab measures (gpalloc.live.bpf; docs/reference/kernel-6.18-bpf-jit.md
§1): ``socket(AF_INET, SOCK_DGRAM)`` then ``setsockopt(SO_ATTACH_FILTER)`` →
sk_attach_filter() → __get_filter():

1. bpf_prog_alloc(): the struct bpf_prog and the K classic instructions, vmalloc'd
   with GFP_KERNEL_ACCOUNT (memcg-accounted: one page at a time, never bulk);
2. bpf_prog_store_orig_filter(): a kmemdup() of the K × 8-byte program, kept while
   the filter lives (for SO_GET_FILTER);
3. bpf_migrate_filter(): a temporary kmemdup() of the program, bpf_convert_filter()'s
   temporary ``addrs`` (K × 4 bytes), the eBPF form (K + 4 instructions for these
   programs: a 3-instruction prologue, one ``mov32`` per ``ld #imm``, ``mov``+``exit``
   for the ``ret``) — bpf_prog_realloc() only if it needs more pages;
4. bpf_int_jit_compile() (x86): a temporary ``addrs`` array ((len + 1) × 4 bytes) and
   the running design's image (``k.design.bpf_jit_alloc``: a pack slice from 5.18),
   written through a temporary kvmalloc()'d RW copy of the image's size.

Closing the socket frees the socket's objects; the filter goes after an RCU grace
period and a work item: the kept copy, the JIT image, then the bpf_prog.

Allocations above KMALLOC_MAX_CACHE_SIZE (2 pages on SLUB) are kmalloc_large(): pages of
get_order(size) from the page allocator, which this module allocates.  Smaller objects
come from slab caches, modelled as a minimal SLUB (:class:`kmem_cache`): a new slab page
of the cache's order when no slab has a free object, the slab freed when its last object
is.  Only the kept Unmovable objects of 1 KiB and more are modelled: the UDP sock
(``UDP``), the ``struct file`` (``filp``), the struct bpf_prog_aux (``kmalloc-cg-2k``)
and the kept program copy (``kmalloc-N``) — one of each per filter, as the slabinfo
growth of the ``--pack-probe`` runs of the CALIBRATION set shows (b1-01, b1-04: UDP 0.98,
filp 0.96-0.97, kmalloc-cg-2k 0.98-0.99, kmalloc-8k / kmalloc-4k 1.00 objects per
filter), with /proc/slabinfo's objects per slab and pages per slab of the measured VM
(data/measurements/b1-00-idle).  Left out, said so: slab temporaries (they come back to
the same slab at once), the reclaimable caches a socket also fills (sock_inode_cache,
dentry, proc_inode_cache: ≈ 1-2 objects per filter, in Reclaimable pageblocks), objects
under 1 KiB (kmalloc-96/64/32/16, lsm caches: about 0.1 page per filter), the per-CPU
stats, SLUB's per-CPU slabs and min_partial empty slabs.

The x86 JIT size of these programs (``ld #imm`` × (K − 1), ``ret #k``) is
``jited_bytes(K) = 5·K + 32`` bytes: each ``ld #imm`` is one 5-byte ``mov``, and the
``--pack-probe`` runs of the CALIBRATION set (b1-01 … b1-04) fit every measured pack
footprint with 5·K + d, d ∈ (24, 40]; 32 is the middle.
"""

from dataclasses import dataclass, field

from ..kernel.bpf.core import bpf_prog, bpf_prog_size
from ..kernel.workqueue import queue_work
from ..mm.gfp import __GFP_NORETRY, __GFP_NOWARN, __GFP_ZERO, GFP_KERNEL, GFP_KERNEL_ACCOUNT
from ..mm.mmzone import NUMA_NO_NODE
from ..mm.page import PAGE_SHIFT, PAGE_SIZE, PFN_UP
from ..mm.page_alloc import __free_pages, alloc_pages
from ..mm.vmalloc import __vmalloc_node, vfree

KMALLOC_MAX_CACHE_SIZE = 2 * PAGE_SIZE   # SLUB: larger kmalloc()s are kmalloc_large()
BPF_CLASSIC_INSN = 8                      # sizeof(struct sock_filter)
EBPF_EXTRA_INSNS = 4                      # prologue 3 + (mov, exit) − the classic ret
JIT_BYTES_PER_LD_IMM, JIT_BYTES_FIXED = 5, 32   # calibration, see the module docstring
FILTER_FREE_DELAY = 8                     # events: call_rcu() + bpf_prog_free_deferred()
# name → (objects per slab, pages per slab): /proc/slabinfo of b1-00-idle (6.18 VM)
SLABINFO = {"UDP": (12, 4), "filp": (21, 1), "kmalloc-1k": (16, 4), "kmalloc-2k": (16, 8),
            "kmalloc-4k": (8, 8), "kmalloc-8k": (4, 8), "kmalloc-cg-2k": (16, 8)}
_free_pages = __free_pages


def jited_bytes(insns):
    """x86-64 JIT bytes of an ``ld #imm`` × (K − 1), ``ret`` classic filter (calibrated)."""
    return JIT_BYTES_PER_LD_IMM * insns + JIT_BYTES_FIXED


def get_order(size):
    """get_order(): the smallest order whose block holds size bytes."""
    order = 0
    while PAGE_SIZE << order < size:
        order += 1
    return order


@dataclass
class slab:
    """One slab page of a cache and how many of its objects are in use."""

    page: object
    inuse: int = 0


@dataclass
class kmem_cache:
    """A slab cache reduced to its page use: objects per slab and the slab order."""

    name: str
    objects: int
    order: int
    slabs: list = field(default_factory=list)


def kmem_cache_of(k, name):
    """The machine's cache of this name (created on first use, sizes from SLABINFO)."""
    caches = k.__dict__.setdefault("kmem_caches", {})
    if name not in caches:
        objects, pages = SLABINFO[name]
        caches[name] = kmem_cache(name, objects, pages.bit_length() - 1)
    return caches[name]


def kmem_cache_alloc(k, cache, gfp=GFP_KERNEL):
    """An object: in the newest slab with room, else in a new slab page. None on failure."""
    for sl in reversed(cache.slabs):
        if sl.inuse < cache.objects:
            sl.inuse += 1
            return sl
    page = alloc_pages(k, gfp, cache.order)
    if page is None:
        return None
    sl = slab(page, 1)
    cache.slabs.append(sl)
    return sl


def kmem_cache_free(k, cache, sl):
    """Free one object; an empty slab's page goes back to the page allocator."""
    sl.inuse -= 1
    if not sl.inuse:
        cache.slabs.remove(sl)
        _free_pages(k, sl.page, cache.order)


def kmalloc_cache_name(size):
    """The kmalloc-N cache a size falls in (N a power of two ≥ 1 KiB here)."""
    n = 1024
    while n < size:
        n <<= 1
    return f"kmalloc-{n // 1024}k"


def kmalloc(k, size, gfp=GFP_KERNEL):
    """kmalloc(): kmalloc_large() pages above 2 pages, a kmalloc-N object below.

    Returns a handle for kfree(), None on failure; objects of 512 bytes or less are not
    modelled (the empty handle ``()``).
    """
    if size > KMALLOC_MAX_CACHE_SIZE:
        order = get_order(size)
        page = alloc_pages(k, gfp, order)
        return None if page is None else ("large", page, order)
    if size <= 512:
        return ()
    cache = kmem_cache_of(k, kmalloc_cache_name(size))
    sl = kmem_cache_alloc(k, cache, gfp)
    return None if sl is None else ("slab", cache, sl)


def kfree(k, handle):
    """kfree() of a kmalloc() handle."""
    if not handle:
        return
    if handle[0] == "large":
        _free_pages(k, handle[1], handle[2])
    else:
        kmem_cache_free(k, handle[1], handle[2])


def kvmalloc(k, size):
    """kvmalloc(): kmalloc() first (__GFP_NORETRY | __GFP_NOWARN above a page); vmalloc after."""
    handle = kmalloc(k, size, GFP_KERNEL | __GFP_NOWARN | __GFP_NORETRY)
    if handle is not None:
        return handle
    area = __vmalloc_node(k, size, 1, GFP_KERNEL, NUMA_NO_NODE, "kvmalloc")
    return None if area is None else ("vmalloc", area.addr)


def kvfree(k, handle):
    """kvfree()."""
    if handle and handle[0] == "vmalloc":
        vfree(k, handle[1])
    else:
        kfree(k, handle)


@dataclass
class filter_socket:
    """A UDP socket with a classic filter attached: what it holds."""

    sk: object = None          # the UDP sock object
    file: object = None        # its struct file
    aux: object = None         # the filter's struct bpf_prog_aux
    prog: bpf_prog = None      # the filter
    orig: tuple = ()           # the kept copy of the classic program


def bpf_prog_alloc_classic(k, insns):
    """bpf_prog_alloc(bpf_prog_size(K)): the bpf_prog pages (GFP_KERNEL_ACCOUNT | __GFP_ZERO)."""
    pages = PFN_UP(bpf_prog_size(k, insns))
    area = __vmalloc_node(k, pages << PAGE_SHIFT, 1, GFP_KERNEL_ACCOUNT | __GFP_ZERO,
                          NUMA_NO_NODE, "bpf_prog_alloc_no_stats")
    return bpf_prog(area.addr, pages, insns) if area else None


def bpf_prog_realloc(k, prog, insns):
    """bpf_prog_realloc(): a bigger bpf_prog area when the eBPF form needs more pages."""
    pages = PFN_UP(bpf_prog_size(k, insns))
    if pages <= prog.pages:
        prog.len = insns
        return prog
    area = __vmalloc_node(k, pages << PAGE_SHIFT, 1, GFP_KERNEL_ACCOUNT | __GFP_ZERO,
                          NUMA_NO_NODE, "bpf_prog_realloc")
    if area is None:
        return None
    vfree(k, prog.fp)
    return bpf_prog(area.addr, pages, insns)


def bpf_migrate_filter(k, prog):
    """bpf_migrate_filter(): temporaries, the eBPF form (maybe reallocated), then the JIT."""
    tmp = kmalloc(k, prog.len * BPF_CLASSIC_INSN)          # kmemdup() of the old program
    addrs = kmalloc(k, prog.len * 4, GFP_KERNEL | __GFP_NOWARN)   # bpf_convert_filter()
    new = bpf_prog_realloc(k, prog, prog.len + EBPF_EXTRA_INSNS)
    kfree(k, addrs)
    kfree(k, tmp)
    if new is None:
        return None
    jit_addrs = kvmalloc(k, (new.len + 1) * 4)             # bpf_int_jit_compile()
    k.design.bpf_jit_alloc(k, new, jited_bytes(new.len - EBPF_EXTRA_INSNS))
    if new.jited:
        kvfree(k, kvmalloc(k, new.header_size or new.header_pages << PAGE_SHIFT))   # RW copy
    kvfree(k, jit_addrs)
    return new


def sk_attach_filter(k, insns):
    """socket() + SO_ATTACH_FILTER of a K-instruction classic program; the socket, or None."""
    sock = filter_socket()
    sock.sk = kmem_cache_alloc(k, kmem_cache_of(k, "UDP"))
    sock.file = kmem_cache_alloc(k, kmem_cache_of(k, "filp"))
    prog = bpf_prog_alloc_classic(k, insns)
    sock.aux = kmem_cache_alloc(k, kmem_cache_of(k, "kmalloc-cg-2k"))   # kzalloc(aux)
    if prog is None or None in (sock.sk, sock.file, sock.aux):
        sock_close(k, sock)
        return None
    sock.orig = kmalloc(k, insns * BPF_CLASSIC_INSN, GFP_KERNEL | __GFP_NOWARN) or ()
    sock.prog = bpf_migrate_filter(k, prog)
    if sock.prog is None or not sock.prog.jited:   # CONFIG_BPF_JIT_ALWAYS_ON: -ENOTSUPP
        if sock.prog is not None:
            vfree(k, sock.prog.fp)
        sock.prog = None
        sock_close(k, sock)
        return None
    k.stat["bpf_prog_loads"] += 1
    k.sockets.append(sock)
    return sock


def __sk_filter_release(k, sock):
    """bpf_release_orig_filter(), then bpf_prog_free_deferred(): image, then bpf_prog."""
    kfree(k, sock.orig)
    k.design.bpf_jit_free(k, sock.prog)
    kmem_cache_free(k, kmem_cache_of(k, "kmalloc-cg-2k"), sock.aux)
    vfree(k, sock.prog.fp)


def sock_close(k, sock):
    """close(): the socket's objects now; the filter after RCU and a work item."""
    for cache, obj in (("UDP", sock.sk), ("filp", sock.file)):
        if obj is not None:
            kmem_cache_free(k, kmem_cache_of(k, cache), obj)
    if sock.prog is not None:
        queue_work(k, lambda: __sk_filter_release(k, sock), FILTER_FREE_DELAY,
                   "sk_filter_release_rcu")
    elif sock.aux is not None:
        kmem_cache_free(k, kmem_cache_of(k, "kmalloc-cg-2k"), sock.aux)
    if sock in k.sockets:
        k.sockets.remove(sock)


def close_all(k):
    """Close every socket the workload holds, in the order they were opened."""
    for sock in list(k.sockets):
        sock_close(k, sock)

