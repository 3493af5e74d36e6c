"""Interactive explorers for the notebooks (ipywidgets), built by plain functions.

Each builder returns a small panel object with:

* ``.widget`` — the ipywidgets container (display the panel itself: its plain-text
  fallback, shown before the cell runs or where widgets cannot render, is one line
  saying so, not the container's repr);
* ``.controls`` — name → control widget, so tests and notebooks can drive it;
* ``.values`` — the numbers computed by the latest run (what the panel shows);
* ``.figure`` — the one long-lived matplotlib Figure (or None), redrawn in place and
  shown as a PNG in an ``ipywidgets.Image``, so it works with any backend, headless too;
* ``refresh()`` — recompute from the controls and redraw.

Controls are wired with ``observe``; sliders that re-simulate a machine only fire on
release (``continuous_update=False``) and the experiment dashboard has a Run button.
Sliders clamp out-of-range values (ipywidgets itself) and controls refuse values of the
wrong type; what gets through and cannot run (a negative seed, NaN from a float slider, a
dropdown with nothing chosen) and anything the model refuses becomes the red
"refused: ..." line in the panel, never a traceback.  Everything is computed through
the Machine's public methods and experiment results, never ``m.k``.
"""

import abc
import html
import io
import math
import random
import re
import time
import warnings

import ipywidgets as W
from matplotlib.figure import Figure

from . import designs, usage, viz
from .bug import KernelWarning
from .experiments import default_jobs, run_experiment
from .machine import NUMA_NO_NODE, Machine
from .mm import gfp as _gfp
from .mm.gfp import GFP_GROUPED, GFP_KERNEL, GFP_KERNEL_ACCOUNT, gfp_t
from .mm.vmalloc import VM_GROUP_PAGES, vmalloc_page_gfp
from .tables import html_table
from .workloads.scenario import Calibration

# Every single-bit __GFP_* flag of the model, lowest bit first: (name, gfp_t).
GFP_BITS = tuple(sorted(((name, value) for name, value in vars(_gfp).items()
                         if name.startswith("__GFP_") and isinstance(value, gfp_t)
                         and int(value) and not int(value) & (int(value) - 1)),
                        key=lambda item: int(item[1])))
GFP_PRESETS = ("GFP_KERNEL", "GFP_KERNEL_ACCOUNT", "GFP_ATOMIC", "GFP_NOWAIT", "GFP_NOIO",
               "GFP_NOFS", "GFP_USER", "GFP_KERNEL|__GFP_ZERO", "GFP_GROUPED")
CUSTOM = "(custom)"
GFP_MACHINE = dict(patches=(1, 2), node_mem="256M", seed=0)
PRESSURE_ALLOCS = 300
NUMA_NODE_MEM = "512M"
NUMA_PROBES = 16
NUMA_CPU_CHOICES = {   # label: (allocation index, nr_cpus, rng) → CPU to run on
    "a random CPU each time": lambda i, n, rng: rng.randrange(n),
    "every CPU in turn": lambda i, n, rng: i % n,
    "CPU 0 only": lambda i, n, rng: 0,
}
DASHBOARD_SCENARIO = "bpf-load"
DASHBOARD_NODE_MEM = "1G"       # per node: keeps one run (4 nodes, pressure 1.0) under ~5 s
DASHBOARD_PROGRAMS = 512
DASHBOARD_GFP_PROBES = 8
FEDORA_TEST_TAG_STRIDE = 200
DASHBOARD_GFPS = {
    "GFP_KERNEL (module_alloc)": GFP_KERNEL,
    "GFP_KERNEL|__GFP_ZERO": gfp_t(GFP_KERNEL | _gfp.__GFP_ZERO),
    "GFP_KERNEL_ACCOUNT": GFP_KERNEL_ACCOUNT,
}
_ERROR_STYLE = "color:#D55E00;font-weight:bold"


def _bundle(widget, title, **kwargs):
    """widget's MIME bundle, its text/plain a one-line hint instead of the container repr."""
    bundle = widget._repr_mimebundle_(**kwargs)
    bundle["text/plain"] = f"▶ {title}: an interactive panel. Run this cell to use it."
    return bundle


