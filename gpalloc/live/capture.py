"""Capture folders: what one phase of a live experiment saw in /proc, and reading them back.

Layout (``DIR/<name>/``)::

    provenance.json                 kernel, boot, machine, date, command, gpalloc version, ...
    phases/<NN-name>/phase.json     what the phase did (programs held, packs, timings, trace)
    phases/<NN-name>/meminfo.txt    /proc/meminfo, byte for byte; likewise buddyinfo.txt,
                                    vmstat.txt, zoneinfo.txt, pagetypeinfo.txt (root)
    phases/<NN-name>/slabinfo.txt.gz          /proc/slabinfo (root), gzipped, bytes unchanged
    phases/<NN-name>/sys_vm.txt               /proc/sys/vm/* in sysctl's "vm.name = value" form
    phases/<NN-name>/vmallocinfo-callers.csv  /proc/vmallocinfo (root) per caller function:
                                              areas, pages, bytes
    phases/<NN-name>/vmallocinfo-jit.txt      its BPF JIT / execmem lines (the packs), verbatim
    phases/<NN-name>/vmallocinfo.txt          the whole file, in ``live snapshot`` only
    phases/<NN-name>/trace.csv[.gz]           kmem events of the phase (--trace)

``read_capture`` reads a folder on any OS; only writing one needs Linux.
"""

from __future__ import annotations

import csv
import datetime
import gzip
import io
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

from gpalloc import procfs
from gpalloc.sources import read_file, read_json

from . import trace as _trace

PROC = Path("/proc")
# /proc file -> (file in the phase folder, root only?)
PROC_FILES = {
    "meminfo": ("meminfo.txt", False),
    "buddyinfo": ("buddyinfo.txt", False),
    "pagetypeinfo": ("pagetypeinfo.txt", True),
    "vmstat": ("vmstat.txt", False),
    "zoneinfo": ("zoneinfo.txt", False),
    "slabinfo": ("slabinfo.txt.gz", True),
}
PARSERS = {
    "meminfo": procfs.parse_meminfo,
    "buddyinfo": procfs.parse_buddyinfo,
    "pagetypeinfo": procfs.parse_pagetypeinfo,
    "vmstat": procfs.parse_vmstat,
    "zoneinfo": procfs.parse_zoneinfo,
    "slabinfo": procfs.parse_slabinfo,
    "vmallocinfo": procfs.parse_vmallocinfo,
}
CALLERS_CSV = "vmallocinfo-callers.csv"
JIT_TXT = "vmallocinfo-jit.txt"
SYS_VM = "sys_vm.txt"
DIRECTMAP = ("DirectMap4k", "DirectMap2M", "DirectMap1G")
PACK_CALLERS = ("bpf_prog_pack_alloc", "alloc_new_pack")
CALLER_COLUMNS = ("caller", "areas", "pages", "bytes")


def is_root() -> bool:
    """Effective uid 0: the root-only files (pagetypeinfo, slabinfo, vmallocinfo) are readable."""
    return os.geteuid() == 0


def directmap(meminfo: dict[str, int]) -> dict[str, int]:
    """The DirectMap4k/2M/1G lines of a parsed meminfo (arch_report_meminfo()), in kB."""
    return {key: meminfo.get(key, 0) for key in DIRECTMAP}


def caller_function(caller: str | None) -> str:
    """The function of a vmallocinfo caller (``"bpf_prog_alloc_no_stats+0x4b/0x2c0"`` -> name)."""
    if caller is None:
        return "(none)"
    return caller.split()[0].split("+")[0] if "+" in caller else caller


def is_pack(entry: dict) -> bool:
    """A bpf_prog_pack area (alloc_new_pack(); the caller kallsyms shows is bpf_prog_pack_alloc)."""
    return caller_function(entry["caller"]) in PACK_CALLERS


def vmalloc_callers(entries: list[dict]) -> list[dict]:
    """Areas, pages and bytes per caller function, most pages first."""
    out: dict[str, dict] = {}
    for e in entries:
        row = out.setdefault(caller_function(e["caller"]),
                             {"caller": caller_function(e["caller"]), "areas": 0, "pages": 0,
                              "bytes": 0})
        row["areas"] += 1
        row["pages"] += e["pages"]
        row["bytes"] += e["size"]
    return sorted(out.values(), key=lambda r: (-r["pages"], r["caller"]))


def jit_lines(text: str) -> str:
    """The vmallocinfo lines of BPF JIT and execmem areas (packs included), unchanged."""
    lines = [line for line in text.splitlines(keepends=True) if line.strip()]
    entries = procfs.parse_vmallocinfo(text) if lines else []
    return "".join(line for line, e in zip(lines, entries, strict=True)
                   if procfs.classify_vmalloc_caller(e["caller"]) in ("bpf_jit_exec", "execmem"))


def read_proc(name: str, proc: Path = PROC) -> bytes:
    """The bytes of /proc/<name> (a seq_file read to EOF)."""
    with open(proc / name, "rb") as f:
        return f.read()


