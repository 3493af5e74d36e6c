"""The module loader's memory side (kernel/module.c, v5.11).

A module has a *core* and an *init* layout, each ``[text][rodata][ro_after_init][data]``
in whole pages (``debug_align`` with STRICT_MODULE_RWX), each its own module_alloc()
area.  complete_formation() makes text and rodata RO (and sets
VM_FLUSH_RESET_PERMS), the non-text parts NX and the text X; after the init
function runs, ro_after_init becomes RO and the init area is freed from a
workqueue (after synchronize_rcu()); unloading frees the core area.

Areas come from execmem_alloc() (module_alloc() in v5.11).  Where module text
arrives read-only and executable (the execmem ROX cache, 6.15+ on x86), it cannot share an
area with the data: text is then allocated on its own, as 6.4+ kernels do with
their per-type module memory (mod->mem[MOD_TEXT], [MOD_INIT_TEXT]), through
execmem_alloc_rw() (6.15: execmem_alloc() + execmem_make_temp_rw()) so the loader can
write it, and made ROX again by execmem_restore_rox() at complete_formation()
(module_enable_text_rox()); the model keeps rodata, ro_after_init and data together
and protects them as v5.11 does.
"""

from dataclasses import dataclass

from ..arch.x86 import set_memory as cpa
from ..errno import ENOMEM
from ..mm.execmem import (
    EXECMEM_MODULE_DATA,
    EXECMEM_MODULE_TEXT,
    execmem_alloc,
    execmem_alloc_rw,
    execmem_free,
    execmem_is_rox,
    execmem_restore_rox,
)
from ..mm.page import PAGE_SHIFT
from ..mm.vmalloc import set_vm_flush_reset_perms
from .workqueue import queue_work

INIT_FREE_DELAY = 4   # kernel events between do_init_module() and do_free_init() running


@dataclass
class module_layout:
    """struct module_layout: base, size and the cumulative section-group ends (bytes)."""

    base: int = 0
    size: int = 0
    text_size: int = 0
    ro_size: int = 0
    ro_after_init_size: int = 0


@dataclass
class module:
    """struct module: the parts the memory model needs."""

    name: str
    core_layout: module_layout
    init_layout: module_layout
    state: str = "MODULE_STATE_UNFORMED"
    # text allocated apart (6.4+ mod->mem[MOD_TEXT] / [MOD_INIT_TEXT]): (address, pages)
    core_text: tuple = (0, 0)
    init_text: tuple = (0, 0)


