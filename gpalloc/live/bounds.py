"""Safe bounds for live experiments: a size past one is refused with one line naming the flag."""

from __future__ import annotations

from .bpf import BPF_MAXINSNS

MAX_PROGRAMS = 20_000          # bpf-filters: sockets held by one process
MAX_PROCS = 4_096              # bpf-procs: forked children (each a copy of this process)
MAX_INSNS_TOTAL = 40_000_000   # programs x insns: about 200 MB of JIT image, ~100 packs
MAX_ROUNDS = 10
MAX_TIMEOUT_S = 1_800
MAX_HOLD_S = 600
MAX_SETTLE_S = 30
FD_MARGIN = 64                 # descriptors besides the sockets (pipes, /proc, tracefs files)


def _range(flag: str, value, low, high) -> None:
    if not low <= value <= high:
        raise ValueError(f"{flag} {value}: must be between {low} and {high:,}")


def check(kind: str, programs: int, insns: int, rounds: int, hold: float, settle: float,
          timeout: float) -> None:
    """Refuse parameters past the bounds above (ValueError naming the flag and value)."""
    _range("--programs", programs, 1, MAX_PROCS if kind == "bpf-procs" else MAX_PROGRAMS)
    _range("--insns", insns, 1, BPF_MAXINSNS)
    if programs * insns > MAX_INSNS_TOTAL:
        raise ValueError(f"--programs {programs} x --insns {insns} = {programs * insns:,} "
                         f"instructions: more than {MAX_INSNS_TOTAL:,}")
    _range("--rounds", rounds, 1, MAX_ROUNDS)
    _range("--hold", hold, 0, MAX_HOLD_S)
    _range("--settle", settle, 0, MAX_SETTLE_S)
    _range("--timeout", timeout, 1, MAX_TIMEOUT_S)
    if kind == "bpf-procs":
        import resource  # Unix only; reading captures must not need it

        soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
        if soft != resource.RLIM_INFINITY and programs >= soft:
            raise ValueError(f"--programs {programs}: RLIMIT_NPROC is {soft} processes")


def files_needed(kind: str, programs: int) -> int:
    """Open files the run needs: one socket per program for bpf-filters."""
    return (programs if kind == "bpf-filters" else 0) + FD_MARGIN
