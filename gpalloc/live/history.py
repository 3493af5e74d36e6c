"""What the traced phases of earlier captures on the same boot say about a machine's layout.

A capture's /proc files give counts; they do not say *where* the free blocks are or which
2 MiB regions are already split.  The kmem traces of the runs made earlier on the same boot
do, for the pages those runs touched (gpalloc.live.placement):

* ``split_regions`` — every 2 MiB region that held a page of a bpf_prog_pack: the pack was
  made read-only page by page, so its regions have been mapped with 4K pages since;
* ``unmovable_blocks`` — pageblocks the kernel handed Unmovable pages out of (pack pages,
  ``struct bpf_prog`` pages, page tables, slab), most recent last;
* ``recent_free`` — the pages the last traced close gave back (pack and program pages, the
  filters' slab), in the order they were freed: the head of the per-CPU lists and the
  Unmovable free blocks the next run starts from.

These are measurements of the machine state *before* the capture (``Machine.from_proc``
uses them when a capture folder sits among earlier captures of its boot), never of the
capture's own outcome.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

from .capture import read_phase
from .placement import extfrag, pack_pages

PMD_PAGES_SHIFT, PAGEBLOCK_SHIFT = 9, 9


@dataclass
class BootHistory:
    """Placement facts from earlier traced phases of one boot (see the module docstring)."""

    captures: list = field(default_factory=list)
    split_regions: set = field(default_factory=set)
    unmovable_blocks: dict = field(default_factory=dict)   # pageblock → recency (higher = later)
    recent_free: list = field(default_factory=list)        # (pfn, order), oldest free first


def _provenance(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "provenance.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def boot_history(phase_folder) -> BootHistory | None:
    """The history of a capture phase folder (``<root>/<capture>/phases/<phase>``), or None.

    None when the folder is not inside a capture, or no earlier capture of its boot (same
    ``boot_id``, earlier ``uptime_at_start_s``) next to it was traced.
    """
    capture = Path(phase_folder).resolve().parent.parent
    prov = _provenance(capture)
    if prov is None or not prov.get("boot_id"):
        return None
    hist = _history(str(capture.parent), prov["boot_id"], prov["uptime_at_start_s"])
    return hist if hist.captures else None


def _history(root: str, boot_id: str, before_s: float) -> BootHistory:
    earlier = []
    for folder in sorted(Path(root).iterdir()):
        prov = _provenance(folder)
        if prov and prov.get("boot_id") == boot_id and prov["uptime_at_start_s"] < before_s:
            earlier.append((prov["uptime_at_start_s"], str(folder)))
    hist, tick = BootHistory(), 0
    for _, folder in sorted(earlier):
        facts = _capture_facts(folder)
        if not facts["traced"]:
            continue
        hist.captures.append(Path(folder).name)
        hist.split_regions |= facts["split"]
        for b, t in facts["unmovable"].items():
            hist.unmovable_blocks[b] = tick + t
        tick += facts["ticks"]
        if facts["freed"]:
            hist.recent_free = facts["freed"]
    return hist


@functools.lru_cache(maxsize=64)
def _capture_facts(folder: str) -> dict:
    """One capture's traced rounds: pack regions, Unmovable pageblocks (with a recency
    tick), and the pages its last traced close freed."""
    phases = [read_phase(p) for p in sorted((Path(folder) / "phases").iterdir()) if p.is_dir()]
    out = {"traced": False, "split": set(), "unmovable": {}, "ticks": 0, "freed": []}
    tick = 0
    for loaded, closed in zip(phases, phases[1:], strict=False):
        if "-loaded-" not in loaded["name"] or "trace" not in loaded:
            continue
        out["traced"] = True
        events, freed = loaded["trace"], closed.get("trace", [])
        packs = pack_pages(events, freed)
        out["split"] |= {pfn >> PMD_PAGES_SHIFT for pfn in packs}
        for e in events:
            if e["pfn"] and e["migratetype"] == 0 and e["event"] in (
                    "mm_page_alloc", "mm_page_alloc_zone_locked"):
                tick += 1
                out["unmovable"][e["pfn"] >> PAGEBLOCK_SHIFT] = tick
        for e in extfrag(events):
            if e["migratetype"] == 0 and e["change_ownership"]:
                tick += 1
                for b in (e["pfn"] >> 10 << 1, (e["pfn"] >> 10 << 1) + 1):
                    out["unmovable"][b] = tick
        tick += 1
        for pfn in packs:
            out["unmovable"][pfn >> PAGEBLOCK_SHIFT] = tick
        if freed:
            out["freed"] = [(e["pfn"], e["order"]) for e in freed
                            if e["event"] == "mm_page_free" and e["pfn"]]
    out["ticks"] = tick
    return out
