"""Per-process kernel memory (gpalloc.kernel.fork, gpalloc.workloads.process) and its CLI."""

import pytest

from gpalloc.cli import main
from gpalloc.experiments import build_events, run_experiment
from gpalloc.kernel import fork
from gpalloc.kernel.workqueue import flush_deferred
from gpalloc.live import read_capture
from gpalloc.machine import Machine
from gpalloc.mm import slab
from gpalloc.validate import MEASUREMENTS, workload
from gpalloc.workloads.events import play
from gpalloc.workloads.process import (
    PYTHON_FORK,
    SMALL_EXEC,
    ExitProcesses,
    ProcessBpfLoad,
    ProcessFilter,
    processes,
)
from gpalloc.workloads.scenario import Calibration, jited_bytes_for_pages


def free_kb(m):
    """MemFree + the per-CPU lists: every page the allocator could hand out."""
    return m.meminfo()["MemFree"] + 4 * sum(p.count for z in m.k.zones for p in z.pcp.values())


def small(cpus=2):
    return Machine(node_mem="512M", cpus_per_node=cpus)


def test_first_fork_vmallocs_a_stack_and_the_next_reuses_the_cached_one():
    m = small()
    k = m.k
    t1 = fork.kernel_clone(k, SMALL_EXEC)
    assert k.stat["thread_stack_vmalloc_pages"] == 4
    assert m.find_vm_area(t1.stack).size == fork.THREAD_SIZE + 4096   # + guard page
    stack = t1.stack
    fork.do_exit(k, t1)
    assert fork.cached_stacks(k)[0] == stack
    t2 = fork.kernel_clone(k, SMALL_EXEC)
    assert t2.stack == stack and k.stat["thread_stack_vmalloc_pages"] == 4
    assert k.stat["stack_cache_hits"] == 1
    m.cpu = 1   # another CPU's cache is empty: a new stack
    t3 = fork.kernel_clone(k, SMALL_EXEC)
    assert t3.stack != t2.stack and k.stat["thread_stack_vmalloc_pages"] == 8


def test_the_third_stack_freed_on_a_cpu_is_vfreed():
    m = small()
    k = m.k
    tasks = [fork.kernel_clone(k, SMALL_EXEC) for _ in range(3)]
    stacks = [t.stack for t in tasks]
    assert k.stat["thread_stack_vmalloc_pages"] == 12
    for t in tasks:
        fork.do_exit(k, t)
    assert None not in fork.cached_stacks(k)
    flush_deferred(k)   # vfree_atomic's work item
    assert k.stat["thread_stack_vmalloc_pages"] == 8
    assert m.find_vm_area(stacks[2]) is None and m.find_vm_area(stacks[0]) is not None


def test_pgd_is_order_1_with_pti_and_order_0_without():
    m = small()
    t = fork.kernel_clone(m.k, SMALL_EXEC)
    assert t.mm.pgd.order == 1 and t.mm.pgd_order == 1
    u = fork.kernel_clone(m.k, PYTHON_FORK)
    assert u.mm.pgd.order == 0


@pytest.mark.parametrize("cost", [SMALL_EXEC, PYTHON_FORK], ids=lambda c: c.name)
def test_a_process_holds_what_its_calibration_says(cost):
    m = small()
    k = m.k
    fork.do_exit(k, fork.kernel_clone(k, cost))   # warm the caches
    flush_deferred(k)
    before = {name: row["active_objs"] for name, row in slab.slabinfo(k).items()}
    pt, anon = k.stat["page_table_user_pages"], k.stat["anon_pages"]
    fork.kernel_clone(k, cost)
    assert k.stat["page_table_user_pages"] - pt == cost.page_tables + (1 << cost.pgd_order)
    assert k.stat["anon_pages"] - anon == cost.anon_pages
    grown = {name: row["active_objs"] - before.get(name, 0)
             for name, row in slab.slabinfo(k).items()}
    want = dict(cost.slab)
    for name in (*fork.TASK_CACHES, "mm_struct"):
        want[name] = want.get(name, 0) + 1
    assert {n: c for n, c in grown.items() if c} == want


