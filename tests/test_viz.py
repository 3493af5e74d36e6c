"""Tests of gpalloc.viz: each plot draws the Machine's (or the result's) numbers, in place."""

import time

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from gpalloc import Machine, viz
from gpalloc.experiments import run_experiment
from gpalloc.workloads.scenario import Calibration


def _ax():
    return Figure().subplots()


def _grouped_machine(nodes=1, node_mem="512M", allocs=40):
    m = Machine(nodes=nodes, node_mem=node_mem, patches=(1, 2, 3), seed=0)
    for _ in range(allocs):
        a = m.module_alloc(4096)
        m.set_vm_flush_reset_perms(a)
        m.set_memory_ro(a, 1)
    return m


def _rect_count(patch):
    return len(patch.get_path().vertices) // 5


def test_direct_map_picture_shows_the_region_codes():
    m = _grouped_machine()
    ax = _ax()
    im = viz.direct_map_picture(m, ax)
    codes = m.direct_map_regions()
    arr = im.get_array()
    nrows, ncols = arr.shape
    assert ncols == int(np.ceil(np.sqrt(codes.size))) and nrows * ncols >= codes.size
    flat = arr.reshape(-1)
    np.testing.assert_array_equal(np.asarray(flat[:codes.size]), codes)
    assert flat.mask[codes.size:].all() and not flat.mask[:codes.size].any()
    if codes.size == nrows * ncols:
        np.testing.assert_array_equal(arr, codes.reshape(nrows, ncols))
    outline = [p for p in ax.patches if p.get_gid() == "grouped-blocks"]
    assert len(outline) == 1 and _rect_count(outline[0]) == len(m.grouped_block_regions()) >= 1
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(lbl.startswith("split to 4K") and lbl.endswith(str(int((codes == 3).sum())))
               for lbl in labels)
    assert any("grouped-cache block" in lbl for lbl in labels)


def test_direct_map_picture_hatches_every_non_1g_state():
    m = _grouped_machine(node_mem="2G")
    ax = _ax()
    viz.direct_map_picture(m, ax)
    codes = m.direct_map_regions()
    gids = {p.get_gid(): p for p in ax.patches}
    for code in (1, 2, 3):
        if (codes == code).any():
            assert gids[f"hatch-{code}"].get_hatch() == viz.REGION_STYLE[code][2]
    # the hatched runs cover exactly the cells of that state
    cells = sum(np.ptp(gids["hatch-3"].get_path().vertices.reshape(-1, 5, 2)[:, :, 0], axis=1))
    assert cells == (codes == 3).sum()


def test_direct_map_picture_redraws_in_place():
    ax = _ax()
    viz.direct_map_picture(Machine(node_mem="256M"), ax)
    m = _grouped_machine(node_mem="1G")
    im = viz.direct_map_picture(m, ax, title="after")
    assert list(ax.images) == [im] and ax.get_title() == "after"
    assert len([p for p in ax.patches if p.get_gid() == "grouped-blocks"]) == 1
    assert im.get_array().count() == m.direct_map_regions().size


class _FakeMachine:
    """Duck-typed worst case: 16384 random regions (many runs), 600 grouped blocks."""

    def __init__(self, n=16384):
        rng = np.random.default_rng(0)
        self.codes = rng.integers(0, 4, n).astype(np.uint8)
        self.blocks = sorted(rng.choice(n, 600, replace=False).tolist())

    def direct_map_regions(self):
        return self.codes

    def grouped_block_regions(self):
        return self.blocks


def test_direct_map_picture_is_fast_for_many_regions():
    fake = _FakeMachine()
    fig = Figure(figsize=(6, 6))
    ax = fig.subplots()
    t0 = time.perf_counter()
    im = viz.direct_map_picture(fake, ax)
    fig.canvas.draw()
    assert time.perf_counter() - t0 < 5
    assert len(ax.patches) <= 4     # three hatch layers and one outline, not a patch per cell
    np.testing.assert_array_equal(np.asarray(im.get_array()).reshape(-1), fake.codes)


def _fake_result():
    return {"scenario": "bpf-load", "seed": 3, "reduction_pct": 50.0,
            "runs": {"baseline": {"timeline": [["boot+pressure", 30720], ["a", 40000],
                                               ["b", 65536]]},
                     "grouped": {"timeline": [["boot+pressure", 30720], ["a", 32768],
                                              ["b", 32768]]}}}