def sys_vm(proc: Path = PROC) -> tuple[str, list[str]]:
    """/proc/sys/vm/* as sysctl prints it (``vm.name = value``); names that could not be read."""
    lines, skipped = [], []
    for path in sorted((proc / "sys" / "vm").iterdir()):
        try:
            value = path.read_bytes().decode().rstrip("\n")
        except OSError:      # write-only (drop_caches, compact_memory) or root-only
            skipped.append(f"sys/vm/{path.name}")
            continue
        lines.append(f"vm.{path.name} = {value}\n")
    return "".join(lines), skipped


def vmalloc_used_kb() -> int:
    """VmallocUsed from /proc/meminfo (readable without root)."""
    return procfs.parse_meminfo(read_proc("meminfo").decode())["VmallocUsed"]


def capture_phase(folder: Path, meta: dict, full_vmallocinfo: bool = False) -> dict:
    """Write one phase's /proc files and ``phase.json`` into ``folder``; returns ``meta``.

    Adds to ``meta``: ``directmap`` (kB), ``packs`` (hashed start addresses of the
    bpf_prog_pack areas, None without root), ``files`` written and ``skipped`` (unreadable).
    """
    folder.mkdir(parents=True, exist_ok=True)
    root = is_root()
    files, skipped = [], []
    for name, (filename, root_only) in PROC_FILES.items():
        if root_only and not root:
            skipped.append(name)
            continue
        data = read_proc(name)
        if filename.endswith(".gz"):
            data = gzip.compress(data, compresslevel=9, mtime=0)
        (folder / filename).write_bytes(data)
        files.append(filename)
        if name == "meminfo":
            meta["directmap"] = directmap(procfs.parse_meminfo(data.decode()))
    text, unread = sys_vm()
    (folder / SYS_VM).write_text(text, encoding="utf-8")
    files.append(SYS_VM)
    skipped += unread
    meta["packs"] = None
    if root:
        raw = read_proc("vmallocinfo")
        entries = procfs.parse_vmallocinfo(raw.decode())
        _write_callers(folder / CALLERS_CSV, vmalloc_callers(entries))
        (folder / JIT_TXT).write_bytes(jit_lines(raw.decode()).encode())
        files += [CALLERS_CSV, JIT_TXT]
        if full_vmallocinfo:
            (folder / "vmallocinfo.txt").write_bytes(raw)
            files.append("vmallocinfo.txt")
        meta["packs"] = [f"0x{e['start']:x}" for e in entries if is_pack(e)]
    else:
        skipped.append("vmallocinfo")
    meta["files"], meta["skipped"] = files, skipped
    write_json(folder / "phase.json", meta)
    return meta


