"""Processes' kernel memory (kernel/fork.c, kernel/exit.c, fs/exec.c, arch/x86/mm/pgtable.c, v5.11).

A process holds, while it lives: its task_struct and the other per-task slab objects
(signal, sighand, files, pid, …), a kernel stack (CONFIG_VMAP_STACK: 16 KiB vmalloc'd,
4 order-0 GFP_KERNEL pages, with a per-CPU cache of 2 stacks), and an mm: the mm_struct,
the PGD (order 1 with CONFIG_PAGE_TABLE_ISOLATION: "we acquire two PGDs"; from the buddy
in v5.11, which has no high-order pcp lists), the page tables (order-0 GFP_PGTABLE_USER,
through the pcp list), the VMAs and anon_vmas (slab), and its anonymous memory (order-0
GFP_HIGHUSER_MOVABLE).  docs/reference/v5.11-fragmentation.md §4.1-4.2, §4.6.

How much of each a process holds is an input, a :class:`ProcessCost` measured on the live
kernel (gpalloc.workloads.process: the table and its sources): the model does not walk a
parent's VMAs.  Simplified, and said so: PUD/PMD/PTE pages are one count (same gfp and
order: pte_alloc_one, pmd_alloc_one, pud_alloc_one); page faults happen at fork/exec
time; the exit frees run on the CPU the task exits on, the page tables after an RCU
batch (MMU_GATHER_RCU_TABLE_FREE: tlb_remove_table), task_struct after an RCU grace
period (delayed_put_task_struct) and a stack that finds no free cache slot by
vfree_atomic() (a work item); everything else at once.
"""

from dataclasses import dataclass, field

from ..mm.gfp import __GFP_ACCOUNT, __GFP_ZERO, GFP_HIGHUSER_MOVABLE, GFP_KERNEL
from ..mm.mmzone import NUMA_NO_NODE
from ..mm.page import PAGE_SIZE
from ..mm.page_alloc import __free_pages, alloc_pages
from ..mm.slab import kmem_cache_alloc, kmem_cache_free, kmem_cache_of
from ..mm.vmalloc import __vmalloc_node, vfree
from .workqueue import queue_work

THREAD_SIZE = 4 * PAGE_SIZE            # PAGE_SIZE << (2 + KASAN_STACK_ORDER), no KASAN
THREAD_ALIGN = THREAD_SIZE
NR_CACHED_STACKS = 2
THREADINFO_GFP = GFP_KERNEL | __GFP_ACCOUNT | __GFP_ZERO
GFP_PGTABLE_USER = GFP_KERNEL | __GFP_ZERO | __GFP_ACCOUNT
PGD_ALLOCATION_ORDER_PTI = 1           # CONFIG_PAGE_TABLE_ISOLATION (x86-64 default y)
RCU_DELAY = 2                          # kernel events for an RCU grace period / tlb batch
# the per-task objects copy_process() allocates, one each (kernel/fork.c)
TASK_CACHES = ("task_struct", "signal_cache", "sighand_cache", "files_cache", "pid")


@dataclass(frozen=True)
class ProcessCost:
    """What one process holds besides its stack (measured; see gpalloc.workloads.process).

    ``page_tables``: order-0 page-table pages besides the PGD; ``pgd_order``: 1 with PTI,
    0 without; ``slab``: (cache, objects) pairs of the mm (VMAs, anon_vmas, files…);
    ``anon_pages``: order-0 movable user pages faulted in; ``source``: where from.
    """

    name: str
    page_tables: int
    pgd_order: int
    slab: tuple
    anon_pages: int
    source: str


@dataclass(eq=False)
class mm_struct:
    """struct mm_struct: its slab object, PGD, page tables, VMA objects and anon pages."""

    obj: object = None
    pgd: object = None
    pgd_order: int = 0
    pgtables: list = field(default_factory=list)
    objects: list = field(default_factory=list)   # (cache, slab) of VMAs, anon_vmas, …
    anon: list = field(default_factory=list)


