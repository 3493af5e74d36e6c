"""Build a model machine from a real machine's /proc (``Machine.from_proc``).

Two kinds of source, told apart by what they hold:

**A full capture** — a ``gpalloc live`` phase folder, or any data with ``zoneinfo`` and
``pagetypeinfo`` (root): the model *starts in the captured state*
(:func:`from_captured_state`).  Taken from the capture:

* nodes, CPUs (zoneinfo's pagesets), zones with their start pfn, span, present and
  managed pages, watermarks and lowmem_reserve (zoneinfo).  Holes (spanned − present)
  are at the top of the zone's span (the PCI hole below 4 GiB; in ZONE_DMA the BIOS
  area below 1 MiB); present but unmanaged pages are memblock reservations at the
  zone's start (the kernel image in ZONE_DMA32) — except in the last zone, where
  they are the part **deferred struct-page init has not handed to the buddy yet**
  (``deferred_init=lazy`` on this project's VMs: ZONE_NORMAL's managed pages grow in
  128 MiB sections).  The model keeps that part out of the buddy and does not grow
  it: no validation run comes near the initialised memory's watermarks (the fills
  that did grow it are captured *after* the fill, ``01-filled``);
* free blocks per order, per migratetype, per zone (pagetypeinfo's free counts,
  buddyinfo as a check), pageblock types (pagetypeinfo's block counts), and every other
  initialised page as memory in use: page cache in Movable pageblocks, kernel memory in
  Unmovable and Reclaimable ones;
* the direct map: how much is mapped with 4K, 2M and 1G entries (meminfo), and how
  many 2M and 1G entries split since boot (vmstat ``direct_map_level2/3_splits``), so
  the boot-time 4K regions are DirectMap4k/2 MiB − level2 splits;
* the per-CPU lists: count, high, batch, high_min and high_max per CPU (zoneinfo);
* the bpf_prog_pack areas the capture lists (vmallocinfo), for designs that have them.

What the capture does not say, and how the model chooses it (every rule seeded by the
machine's ``seed``, none taken from a validation capture's outcome):

* **Which GiB regions are still 1G-mapped.** The capture gives the count.  GiB 0 is
  never a 1G page (the ISA range, the kernel image); the GiBs that are not 1G are the
  lowest ones of the last zone's initialised part — the memory the kernel has been
  allocating unmovable pages from since boot, which is where CPA splits happen.
* **Which 2 MiB regions are 4K.** The boot-time ones are GiB 0's, as the model's boot
  places them (gpalloc.state.boot_4k_region_list); the runtime splits are Unmovable
  pageblocks of the last zone (each was split by a pack page, which is unmovable),
  chosen at random among those in non-1G GiBs.
* **Where pageblocks of each type lie.** Unmovable and Reclaimable pageblocks come in
  aligned pairs (order-10 claims; every fallback in the traces of the CALIBRATION set
  claims an order-10 block, data/measurements/README.md), Unmovable ones inside the
  non-1G GiBs of the zone, at random positions.
* **Where the free blocks lie.** In pageblocks of their type, at random aligned
  positions, never next to a free buddy of the same order; each list in random order.
  Unmovable blocks go to split and unsplit pageblocks alike (``SPLIT_WEIGHT`` 1: no
  measurement says otherwise).
* **What the per-CPU lists hold.** ``UNMOVABLE_PCP_PAGES`` order-0 Unmovable pages on
  the CPU the run starts on (CPU 0), in runs of 64 pages in Unmovable pageblocks; the
  rest of each CPU's count are Movable order-0 pages.
* **A pack's free chunks.** ``BOOT_PACK_FREE_CHUNKS`` free chunks at the end of the first
  pack; any other listed pack is full.  Its 512 pages lie in split Unmovable pageblocks.

When a live capture folder sits among earlier captures of the same boot whose runs were
traced (data/measurements/), their traces say where those runs' pages were
(gpalloc.live.history), and that comes before the rules: the GiBs and 2 MiB regions that
held pack pages are the split ones, the pageblocks Unmovable pages came from are the
Unmovable ones, the last traced close's freed pages are the head of the run CPU's list
and then the Unmovable free blocks (as far as the counts go).  ``history=None`` turns
this off; a parsed dict (no folder) has none.

**Any other capture** (data/machines/: meminfo, buddyinfo, maybe zoneinfo, vmallocinfo,
modules): the number of NUMA nodes (buddyinfo), the RAM (the sum of the DirectMap lines
= all mapped RAM, split evenly over the nodes and rounded down to 4 MiB), whether 1G
direct-map pages are used (a DirectMap1G line), and the module list.  The boot-time 4K
part of the direct map cannot be told apart from later splits there, so the model
starts from min(the capture's DirectMap4k, 30 MiB — a machine booted with no modules,
data/machines/fcvm-6.18/meminfo.txt) and then loads the capture's modules; comparing the
model's DirectMap4k with the capture's is then a check of the model.  The capture does
not tell how the machine got where it is, so by default the model machine is idle when
the modules load; ``pressure="capture"`` applies 1 − MemFree/MemTotal as scattered
background memory first (right for a machine that has run a long time, too much for one
captured seconds after boot).
"""

