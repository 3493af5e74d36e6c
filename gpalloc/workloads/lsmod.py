"""Real module listings (``lsmod`` and ``/proc/modules``) and the v5.11 BPF selftest profile.

``parse_modules`` reads the module listings in ``data/lsmod/`` (see its README for where each
one comes from).  Two formats are accepted, with or without the ``lsmod`` header line:

* ``lsmod`` (kmod): a header ``Module  Size  Used by``, then ``name size usecount [users]``,
  where *users* is a comma-separated list of the modules that use this one.
* ``/proc/modules`` (``m_show()`` in kernel/module.c): ``name size refcnt deps state addr
  [taints]``, no header.  *refcnt* and *deps* are ``-`` on kernels built without
  CONFIG_MODULE_UNLOAD; *deps* is ``-`` or ``a,b,`` (trailing comma, may contain
  ``[permanent],``); *state* is Live/Loading/Unloading; *addr* is ``0x0000000000000000`` when
  ``kptr_restrict`` hides it; *taints* looks like ``(OE)``.

The size column is ``core_layout.size`` (plus ``init_layout.size`` while the module is still
initialising; 0 afterwards).  On x86-64 kernels with STRICT_MODULE_RWX it is a multiple of
4 KiB; on old kernels (3.x) it is not, so ``Module.pages`` is ``ceil(size / 4096)``.

``module_layout`` splits a module's pages into the sections that the v5.11 module loader
protects separately (see its docstring), and ``parse_bpf_profile`` loads and validates
``data/bpf_selftests_v5_11.json``.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

PAGE_SIZE = 4096

PROC_STATES = ("Live", "Loading", "Unloading")
LSMOD_HEADER = ("Module", "Size", "Used", "by")

_NAME_RE = re.compile(r"[A-Za-z0-9_-]+\Z")
_INT_RE = re.compile(r"-?[0-9]+\Z")
_SIZE_RE = re.compile(r"[0-9]+\Z")
_ADDR_RE = re.compile(r"0x[0-9a-fA-F]+\Z")
_TAINT_RE = re.compile(r"\(([A-Z]+)\)\Z")
_PERMANENT = "[permanent]"


@dataclass(frozen=True)
class Module:
    """One loaded module, as listed by ``lsmod`` or ``/proc/modules``.

    ``pages`` is derived: ``ceil(size_bytes / 4096)``.  ``refcount`` is ``None`` when the
    listing shows ``-`` (no CONFIG_MODULE_UNLOAD).  ``state``, ``load_addr`` and ``taints``
    are only known for ``/proc/modules`` listings (``load_addr`` 0 = hidden by kptr_restrict).
    """

    name: str
    size_bytes: int
    refcount: int | None = None
    used_by: tuple[str, ...] = ()
    permanent: bool = False
    state: str | None = None
    load_addr: int | None = None
    taints: str = ""
    pages: int = field(init=False)

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"bad module name {self.name!r}")
        if isinstance(self.size_bytes, bool) or not isinstance(self.size_bytes, int):
            raise TypeError(f"size_bytes must be an int, got {self.size_bytes!r}")
        if self.size_bytes <= 0:
            raise ValueError(f"module {self.name}: size must be > 0, got {self.size_bytes}")
        object.__setattr__(self, "used_by", tuple(self.used_by))
        object.__setattr__(self, "pages", -(-self.size_bytes // PAGE_SIZE))


class _LineError(Exception):
    """A problem with one line; turned into ``ValueError("FILE:LINE: ...")``."""


# ---------------------------------------------------------------------------------------------
# Module listings
# ---------------------------------------------------------------------------------------------

def _read_source(path_or_text: str | os.PathLike, name: str | None) -> tuple[str, str]:
    """Return (text, label) — shared with gpalloc.procfs.

    A ``pathlib.Path`` (any ``os.PathLike``) is a file.  A ``str`` is text if it is empty or
    contains a newline, otherwise it is a file name.
    """
    if isinstance(path_or_text, os.PathLike) or (
        isinstance(path_or_text, str) and path_or_text and "\n" not in path_or_text
    ):
        path = Path(path_or_text)
        label = name if name is not None else str(path_or_text)
        data = path.read_bytes()
        try:
            return data.decode("utf-8"), label
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise ValueError(f"{label}:{line}: not UTF-8 text ({exc.reason})") from None
    if isinstance(path_or_text, str):
        return path_or_text, (name if name is not None else "<text>")
    raise TypeError(f"expected a path or text, got {type(path_or_text).__name__}")


def _name(token: str, what: str) -> str:
    if not _NAME_RE.match(token):
        raise _LineError(f"bad {what} {token!r}")
    return token


def _size(token: str) -> int:
    if not _SIZE_RE.match(token):
        raise _LineError(f"size {token!r} is not a non-negative integer")
    size = int(token)
    if size == 0:
        raise _LineError("size is 0")
    return size


def _count(token: str, what: str) -> int | None:
    if token == "-":
        return None
    if not _INT_RE.match(token):
        raise _LineError(f"{what} {token!r} is not an integer or '-'")
    return int(token)


def _users(token: str, what: str) -> tuple[tuple[str, ...], bool]:
    """Parse ``a,b,`` / ``a,b`` / ``-`` into (names, permanent)."""
    if token == "-":
        return (), False
    names, permanent = [], False
    for part in token.split(","):
        if not part:
            continue
        if part == _PERMANENT:
            permanent = True
        else:
            names.append(_name(part, f"module name in {what}"))
    if not names and not permanent:
        raise _LineError(f"empty {what} list {token!r}")
    return tuple(names), permanent


def _parse_proc_line(fields: list[str]) -> Module:
    if len(fields) not in (6, 7):
        raise _LineError(
            f"/proc/modules lines have 6 or 7 fields (name size refcnt deps state addr "
            f"[taints]), got {len(fields)}"
        )
    name = _name(fields[0], "module name")
    size = _size(fields[1])
    refcount = _count(fields[2], "refcnt")
    used_by, permanent = _users(fields[3], "deps")
    state = fields[4]
    if state not in PROC_STATES:
        raise _LineError(f"state {state!r} is not one of {'/'.join(PROC_STATES)}")
    if not _ADDR_RE.match(fields[5]):
        raise _LineError(f"address {fields[5]!r} is not 0x<hex>")
    taints = ""
    if len(fields) == 7:
        match = _TAINT_RE.match(fields[6])
        if not match:
            raise _LineError(f"taint flags {fields[6]!r} are not like '(OE)'")
        taints = match.group(1)
    return Module(name, size, refcount, used_by, permanent, state, int(fields[5], 16), taints)


def _parse_lsmod_line(fields: list[str]) -> Module:
    if len(fields) not in (3, 4):
        raise _LineError(
            f"lsmod lines have 3 or 4 fields (name size usecount [users]), got {len(fields)}"
        )
    name = _name(fields[0], "module name")
    size = _size(fields[1])
    refcount = _count(fields[2], "use count")
    used_by, permanent = _users(fields[3], "users") if len(fields) == 4 else ((), False)
    return Module(name, size, refcount, used_by, permanent)


def parse_modules(path_or_text: str | os.PathLike, name: str | None = None) -> list[Module]:
    """Parse an ``lsmod`` or ``/proc/modules`` listing into a list of ``Module``.

    ``path_or_text`` is a ``pathlib.Path``/``os.PathLike`` or a file name (a ``str`` with no
    newline), or the listing itself (a ``str`` that contains a newline, or ``""``).  ``name``
    overrides the label used in error messages (default: the path, or ``"<text>"``).

    The format is fixed by the first non-blank line: the lsmod header or a 3/4-field line
    means lsmod, a 6/7-field line means /proc/modules; every later line must match it.  Blank
    lines and surrounding white space are ignored.  Order is kept.

    Raises ``ValueError("FILE:LINE: <what is wrong>")`` for a bad line (including a duplicate
    module name or a misplaced header) and ``ValueError("FILE: no modules found")`` for an
    empty listing.
    """
    text, label = _read_source(path_or_text, name)
    fmt: str | None = None
    modules: list[Module] = []
    first_line: dict[str, int] = {}
    for lineno, raw in enumerate(text.split("\n"), start=1):
        fields = raw.split()
        if not fields:
            continue
        try:
            if tuple(fields) == LSMOD_HEADER:
                if fmt is not None:
                    raise _LineError("lsmod header 'Module Size Used by' after the first line")
                fmt = "lsmod"
                continue
            if fmt is None:
                if len(fields) in (3, 4):
                    fmt = "lsmod"
                elif len(fields) in (6, 7):
                    fmt = "proc"
                else:
                    raise _LineError(
                        f"{len(fields)} fields: not an lsmod line (name size usecount [users])"
                        " nor a /proc/modules line (name size refcnt deps state addr [taints])"
                    )
            module = _parse_lsmod_line(fields) if fmt == "lsmod" else _parse_proc_line(fields)
            if module.name in first_line:
                raise _LineError(
                    f"duplicate module {module.name!r} (first on line {first_line[module.name]})"
                )
        except _LineError as exc:
            raise ValueError(f"{label}:{lineno}: {exc}") from None
        first_line[module.name] = lineno
        modules.append(module)
    if not modules:
        raise ValueError(f"{label}: no modules found")
    return modules


# ---------------------------------------------------------------------------------------------
# Section layout
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# BPF selftest profile
# ---------------------------------------------------------------------------------------------

BPF_PROFILE_SCHEMA = "gpalloc.bpf_selftests_profile/1"


class _ProfileError(Exception):
    def __init__(self, key: str, what: str) -> None:
        super().__init__(f"key '{key}': {what}")


def _get(obj: dict, key: str, prefix: str = ""):
    full = f"{prefix}.{key}" if prefix else key
    if not isinstance(obj, dict):
        raise _ProfileError(prefix or "<top>", "must be an object")
    if key not in obj:
        raise _ProfileError(full, "missing")
    return obj[key]


def _int(obj: dict, key: str, prefix: str, minimum: int = 0) -> int:
    value = _get(obj, key, prefix)
    full = f"{prefix}.{key}" if prefix else key
    if isinstance(value, bool) or not isinstance(value, int):
        raise _ProfileError(full, f"must be an integer, got {value!r}")
    if value < minimum:
        raise _ProfileError(full, f"must be >= {minimum}, got {value}")
    return value


def _number(obj: dict, key: str, prefix: str) -> float:
    value = _get(obj, key, prefix)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise _ProfileError(f"{prefix}.{key}", f"must be a positive number, got {value!r}")
    return float(value)


def _count_entry(obj: dict, key: str, prefix: str) -> int:
    """A ``{"value": int, "estimate": bool, ...}`` entry, with ``range`` when an estimate."""
    entry = _get(obj, key, prefix)
    full = f"{prefix}.{key}"
    value = _int(entry, "value", full)
    estimate = _get(entry, "estimate", full)
    if not isinstance(estimate, bool):
        raise _ProfileError(f"{full}.estimate", f"must be true or false, got {estimate!r}")
    if estimate:
        rng = _get(entry, "range", full)
        if (not isinstance(rng, list) or len(rng) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in rng)
                or rng[0] > rng[1]):
            raise _ProfileError(f"{full}.range", f"must be [low, high] integers, got {rng!r}")
        if not rng[0] <= value <= rng[1]:
            raise _ProfileError(f"{full}.value", f"{value} is outside range {rng}")
    source = _get(entry, "source", full)
    if not isinstance(source, str) or not source.strip():
        raise _ProfileError(f"{full}.source", "must be a non-empty string")
    return value


def jit_pages(jited_bytes: int, header_bytes: int = 8, hole_bytes: int = 128) -> int:
    """v5.11 ``bpf_jit_binary_alloc()``: round_up(proglen + sizeof(hdr) + 128, PAGE_SIZE)."""
    return math.ceil((jited_bytes + header_bytes + hole_bytes) / PAGE_SIZE)


def _histogram(obj: dict, key: str, prefix: str) -> dict[int, int]:
    hist = _get(obj, key, prefix)
    full = f"{prefix}.{key}"
    if not isinstance(hist, dict) or not hist:
        raise _ProfileError(full, "must be a non-empty object {pages: count}")
    out = {}
    for pages in hist:
        if not _SIZE_RE.match(pages) or int(pages) < 1:
            raise _ProfileError(f"{full}.{pages}", "page counts must be integers >= 1")
        out[int(pages)] = _int(hist, pages, full, minimum=0)
    return out


def _validate_bpf_profile(doc: dict) -> None:
    if not isinstance(doc, dict):
        raise _ProfileError("<top>", "must be a JSON object")
    schema = _get(doc, "schema")
    if schema != BPF_PROFILE_SCHEMA:
        raise _ProfileError("schema", f"expected {BPF_PROFILE_SCHEMA!r}, got {schema!r}")
    if _get(doc, "kernel") != "v5.11":
        raise _ProfileError("kernel", "must be 'v5.11'")

    rule = _get(doc, "page_rule")
    if _int(rule, "page_size", "page_rule", 1) != PAGE_SIZE:
        raise _ProfileError("page_rule.page_size", f"must be {PAGE_SIZE}")
    header = _int(rule, "header_bytes", "page_rule", 1)
    hole = _int(rule, "hole_bytes", "page_rule", 1)

    bpi = _get(doc, "jit_bytes_per_insn")
    for kind in ("imm", "map", "mov_r0_42"):
        _number(bpi, kind, "jit_bytes_per_insn")

    tv = _get(doc, "test_verifier")
    _count_entry(tv, "accepted_privileged_loads", "test_verifier")
    _count_entry(tv, "accepted_unprivileged_loads", "test_verifier")
    _count_entry(tv, "jit_images", "test_verifier")
    _count_entry(tv, "one_page_images", "test_verifier")
    scale = _get(tv, "scale_programs", "test_verifier")
    p = "test_verifier.scale_programs"
    _int(scale, "count", p, 1)
    _int(scale, "insns", p, 1)
    jited = _int(scale, "jited_bytes", p, 1)
    pages_each = _int(scale, "pages_each", p, 1)
    if jit_pages(jited, header, hole) != pages_each:
        raise _ProfileError(f"{p}.pages_each",
                            f"{pages_each} disagrees with page_rule for {jited} bytes")
    fill = _get(tv, "fill_helper_programs", "test_verifier")
    p = "test_verifier.fill_helper_programs"
    count = _int(fill, "count", p, 1)
    programs = _get(fill, "programs", p)
    if not isinstance(programs, list) or len(programs) != count:
        raise _ProfileError(f"{p}.programs", f"must be a list of {count} programs")
    for i, prog in enumerate(programs):
        _get(prog, "name", f"{p}.programs[{i}]")
        _int(prog, "insns", f"{p}.programs[{i}]", 1)
        images = _int(prog, "images", f"{p}.programs[{i}]", 1)
        if _int(prog, "pages", f"{p}.programs[{i}]", 1) < images:
            raise _ProfileError(f"{p}.programs[{i}].pages", f"fewer than its {images} images")

    tp = _get(doc, "test_progs")
    total = _count_entry(tp, "executable_allocations", "test_progs")
    jit = _count_entry(tp, "jit_images", "test_progs")
    tramp = _count_entry(tp, "trampolines", "test_progs")
    if jit + tramp != total:
        raise _ProfileError("test_progs.executable_allocations.value",
                            f"{total} != jit_images {jit} + trampolines {tramp}")
    _count_entry(tp, "bpf_verif_scale_objects", "test_progs")
    _count_entry(tp, "bpf_verif_scale_pages_each", "test_progs")

    fx = _get(doc, "fexit_stress")
    _int(fx, "fexit_programs", "fexit_stress", 1)
    _int(fx, "trampoline_pages", "fexit_stress", 1)

    tt = _get(doc, "test_tag")
    loads = _int(tt, "loads", "test_tag", 1)
    rounds = _int(tt, "rounds", "test_tag", 1)
    per_round = 0
    for kind in ("imm", "map"):
        key = f"test_tag.{kind}_programs_per_round"
        spec = _get(tt, f"{kind}_programs_per_round", "test_tag")
        first = _int(spec, "first_insns", key, 1)
        last = _int(spec, "last_insns", key, first)
        if _int(spec, "count", key, 1) != last - first + 1:
            raise _ProfileError(f"{key}.count", "must be last_insns - first_insns + 1")
        per_round += last - first + 1
    if rounds * per_round != loads:
        raise _ProfileError("test_tag.loads", f"{loads} != rounds x programs per round "
                            f"({rounds} x {per_round})")
    hist = _histogram(tt, "pages_histogram", "test_tag")
    if sum(hist.values()) != loads:
        raise _ProfileError("test_tag.pages_histogram",
                            f"counts add up to {sum(hist.values())}, not loads = {loads}")
    total_pages = _int(tt, "total_pages", "test_tag", 1)
    if sum(k * v for k, v in hist.items()) != total_pages:
        raise _ProfileError("test_tag.total_pages", "disagrees with pages_histogram")


def parse_bpf_profile(path: str | os.PathLike) -> dict:
    """Load ``data/bpf_selftests_v5_11.json`` and check it.

    Returns the JSON document as a dict.  Raises ``ValueError("PATH: key 'a.b': <what>")``
    naming the offending key when a required key is missing, has the wrong type, an
    estimate lies outside its stated range, or numbers that must agree do not (page rule
    vs. scale-program pages, test_tag histogram vs. load count and total pages).
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    try:
        _validate_bpf_profile(doc)
    except _ProfileError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return doc
