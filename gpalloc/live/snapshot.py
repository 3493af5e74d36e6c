"""``live snapshot``: the machine as it is, one phase with the whole vmallocinfo and kernel log.

A snapshot's ``phases/00-idle/`` holds meminfo, buddyinfo, zoneinfo and vmallocinfo under the
names ``gpalloc.procfs.read_proc_dir`` reads, so ``Machine.from_proc`` can start from it.
"""

from __future__ import annotations

import time
from pathlib import Path

from . import capture
from .experiment import require_linux


def snapshot(out: str, name: str | None, note: str | None) -> dict:
    """Write ``out/<name>/`` with provenance.json, dmesg.txt and phases/00-idle/."""
    require_linux()
    out_dir = Path(out)
    bid = capture.boot_id()
    folder = out_dir / (name or f"{(bid or 'noboot')[:8]}-snapshot-"
                               f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    if folder.exists():
        raise ValueError(f"--name: {folder} already exists; captures are never overwritten")
    command = "python -m gpalloc live snapshot --out " + out + (f" --name {name}" if name else "")
    prov = capture.provenance(command, {"kind": "snapshot"}, out_dir, note)
    folder.mkdir(parents=True)
    log = capture.dmesg()
    if log is not None:
        (folder / "dmesg.txt").write_text(log, encoding="utf-8")
    meta = capture.capture_phase(folder / "phases" / "00-idle",
                                 {"phase": "00-idle", "action": "nothing (idle machine)",
                                  "t_s": 0.0, "uptime_s": capture.uptime_s()},
                                 full_vmallocinfo=True)
    prov.update(completed=True, phases=[meta["phase"]])
    capture.write_json(folder / "provenance.json", prov)
    return {"folder": str(folder), "command": command, "provenance": prov, "phases": [meta],
            "completed": True}