import random
from collections import Counter
from itertools import accumulate
from pathlib import Path

from ..arch.x86.pgtable_types import PAGE_KERNEL
from ..arch.x86.set_memory import direct_map
from ..mm.gfp import (
    MIGRATE_MOVABLE,
    MIGRATE_RECLAIMABLE,
    MIGRATE_TYPE_NAMES,
    MIGRATE_UNMOVABLE,
    ZONE_DMA,
    ZONE_NAMES,
)
from ..mm.page import (
    MAX_ORDER,
    OWNER_PAGECACHE,
    OWNER_PCP,
    OWNER_SLAB,
    PAGES_PER_1G,
    PAGES_PER_2M,
    PageStore,
    pageblock_order,
)
from ..mm.page_alloc import add_to_free_list, get_pcp
from ..procfs import read_proc_dir
from ..state import Kernel, boot_4k_region_list
from .events import play
from .scenario import module_events

TYPICAL_BOOT_4K_KB = 30 * 1024
MIB = 1024
PB = 1 << pageblock_order

# ---- calibration (CALIBRATION set of data/measurements/, see data/README.md) ----
# Order-0 Unmovable pages on the run's per-CPU list at the start: the median of what that
# list held before its first refill in the traces of b1-01, b1-02, b1-03, b1-04 — the
# order-0 Unmovable allocations before the refill (272, 240, 879, 1221), plus 512 where
# a pack (bulk pages, no event) was made before it (b1-03, b1-04): 272, 240, 1391, 1733.
UNMOVABLE_PCP_PAGES = 832
PCP_RUN = 64            # freed in runs: the U pcp pages lie in runs of this many pfns
# Free 64-byte chunks in the pack the system holds before a run: mean of programs that
# fitted before the first new pack × their chunks in b1-04, b1-01, b1-02, b1-03
# (918 × 33, 474 × 64, 241 × 126, 161 × 189 = 30294 … 30429).
BOOT_PACK_FREE_CHUNKS = 30356
SPLIT_WEIGHT = 1.0      # how much likelier a free Unmovable block is in a split pageblock
RUN_CPU = 0             # the CPU the experiment starts on (a capture does not say)


# ============================================================================ legacy path