class Panel(abc.ABC):
    """A widget panel: .widget, .controls, .values, .figure and refresh()."""

    title = ""

    def __init__(self, figsize=None):
        self.controls = {}
        self.values = {}
        self.error = ""
        self.machine = None
        self.figure = Figure(figsize=figsize, layout="constrained") if figsize else None
        self.header = W.HTML()
        self.message = W.HTML()
        self.table = W.HTML()
        # hidden until a figure is drawn: an empty Image shows as a broken image
        self.image = W.Image(format="png", layout=W.Layout(max_width="100%", display="none"))
        self._busy = False
        self.widget = W.VBox()
        self._memo = {}   # _memo_key() → a finished update (see _remember / _recall)

    # -------------------------------------------------------------- plumbing
    def _layout(self, *control_rows):
        """Assemble header, control rows, message, table and (if any) the figure."""
        parts = [self.header, *control_rows, self.message, self.table]
        if self.figure is not None:
            parts.append(self.image)
        self.widget.children = parts

    def _say(self, text, error=False):
        """Show a one-line message in the panel."""
        style = _ERROR_STYLE if error else "color:#555"
        self.message.value = f"<span style='{style}'>{html.escape(text)}</span>" if text else ""

    def _set_header(self, extra=""):
        self.header.value = f"<h4 style='margin:4px 0'>{html.escape(self.title)}</h4>" + (
            f"<span style='color:#555'>{html.escape(extra)}</span>" if extra else "")

    def _on_change(self, _change=None):
        if not self._busy:
            self.refresh()

    def _observe(self, *names):
        for name in names:
            self.controls[name].observe(self._on_change, names="value")

    def _show_figure(self, key=None):
        """Render the long-lived figure into the Image widget (redraw in place); a
        remembered update's PNG is reused (the same figure gives the same bytes)."""
        if self.figure is None:
            return
        png = getattr(self, "_png", None)
        if png is None:
            buf = io.BytesIO()
            self.figure.savefig(buf, format="png", dpi=72)
            png = buf.getvalue()
            if key in self._memo:
                self._memo[key] = (*self._memo[key][:4], png)
        self.image.value = png
        self.image.layout.display = None

    @abc.abstractmethod
    def _compute(self):
        """Run the model for the current control values and fill .values (each panel's own)."""

    def _check_controls(self):
        """Refuse what a control lets through but no run can use: a float slider's NaN, a
        dropdown with nothing chosen (ipywidgets clamps the rest, and refuses wrong types)."""
        for name, control in self.controls.items():
            if isinstance(control, W.Dropdown) and control.value is None:
                choices = ", ".join(map(str, control.options))
                raise ValueError(usage.line(name, f"choose one of {choices}", "nothing"))
            if isinstance(control, W.FloatSlider) and math.isnan(control.value):
                raise ValueError(usage.line(name, f"must be a number from {control.min} to "
                                                  f"{control.max}", control.value))

    # -------------------------------------------------------------- memo (issue 13)
    MEMO_SIZE = 6   # finished updates kept per panel (each keeps its Machine)

    def _memo_key(self):
        """The parameters an update is a pure function of, or None (not remembered)."""
        return None

    def _draw(self):
        """Draw self.machine / self.values into the figure (panels with a memo)."""
        return None

    def _recall(self, key):
        """An update seen before: its machine, values, header, table and PNG, drawn again."""
        machine, values, header, table, png = self._memo[key]
        self.machine, self.values = machine, dict(values)
        self.header.value, self.table.value = header, table
        self._draw()
        self._png = png

    def _remember(self, key):
        if len(self._memo) >= self.MEMO_SIZE:
            self._memo.pop(next(iter(self._memo)))
        self._memo[key] = (self.machine, dict(self.values), self.header.value,
                           self.table.value, None)

    def refresh(self):
        """Recompute from the controls and redraw; a refused value becomes a panel message.

        A panel with a ``_memo_key`` shows a setting it has shown before from its memo:
        same machine, numbers and picture, without re-running the model.
        """
        self._say("working…")
        self._png = None
        try:
            self._check_controls()
            key = self._memo_key()
            if key is not None and key in self._memo:
                self._recall(key)
            else:
                self._compute()
                if key is not None:
                    self._remember(key)
        except Exception as exc:   # shown to the learner instead of a traceback
            self.error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) \
                else str(exc)
            self._say(f"refused: {self.error}", error=True)
            return False
        self.error = ""
        self._say(self.values.pop("_note", ""))
        self._show_figure(key)
        return True

    def _repr_mimebundle_(self, **kwargs):
        return _bundle(self.widget, self.title, **kwargs)

    def __repr__(self):
        return f"<{type(self).__name__} values={self.values!r}>"


def _seed_control(seed):
    return W.IntText(value=seed, description="seed", continuous_update=False,
                     layout=W.Layout(width="160px"))


def _seed_of(panel):
    seed = panel.controls["seed"].value
    if seed < 0:
        raise ValueError(f"seed: must be ≥ 0, got {seed}")
    return seed


# ------------------------------------------------------------------ GFP flags

