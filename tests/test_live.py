"""gpalloc.live without the kernel: programs, bounds, fills, traces, captures (any OS)."""

from __future__ import annotations

import functools
import gzip
import json
import re
import struct
import sys
from pathlib import Path

import pytest

from gpalloc import cli
from gpalloc.live import bounds, directmap_table, placement, read_capture
from gpalloc.live.bpf import BPF_MAXINSNS, DEFAULT_INSNS, SockFprog, filter_code
from gpalloc.live.capture import caller_function, is_pack, jit_lines, vmalloc_callers
from gpalloc.live.cli import format_report
from gpalloc.live.experiment import Params
from gpalloc.live.fill import fill_bytes, fstype
from gpalloc.live.trace import (
    COLUMNS,
    GZIP_OVER,
    covered_pfns,
    parse_trace,
    read_events,
    write_events,
)

MEASUREMENTS = Path(__file__).resolve().parent.parent / "data" / "measurements"
CAPTURES = sorted(p for p in MEASUREMENTS.iterdir() if (p / "provenance.json").is_file())
# made by `gpalloc live` (the rest, e.g. b2-17, by a script kept in their provenance)
LIVE_CAPTURES = [p for p in CAPTURES
                 if "script" not in json.loads((p / "provenance.json").read_text())]


@functools.cache
def _read(folder: Path) -> dict:
    return read_capture(folder)

# ---------------------------------------------------------------------------------------------
# Programs and bounds
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("insns", [1, 2, 800, BPF_MAXINSNS])
def test_filter_code_is_k_classic_instructions(insns):
    code = filter_code(insns)
    assert len(code) == 8 * insns
    ops = list(struct.iter_unpack("=HBBI", code))
    assert ops[-1] == (0x06, 0, 0, 0xFFFF)                        # ret #0xffff
    assert ops[:-1] == [(0x00, 0, 0, i) for i in range(insns - 1)]  # ld #i


@pytest.mark.parametrize("insns", [0, BPF_MAXINSNS + 1])
def test_filter_code_refuses_sizes(insns):
    with pytest.raises(ValueError, match=rf"--insns: must be 1\.\.4096 \(BPF_MAXINSNS\), "
                                         rf"got {insns}"):
        filter_code(insns)


def test_sock_fprog_layout():
    fprog = SockFprog(5)
    assert len(fprog.optval) == struct.calcsize("@HP")
    length, address = struct.unpack("@HP", fprog.optval)
    assert length == 5 and address != 0


def _check(**kw):
    args = dict(kind="bpf-filters", programs=500, insns=DEFAULT_INSNS, rounds=1, hold=0,
                settle=2, timeout=600)
    args.update(kw)
    bounds.check(**args)


