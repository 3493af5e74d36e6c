"""gpalloc.procfs: parsers for real /proc files, checked against data/machines/."""

import csv
import re
import sys
from pathlib import Path

import pytest

from gpalloc import procfs
from gpalloc.procfs import (
    classify_vmalloc_caller,
    free_pages,
    order9_capable_blocks,
    parse_buddyinfo,
    parse_meminfo,
    parse_modules,
    parse_pagetypeinfo,
    parse_slabinfo,
    parse_vmallocinfo,
    parse_vmstat,
    parse_zoneinfo,
    read_proc_dir,
    read_running_machine,
    vmalloc_summary,
)
from gpalloc.workloads import lsmod

MACHINES = Path(__file__).resolve().parent.parent / "data" / "machines"
FOLDERS = sorted(p for p in MACHINES.iterdir() if p.is_dir())
PARSERS = {
    "meminfo": parse_meminfo,
    "buddyinfo": parse_buddyinfo,
    "vmallocinfo": parse_vmallocinfo,
    "zoneinfo": parse_zoneinfo,
    "modules": parse_modules,
    "lsmod": parse_modules,
}
PROC_FILES = sorted(p for p in MACHINES.glob("*/*.txt") if p.stem in PARSERS)
NUMACTL_ONLY = {"ml-linux-mm-2012-2node-24g", "ronnie-devtech-2node-1tb"}

# /work/shared/data/real/README.md §3 (and meminfo-directmap-samples.csv), in kB.
DIRECTMAP = {
    "fcvm-6.18": (30_720, 2_066_432, 25_165_824),
    "gpuvm-6.18": (108_544, 3_037_184, 133_169_152),
    "rhcos418-hyperv": (140_544, 4_052_992, 5_242_880),
    "xeon6230-2s-384g": (1_311_036, 35_057_664, 365_953_024),
    "debian11-5.10-qemu": (65_396, 2_031_616, None),
    "centos9-5.14-vm": (118_624, 929_792, None),
    "ubuntu1404-3.13": (128_464, 8_216_576, None),
    "ubuntu1204-3.2": (493_568, 7_854_080, None),
}

# Source names in the team's CSVs -> folder names here.
CSV_SOURCE = {
    "linux-mm-2008-example": "ml-linux-mm-2008",
    "ml-2016-8node-x86": "ml-linux-mm-2016-8node-x86",
    "ml-2019-centos76-2node": "ml-linux-xfs-2019-centos76-2node",
}


