"""How a module's pages split into the sections the v5.11 loader protects separately.

Captures give only each module's total size (lsmod / /proc/modules); the split
below is an estimate, documented in :func:`module_layout`.
"""

from __future__ import annotations

from .lsmod import Module

# Shares (percent) used by module_layout(); see its docstring.
CORE_RODATA_PCT = 25
CORE_DATA_PCT = 20
INIT_TEXT_PCT = 3
INIT_RODATA_PCT = 2
INIT_DATA_PCT = 10


def _pct(pages: int, pct: int) -> int:
    """``pages * pct / 100`` rounded half up, in integers (no float rounding surprises)."""
    return (pages * pct + 50) // 100


def module_layout(module: Module) -> tuple[int, int, int, int, int, int, int]:
    """Split a module into the page ranges the v5.11 loader protects separately.

    Returns ``(text, rodata, ro_after_init, data, init_text, init_rodata, init_data)`` in
    4 KiB pages.  The first four are the *core* allocation and always add up to
    ``module.pages`` (the lsmod size); the last three are the *init* allocation, a second
    ``module_alloc()`` that is freed (through VM_FLUSH_RESET_PERMS) soon after the module's
    init function returns, so lsmod no longer counts it.

    Why this shape (kernel/module.c, 5.11, ``layout_sections()``/``layout_symtab()``): with
    STRICT_MODULE_RWX each group [text][rodata][ro_after_init][data] starts on a page
    boundary, so every non-empty group is a whole number of pages.  Every module has code,
    and its ``struct module`` (``.gnu.linkonce.this_module``) and core kallsyms tables are
    writable data, so text and data are never empty.

    The rule (an assumption: per-section sizes of these modules were not captured, see
    kernel-spec §4.1 "Section split per module: UNVERIFIED"), with N = ``module.pages``:

    * N = 1: text 1.  N = 2: text 1, data 1.  N = 3: text 1, rodata 1, data 1.
    * N >= 4: ro_after_init = 1 (``__jump_table`` and ``.data..ro_after_init`` are marked
      ro_after_init by the loader; they are small, so one page), and the other R = N - 1
      pages go rodata = max(1, 25% of R), data = max(1, 20% of R), text = the rest
      (about 55%).  Reasoning for the shares: on x86-64 the read-only group holds the ORC
      unwind tables (10 bytes per entry), ``__mcount_loc``, ``__ex_table``, ``__bug_table``,
      ``.altinstructions``, strings and const tables, roughly 40-50% of the code size; the
      writable group holds .data, .bss, ``struct module`` and the core symbol table.  The
      4-page minimum matches the smallest modules on the 4.18, 5.10 and 6.1 boots (16384
      bytes); the 6.12 and >=6.17 boots (after 6.4's per-type module_memory) go down to 3.
    * init (not counted in N): init_text = max(1, 3% of N), init_rodata = 2% of N (0 for
      small modules), init_data = max(1, 10% of N).  ``layout_symtab()`` appends the full
      ELF symbol and string tables to the init allocation, which is why init data is the
      largest init group.

    Percentages are rounded half up in integer arithmetic, so the result is deterministic.
    """
    if not isinstance(module, Module):
        raise TypeError(f"module_layout() needs a Module, got {type(module).__name__}")
    n = module.pages
    if n == 1:
        core = (1, 0, 0, 0)
    elif n == 2:
        core = (1, 0, 0, 1)
    elif n == 3:
        core = (1, 1, 0, 1)
    else:
        rest = n - 1
        rodata = max(1, _pct(rest, CORE_RODATA_PCT))
        data = max(1, _pct(rest, CORE_DATA_PCT))
        core = (rest - rodata - data, rodata, 1, data)
    init = (max(1, _pct(n, INIT_TEXT_PCT)), _pct(n, INIT_RODATA_PCT),
            max(1, _pct(n, INIT_DATA_PCT)))
    layout = core + init
    assert sum(core) == n and core[0] >= 1 and min(layout) >= 0, (module, layout)
    return layout