@dataclass(eq=False)
class task_struct:
    """struct task_struct: its objects, kernel stack, mm, and what the process holds open."""

    pid: int
    objects: list = field(default_factory=list)   # (cache, slab) of TASK_CACHES
    stack: int = 0                                # vmalloc address of the stack
    mm: mm_struct = None
    held: list = field(default_factory=list)      # release callbacks: fds, maps, programs


def cached_stacks(k):
    """DEFINE_PER_CPU(struct vm_struct *, cached_stacks[NR_CACHED_STACKS]), this CPU's."""
    per_cpu = k.__dict__.setdefault("cached_stacks", {})
    return per_cpu.setdefault(k.cpu, [None] * NR_CACHED_STACKS)


def alloc_thread_stack_node(k, node=NUMA_NO_NODE):
    """alloc_thread_stack_node() with CONFIG_VMAP_STACK: a cached stack, else vmalloc.

    A stack from this CPU's cache (this_cpu_xchg) is zeroed and reused: no page is
    allocated.  Otherwise __vmalloc_node_range(THREAD_SIZE, THREAD_ALIGN, …,
    THREADINFO_GFP & ~__GFP_ACCOUNT): 4 order-0 GFP_KERNEL | __GFP_ZERO pages.
    """
    cache = cached_stacks(k)
    for i, addr in enumerate(cache):
        if addr is not None:
            cache[i] = None
            k.stat["stack_cache_hits"] += 1
            return addr
    gfp = THREADINFO_GFP & ~__GFP_ACCOUNT
    area = __vmalloc_node(k, THREAD_SIZE, THREAD_ALIGN, gfp, node, "alloc_thread_stack_node")
    if area is None:
        return 0
    k.stat["thread_stack_vmalloc_pages"] += THREAD_SIZE // PAGE_SIZE
    return area.addr


def free_thread_stack(k, addr):
    """free_thread_stack(): into a free slot of this CPU's cache, else vfree_atomic()."""
    cache = cached_stacks(k)
    for i, slot in enumerate(cache):
        if slot is None:
            cache[i] = addr
            return

    def _vfree():
        k.stat["thread_stack_vmalloc_pages"] -= THREAD_SIZE // PAGE_SIZE
        vfree(k, addr)
    queue_work(k, _vfree, 1, "vfree_atomic stack")


def pgd_alloc(k, order):
    """pgd_alloc() → _pgd_alloc(): __get_free_pages(GFP_PGTABLE_USER, PGD_ALLOCATION_ORDER).

    Order 1 with PTI; in v5.11 an order-1 request goes to the buddy (no pcp list for it).
    """
    page = alloc_pages(k, GFP_PGTABLE_USER, order)
    if page is not None:
        k.stat["page_table_user_pages"] += 1 << order
    return page


def pgd_free(k, page, order):
    """pgd_free(): free_pages(pgd, PGD_ALLOCATION_ORDER)."""
    k.stat["page_table_user_pages"] -= 1 << order
    __free_pages(k, page, order)


def pte_alloc_one(k):
    """pte_alloc_one() (pmd_alloc_one, pud_alloc_one alike): one GFP_PGTABLE_USER page."""
    page = alloc_pages(k, GFP_PGTABLE_USER, 0)
    if page is not None:
        k.stat["page_table_user_pages"] += 1
    return page


def free_pgtables(k, pages):
    """free_pgtables() → tlb_remove_table(): the pages freed after the RCU/IPI batch."""
    def _free():
        k.stat["page_table_user_pages"] -= len(pages)
        for page in pages:
            __free_pages(k, page, 0)
    if pages:
        queue_work(k, _free, RCU_DELAY, "tlb_remove_table_rcu")


