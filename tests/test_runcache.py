"""gpalloc.runcache: a cached run is the run (issue 13's "notebooks compute on demand")."""

import json

import numpy as np
import pytest

from gpalloc import runcache
from gpalloc.experiments import run_experiment
from gpalloc.snapshot import MachineSnapshot

SMALL = dict(programs=24, pages=2)


def _same(a, b):
    a, b = json.loads(json.dumps(a)), json.loads(json.dumps(b))
    for r in (a, b):
        for run in r["runs"].values():
            run.pop("seconds")
    return a == b


def test_snapshot_shows_what_its_machine_shows():
    machines = {}
    run_experiment("bpf-load", seed=1, machines=machines, **SMALL)
    for m in machines.values():
        s = MachineSnapshot.of(m)
        assert np.array_equal(s.direct_map_regions(), m.direct_map_regions())
        assert s.direct_map_regions().dtype == m.direct_map_regions().dtype
        assert s.grouped_block_regions() == m.grouped_block_regions()
        assert s.pagetypeinfo() == m.pagetypeinfo()
        assert s.buddyinfo() == m.buddyinfo()
        assert s.meminfo() == m.meminfo()
        assert s.stats() == json.loads(json.dumps(m.stats()))
        assert s.pools() == json.loads(json.dumps(m.pools()))
        assert s.config["nodes"] == m.config["nodes"]