class GfpFlagsExplorer(Panel):
    """Checkboxes per __GFP_* bit → the mask, what vmalloc passes down, and a VM_GROUP_PAGES try."""

    title = "GFP flags and VM_GROUP_PAGES"

    def __init__(self):
        super().__init__()
        preset = W.Dropdown(options=[CUSTOM, *GFP_PRESETS], value="GFP_KERNEL",
                            description="preset")
        self.controls["preset"] = preset
        boxes = []
        for name, bit in GFP_BITS:
            box = W.Checkbox(value=bool(GFP_KERNEL & bit), description=f"{name} ({int(bit):#x})",
                             indent=False, layout=W.Layout(width="250px"))
            self.controls[name] = box
            boxes.append(box)
        preset.observe(self._on_preset, names="value")
        self._observe(*(name for name, _ in GFP_BITS))
        args = ", ".join(f"{k}={v!r}" for k, v in GFP_MACHINE.items())
        self._set_header(f"each mask is tried on a fresh Machine({args})")
        self._layout(preset, W.GridBox(boxes, layout=W.Layout(
            grid_template_columns="repeat(3, 260px)")))
        self.refresh()

    def mask(self):
        """The gfp_t of the checked boxes."""
        return gfp_t(sum(int(bit) for name, bit in GFP_BITS if self.controls[name].value))

    def _on_preset(self, change):
        if self._busy or change["new"] == CUSTOM:
            return
        if change["new"] is None:   # nothing chosen: the panel says so
            self.refresh()
            return
        value = _gfp.parse_gfp(change["new"])
        self._busy = True
        try:
            for name, bit in GFP_BITS:
                self.controls[name].value = bool(value & bit)
        finally:
            self._busy = False
        self.refresh()

    def _sync_preset(self, mask):
        names = [p for p in GFP_PRESETS if _gfp.parse_gfp(p) == mask]
        self._busy = True
        try:
            self.controls["preset"].value = names[0] if names else CUSTOM
        finally:
            self._busy = False

    def _compute(self):
        mask = self.mask()
        if self.controls["preset"].value is not None:   # None was refused; keep it shown
            self._sync_preset(mask)
        down = vmalloc_page_gfp(mask)
        equals = down == GFP_GROUPED
        m = Machine(**GFP_MACHINE)
        self.machine = m
        before = m.stats()
        addr = m.vmalloc_node_range(4096, vm_flags=VM_GROUP_PAGES, gfp=mask,
                                    caller="gfp_flags_explorer")
        after = m.stats()
        delta = {k: after[k] - before[k] for k in ("grouped_hits", "grouped_replenish",
                                                     "grouped_fallback")}
        if addr is None:
            source = "failed (NULL)"
        elif delta["grouped_replenish"]:
            source = ("grouped cache, replenished: a 2 MiB block was split, "
                      f"{after['grouped_cache_pages']} pages now cached")
        elif delta["grouped_fallback"]:
            source = "a single order-0 page (no 2 MiB block free)"
        else:
            source = "grouped cache hit"
        warns = m.warnings
        warning = next((w for w in warns if "VM_GROUP_PAGES" in w), warns[0] if warns else "")
        extra, missing = gfp_t(int(down) & ~int(GFP_GROUPED)), gfp_t(int(GFP_GROUPED) & ~int(down))
        self.values = {"mask": int(mask), "passed_down": int(down), "equals_grouped": equals,
                       "allocated": addr is not None, "warning": warning, "source": source}
        rows = [("mask", f"{int(mask):#x}  {mask}"),
                ("__vmalloc_area_node passes down", f"{int(down):#x}  {down}"),
                (f"== GFP_GROUPED ({int(GFP_GROUPED):#x})", "yes" if equals else "no")]
        if not equals:
            rows += [("extra bits", f"{int(extra):#x}  {extra}" if extra else "–"),
                     ("missing bits", f"{int(missing):#x}  {missing}" if missing else "–")]
        rows += [("VM_GROUP_PAGES allocation", "succeeded" if addr is not None else "failed"),
                 ("from", source), ("WARN", warning or "–")]
        self.table.value = html_table(rows)


def gfp_flags_explorer():
    """Checkbox per __GFP_* bit: the mask, what vmalloc passes down, VM_GROUP_PAGES's verdict."""
    return GfpFlagsExplorer()


# ------------------------------------------------------------------ memory pressure

