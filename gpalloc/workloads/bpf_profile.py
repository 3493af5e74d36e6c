"""The v5.11 BPF selftest profile (``data/bpf_selftests_v5_11.json``) as typed dataclasses.

:func:`parse_bpf_profile` reads the JSON and builds a :class:`BpfProfile`: every
field is checked against its annotation (ints are not bools, counts have minimums,
estimates carry a range that contains the value), and numbers that must agree are
checked where they are defined (``__post_init__``).  Keys the dataclasses do not
name (notes, sources of whole sections) are documentation and are left alone.
An error names the file and the offending key: ``PATH: key 'a.b': what``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from ..kernel.bpf.core import BPF_BINARY_HEADER, BPF_JIT_HOLE, bpf_jit_binary_pages
from ..mm.page import PAGE_SIZE
from ..sources import read_json

BPF_PROFILE_SCHEMA = "gpalloc.bpf_selftests_profile/1"


class ProfileError(Exception):
    """A bad key: ``key 'a.b': what`` (parse_bpf_profile adds the file name)."""

    def __init__(self, key, what):
        super().__init__(f"key '{key}': {what}")


def _min(n):
    return field(metadata={"min": n})


@dataclass(frozen=True)
class Count:
    """A counted quantity with its source; an estimate carries the [low, high] it lies in."""

    value: int = _min(0)
    estimate: bool
    source: str
    range: tuple[int, int] | None = None

    def check(self, key):
        if self.estimate and self.range is None:
            raise ProfileError(f"{key}.range", "missing (an estimate needs [low, high])")
        if self.range is not None:
            low, high = self.range
            if low > high:
                raise ProfileError(f"{key}.range", f"must be [low, high], got {list(self.range)}")
            if not low <= self.value <= high:
                raise ProfileError(f"{key}.value", f"{self.value} is outside range "
                                                   f"{list(self.range)}")
        if not self.source.strip():
            raise ProfileError(f"{key}.source", "must be a non-empty string")


@dataclass(frozen=True)
class PageRule:
    """How the v5.11 JIT rounds an image to pages (bpf_jit_binary_alloc)."""

    page_size: int = _min(1)
    header_bytes: int = _min(1)
    hole_bytes: int = _min(1)

    def check(self, key):
        for name, want in (("page_size", PAGE_SIZE), ("header_bytes", BPF_BINARY_HEADER),
                           ("hole_bytes", BPF_JIT_HOLE)):
            if getattr(self, name) != want:
                raise ProfileError(f"{key}.{name}", f"must be {want} (the model's rule)")


@dataclass(frozen=True)
class JitBytesPerInsn:
    """Measured x86-64 JIT bytes per instruction, by program kind."""

    imm: float
    map: float
    mov_r0_42: float


@dataclass(frozen=True)
class ScalePrograms:
    """test_verifier's "scale" programs: count, size and the pages each JIT image takes."""

    count: int = _min(1)
    insns: int = _min(1)
    jited_bytes: int = _min(1)
    pages_each: int = _min(1)

    def check(self, key):
        if bpf_jit_binary_pages(self.jited_bytes) != self.pages_each:
            raise ProfileError(f"{key}.pages_each", f"{self.pages_each} disagrees with "
                                                    f"page_rule for {self.jited_bytes} bytes")


@dataclass(frozen=True)
class FillHelperProgram:
    """One bpf_fill_* generated program: instructions, JIT images and their pages."""

    name: str
    insns: int = _min(1)
    images: int = _min(1)
    pages: int = _min(1)

    def check(self, key):
        if self.pages < self.images:
            raise ProfileError(f"{key}.pages", f"fewer than its {self.images} images")


@dataclass(frozen=True)
class FillHelperPrograms:
    """The test_verifier programs built by fill helpers."""

    count: int = _min(1)
    programs: tuple[FillHelperProgram, ...]

    def check(self, key):
        if len(self.programs) != self.count:
            raise ProfileError(f"{key}.programs", f"must be a list of {self.count} programs")


@dataclass(frozen=True)
class TestVerifier:
    """test_verifier: accepted loads, JIT images, the scale and fill-helper programs."""

    accepted_privileged_loads: Count
    accepted_unprivileged_loads: Count
    jit_images: Count
    one_page_images: Count
    scale_programs: ScalePrograms
    fill_helper_programs: FillHelperPrograms


@dataclass(frozen=True)
class TestProgs:
    """test_progs: executable allocations = JIT images + trampolines; the scale objects."""

    executable_allocations: Count
    jit_images: Count
    trampolines: Count
    bpf_verif_scale_objects: Count
    bpf_verif_scale_pages_each: Count

    def check(self, key):
        total, jit, tramp = (self.executable_allocations.value, self.jit_images.value,
                             self.trampolines.value)
        if jit + tramp != total:
            raise ProfileError(f"{key}.executable_allocations.value",
                               f"{total} != jit_images {jit} + trampolines {tramp}")


@dataclass(frozen=True)
class FexitStress:
    """fexit_stress: programs attached, trampoline pages."""

    fexit_programs: int = _min(1)
    trampoline_pages: int = _min(1)


