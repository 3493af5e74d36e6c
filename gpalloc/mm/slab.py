"""A small SLUB (mm/slub.c, v5.11): caches whose slab pages come from the page allocator.

What is modelled is what decides where slab *pages* land: each cache's slab order
(``calculate_order``: v5.11 picks order 3 for task_struct, mm_struct and sighand, so a
growing cache asks the buddy for order-3 Unmovable blocks), ``allocate_slab`` (the
calculated order first without reclaim, then the minimum order), objects per slab,
partial slabs, and an empty slab given back only when the node already keeps
``min_partial`` partial slabs (``__slab_free`` → ``discard_slab``).  Caches created
with SLAB_RECLAIM_ACCOUNT allocate ``__GFP_RECLAIMABLE`` (Reclaimable pageblocks).

Simplified, and said so: one node list per cache and no per-CPU slabs or per-CPU
partial lists (an object goes to the fullest partial slab, the way SLUB's cpu slab
fills before the next partial is taken); objects are counted, not placed; no debug
metadata (``s->size`` = the object size).  Object sizes are the ``objsize`` column of
/proc/slabinfo on this project's 6.18 VM (data/measurements/b2-15-filters-n400-k100,
00-before); for a v5.11 distro config they are UNVERIFIED
(docs/reference/v5.11-fragmentation.md §4.3) but every cache listed keeps its v5.11 order there.
Slab pages are OWNER_KERNEL, like every alloc_pages() block (OWNER_SLAB is the
background's kernel blocks, counted against ``k.kernel_blocks`` by Machine.check()).

gpalloc.net.filter has its own older mini-SLUB (measured objects per slab); this one
computes the orders, and the two keep separate slabs of the same cache names.
"""

from dataclasses import dataclass, field

from .gfp import (
    __GFP_NOMEMALLOC,
    __GFP_NORETRY,
    __GFP_NOWARN,
    __GFP_RECLAIM,
    __GFP_RECLAIMABLE,
    GFP_KERNEL,
    gfp_t,
    gfpflags_allow_blocking,
)
from .page import MAX_ORDER, PAGE_SIZE
from .page_alloc import PAGE_ALLOC_COSTLY_ORDER, __free_pages, alloc_pages

SLAB_RECLAIM_ACCOUNT = 0x00020000
slub_min_order, slub_max_order, slub_min_objects = 0, PAGE_ALLOC_COSTLY_ORDER, 0
MAX_OBJS_PER_PAGE = 32767
MIN_PARTIAL, MAX_PARTIAL = 5, 10
KMALLOC_SHIFT_LOW, KMALLOC_SHIFT_HIGH = 3, 13   # kmalloc-8 .. kmalloc-8k (SLUB: PAGE_SHIFT + 1)
KMALLOC_MAX_CACHE_SIZE = 1 << KMALLOC_SHIFT_HIGH

# name → (s->size in bytes, flags).  Sizes: objsize in b2-15's 00-before slabinfo (6.18).
CACHES = {
    "task_struct": (5888, 0), "mm_struct": (1600, 0), "sighand_cache": (2112, 0),
    "signal_cache": (1152, 0), "files_cache": (704, 0), "vm_area_struct": (192, 0),
    "anon_vma": (104, 0), "anon_vma_chain": (64, 0), "pid": (192, 0), "filp": (192, 0),
    "cred_jar": (192, 0), "UDP": (1344, 0), "sock_inode_cache": (832, SLAB_RECLAIM_ACCOUNT),
    "dentry": (192, SLAB_RECLAIM_ACCOUNT), "maple_node": (256, 0),
    **{f"kmalloc-{n if n < 1024 else f'{n // 1024}k'}": (n, 0)
       for n in (1 << s for s in range(KMALLOC_SHIFT_LOW, KMALLOC_SHIFT_HIGH + 1))},
    "kmalloc-96": (96, 0), "kmalloc-192": (192, 0),
}


def fls(x):
    """fls(): the position of the highest set bit, 1-based (0 for 0)."""
    return x.bit_length()


def get_order(size):
    """get_order(): the smallest order whose block holds size bytes."""
    order = 0
    while PAGE_SIZE << order < size:
        order += 1
    return order


