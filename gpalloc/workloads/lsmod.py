"""Real module listings: ``lsmod`` and ``/proc/modules`` text, parsed into :class:`Module`.

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

How a module's pages split into sections: gpalloc.workloads.sections.module_layout.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from ..mm.page import PAGE_SIZE
from ..sources import long_number, read_source

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
    text, label = read_source(path_or_text, name)
    fmt: str | None = None
    modules: list[Module] = []
    first_line: dict[str, int] = {}
    for lineno, raw in enumerate(text.split("\n"), start=1):
        fields = raw.split()
        if not fields:
            continue
        try:
            if problem := long_number(raw):
                raise _LineError(problem)
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