class PressureExplorer(Panel):
    """Pressure slider → a fresh grouped machine, 300 RO+X module pages, half freed."""

    title = "Memory pressure and the grouped cache"

    def __init__(self, seed=0, nodes=1, node_mem="2G", allocs=PRESSURE_ALLOCS):
        super().__init__(figsize=(11, 5))
        self.nodes, self.node_mem, self.allocs = nodes, node_mem, allocs
        self.controls["level"] = W.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05,
                                               description="pressure", readout_format=".2f",
                                               continuous_update=False)
        self.controls["seed"] = _seed_control(seed)
        self._observe("level", "seed")
        self._layout(W.HBox([self.controls["level"], self.controls["seed"]]))
        self.axes = self.figure.subplots(1, 2, width_ratios=(1, 1.3))
        self.refresh()

    def _compute(self):
        level = float(self.controls["level"].value)
        seed = _seed_of(self)
        self._set_header(f"Machine(nodes={self.nodes}, node_mem={self.node_mem!r}, "
                         f"patches=(1, 2, 3), seed={seed}); pressure {level:.2f}; "
                         f"{self.allocs} one-page module_alloc areas made RO+X, half freed")
        t0 = time.perf_counter()
        m = Machine(nodes=self.nodes, node_mem=self.node_mem, patches=(1, 2, 3), seed=seed)
        m.set_memory_pressure(level)
        free_before = m.meminfo()["MemFree"]
        addrs, failed = [], 0
        for _ in range(self.allocs):
            addr = m.module_alloc(4096)
            if addr is None:
                failed += 1
                continue
            m.set_vm_flush_reset_perms(addr)
            m.set_memory_ro(addr, 1)
            m.set_memory_x(addr, 1)
            addrs.append(addr)
        for addr in addrs[::2]:
            m.vfree(addr)
        self.machine = m
        mi, st = m.meminfo(), m.stats()
        self.values = {
            "level": level, "seed": seed,
            "free_before_mb": round(free_before / 1024, 1),
            "free_mb": round(mi["MemFree"] / 1024, 1),
            "reclaimed_mb": round(st["pgsteal"] * 4 / 1024, 1),
            "kswapd_runs": st["kswapd_runs"], "allocstall": st["allocstall"],
            "migrated_mb": round(st.get("pgmigrate_success", 0) * 4 / 1024, 1),
            "kcompactd": st.get("compact_daemon_wake", 0),
            "order9_blocks": m.order9_free_blocks(),
            "fallbacks": st["grouped_fallback"],
            "cache_pages": st["grouped_cache_pages"],
            "shrinker_calls": st["shrinker_calls"],
            "shrinker_freed": st["shrinker_freed"],
            "directmap4k_kb": mi["DirectMap4k"],
            "replenish": st["grouped_replenish"],
            "failed": failed,
            "seconds": round(time.perf_counter() - t0, 2),
        }
        v = self.values
        if v["reclaimed_mb"]:
            # what the student sees at 1.0: "nothing free", then hundreds of MB free again
            v["_note"] = (f"pressure {level:.2f} left {v['free_before_mb']} MB free; the "
                          "workload's allocations woke kswapd (a boosted watermark after a "
                          "fallback steal, an order-9 replenish short of a free 2 MiB block) "
                          f"{v['kswapd_runs']} times and stalled in direct reclaim "
                          f"{v['allocstall']} times; reclaim evicted {v['reclaimed_mb']} MB of "
                          f"page cache and compaction moved {v['migrated_mb']} MB of it "
                          f"(kcompactd woken {v['kcompactd']} times): hence {v['free_mb']} MB "
                          "free after the workload.")
        self.table.value = html_table([
            ("free memory before the workload (MB)", v["free_before_mb"]),
            ("free memory after it (MB)", v["free_mb"]),
            ("page cache reclaimed meanwhile (MB)", v["reclaimed_mb"]),
            ("free order-9 blocks", v["order9_blocks"]),
            ("replenishes (2 MiB blocks)", v["replenish"]),
            ("fallbacks to single pages", v["fallbacks"]),
            ("grouped cache pages", v["cache_pages"]),
            ("shrinker calls / pages freed", f"{v['shrinker_calls']} / {v['shrinker_freed']}"),
            ("DirectMap4k (kB)", f"{v['directmap4k_kb']:,}"),
            ("module_alloc failures", failed)])
        self._draw()

    def _memo_key(self):
        return (float(self.controls["level"].value), _seed_of(self))

    def _draw(self):
        viz.direct_map_picture(self.machine, self.axes[0])
        viz.buddyinfo_bars(self.machine, self.axes[1])


def pressure_explorer(seed=0, nodes=1, node_mem="2G"):
    """Slide background memory pressure and watch the grouped cache replenish or fall back."""
    return PressureExplorer(seed=seed, nodes=nodes, node_mem=node_mem)


# ------------------------------------------------------------------ NUMA