def machine_kwargs(proc):
    """Machine(...) arguments inferred from parsed /proc data (see the module docstring)."""
    mi = proc.get("meminfo")
    if not mi or "DirectMap4k" not in mi:
        raise ValueError("from_proc: the capture needs a meminfo with DirectMap lines")
    nodes = len({e["node"] for e in proc["buddyinfo"]}) if proc.get("buddyinfo") else 1
    ram_kb = sum(mi.get(f"DirectMap{s}", 0) for s in ("4k", "2M", "1G", "4M"))
    node_mb = max(256, (ram_kb // nodes // MIB) // 4 * 4)
    boot_mb = max(2, min(mi["DirectMap4k"], TYPICAL_BOOT_4K_KB) // MIB // 2 * 2)
    return {"nodes": nodes, "node_mem": f"{node_mb}M", "gbpages": "DirectMap1G" in mi,
            "boot_4k": f"{boot_mb}M"}


def capture_pressure(proc):
    """The share of memory in use when the capture was taken (0.0–1.0)."""
    mi = proc["meminfo"]
    if not mi.get("MemTotal"):
        return 0.0
    return round(min(1.0, max(0.0, 1 - mi.get("MemFree", 0) / mi["MemTotal"])), 2)


def start_phase(capture):
    """The phase a live capture's experiment starts from: ``01-filled`` if it filled, else
    ``00-before`` (its state just before the first load)."""
    phases = sorted(p for p in (Path(capture) / "phases").iterdir() if p.is_dir())
    for name in ("01-filled", "00-before"):
        for p in phases:
            if p.name == name:
                return p
    raise ValueError(f"{capture}: no 00-before or 01-filled phase")


def read_source(source):
    """Parsed /proc data from a dict, a ``gpalloc live`` capture or phase folder (a capture
    folder means its :func:`start_phase`), or a /proc capture folder."""
    if not isinstance(source, (str, Path)):
        return source
    folder = Path(source)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such directory")
    if (folder / "provenance.json").is_file():
        folder = start_phase(folder)
    if (folder / "phase.json").is_file():
        from ..live.capture import read_phase  # a live capture phase (any OS)
        return read_phase(folder)
    return read_proc_dir(folder)


def source_history(source):
    """The boot history of a live capture folder (earlier traced captures next to it), or None."""
    folder = Path(source)
    if (folder / "provenance.json").is_file():
        folder = start_phase(folder)
    if not (folder / "phase.json").is_file():
        return None
    from ..live.history import boot_history
    return boot_history(folder)


def is_full_capture(proc):
    """Does the data say enough to start the model in the captured state?"""
    zones = proc.get("zoneinfo") or []
    return bool(proc.get("pagetypeinfo") and proc.get("meminfo") and zones
                and all("start_pfn" in z["stats"] for z in zones if z["present"]))


def from_proc(machine_cls, source, load_modules=True, pressure=0.0, **kwargs):
    """A Machine shaped like the captured one (the captured state itself for a full capture)."""
    proc = read_source(source)
    if is_full_capture(proc):
        if pressure not in (0.0, "capture"):
            raise ValueError("pressure: a full capture gives the machine's own state; "
                             f"no background pressure applies (got {pressure!r})")
        if "history" not in kwargs and isinstance(source, (str, Path)):
            kwargs["history"] = source_history(source)
        return from_captured_state(machine_cls, proc, **kwargs)
    m = machine_cls(**{**machine_kwargs(proc), **kwargs})
    m.set_memory_pressure(capture_pressure(proc) if pressure == "capture" else pressure)
    modules = proc.get("modules") or []
    if load_modules and modules:
        play(m.k, module_events(modules))
    m.capture = proc
    return m


# ============================================================================ captured state

class CapturedLayout:
    """The capture's physical layout: zones at their real pfns, holes, unmanaged memory.

    The same interface as gpalloc.mm.mmzone.Layout (zone_spans, reserved, max_pfn,
    pfn_node_zone, is_reserved, free_ranges).
    """

    def __init__(self, zones, max_pfn):
        self.zone_spans, self.reserved, self._init = [], [], {}
        self.nodes = len({z["node"] for z in zones})
        last = max(zones, key=lambda z: z["start"])
        for z in sorted(zones, key=lambda z: z["start"]):
            start, end = z["start"], z["start"] + z["spanned"]
            hole = z["spanned"] - z["present"]
            unmanaged = z["present"] - z["managed"]
            present = [(start, end - hole)]
            if z["zid"] == ZONE_DMA and hole:   # the BIOS area below 1 MiB
                present = [(start, 256 - hole), (256, end)]
            if z is last:    # deferred struct-page init: the zone's top is not in the buddy
                init = _trim_top(present, unmanaged)
            else:            # memblock reservations at the start (ZONE_DMA32: the kernel)
                init = _trim_bottom(present, unmanaged)
            self.zone_spans.append((z["node"], z["zid"], start, end))
            self._init[(z["node"], z["zid"])] = init
        cur = 0
        for s, e in sorted(r for rs in self._init.values() for r in rs):
            if s > cur:
                self.reserved.append((cur, s))
            cur = e
        self.max_pfn = max(max_pfn, last["start"] + last["spanned"])
        if cur < self.max_pfn:
            self.reserved.append((cur, self.max_pfn))
        self.node_pages = self.max_pfn // self.nodes

    def pfn_node_zone(self, pfn):
        """page_to_nid() and page_zonenum() for a pfn (pfns past RAM belong to the last zone)."""
        if not 0 <= pfn < self.max_pfn:
            raise ValueError(f"pfn {pfn:#x} is outside RAM (0..{self.max_pfn:#x})")
        for nid, zid, start, _ in reversed(self.zone_spans):
            if pfn >= start:
                return nid, zid
        return self.zone_spans[0][:2]

    def is_reserved(self, pfn):
        """memblock_is_reserved() (or a hole, or not yet initialised) for a pfn."""
        return any(s <= pfn < e for s, e in self.reserved)

    def free_ranges(self, start, end):
        """The initialised, unreserved [start, end) ranges of a zone span."""
        return sorted(r for rs in self._init.values() for r in rs if start <= r[0] < end)

    def init_ranges(self, nid, zid):
        """The ranges of one zone that the buddy manages."""
        return self._init[(nid, zid)]


def _trim_top(ranges, n):
    out = [list(r) for r in ranges]
    while n and out:
        take = min(n, out[-1][1] - out[-1][0])
        out[-1][1] -= take
        n -= take
        if out[-1][0] == out[-1][1]:
            out.pop()
    return [tuple(r) for r in out]


def _trim_bottom(ranges, n):
    out = [list(r) for r in ranges]
    while n and out:
        take = min(n, out[0][1] - out[0][0])
        out[0][0] += take
        n -= take
        if out[0][0] == out[0][1]:
            out.pop(0)
    return [tuple(r) for r in out]


def captured_zones(proc):
    """The populated zones of zoneinfo with their zone id, as from_captured_state needs them."""
    out = []
    for z in proc["zoneinfo"]:
        if not z["present"] or z["zone"] not in ZONE_NAMES:
            continue
        out.append({"node": z["node"], "zid": ZONE_NAMES.index(z["zone"]), "name": z["zone"],
                    "start": z["stats"]["start_pfn"], "spanned": z["spanned"],
                    "present": z["present"], "managed": z["managed"], "min": z["min"],
                    "low": z["low"], "high": z["high"],
                    "protection": (z["protection"] or [0, 0, 0])[:3],
                    "pagesets": z["pagesets"]})
    return out


def pagetype_counts(proc, node, zone_name):
    """(free[mt][order], pageblocks[mt]) of one zone from pagetypeinfo."""
    pt = proc["pagetypeinfo"]
    free = {mt: [0] * MAX_ORDER for mt in range(3)}
    for row in pt["free"]:
        if row["node"] == node and row["zone"] == zone_name and row["type"] in MIGRATE_TYPE_NAMES:
            free[MIGRATE_TYPE_NAMES.index(row["type"])] = list(row["free"][:MAX_ORDER])
    blocks = {mt: 0 for mt in range(3)}
    for row in pt["blocks"]:
        if row["node"] == node and row["zone"] == zone_name:
            for mt, name in enumerate(MIGRATE_TYPE_NAMES):
                blocks[mt] = row["counts"].get(name, 0)
    return free, blocks


class _ZonePlan:
    """Per-pageblock bookkeeping while a zone's state is laid out (pfn → what it holds)."""

    FREE_OK, RESERVED, BUDDY, PCP, JIT = 0, 1, 2, 3, 4

    def __init__(self, k, zone, init_ranges, rng):
        self.k, self.zone, self.rng = k, zone, rng
        self.blocks = {}   # pageblock index → bytearray(512) of the states above
        for s, e in init_ranges:
            for b in range(s >> pageblock_order, -(-e // PB)):
                cells = self.blocks.setdefault(b, bytearray([self.RESERVED]) * PB)
                lo, hi = max(s, b * PB) - b * PB, min(e, (b + 1) * PB) - b * PB
                cells[lo:hi] = bytes(hi - lo)
        self.mt = dict.fromkeys(self.blocks, MIGRATE_MOVABLE)
        self.free = []     # (pfn, order, mt) placed
        self.pcp = []      # (cpu, mt, pfn)
        self.jit = []      # pfns of captured pack pages
        self.free_at = {}  # (pfn, order) of placed free blocks, for the no-merge rule
        self.whole = {}    # (order, mt) → candidate pageblocks for order ≥ pageblock_order

    def whole_free(self, b):
        cells = self.blocks.get(b)
        return cells is not None and not any(cells)

    def slot_free(self, b, off, size):
        return not any(self.blocks[b][off:off + size])

    def place_free(self, pfn, order, mt):
        b, off = pfn >> pageblock_order, pfn & (PB - 1)
        for i in range(max(1, (1 << order) >> pageblock_order)):
            self.blocks[b + i][off:off + min(1 << order, PB)] = \
                bytes([self.BUDDY]) * min(1 << order, PB)
        self.free.append((pfn, order, mt))
        self.free_at[(pfn, order)] = True

    def merges(self, pfn, order):
        """Would a free block here merge with an already-placed free buddy?"""
        return order < MAX_ORDER - 1 and (pfn ^ (1 << order), order) in self.free_at


def _type_pageblocks(plan, counts, preferred, rng, known=()):
    """Unmovable and Reclaimable pageblocks in aligned pairs; Unmovable in ``preferred`` first.

    Pageblocks the history knows as Unmovable (``known``), then those that share memory
    with a boot reservation, are Unmovable before any other.
    """
    pairs = sorted({b & ~1 for b in plan.blocks})
    rng.shuffle(pairs)
    partial = list(known) + [b for b in sorted(plan.blocks) if plan.RESERVED in plan.blocks[b]]
    first = [p for p in pairs if p in preferred] + [p for p in pairs if p not in preferred]
    for mt, order in ((MIGRATE_UNMOVABLE, [None] + first), (MIGRATE_RECLAIMABLE, pairs)):
        want = counts[mt]
        for p in order:
            for b in (partial if p is None else (p, p + 1)):
                if want and b in plan.blocks and plan.mt[b] == MIGRATE_MOVABLE:
                    plan.mt[b] = mt
                    want -= 1
            if not want:
                break


def _pick(rng, items, cum_weights):
    return rng.choices(items, cum_weights=cum_weights)[0] if items else None


def _place_free_blocks(plan, free, split, rng, known=None):
    """Every captured free block, from order 10 down, where its type and the buddy rules allow.

    Unmovable blocks go first where the history saw pages freed (``known``: candidate
    blocks by order, split down as the buddy allocator would).  Returns the blocks that
    found no place (pages, by migratetype).
    """
    missing = Counter()
    by_type = {mt: [b for b in plan.blocks if plan.mt[b] == mt] for mt in range(3)}
    for order in range(MAX_ORDER - 1, -1, -1):
        for mt in range(3):
            blocks = by_type[mt]
            weights = list(accumulate(SPLIT_WEIGHT if b in split else 1.0 for b in blocks))
            for _ in range(free[mt][order]):
                if mt == MIGRATE_UNMOVABLE and known and _place_known(plan, known, order, mt):
                    continue
                if not _place_one(plan, blocks, weights, order, mt, rng):
                    missing[mt] += 1 << order
    return missing


def _place_known(plan, known, order, mt):
    """Take a block of this order from the candidates (the smallest big enough, split)."""
    for o in range(order, pageblock_order + 1):
        while known.get(o):
            pfn = known[o].pop(0)
            b, off = pfn >> pageblock_order, pfn & (PB - 1)
            if not plan.slot_free(b, off, 1 << o):
                continue
            for lower in range(order, o):   # the unused halves stay candidates
                known.setdefault(lower, []).append(pfn + (1 << lower))
            if plan.merges(pfn, order):
                continue
            plan.place_free(pfn, order, mt)
            return True
    return False


def _place_one(plan, blocks, weights, order, mt, rng):
    size = 1 << order
    if order >= pageblock_order:
        if (order, mt) not in plan.whole:
            plan.whole[(order, mt)] = _whole_candidates(plan, blocks, order, mt, rng)
        cands = plan.whole[(order, mt)]
        while cands:
            b = cands.pop()
            span = size >> pageblock_order
            if all(plan.whole_free(b + i) for i in range(span)) \
                    and not plan.merges(b << pageblock_order, order):
                plan.place_free(b << pageblock_order, order, mt)
                return True
        return False
    for _ in range(64):   # random tries first: most pageblocks have room
        b = _pick(rng, blocks, weights)
        if b is None:
            return False
        off = rng.randrange(PB // size) * size
        pfn = (b << pageblock_order) + off
        if plan.slot_free(b, off, size) and not plan.merges(pfn, order):
            plan.place_free(pfn, order, mt)
            return True
    for b in rng.sample(blocks, len(blocks)):
        for off in range(0, PB, size):
            pfn = (b << pageblock_order) + off
            if plan.slot_free(b, off, size) and not plan.merges(pfn, order):
                plan.place_free(pfn, order, mt)
                return True
    return False


def _known_unmovable(plan, hist, limit):
    """The zone's pageblocks the history saw Unmovable pages in: pack regions first (they
    hold the runtime splits), then the others, most recent first."""
    if hist is None:
        return []
    seen = sorted((t, b) for b, t in hist.unmovable_blocks.items() if b in plan.blocks)
    recent = [b for _, b in reversed(seen)]
    packs = [b for b in recent if b in hist.split_regions]
    return (packs + [b for b in recent if b not in hist.split_regions])[:limit]


def _choose_split(plan, hist, n_split, gb_set, rng):
    """The runtime-split 2 MiB regions: the history's pack regions, then Unmovable at random."""
    def cands(mt):
        return [b for b in plan.blocks if plan.mt[b] == mt
                and (b << pageblock_order) // PAGES_PER_1G not in gb_set]
    known = sorted(r for r in (hist.split_regions if hist else ()) if r in plan.blocks
                   and (r << pageblock_order) // PAGES_PER_1G not in gb_set)[:n_split]
    rest = [b for b in cands(MIGRATE_UNMOVABLE) if b not in known]
    for mt in (MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE):   # more splits than Unmovable pageblocks
        if len(known) + len(rest) < n_split:
            rest += cands(mt)
    return set(known) | set(rng.sample(rest, min(n_split - len(known), len(rest))))


def _recent_unmovable(plan, hist):
    """The history's last freed pages that lie in this zone's Unmovable pageblocks, in order."""
    if hist is None:
        return []
    out = []
    for pfn, order in hist.recent_free:
        if plan.mt.get(pfn >> pageblock_order) == MIGRATE_UNMOVABLE:
            out.extend(range(pfn, pfn + (1 << order)))
    return out


def _history_pcp(plan, z, recent):
    """The run CPU's Unmovable list: the last-freed pages (the list's head), as many as
    UNMOVABLE_PCP_PAGES; marked taken so the free blocks go elsewhere."""
    count = next((ps.get("count", 0) for ps in z["pagesets"] if ps["cpu"] == RUN_CPU), 0)
    want, out, seen = min(count, UNMOVABLE_PCP_PAGES), [], set()
    for pfn in reversed(recent):
        if len(out) >= want:
            break
        b, off = pfn >> pageblock_order, pfn & (PB - 1)
        if pfn not in seen and not plan.blocks[b][off]:
            plan.blocks[b][off] = plan.PCP
            seen.add(pfn)
            out.append((RUN_CPU, MIGRATE_UNMOVABLE, pfn))
    out.reverse()   # placed oldest first: the last one freed ends at the list's head
    return out


def _buddy_blocks_of(plan, pfns):
    """Free-block candidates {order: [pfn]}: maximal aligned blocks of still-free pfns."""
    free = {p for p in pfns if not plan.blocks[p >> pageblock_order][p & (PB - 1)]}
    out = {}
    for pfn in sorted(free):
        if pfn not in free:
            continue
        order = 0
        while order < pageblock_order and not pfn & ((2 << order) - 1) and \
                all(p in free for p in range(pfn, pfn + (2 << order))):
            order += 1
        for p in range(pfn, pfn + (1 << order)):
            free.discard(p)
        out.setdefault(order, []).append(pfn)
    return out


def _buddy_blocks(ranges):
    """The buddy blocks boot frees a range as: the largest aligned block at each step."""
    out = []
    for pfn, end in ranges:
        while pfn < end:
            order = MAX_ORDER - 1
            while order and (pfn & ((1 << order) - 1) or pfn + (1 << order) > end):
                order -= 1
            out.append((pfn, order))
            pfn += 1 << order
    return out


def _whole_candidates(plan, blocks, order, mt, rng):
    """Pageblocks that start a wholly free, aligned block of this order and type, shuffled."""
    span = (1 << order) >> pageblock_order
    out = [b for b in blocks if b % span == 0
           and all(plan.whole_free(b + i) and plan.mt.get(b + i) == mt for i in range(span))]
    rng.shuffle(out)
    return out


def _take_runs(plan, blocks, n, run, rng, state, weights=None):
    """n free pfns in runs of ``run`` consecutive pfns inside ``blocks``, marked ``state``."""
    out = []
    order = list(blocks)
    if weights is not None:
        order = sorted(order, key=lambda b: rng.random() ** (1 / weights[b]), reverse=True)
    else:
        rng.shuffle(order)
    for b in order:
        cells = plan.blocks[b]
        for off in range(0, PB, run):
            if len(out) >= n:
                return out
            for i in range(off, off + run):
                if len(out) < n and not cells[i]:
                    cells[i] = state
                    out.append((b << pageblock_order) + i)
    return out


def _in_use_blocks(cells, base):
    """Maximal aligned blocks over the pageblock's pfns that hold nothing (memory in use)."""
    out, i = [], 0
    while i < PB:
        if cells[i]:
            i += 1
            continue
        order = pageblock_order
        while order and (i & ((1 << order) - 1) or any(cells[i:i + (1 << order)])):
            order -= 1
        out.append((base + i, order))
        i += 1 << order
    return out


def _direct_map_plan(proc, layout, init_ranges, known_gbs=()):
    """(1G GiB indexes, boot 4K regions, runtime-split count) from meminfo and vmstat.

    The GiBs that are not 1G: those the history saw packs in (``known_gbs``), then the
    lowest ones of the last zone's initialised part.
    """
    mi, vs = proc["meminfo"], proc.get("vmstat") or {}
    regions_4k = mi.get("DirectMap4k", 0) // 2048
    l2 = min(vs.get("direct_map_level2_splits", 0) - vs.get("direct_map_level2_collapses", 0),
             regions_4k)
    boot_4k = boot_4k_region_list(max(1, regions_4k - l2) * (2 << 20), layout.max_pfn)
    n1g = mi.get("DirectMap1G", 0) >> 20
    full = list(range(1, layout.max_pfn // PAGES_PER_1G))   # GiB 0 is never a 1G page
    init_gbs = sorted({g for s, e in init_ranges
                       for g in range(s // PAGES_PER_1G, (e - 1) // PAGES_PER_1G + 1)})
    not_1g = []
    for g in sorted(known_gbs & set(full)) + [g for g in init_gbs if g in full] + full:
        if len(full) - len(not_1g) <= n1g:
            break
        if g not in not_1g:
            not_1g.append(g)
    gb = [g for g in full if g not in not_1g]
    return gb, boot_4k, max(0, regions_4k - len(boot_4k))


def from_captured_state(machine_cls, proc, design=None, seed=0, patches=None, history=None,
                        **options):
    """A Machine whose buddy lists, pageblocks, pcp lists and direct map are the capture's.

    ``history``: a gpalloc.live.history.BootHistory of earlier traced phases of the same
    boot (or None): where it knows, it decides the layout instead of the rules.
    """
    zones = captured_zones(proc)
    if not zones:
        raise ValueError("from_proc: zoneinfo lists no populated zone")
    ncpus = max(len(z["pagesets"]) for z in zones) or 1
    nodes = len({z["node"] for z in zones})
    mi = proc["meminfo"]
    dm_pages = sum(mi.get(f"DirectMap{s}", 0) for s in ("4k", "2M", "1G")) // 4
    layout = CapturedLayout(zones, -(-dm_pages // PAGES_PER_2M) * PAGES_PER_2M)
    last = max(zones, key=lambda z: z["start"])
    last_init = layout.init_ranges(last["node"], last["zid"])
    known_gbs = {r * PAGES_PER_2M // PAGES_PER_1G for r in history.split_regions} \
        if history else set()
    gb, boot_4k, n_split = _direct_map_plan(proc, layout, last_init, known_gbs)
    node_mb = layout.node_pages * 4 // MIB // 4 * 4
    m = machine_cls(nodes=nodes, node_mem="256M", cpus_per_node=max(1, ncpus // nodes),
                    seed=seed, design=design, patches=patches, gbpages=bool(gb), **options)
    fresh = type(m.design)(**{key: getattr(m.design, key) for key in m.design.OPTIONS})
    k = m.k = Kernel(nodes=nodes, node_pages=layout.node_pages,
                     cpus_per_node=max(1, ncpus // nodes), gbpages=bool(gb),
                     boot_4k_regions=boot_4k, seed=seed, design=fresh, kaslr=True,
                     faults=m.config["faults"], layout=layout)
    m.config.update(node_mem=f"{node_mb}M", cpus_per_node=k.cpus_per_node, gbpages=bool(gb),
                    boot_4k=f"{len(boot_4k) * 2}M")
    k.pages = PageStore(layout)   # forget the boot's free blocks: the capture's replace them
    rng = random.Random(seed)
    gb_set = set(gb)
    split = set()
    plans = {}
    for z in zones:
        zone = k._zone_by[(z["node"], z["zid"])]
        plan = plans[zone] = _ZonePlan(k, zone, layout.init_ranges(z["node"], z["zid"]), rng)
        free, counts = pagetype_counts(proc, z["node"], z["name"])
        preferred = {b & ~1 for b in plan.blocks
                     if (b << pageblock_order) // PAGES_PER_1G not in gb_set}
        hist = history if z is last else None
        known = _known_unmovable(plan, hist, counts[MIGRATE_UNMOVABLE])
        _type_pageblocks(plan, counts, preferred, rng, known)
        if z is last:
            split = _choose_split(plan, hist, n_split, gb_set, rng)
        if sum(n << o for mt in free for o, n in enumerate(free[mt])) == z["managed"]:
            for pfn, order in _buddy_blocks(layout.init_ranges(z["node"], z["zid"])):
                plan.place_free(pfn, order, plan.mt[pfn >> pageblock_order])   # a fresh zone
            plan.missing = Counter()
        else:
            recent = _recent_unmovable(plan, hist)
            pcp_pfns = _history_pcp(plan, z, recent)
            plan.missing = _place_free_blocks(plan, free, split if z is last else set(), rng,
                                              _buddy_blocks_of(plan, recent))
            plan.pcp += pcp_pfns
        _place_pcp_and_jit(k, plan, z, split if z is last else set(), proc, rng)
    _build_zones(k, zones, plans)
    _build_direct_map(k, gb, boot_4k, split)
    for plan in plans.values():
        _adopt_packs(k, plan)
    k.stat.clear()
    k.events.clear()
    k.cpu = RUN_CPU
    m.capture = proc
    return m


def _place_pcp_and_jit(k, plan, z, split, proc, rng):
    """The per-CPU lists' pages, and (last zone) the captured packs' pages."""
    unmov = [b for b in plan.blocks if plan.mt[b] == MIGRATE_UNMOVABLE]
    movable = [b for b in plan.blocks if plan.mt[b] == MIGRATE_MOVABLE]
    weights = {b: SPLIT_WEIGHT if b in split else 1.0 for b in unmov}
    have = Counter(cpu for cpu, mt, _ in plan.pcp if mt == MIGRATE_UNMOVABLE)
    for ps in z["pagesets"]:
        count = ps.get("count", 0)
        u = min(count, UNMOVABLE_PCP_PAGES) if ps["cpu"] == RUN_CPU else 0
        count, u = count - have[ps["cpu"]], max(0, u - have[ps["cpu"]])
        for pfn in _take_runs(plan, unmov, u, PCP_RUN, rng, plan.PCP, weights):
            plan.pcp.append((ps["cpu"], MIGRATE_UNMOVABLE, pfn))
        for pfn in _take_runs(plan, movable, count - u, 1, rng, plan.PCP):
            plan.pcp.append((ps["cpu"], MIGRATE_MOVABLE, pfn))
    if split:
        for _ in captured_packs(proc):
            plan.jit.append(_take_runs(plan, sorted(split), PAGES_PER_2M, PAGES_PER_2M, rng,
                                       plan.JIT))


def captured_packs(proc):
    """The bpf_prog_pack areas a capture phase lists (phase.json, else vmallocinfo)."""
    meta = proc.get("meta") or {}
    if meta.get("packs") is not None:
        return list(meta["packs"])
    entries = proc.get("vmalloc_jit") or proc.get("vmallocinfo") or []
    return [e["start"] for e in entries if (e.get("caller") or "").startswith(
        ("bpf_prog_pack_alloc", "alloc_new_pack"))]


def _build_zones(k, zones, plans):
    """Free lists, pageblock types, pcp lists, in-use blocks and watermarks of every zone."""
    rng = random.Random(k.seed + 1)
    for z in zones:
        zone = k._zone_by[(z["node"], z["zid"])]
        plan = plans[zone]
        zone.free_area = [[{} for _ in range(3)] for _ in range(MAX_ORDER)]
        zone.nr_free = [0] * MAX_ORDER
        zone.pristine, zone.nr_free_pages = [], 0
        zone.managed_pages = z["managed"]
        zone._watermark = [z["min"], z["low"], z["high"]]
        zone.lowmem_reserve = list(z["protection"]) + [0] * (3 - len(z["protection"]))
        zone.pageblock_mt = {b: mt for b, mt in plan.mt.items() if mt != MIGRATE_MOVABLE}
        order = list(plan.free)
        rng.shuffle(order)   # the free lists' order is not in the capture
        for pfn, o, mt in order:
            add_to_free_list(k, zone, pfn, o, mt)
            zone.nr_free_pages += 1 << o
        for ps in z["pagesets"]:
            pcp = get_pcp(k, zone, ps["cpu"])
            pcp.batch = ps.get("batch", pcp.batch)
            if hasattr(pcp, "high_min"):   # 6.7+ lists: the capture's own sizing
                for key in ("high", "high_min", "high_max"):
                    setattr(pcp, key, ps.get(key, getattr(pcp, key)))
        lists = {}
        for cpu, mt, pfn in plan.pcp:
            page = k.pages.pfn_to_page(pfn)
            page.owner, page.order, page.pcp_mt = OWNER_PCP, 0, mt
            lists.setdefault((cpu, mt), []).append(pfn)
        for (cpu, mt), pfns in lists.items():
            pcp = get_pcp(k, zone, cpu)
            pcp.list_for(mt, 0)[:0] = reversed(pfns)   # the first placed is the list's head
            pcp.count += len(pfns)
        for b, cells in plan.blocks.items():
            owner = OWNER_PAGECACHE if plan.mt[b] == MIGRATE_MOVABLE else OWNER_SLAB
            pool = k.lru if owner == OWNER_PAGECACHE else k.kernel_blocks
            for pfn, o in _in_use_blocks(cells, b << pageblock_order):
                page = k.pages.pfn_to_page(pfn)
                page._refcount, page.owner, page.order = 1, owner, o
                pool[zone.nid].add(pfn, o)


def _adopt_packs(k, plan):
    """The captured packs become the design's own; a design without packs keeps their pages."""
    if not plan.jit or k.design.adopt_captured_packs(k, plan.jit, BOOT_PACK_FREE_CHUNKS):
        return
    for pfns in plan.jit:
        for pfn in pfns:
            page = k.pages.pfn_to_page(pfn)
            page._refcount, page.owner, page.order = 1, OWNER_SLAB, 0
            k.kernel_blocks[page.nid].add(pfn, 0)


def _build_direct_map(k, gb, boot_4k, split):
    """The direct map with the capture's 1G entries and 4K regions; the rest 2M."""
    dm = direct_map(k.max_pfn)
    dm.gb = dict.fromkeys(gb, int(PAGE_KERNEL))
    for p in list(boot_4k) + sorted(split):
        dm.pte[p] = [int(PAGE_KERNEL)] * 512
    regions = k.max_pfn // PAGES_PER_2M
    dm.direct_pages_count = [0, 512 * len(dm.pte), regions - len(dm.pte) - 512 * len(dm.gb),
                             len(dm.gb)]
    k.dmap = dm
    k.boot_4k_regions = frozenset(boot_4k)
