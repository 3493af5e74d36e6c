"""Kernel designs, one module each, and the one registry everything reads.

``Machine(design="rfc")``, the CLI's ``--kernel``/``--compare-kernels``, the
experiments, widgets and notebooks all take designs from :data:`REGISTRY`.
Adding a design is one new module (a subclass of
:class:`~gpalloc.designs.v5_11.Linux511` overriding the seams it changes, see
:mod:`gpalloc.designs.base`) plus one :func:`register` line below.
"""

from .base import Design
from .cpa_merge import CpaMerge
from .execmem_rox import Linux615
from .linux_6_18 import Linux618
from .prog_pack import Linux518
from .rfc import RFC, RFCPatch1, RFCPatch2
from .v5_11 import Linux511

REGISTRY = {}   # name → Design subclass, in the order designs are compared


def register(cls):
    """Add a Design subclass under its ``name`` (refuses a second class of the same name)."""
    if not (isinstance(cls, type) and issubclass(cls, Design)) or not cls.name:
        raise ValueError(f"design: {cls!r} is not a named Design subclass")
    if REGISTRY.get(cls.name, cls) is not cls:
        raise ValueError(f"design: {cls.name!r} is registered already")
    REGISTRY[cls.name] = cls
    return cls


def unregister(name):
    """Remove a design (for tests that register one of their own)."""
    REGISTRY.pop(name, None)


register(Linux511)      # plain v5.11
register(RFC)           # v5.11 + the RFC (1-3/3)
register(Linux518)      # 5.18 bpf_prog_pack (4 KiB packs on x86-64)
register(CpaMerge)      # Aaron Lu's 2022 CPA merge-back RFC
register(Linux615)      # 6.15 execmem ROX cache for module text
register(Linux618)      # 6.18, the kernel the project's machines run

# Machine(patches=...) is sugar for the RFC's patch subsets.
BY_PATCHES = {(): Linux511, (1,): RFCPatch1, (1, 2): RFCPatch2, (1, 2, 3): RFC}
# The pair every experiment compares unless told otherwise: role → design name.
BASELINE_VS_GROUPED = {"baseline": "5.11", "grouped": "rfc"}


def names():
    """Registered design names, in comparison order."""
    return list(REGISTRY)


def design_class(name):
    """The registered class for a name; ValueError naming the choices otherwise."""
    cls = REGISTRY.get(name)
    if cls is None:
        raise ValueError(f"design: unknown {name!r}; choose from {', '.join(REGISTRY)}")
    return cls


def from_patches(patches):
    """The design class for a set of RFC patches: () is v5.11, (1, 2, 3) the whole RFC."""
    patches = tuple(sorted(set(patches)))
    for p in patches:
        if p not in (1, 2, 3):
            raise ValueError(f"patches: the RFC has patches 1, 2 and 3, got {p!r}")
    for p, needs in ((2, 1), (3, 2)):
        if p in patches and needs not in patches:
            raise ValueError(f"patches: patch {p} builds on patch {needs}; got {patches}")
    return BY_PATCHES[patches]


def patches_of(cls):
    """The RFC patches of a v5.11(+RFC) design class, as Machine(patches=...) takes them.

    None for the other designs (they are not v5.11 plus RFC patches).
    """
    for patches, known in BY_PATCHES.items():
        if cls is known:
            return patches
    return None


def create(design=None, patches=None, **options):
    """A new design instance: by name, class or instance, or from RFC patches (sugar).

    ``options`` are design options (e.g. list_head); one the design does not declare
    is refused with a line naming it and the designs that have it.
    """
    if design is not None and patches is not None:
        raise ValueError("design/patches: give one of them, not both")
    if isinstance(design, Design):
        return design
    if isinstance(design, type) and issubclass(design, Design):
        cls = design
    elif design is not None:
        cls = design_class(design)
    else:
        cls = from_patches(patches or ())
    for key in options:
        if key not in cls.OPTIONS:
            having = [n for n, c in REGISTRY.items() if key in c.OPTIONS]
            raise ValueError(f"{key}: design {cls.name!r} has no such option "
                             f"(designs with it: {', '.join(having) or 'none'})")
    return cls(**options)


__all__ = ["BASELINE_VS_GROUPED", "BY_PATCHES", "REGISTRY", "Design", "create",
           "design_class", "from_patches", "names", "patches_of", "register", "unregister"]