def _write_callers(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CALLER_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def write_json(path: Path, data: dict) -> None:
    """JSON with sorted keys and a final newline (stable diffs)."""
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------------------------

def _text(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError:
        return None


def _run(cmd: list[str], cwd: Path | None = None) -> str | None:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit() -> str | None:
    """The gpalloc checkout's HEAD, with ``-dirty`` if tracked files differ from it."""
    here = Path(__file__).resolve().parent
    head = _run(["git", "rev-parse", "HEAD"], here)
    if head is None:
        return None
    dirty = _run(["git", "status", "--porcelain", "--untracked-files=no"], here)
    return head + ("-dirty" if dirty else "")


def uptime_s() -> float:
    """Seconds since boot (/proc/uptime)."""
    return float(read_proc("uptime").split()[0])


def boot_id() -> str | None:
    """This boot's random id (/proc/sys/kernel/random/boot_id)."""
    return _text("/proc/sys/kernel/random/boot_id")


def dmesg() -> str | None:
    """The kernel log (``dmesg``), or None where it cannot be read."""
    return _run(["dmesg"])


def deferred_init_lines() -> list[str]:
    """The kernel log lines about memory set up at boot (deferred struct-page init, Memory:)."""
    return [line for line in (dmesg() or "").splitlines()
            if re.search(r"deferred_init\S*: |deferred_grow_zone|\] Memory: ", line)]


def provenance(command: str, parameters: dict, out_dir: Path, note: str | None) -> dict:
    """Everything needed to tell later which machine, boot and command made a capture."""
    from .._version import __version__

    meminfo = procfs.parse_meminfo(read_proc("meminfo").decode())
    nodes = sorted(p.name for p in Path("/sys/devices/system/node").glob("node[0-9]*"))
    bid = boot_id()
    return {
        "uname_a": _run(["uname", "-a"]) or " ".join(platform.uname()),
        "kernel_cmdline": _text("/proc/cmdline"),
        "boot_log": deferred_init_lines(),
        "boot_id": bid,
        "uptime_at_start_s": uptime_s(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "MemTotal_kB": meminfo["MemTotal"],
                    "numa_nodes": len(nodes), "python": platform.python_version()},
        "command": command,
        "argv": sys.argv,
        "parameters": parameters,
        "gpalloc_version": __version__,
        "gpalloc_commit": git_commit(),
        "root": is_root(),
        "traced": bool(parameters.get("trace")),
        "loadavg_at_start": _text("/proc/loadavg"),
        "processes_at_start": sum(1 for p in PROC.iterdir() if p.name.isdigit()),
        "note": note,
        "earlier_captures_this_boot": earlier_captures(out_dir, bid),
    }


def earlier_captures(out_dir: Path, bid: str | None) -> list[dict]:
    """Captures already in ``out_dir`` from this boot, oldest first (the boot's history)."""
    found = []
    for prov in sorted(out_dir.glob("*/provenance.json")):
        try:
            data = json.loads(prov.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if data.get("boot_id") == bid:
            found.append({"name": prov.parent.name, "uptime_at_start_s":
                          data.get("uptime_at_start_s"), "command": data.get("command")})
    return sorted(found, key=lambda d: d["uptime_at_start_s"] or 0)


# ---------------------------------------------------------------------------------------------
# Reading a capture back (any OS)
# ---------------------------------------------------------------------------------------------

def _read_json(path: Path) -> dict:
    doc = read_json(path)
    if not isinstance(doc, dict):
        raise ValueError(f"{path}:1: expected a JSON object, got {type(doc).__name__}")
    return doc


def _read_callers(path: Path) -> list[dict]:
    rows = []
    reader = csv.DictReader(io.StringIO(read_file(path), newline=""))
    try:
        if tuple(reader.fieldnames or ()) != CALLER_COLUMNS:
            raise ValueError(f"{path}:1: header is not {','.join(CALLER_COLUMNS)}")
        for row in reader:
            try:
                rows.append({"caller": row["caller"],
                             **{k: int(row[k]) for k in CALLER_COLUMNS[1:]}})
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{reader.line_num}: areas/pages/bytes must be "
                                 "integers") from None
    except csv.Error as err:   # a field past csv's size limit; line_num is the line before
        raise ValueError(f"{path}:{reader.line_num + 1}: {err}") from None
    return rows


def parse_sys_vm(path: Path) -> dict[str, str]:
    """``vm.name = value`` lines into ``{name: value}`` (values kept as text)."""
    out = {}
    for lineno, line in enumerate(read_file(path).split("\n"), start=1):
        if not line:
            continue
        key, sep, value = line.partition(" = ")
        if not sep or not key.startswith("vm."):
            raise ValueError(f"{path}:{lineno}: not a 'vm.name = value' line: {line!r}")
        out[key[3:]] = value
    return out


def read_phase(folder: Path) -> dict:
    """One phase folder: ``meta`` (phase.json) and each file parsed (absent files left out)."""
    phase = {"name": folder.name, "meta": _read_json(folder / "phase.json")}
    for name, (filename, _) in {**PROC_FILES, "vmallocinfo": ("vmallocinfo.txt", True)}.items():
        path = folder / filename
        if path.is_file():   # a Path, never text: a one-line file is not a file name
            phase[name] = PARSERS[name](path)
    if (folder / SYS_VM).is_file():
        phase["sys_vm"] = parse_sys_vm(folder / SYS_VM)
    if (folder / CALLERS_CSV).is_file():
        phase["vmalloc_callers"] = _read_callers(folder / CALLERS_CSV)
    if (folder / JIT_TXT).is_file():
        path = folder / JIT_TXT
        phase["vmalloc_jit"] = (procfs.parse_vmallocinfo(path) if read_file(path).strip()
                                else [])
    for name in ("trace.csv", "trace.csv.gz"):
        if (folder / name).is_file():
            phase["trace"] = _trace.read_events(folder / name)
    return phase


def read_capture(folder: str | os.PathLike) -> dict:
    """A capture folder parsed: ``{"name", "provenance", "phases": [phase, ...]}``.

    Phases are in folder-name order (00-before, 01-filled, 02-loaded-r1, ...); each is the
    dict ``read_phase`` returns, parsed with ``gpalloc.procfs``.  Errors name the file (and
    line).  Works on any OS.
    """
    folder = Path(folder)
    if not (folder / "provenance.json").is_file():
        raise FileNotFoundError(f"{folder}: no provenance.json (not a capture folder)")
    phases_dir = folder / "phases"
    phases = sorted(p for p in phases_dir.iterdir() if p.is_dir()) if phases_dir.is_dir() else []
    if not phases:
        raise ValueError(f"{folder}: no phases/ folders")
    return {"name": folder.name, "provenance": _read_json(folder / "provenance.json"),
            "phases": [read_phase(p) for p in phases]}


def directmap_table(capture: dict) -> list[dict]:
    """Per phase: name, DirectMap4k/2M/1G (kB) and the pack count, from a read capture."""
    rows = []
    for phase in capture["phases"]:
        packs = phase["meta"].get("packs")
        rows.append({"phase": phase["name"], **directmap(phase["meminfo"]),
                     "packs": None if packs is None else len(packs)})
    return rows

