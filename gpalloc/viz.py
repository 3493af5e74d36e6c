"""Plots of a Machine and of experiment results (matplotlib), for the notebooks and widgets.

Colours are the Okabe–Ito colour-blind-safe palette, and every state that a colour
tells apart is also told apart by a hatch (or a marker / line style), so the plots
survive grey-scale printing and every kind of colour vision.

Each function takes an optional ``ax``.  Without one it makes a new figure (through
pyplot, so it shows inline in a notebook); with one it clears that axes and draws
again, so a widget can keep one long-lived figure and redraw it in place.  Each
returns what it drew, so tests can read the data back.  The plots use only the
Machine's public methods (and experiment result dicts), never ``m.k``.
"""

import math

import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.patches import Patch, PathPatch
from matplotlib.path import Path

from .arch.x86.pgtable_types import PG_LEVEL_1G, PG_LEVEL_2M, PG_LEVEL_4K
from .units import memparse
from .views import REGION_1G, REGION_2M, REGION_BOOT_4K, REGION_SPLIT  # direct_map_regions codes

# Okabe & Ito (2008), "Color Universal Design".
OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9",
    "bluish_green": "#009E73", "yellow": "#F0E442", "blue": "#0072B2",
    "vermillion": "#D55E00", "reddish_purple": "#CC79A7",
}
_CYCLE = [OKABE_ITO[c] for c in ("blue", "vermillion", "bluish_green", "orange",
                                 "reddish_purple", "sky_blue", "yellow", "black")]
_HATCH_CYCLE = ["", "//", "..", "xx", "\\\\", "++", "oo", "--"]

REGION_STYLE = {   # code: (label, colour, hatch)
    REGION_1G: ("1G mapping", OKABE_ITO["blue"], ""),
    REGION_2M: ("2M mapping", OKABE_ITO["sky_blue"], "//"),
    REGION_BOOT_4K: ("4K since boot", OKABE_ITO["yellow"], ".."),
    REGION_SPLIT: ("split to 4K since boot", OKABE_ITO["vermillion"], "xx"),
}
REGION_CMAP = ListedColormap([REGION_STYLE[c][1] for c in sorted(REGION_STYLE)],
                             name="gpalloc_direct_map")
REGION_CMAP.set_bad("white")
REGION_NORM = BoundaryNorm([-0.5, 0.5, 1.5, 2.5, 3.5], REGION_CMAP.N)
KERNEL_STYLE = {   # experiment kernel name: colour, line style, marker
    "baseline": (OKABE_ITO["vermillion"], "-", "o"),
    "grouped": (OKABE_ITO["blue"], "--", "s"),
}
HATCH_INK = "#333333"
_LEVEL_NAME = {PG_LEVEL_4K: "4K", PG_LEVEL_2M: "2M", PG_LEVEL_1G: "1G"}
_RECT_CODES = [Path.MOVETO, Path.LINETO, Path.LINETO, Path.LINETO, Path.CLOSEPOLY]


def _axes(ax):
    """A fresh axes (new pyplot figure) when ax is None, else ax cleared for a redraw."""
    if ax is None:
        import matplotlib.pyplot as plt
        _, ax = plt.subplots()
    else:
        ax.clear()
    return ax


def region_grid(codes):
    """The near-square, row-major grid (a masked array) that direct_map_picture shows."""
    codes = np.asarray(codes)
    n = codes.size
    ncols = max(1, math.ceil(math.sqrt(n)))
    nrows = max(1, math.ceil(n / ncols))
    data = np.zeros(nrows * ncols, dtype=np.int16)
    data[:n] = codes
    mask = np.zeros(nrows * ncols, dtype=bool)
    mask[n:] = True
    return np.ma.masked_array(data.reshape(nrows, ncols), mask.reshape(nrows, ncols))


