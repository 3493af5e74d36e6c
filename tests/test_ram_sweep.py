"""The fedora-bpf RAM sweep (data/results/fedora-bpf-by-ram.csv): the committed file is what
the model computes, and the mechanism behind it — v5.11's splits are bounded by the unmovable
pageblocks of the kernel's zone, the RFC's are not — holds in every row."""

import pytest

from gpalloc import Machine
from gpalloc.cli import main
from gpalloc.experiments import (
    RAM_SIZES,
    RAM_SWEEP_FIELDS,
    ram_sweep,
    read_ram_sweep,
)


@pytest.fixture(scope="module")
def committed():
    return read_ram_sweep()


def test_committed_sweep_is_what_the_model_computes(committed):
    """Golden check: regenerate with `python -m gpalloc ram-sweep --csv` if the model changes."""
    assert [r["node_mem"] for r in committed] == list(RAM_SIZES)
    assert ram_sweep(RAM_SIZES, seed=0, jobs=2) == committed   # the serial path: test_fast_paths


def test_baseline_splits_are_bounded_by_the_unmovable_pageblocks(committed):
    for row in committed:
        assert row["unmovable_pageblocks"] > 0
        assert row["baseline_splits_2m"] <= row["unmovable_pageblocks"] + 2, row
        assert row["baseline_splits_2m"] >= 0.9 * row["unmovable_pageblocks"], row


def test_grouped_kernel_does_not_grow_with_ram_and_the_gain_does(committed):
    assert len({r["grouped_4k_kb"] for r in committed}) == 1
    gains = [r["reduction_pct"] for r in committed]
    assert gains == sorted(gains)
    assert gains[-1] > gains[1] + 15          # 64 GiB against 8 GiB


def test_cover_letter_figure_is_reached_only_on_the_large_machines(committed):
    by_size = {r["node_mem"]: r["reduction_pct"] for r in committed}
    assert by_size["8G"] < 95 <= by_size["32G"]
    assert 97 <= by_size["64G"] <= 99.5


def test_pagetypeinfo_counts_every_pageblock_once():
    m = Machine(node_mem="8G", seed=0)
    idle = m.pagetypeinfo()
    assert idle[(0, "Normal")] == {"Unmovable": 0, "Movable": 2048, "Reclaimable": 0}
    m.set_memory_pressure(0.3)
    busy = m.pagetypeinfo()
    for key, counts in busy.items():
        assert sum(counts.values()) == sum(idle[key].values())
    # the background's unmovable share (4 %) shows up as about 4 % unmovable pageblocks
    assert 0.03 < busy[(0, "Normal")]["Unmovable"] / 2048 < 0.05


def test_read_ram_sweep_names_file_and_line(tmp_path):
    bad = tmp_path / "sweep.csv"
    bad.write_text(",".join(RAM_SWEEP_FIELDS) + "\n8G,1,2,3.0,4.0,5,6,7\n8G,x,2,3.0,4.0,5,6,7\n")
    with pytest.raises(ValueError, match=r"sweep\.csv:3: "):
        read_ram_sweep(bad)
    bad.write_text("size,pct\n8G,1\n")
    with pytest.raises(ValueError, match=r"sweep\.csv:1: header must be node_mem,"):
        read_ram_sweep(bad)


def test_cli_ram_sweep_prints_parameters_then_a_row_per_size(capsys, committed):
    assert main(["ram-sweep", "--sizes", "4G", "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "gpalloc ram-sweep  seed=0  scenario=fedora-bpf"
    assert out[1].startswith("  machine: nodes=1 ")
    row = out[-1].split()
    assert row[0] == "4G" and row[1] == f"{committed[0]['baseline_4k_kb']:,}"


def test_cli_ram_sweep_refuses_a_bad_size(capsys):
    with pytest.raises(SystemExit) as err:
        main(["ram-sweep", "--sizes", "8G,lots"])
    assert err.value.code == 2
    assert capsys.readouterr().err.startswith("gpalloc: error: --sizes: not a size")