class NumaExplorer(Panel):
    """Nodes slider → NUMA_NO_NODE module_alloc()s: per-node cache, round-robin, cross-node hits."""

    title = "NUMA: where grouped pages come from"

    def __init__(self, seed=0):
        super().__init__(figsize=(11, 4))
        self.controls["nodes"] = W.IntSlider(value=2, min=1, max=8, description="nodes",
                                             continuous_update=False)
        self.controls["allocs"] = W.IntSlider(value=1200, min=16, max=2048, step=16,
                                              description="allocations",
                                              continuous_update=False)
        self.controls["cpus"] = W.Dropdown(options=list(NUMA_CPU_CHOICES), description="run on")
        self.controls["seed"] = _seed_control(seed)
        self._observe("nodes", "allocs", "cpus", "seed")
        c = self.controls
        self._layout(W.HBox([c["nodes"], c["allocs"]]), W.HBox([c["cpus"], c["seed"]]))
        self.axes = self.figure.subplots(1, 2)
        self.refresh()

    def _compute(self):
        nodes, allocs = int(self.controls["nodes"].value), int(self.controls["allocs"].value)
        seed = _seed_of(self)
        choice = self.controls["cpus"].value
        self._set_header(f"Machine(nodes={nodes}, node_mem={NUMA_NODE_MEM!r}, patches=(1, 2, 3), "
                         f"seed={seed}): {allocs} one-page module_alloc()s (NUMA_NO_NODE) on "
                         f"{choice}, every other one vfree()d, then {NUMA_PROBES} more from CPU 0")
        m = Machine(nodes=nodes, node_mem=NUMA_NODE_MEM, patches=(1, 2, 3), seed=seed)
        nr_cpus = nodes * m.config["cpus_per_node"]
        pick = NUMA_CPU_CHOICES[choice]
        rng = random.Random(seed)
        addrs = []
        for i in range(allocs):
            m.cpu = pick(i, nr_cpus, rng)
            addr = m.module_alloc(4096)
            if addr is not None:
                addrs.append(addr)
        for addr in addrs[::2]:
            m.vfree(addr)
        cache_before_probes = list(m.stats()["grouped_cache_pages_per_node"])
        m.cpu = 0
        page_nodes, start_nodes = [], []
        for _ in range(NUMA_PROBES):
            # the node __remove_first_page() starts its round-robin lookup at
            start_nodes.append(m.stats()["nid_round_robin"] % nodes)
            addr = m.module_alloc(4096)
            page_nodes.append(m.find_vm_area(addr).pages[0].nid if addr is not None else None)
        self.machine = m
        st = m.stats()
        replenish = [0] * nodes
        for block in m.grouped_blocks():
            replenish[block["node"]] += 1
        self.values = {
            "nodes": nodes, "seed": seed,
            "cache_per_node": list(st["grouped_cache_pages_per_node"]),
            "cross_node": st["grouped_cross_node"],
            "replenish": replenish,
            "hits": st["grouped_hits"],
            "fallbacks": st["grouped_fallback"],
            "cache_before_probes": cache_before_probes,
            "start_nodes": start_nodes,
            "page_nodes": page_nodes,
            "failed": allocs - len(addrs),
        }
        v = self.values
        self.table.value = html_table([
            ("cached pages per node", v["cache_per_node"]),
            ("replenishes (2 MiB blocks) per node", v["replenish"]),
            ("cache hits / cross-node hits", f"{v['hits']} / {v['cross_node']}"),
            (f"{NUMA_PROBES} more from CPU 0 (node 0): lookup starts at node",
             " ".join(map(str, start_nodes))),
            ("… page came from node", " ".join(map(str, page_nodes)))])
        self._draw()

    def _memo_key(self):
        c = self.controls
        return (int(c["nodes"].value), int(c["allocs"].value), c["cpus"].value, _seed_of(self))

    def _draw(self):
        v = self.values
        nodes, replenish = v["nodes"], v["replenish"]
        viz.cache_bars(self.machine, self.axes[0])
        ax = self.axes[1]
        ax.clear()
        bars = ax.bar(range(nodes), replenish, color=viz.OKABE_ITO["orange"], hatch="..",
                      edgecolor=viz.HATCH_INK)
        ax.bar_label(bars, fontsize="small")
        ax.set_xticks(range(nodes))
        ax.set_xticklabels([f"node {n}" for n in range(nodes)])
        ax.set_ylabel("2 MiB blocks replenished")
        ax.set_ylim(0, max(replenish + [1]) * 1.2)
        ax.set_title(f"Replenishes per node; {v['cross_node']} of {v['hits']} hits cross-node")


def numa_explorer(seed=0):
    """Slide the node count and see per-node caches, round-robin lookups and cross-node hits."""
    return NumaExplorer(seed=seed)


# ------------------------------------------------------------------ experiment dashboard

