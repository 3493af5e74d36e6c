"""Real module listings (data/lsmod/) and the v5.11 BPF selftest profile."""

import json
import math
import re
import shutil
from pathlib import Path

import pytest

from gpalloc.kernel.bpf.core import bpf_jit_binary_pages as jit_pages
from gpalloc.mm.page import PAGE_SIZE
from gpalloc.workloads.bpf_profile import parse_bpf_profile
from gpalloc.workloads.lsmod import Module, parse_modules
from gpalloc.workloads.sections import module_layout

DATA = Path(__file__).resolve().parent.parent / "data"
LSMOD = DATA / "lsmod"
PROFILE = DATA / "bpf_selftests_v5_11.json"
LISTINGS = sorted(LSMOD.glob("*.txt"))


def readme_counts() -> dict[str, int]:
    """file name -> module count, from the provenance table in data/lsmod/README.md."""
    counts = {}
    for line in (LSMOD / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and re.fullmatch(r"`[^`]+\.txt`", cells[0]):
            counts[cells[0].strip("`")] = int(cells[5].replace(",", ""))
    return counts


def test_readme_has_one_row_per_listing():
    assert len(LISTINGS) == 9
    assert sorted(readme_counts()) == [p.name for p in LISTINGS]


@pytest.mark.parametrize("path", LISTINGS, ids=[p.name for p in LISTINGS])
def test_every_listing_parses_with_readme_count(path):
    modules = parse_modules(path)
    assert len(modules) == readme_counts()[path.name]
    assert len({m.name for m in modules}) == len(modules)
    for m in modules:
        assert m.size_bytes > 0
        assert m.pages == math.ceil(m.size_bytes / PAGE_SIZE)


def test_readme_page_totals():
    # The README's totals column starts with "<bytes> B = <pages>" or "<pages>".
    for line in (LSMOD / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and re.fullmatch(r"`[^`]+\.txt`", cells[0]):
            pages = int(re.match(r"(?:[\d,]+ B = )?([\d,]+)", cells[6]).group(1).replace(",", ""))
            modules = parse_modules(LSMOD / cells[0].strip("`"))
            assert sum(m.pages for m in modules) == pages, cells[0]


def test_rhcos_lsmod_and_proc_modules_agree():
    lsmod = parse_modules(LSMOD / "rhcos418-hyperv-lsmod.txt")
    proc = parse_modules(LSMOD / "rhcos418-hyperv-modules.txt")
    assert [(m.name, m.size_bytes) for m in lsmod] == [(m.name, m.size_bytes) for m in proc]
    assert [m.refcount for m in lsmod] == [m.refcount for m in proc]
    assert [set(m.used_by) for m in lsmod] == [set(m.used_by) for m in proc]
    assert sum(m.pages for m in proc) == 2057
    assert all(m.state == "Live" and m.load_addr >= 0xFFFFFFFFC0000000 for m in proc)
    assert all(m.state is None and m.load_addr is None for m in lsmod)
    assert [m.name for m in proc if m.permanent] == ["hv_balloon"]


def test_proc_modules_fields():
    gpu = parse_modules(LSMOD / "gpuvm-6.18-modules.txt")
    assert [(m.name, m.refcount, m.used_by, m.taints) for m in gpu] == [
        ("nvidia_uvm", None, (), "O"),
        ("nvidia", None, (), "O"),
    ]
    assert gpu[1].load_addr == 0xFFFFFFFFC0400000
    deb = {m.name: m for m in parse_modules(LSMOD / "debian11-5.10-qemu-modules.txt")}
    assert deb["usb_common"].used_by == ("uhci_hcd", "ehci_hcd", "usbcore")
    assert deb["usb_common"].refcount == 3
    assert deb["kvm_amd"].load_addr == 0


def test_lsmod_fields():
    desk = {m.name: m for m in parse_modules(LSMOD / "endeavouros-6.12-desktop-lsmod.txt")}
    assert desk["rfkill"].used_by == ("asus_wmi", "bluetooth", "cfg80211")
    assert desk["rfkill"].refcount == 6
    assert desk["snd_seq_dummy"].used_by == ()
    assert desk["snd_seq_dummy"].pages == 3


def test_non_page_multiple_sizes_round_up():
    old = parse_modules(LSMOD / "ubuntu1204-3.2-modules.txt")
    assert all(m.size_bytes % PAGE_SIZE for m in old)
    by_name = {m.name: m for m in old}
    assert by_name["snd_seq_dummy"].size_bytes == 12798
    assert by_name["snd_seq_dummy"].pages == 4
    assert sum(m.pages for m in old) == 1623 > sum(m.size_bytes for m in old) / PAGE_SIZE
    text = "a 4096 0 - Live 0x0\nb 4097 0 - Live 0x0\nc 1 0 - Live 0x0\n"
    assert [m.pages for m in parse_modules(text)] == [1, 2, 1]


def test_text_input_variants():
    lsmod = "Module   Size  Used by  \n\n  foo   16384  2 bar,baz,  \r\nbar 8192 0\n\n"
    mods = parse_modules(lsmod)
    assert [(m.name, m.pages, m.refcount, m.used_by) for m in mods] == [
        ("foo", 4, 2, ("bar", "baz")),
        ("bar", 2, 0, ()),
    ]
    headerless = "foo 16384 1 bar\nbar 8192 0\n"
    assert [m.name for m in parse_modules(headerless)] == ["foo", "bar"]
    proc = "foo 16384 1 bar, Live 0xffffffffc0000000 (OE)\n"
    (foo,) = parse_modules(proc)
    assert (foo.used_by, foo.taints, foo.state) == (("bar",), "OE", "Live")
    assert parse_modules(Path(LISTINGS[0])) == parse_modules(str(LISTINGS[0]))
    assert parse_modules(LISTINGS[0].read_text()) == parse_modules(LISTINGS[0])


def test_garbage_file_gives_file_and_line(tmp_path):
    bad = tmp_path / "garbage.txt"
    bad.write_text("Module Size Used by\nfoo 16384 0\n\nthis is not a module line at all\n")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(bad))}:4: "):
        parse_modules(bad)
    with pytest.raises(ValueError, match=r"^boot7:4: "):
        parse_modules(bad, name="boot7")
    with pytest.raises(ValueError, match=r"^<text>:4: "):
        parse_modules(bad.read_text())
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"foo 16384 0\n\xff\xfe\x00garbage\n")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(binary))}:2: not UTF-8"):
        parse_modules(binary)


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("foo 16384 0\nbar sixteen 0\n", 2, "size 'sixteen'"),
        ("foo 0 0\n", 1, "size is 0"),
        ("foo 16384 x\n", 1, "use count 'x'"),
        ("foo 16384 0 - Live 0x0\nbar 4096 0 - Sleeping 0x0\n", 2, "state 'Sleeping'"),
        ("foo 16384 0 - Live 0x0\nbar 4096 0 - Live zero\n", 2, "address 'zero'"),
        ("foo 16384 0 - Live 0x0 OE\n", 1, "taint flags 'OE'"),
        ("foo 16384 0 - Live 0x0\nbar 4096 0\n", 2, "/proc/modules lines have 6 or 7"),
        ("foo 16384 0\nbar 4096 0 - Live 0x0\n", 2, "lsmod lines have 3 or 4"),
        ("foo 16384 0\nfoo 4096 0\n", 2, "duplicate module 'foo' (first on line 1)"),
        ("foo 16384 0\nModule Size Used by\n", 2, "lsmod header"),
        ("f/oo 16384 0\n", 1, "bad module name 'f/oo'"),
        ("foo 16384 0 ,,\n", 1, "empty users list"),
        ("foo 16384\n", 1, "2 fields"),
    ],
)
def test_bad_lines_are_reported(text, line, what):
    with pytest.raises(ValueError) as info:
        parse_modules(text, name="x.txt")
    message = str(info.value)
    assert message.startswith(f"x.txt:{line}: "), message
    assert what in message


