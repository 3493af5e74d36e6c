"""Build a model machine from a real machine's /proc captures (``Machine.from_proc``).

What is taken from the capture: the number of NUMA nodes (buddyinfo), the RAM
(the sum of the DirectMap lines = all mapped RAM, split evenly over the nodes and
rounded down to 4 MiB), whether 1G direct-map pages are used (a DirectMap1G
line), and the module list.  What is not: the boot-time 4K part of the direct
map cannot be told apart from later splits in a capture, so the model starts
from min(the capture's DirectMap4k, 30 MiB — a machine booted with no modules,
data/machines/fcvm-6.18/meminfo.txt) and then loads the capture's modules; comparing the model's
DirectMap4k with the capture's is then a check of the model.  The capture does
not tell how the machine got where it is, so by default the model machine is idle
when the modules load; ``pressure="capture"`` applies 1 − MemFree/MemTotal as
scattered background memory first (right for a machine that has run a long time,
too much for one captured seconds after boot).
"""

from pathlib import Path

from ..procfs import read_proc_dir
from .events import play
from .scenario import module_events

TYPICAL_BOOT_4K_KB = 30 * 1024
MIB = 1024


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


def from_proc(machine_cls, source, load_modules=True, pressure=0.0, **kwargs):
    """A Machine shaped like the captured one, with its modules loaded (oldest first)."""
    proc = read_proc_dir(source) if isinstance(source, (str, Path)) else source
    m = machine_cls(**{**machine_kwargs(proc), **kwargs})
    m.set_memory_pressure(capture_pressure(proc) if pressure == "capture" else pressure)
    modules = proc.get("modules") or []
    if load_modules and modules:
        play(m.k, module_events(modules))
    m.capture = proc
    return m