class ExperimentDashboard(Panel):
    """bpf-load on baseline vs grouped: timeline, two direct maps, reduction; Run button."""

    title = f"Experiment: {DASHBOARD_SCENARIO}, baseline vs grouped"

    def __init__(self, seed=0, autorun=True):
        super().__init__(figsize=(13, 5))
        c = self.controls
        c["nodes"] = W.IntSlider(value=1, min=1, max=4, description="nodes",
                                 continuous_update=False)
        c["pressure"] = W.FloatSlider(value=0.3, min=0.0, max=1.0, step=0.05,
                                      description="pressure", readout_format=".2f",
                                      continuous_update=False)
        c["gfp"] = W.Dropdown(options=list(DASHBOARD_GFPS), description="callers' gfp",
                              style={"description_width": "initial"})
        c["seed"] = _seed_control(seed)
        c["fedora"] = W.Checkbox(value=False, indent=False, layout=W.Layout(width="auto"),
                                 description="also fedora-bpf (~5 s more)",
                                 tooltip=f"fedora-bpf with test_tag_stride="
                                         f"{FEDORA_TEST_TAG_STRIDE}: every "
                                         f"{FEDORA_TEST_TAG_STRIDE}th test_tag load")
        c["run"] = W.Button(description="Run", button_style="primary", icon="play")
        c["run"].on_click(lambda _button: self.refresh())
        for name in ("nodes", "pressure", "gfp", "seed", "fedora"):
            c[name].observe(self._stale, names="value")
        self._layout(W.HBox([c["nodes"], c["pressure"], c["seed"]]),
                     W.HBox([c["gfp"], c["fedora"], c["run"]]))
        self.axes = self.figure.subplots(1, 3, width_ratios=(1.2, 1, 1))
        self.machines = {}
        self.result = None
        self._set_header(f"seed {seed}: press Run")
        if autorun:
            self.refresh()

    def refresh(self):
        """Run the experiments with the current settings (the Run button); False if refused."""
        self.controls["run"].disabled = True
        try:
            return super().refresh()
        finally:
            self.controls["run"].disabled = False

    def _stale(self, _change=None):
        if self.values:
            self._say("settings changed: press Run to re-run")

    def _compute(self):
        c = self.controls
        seed = _seed_of(self)
        nodes, pressure = int(c["nodes"].value), float(c["pressure"].value)
        gfp_label = c["gfp"].value
        gfp = DASHBOARD_GFPS[gfp_label]
        cal = Calibration(nodes=nodes, node_mem=DASHBOARD_NODE_MEM, pressure=pressure,
                          state=None)   # the panel's slider is the knob
        self._set_header(f"seed {seed}; {nodes} node(s) × {DASHBOARD_NODE_MEM}, pressure "
                         f"{pressure:.2f}; {DASHBOARD_PROGRAMS} one-page BPF programs kept loaded")
        t0 = time.perf_counter()
        kernels = designs.BASELINE_VS_GROUPED
        machines = {}
        # both kernels at once (issue 13): machines come back as their views (MachineSnapshot)
        result = run_experiment(DASHBOARD_SCENARIO, seed=seed, cal=cal, kernels=kernels,
                                machines=machines, programs=DASHBOARD_PROGRAMS,
                                jobs=default_jobs())
        # The callers' gfp: VM_GROUP_PAGES takes GFP_KERNEL only (exactly GFP_GROUPED after
        # __vmalloc_area_node adds __GFP_NOWARN|__GFP_HIGHMEM); anything else WARNs, NULL.
        probe = Machine(seed=seed, design=kernels["grouped"], **cal.machine_kwargs())
        ok = sum(probe.vmalloc_node_range(4096, gfp=gfp, vm_flags=VM_GROUP_PAGES,
                                          node=NUMA_NO_NODE, caller="dashboard") is not None
                 for _ in range(DASHBOARD_GFP_PROBES))
        failed = DASHBOARD_GFP_PROBES - ok
        runs = result["runs"]
        self.result, self.machines, self.machine = result, machines, machines["grouped"]
        self.values = {
            "reduction_pct": result["reduction_pct"],
            "baseline_4k": runs["baseline"]["DirectMap4k"],
            "grouped_4k": runs["grouped"]["DirectMap4k"],
            "warnings": runs["grouped"]["warnings"] + len(probe.warnings),
            "warning": probe.warnings[0] if probe.warnings else "",
            "gfp": gfp_label, "grouped_failed": failed, "seed": seed, "nodes": nodes,
            "pressure": pressure,
        }
        if c["fedora"].value:
            fedora = run_experiment("fedora-bpf", seed=seed, cal=cal,
                                    test_tag_stride=FEDORA_TEST_TAG_STRIDE, jobs=default_jobs())
            self.values["fedora_reduction_pct"] = fedora["reduction_pct"]
        self.values["seconds"] = round(time.perf_counter() - t0, 2)
        v = self.values
        rows = [("DirectMap4k baseline (kB)", f"{v['baseline_4k']:,}"),
                ("DirectMap4k grouped (kB)", f"{v['grouped_4k']:,}"),
                ("reduction", f"{v['reduction_pct']}%")]
        if "fedora_reduction_pct" in v:
            rows.append(("fedora-bpf reduction", f"{v['fedora_reduction_pct']}%"))
        rows += [(f"VM_GROUP_PAGES with {gfp_label}",
                  f"{failed} of {DASHBOARD_GFP_PROBES} failed" if failed
                  else f"all {DASHBOARD_GFP_PROBES} succeeded"),
                 ("WARNs", f"{v['warnings']}: {v['warning']}" if v["warning"] else v["warnings"]),
                 ("seconds", v["seconds"])]
        if failed:
            rows.append(("so", "with these callers every grouped allocation fails: modules and "
                               "BPF JITs would not load, and the reduction above is moot"))
        self.table.value = html_table(rows)
        viz.directmap_timeline(result, self.axes[0])
        for ax, k in zip(self.axes[1:], kernels, strict=True):
            viz.direct_map_picture(machines[k], ax, title=f"{k}: DirectMap4k "
                                                         f"{runs[k]['DirectMap4k']:,} kB")


