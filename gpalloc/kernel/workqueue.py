"""Deferred work: RCU callbacks and workqueue items (kernel/rcu, kernel/workqueue.c), in miniature.

The kernel frees BPF programs after an RCU grace period and module init areas
from a workqueue, so other allocations can run in between — which is what
scatters a v5.11 machine's vmalloc pages.  The model keeps a queue ordered by a
logical clock: ``queue_work(k, fn, delay)`` runs ``fn`` once ``delay`` more kernel
events have happened (``tick``), or at ``flush_deferred`` (rcu_barrier()).  Work
runs on the CPU that queued it (RCU callbacks and per-CPU kworkers do), which
matters once the task that queued it has migrated: the pages it frees land on
that CPU's per-CPU list.
"""

import heapq


def queue_work(k, fn, delay, what):
    """queue_work()/call_rcu(): run fn after `delay` more kernel events."""
    k.work_seq += 1
    heapq.heappush(k.deferred, (k.clock + max(0, delay), k.work_seq, what, k.cpu, fn))


def tick(k, n=1):
    """Advance the logical clock by n kernel events and run the work that is due."""
    k.clock += n
    while k.deferred and k.deferred[0][0] <= k.clock:
        _run(k, heapq.heappop(k.deferred))


def _run(k, item):
    *_, cpu, fn = item
    here, k.cpu = k.cpu, cpu
    try:
        fn()
    finally:
        k.cpu = here


def flush_deferred(k):
    """rcu_barrier() + flush_workqueue(): run every pending item now."""
    while k.deferred:
        _run(k, heapq.heappop(k.deferred))


def pending_work(k):
    """What is queued (for the notebooks): (due, what) pairs."""
    return sorted((due, what) for due, _, what, _, _ in k.deferred)