def mm_alloc(k, cost):
    """mm_alloc() + dup_mmap()/exec: an mm_struct, its PGD, VMAs, page tables, anon pages.

    None if any allocation fails (what was taken is given back, as on fork's error path).
    """
    mm = mm_struct(pgd_order=cost.pgd_order)
    s = kmem_cache_of(k, "mm_struct")
    mm.obj = kmem_cache_alloc(k, s)
    mm.pgd = pgd_alloc(k, cost.pgd_order) if mm.obj is not None else None
    ok = mm.pgd is not None
    for name, count in cost.slab if ok else ():
        cache = kmem_cache_of(k, name)
        for _ in range(count):
            obj = kmem_cache_alloc(k, cache)
            if obj is None:
                ok = False
                break
            mm.objects.append((cache, obj))
    for _ in range(cost.page_tables if ok else 0):
        page = pte_alloc_one(k)
        if page is None:
            ok = False
            break
        mm.pgtables.append(page)
    for _ in range(cost.anon_pages if ok else 0):
        page = alloc_pages(k, GFP_HIGHUSER_MOVABLE, 0)
        if page is None:
            ok = False
            break
        mm.anon.append(page)
        k.stat["anon_pages"] += 1
    if not ok:
        mmput(k, mm)
        return None
    return mm


def mmput(k, mm):
    """mmput() → exit_mmap() + mmdrop(): user pages, VMAs, page tables (RCU), PGD, mm_struct."""
    for page in mm.anon:
        __free_pages(k, page, 0)
    k.stat["anon_pages"] -= len(mm.anon)
    for cache, obj in mm.objects:
        kmem_cache_free(k, cache, obj)
    free_pgtables(k, mm.pgtables)
    if mm.pgd is not None:
        pgd_free(k, mm.pgd, mm.pgd_order)
    if mm.obj is not None:
        kmem_cache_free(k, kmem_cache_of(k, "mm_struct"), mm.obj)
    mm.anon, mm.objects, mm.pgtables, mm.pgd, mm.obj = [], [], [], None, None


def copy_process(k, cost):
    """copy_process(): dup_task_struct (task_struct + stack), the per-task objects, the mm.

    Returns the task_struct, or None on failure (everything taken is freed again).
    """
    k.__dict__["last_pid"] = pid = k.__dict__.get("last_pid", 1) + 1
    task = task_struct(pid)
    for name in TASK_CACHES:
        cache = kmem_cache_of(k, name)
        obj = kmem_cache_alloc(k, cache)
        if obj is None:
            _free_task_objects(k, task)
            return None
        task.objects.append((cache, obj))
    task.stack = alloc_thread_stack_node(k)
    task.mm = mm_alloc(k, cost) if task.stack else None
    if task.mm is None:
        if task.stack:
            free_thread_stack(k, task.stack)
        _free_task_objects(k, task)
        return None
    return task


def kernel_clone(k, cost):
    """kernel_clone() (fork): copy_process(), then the child runs. The task, or None."""
    task = copy_process(k, cost)
    if task is not None:
        k.stat["forks"] += 1
    return task


def exec_mmap(k, task, cost):
    """begin_new_exec() → exec_mmap(): a new mm (new PGD, page tables, VMAs); the old one goes.

    Returns 0, or -1 if the new mm could not be built (the old one is kept).
    """
    mm = mm_alloc(k, cost)
    if mm is None:
        return -1
    old, task.mm = task.mm, mm
    mmput(k, old)
    k.stat["execs"] += 1
    return 0


def _free_task_objects(k, task):
    for cache, obj in task.objects:
        kmem_cache_free(k, cache, obj)
    task.objects = []


def do_exit(k, task):
    """do_exit(): release what the process holds (fds, maps, programs), exit_mm, exit_files…

    then release_task() → put_task_struct(): the task_struct and the other per-task
    objects after an RCU grace period (delayed_put_task_struct), the stack freed on
    this CPU (free_thread_stack, from finish_task_switch).
    """
    for release in reversed(task.held):
        release()
    task.held = []
    if task.mm is not None:
        mmput(k, task.mm)
        task.mm = None
    free_thread_stack(k, task.stack)
    task.stack = 0
    queue_work(k, lambda: _free_task_objects(k, task), RCU_DELAY, "delayed_put_task_struct")
    k.stat["exits"] += 1