def read_csv(name: str) -> list[dict]:
    with open(MACHINES / name, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------------------------
# Every capture parses
# ---------------------------------------------------------------------------------------------

def test_data_folders_and_readme():
    assert len(FOLDERS) == 16
    readme = (MACHINES / "README.md").read_text(encoding="utf-8")
    for folder in FOLDERS:
        assert f"`{folder.name}/`" in readme, folder.name
        for path in folder.iterdir():
            assert path.stem in readme, path  # every file kind is named in the README


@pytest.mark.parametrize("path", PROC_FILES, ids=[f"{p.parent.name}/{p.name}" for p in PROC_FILES])
def test_every_capture_parses(path):
    result = PARSERS[path.stem](path)
    assert len(result) > 0


@pytest.mark.parametrize("folder", FOLDERS, ids=[f.name for f in FOLDERS])
def test_read_proc_dir_on_every_folder(folder):
    if folder.name in NUMACTL_ONLY:
        with pytest.raises(ValueError, match="none of meminfo"):
            read_proc_dir(folder)
        return
    parsed = read_proc_dir(folder)
    expected = {p.stem for p in folder.glob("*.txt") if p.stem in PARSERS}
    if "lsmod" in expected:
        expected.discard("lsmod")
        expected.add("modules")
    assert set(parsed) == expected
    for name, value in parsed.items():
        assert value, name


# ---------------------------------------------------------------------------------------------
# meminfo
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("machine", sorted(DIRECTMAP))
def test_meminfo_directmap_matches_readme_table(machine):
    info = parse_meminfo(MACHINES / machine / "meminfo.txt")
    d4k, d2m, d1g = DIRECTMAP[machine]
    assert info["DirectMap4k"] == d4k
    assert info["DirectMap2M"] == d2m
    assert info.get("DirectMap1G") == d1g


def test_meminfo_matches_directmap_csv():
    for row in read_csv("meminfo-directmap-samples.csv"):
        info = parse_meminfo(MACHINES / row["source"] / "meminfo.txt")
        assert info["MemTotal"] == int(row["MemTotal_kB"]), row["source"]
        assert info["DirectMap4k"] == int(row["DirectMap4k_kB"]), row["source"]


def test_meminfo_units_and_counts():
    xeon = parse_meminfo(MACHINES / "xeon6230-2s-384g" / "meminfo.txt")  # has shell prompts
    assert xeon["HugePages_Total"] == 160  # a count, not kB
    assert xeon["Hugepagesize"] == 1_048_576
    assert xeon["Active(anon)"] == 784_776
    assert list(xeon)[0] == "MemTotal" and list(xeon)[-1] == "DirectMap1G"
    assert parse_meminfo("MemTotal: 5 kB\nHugePages_Free:  3\n") == {
        "MemTotal": 5, "HugePages_Free": 3}


# ---------------------------------------------------------------------------------------------
# buddyinfo
# ---------------------------------------------------------------------------------------------

def test_buddyinfo_multi_node_captures():
    mm2016 = parse_buddyinfo(MACHINES / "ml-linux-mm-2016-8node-x86" / "buddyinfo.txt")
    assert len(mm2016) == 20
    assert {e["snapshot"] for e in mm2016} == {0, 1}
    for snap in (0, 1):
        assert {e["node"] for e in mm2016 if e["snapshot"] == snap} == set(range(8))
    assert all(len(e["free"]) == 11 for e in mm2016)
    xfs = parse_buddyinfo(MACHINES / "ml-linux-xfs-2019-centos76-2node" / "buddyinfo.txt")
    assert {e["node"] for e in xfs} == {0, 1}
    assert [(e["node"], e["zone"]) for e in xfs] == [
        (0, "DMA"), (0, "DMA32"), (0, "Normal"), (1, "Normal")]
    # Heavily fragmented: the only order >= 9 blocks are in node 0's DMA zone.
    assert order9_capable_blocks(xfs, node=1) == 0
    assert order9_capable_blocks(xfs) == 1 + 2 * 3


def test_buddyinfo_matches_samples_csv():
    snapshots = {"": 0, "nopatch": 0, "patched": 1}
    rows = read_csv("buddyinfo-samples.csv")
    for row in rows:
        folder = CSV_SOURCE.get(row["source"], row["source"])
        entries = parse_buddyinfo(MACHINES / folder / "buddyinfo.txt")
        snap = snapshots[row["snapshot"]]
        node, zone = int(row["node"]), row["zone"]
        [entry] = [e for e in entries
                   if (e["node"], e["zone"], e["snapshot"]) == (node, zone, snap)]
        assert entry["free"] == [int(row[f"order{k}"]) for k in range(11)], row
        assert free_pages(entries, node, zone, snapshot=snap) == int(row["free_4k_pages"])
        o9 = order9_capable_blocks(entries, node, zone, snapshot=snap)
        assert o9 == entry["free"][9] + 2 * entry["free"][10]
        if free_pages(entries, node, zone, snapshot=snap):
            pct = 100 * o9 * 512 / free_pages(entries, node, zone, snapshot=snap)
            assert round(pct, 1) == pytest.approx(float(row["pct_free_in_order9plus"]), abs=0.1)
    # every buddyinfo capture is in the CSV except the debian11 Normal zone it does not have
    assert len(rows) == sum(len(parse_buddyinfo(p)) for p in MACHINES.glob("*/buddyinfo.txt"))


def test_buddyinfo_helpers():
    text = ("Node 0, zone Normal 1 0 0 0 0 0 0 0 0 2 3\n"
            "Node 1, zone Normal 0 0 0 0 0 0 0 0 0 0 1\n")
    entries = parse_buddyinfo(text)
    assert order9_capable_blocks(entries) == 2 + 2 * 3 + 2
    assert order9_capable_blocks(entries, node=1) == 2
    assert free_pages(entries, node=0) == 1 + 2 * 512 + 3 * 1024
    two = parse_buddyinfo(text + text)
    with pytest.raises(ValueError, match="2 buddyinfo snapshots"):
        order9_capable_blocks(two)
    assert order9_capable_blocks(two, snapshot=1) == order9_capable_blocks(entries)
    # other MAX_ORDER values: orders above 10 count 2**(order - 9) order-9 blocks
    assert order9_capable_blocks(parse_buddyinfo("Node 0, zone Normal" + " 1" * 13 + "\n")) \
        == 1 + 2 + 4 + 8


# ---------------------------------------------------------------------------------------------
# vmallocinfo
# ---------------------------------------------------------------------------------------------

def _csv_category(long_name: str) -> str:
    return long_name.split(" ")[0]


def test_vmallocinfo_categories_match_summary_csv():
    expected: dict[str, dict] = {}
    for row in read_csv("vmallocinfo-summary.csv"):
        nodes = dict(re.fullmatch(r"N(\d+)=(\d+)", p).groups() for p in
                     row["pages_by_node"].split()) if row["pages_by_node"] else {}
        expected.setdefault(CSV_SOURCE.get(row["source"], row["source"]), {})[
            _csv_category(row["category"])] = {
                "areas": int(row["n_areas"]),
                "bytes": int(row["sum_area_bytes_incl_guard"]),
                "pages": int(row["sum_pages"]),
                "nodes": {int(k): int(v) for k, v in nodes.items()},
        }
    found = sorted(p.parent.name for p in MACHINES.glob("*/vmallocinfo.txt"))
    assert sorted(expected) == found
    for folder, categories in expected.items():
        got = vmalloc_summary(parse_vmallocinfo(MACHINES / folder / "vmallocinfo.txt"))
        assert got == categories, folder
        assert set(got) <= set(procfs.VMALLOC_CATEGORIES)


def test_vmallocinfo_fields():
    rhcos = parse_vmallocinfo(MACHINES / "rhcos418-hyperv" / "vmallocinfo.txt")
    assert len(rhcos) == 616
    first = rhcos[0]
    assert (first["start"], first["end"], first["size"]) == (0x7874D405, 0xE344A63F, 8192)
    assert first["caller"] == "acpi_os_map_iomem+0x19d/0x1c0"
    assert first["flags"] == ["ioremap"] and first["phys"] == 0xF7FF8000
    assert first["pages"] == 0 and first["nodes"] == {}
    big = [e for e in rhcos if e["pages"] == 4096]
    assert big[0]["caller"] == "netvsc_device_add+0x5c2/0xae0 [hv_netvsc]"
    assert big[0]["module"] == "hv_netvsc"
    assert big[0]["flags"] == ["vmalloc", "vpages"] and big[0]["nodes"] == {0: 4096}
    unpurged = [e for e in rhcos if e["unpurged"]]
    assert len(unpurged) == 42 and all(e["caller"] == "unpurged vm_area" for e in unpurged)
    [ram] = [e for e in rhcos if e["vm_map_ram"]]
    assert ram["size"] == 1_048_576 and classify_vmalloc_caller(ram["caller"]) == "other"
    [percpu] = [e for e in rhcos if e["caller"].startswith("pcpu_get_vm_areas")]
    assert percpu["pages"] == 0 and percpu["flags"] == ["vmalloc"]
    old = parse_vmallocinfo(MACHINES / "ml-linux-mm-2008" / "vmallocinfo.txt")
    modules = [e for e in old if classify_vmalloc_caller(e["caller"]) == "module_core"]
    assert [e["pages"] for e in modules] == [33, 6, 8, 8, 11, 6]
    assert modules[0]["start"] == 0xFFFFFFFFA0000000
    assert old[4]["phys"] == 0xCFF68000  # 2008 format: phys= without 0x
    vdso = [e for e in old if e["caller"].startswith("init_vdso_vars")]
    assert vdso[0]["flags"] == [] and vdso[0]["pages"] == 0
    gpu = parse_vmallocinfo(MACHINES / "gpuvm-6.18" / "vmallocinfo.txt")
    execmem = [e for e in gpu if classify_vmalloc_caller(e["caller"]) == "execmem"]
    assert sum(e["pages"] for e in execmem) == 4716 and 512 in [e["pages"] for e in execmem]


def test_vmallocinfo_multi_node_and_user_flags():
    text = ("0x0000000000000000-0x0000000000000000 12288 alloc_large_system_hash+0x1/0x2"
            " pages=2 vmalloc N0=1 N1=1\n"
            "0x0000000000000000-0x0000000000000000 8192 load_module+0x1c/0x2b0 pages=1"
            " vmalloc user N1=1\n")
    a, b = parse_vmallocinfo(text)
    assert a["nodes"] == {0: 1, 1: 1} and a["start"] == 0
    assert b["flags"] == ["vmalloc", "user"] and b["nodes"] == {1: 1}


@pytest.mark.parametrize("caller, category", [
    ("load_module+0x1c/0x2b0", "module_core"),
    ("module_alloc+0x4f/0x55", "module_core"),
    ("layout_and_allocate+0x9c8/0xde0", "module_core"),
    ("move_module+0x25/0x1d0", "module_core"),
    ("execmem_alloc+0x83/0x1a0", "execmem"),
    ("bpf_jit_binary_alloc+0x5e/0xd0", "bpf_jit_exec"),
    ("bpf_jit_alloc_exec+0x10/0x20", "bpf_jit_exec"),
    ("bpf_prog_pack_alloc+0x28b/0x3a0", "bpf_jit_exec"),
    ("bpf_prog_alloc+0x47/0xd0", "bpf_prog_struct"),
    ("bpf_prog_alloc_no_stats+0x39/0x230", "bpf_prog_struct"),
    ("bpf_jit_blind_constants+0x5b/0x360", "bpf_prog_struct"),
    ("arch_ftrace_update_trampoline+0x160/0x350", "ftrace_trampoline"),
    ("alloc_insn_page+0x12/0x20", "kprobe_insn_page"),
    ("unpurged vm_area", "unpurged"),
    ("0xffffffffc088c0d3", "called_from_module_code"),
    ("0xffffffff81000000", "other"),
    ("os_alloc_mem+0x9d/0x130 [nvidia]", "other"),
    ("vm_map_ram", "other"),
    (None, "other"),
])
def test_classify_vmalloc_caller(caller, category):
    assert classify_vmalloc_caller(caller) == category


# ---------------------------------------------------------------------------------------------
# modules
# ---------------------------------------------------------------------------------------------

def test_parse_modules_is_the_lsmod_parser():
    assert procfs.parse_modules is lsmod.parse_modules


def test_module_counts_match_summary_csv():
    for row in read_csv("modules-summary.csv"):
        folder = MACHINES / row["source"]
        modules = read_proc_dir(folder)["modules"]
        assert len(modules) == int(row["n_modules"]), row["source"]
        assert sum(m.size_bytes for m in modules) == int(row["total_bytes"]), row["source"]
        assert sum(m.pages for m in modules) == int(row["total_4k_pages"]), row["source"]


# ---------------------------------------------------------------------------------------------
# zoneinfo
# ---------------------------------------------------------------------------------------------

def test_zoneinfo_fields():
    rhcos = parse_zoneinfo(MACHINES / "rhcos418-hyperv" / "zoneinfo.txt")
    assert [z["zone"] for z in rhcos] == ["DMA", "DMA32", "Normal", "Movable", "Device"]
    normal = rhcos[2]
    assert (normal["free"], normal["min"], normal["low"], normal["high"]) == (
        10852, 8684, 10855, 13026)
    assert normal["managed"] == 1042033
    assert normal["stats"]["nr_free_pages"] == 10852
    assert rhcos[0]["node_stats"] and not normal["node_stats"]
    old = parse_zoneinfo(MACHINES / "ubuntu1204-3.2" / "zoneinfo.txt")
    assert [z["managed"] for z in old] == [None, None, None]
    assert old[0]["protection"] == [0, 3237, 7994, 7994]
    assert old[0]["stats"]["start_pfn"] == 16
    gpu = parse_zoneinfo(MACHINES / "gpuvm-6.18" / "zoneinfo.txt")
    dma = gpu[0]
    assert (dma["free"], dma["min"], dma["low"], dma["high"], dma["managed"]) == (
        3840, 57, 71, 85, 3840)  # not the pageset "high:" lines
    assert dma["stats"]["promo"] == 99 and dma["stats"]["boost"] == 0


def test_zoneinfo_free_pages_agree_with_nr_free_pages():
    for path in MACHINES.glob("*/zoneinfo.txt"):
        for zone in parse_zoneinfo(path):
            assert zone["stats"].get("nr_free_pages", zone["free"]) == zone["free"], path
            assert zone["min"] <= zone["low"] <= zone["high"], path


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

GARBAGE = [
    (parse_meminfo, "MemTotal: 5 kB\nMemFree: lots kB\n", 2, "not a meminfo line"),
    (parse_meminfo, "MemTotal: 5 kB\nMemFree: 3 MB\n", 2, "unit 'MB'"),
    (parse_meminfo, "MemTotal: 5 kB\nMemTotal: 6 kB\n", 2, "duplicate key"),
    (parse_buddyinfo, "Node 0, zone DMA 1 2 3\nNode 0, zone Normal 1 2\n", 2, "order columns"),
    (parse_buddyinfo, "Node 0, zone DMA 1 2 x\n", 1, "free count 'x'"),
    (parse_buddyinfo, "hello world\n", 1, "not a buddyinfo line"),
    (parse_vmallocinfo, "0x0-0x1000 4096 foo+0x1/0x2 pages=1 vmalloc\nbogus\n", 2,
     "not a vmallocinfo line"),
    (parse_vmallocinfo, "0x0-0x1000 4096 foo+0x1/0x2 pages=1 vmalloc wobble\n", 1,
     "unexpected 'wobble'"),
    (parse_vmallocinfo, "0x0-0x1000 4096 foo+0x1/0x2 vmalloc pages=1\n", 1, "out of order"),
    (parse_vmallocinfo, "0x0-0x1000 4096 foo+0x1/0x2 pages=2 vmalloc N0=1\n", 1,
     "add up to 1"),
    (parse_vmallocinfo, "0x0-0x1000 4096 foo pages=2\n", 1, "caller 'foo'"),
    (parse_vmallocinfo,
     "0xffffc20000000000-0xffffc20000002000 4096 foo+0x1/0x2 pages=1 vmalloc\n", 1,
     "size 4096 != end - start = 8192"),
    (parse_zoneinfo, "  pages free 3\n", 1, "expected 'Node N, zone NAME' first"),
    (parse_zoneinfo, "Node 0, zone DMA\n  pages free 3\n  min 1\n  low 2\n  oops oops\n", 5,
     "not a zoneinfo line"),
    (parse_zoneinfo, "Node 0, zone DMA\n  pages free 3\n  min 1\n  low 2\n", 1,
     "has no 'high' line"),
    (parse_modules, "foo 4096 0 - Live 0x0\nbar many 0 - Live 0x0\n", 2, "size 'many'"),
]


@pytest.mark.parametrize("parser, text, line, what", GARBAGE,
                         ids=[f"{g[0].__name__}-{i}" for i, g in enumerate(GARBAGE)])
def test_garbage_gives_file_and_line(parser, text, line, what):
    with pytest.raises(ValueError, match=rf"^<text>:{line}: .*{re.escape(what)}"):
        parser(text)


def test_garbage_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "meminfo"
    path.write_text("# comment\nMemTotal: 5 kB\n\nnonsense here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}:4: "):
        parse_meminfo(path)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}:4: "):
        read_proc_dir(tmp_path)


