"""The post-v5.11 designs against their sources (docs/reference/kernel-6.18-bpf-jit.md §2, §4, §5):
5.18's 4 KiB packs, 6.x's 2 MiB packs made ROX page by page, the ROX cache of 6.15 and
6.17+, BPF trampolines on packs, and the classic socket filter's footprint."""

import pytest

from gpalloc import Machine
from gpalloc.kernel.bpf.core import bpf_jit_binary_pack_size
from gpalloc.mm.execmem import EXECMEM_BPF, EXECMEM_FTRACE, EXECMEM_MODULE_TEXT
from gpalloc.mm.vmalloc import VM_FLUSH_RESET_PERMS, find_vm_area
from gpalloc.net.filter import jited_bytes, sk_attach_filter, sock_close
from gpalloc.workloads.events import BpfLoad, CloseSockets, SocketFilter, Trampoline


@pytest.mark.parametrize("insns, chunks", [(400, 33), (800, 64), (1600, 126), (2400, 189)])
def test_pack_footprint_of_a_classic_filter_matches_the_pack_probes(insns, chunks):
    # data/measurements/README.md: chunks per program from the --pack-probe runs
    assert bpf_jit_binary_pack_size(jited_bytes(insns)) == chunks * 64


def test_518_packs_are_one_page_and_big_images_get_their_own_area():
    m = Machine(design="5.18", node_mem="1G")
    m.play([BpfLoad(64, 1000)] * 8)                 # 1024 B images: 4 per 4 KiB pack
    assert [p["pool_bytes"] for p in m.pools()] == [4096, 4096]
    m.play([BpfLoad(600, 5000)])                    # > 4 KiB: its own module_alloc
    assert len(m.pools()) == 2 and m.stats()["bpf_prog_packs"] == 2
    m.check()


def test_618_pack_is_2m_of_4k_pages_and_even_a_contiguous_one_splits_its_regions():
    m = Machine(design="6.18", node_mem="4G", seed=2)
    m.play([SocketFilter(800)])                     # 64 chunks: a new pack
    pool = m.pools()[0]
    area = find_vm_area(m.k, pool["addr"])
    assert pool["pool_bytes"] == 2 << 20 and area.nr_pages == 512 and not area.huge
    assert area.flags & VM_FLUSH_RESET_PERMS
    regions = {p.pfn >> 9 for p in area.pages}
    st = m.stats()
    assert st["splits_2m"] == len(regions) and st["splits_1g"] <= 1
    assert all(m.lookup_address(p.pfn)[1] & 0x2 == 0 for p in area.pages)   # alias RO
    assert all(m.lookup_address(p.pfn)[1] >> 63 for p in area.pages)        # ... and NX
    m.play([CloseSockets()])                        # last chunk gone: the pack is freed
    assert m.pools() == [] and m.stats()["splits_2m"] == len(regions)       # no new split
    m.check()


def test_618_filter_sockets_hold_their_pages_until_closed():
    m = Machine(design="6.18", node_mem="2G")
    free0 = m.meminfo()["MemFree"]
    socks = [sk_attach_filter(m.k, 1600) for _ in range(10)]
    assert all(s.prog.pages == 4 and s.prog.jited for s in socks)   # 96 + 8·1600 B
    assert all(s.orig and s.orig[0] == "large" and s.orig[2] == 2 for s in socks)
    for s in socks:
        sock_close(m.k, s)
    m.play([])                                     # the deferred frees run
    assert m.k.sockets == [] and m.pools() == []
    assert abs(m.meminfo()["MemFree"] - free0) < 64 << 10   # back (pcp pages excepted)
    m.check()


def test_bpf_is_never_rox_cached_on_x86_and_trampolines_use_packs():
    for name in ("6.15", "6.18"):
        m = Machine(design=name, node_mem="2G")
        assert not m.design.execmem_is_rox(EXECMEM_BPF)
        assert m.design.execmem_is_rox(EXECMEM_MODULE_TEXT)
        m.play([Trampoline()])
        assert [p["kind"] for p in m.pools()] == ["bpf_prog_pack"]
        # arch_bpf_trampoline_size()'s scratch page was freed with VM_FLUSH_RESET_PERMS
        assert m.stats()["reset_perms_frees"] == 1
    assert not Machine(design="6.15").design.execmem_is_rox(EXECMEM_FTRACE)
    assert Machine(design="6.18").design.execmem_is_rox(EXECMEM_FTRACE)


def test_rox_chunk_populate_keeps_2m_and_a_module_load_splits_it():
    m = Machine(design="6.15", node_mem="4G", seed=3)
    before = m.stats()["splits_2m"]
    m.k.cpu = 0
    from gpalloc.kernel.module import load_module
    mod = load_module(m.k, "demo", (4, 1, 1, 2), (1, 0, 1))
    chunk = next(p for p in m.pools() if p["kind"] == "execmem_cache")
    area = find_vm_area(m.k, chunk["addr"])
    assert area.huge and area.nr_pages == 512
    # text written through execmem_make_temp_rw(): the chunk's own region splits
    text_pfn = find_vm_area(m.k, mod.core_text[0]).pages[0].pfn
    assert m.lookup_address(text_pfn)[0] == 1 and m.stats()["splits_2m"] > before
    m.check()


@pytest.mark.parametrize("name, rw_cycle", [("6.15", False), ("6.18", True)])
def test_rox_cache_free_rules(name, rw_cycle):
    m = Machine(design=name, node_mem="4G", seed=4)
    addr = m.design.execmem_alloc(m.k, EXECMEM_MODULE_TEXT, 4096, "t")
    flushes = m.stats()["flush_tlb_all"]
    m.design.execmem_free(m.k, EXECMEM_MODULE_TEXT, addr, 4096)
    # the chunk is wholly free again: execmem_cache_clean() gives it back
    assert [p for p in m.pools() if p["kind"] == "execmem_cache"] == []
    assert (m.stats()["flush_tlb_all"] - flushes >= 2) == rw_cycle
    m.check()