def experiment_dashboard(seed=0, autorun=True):
    """bpf-load on baseline vs grouped, side by side, with a Run button (and the callers' gfp)."""
    return ExperimentDashboard(seed=seed, autorun=autorun)


# ------------------------------------------------------------------ the live lab

LIVE_LAB_PROGRAMS, LIVE_LAB_INSNS = 500, 800


class LiveLab(Panel):
    """Opt-in: load N classic BPF socket filters on *this* kernel, then the model beside it.

    The Run button does nothing until the box is ticked.  A run is ``gpalloc live
    bpf-filters`` (gpalloc.live.experiment) writing a capture folder under ``out``; the
    model then starts from that capture's own 00-before (Machine.from_proc) and plays the
    same run (gpalloc.validate.compare).  ``show(folder)`` does the second half for any
    capture, e.g. a committed one.  A run that cannot happen (not Linux, limits, an error
    from setsockopt) is a message in the panel.
    """

    title = "Your kernel next to the model (opt-in live experiment)"

    def __init__(self, out="live-captures"):
        super().__init__()
        c = self.controls
        c["programs"] = W.BoundedIntText(value=LIVE_LAB_PROGRAMS, min=1, max=6000,
                                         description="filters N")
        c["insns"] = W.BoundedIntText(value=LIVE_LAB_INSNS, min=1, max=4096,
                                      description="insns K")
        c["out"] = W.Text(value=str(out), description="capture to")
        c["agree"] = W.Checkbox(value=False, indent=False,
                                description="I understand: a split stays until reboot")
        c["run"] = W.Button(description="Load N socket filters", button_style="warning",
                            icon="flask")
        c["run"].on_click(lambda _button: self.refresh())
        self.folder = None
        self._layout(W.HBox([c["programs"], c["insns"], c["out"]]),
                     W.HBox([c["agree"], c["run"]]))
        self._set_header("tick the box, then Run: loads unprivileged socket filters here")

    def _compute(self):
        c = self.controls
        if not c["agree"].value:
            self.values = {"_note": "skipped: tick the box first"}
            return
        from .live.experiment import Params
        from .live.experiment import run as live_run

        result = live_run(Params(programs=int(c["programs"].value), insns=int(c["insns"].value),
                                 out=c["out"].value))
        self.show(result["folder"])

    def show(self, folder):
        """The model next to one capture (the rows of gpalloc.validate.compare)."""
        from .validate import compare

        rows = compare(folder, seeds=(0,))
        self.folder = folder
        self.values = {"rows": rows, "_note": f"capture {folder}"}
        cells = [("phase", "real 4K kB / model 4K kB / error / 1G real, model")]
        for r in rows:
            err = "n/a" if r["error_4k"] is None else f"{100 * r['error_4k']:+.0f} %"
            cells.append((r["phase"], f"{r['real']['DirectMap4k']:+,} / "
                                      f"{r['model']['DirectMap4k']:+,} / {err} / "
                                      f"{r['real']['DirectMap1G']:+,}, "
                                      f"{r['model']['DirectMap1G']:+,}"))
        self.table.value = html_table(cells)
        return rows


def live_lab(out="live-captures"):
    """The opt-in live experiment: your kernel's DirectMap change next to the 6.18 model's."""
    return LiveLab(out)


# ------------------------------------------------------------------ predict → reveal

RIGHT_WITHIN, CLOSE_WITHIN = 0.10, 0.50   # relative error of a numeric prediction
NULL_WORDS = {"none", "null", "nil"}       # how a learner may write the kernel's NULL


def _number(text):
    """The number a learner typed ("+2,048", "76.6 %", "2048 kB"), or None if it is not one."""
    text = re.sub(r"(?i)\s*(%|kb|kib|mb|mib|pages?|x)$", "", text.strip())
    try:
        return float(text.replace(",", "").replace("_", ""))
    except ValueError:
        return None


def _judge_one(guess, expected):
    """right / close / wrong for one value: numbers by relative error, words by equality."""
    if isinstance(expected, bool) or not isinstance(expected, (int, float)):
        word = str(guess).strip().strip("'\"").casefold()
        want = str(expected).casefold()
        same = word == want or (word in NULL_WORDS and want in NULL_WORDS)
        return "right" if same else "wrong"
    value = _number(str(guess))
    if value is None:
        return "wrong"
    error = abs(value - expected) / abs(expected) if expected else abs(value)
    return "right" if error <= RIGHT_WITHIN else "close" if error <= CLOSE_WITHIN else "wrong"


def _parts(prediction, n):
    """A prediction split into n values: by commas, semicolons or spaces (1,046,528 stays one)."""
    text = str(prediction).strip().strip("()[]")
    text = re.sub(r"(?i)\s+(?=%|(kb|kib|mb|mib|pages?)\b)", "", text)   # "76.6 %" is one value
    for pattern in (r"\s*[,;]\s*|\s+", r"\s*;\s*|,\s+|\s+"):
        parts = [part for part in re.split(pattern, text) if part]
        if len(parts) == n:
            return parts
    return None