@pytest.mark.parametrize("kw, message", [
    ({"programs": 0}, "--programs 0: must be between 1 and 20,000"),
    ({"programs": 20_001}, "--programs 20001: must be between 1 and 20,000"),
    ({"kind": "bpf-procs", "programs": 5000}, "--programs 5000: must be between 1 and 4,096"),
    ({"insns": 4097}, "--insns 4097: must be between 1 and 4,096"),
    ({"programs": 20_000, "insns": 4096}, "--programs 20000 x --insns 4096"),
    ({"rounds": 11}, "--rounds 11: must be between 1 and 10"),
    ({"hold": -1}, "--hold -1: must be between 0 and 600"),
    ({"settle": 31}, "--settle 31: must be between 0 and 30"),
    ({"timeout": 0}, "--timeout 0: must be between 1 and 1,800"),
])
def test_bounds_name_the_flag(kw, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        _check(**kw)


def test_bounds_accept_the_largest_committed_run():
    _check(programs=6000, insns=800)
    _check(programs=20_000, insns=2000)


def test_cli_refuses_with_one_line(capsys):
    assert cli.main(["live", "bpf-filters", "--programs", "20001"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gpalloc: error: ")
    if sys.platform.startswith("linux"):
        assert "--programs: must be between 1 and 20,000 (got 20001)" in err


def test_command_repeats_the_run():
    p = Params(programs=3000, insns=400, rounds=3, fill="50%", fill_kind="shmem", trace=True,
               name="b1-x")
    assert p.command() == ("python -m gpalloc live bpf-filters --programs 3000 --insns 400 "
                           "--rounds 3 --fill 50% --fill-kind shmem --trace --hold 0 --settle 2 "
                           "--timeout 600 --out live-captures --name b1-x")
    args = cli.build_parser().parse_args(p.command().split()[3:])
    assert (args.programs, args.insns, args.rounds, args.fill, args.fill_kind, args.trace) == \
        (3000, 400, 3, "50%", "shmem", True)
    assert re.fullmatch(r"972ceeb2-bpf-filters-n3000-k400-r3-fill50pctshmem-\d{8}T\d{6}Z",
                        p.default_name("972ceeb2-8356"))

# ---------------------------------------------------------------------------------------------
# Fills
# ---------------------------------------------------------------------------------------------


MEMINFO = {"MemTotal": 24_000_000, "MemAvailable": 20_000_000}


def test_fill_levels():
    assert fill_bytes("50%", MEMINFO) == 12_000_000 * 1024
    assert fill_bytes("8G", MEMINFO) == 8 << 30
    with pytest.raises(ValueError, match=r"--fill 70%: 16406 MiB is more than 80% of "
                                         r"MemAvailable \(15625 MiB\)"):
        fill_bytes("70%", MEMINFO)
    with pytest.raises(ValueError, match=r"--fill: 'x%' must be|--fill: cannot read"):
        fill_bytes("x%", MEMINFO)
    with pytest.raises(ValueError, match=r"--fill: cannot read size 'lots'"):
        fill_bytes("lots", MEMINFO)


def test_fstype_longest_mount_prefix(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/vda / ext4 rw 0 0\ntmpfs /dev/shm tmpfs rw 0 0\n"
                      "tmpfs /dev/shmx tmpfs rw 0 0\n")
    assert fstype(Path("/dev/shm"), str(mounts)) == "tmpfs"
    assert fstype(Path("/var/tmp"), str(mounts)) == "ext4"

# ---------------------------------------------------------------------------------------------
# Traces
# ---------------------------------------------------------------------------------------------


TRACE = """\
# tracer: nop
#
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
          python-13184   [001] ..... 835.552545: mm_page_alloc: page=0xffffea000056bc70 \
pfn=0x15af1c order=0 migratetype=0 gfp_flags=GFP_KERNEL
          python-13184   [001] d..1. 835.552600: mm_page_alloc_zone_locked: \
page=0xffffea0000438000 pfn=0x10e000 order=0 migratetype=0 percpu_refill=1
          python-13184   [001] d..1. 835.547381: mm_page_alloc_extfrag: page=0xffffea0000438000 \
pfn=0x10e000 alloc_order=0 fallback_order=10 pageblock_order=9 alloc_migratetype=0 \
fallback_migratetype=1 fragmenting=0 change_ownership=1
     kworker/1:1-41      [001] ..... 836.000001: mm_page_free: page=0xffffea0000438000 \
pfn=0x10e001 order=0
"""


def test_parse_trace_fields():
    alloc, refill, extfrag, free = parse_trace(TRACE)
    assert (alloc["task"], alloc["pid"], alloc["pfn"], alloc["order"], alloc["gfp"]) == \
        ("python", 13184, 0x15AF1C, 0, "GFP_KERNEL")
    assert refill["percpu_refill"] == 1 and refill["gfp"] == ""
    assert (extfrag["order"], extfrag["fallback_order"], extfrag["fallback_migratetype"],
            extfrag["change_ownership"]) == (0, 10, 1, 1)
    assert (free["task"], free["migratetype"]) == ("kworker/1:1", "")
    assert covered_pfns([alloc, refill, free]) == {0x15AF1C, 0x10E000}


def test_parse_trace_errors():
    with pytest.raises(ValueError, match=r"t:2: not a kmem trace line"):
        parse_trace("# x\nbash-1 [000] ..... 1.0: sched_switch: prev=a\n", "t")
    with pytest.raises(ValueError, match=r"t:1: mm_page_free: bad or missing field 'order'"):
        parse_trace("bash-1 [000] ..... 1.0: mm_page_free: page=0x1 pfn=0x2\n", "t")


def test_events_round_trip(tmp_path):
    events = parse_trace(TRACE)
    assert write_events(tmp_path, events).name == "trace.csv"
    assert read_events(tmp_path / "trace.csv") == events
    many = events * (GZIP_OVER // 200 + 1)
    (tmp_path / "big").mkdir()
    big = write_events(tmp_path / "big", many)
    assert big.name == "trace.csv.gz" and read_events(big) == many
    (tmp_path / "bad.csv").write_text("ts,pid\n")
    with pytest.raises(ValueError, match=r"bad\.csv:1: header is not ts,task,pid"):
        read_events(tmp_path / "bad.csv")
    (tmp_path / "bad2.csv").write_text(",".join(COLUMNS) + "\n1.0,x,notapid,mm_page_free,"
                                       "0x1,0,,,,,,\n")
    with pytest.raises(ValueError, match=r"bad2\.csv:2: pid 'notapid' is not a number"):
        read_events(tmp_path / "bad2.csv")


def test_placement_on_synthetic_round():
    def ev(event, pfn, order=0, gfp="", task="python", mt=0, refill=""):
        return {**dict.fromkeys(COLUMNS, ""), "event": event, "pfn": pfn, "order": order,
                "gfp": gfp, "task": task, "migratetype": mt, "percpu_refill": refill}
    loaded = [ev("mm_page_alloc", 5, gfp=placement.PROG_GFP),
              ev("mm_page_alloc", 9, gfp="GFP_KERNEL"),               # a page table page
              ev("mm_page_alloc_zone_locked", 512, refill=1),
              ev("mm_page_alloc_zone_locked", 1024, refill=1)]
    closed = [ev("mm_page_free", 5, task="kworker/0:1"),              # the bpf_prog page
              ev("mm_page_free", 512, task="kworker/0:1"),            # bulk: pack pages
              ev("mm_page_free", 513, task="kworker/0:1"),
              ev("mm_page_free", 1030, task="kworker/1:2"),
              ev("mm_page_free", 2000, task="python")]                # not a kworker
    s = placement.summary(loaded, closed)
    assert (s["pack_pages"], s["pack_regions"], s["pages_per_region"]) == (3, 2, [2, 1])
    assert (s["prog_pages"], s["page_table_allocs"]) == (1, 1)
    assert s["refills_order_migratetype"] == {(0, 0): 2}

# ---------------------------------------------------------------------------------------------
# vmallocinfo summary
# ---------------------------------------------------------------------------------------------


VMALLOCINFO = """\
0xbf703f75-0xeeee3206 2101248 bpf_prog_pack_alloc+0x28b/0x3a0 pages=512 vmalloc N0=512
0x11111111-0x22222222    8192 bpf_prog_alloc_no_stats+0x4b/0x2c0 pages=1 vmalloc N0=1
0x33333333-0x44444444    8192 bpf_prog_alloc_no_stats+0x4b/0x2c0 pages=1 vmalloc N0=1
0x55555555-0x66666666    8192 unpurged vm_area
"""


def test_vmalloc_summary():
    from gpalloc.procfs import parse_vmallocinfo

    rows = vmalloc_callers(parse_vmallocinfo(VMALLOCINFO))
    assert rows[0] == {"caller": "bpf_prog_pack_alloc", "areas": 1, "pages": 512,
                       "bytes": 2101248}
    assert {"caller": "bpf_prog_alloc_no_stats", "areas": 2, "pages": 2, "bytes": 16384} in rows
    assert caller_function("unpurged vm_area") == "unpurged vm_area"
    assert jit_lines(VMALLOCINFO) == VMALLOCINFO.splitlines(keepends=True)[0]

# ---------------------------------------------------------------------------------------------
# The committed captures
# ---------------------------------------------------------------------------------------------


def _expected_phases(params: dict) -> list[str]:
    if params["kind"] == "snapshot":
        return ["00-idle"]
    names = ["00-before"] + ["01-filled"] * bool(params["fill"])
    for r in range(1, params["rounds"] + 1):
        names += [f"{2 * r:02d}-loaded-r{r}", f"{2 * r + 1:02d}-closed-r{r}"]
    if params["fill"]:
        names.append(f"{2 * params['rounds'] + 2:02d}-released")
    return names


def test_there_are_captures():
    assert len(CAPTURES) >= 9


@pytest.mark.parametrize("folder", LIVE_CAPTURES, ids=[p.name for p in LIVE_CAPTURES])
def test_capture_is_complete(folder):
    cap = _read(folder)
    prov = cap["provenance"]
    assert prov["completed"] is True and "error" not in prov
    for key in ("uname_a", "boot_id", "uptime_at_start_s", "date_utc", "command",
                "gpalloc_commit", "machine", "root", "traced"):
        assert prov[key] is not None, key
    names = [p["name"] for p in cap["phases"]]
    assert names == _expected_phases(prov["parameters"]) == prov["phases"]
    for phase in cap["phases"]:
        assert {"meminfo", "buddyinfo", "pagetypeinfo", "vmstat", "zoneinfo", "slabinfo",
                "sys_vm", "vmalloc_callers", "vmalloc_jit"} <= set(phase), phase["name"]
        traced = prov["traced"] and ("loaded" in phase["name"] or "closed" in phase["name"])
        assert ("trace" in phase) == traced, phase["name"]
        assert len(phase["meta"]["packs"]) == sum(map(is_pack, phase["vmalloc_jit"]))
    table = directmap_table(cap)
    for before, after in zip(table, table[1:], strict=False):
        assert after["DirectMap4k"] >= before["DirectMap4k"]      # splits are for good
        assert after["DirectMap1G"] <= before["DirectMap1G"]
    sizes = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert sizes < 1 << 20


def test_captures_of_a_boot_only_split_further():
    """Ordered by uptime, the boot's captures see DirectMap4k grow and never shrink."""
    caps = [json.loads((f / "provenance.json").read_text()) | {"name": f.name} for f in CAPTURES]
    by_boot: dict[str, list] = {}
    for prov in caps:
        by_boot.setdefault(prov["boot_id"], []).append(prov)
    for provs in by_boot.values():
        provs.sort(key=lambda p: p["uptime_at_start_s"])
        last = 0
        for prov in provs:
            folder = MEASUREMENTS / prov["name"]
            first = _read(folder)["phases"][0]["meminfo"]["DirectMap4k"]
            assert first >= last, prov["name"]
            last = directmap_table(_read(folder))[-1]["DirectMap4k"]


def test_readme_names_every_capture_and_its_set():
    text = (MEASUREMENTS / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([^`]+)` \|.*\| (validation|calibration|boot check) \|$", text,
                           re.M))
    assert set(rows) == {p.name for p in CAPTURES}
    assert sum(v == "validation" for v in rows.values()) >= 8


def test_report_of_a_capture_starts_with_its_parameters():
    cap = _read(MEASUREMENTS / "b1-05-filters-n500-k800")
    result = {"provenance": cap["provenance"], "folder": str(MEASUREMENTS / cap["name"]),
              "phases": [p["meta"] for p in cap["phases"]]}
    text = format_report(result, "gpalloc live bpf-filters  programs=500 insns=800")
    lines = text.splitlines()
    assert lines[0].startswith("gpalloc live bpf-filters  programs=500")
    row = next(line for line in lines if line.startswith("02-loaded-r1"))
    assert "+6,144" in row and row.split()[-2] == "2"      # 2 packs while loaded


def test_read_capture_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no provenance.json"):
        read_capture(tmp_path)
    (tmp_path / "provenance.json").write_text("{}\n")
    with pytest.raises(ValueError, match="no phases/ folders"):
        read_capture(tmp_path)
    phase = tmp_path / "phases" / "00-before"
    phase.mkdir(parents=True)
    (phase / "phase.json").write_text('{"a": 1,\n oops}\n')
    with pytest.raises(ValueError, match=r"phase\.json:2: "):
        read_capture(tmp_path)
    (phase / "phase.json").write_text("{}\n")
    (phase / "meminfo.txt").write_text("MemTotal: 5 kB\nbroken line\n")
    with pytest.raises(ValueError, match=r"meminfo\.txt:2: not a meminfo line"):
        read_capture(tmp_path)
    (phase / "meminfo.txt").write_text("MemTotal: 5 kB\n")
    (phase / "slabinfo.txt.gz").write_bytes(gzip.compress(b"nope\n"))
    with pytest.raises(ValueError, match=r"slabinfo\.txt\.gz:1: expected 'slabinfo - version"):
        read_capture(tmp_path)
