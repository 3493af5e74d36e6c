"""Seeded homework questions, OSTEP style: ``gpalloc quiz KIND --seed N`` asks, ``-c`` answers.

Each generator builds a small scenario from the seed, prints it as a question,
and — with ``compute=True`` (the CLI's ``-c``) — runs it on the model and prints
the answers.  The same seed always gives the same question and answers.
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
        for node, pages, ro, free in steps:
            a = m.vmalloc_node_range(pages * 4096, node=node)
            if ro:
                m.set_vm_flush_reset_perms(a)
                m.set_memory_ro(a, pages)
            if free:
                m.vfree(a)
        after, st = m.meminfo(), m.stats()
        out.append("A: " + ", ".join(f"{k}={v} kB" for k, v in after.items()
                                     if k.startswith("Dir"))
                   + f"; splits_2m={st['splits_2m']} splits_1g={st['splits_1g']}")
    return "\n".join(out)


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
        for _ in range(n):
            a = m.vmalloc_node_range(4096, gfp=GFP_KERNEL, vm_flags=VM_GROUP_PAGES)
            got.append(m.find_vm_area(a).pages[0].nid)
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
        out.append(f"A: freed {freed}; nr_deferred {m.stats()['nr_deferred'][0]}; "
                   f"cache now {m.stats()['grouped_cache_pages']}")
    return "\n".join(out)


def quiz(kind, seed=0, compute=False):
    """The question (and with compute, the answer) of one kind for a seed."""
    if kind not in KINDS:
        raise ValueError(f"quiz: unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    return f"gpalloc quiz {kind}  seed={seed}\n" + globals()[kind](seed, compute)