def format_expected(expected):
    """The expected value the way a learner would type it: "0, -2048, 2048", "C, B, None"."""
    if isinstance(expected, (tuple, list)):
        return ", ".join(format_expected(value) for value in expected)
    return str(expected)


def judge(prediction, expected):
    """"right", "close" or "wrong" for a prediction against the model's value, or None.

    Numbers: right within 10 %, close within 50 % (relative to the model's value; an
    exact 0 must be predicted as 0).  Words and choices (str, None): right only when
    equal (ignoring case; "NULL" and "None" are the same).  A tuple: the prediction
    is as many values separated by commas, semicolons or spaces, each judged alone;
    right when all are right, close when at least half of them count (a close one
    counts half), wrong otherwise (also when the number of values differs).  None
    when there is nothing to judge (no expected value, or an empty prediction).
    """
    if expected is None or str(prediction).strip() in ("", "(choose)"):
        return None
    if not isinstance(expected, (tuple, list)):
        return _judge_one(prediction, expected)
    parts = _parts(prediction, len(expected))
    if parts is None:
        return "wrong"
    verdicts = [_judge_one(part, value) for part, value in zip(parts, expected, strict=True)]
    if all(v == "right" for v in verdicts):
        return "right"
    score = sum(1.0 if v == "right" else 0.5 if v == "close" else 0.0 for v in verdicts)
    return "close" if score >= len(verdicts) / 2 else "wrong"


VERDICT_STYLE = {"right": "color:#009E73", "close": "color:#E69F00", "wrong": "color:#D55E00"}


class PredictReveal(Panel):
    """A question, a box for the learner's prediction, and a Reveal button running the model.

    ``expect`` (optional) is what the prediction is judged against: a number, a word
    or choice, a tuple of them, or a callable returning one, computed live when
    Reveal is pressed (see :func:`judge`).  Kernel WARNs the answer causes are part of
    its text where they matter, so they are not issued again as KernelWarnings.
    """

    title = "Predict, then reveal"

    def __init__(self, question, answer, choices=None, expect=None):
        super().__init__()
        self.answer, self.expect = answer, expect
        if choices:
            self.controls["prediction"] = W.Dropdown(options=["(choose)", *choices],
                                                     description="prediction")
        else:
            self.controls["prediction"] = W.Text(placeholder="your prediction",
                                                 description="prediction",
                                                 layout=W.Layout(width="420px"))
        self.controls["reveal"] = W.Button(description="Reveal", icon="eye")
        self.controls["reveal"].on_click(lambda _button: self.reveal())
        self.revealed = False
        self.values = {"prediction": "", "answer": None, "revealed": False, "verdict": None}
        self.question = str(question)
        self.header.value = f"<p><b>{html.escape(self.question)}</b></p>"
        self._layout(W.HBox([self.controls["prediction"], self.controls["reveal"]]))

    def reveal(self):
        """Run the answer and show it next to the prediction, with a verdict if it can judge."""
        self.revealed = True
        return self.refresh()

    def _compute(self):
        prediction = self.controls["prediction"].value
        self.values["prediction"] = prediction
        if not self.revealed:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", KernelWarning)
            text = _answer_text(self.answer)
            expected = self.expect() if callable(self.expect) else self.expect
        verdict = judge(prediction, expected)
        self.values.update(answer=text, revealed=True, verdict=verdict, expected=expected)
        shown = "" if verdict is None else (
            f" — <b style='{VERDICT_STYLE[verdict]}'>{verdict}</b>"
            f" (the model says {html.escape(format_expected(expected))})")
        self.table.value = (f"<div>you predicted: <i>{html.escape(str(prediction) or '–')}</i>"
                            f"{shown}</div><pre>{html.escape(text)}</pre>")


def _answer_text(answer):
    return str(answer() if callable(answer) else answer)


def predict_reveal(question, answer, choices=None, expect=None):
    """A predict → reveal exercise: prediction box, Reveal runs answer() and judges the guess."""
    return PredictReveal(question, answer, choices, expect)


class Framed:
    """Any ipywidget, displayed with the panels' one-line plain-text fallback."""

    def __init__(self, widget, title):
        self.widget, self.title = widget, title

    def _repr_mimebundle_(self, **kwargs):
        return _bundle(self.widget, self.title, **kwargs)


def framed(widget, title):
    """Wrap a hand-built widget so that, unrun, its cell reads as a hint, not a repr."""
    return Framed(widget, title)


def show_answer(answer):
    """Print the answer now (answer() if callable), so notebook solutions run in CI."""
    print(_answer_text(answer))


__all__ = ["GFP_BITS", "experiment_dashboard", "format_expected", "framed",
           "gfp_flags_explorer", "judge", "live_lab", "numa_explorer", "predict_reveal",
           "pressure_explorer", "show_answer"]