def layout_sections(text, rodata, ro_after_init, data):
    """layout_sections(): page counts of each group → a layout with cumulative ends."""
    for name, n in (("text", text), ("rodata", rodata), ("ro_after_init", ro_after_init),
                    ("data", data)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{name}: pages must be a whole number ≥ 0, got {n!r}")
    t = text << PAGE_SHIFT
    r = t + (rodata << PAGE_SHIFT)
    a = r + (ro_after_init << PAGE_SHIFT)
    return module_layout(size=a + (data << PAGE_SHIFT), text_size=t, ro_size=r,
                         ro_after_init_size=a)


def _frob(k, layout, fn, start, end):
    """One set_memory_*() call over [start, end) of a layout (as frob_*() do)."""
    if layout.base:
        fn(k, layout.base + start, (end - start) >> PAGE_SHIFT)


def frob_text(k, layout, fn):
    """frob_text()."""
    _frob(k, layout, fn, 0, layout.text_size)


def frob_rodata(k, layout, fn):
    """frob_rodata()."""
    _frob(k, layout, fn, layout.text_size, layout.ro_size)


def frob_ro_after_init(k, layout, fn):
    """frob_ro_after_init()."""
    _frob(k, layout, fn, layout.ro_size, layout.ro_after_init_size)


def frob_writable_data(k, layout, fn):
    """frob_writable_data()."""
    _frob(k, layout, fn, layout.ro_after_init_size, layout.size)


def module_enable_ro(k, mod, after_init):
    """module_enable_ro(): VM_FLUSH_RESET_PERMS on both areas; text and rodata RO."""
    set_vm_flush_reset_perms(k, mod.core_layout.base)
    if mod.init_layout.base:
        set_vm_flush_reset_perms(k, mod.init_layout.base)
    frob_text(k, mod.core_layout, cpa.set_memory_ro)
    frob_rodata(k, mod.core_layout, cpa.set_memory_ro)
    frob_text(k, mod.init_layout, cpa.set_memory_ro)
    frob_rodata(k, mod.init_layout, cpa.set_memory_ro)
    if after_init:
        frob_ro_after_init(k, mod.core_layout, cpa.set_memory_ro)


def module_enable_nx(k, mod):
    """module_enable_nx(): everything but text NX (no direct-map effect)."""
    frob_rodata(k, mod.core_layout, cpa.set_memory_nx)
    frob_ro_after_init(k, mod.core_layout, cpa.set_memory_nx)
    frob_writable_data(k, mod.core_layout, cpa.set_memory_nx)
    frob_rodata(k, mod.init_layout, cpa.set_memory_nx)
    frob_writable_data(k, mod.init_layout, cpa.set_memory_nx)


def module_enable_x(k, mod):
    """module_enable_x(): text executable (no direct-map effect)."""
    frob_text(k, mod.core_layout, cpa.set_memory_x)
    frob_text(k, mod.init_layout, cpa.set_memory_x)


def text_apart(k):
    """Is module text allocated on its own (it arrives read-only + executable)?"""
    return execmem_is_rox(k, EXECMEM_MODULE_TEXT)


def layout_type(k):
    """The execmem type of the core and init layout areas."""
    return EXECMEM_MODULE_DATA if text_apart(k) else EXECMEM_MODULE_TEXT


def move_module(k, mod):
    """move_module(): allocate the core area, then the init area if it is not empty."""
    kind = layout_type(k)
    if mod.core_layout.size:
        mod.core_layout.base = execmem_alloc(k, kind, mod.core_layout.size, "move_module") or 0
        if not mod.core_layout.base:
            return -ENOMEM
    if mod.init_layout.size:
        mod.init_layout.base = execmem_alloc(k, kind, mod.init_layout.size, "move_module") or 0
        if not mod.init_layout.base:
            execmem_free(k, kind, mod.core_layout.base, mod.core_layout.size)
            mod.core_layout.base = 0
            return -ENOMEM
    return 0


def complete_formation(k, mod):
    """complete_formation(): enable RO, NX, X in that order; text apart goes back to ROX."""
    module_enable_ro(k, mod, False)
    module_enable_nx(k, mod)
    module_enable_x(k, mod)
    for addr, pages in (mod.core_text, mod.init_text):
        if addr:
            execmem_restore_rox(k, EXECMEM_MODULE_TEXT, addr, pages << PAGE_SHIFT)
    mod.state = "MODULE_STATE_COMING"


def do_free_init(k, base, size, text=(0, 0)):
    """do_free_init(): the workqueue frees the init area after a grace period."""
    if base:
        execmem_free(k, layout_type(k), base, size)
    if text[0]:
        execmem_free(k, EXECMEM_MODULE_TEXT, text[0], text[1] << PAGE_SHIFT)


def do_init_module(k, mod):
    """do_init_module(): init ran; ro_after_init goes RO; the init area is freed later."""
    module_enable_ro(k, mod, True)
    mod.state = "MODULE_STATE_LIVE"
    base, size, text = mod.init_layout.base, mod.init_layout.size, mod.init_text
    mod.init_layout.base, mod.init_text = 0, (0, 0)
    if base or text[0]:
        queue_work(k, lambda: do_free_init(k, base, size, text), INIT_FREE_DELAY,
                   f"do_free_init {mod.name}")


def load_module(k, name, core_pages, init_pages):
    """load_module(): lay out, allocate, protect and initialise one module.

    ``core_pages`` = (text, rodata, ro_after_init, data), ``init_pages`` =
    (text, rodata, data) in pages.  Returns the module, or None (-ENOMEM).
    """
    text, rodata, roa, data = core_pages
    it, ir, idata = init_pages
    apart = text_apart(k)
    mod = module(name, layout_sections(0 if apart else text, rodata, roa, data),
                 layout_sections(0 if apart else it, ir, 0, idata))
    if apart:
        mod.core_text = (execmem_alloc_rw(k, EXECMEM_MODULE_TEXT, text << PAGE_SHIFT,
                                          "module text") or 0, text)
        if it:   # mod->mem[MOD_INIT_TEXT] is only allocated when it has a size
            mod.init_text = (execmem_alloc_rw(k, EXECMEM_MODULE_TEXT, it << PAGE_SHIFT,
                                              "module init text") or 0, it)
        if not mod.core_text[0]:
            return None
    if move_module(k, mod):
        return None
    complete_formation(k, mod)
    do_init_module(k, mod)
    k.stat["modules_loaded"] += 1
    return mod


def free_module(k, mod):
    """free_module() (delete_module): the core area goes back (VM_FLUSH_RESET_PERMS path)."""
    kind = layout_type(k)
    if mod.init_layout.base:
        execmem_free(k, kind, mod.init_layout.base, mod.init_layout.size)
        mod.init_layout.base = 0
    if mod.core_text[0]:
        execmem_free(k, EXECMEM_MODULE_TEXT, mod.core_text[0], mod.core_text[1] << PAGE_SHIFT)
        mod.core_text = (0, 0)
    execmem_free(k, kind, mod.core_layout.base, mod.core_layout.size)
    mod.core_layout.base = 0
    mod.state = "MODULE_STATE_GOING"
    k.stat["modules_unloaded"] += 1