@pytest.mark.parametrize("content", ["", "\n\n", "   \n", "Module  Size  Used by\n"])
def test_empty_listing_is_an_error(tmp_path, content):
    empty = tmp_path / "empty.txt"
    empty.write_text(content)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(empty))}: no modules found$"):
        parse_modules(empty)


def test_empty_text_is_an_error():
    with pytest.raises(ValueError, match=r"^<text>: no modules found$"):
        parse_modules("")


def test_module_is_frozen_and_validated():
    m = Module("foo", 5000)
    assert m.pages == 2
    with pytest.raises(AttributeError):
        m.size_bytes = 1
    with pytest.raises(ValueError):
        Module("foo", 0)


def test_module_layout_small_modules():
    assert module_layout(Module("a", 4096)) == (1, 0, 0, 0, 1, 0, 1)
    assert module_layout(Module("a", 2 * 4096)) == (1, 0, 0, 1, 1, 0, 1)
    assert module_layout(Module("a", 3 * 4096)) == (1, 1, 0, 1, 1, 0, 1)
    assert module_layout(Module("a", 4 * 4096)) == (1, 1, 1, 1, 1, 0, 1)
    assert module_layout(Module("a", 100 * 4096)) == (54, 25, 1, 20, 3, 2, 10)


@pytest.mark.parametrize("path", LISTINGS, ids=[p.name for p in LISTINGS])
def test_module_layout_sums_to_pages_and_is_deterministic(path):
    for m in parse_modules(path):
        layout = module_layout(m)
        assert len(layout) == 7
        assert all(isinstance(x, int) and x >= 0 for x in layout)
        text, rodata, ro_after_init, data, init_text, _init_rodata, init_data = layout
        assert text + rodata + ro_after_init + data == m.pages
        assert text >= 1 and init_text >= 1 and init_data >= 1
        if m.pages >= 4:
            assert min(text, rodata, ro_after_init, data) >= 1
        assert module_layout(m) == layout
        assert module_layout(Module(m.name, m.size_bytes)) == layout
    # Same-sized modules get the same layout, whatever their name.
    assert module_layout(Module("x", 123456)) == module_layout(Module("y", 123456))