def test_exec_replaces_the_mm():
    m = small()
    k = m.k
    t = fork.kernel_clone(k, SMALL_EXEC)
    old = t.mm
    pt = k.stat["page_table_user_pages"]
    assert fork.exec_mmap(k, t, SMALL_EXEC) == 0
    assert t.mm is not old and old.pgd is None
    # the new PGD (2) and page tables in; the old PGD out at once, its page tables after RCU
    assert pt == 2 + SMALL_EXEC.page_tables
    assert k.stat["page_table_user_pages"] == pt + pt - 2
    flush_deferred(k)
    assert k.stat["page_table_user_pages"] == pt


def test_exit_frees_everything_but_the_stack_cache_and_sticky_slabs():
    m = small()
    k = m.k
    free0 = free_kb(m)
    play(k, [ProcessBpfLoad(64, jited_bytes_for_pages(1))] * 30 + [ExitProcesses()])
    m.check()
    assert not processes(k) and k.stat["forks"] == 30 and k.stat["exits"] == 30
    assert k.stat["page_table_user_pages"] == k.stat["anon_pages"] == 0
    assert k.stat["bpf_prog_loads"] == 30 * 4   # 3 libbpf probes + the program each
    assert all(row["active_objs"] == 0 for row in slab.slabinfo(k).values())
    for s in slab.slab_caches(k).values():
        slab.kmem_cache_shrink(k, s)
    cached = 4 * 4 * sum(a is not None for c in k.cached_stacks.values() for a in c)
    assert cached == 32   # two stacks on the CPU the processes exited on
    assert slab.slab_model_pages(k) == 0
    # all that is still held: the cached stacks (vmalloc) and the splits' page tables
    assert m.meminfo()["VmallocUsed"] == cached
    assert free_kb(m) + cached + 4 * len(k.dmap.pt_pages) == free0
    m.check()


def test_filters_in_processes_close_when_the_children_exit():
    m = small()
    k = m.k
    play(k, [ProcessFilter(100)] * 5)
    assert len(k.sockets) == 5 and len(processes(k)) == 5
    play(k, [ExitProcesses()])
    assert not k.sockets and not processes(k)
    m.check()


def test_bpf_load_per_process_phases_and_result():
    phases = build_events("bpf-load", 0, programs=20, per_process=True)
    assert list(phases) == ["bpf_load", "exit"] and len(phases["bpf_load"]) == 20
    phases = build_events("bpf-load", 0, programs=20, insns=100, per_process=True)
    assert list(phases) == ["loaded-r1", "closed-r1"]
    assert isinstance(phases["loaded-r1"][0], ProcessFilter)
    with pytest.raises(ValueError, match="per_process: only for bpf-load"):
        build_events("bpf-churn", 0, per_process=True)
    machines = {}
    r = run_experiment("bpf-load", cal=Calibration(node_mem="512M", pressure=0.0),
                       kernels=["5.11"], machines=machines, programs=20, per_process=True)
    assert r["workload"]["phases"] == {"bpf_load": 20, "exit": 1}
    assert machines["5.11"].stats()["forks"] == 20


def test_fedora_runners_are_processes_unless_switched_off():
    on = build_events("fedora-bpf", 0, test_tag_stride=50)
    off = build_events("fedora-bpf", 0, test_tag_stride=50, selftest_processes=False)
    for name in ("test_verifier", "test_progs", "test_tag"):
        assert len(on[name]) == len(off[name]) + 1
        assert on[name][0].lifetime == len(on[name])
    assert on["boot"] == off["boot"]


def test_validate_plays_bpf_procs_captures_per_process():
    cap = read_capture(MEASUREMENTS / "b1-11-procs-n600-k800")
    assert workload(cap) == {"programs": 600, "insns": 800, "rounds": 1, "per_process": True}
    cap = read_capture(MEASUREMENTS / "b1-05-filters-n500-k800")
    assert "per_process" not in workload(cap)


def test_cli_per_process_only_with_bpf_load(capsys):
    assert main(["experiment", "fedora-bpf", "--per-process"]) == 2
    assert capsys.readouterr().err.strip() == \
        "gpalloc: error: --per-process: only with bpf-load (got fedora-bpf)"
    assert main(["experiment", "bpf-load", "--per-process", "--programs", "10", "--node-mem",
                 "512M", "--kernel", "5.11", "--json", "--quiet"]) == 0
    assert '"per_process": "True"' in capsys.readouterr().out