def order_objects(order, size):
    """order_objects(): objects of ``size`` in a slab of ``order``."""
    return (PAGE_SIZE << order) // size


def slab_order(size, min_objects, max_order, fract_leftover):
    """slab_order(): the smallest order ≥ get_order(min_objects·size) wasting ≤ 1/fract."""
    if order_objects(slub_min_order, size) > MAX_OBJS_PER_PAGE:
        return get_order(size * MAX_OBJS_PER_PAGE) - 1
    order = max(slub_min_order, get_order(min_objects * size))
    while order <= max_order:
        slab_size = PAGE_SIZE << order
        if slab_size % size <= slab_size / fract_leftover:
            break
        order += 1
    return order


def calculate_order(size, nr_cpus):
    """calculate_order() (v5.11): min_objects = 4·(fls(nr_cpus) + 1), fractions 16, 8, 4.

    ``nr_cpus`` is num_present_cpus() (nr_cpu_ids when that is ≤ 1): 12 objects wanted
    on 2 CPUs, 16 on 4, capped by what an order-3 slab holds; then one object fewer at a
    time, then a single object up to slub_max_order, then up to MAX_ORDER.
    """
    min_objects = slub_min_objects or 4 * (fls(max(nr_cpus, 1)) + 1)
    min_objects = min(min_objects, order_objects(slub_max_order, size))
    while min_objects > 1:
        for fraction in (16, 8, 4):
            order = slab_order(size, min_objects, slub_max_order, fraction)
            if order <= slub_max_order:
                return order
        min_objects -= 1
    order = slab_order(size, 1, slub_max_order, 1)
    if order <= slub_max_order:
        return order
    return slab_order(size, 1, MAX_ORDER - 1, 1)


@dataclass(eq=False)
class slab:
    """A slab: its page block, its order and objects, how many are in use."""

    page: object
    order: int
    objects: int
    inuse: int = 0


@dataclass(eq=False)
class kmem_cache:
    """struct kmem_cache: size, flags, oo/min (order, objects), min_partial, the node list."""

    name: str
    size: int
    flags: int
    order: int
    objects: int
    min_order: int
    min_objects: int
    min_partial: int
    slabs: list = field(default_factory=list)   # partial and full slabs, oldest first

    @property
    def nr_partial(self):
        """Slabs with a free object (n->nr_partial, empty ones included)."""
        return sum(sl.inuse < sl.objects for sl in self.slabs)


