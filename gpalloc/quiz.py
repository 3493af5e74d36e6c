"""Seeded homework questions, OSTEP style: ``gpalloc quiz KIND --seed N`` asks, ``-c`` answers.

Each generator builds a small scenario from the seed, prints it as a question,
and — with ``compute=True`` (the CLI's ``-c``) — runs it on the model and prints
the answer with its reasoning, step by step, from what the model recorded
(its tracepoints and counters).  The same seed always gives the same question and answers.
"""

import random

from .machine import Machine
from .mm.gfp import GFP_KERNEL
from .mm.vmalloc import VM_GROUP_PAGES

KINDS = ("directmap", "grouped", "shrinker")


def directmap(seed, compute=False):
    """Which DirectMap counters move when vmalloc pages are made RO and freed?"""
    rng = random.Random(seed)
    nodes, gb = rng.choice((1, 2)), rng.choice((True, False))
    m = Machine(nodes=nodes, node_mem="4G", gbpages=gb, seed=seed)
    steps, lines = [], []
    for i in range(rng.randint(2, 4)):
        node = rng.randrange(nodes)
        pages = rng.choice((1, 2, 4, 8))
        ro = rng.random() < 0.7
        free = rng.random() < 0.5
        steps.append((node, pages, ro, free))
        lines.append(f"  {i + 1}. vmalloc {pages} page(s) on node {node}"
                     + (", set_vm_flush_reset_perms + set_memory_ro" if ro else "")
                     + (", then vfree" if free else ""))
    before = m.meminfo()
    out = [f"A v5.11 machine: {nodes} node(s) × 4 GiB, 1G direct-map pages "
           f"{'on' if gb else 'off'}.",
           "Boot: " + ", ".join(f"{k}={v} kB" for k, v in before.items() if k.startswith("Dir")),
           "Then:", *lines,
           "Q: what are DirectMap4k/2M/1G afterwards, and how many 2M and 1G splits happened?"]
    if compute:
        out.append("Why, step by step:")
        for i, (node, pages, ro, free) in enumerate(steps, 1):
            seen = len(m.events(TRACE_ALL))
            a = m.vmalloc_node_range(pages * 4096, node=node)
            regions = sorted({p.pfn >> 9 for p in m.find_vm_area(a).pages})
            if ro:
                m.set_vm_flush_reset_perms(a)
                m.set_memory_ro(a, pages)
            if free:
                m.vfree(a)
            out.append(f"  {i}. " + _split_story(m, regions, m.events(TRACE_ALL)[seen:], ro, free))
        after, st = m.meminfo(), m.stats()
        out.append("A: " + ", ".join(f"{k}={v} kB" for k, v in after.items()
                                     if k.startswith("Dir"))
                   + f"; splits_2m={st['splits_2m']} splits_1g={st['splits_1g']}")
    return "\n".join(out)


TRACE_ALL = 10 ** 6   # m.events(last=...): every event the trace still holds


def _split_story(m, regions, events, ro, free):
    """One step's reasoning: which 2 MiB regions its pages are in and what got split."""
    splits = [f"{f['level']} entry #{f['idx']}" for name, f in events
              if name == "split_large_page"]
    where = f"its pages are in 2 MiB region(s) {', '.join(map(str, regions))}"
    if not ro:
        return where + "; no permission change, so the direct map is untouched"
    what = "set_memory_ro changes the pages' direct-map aliases too"
    if free:
        what += ", and vfree resets them (invalid, then default)"
    if not splits:
        return f"{where}; {what}, but every one is already mapped with 4K entries: no split"
    return (f"{where}; {what}: split {', '.join(splits)} (a 1G entry becomes 512 2M ones, "
            "a 2M entry 512 4K ones, for good)")


def grouped(seed, compute=False):
    """Where does each VM_GROUP_PAGES page come from under NUMA_NO_NODE round-robin?"""
    rng = random.Random(seed)
    nodes, n = rng.choice((2, 3, 4)), rng.randint(3, 6)
    m = Machine(nodes=nodes, node_mem="512M", patches=(1, 2), seed=seed)
    out = [f"RFC patches 1–2, {nodes} nodes, CPU 0 (node 0). {n} one-page VM_GROUP_PAGES "
           "vmallocs with NUMA_NO_NODE, none freed.",
           "Q: which node does each page come from, how many 2 MiB blocks are replenished, "
           "and how many pages are left in each node's cache?"]
    if compute:
        got = []
        out.append("Why, page by page (the lookup starts at nid_round_robin % nodes, then "
                   "walks the other nodes; an empty cache everywhere means a replenish on "
                   "the local node):")
        for i in range(n):
            before = m.stats()
            a = m.vmalloc_node_range(4096, gfp=GFP_KERNEL, vm_flags=VM_GROUP_PAGES)
            after = m.stats()
            nid = m.find_vm_area(a).pages[0].nid
            got.append(nid)
            how = ("no node had a cached page: a 2 MiB block was split, 511 pages cached"
                   if after["grouped_replenish"] > before["grouped_replenish"]
                   else "a cached page (most recently freed first)")
            out.append(f"  {i + 1}. counter {before['nid_round_robin']} → start at node "
                       f"{before['nid_round_robin'] % nodes}; node {nid}: {how}")
        st = m.stats()
        out.append(f"A: nodes {got}; replenished {st['grouped_replenish']}; cache per node "
                   f"{st['grouped_cache_pages_per_node']}")
    return "\n".join(out)


def shrinker(seed, compute=False):
    """How much of the grouped cache does one shrink_slab pass free at a priority?"""
    rng = random.Random(seed)
    blocks, priority = rng.randint(1, 4), rng.choice((12, 10, 8, 6, 4, 2, 1, 0))
    m = Machine(node_mem="1G", patches=(1, 2), seed=seed)
    areas = [m.vmalloc_node_range(4096, vm_flags=VM_GROUP_PAGES) for _ in range(blocks * 512)]
    for a in areas:
        m.vfree(a)
    cached = m.stats()["grouped_cache_pages"]
    out = [f"RFC patches 1–2: the grouped cache holds {cached} pages on node 0, nothing deferred.",
           f"Q: one shrink_slab(GFP_KERNEL, node 0, priority {priority}) pass: how many pages "
           "does the RFC shrinker free, and what is left in nr_deferred?"]
    if compute:
        freed = m.shrink_slab(0, priority)
        ev = [f for name, f in m.events() if name == "do_shrink_slab"][-1]
        out.append(f"Why: do_shrink_slab() asks for delta = (freeable >> priority) × 4 / seeks "
                   f"= ({ev['freeable']} >> {priority}) × 4 / 2 = {ev['delta']} objects, plus "
                   f"{ev['deferred_in']} deferred; it scans in batches of 128 (or all of a "
                   "smaller cache), and the RFC's grouped_shrink_scan frees every page it "
                   f"walks; what was asked for but not scanned is deferred ({ev['deferred_out']})."
                   + (" Here that is less than one batch of a larger cache: nothing is scanned."
                      if not freed else ""))
        out.append(f"A: freed {freed}; nr_deferred {m.stats()['nr_deferred'][0]}; "
                   f"cache now {m.stats()['grouped_cache_pages']}")
    return "\n".join(out)


def quiz(kind, seed=0, compute=False):
    """The question (and with compute, the answer) of one kind for a seed."""
    if kind not in KINDS:
        raise ValueError(f"quiz: unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    return f"gpalloc quiz {kind}  seed={seed}\n" + globals()[kind](seed, compute)