def _rects_path(x0, y0, width, height=1):
    """One compound Path of many axis-aligned rectangles (vectorised; cheap for thousands)."""
    x0 = np.asarray(x0, dtype=float)
    y0 = np.asarray(y0, dtype=float)
    x1 = x0 + np.asarray(width, dtype=float)
    y1 = y0 + height
    verts = np.stack([np.stack([x0, y0], -1), np.stack([x1, y0], -1), np.stack([x1, y1], -1),
                      np.stack([x0, y1], -1), np.stack([x0, y0], -1)], axis=1)
    return Path(verts.reshape(-1, 2), np.tile(_RECT_CODES, len(x0)))


def _row_runs(grid):
    """Runs of equal values along each row: (row, start column, length, value) arrays."""
    a = grid.filled(-1) if np.ma.isMaskedArray(grid) else np.asarray(grid)
    ncols = a.shape[1]
    change = np.ones(a.shape, dtype=bool)
    change[:, 1:] = a[:, 1:] != a[:, :-1]
    rows, cols = np.nonzero(change)
    next_rows = np.append(rows[1:], -1)
    next_cols = np.append(cols[1:], ncols)
    ends = np.where(next_rows == rows, next_cols, ncols)
    return rows, cols, ends - cols, a[rows, cols]


def direct_map_picture(m, ax=None, title=None):
    """Draw the direct map, one cell per 2 MiB of RAM; return the AxesImage.

    Cells run row-major in physical order on a near-square grid, coloured (and
    hatched) by ``m.direct_map_regions()``; the 2 MiB blocks the grouped cache
    replenished from (``m.grouped_block_regions()``) are outlined.  The image's
    array (``im.get_array()``) is the codes, padded with masked cells to a rectangle.
    Hatches and outlines are one compound patch each, so 4096+ regions draw fast.
    """
    ax = _axes(ax)
    codes = np.asarray(m.direct_map_regions())
    grid = region_grid(codes)
    nrows, ncols = grid.shape
    im = ax.imshow(grid, cmap=REGION_CMAP, norm=REGION_NORM, interpolation="nearest",
                   extent=(0, ncols, nrows, 0), aspect="equal")
    im.set_gid("direct-map")
    rows, cols, lengths, values = _row_runs(grid)
    handles = []
    for code in sorted(REGION_STYLE):
        label, colour, hatch = REGION_STYLE[code]
        count = int(np.count_nonzero(codes == code))
        sel = values == code
        if hatch and sel.any():
            patch = PathPatch(_rects_path(cols[sel], rows[sel], lengths[sel]), facecolor="none",
                              edgecolor=HATCH_INK, linewidth=0, hatch=hatch)
            patch.set_gid(f"hatch-{code}")
            ax.add_patch(patch)
        handles.append(Patch(facecolor=colour, edgecolor=HATCH_INK, hatch=hatch, linewidth=0.5,
                             label=f"{label}: {count}"))
    blocks = [int(b) for b in m.grouped_block_regions() if 0 <= b < codes.size]
    if blocks:
        b = np.asarray(blocks)
        outline = PathPatch(_rects_path(b % ncols, b // ncols, np.ones(len(b))),
                            facecolor="none", edgecolor=OKABE_ITO["black"],
                            linewidth=1.6 if ncols <= 48 else 1.0)
        outline.set_gid("grouped-blocks")
        ax.add_patch(outline)
    handles.append(Patch(facecolor="none", edgecolor=OKABE_ITO["black"], linewidth=1.6,
                         label=f"grouped-cache block: {len(blocks)}"))
    ax.set_xlim(0, ncols)
    ax.set_ylim(nrows, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(f"physical address → ({ncols} × 2 MiB per row)")
    gib = codes.size * 2 / 1024
    ax.set_title(title if title is not None
                 else f"Direct map: {codes.size} × 2 MiB regions ({gib:g} GiB)")
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2,
              fontsize="small", frameon=False)
    return im


def directmap_timeline(result, ax=None):
    """Plot DirectMap4k (kB) over an experiment's phases, one line per kernel; return the lines."""
    runs = result.get("runs") if isinstance(result, dict) else None
    if not runs:
        raise ValueError("result: expected a run_experiment() dict with a non-empty 'runs'")
    ax = _axes(ax)
    lines, phases = [], []
    for i, (kname, run) in enumerate(runs.items()):
        timeline = run["timeline"]
        names = [str(p) for p, _ in timeline]
        if len(names) > len(phases):
            phases = names
        colour, style, marker = KERNEL_STYLE.get(
            kname, (_CYCLE[i % len(_CYCLE)], ":", "^v<>"[i % 4]))
        ys = [v for _, v in timeline]
        (line,) = ax.plot(range(len(ys)), ys, color=colour, linestyle=style, marker=marker,
                          label=f"{kname}: {ys[-1]:,} kB")
        lines.append(line)
    ax.set_xticks(range(len(phases)))
    ax.set_xticklabels(phases, rotation=20, ha="right")
    ax.set_ylabel("DirectMap4k (kB)")
    ax.set_xlabel("phase")
    ax.set_ylim(bottom=0)
    ax.grid(True, axis="y", alpha=0.3)
    title = f"{result.get('scenario', 'experiment')}, seed {result.get('seed', '?')}"
    if "reduction_pct" in result:
        title += f": grouped is {result['reduction_pct']}% lower"
    ax.set_title(title)
    ax.legend(fontsize="small")
    return lines


def cache_bars(m, ax=None):
    """Bar chart of grouped-cache pages per node; return the BarContainer."""
    ax = _axes(ax)
    per_node = list(m.stats().get("grouped_cache_pages_per_node", [0] * m.config["nodes"]))
    xs = range(len(per_node))
    bars = ax.bar(xs, per_node, color=OKABE_ITO["bluish_green"], edgecolor=HATCH_INK,
                  hatch="//", label="cached pages")
    ax.bar_label(bars, fontsize="small")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([f"node {n}" for n in xs])
    ax.set_ylabel("pages in the grouped cache")
    ax.set_title(f"Grouped cache: {sum(per_node)} pages on {len(per_node)} node(s)")
    ax.set_ylim(0, max(per_node + [1]) * 1.15)
    return bars


def buddyinfo_by_node(m):
    """Free blocks per order, summed over each node's zones: {node: [order 0..10 counts]}."""
    out = {}
    for (node, _zone), counts in sorted(m.buddyinfo().items()):
        acc = out.setdefault(node, [0] * len(counts))
        for order, c in enumerate(counts):
            acc[order] += c
    return out


def buddyinfo_bars(m, ax=None, log=True):
    """Bar chart of free blocks per order per node, orders 9–10 highlighted; return the bars."""
    ax = _axes(ax)
    per_node = buddyinfo_by_node(m)
    nodes = sorted(per_node)
    norders = len(per_node[nodes[0]]) if nodes else 11
    ax.axvspan(8.5, norders - 0.5, color=OKABE_ITO["yellow"], alpha=0.3, zorder=0,
               label="order ≥ 9: can back a 2 MiB block")
    width = 0.8 / max(1, len(nodes))
    containers = []
    for i, node in enumerate(nodes):
        xs = np.arange(norders) + (i - (len(nodes) - 1) / 2) * width
        bars = ax.bar(xs, per_node[node], width=width, color=_CYCLE[i % len(_CYCLE)],
                      hatch=_HATCH_CYCLE[i % len(_HATCH_CYCLE)], edgecolor=HATCH_INK,
                      linewidth=0.5, label=f"node {node}", zorder=2)
        for order, bar in enumerate(bars):
            if order >= 9:
                bar.set_linewidth(1.8)
                bar.set_edgecolor(OKABE_ITO["black"])
        containers.append(bars)
    ax.set_xticks(range(norders))
    for order, label in enumerate(ax.get_xticklabels()):
        if order >= 9:
            label.set_fontweight("bold")
    ax.set_xlabel("order (block = 2^order pages)")
    ax.set_ylabel("free blocks")
    top = max([max(c) for c in per_node.values()] + [1])
    if log:
        ax.set_yscale("symlog", linthresh=1)
    ax.set_ylim(0, top * (3 if log else 1.1))
    ax.set_title(f"Free blocks per order ({m.order9_free_blocks()} can serve order 9)")
    # outside, right of the axes: inside, the tall low-order bars leave it nowhere to go
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return containers


def reduction_by_ram(rows, ax=None, computed=()):
    """fedora-bpf reduction (%) against RAM from ram_sweep() rows; return the two lines.

    ``computed``: (RAM in GiB, reduction_pct) points worked out elsewhere (e.g. in a
    notebook), drawn as hollow markers on top so a reader sees they fall on the line.
    """
    if not rows:
        raise ValueError("rows: expected ram_sweep() rows, got none")
    ax = _axes(ax)
    gib = [memparse(r["node_mem"]) >> 30 for r in rows]
    total = ax.plot(gib, [r["reduction_pct"] for r in rows], color=OKABE_ITO["blue"],
                    marker="o", label="all 4K pages (boot's included)")[0]
    growth = ax.plot(gib, [r["reduction_of_growth_pct"] for r in rows],
                     color=OKABE_ITO["vermillion"], linestyle="--", marker="s",
                     label="4K pages created after boot")[0]
    if computed:
        xs, ys = zip(*computed, strict=True)
        ax.scatter(xs, ys, s=140, facecolors="none", edgecolors=OKABE_ITO["black"],
                   linewidths=1.5, zorder=3, label="computed in this notebook")
    ax.axhline(98, color=OKABE_ITO["black"], linestyle=":", linewidth=1, label="cover letter: 98 %")
    ax.set_xscale("log", base=2)
    ax.set_xticks(gib)
    ax.set_xticklabels([f"{g} GiB" for g in gib])
    ax.set_xlabel("RAM of the one-node machine")
    ax.set_ylabel("4K direct-map pages fewer with the RFC (%)")
    ax.set_ylim(min(70, *(r["reduction_pct"] for r in rows)) - 2, 100)
    ax.grid(True, alpha=0.3)
    ax.set_title("fedora-bpf: the RFC's gain grows with RAM")
    ax.legend(fontsize="small", loc="lower right")
    return total, growth


HANDOUT_MACHINE = dict(nodes=2, node_mem="2G")   # node 1 is 1G entries; cells stay visible
HANDOUT_PAGES = 32          # read-only one-page areas, as in notebook 02 section 5
HANDOUT_PRESSURE = 0.5      # a machine that has run a while: free memory scattered


def _protected_pages(m, vm_flags):
    """HANDOUT_PAGES one-page areas, VM_FLUSH_RESET_PERMS and read-only, kept alive."""
    for _ in range(HANDOUT_PAGES):
        addr = m.vmalloc_node_range(4096, vm_flags=vm_flags)
        m.set_vm_flush_reset_perms(addr)
        m.set_memory_ro(addr, 1)


def _plural(n, noun):
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _strip_legend(ax):
    """Remove the per-picture legend (the handout has one shared legend)."""
    ax.get_legend().remove()


def handout(path=None, seed=0):
    """The one-page workshop handout: the direct map, one CPA split, the grouped cache.

    Four direct-map pictures computed now from seeded machines — a fresh one, the
    same after one set_memory_ro() on a page of node 1 (inside a 1G entry), and
    HANDOUT_PAGES read-only pages on a half-full machine, v5.11 vs the RFC's grouped
    cache — with the numbers beside them, on a 16:9 page.  Saved (PNG, or PDF by the
    suffix) when ``path`` is given; returns the Figure.
    """
    from matplotlib.figure import Figure

    from .machine import Machine
    from .mm.vmalloc import VM_GROUP_PAGES

    fig = Figure(figsize=(13.33, 7.5), layout="constrained")
    grid = fig.add_gridspec(2, 3, width_ratios=(1, 1, 1.25))
    pictures = [fig.add_subplot(grid[row, col]) for row in (0, 1) for col in (0, 1)]
    notes = [fig.add_subplot(grid[row, 2]) for row in (0, 1)]

    fresh = Machine(seed=seed, **HANDOUT_MACHINE)
    direct_map_picture(fresh, pictures[0], title="Booted: 1G and 2M entries, 4K at the edge")
    split = Machine(seed=seed, **HANDOUT_MACHINE)
    before = split.meminfo()
    page = split.vmalloc_node_range(4096, node=HANDOUT_MACHINE["nodes"] - 1)
    level = _LEVEL_NAME[split.lookup_address(split.find_vm_area(page).pages[0].pfn)[0]]
    split.set_memory_ro(page, 1)
    after, st = split.meminfo(), split.stats()
    direct_map_picture(split, pictures[1], title=f"After one set_memory_ro() ({level} entry)")
    deltas = [f"    {key}  {after[key] - before[key]:+,} kB"
              for key in ("DirectMap1G", "DirectMap2M", "DirectMap4k")]
    top = ["The direct map maps all RAM at PAGE_OFFSET with the",
           "largest entries that fit. A vmalloc page is mapped twice,",
           "so set_memory_ro() on it also changes its direct-map",
           f"alias: the {level} entry around it is split, 1G → 2M → 4K.", "",
           f"One page made read-only ({split.stats()['splits_1g']} 1G + "
           f"{st['splits_2m']} 2M split, {st['flush_tlb_all']} global TLB flushes):",
           *deltas, "", "v5.11 never merges split entries back."]

    runs = {}
    for ax, patches, vm_flags, name in ((pictures[2], (), 0, "v5.11"),
                                        (pictures[3], (1, 2, 3), VM_GROUP_PAGES, "RFC")):
        m = Machine(seed=seed, patches=patches, **HANDOUT_MACHINE)
        m.set_memory_pressure(HANDOUT_PRESSURE)
        k4 = m.meminfo()["DirectMap4k"]
        _protected_pages(m, vm_flags)
        runs[name] = (m.stats()["splits_2m"], m.meminfo()["DirectMap4k"] - k4)
        direct_map_picture(m, ax, title=f"{name}: {HANDOUT_PAGES} read-only pages, "
                                        f"{_plural(runs[name][0], '2M split')}")
    bottom = [f"{HANDOUT_PAGES} one-page areas made read-only and kept, on a machine at",
              f"memory pressure {HANDOUT_PRESSURE} (free memory scattered):", ""]
    bottom += [f"    {name:<6} {_plural(splits, '2M split'):>13}, DirectMap4k +{k4:,} kB"
               for name, (splits, k4) in runs.items()]
    bottom += ["", "v5.11 takes each page wherever the page allocator finds",
               "one; the RFC's VM_GROUP_PAGES cache cuts them from one",
               "2 MiB block (outlined), so the splits pile up there."]
    for ax, lines in zip(notes, (top, bottom), strict=True):
        ax.axis("off")
        ax.text(0, 1, "\n".join(lines), va="top", ha="left", family="monospace",
                fontsize=10, transform=ax.transAxes)
    for ax in pictures:
        _strip_legend(ax)
        ax.set_xlabel("")
    handles = [Patch(facecolor=colour, edgecolor=HATCH_INK, hatch=hatch, linewidth=0.5,
                     label=label) for label, colour, hatch in REGION_STYLE.values()]
    handles.append(Patch(facecolor="none", edgecolor=OKABE_ITO["black"], linewidth=1.6,
                         label="grouped-cache block"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    nodes, node_mem = HANDOUT_MACHINE["nodes"], HANDOUT_MACHINE["node_mem"]
    fig.suptitle("gpalloc · Linux v5.11's direct map, one CPA split, and the RFC's grouped "
                 f"cache\neach cell is 2 MiB of RAM, row by row in physical order; a model "
                 f"machine of {nodes} × {node_mem}, seed {seed} (gpalloc.viz.handout)",
                 fontsize="large")
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


__all__ = ["OKABE_ITO", "REGION_STYLE", "buddyinfo_bars", "buddyinfo_by_node", "cache_bars",
           "direct_map_picture", "directmap_timeline", "handout", "reduction_by_ram",
           "region_grid"]
