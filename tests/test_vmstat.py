"""Every k.stat counter the model increments is enumerated in gpalloc/mm/vmstat.py."""

import ast
from pathlib import Path

from gpalloc.experiments import run_experiment
from gpalloc.mm.vmstat import ALWAYS_REPORTED, VM_EVENTS, is_vm_event

PACKAGE = Path(__file__).resolve().parent.parent / "gpalloc"


def _stat_keys_in_code():
    """(file:line, key) of every ``….stat[KEY]`` subscript; f-strings give their prefix."""
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) \
                    and node.value.attr == "stat":
                key = node.slice
                if isinstance(key, ast.Constant):
                    yield f"{path.name}:{node.lineno}", key.value
                elif isinstance(key, ast.JoinedStr) and isinstance(key.values[0], ast.Constant):
                    yield f"{path.name}:{node.lineno}", key.values[0].value


def test_every_counter_in_the_code_is_enumerated():
    keys = list(_stat_keys_in_code())
    assert len(keys) > 30
    assert [(where, key) for where, key in keys if not is_vm_event(key)] == []


def test_every_counter_an_experiment_produces_is_enumerated():
    machines = {}
    run_experiment("bpf-churn", seed=0, kernels=("5.11", "rfc", "cpa-merge", "6.15"),
                   loads=100, machines=machines)
    for m in machines.values():
        assert [key for key in m.k.stat if not is_vm_event(key)] == []


def test_always_reported_counters_are_enumerated_and_prefixes_are_marked():
    assert set(ALWAYS_REPORTED) <= set(VM_EVENTS)
    assert is_vm_event("flush_tlb_all:split") and is_vm_event("drop_caches_3")
    assert not is_vm_event("splits_3m")
