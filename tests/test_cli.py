"""``python -m gpalloc experiment ...``: the text report (pinned by a golden file), the JSON
keys, every real module listing, error messages, and the bpf-load scaling trend."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gpalloc import Machine
from gpalloc.cli import main
from gpalloc.workloads.lsmod import parse_modules

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "bpf-load-64-seed1.txt"
LSMOD_FILES = sorted((ROOT / "data" / "lsmod").glob("*.txt"))
BPF_LOAD = ["experiment", "bpf-load", "--programs", "64", "--node-mem", "1G", "--seed", "1",
            "--quiet"]
DMAP_KEYS = ("DirectMap4k", "DirectMap2M", "DirectMap1G")


def run_json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def bpf_load_json():
    """One --json run of the golden command, shared by the key tests."""
    proc = subprocess.run([sys.executable, "-m", "gpalloc", *BPF_LOAD, "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# ---------------------------------------------------------------- the text report


def test_bpf_load_text_report_matches_golden_file():
    # Regenerate after an intended model change (and review the diff):
    #   .venv/bin/python -m gpalloc experiment bpf-load --programs 64 --node-mem 1G \
    #       --seed 1 --quiet > tests/golden/bpf-load-64-seed1.txt
    proc = subprocess.run([sys.executable, "-m", "gpalloc", *BPF_LOAD], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""                              # --quiet: no progress bar
    assert proc.stdout == GOLDEN.read_text()


def test_parameters_are_printed_first(capsys):
    assert main(BPF_LOAD) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["gpalloc", "experiment", "bpf-load", "seed=1"]
    assert lines[1].startswith("  machine: ")
    for param in ("nodes=1", "node_mem=1G", "state=fresh-boot", "layout=qemu-q35", "gbpages=True"):
        assert param in lines[1].split()
    assert lines[2] == ("  boot: DirectMap4k=30720 kB DirectMap2M=1017856 kB "
                        "DirectMap1G=0 kB")
    assert lines[3].startswith("  workload: ") and "programs=64" in lines[3]
    assert lines[4] == ""
    assert lines[5].split() == ["baseline", "grouped"]   # then the table


# ---------------------------------------------------------------- --json


def test_json_documented_keys(bpf_load_json):
    r = bpf_load_json
    assert r["scenario"] == "bpf-load" and r["seed"] == 1
    boot = {k: v for k, v in Machine(nodes=1, node_mem="1G", seed=1).meminfo().items()
            if k in DMAP_KEYS}
    assert {k: r["machine"][k] for k in DMAP_KEYS} == boot
    assert r["machine"]["node_mem"] == "1G" and r["machine"]["nodes"] == 1
    assert set(r["runs"]) == {"baseline", "grouped"}
    ram_kb = 1 << 20
    for run in r["runs"].values():
        for key in (*DMAP_KEYS, "splits_2m", "splits_1g", "flush_tlb_all"):
            assert isinstance(run[key], int) and run[key] >= 0, key
        assert sum(run[k] for k in DMAP_KEYS) == ram_kb
        assert run["DirectMap4k"] >= boot["DirectMap4k"]
    b, g = r["runs"]["baseline"]["DirectMap4k"], r["runs"]["grouped"]["DirectMap4k"]
    assert r["reduction_pct"] == pytest.approx(100 * (1 - g / b), abs=0.01)
    assert r["reduction_pct"] > 0


def test_json_and_text_agree(bpf_load_json):
    text = GOLDEN.read_text()
    runs = bpf_load_json["runs"]
    row = next(line for line in text.splitlines() if line.startswith("DirectMap4k (kB)"))
    assert row.split()[-2:] == [str(runs["baseline"]["DirectMap4k"]),
                                str(runs["grouped"]["DirectMap4k"])]


def test_same_seed_same_numbers(capsys, bpf_load_json):
    again = run_json(capsys, [*BPF_LOAD, "--json"])
    strip = ("seconds",)
    for name, run in again["runs"].items():
        first = bpf_load_json["runs"][name]
        assert {k: v for k, v in run.items() if k not in strip} == \
               {k: v for k, v in first.items() if k not in strip}


# ---------------------------------------------------------------- module listings


@pytest.mark.parametrize("path", LSMOD_FILES, ids=[p.name for p in LSMOD_FILES])
def test_every_module_listing_runs(capsys, path):
    r = run_json(capsys, ["experiment", "modules", "--lsmod", str(path), "--json",
                          "--node-mem", "2G", "--quiet"])
    assert r["workload"]["events"] == len(parse_modules(path))
    runs = r["runs"]
    for run in runs.values():
        assert sum(run[k] for k in DMAP_KEYS) == 2 << 20
        assert run["warnings"] == 0
    assert runs["grouped"]["DirectMap4k"] <= runs["baseline"]["DirectMap4k"]
    assert runs["baseline"]["splits_2m"] > 0


def test_garbage_listing_names_file_and_line(capsys, tmp_path):
    bad = tmp_path / "garbage.txt"
    bad.write_text("Module                  Size  Used by\n"
                   "xt_conntrack           16384  1\n"
                   "nf_nat                 49152  2 xt_nat,nft_chain_nat\n"
                   "this is not a module line at all\n")
    rc = main(["experiment", "modules", "--lsmod", str(bad), "--quiet"])
    err = capsys.readouterr().err
    assert rc != 0
    assert f"{bad}:4:" in err


@pytest.mark.parametrize("content", ["", "\n\n", "Module                  Size  Used by\n"],
                         ids=["empty", "blank-lines", "header-only"])
def test_empty_listing_fails(capsys, tmp_path, content):
    empty = tmp_path / "empty.txt"
    empty.write_text(content)
    rc = main(["experiment", "modules", "--lsmod", str(empty), "--quiet"])
    assert rc != 0
    assert "gpalloc: error:" in capsys.readouterr().err


def test_missing_listing_fails(capsys, tmp_path):
    rc = main(["experiment", "modules", "--lsmod", str(tmp_path / "nope.txt"), "--quiet"])
    assert rc != 0
    assert "nope.txt" in capsys.readouterr().err


@pytest.mark.parametrize("value,message", [("2", "between 0.0 and 1.0"),
                                           ("-0.5", "between 0.0 and 1.0"),
                                           ("x", "expected a number"),
                                           ("nan", "between 0.0 and 1.0")])
def test_bad_pressure_is_one_line(capsys, value, message):
    with pytest.raises(SystemExit) as exc:
        main(["experiment", "bpf-load", "--pressure", value, "--quiet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("gpalloc: error: --pressure: ") and message in err
    assert err.endswith(f"(got {value})\n") and err.count("\n") == 1


# ---------------------------------------------------------------- scaling


def test_bpf_load_scaling_on_8g(capsys):
    results = {}
    for n in (512, 1024, 2048):
        r = run_json(capsys, ["experiment", "bpf-load", "--programs", str(n), "--node-mem",
                              "8G", "--nodes", "1", "--seed", "0", "--quiet", "--json"])
        results[n] = {k: v["DirectMap4k"] for k, v in r["runs"].items()}
    base = [results[n]["baseline"] for n in (512, 1024, 2048)]
    assert base == sorted(base)                           # non-decreasing in N
    for n in results:
        assert results[n]["grouped"] <= results[n]["baseline"]
    growth = results[2048]["grouped"] - results[512]["grouped"]
    # 1,536 more one-page images need 3 more 2 MiB blocks: allow one more than that
    assert 0 <= growth <= 4 * 2048