@dataclass(frozen=True)
class ProgramRange:
    """test_tag programs of first_insns..last_insns instructions, one each."""

    first_insns: int = _min(1)
    last_insns: int = _min(1)
    count: int = _min(1)

    def check(self, key):
        if self.last_insns < self.first_insns:
            raise ProfileError(f"{key}.last_insns", f"must be >= first_insns {self.first_insns}")
        if self.count != self.last_insns - self.first_insns + 1:
            raise ProfileError(f"{key}.count", "must be last_insns - first_insns + 1")


@dataclass(frozen=True)
class TestTag:
    """test_tag: rounds of imm and map programs, loaded and closed straight away."""

    loads: int = _min(1)
    rounds: int = _min(1)
    imm_programs_per_round: ProgramRange
    map_programs_per_round: ProgramRange
    pages_histogram: dict[int, int]
    total_pages: int = _min(1)

    def check(self, key):
        per_round = self.imm_programs_per_round.count + self.map_programs_per_round.count
        if self.rounds * per_round != self.loads:
            raise ProfileError(f"{key}.loads", f"{self.loads} != rounds x programs per round "
                                               f"({self.rounds} x {per_round})")
        if not self.pages_histogram or min(self.pages_histogram) < 1:
            raise ProfileError(f"{key}.pages_histogram", "must map page counts >= 1 to counts")
        if sum(self.pages_histogram.values()) != self.loads:
            raise ProfileError(f"{key}.pages_histogram",
                               f"counts add up to {sum(self.pages_histogram.values())}, "
                               f"not loads = {self.loads}")
        if sum(p * n for p, n in self.pages_histogram.items()) != self.total_pages:
            raise ProfileError(f"{key}.total_pages", "disagrees with pages_histogram")


@dataclass(frozen=True)
class BpfProfile:
    """The whole profile."""

    schema: str
    kernel: str
    page_rule: PageRule
    jit_bytes_per_insn: JitBytesPerInsn
    test_verifier: TestVerifier
    test_progs: TestProgs
    fexit_stress: FexitStress
    test_tag: TestTag

    def check(self, key):
        if self.schema != BPF_PROFILE_SCHEMA:
            raise ProfileError("schema", f"expected {BPF_PROFILE_SCHEMA!r}, got {self.schema!r}")
        if self.kernel != "v5.11":
            raise ProfileError("kernel", "must be 'v5.11'")


def _build(tp, value, key):
    """A value of type tp from JSON, or ProfileError naming key."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _build(next(a for a in args if a is not type(None)), value, key)
    if dataclasses.is_dataclass(tp):
        return _build_dataclass(tp, value, key)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProfileError(key, f"must be an integer, got {value!r}")
        return value
    if tp is float:
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not 0 < value < math.inf):   # JSON's NaN and Infinity are not measurements
            raise ProfileError(key, f"must be a positive number, got {value!r}")
        return float(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ProfileError(key, f"must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ProfileError(key, f"must be a string, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise ProfileError(key, f"must be a list, got {value!r}")
        if args[-1] is Ellipsis:
            return tuple(_build(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ProfileError(key, f"must be a list of {len(args)}, got {value!r}")
        pairs = enumerate(zip(args, value, strict=True))
        return tuple(_build(a, v, f"{key}[{i}]") for i, (a, v) in pairs)
    if origin is dict:
        if not isinstance(value, dict):
            raise ProfileError(key, f"must be an object, got {value!r}")
        out = {}
        for k, v in value.items():
            if not (k.isascii() and k.isdigit()):
                raise ProfileError(f"{key}.{k}", "keys must be whole numbers")
            out[int(k)] = _build(args[1], v, f"{key}.{k}")
        return out
    raise TypeError(f"bpf_profile: no reader for {tp!r}")


def _build_dataclass(cls, obj, key):
    if not isinstance(obj, dict):
        raise ProfileError(key or "<top>", "must be an object")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        full = f"{key}.{f.name}" if key else f.name
        if f.name not in obj:
            if f.default is dataclasses.MISSING:
                raise ProfileError(full, "missing")
            continue
        value = _build(hints[f.name], obj[f.name], full)
        if "min" in f.metadata and value < f.metadata["min"]:
            raise ProfileError(full, f"must be >= {f.metadata['min']}, got {value}")
        kwargs[f.name] = value
    built = cls(**kwargs)
    if hasattr(built, "check"):
        built.check(key)
    return built


def parse_bpf_profile(path: str | os.PathLike) -> BpfProfile:
    """Load ``data/bpf_selftests_v5_11.json`` as a :class:`BpfProfile`.

    Raises ``ValueError("PATH: key 'a.b': <what>")`` naming the offending key when a
    required key is missing, has the wrong type, an estimate lies outside its stated
    range, or numbers that must agree do not; ``PATH:LINE:`` for text that is not JSON.
    """
    path = Path(path)
    doc = read_json(path)
    try:
        return _build_dataclass(BpfProfile, doc, "")
    except ProfileError as exc:
        raise ValueError(f"{path}: {exc}") from None