def test_directmap_timeline_one_line_per_kernel():
    ax = _ax()
    lines = viz.directmap_timeline(_fake_result(), ax)
    assert [ln.get_label().split(":")[0] for ln in lines] == ["baseline", "grouped"]
    assert list(lines[0].get_ydata()) == [30720, 40000, 65536]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["boot+pressure", "a", "b"]
    assert lines[0].get_linestyle() != lines[1].get_linestyle()   # not colour alone
    assert lines[0].get_marker() != lines[1].get_marker()
    viz.directmap_timeline(_fake_result(), ax)
    assert len(ax.lines) == 2


def test_directmap_timeline_of_a_real_experiment():
    cal = Calibration(node_mem="512M", pressure=0.2)
    result = run_experiment("bpf-load", seed=0, cal=cal, programs=64)
    lines = viz.directmap_timeline(result)      # no ax: a new pyplot figure
    for line, run in zip(lines, result["runs"].values(), strict=True):
        assert list(line.get_ydata()) == [v for _, v in run["timeline"]]
    plt.close(lines[0].figure)


def test_directmap_timeline_refuses_a_non_result():
    with pytest.raises(ValueError, match="run_experiment"):
        viz.directmap_timeline({"runs": {}}, _ax())


def test_cache_bars_per_node():
    m = _grouped_machine(nodes=2)
    ax = _ax()
    bars = viz.cache_bars(m, ax)
    assert [b.get_height() for b in bars] == m.stats()["grouped_cache_pages_per_node"]
    bars = viz.cache_bars(Machine(nodes=3, node_mem="256M"), ax)
    assert [b.get_height() for b in bars] == [0, 0, 0] and len(ax.patches) == 3


def test_buddyinfo_bars_sum_zones_per_node_and_mark_order_9():
    m = Machine(nodes=2, node_mem="1G", seed=0)
    m.set_memory_pressure(0.5)
    ax = _ax()
    containers = viz.buddyinfo_bars(m, ax)
    assert len(containers) == 2
    for node, bars in enumerate(containers):
        want = np.sum([c for (n, _z), c in m.buddyinfo().items() if n == node], axis=0)
        assert [b.get_height() for b in bars] == list(want)
        assert bars[9].get_linewidth() > bars[8].get_linewidth()
        assert bars[10].get_linewidth() > bars[0].get_linewidth()
    assert [t.get_fontweight() for t in ax.get_xticklabels()][9:] == ["bold", "bold"]
    assert viz.buddyinfo_bars(m, ax, log=False) and len(ax.containers) == 2


def test_reduction_by_ram_plots_both_figures_and_the_computed_points():
    rows = [{"node_mem": "8G", "reduction_pct": 76.6, "reduction_of_growth_pct": 91.1},
            {"node_mem": "64G", "reduction_pct": 98.2, "reduction_of_growth_pct": 99.4}]
    ax = _ax()
    total, growth = viz.reduction_by_ram(rows, ax=ax, computed=[(64, 98.2)])
    assert list(total.get_xdata()) == [8, 64] and list(total.get_ydata()) == [76.6, 98.2]
    assert list(growth.get_ydata()) == [91.1, 99.4]
    assert [tuple(p) for p in ax.collections[0].get_offsets()] == [(64, 98.2)]


def test_reduction_by_ram_refuses_no_rows():
    with pytest.raises(ValueError, match="rows"):
        viz.reduction_by_ram([], ax=_ax())


def test_buddyinfo_legend_sits_outside_the_bars():
    m = Machine(nodes=2, node_mem="1G", seed=0)
    m.set_memory_pressure(0.5)
    fig = Figure(figsize=(7, 3.2), layout="constrained")
    ax = fig.subplots()
    containers = viz.buddyinfo_bars(m, ax)
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1            # right of the axes
    for bars in containers:
        for bar in bars:
            assert not legend.overlaps(bar.get_window_extent())


def test_handout_draws_the_model_numbers(tmp_path):
    fig = viz.handout(tmp_path / "handout.png", seed=0)
    pictures = [ax for ax in fig.axes if ax.images]
    assert len(pictures) == 4
    titles = [ax.get_title() for ax in pictures]
    assert titles[1].startswith("After one set_memory_ro() (1G entry)")
    text = "\n".join(t.get_text() for ax in fig.axes for t in ax.texts)
    assert "DirectMap1G  -1,048,576 kB" in text and "DirectMap4k  +2,048 kB" in text
    v511, rfc = (int(t.split(", ")[1].split()[0]) for t in titles[2:])
    assert rfc < v511                                      # the cache groups the splits
    data = (tmp_path / "handout.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