def test_cached_run_is_run_experiment_and_is_computed_once(monkeypatch, tmp_path):
    monkeypatch.setattr(runcache, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(runcache, "_memory", {})
    calls = []
    real = runcache.compute
    monkeypatch.setattr(runcache, "compute", lambda *a, **kw: calls.append(a) or real(*a, **kw))
    r1, snaps = runcache.cached_run("bpf-load", 2, "1G", **SMALL)
    r1["runs"]["baseline"]["DirectMap4k"] = -1          # the caller's copy only
    r2, _ = runcache.cached_run("bpf-load", 2, "1G", **SMALL)
    assert len(calls) == 1 and r2["runs"]["baseline"]["DirectMap4k"] > 0
    direct = run_experiment("bpf-load", seed=2,
                            cal=runcache.scenario.Calibration(node_mem="1G"), **SMALL)
    assert _same(r2, direct)
    assert set(snaps) == {"baseline", "grouped"}


def test_a_committed_file_is_used_only_while_the_model_is_unchanged(monkeypatch, tmp_path):
    run = ("bpf-load", 3, "1G", SMALL)
    [path] = runcache.write_cached([run], tmp_path)
    monkeypatch.setattr(runcache, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(runcache, "_memory", {})
    monkeypatch.setattr(runcache, "compute", lambda *a, **kw: pytest.fail("recomputed"))
    result, snaps = runcache.cached_run("bpf-load", 3, "1G", **SMALL)
    direct_machines = {}
    direct = run_experiment("bpf-load", seed=3, cal=runcache.scenario.Calibration(node_mem="1G"),
                            machines=direct_machines, **SMALL)
    assert _same(result, direct)
    assert all(isinstance(step, tuple) for step in result["runs"]["grouped"]["timeline"])
    for label, m in direct_machines.items():
        assert np.array_equal(snaps[label].direct_map_regions(), m.direct_map_regions())
    # a model that changed since the file was written: the file is not used
    data = json.loads(path.read_text())
    data["model"] = "0" * 64
    path.write_text(json.dumps(data))
    monkeypatch.setattr(runcache, "_memory", {})
    monkeypatch.setattr(runcache, "compute", lambda *a, **kw: ("computed", {}))
    assert runcache.cached_run("bpf-load", 3, "1G", **SMALL)[0] == "computed"


def test_fingerprint_changes_with_the_model_source(monkeypatch, tmp_path):
    before = runcache.model_fingerprint()
    assert before == runcache.model_fingerprint() and len(before) == 64
    fake = tmp_path / "gpalloc"
    fake.mkdir()
    (fake / "runcache.py").write_text("")
    (fake / "model.py").write_text("x = 1\n")
    monkeypatch.setattr(runcache, "__file__", str(fake / "runcache.py"))
    one = runcache.model_fingerprint()
    (fake / "model.py").write_text("x = 2\n")
    assert runcache.model_fingerprint() != one


def test_cache_keys_name_the_parameters():
    assert runcache.cache_key("fedora-bpf", 0) == "fedora-bpf-seed0-8G"
    assert runcache.cache_key("fedora-bpf", 0, "64G") == "fedora-bpf-seed0-64G"
    assert runcache.cache_key("modules", 1, None, lsmod="default") == \
        "modules-seed1-8G-lsmod=default"


def test_computed_here_or_in_workers_the_snapshots_agree():
    one, s1 = runcache.compute("bpf-load", 4, "1G", jobs=1, **SMALL)
    two, s2 = runcache.compute("bpf-load", 4, "1G", jobs=2, **SMALL)
    assert _same(one, two)
    for label in s1:
        assert s1[label]._views == s2[label]._views


@pytest.mark.parametrize("run", runcache.NOTEBOOK_RUNS, ids=lambda r: runcache.cache_key(
    r[0], r[1], r[2], **r[3]))
def test_every_committed_run_is_current(run):
    """The committed data/results/runs files are of the model as it is: regenerate them with
    `python -m gpalloc.runcache` after changing the model (tests/test_runcache.py)."""
    name, seed, node_mem, kw = run
    path = runcache.CACHE_DIR / f"{runcache.cache_key(name, seed, node_mem, **kw)}.json"
    assert path.is_file(), f"{path} is missing: python -m gpalloc.runcache"
    assert json.loads(path.read_text())["model"] == runcache.model_fingerprint(), \
        f"{path} is of an older model: python -m gpalloc.runcache"


@pytest.mark.slow
def test_the_committed_fedora_run_is_what_the_model_computes():
    name, seed, node_mem, kw = runcache.NOTEBOOK_RUNS[0]
    path = runcache.CACHE_DIR / f"{runcache.cache_key(name, seed, node_mem, **kw)}.json"
    result, snaps = runcache._from_file(path, kw)
    fresh, fresh_snaps = runcache.compute(name, seed, node_mem, **kw)
    assert _same(result, fresh)
    assert {k: s._views for k, s in snaps.items()} == {k: s._views for k, s in
                                                       fresh_snaps.items()}


def test_the_default_lsmod_by_path_is_the_default_run(monkeypatch, tmp_path):
    monkeypatch.setattr(runcache, "CACHE_DIR", tmp_path)   # no committed file: computed
    monkeypatch.setattr(runcache, "_memory", {})
    seen = []
    monkeypatch.setattr(runcache, "compute", lambda *a, **kw: seen.append(kw) or ({}, {}))
    runcache.cached_run("modules", 0, lsmod=runcache.scenario.DEFAULT_LSMOD)
    runcache.cached_run("modules", 0, lsmod="default")
    assert seen == [{"lsmod": "default"}]


def test_cached_validation_reads_a_current_file_and_computes_past_a_stale_one(monkeypatch):
    computed = []

    def fake_validate(seeds):
        computed.append(seeds)
        return {"rows": [], "summary": {"seeds": list(seeds)}, "boot_pairs": []}

    monkeypatch.setattr(runcache, "validate", fake_validate)
    monkeypatch.setattr(runcache, "_memory", {})
    first = runcache.cached_validation()          # the committed file is current
    assert computed == [] and len(first["rows"]) == first["summary"]["rows"] > 0
    first["rows"].clear()                          # a copy: the cache is not changed
    assert runcache.cached_validation()["rows"]
    monkeypatch.setattr(runcache, "_memory", {})
    monkeypatch.setattr(runcache, "validation_fingerprint", lambda: "an edited model")
    assert runcache.cached_validation()["rows"] == [] and computed == [(0,)]
