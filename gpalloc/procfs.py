"""Parsers for real ``/proc`` files, so a notebook can set the model beside a real machine.

Each parser takes a path or the file's text and returns plain data (dicts, lists, ints):

* ``parse_meminfo``     /proc/meminfo     -> ``{"MemTotal": kB, ..., "HugePages_Total": count}``
* ``parse_buddyinfo``   /proc/buddyinfo   -> ``[{node, zone, free: [count per order], snapshot}]``
* ``parse_vmallocinfo`` /proc/vmallocinfo -> ``[{start, end, size, caller, pages, flags, ...}]``
* ``parse_zoneinfo``    /proc/zoneinfo    -> ``[{node, zone, free, min, low, high, managed, ...}]``
* ``parse_pagetypeinfo`` /proc/pagetypeinfo -> ``{page_block_order, pages_per_block, free, blocks}``
* ``parse_vmstat``      /proc/vmstat      -> ``{"nr_free_pages": n, ...}``
* ``parse_slabinfo``    /proc/slabinfo    -> ``[{name, active_objs, num_objs, objsize, ...}]``
* ``parse_modules``     /proc/modules (m_show() in kernel/module.c) or lsmod -> ``[Module]``,
  re-exported from ``gpalloc.workloads.lsmod``

``read_proc_dir`` reads whichever of these files a folder holds (``data/machines/<name>/``, see
its README for where each capture comes from), and ``read_running_machine`` reads this machine's
``/proc``.

Input: ``path_or_text`` is a ``pathlib.Path`` (any ``os.PathLike``), a file name (a ``str`` with
no newline), or the text itself (a ``str`` containing a newline, or ``""``), the same rule as
``parse_modules``; ``name=`` overrides the label used in errors.  Every parser here skips blank
lines, ``#`` comment lines (the ``data/machines/ml-*`` captures start with a ``#`` provenance
header) and shell-prompt lines such as ``[root@host ~]# cat /proc/meminfo`` (the xeon6230
capture is a terminal log); ``parse_modules`` skips blank lines only.

Errors: a line that is not in the file's format raises ``ValueError("FILE:LINE: <what is
wrong>")``, FILE being the path or ``"<text>"``.  An input with no data lines raises
``ValueError("FILE: ...")``: an empty file is an error, never an empty result.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from gpalloc.sources import long_number, read_source
from gpalloc.workloads.lsmod import Module, parse_modules

__all__ = [
    "Module",
    "VMALLOC_CATEGORIES",
    "VMALLOC_FLAGS",
    "classify_vmalloc_caller",
    "free_pages",
    "order9_capable_blocks",
    "parse_buddyinfo",
    "parse_meminfo",
    "parse_modules",
    "parse_pagetypeinfo",
    "parse_slabinfo",
    "parse_vmallocinfo",
    "parse_vmstat",
    "parse_zoneinfo",
    "read_proc_dir",
    "read_running_machine",
    "vmalloc_summary",
]

PROC_FILES = ("meminfo", "buddyinfo", "vmallocinfo", "modules", "zoneinfo")


class _LineError(Exception):
    """A problem with one line; turned into ``ValueError("FILE:LINE: ...")``."""


# ---------------------------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------------------------

# Bash's default prompt on RHEL/CentOS/Fedora: "[user@host dir]# cmd" or "...]$ cmd".
_PROMPT_RE = re.compile(r"\[[^\]\s@]+@[^\]\s]+(?: [^\]]*)?\][#$](?:\s.*)?\Z")


def _lines(text: str, label: str) -> Iterator[tuple[int, str]]:
    """(line number, line without trailing white space), skipping blank/comment/prompt lines.

    A line with a number too long to be one is an error here, for every parser.
    """
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or _PROMPT_RE.match(stripped):
            continue
        if problem := long_number(line):
            raise ValueError(f"{label}:{lineno}: {problem}")
        yield lineno, line


def _digits(token: str) -> bool:
    """A non-negative decimal integer in ASCII (str.isdigit() also takes '²', int() does not)."""
    return token.isascii() and token.isdigit()


def _int(token: str, what: str) -> int:
    if not re.fullmatch(r"-?[0-9]+", token):
        raise _LineError(f"{what} {token!r} is not an integer")
    return int(token)


# ---------------------------------------------------------------------------------------------
# /proc/meminfo
# ---------------------------------------------------------------------------------------------

_MEMINFO_RE = re.compile(r"([A-Za-z][A-Za-z0-9_()]*):\s+([0-9]+)(?:\s+(\S+))?\Z")


def parse_meminfo(path_or_text: str | os.PathLike, name: str | None = None) -> dict[str, int]:
    """Parse /proc/meminfo (meminfo_proc_show() in fs/proc/meminfo.c) into ``{key: value}``.

    Values with a ``kB`` unit are returned in kB; lines without a unit (``HugePages_Total``,
    ``HugePages_Free``, ...) are plain counts.  Order is kept; a repeated key is an error.
    """
    text, label = read_source(path_or_text, name)
    out: dict[str, int] = {}
    first: dict[str, int] = {}
    for lineno, line in _lines(text, label):
        try:
            match = _MEMINFO_RE.fullmatch(line.strip())
            if not match:
                raise _LineError(f"not a meminfo line 'Key:  <number> [kB]': {line.strip()!r}")
            key, value, unit = match.groups()
            if unit is not None and unit != "kB":
                raise _LineError(f"{key}: unit {unit!r} is not 'kB'")
            if key in first:
                raise _LineError(f"duplicate key {key!r} (first on line {first[key]})")
        except _LineError as exc:
            raise ValueError(f"{label}:{lineno}: {exc}") from None
        first[key] = lineno
        out[key] = int(value)
    if not out:
        raise ValueError(f"{label}: no meminfo lines found")
    return out


# ---------------------------------------------------------------------------------------------
# /proc/buddyinfo
# ---------------------------------------------------------------------------------------------

_BUDDY_RE = re.compile(r"Node\s+([0-9]+),\s+zone\s+(\S+)((?:\s+\S+)+)\Z")


def parse_buddyinfo(path_or_text: str | os.PathLike, name: str | None = None) -> list[dict]:
    """Parse /proc/buddyinfo (frag_show() in mm/vmstat.c) into one dict per node and zone.

    Each dict is ``{"node": int, "zone": str, "free": [free blocks of order 0, 1, ...],
    "snapshot": int}``.  x86-64 prints 11 orders (0..10, MAX_ORDER = 11 up to 6.3, and
    MAX_PAGE_ORDER = 10 after); other configurations print more or fewer, so any count is
    accepted as long as every line of the file has the same.  A file may hold several
    ``cat /proc/buddyinfo`` snapshots one after another: a (node, zone) seen again starts
    snapshot 1, 2, ...
    """
    text, label = read_source(path_or_text, name)
    entries: list[dict] = []
    seen: dict[tuple[int, str], int] = {}
    snapshot = 0
    orders: int | None = None
    for lineno, line in _lines(text, label):
        try:
            match = _BUDDY_RE.fullmatch(line.strip())
            if not match:
                raise _LineError(
                    f"not a buddyinfo line 'Node N, zone NAME count count ...': {line.strip()!r}"
                )
            node, zone = int(match.group(1)), match.group(2)
            free = []
            for token in match.group(3).split():
                if not _digits(token):
                    raise _LineError(f"free count {token!r} is not a non-negative integer")
                free.append(int(token))
            if orders is None:
                orders = len(free)
            elif len(free) != orders:
                raise _LineError(f"{len(free)} order columns, earlier lines have {orders}")
            if (node, zone) in seen:
                snapshot += 1
                seen = {}
        except _LineError as exc:
            raise ValueError(f"{label}:{lineno}: {exc}") from None
        seen[(node, zone)] = lineno
        entries.append({"node": node, "zone": zone, "free": free, "snapshot": snapshot})
    if not entries:
        raise ValueError(f"{label}: no buddyinfo lines found")
    return entries


def _select(entries: list[dict], node: int | None, zone: str | None,
            snapshot: int | None) -> list[dict]:
    snapshots = sorted({e.get("snapshot", 0) for e in entries})
    if snapshot is None:
        if len(snapshots) > 1:
            raise ValueError(f"entries hold {len(snapshots)} buddyinfo snapshots "
                             f"{snapshots}; pass snapshot=")
    elif snapshot not in snapshots:
        raise ValueError(f"no snapshot {snapshot}; entries hold {snapshots}")
    return [e for e in entries
            if (node is None or e["node"] == node) and (zone is None or e["zone"] == zone)
            and (snapshot is None or e.get("snapshot", 0) == snapshot)]


def free_pages(entries: list[dict], node: int | None = None, zone: str | None = None,
               snapshot: int | None = None) -> int:
    """Free 4 KiB pages in buddyinfo entries: sum of count[order] * 2**order."""
    return sum(n << order for e in _select(entries, node, zone, snapshot)
               for order, n in enumerate(e["free"]))


def order9_capable_blocks(entries: list[dict], node: int | None = None,
                          zone: str | None = None, snapshot: int | None = None) -> int:
    """Free 2 MiB (order-9) blocks in buddyinfo entries: order-9 count + 2 x order-10 count.

    Orders above 10 (kernels with a larger MAX_ORDER) count 2**(order - 9) blocks each.
    ``node``/``zone`` restrict the sum; ``snapshot`` must be given when ``entries`` holds more
    than one snapshot.
    """
    return sum(n << (order - 9) for e in _select(entries, node, zone, snapshot)
               for order, n in enumerate(e["free"]) if order >= 9)


# ---------------------------------------------------------------------------------------------
# /proc/vmallocinfo
# ---------------------------------------------------------------------------------------------

# The words s_show() prints for vm_struct flags, in its order (" sparse" since 6.9).
VMALLOC_FLAGS = ("ioremap", "sparse", "vmalloc", "vmap", "user", "dma-coherent", "vpages")
UNPURGED = "unpurged vm_area"
VM_MAP_RAM = "vm_map_ram"

_RANGE_RE = re.compile(r"0x([0-9a-fA-F]+)-0x([0-9a-fA-F]+)\Z")
# %pS: "symbol+0xoff/0xsize" (symbols may contain '.', e.g. foo.isra.0), or a bare address
# when kallsyms cannot name it.  A module symbol is followed by " [module]".
_CALLER_RE = re.compile(r"(?:[A-Za-z_.$][A-Za-z0-9_.$]*\+0x[0-9a-f]+/0x[0-9a-f]+|0x[0-9a-f]+)\Z")
_MODNAME_RE = re.compile(r"\[([A-Za-z0-9_-]+)\]\Z")
_PAGES_RE = re.compile(r"pages=([0-9]+)\Z")
_PHYS_RE = re.compile(r"phys=(?:0x)?([0-9a-fA-F]+)\Z")
_NODE_RE = re.compile(r"N([0-9]+)=([0-9]+)\Z")
_KERNEL_HALF = 0xFFFF800000000000   # real x86-64 kernel addresses; %pK hashes are < 2**32


def _is_attribute(token: str) -> bool:
    return bool(token in VMALLOC_FLAGS or _PAGES_RE.match(token) or _PHYS_RE.match(token)
                or _NODE_RE.match(token))


def _vmalloc_entry(line: str) -> dict:
    tokens = line.split()
    if len(tokens) < 2:
        raise _LineError(f"not a vmallocinfo line '0xSTART-0xEND SIZE ...': {line.strip()!r}")
    rng = _RANGE_RE.match(tokens[0])
    if not rng:
        raise _LineError(f"address range {tokens[0]!r} is not 0xSTART-0xEND")
    start, end = int(rng.group(1), 16), int(rng.group(2), 16)
    if not _digits(tokens[1]):
        raise _LineError(f"size {tokens[1]!r} is not a non-negative integer")
    size = int(tokens[1])
    if start >= _KERNEL_HALF and end >= _KERNEL_HALF and end - start != size:
        raise _LineError(f"size {size} != end - start = {end - start}")
    entry = {"start": start, "end": end, "size": size, "caller": None, "module": None,
             "pages": 0, "phys": None, "flags": [], "nodes": {}, "unpurged": False,
             "vm_map_ram": False}
    rest = tokens[2:]
    if " ".join(rest) == UNPURGED:
        entry.update(caller=UNPURGED, unpurged=True)
        return entry
    if rest == [VM_MAP_RAM]:
        entry.update(caller=VM_MAP_RAM, vm_map_ram=True)
        return entry
    i = 0
    if rest and not _is_attribute(rest[0]):
        if not _CALLER_RE.match(rest[0]):
            raise _LineError(f"caller {rest[0]!r} is not 'symbol+0xOFF/0xSIZE' or an address")
        entry["caller"] = rest[0]
        i = 1
        if i < len(rest) and rest[i].startswith("["):
            mod = _MODNAME_RE.match(rest[i])
            if not mod:
                raise _LineError(f"module name {rest[i]!r} is not '[name]'")
            entry["caller"] += " " + rest[i]
            entry["module"] = mod.group(1)
            i += 1
    # s_show() prints pages=, phys=, the flag words, then N<node>= counts, in that order.
    stage = 0
    for token in rest[i:]:
        if m := _PAGES_RE.match(token):
            now, entry["pages"] = 1, int(m.group(1))
        elif m := _PHYS_RE.match(token):
            now, entry["phys"] = 2, int(m.group(1), 16)
        elif token in VMALLOC_FLAGS:
            now = 3 + VMALLOC_FLAGS.index(token)
            entry["flags"].append(token)
        elif m := _NODE_RE.match(token):
            now = 3 + len(VMALLOC_FLAGS)
            nid = int(m.group(1))
            if nid in entry["nodes"]:
                raise _LineError(f"node N{nid}= given twice")
            entry["nodes"][nid] = int(m.group(2))
            if stage == now:
                continue
        else:
            raise _LineError(f"unexpected {token!r} (known: pages=N, phys=ADDR, "
                             f"{'/'.join(VMALLOC_FLAGS)}, N<node>=PAGES)")
        if now <= stage:
            raise _LineError(f"{token!r} is repeated or out of order")
        stage = now
    if entry["nodes"] and sum(entry["nodes"].values()) != entry["pages"]:
        raise _LineError(f"N<node>= counts add up to {sum(entry['nodes'].values())}, "
                         f"not pages={entry['pages']}")
    return entry


def parse_vmallocinfo(path_or_text: str | os.PathLike, name: str | None = None) -> list[dict]:
    """Parse /proc/vmallocinfo (s_show() in mm/vmalloc.c) into one dict per vmap area.

    (6.x renamed the function vmalloc_info_show(); the format is unchanged apart from the
    ``sparse`` flag word.)
    Each dict has ``start``, ``end`` (ints; hashed by ``%pK`` on >= 4.15 kernels, all zero
    for readers without the right to see them), ``size`` (bytes, including the guard page),
    ``caller`` (the ``%pS`` text, e.g. ``"load_module+0x1c/0x2b0"`` or
    ``"os_alloc_mem+0x9d/0x130 [nvidia]"``; ``None`` if not printed), ``module`` (the
    ``[name]`` part or ``None``), ``pages`` (``pages=``, else 0), ``phys`` (``phys=`` or
    ``None``), ``flags`` (list of words from ``VMALLOC_FLAGS``), ``nodes`` ({node: pages} from
    ``N<node>=``), ``unpurged`` and ``vm_map_ram`` (bools).  ``"unpurged vm_area"`` lines
    (lazily freed areas awaiting purge) and ``"vm_map_ram"`` lines use that text as caller.
    """
    text, label = read_source(path_or_text, name)
    entries = []
    for lineno, line in _lines(text, label):
        try:
            entries.append(_vmalloc_entry(line))
        except _LineError as exc:
            raise ValueError(f"{label}:{lineno}: {exc}") from None
    if not entries:
        raise ValueError(f"{label}: no vmallocinfo lines found")
    return entries


VMALLOC_CATEGORIES = ("module_core", "execmem", "bpf_jit_exec", "bpf_prog_struct",
                      "ftrace_trampoline", "kprobe_insn_page", "called_from_module_code",
                      "unpurged", "other")

# Functions that appear as the vmalloc caller (the caller of __vmalloc_node_range()), by
# kernel: 2.6 printed module_alloc itself; 4.18 inlines module_alloc into layout_and_allocate;
# 5.x prints move_module / bpf_jit_alloc_exec / alloc_insn_page / alloc_tramp; 6.4-6.9 print
# module_memory_alloc; >= 6.10 routes all executable memory through execmem_alloc.
_CALLER_CATEGORY = {
    "module_alloc": "module_core",
    "move_module": "module_core",
    "layout_and_allocate": "module_core",
    "load_module": "module_core",
    "module_memory_alloc": "module_core",
    "execmem_alloc": "execmem",
    "execmem_vmalloc": "execmem",
    "execmem_cache_populate": "execmem",
    "bpf_jit_binary_alloc": "bpf_jit_exec",
    "bpf_jit_binary_pack_alloc": "bpf_jit_exec",
    "bpf_jit_alloc_exec": "bpf_jit_exec",
    "bpf_jit_alloc_exec_page": "bpf_jit_exec",
    "bpf_prog_pack_alloc": "bpf_jit_exec",
    "alloc_new_pack": "bpf_jit_exec",
    "arch_alloc_bpf_trampoline": "bpf_jit_exec",
    "bpf_prog_alloc": "bpf_prog_struct",
    "bpf_prog_alloc_no_stats": "bpf_prog_struct",
    "bpf_prog_realloc": "bpf_prog_struct",
    "bpf_prog_clone_create": "bpf_prog_struct",
    "bpf_jit_blind_constants": "bpf_prog_struct",
    "arch_ftrace_update_trampoline": "ftrace_trampoline",
    "create_trampoline": "ftrace_trampoline",
    "alloc_tramp": "ftrace_trampoline",
    "alloc_insn_page": "kprobe_insn_page",
    "alloc_optinsn_page": "kprobe_insn_page",
    "__get_insn_slot": "kprobe_insn_page",
}

# x86-64 module mapping space (MODULES_VADDR .. MODULES_END), with or without KASLR.
_MODULES_START, _MODULES_END = 0xFFFFFFFFA0000000, 0xFFFFFFFFFF000000


def classify_vmalloc_caller(caller: str | None) -> str:
    """Map a /proc/vmallocinfo caller (s_show() in mm/vmalloc.c) to a ``VMALLOC_CATEGORIES`` name.

    The categories are those of the team's ``vmallocinfo-summary.csv``: module_core (module
    text/data), execmem (6.10+: module/BPF/ftrace/kprobe text), bpf_jit_exec (JIT images and
    packs), bpf_prog_struct (``struct bpf_prog``, not executable), ftrace_trampoline,
    kprobe_insn_page, unpurged (``"unpurged vm_area"``), called_from_module_code (a bare
    address in module space: %pS could not name it, e.g. a module's freed __init code), and
    other (everything else, including ``None`` and ``"vm_map_ram"``).
    """
    if caller is None:
        return "other"
    if caller == UNPURGED:
        return "unpurged"
    symbol = caller.split()[0]
    if re.fullmatch(r"0x[0-9a-fA-F]+", symbol):
        in_modules = _MODULES_START <= int(symbol, 16) < _MODULES_END
        return "called_from_module_code" if in_modules else "other"
    return _CALLER_CATEGORY.get(symbol.split("+")[0], "other")


def vmalloc_summary(entries: list[dict]) -> dict[str, dict]:
    """Per ``classify_vmalloc_caller`` category: ``{"areas", "bytes", "pages", "nodes"}``.

    ``bytes`` sums the size column (guard pages included), ``nodes`` sums ``N<node>=``.
    Categories with no areas are left out.
    """
    out: dict[str, dict] = {}
    for e in entries:
        s = out.setdefault(classify_vmalloc_caller(e["caller"]),
                           {"areas": 0, "bytes": 0, "pages": 0, "nodes": {}})
        s["areas"] += 1
        s["bytes"] += e["size"]
        s["pages"] += e["pages"]
        for nid, pages in e["nodes"].items():
            s["nodes"][nid] = s["nodes"].get(nid, 0) + pages
    return out


# ---------------------------------------------------------------------------------------------
# /proc/zoneinfo
# ---------------------------------------------------------------------------------------------

_ZONE_RE = re.compile(r"Node\s+([0-9]+),\s+zone\s+(\S+)\Z")
_FREE_RE = re.compile(r"pages free\s+([0-9]+)\Z")
_PROTECTION_RE = re.compile(r"protection:\s*\(([-0-9,\s]*)\)\Z")
_KEY_VALUE_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s+(-?[0-9]+)\Z")
_COLON_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_ ]*):\s+(-?[0-9]+)\Z")
_PAGESET_KEYS = {"cpu", "count", "high", "batch", "high_min", "high_max", "vm stats threshold"}
_ZONE_FIELDS = ("min", "low", "high", "spanned", "present", "managed")


def _check_zone(zone: dict, label: str, header_line: int) -> None:
    for key in ("free", "min", "low", "high"):
        if zone[key] is None:
            what = "pages free" if key == "free" else key
            raise ValueError(f"{label}:{header_line}: zone Node {zone['node']}, {zone['zone']} "
                             f"has no '{what}' line")


def parse_zoneinfo(path_or_text: str | os.PathLike, name: str | None = None) -> list[dict]:
    """Parse /proc/zoneinfo (zoneinfo_show() in mm/vmstat.c) into one dict per node and zone.

    Each dict has ``node``, ``zone``, ``free`` (``pages free``), the ``min``/``low``/``high``
    watermarks, ``spanned``, ``present``, ``managed`` (``None`` on kernels before 3.8, which do
    not print it), ``protection`` (lowmem_reserve list or ``None``), ``stats`` (the zone's other
    ``name value`` lines, e.g. ``nr_free_pages``, ``boost``, ``start_pfn``) and ``node_stats``
    (the ``per-node stats`` block, printed once per node with its first zone; else ``{}``)
    and ``pagesets`` (one dict per CPU: ``cpu``, ``count``, ``high``, ``batch`` and, from
    6.7, ``high_min``/``high_max``; ``[]`` for zones that print none).  All counts are in
    4 KiB pages.
    """
    text, label = read_source(path_or_text, name)
    zones: list[dict] = []
    zone: dict | None = None
    header_line = 0
    section = ""
    seen: dict[tuple[int, str], int] = {}
    for lineno, line in _lines(text, label):
        stripped = line.strip()
        try:
            if match := _ZONE_RE.fullmatch(stripped):
                if zone is not None:
                    _check_zone(zone, label, header_line)
                key = (int(match.group(1)), match.group(2))
                if key in seen:
                    raise _LineError(f"zone Node {key[0]}, {key[1]} repeated "
                                     f"(first on line {seen[key]})")
                seen[key] = lineno
                zone = {"node": key[0], "zone": key[1], "free": None, "min": None,
                        "low": None, "high": None, "spanned": None, "present": None,
                        "managed": None, "protection": None, "stats": {}, "node_stats": {},
                        "pagesets": []}
                zones.append(zone)
                header_line, section = lineno, "zone"
                continue
            if zone is None:
                raise _LineError(f"expected 'Node N, zone NAME' first, got {stripped!r}")
            if stripped == "per-node stats":
                if section != "zone" or zone["free"] is not None or zone["node_stats"]:
                    raise _LineError("'per-node stats' must come right after the zone header")
                section = "node_stats"
            elif match := _FREE_RE.fullmatch(stripped):
                if zone["free"] is not None or section == "pagesets":
                    raise _LineError("'pages free' repeated or after pagesets")
                zone["free"], section = int(match.group(1)), "zone"
            elif match := _PROTECTION_RE.fullmatch(stripped):
                values = [v.strip() for v in match.group(1).split(",")]
                zone["protection"] = [_int(v, "protection value") for v in values]
            elif stripped == "pagesets":
                section = "pagesets"
            elif match := _KEY_VALUE_RE.fullmatch(stripped):
                key, value = match.group(1), int(match.group(2))
                if section == "node_stats":
                    target = zone["node_stats"]
                elif section == "pagesets":
                    raise _LineError(f"{key!r} without ':' inside pagesets")
                elif key in _ZONE_FIELDS:
                    target = zone
                else:
                    target = zone["stats"]
                if target.get(key) is not None:
                    raise _LineError(f"{key!r} repeated in this zone")
                target[key] = value
            elif match := _COLON_RE.fullmatch(stripped):
                key, value = match.group(1), int(match.group(2))
                if section == "pagesets" and key in _PAGESET_KEYS:
                    if key == "cpu":
                        zone["pagesets"].append({"cpu": value})
                    elif key != "vm stats threshold" and zone["pagesets"]:
                        zone["pagesets"][-1][key] = value
                    continue
                if key in zone["stats"]:
                    raise _LineError(f"{key!r} repeated in this zone")
                zone["stats"][key] = value
            elif section == "node_stats" and re.fullmatch(r"[0-9]+", stripped):
                # RHEL 8.0's 4.18 kernel prints one node counter with an empty name.
                continue
            else:
                raise _LineError(f"not a zoneinfo line: {stripped!r}")
        except _LineError as exc:
            raise ValueError(f"{label}:{lineno}: {exc}") from None
    if zone is None:
        raise ValueError(f"{label}: no zoneinfo lines found")
    _check_zone(zone, label, header_line)
    return zones


# ---------------------------------------------------------------------------------------------
# /proc/pagetypeinfo
# ---------------------------------------------------------------------------------------------

_PT_ORDER_RE = re.compile(r"Page block order:\s+([0-9]+)\Z")
_PT_PER_BLOCK_RE = re.compile(r"Pages per block:\s+([0-9]+)\Z")
_PT_FREE_HEAD_RE = re.compile(r"Free pages count per migrate type at order((?:\s+[0-9]+)+)\Z")
_PT_FREE_RE = re.compile(r"Node\s+([0-9]+),\s+zone\s+(\S+),\s+type\s+(\S+)((?:\s+>?[0-9]+)+)\Z")
_PT_TABLE_HEAD_RE = re.compile(r"Number of (blocks|mixed blocks) type((?:\s+\S+)+)\Z")
_PT_TABLE_RE = re.compile(r"Node\s+([0-9]+),\s+zone\s+(\S+)((?:\s+[0-9]+)+)\Z")
# pagetypeinfo_showfree_print() (5.6+) stops counting at 100000 and prints ">100000".
PAGETYPEINFO_FREE_CAP = 100000


def _pt_row(label: str, lineno: int, what: str, tokens: list[str], width: int) -> list[int]:
    if len(tokens) != width:
        raise ValueError(f"{label}:{lineno}: {len(tokens)} {what} columns, the header has {width}")
    return [int(t.lstrip(">")) for t in tokens]


def parse_pagetypeinfo(path_or_text: str | os.PathLike, name: str | None = None) -> dict:
    """Parse /proc/pagetypeinfo (pagetypeinfo_show() in mm/vmstat.c).

    Returns ``{"page_block_order": int, "pages_per_block": int, "orders": [0, 1, ...],
    "migratetypes": [names from the block table header], "free": [{node, zone, type, free:
    [count per order], capped: [orders printed as ">100000"]}], "blocks": [{node, zone,
    counts: {migratetype: pageblocks}}], "mixed": [...]}``.  ``free`` is the "Free pages count
    per migrate type" table (free *blocks* of each order, as buddyinfo counts them; counts of
    100000 and more print as ">100000" since 5.6 and read as 100000 with the order listed in
    ``capped``); ``blocks`` is "Number of blocks type" (pageblocks whose migratetype is each
    type); ``mixed`` is "Number of mixed blocks" (only with CONFIG_PAGE_OWNER, else ``[]``).
    """
    text, label = read_source(path_or_text, name)
    out: dict = {"page_block_order": None, "pages_per_block": None, "orders": None,
                 "migratetypes": None, "free": [], "blocks": [], "mixed": []}
    table: str | None = None
    columns: list[str] = []
    seen: set[tuple] = set()
    for lineno, line in _lines(text, label):
        stripped = line.strip()
        if match := _PT_ORDER_RE.fullmatch(stripped):
            out["page_block_order"] = int(match.group(1))
        elif match := _PT_PER_BLOCK_RE.fullmatch(stripped):
            out["pages_per_block"] = int(match.group(1))
        elif match := _PT_FREE_HEAD_RE.fullmatch(stripped):
            out["orders"] = [int(t) for t in match.group(1).split()]
            table = "free"
        elif match := _PT_TABLE_HEAD_RE.fullmatch(stripped):
            table = "blocks" if match.group(1) == "blocks" else "mixed"
            columns = match.group(2).split()
            if table == "blocks":
                out["migratetypes"] = columns
        elif table == "free" and (match := _PT_FREE_RE.fullmatch(stripped)):
            node, zone, mtype = int(match.group(1)), match.group(2), match.group(3)
            if (node, zone, mtype) in seen:
                raise ValueError(f"{label}:{lineno}: Node {node}, zone {zone}, type {mtype} "
                                 "repeated")
            seen.add((node, zone, mtype))
            tokens = match.group(4).split()
            free = _pt_row(label, lineno, "order", tokens, len(out["orders"]))
            capped = [o for o, t in zip(out["orders"], tokens, strict=True) if t.startswith(">")]
            out["free"].append({"node": node, "zone": zone, "type": mtype, "free": free,
                                "capped": capped})
        elif table in ("blocks", "mixed") and (match := _PT_TABLE_RE.fullmatch(stripped)):
            counts = _pt_row(label, lineno, "migratetype", match.group(3).split(), len(columns))
            out[table].append({"node": int(match.group(1)), "zone": match.group(2),
                               "counts": dict(zip(columns, counts, strict=True))})
        else:
            where = f"in the {table} table" if table else "before any table"
            raise ValueError(f"{label}:{lineno}: not a pagetypeinfo line {where}: {stripped!r}")
    if not out["free"] and not out["blocks"]:
        raise ValueError(f"{label}: no pagetypeinfo tables found")
    for key, what in (("page_block_order", "Page block order:"),
                      ("pages_per_block", "Pages per block:")):
        if out[key] is None:
            raise ValueError(f"{label}: no '{what}' line")
    return out


# ---------------------------------------------------------------------------------------------
# /proc/vmstat
# ---------------------------------------------------------------------------------------------

_VMSTAT_RE = re.compile(r"([a-z_][a-z0-9_]*) (-?[0-9]+)\Z")


def parse_vmstat(path_or_text: str | os.PathLike, name: str | None = None) -> dict[str, int]:
    """Parse /proc/vmstat (vmstat_show() in mm/vmstat.c) into ``{counter: value}``, in order.

    Counts are events or pages, as each counter defines; a repeated name is an error.
    """
    text, label = read_source(path_or_text, name)
    out: dict[str, int] = {}
    for lineno, line in _lines(text, label):
        match = _VMSTAT_RE.fullmatch(line.strip())
        if not match:
            raise ValueError(f"{label}:{lineno}: not a vmstat line 'name value': "
                             f"{line.strip()!r}")
        key = match.group(1)
        if key in out:
            raise ValueError(f"{label}:{lineno}: counter {key!r} repeated")
        out[key] = int(match.group(2))
    if not out:
        raise ValueError(f"{label}: no vmstat lines found")
    return out


# ---------------------------------------------------------------------------------------------
# /proc/slabinfo
# ---------------------------------------------------------------------------------------------

_SLABINFO_VERSION_RE = re.compile(r"slabinfo - version: ([0-9.]+)\Z")
_SLAB_FIELDS = ("active_objs", "num_objs", "objsize", "objperslab", "pagesperslab")
_SLAB_TUNABLES = ("limit", "batchcount", "sharedfactor")
_SLAB_DATA = ("active_slabs", "num_slabs", "sharedavail")


def parse_slabinfo(path_or_text: str | os.PathLike, name: str | None = None) -> list[dict]:
    """Parse /proc/slabinfo version 2.1 (slab_show() in mm/slab_common.c), one dict per cache.

    Each dict has ``name`` and the integer columns ``active_objs``, ``num_objs``, ``objsize``,
    ``objperslab``, ``pagesperslab``, ``limit``, ``batchcount``, ``sharedfactor``,
    ``active_slabs``, ``num_slabs``, ``sharedavail``.  The file's ``# name ...`` column header
    is a comment; the ``slabinfo - version: 2.1`` line must come first.
    """
    text, label = read_source(path_or_text, name)
    out: list[dict] = []
    version_seen = False
    for lineno, line in _lines(text, label):
        stripped = line.strip()
        if match := _SLABINFO_VERSION_RE.fullmatch(stripped):
            if match.group(1) != "2.1":
                raise ValueError(f"{label}:{lineno}: slabinfo version {match.group(1)}, "
                                 "only 2.1 is known")
            version_seen = True
            continue
        if not version_seen:
            raise ValueError(f"{label}:{lineno}: expected 'slabinfo - version: 2.1' first")
        parts = stripped.split(":")
        head = parts[0].split()
        if (len(parts) != 3 or len(head) != 1 + len(_SLAB_FIELDS)
                or parts[1].split()[:1] != ["tunables"] or parts[2].split()[:1] != ["slabdata"]):
            raise ValueError(f"{label}:{lineno}: not a slabinfo line 'name <5 numbers> : "
                             f"tunables <3> : slabdata <3>': {stripped!r}")
        values = head[1:] + parts[1].split()[1:] + parts[2].split()[1:]
        keys = _SLAB_FIELDS + _SLAB_TUNABLES + _SLAB_DATA
        if len(values) != len(keys) or not all(_digits(v) for v in values):
            raise ValueError(f"{label}:{lineno}: cache {head[0]!r}: expected "
                             f"{len(keys)} non-negative integers")
        out.append({"name": head[0], **dict(zip(keys, map(int, values), strict=True))})
    if not out:
        raise ValueError(f"{label}: no slabinfo lines found")
    return out


# ---------------------------------------------------------------------------------------------
# Folders and the running machine
# ---------------------------------------------------------------------------------------------

_PARSERS = {
    "meminfo": parse_meminfo,
    "buddyinfo": parse_buddyinfo,
    "vmallocinfo": parse_vmallocinfo,
    "modules": parse_modules,
    "zoneinfo": parse_zoneinfo,
}


def _find(folder: Path, name: str) -> Path | None:
    found = [p for p in (folder / name, folder / f"{name}.txt") if p.is_file()]
    if len(found) > 1:
        raise ValueError(f"{folder}: both {name} and {name}.txt exist; keep one")
    return found[0] if found else None


def read_proc_dir(folder: str | os.PathLike) -> dict:
    """Parse whichever of meminfo/buddyinfo/vmallocinfo/modules/zoneinfo a folder holds.

    File names may carry a ``.txt`` suffix; ``lsmod[.txt]`` stands in for ``modules`` when
    there is no ``modules`` file.  Returns ``{name: parsed}`` for the files found.  Raises
    ``FileNotFoundError`` if the folder does not exist, ``ValueError`` if it holds none of the
    files, and the parsers' ``ValueError("FILE:LINE: ...")`` for a bad file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such directory")
    out = {}
    for name, parser in _PARSERS.items():
        path = _find(folder, name)
        if path is None and name == "modules":
            path = _find(folder, "lsmod")
        if path is not None:
            out[name] = parser(path)
    if not out:
        raise ValueError(f"{folder}: none of {', '.join(PROC_FILES)} (or .txt) found")
    return out


def read_running_machine(proc: str | os.PathLike = "/proc") -> dict | None:
    """Parse this machine's /proc meminfo, buddyinfo, vmallocinfo, modules and zoneinfo.

    Returns ``None`` when not on Linux or when ``/proc/meminfo`` cannot be read.  Files that
    are missing or unreadable (``/proc/vmallocinfo`` is root-only; ``/proc/modules`` does not
    exist without CONFIG_MODULES) are left out of the dict; an empty ``/proc/modules`` (a
    kernel with no modules loaded) gives ``"modules": []``.
    """
    if not sys.platform.startswith("linux"):
        return None
    proc = Path(proc)
    out = {}
    for name, parser in _PARSERS.items():
        path = proc / name
        try:
            text = path.read_bytes().decode("utf-8")
        except (FileNotFoundError, PermissionError, IsADirectoryError):
            if name == "meminfo":
                return None
            continue
        except OSError:
            if name == "meminfo":
                return None
            raise
        if name == "modules" and not text.strip():
            out[name] = []
            continue
        out[name] = parser(text if "\n" in text else text + "\n", name=str(path))
    return out
