"""The module loader's memory side (kernel/module.c, v5.11).

A module has a *core* and an *init* layout, each ``[text][rodata][ro_after_init][data]``
in whole pages (``debug_align`` with STRICT_MODULE_RWX), each its own module_alloc()
area.  complete_formation() makes text and rodata RO (and sets
VM_FLUSH_RESET_PERMS), the non-text parts NX and the text X; after the init
function runs, ro_after_init becomes RO and the init area is freed from a
workqueue (after synchronize_rcu()); unloading frees the core area.
"""

from dataclasses import dataclass

from ..arch.x86 import set_memory as cpa
from ..arch.x86.module import module_alloc, module_memfree
from ..mm import execmem
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
    # later design (execmem ROX cache): text lives apart from the other sections
    core_text: tuple = (0, 0)    # (address, pages)
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


def move_module(k, mod):
    """move_module(): module_alloc() the core area, then the init area if it is not empty."""
    if mod.core_layout.size:
        mod.core_layout.base = module_alloc(k, mod.core_layout.size, caller="move_module") or 0
        if not mod.core_layout.base:
            return -12
    if mod.init_layout.size:
        mod.init_layout.base = module_alloc(k, mod.init_layout.size, caller="move_module") or 0
        if not mod.init_layout.base:
            module_memfree(k, mod.core_layout.base)
            mod.core_layout.base = 0
            return -12
    return 0


def complete_formation(k, mod):
    """complete_formation(): enable RO, NX, X in that order."""
    module_enable_ro(k, mod, False)
    module_enable_nx(k, mod)
    module_enable_x(k, mod)
    mod.state = "MODULE_STATE_COMING"


def do_free_init(k, base, text=(0, 0)):
    """do_free_init(): the workqueue frees the init area after a grace period."""
    if base:
        module_memfree(k, base)
    if text[0]:
        execmem.execmem_free(k, text[0], text[1] << PAGE_SHIFT)


def do_init_module(k, mod):
    """do_init_module(): init ran; ro_after_init goes RO; the init area is freed later."""
    module_enable_ro(k, mod, True)
    mod.state = "MODULE_STATE_LIVE"
    base, text = mod.init_layout.base, mod.init_text
    mod.init_layout.base, mod.init_text = 0, (0, 0)
    if base or text[0]:
        queue_work(k, lambda: do_free_init(k, base, text), INIT_FREE_DELAY,
                   f"do_free_init {mod.name}")


def load_module(k, name, core_pages, init_pages):
    """load_module(): lay out, allocate, protect and initialise one module.

    ``core_pages`` = (text, rodata, ro_after_init, data), ``init_pages`` =
    (text, rodata, data) in pages.  Returns the module, or None (-ENOMEM).
    """
    it, ir, idata = init_pages
    if "execmem_rox" in k.features:
        return _load_module_execmem(k, name, core_pages, init_pages)
    mod = module(name, layout_sections(*core_pages), layout_sections(it, ir, 0, idata))
    if move_module(k, mod):
        return None
    complete_formation(k, mod)
    do_init_module(k, mod)
    k.stat["modules_loaded"] += 1
    return mod


def _load_module_execmem(k, name, core_pages, init_pages):
    """A later kernel's load: text from the execmem ROX cache, the rest as in v5.11.

    (6.4+ splits modules into typed allocations; the model keeps rodata,
    ro_after_init and data together and protects them as v5.11 does.)
    """
    text, rodata, roa, data = core_pages
    it, ir, idata = init_pages
    mod = module(name, layout_sections(0, rodata, roa, data), layout_sections(0, ir, 0, idata))
    mod.core_text = (execmem.execmem_alloc(k, text << PAGE_SHIFT, "module text") or 0, text)
    mod.init_text = (execmem.execmem_alloc(k, it << PAGE_SHIFT, "module init text") or 0, it)
    if not mod.core_text[0] or move_module(k, mod):
        return None
    complete_formation(k, mod)
    do_init_module(k, mod)
    k.stat["modules_loaded"] += 1
    return mod


def free_module(k, mod):
    """free_module() (delete_module): the core area goes back (VM_FLUSH_RESET_PERMS path)."""
    if mod.init_layout.base:
        module_memfree(k, mod.init_layout.base)
        mod.init_layout.base = 0
    if mod.core_text[0]:
        execmem.execmem_free(k, mod.core_text[0], mod.core_text[1] << PAGE_SHIFT)
        mod.core_text = (0, 0)
    module_memfree(k, mod.core_layout.base)
    mod.core_layout.base = 0
    mod.state = "MODULE_STATE_GOING"
    k.stat["modules_unloaded"] += 1