@pytest.mark.parametrize("parser", [parse_meminfo, parse_buddyinfo, parse_vmallocinfo,
                                    parse_zoneinfo, parse_modules])
@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_input_is_an_error(parser, text, tmp_path):
    if parser is parse_modules and text.startswith("#"):
        # gpalloc.workloads.lsmod does not skip '#' lines: an error, but a line error.
        with pytest.raises(ValueError, match=r"^<text>:1: "):
            parser(text)
        return
    with pytest.raises(ValueError, match=r"^<text>: no "):
        parser(text)
    path = tmp_path / "empty"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: no "):
        parser(path)


def test_read_proc_dir_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_proc_dir(tmp_path / "missing")
    with pytest.raises(ValueError, match="none of"):
        read_proc_dir(tmp_path)
    (tmp_path / "meminfo").write_text("MemTotal: 1 kB\n", encoding="utf-8")
    assert read_proc_dir(tmp_path) == {"meminfo": {"MemTotal": 1}}
    (tmp_path / "meminfo.txt").write_text("MemTotal: 2 kB\n", encoding="utf-8")
    with pytest.raises(ValueError, match="both meminfo and meminfo.txt"):
        read_proc_dir(tmp_path)


# ---------------------------------------------------------------------------------------------
# The running machine
# ---------------------------------------------------------------------------------------------