def test_module_layout_needs_a_module():
    with pytest.raises(TypeError):
        module_layout(16384)


def test_bpf_profile_loads():
    profile = parse_bpf_profile(PROFILE)
    assert profile.kernel == "v5.11"
    tag = profile.test_tag
    assert tag.loads == 40945 == 5 * (4095 + 4094)
    assert sum(tag.pages_histogram.values()) == 40945
    assert tag.total_pages == 137020
    scale = profile.test_verifier.scale_programs
    assert scale.pages_each == 1181 == jit_pages(scale.jited_bytes)
    assert profile.fexit_stress.fexit_programs == 40
    tv = profile.test_verifier
    assert tv.jit_images.estimate is True
    assert tv.jit_images.value == (tv.accepted_privileged_loads.value
                                   + tv.accepted_unprivileged_loads.value)


def test_bpf_profile_jit_sizes_match_the_csv():
    csv = (DATA / "fcvm-6.18-bpf-jit-sizes.csv").read_text().splitlines()
    rows = {tuple(r.split(",")[:2]): int(r.split(",")[3]) for r in csv[1:]}
    bpi = parse_bpf_profile(PROFILE).jit_bytes_per_insn
    assert bpi.imm == round(rows[("imm", "4096")] / 4096, 2)
    assert bpi.map == round(rows[("map", "4096")] / 4096, 2)
    assert bpi.mov_r0_42 == round(rows[("mov_r0_42_only", "967233")] / 967233, 3)


def _broken_copy(tmp_path, edit):
    doc = json.loads(PROFILE.read_text())
    edit(doc)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda d: d["test_tag"].pop("loads"), "test_tag.loads"),
        (lambda d: d["test_tag"].update(loads=40000), "test_tag.loads"),
        (lambda d: d["test_tag"]["pages_histogram"].update({"1": 7081}),
         "test_tag.pages_histogram"),
        (lambda d: d["test_tag"]["map_programs_per_round"].pop("last_insns"),
         "test_tag.map_programs_per_round.last_insns"),
        (lambda d: d["test_verifier"]["fill_helper_programs"]["programs"][8].update(pages=7),
         "test_verifier.fill_helper_programs.programs[8].pages"),
        (lambda d: d["test_verifier"]["scale_programs"].update(pages_each=1000),
         "test_verifier.scale_programs.pages_each"),
        (lambda d: d["test_progs"]["trampolines"].update(value=1000),
         "test_progs.trampolines.value"),
        (lambda d: d["test_verifier"]["jit_images"].pop("range"),
         "test_verifier.jit_images.range"),
        (lambda d: d["jit_bytes_per_insn"].update(imm="six"), "jit_bytes_per_insn.imm"),
        (lambda d: d.pop("fexit_stress"), "fexit_stress"),
        (lambda d: d.update(schema="other/2"), "schema"),
    ],
)
def test_broken_bpf_profile_is_refused(tmp_path, edit, key):
    path = _broken_copy(tmp_path, edit)
    with pytest.raises(ValueError) as info:
        parse_bpf_profile(path)
    assert str(info.value).startswith(f"{path}: key '{key}':"), str(info.value)


def test_bpf_profile_not_json(tmp_path):
    path = tmp_path / "profile.json"
    shutil.copy(PROFILE, path)
    path.write_text(path.read_text()[:-20])
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}:\d+: not valid JSON"):
        parse_bpf_profile(path)