def set_min_partial(size):
    """set_min_partial(): ilog2(size) / 2, clamped to [MIN_PARTIAL, MAX_PARTIAL]."""
    return min(MAX_PARTIAL, max(MIN_PARTIAL, (size.bit_length() - 1) // 2))


def kmem_cache_create(k, name, size, flags=0):
    """kmem_cache_create() → calculate_sizes(): the orders for this machine's CPU count."""
    order = calculate_order(size, k.nr_cpus)
    min_order = get_order(size)
    return kmem_cache(name, size, flags, order, order_objects(order, size), min_order,
                      order_objects(min_order, size), set_min_partial(size))


def kmem_cache_of(k, name):
    """The machine's cache of this name (CACHES), created on first use."""
    caches = k.__dict__.setdefault("slab_caches", {})
    s = caches.get(name)
    if s is None:
        if name not in CACHES:
            raise ValueError(f"slab: no cache {name!r}; known: {', '.join(sorted(CACHES))}")
        s = caches[name] = kmem_cache_create(k, name, *CACHES[name])
    return s


def allocate_slab(k, s, gfp):
    """allocate_slab(): the calculated order without reclaim first, then s->min.

    The first try adds __GFP_NOWARN | __GFP_NORETRY and, when the order is above the
    minimum and the caller may block, __GFP_NOMEMALLOC and no __GFP_RECLAIM (no kswapd,
    no direct reclaim): under fragmentation order-3 slabs come only from free blocks or
    fallback steals.  The fallback uses the caller's flags (ORDER_FALLBACK).
    """
    gfp = gfp_t(gfp)
    if s.flags & SLAB_RECLAIM_ACCOUNT:
        gfp = gfp | __GFP_RECLAIMABLE
    first = gfp | __GFP_NOWARN | __GFP_NORETRY
    if gfpflags_allow_blocking(first) and s.order > s.min_order:
        first = gfp_t((first | __GFP_NOMEMALLOC) & ~__GFP_RECLAIM)
    page = alloc_pages(k, first, s.order)
    order, objects = s.order, s.objects
    if page is None and s.order > s.min_order:
        page = alloc_pages(k, gfp, s.min_order)
        order, objects = s.min_order, s.min_objects
        k.stat["slab_order_fallback"] += 1
    if page is None:
        return None
    k.stat["slab_pages"] += 1 << order
    return slab(page, order, objects)


def discard_slab(k, s, sl):
    """discard_slab(): the slab's pages back to the page allocator."""
    s.slabs.remove(sl)
    k.stat["slab_pages"] -= 1 << sl.order
    __free_pages(k, sl.page, sl.order)


def kmem_cache_alloc(k, s, gfp=GFP_KERNEL):
    """kmem_cache_alloc(): an object from the fullest partial slab, else a new slab."""
    best = None
    for sl in s.slabs:
        if sl.inuse < sl.objects and (best is None or sl.inuse > best.inuse):
            best = sl
    if best is None:
        best = allocate_slab(k, s, gfp)
        if best is None:
            return None
        s.slabs.append(best)
    best.inuse += 1
    return best


def kmem_cache_free(k, s, sl):
    """kmem_cache_free() → __slab_free(): an empty slab is discarded only beyond min_partial."""
    if sl.inuse <= 0:
        raise AssertionError(f"kmem_cache_free: {s.name}: slab has no object in use")
    sl.inuse -= 1
    if not sl.inuse and s.nr_partial > s.min_partial:
        discard_slab(k, s, sl)


def kmem_cache_shrink(k, s):
    """kmem_cache_shrink(): give back every empty slab."""
    for sl in [sl for sl in s.slabs if not sl.inuse]:
        discard_slab(k, s, sl)


def kmalloc_cache_name(size):
    """kmalloc_slab(): the kmalloc-N cache of a size (96 and 192 between the powers of 2)."""
    if 64 < size <= 96:
        return "kmalloc-96"
    if 128 < size <= 192:
        return "kmalloc-192"
    n = 1 << KMALLOC_SHIFT_LOW
    while n < size:
        n <<= 1
    return f"kmalloc-{n}" if n < 1024 else f"kmalloc-{n // 1024}k"


def kmalloc(k, size, gfp=GFP_KERNEL):
    """kmalloc(): a kmalloc-N object, or kmalloc_large() pages above 8 KiB. None on failure."""
    if size > KMALLOC_MAX_CACHE_SIZE:
        order = get_order(size)
        page = alloc_pages(k, gfp, order)
        if page is None:
            return None
        k.stat["kmalloc_large_pages"] += 1 << order
        return ("large", page, order)
    s = kmem_cache_of(k, kmalloc_cache_name(size))
    sl = kmem_cache_alloc(k, s, gfp)
    return None if sl is None else ("slab", s, sl)


def kfree(k, handle):
    """kfree() of a kmalloc() handle (None is a no-op, as kfree(NULL))."""
    if handle is None:
        return
    if handle[0] == "large":
        k.stat["kmalloc_large_pages"] -= 1 << handle[2]
        __free_pages(k, handle[1], handle[2])
    else:
        kmem_cache_free(k, handle[1], handle[2])


def slab_model_pages(k):
    """Pages this module holds: slab pages of every cache + kmalloc_large() blocks."""
    return k.stat["slab_pages"] + k.stat["kmalloc_large_pages"]


def slab_caches(k):
    """The machine's caches by name (those used so far)."""
    return k.__dict__.get("slab_caches", {})


def slabinfo(k):
    """/proc/slabinfo's columns per cache: active_objs, num_objs, objperslab, pagesperslab."""
    out = {}
    for name, s in sorted(slab_caches(k).items()):
        out[name] = {"active_objs": sum(sl.inuse for sl in s.slabs),
                     "num_objs": sum(sl.objects for sl in s.slabs),
                     "objperslab": s.objects, "pagesperslab": 1 << s.order,
                     "num_slabs": len(s.slabs)}
    return out