def _readable(path: str) -> bool:
    try:
        Path(path).read_bytes()
    except OSError:
        return False
    return True


def test_read_running_machine():
    result = read_running_machine()
    if not sys.platform.startswith("linux") or not _readable("/proc/meminfo"):
        assert result is None
        return
    assert isinstance(result, dict)
    assert result["meminfo"]["MemTotal"] > 0
    for name in ("buddyinfo", "zoneinfo", "vmallocinfo", "modules"):
        assert (name in result) == _readable(f"/proc/{name}") or (
            name == "modules" and result.get("modules") == []), name


def test_read_running_machine_skips_unreadable_files(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    (tmp_path / "meminfo").write_text("MemTotal: 1 kB\n", encoding="utf-8")
    (tmp_path / "modules").write_text("", encoding="utf-8")
    (tmp_path / "vmallocinfo").write_text("0x0-0x0 8192 f+0x0/0x1\n", encoding="utf-8")
    real_read_bytes = Path.read_bytes

    def read_bytes(self):
        if self.name == "vmallocinfo":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    assert read_running_machine(tmp_path) == {"meminfo": {"MemTotal": 1}, "modules": []}
    monkeypatch.setattr(sys, "platform", "darwin")
    assert read_running_machine(tmp_path) is None
    monkeypatch.setattr(sys, "platform", "linux")
    assert read_running_machine(tmp_path / "nowhere") is None


# ---------------------------------------------------------------------------------------------
# pagetypeinfo, vmstat, slabinfo (real files: data/machines/gpuvm-6.18, data/measurements/)
# ---------------------------------------------------------------------------------------------

MEASUREMENTS = MACHINES.parent / "measurements"
IDLE = MEASUREMENTS / "b1-00-idle" / "phases" / "00-idle"


def test_pagetypeinfo_gpuvm():
    pt = parse_pagetypeinfo(MACHINES / "gpuvm-6.18" / "pagetypeinfo.txt")
    assert pt["page_block_order"] == 9 and pt["pages_per_block"] == 512
    assert pt["orders"] == list(range(11))
    assert pt["migratetypes"] == ["Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate"]
    assert len(pt["free"]) == 15 and pt["mixed"] == []
    dma32 = next(r for r in pt["free"] if r["zone"] == "DMA32" and r["type"] == "Movable")
    assert dma32["free"] == [2, 2, 3, 3, 1, 1, 2, 1, 1, 0, 753]
    normal = next(b for b in pt["blocks"] if b["zone"] == "Normal")["counts"]
    assert normal == {"Unmovable": 187, "Movable": 508, "Reclaimable": 9, "HighAtomic": 0,
                      "Isolate": 0}


def test_pagetypeinfo_free_table_agrees_with_buddyinfo():
    """pagetypeinfo's free counts, summed over migratetypes, are buddyinfo's (same instant)."""
    pt = parse_pagetypeinfo(IDLE / "pagetypeinfo.txt")
    for entry in parse_buddyinfo(IDLE / "buddyinfo.txt"):
        rows = [r["free"] for r in pt["free"] if r["zone"] == entry["zone"]]
        summed = [sum(col) for col in zip(*rows, strict=True)]
        # The two files are read a few microseconds apart: allow a few blocks of drift.
        assert all(abs(a - b) <= 8 for a, b in zip(summed, entry["free"], strict=True)), entry


def test_pagetypeinfo_capped_counts_and_errors():
    text = ("Page block order: 9\nPages per block:  512\n\n"
            "Free pages count per migrate type at order       0      1 \n"
            "Node    0, zone   Normal, type    Unmovable >100000      3 \n")
    pt = parse_pagetypeinfo(text)
    assert pt["free"][0]["free"] == [100000, 3] and pt["free"][0]["capped"] == [0]
    with pytest.raises(ValueError, match=r"<text>:6: 1 order columns, the header has 2"):
        parse_pagetypeinfo(text + "Node    0, zone   Normal, type      Movable      3 \n")
    with pytest.raises(ValueError, match=r"<text>:3: not a pagetypeinfo line before any"):
        parse_pagetypeinfo("Page block order: 9\nPages per block: 512\nNode 0, zone DMA 1 2\n")
    with pytest.raises(ValueError, match="repeated"):
        parse_pagetypeinfo(text + text.splitlines()[-1] + "\n")
    with pytest.raises(ValueError, match="no 'Pages per block:' line"):
        parse_pagetypeinfo(text.replace("Pages per block:  512\n", ""))


def test_vmstat_real_file():
    vm = parse_vmstat(IDLE / "vmstat.txt")
    assert list(vm)[0] == "nr_free_pages"
    assert vm["nr_free_pages"] > 0 and "compact_stall" in vm and "pgalloc_normal" in vm
    meminfo = parse_meminfo(IDLE / "meminfo.txt")
    # nr_free_pages counts what the buddy allocator holds (MemFree also counts not-yet-
    # initialised pages on this deferred_init=lazy kernel, so it is larger).
    assert vm["nr_free_pages"] * 4 <= meminfo["MemFree"]
    with pytest.raises(ValueError, match=r"<text>:2: counter 'a' repeated"):
        parse_vmstat("a 1\na 2\n")
    with pytest.raises(ValueError, match=r"<text>:1: not a vmstat line"):
        parse_vmstat("nr_free_pages: 5\n")


def test_slabinfo_real_file():
    import gzip

    text = gzip.decompress((IDLE / "slabinfo.txt.gz").read_bytes()).decode()
    caches = parse_slabinfo(text)
    assert len(caches) == len(text.splitlines()) - 2     # version and '# name' header
    names = {c["name"] for c in caches}
    assert {"kmalloc-64", "task_struct"} <= names
    for c in caches:
        assert c["active_objs"] <= c["num_objs"] and c["active_slabs"] <= c["num_slabs"]
    with pytest.raises(ValueError, match=r"<text>:1: expected 'slabinfo - version: 2.1' first"):
        parse_slabinfo("kmalloc-64 1 2 64 64 1 : tunables 0 0 0 : slabdata 1 1 0\n")
    with pytest.raises(ValueError, match=r"<text>:2: not a slabinfo line"):
        parse_slabinfo("slabinfo - version: 2.1\nkmalloc-64 1 2 64\n")
