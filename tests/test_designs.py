"""Kernel designs (gpalloc/designs/): one registry, one seam, nothing else knows their names."""

import ast
import contextlib
import io
import json
from pathlib import Path

import pytest

from gpalloc import Machine, designs
from gpalloc.arch.x86.set_memory import set_memory_ro
from gpalloc.cli import main
from gpalloc.designs.v5_11 import Linux511
from gpalloc.experiments import run_experiment
from gpalloc.mm.vmalloc import VM_FLUSH_RESET_PERMS, find_vm_area

PACKAGE = Path(__file__).resolve().parent.parent / "gpalloc"


class NoResetPerms(Linux511):
    """v5.11 whose module_alloc() callers never get VM_FLUSH_RESET_PERMS honoured.

    A small design of the test's own: vfree() of a permissioned area leaves the
    direct-map alias read-only instead of resetting it (the pre-5.2 behaviour).
    """

    name = "test-no-reset-perms"
    summary = "v5.11 without VM_FLUSH_RESET_PERMS (test design)"

    def execmem_free(self, k, type, addr, size):
        area = find_vm_area(k, addr)
        if area is not None:
            area.flags &= ~VM_FLUSH_RESET_PERMS
        super().execmem_free(k, type, addr, size)


@pytest.fixture
def registered():
    designs.register(NoResetPerms)   # the one registry line a new design needs
    yield NoResetPerms.name
    designs.unregister(NoResetPerms.name)


def test_a_new_design_runs_through_machine_experiment_and_cli(registered):
    m = Machine(design=registered, node_mem="1G")
    assert isinstance(m.design, NoResetPerms) and m.config["design"] == registered
    m.check()
    machines = {}
    r = run_experiment("bpf-churn", seed=0, kernels=("5.11", registered), loads=200,
                       machines=machines)
    ours, base = r["runs"][registered], r["runs"]["5.11"]
    # no reset at free: no vm_remove_mappings() dance, so no reset frees and fewer flushes
    assert machines["5.11"].stats()["reset_perms_frees"] >= 200
    assert machines[registered].stats()["reset_perms_frees"] == 0
    assert ours["flush_tlb_all"] < base["flush_tlb_all"]
    assert "reduction_pct" in ours   # compared against the 5.11 run
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["experiment", "bpf-churn", "--loads", "50", "--kernel", registered,
                       "--json", "--quiet"])
    assert status == 0
    assert list(json.loads(out.getvalue())["runs"]) == [registered]


def test_compare_kernels_runs_every_registered_design(registered):
    r = run_experiment("bpf-load", seed=1, kernels=designs.names(), programs=8)
    assert list(r["runs"]) == designs.names() and registered in r["runs"]


def test_registry_refuses_bad_and_duplicate_designs():
    with pytest.raises(ValueError, match="registered already"):
        designs.register(type("Other", (Linux511,), {"name": "rfc"}))
    with pytest.raises(ValueError, match="not a named Design"):
        designs.register(object)
    with pytest.raises(ValueError, match="design: unknown 'nope'; choose from 5.11"):
        Machine(design="nope")


def test_patches_are_sugar_for_rfc_designs():
    assert type(Machine(patches=(1, 2, 3)).design) is type(Machine(design="rfc").design)
    assert Machine(design="rfc").config["patches"] == (1, 2, 3)
    assert Machine(design="5.18").config["patches"] is None
    assert repr(Machine(design="5.18")) == \
        "Machine(nodes=1, node_mem='4G', design='5.18', seed=0)"
    with pytest.raises(ValueError, match="design/patches: give one of them"):
        Machine(design="rfc", patches=(1,))
    with pytest.raises(ValueError, match="list_head: design '5.11' has no such option"):
        Machine(list_head="struct_page")


@pytest.mark.parametrize("name", designs.names())
def test_every_design_boots_allocates_and_checks(name):
    m = Machine(design=name, node_mem="1G")
    addr = m.module_alloc(3 * 4096)
    m.set_vm_flush_reset_perms(addr)
    assert set_memory_ro(m.k, addr, 3) == 0
    m.vfree(addr)
    m.check()
    assert isinstance(m.pools(), list) and isinstance(m.stats(), dict)


# ---------------------------------------------------------------- nothing else knows names

FEATURE_STRINGS = {"bpf_prog_pack", "cpa_merge", "execmem_rox"}


def _modules_outside_designs():
    for path in sorted(PACKAGE.rglob("*.py")):
        if "designs" not in path.relative_to(PACKAGE).parts:
            yield path


def _design_tests(tree):
    """Comparisons or membership tests that involve a design name, feature or patch number."""
    names = set(designs.names()) | {cls.name for cls in designs.BY_PATCHES.values()}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("patches", "features"):
            yield node.lineno, f".{node.attr}"
        if isinstance(node, ast.Compare):
            for part in (node.left, *node.comparators):
                for const in ast.walk(part):
                    if isinstance(const, ast.Constant) and const.value in names | FEATURE_STRINGS:
                        yield node.lineno, repr(const.value)


def test_no_module_outside_designs_tests_a_design():
    found = [f"{path.relative_to(PACKAGE.parent)}:{line}: {what}"
             for path in _modules_outside_designs()
             for line, what in _design_tests(ast.parse(path.read_text()))]
    assert found == []


def test_the_grep_would_catch_a_feature_test():
    bad = ast.parse('if "execmem_rox" in k.features or 3 in k.patches:\n    pass\n')
    assert sorted(what for _, what in _design_tests(bad)) == ["'execmem_rox'", ".features",
                                                               ".patches"]


# ---------------------------------------------------------------- the import graph

# Cycles that mirror kernel calls: reclaim and compaction run inside allocation, CPA flushes
# lazy vmaps.
ALLOWED_CYCLES = [{"gpalloc.mm.page_alloc", "gpalloc.mm.vmscan", "gpalloc.mm.compaction"},
                  {"gpalloc.arch.x86.set_memory", "gpalloc.mm.vmalloc"}]


def _module_name(path):
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _import_graph():
    graph = {}
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    mod = f"{base}.{node.module}" if node.module else base
                else:
                    mod = node.module or ""
                # "from pkg import sub" depends on pkg.sub, not on pkg's __init__
                subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in modules]
                targets = subs or [mod]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t.startswith("gpalloc")}
        graph[name] = deps
    return {n: {d for d in deps if d in graph and d != n} for n, deps in graph.items()}


def _strongly_connected(graph):
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            out.append(comp)

    for v in graph:
        if v not in index:
            visit(v)
    return [c for c in out if len(c) > 1]


def test_import_graph_has_only_the_kernel_mirroring_cycles():
    cycles = _strongly_connected(_import_graph())
    assert sorted(map(sorted, cycles)) == sorted(map(sorted, ALLOWED_CYCLES))
