"""Classic-BPF socket filters on the running kernel: build, attach, hold, close.

``setsockopt(SOL_SOCKET, SO_ATTACH_FILTER, struct sock_fprog)`` on an AF_INET/SOCK_DGRAM socket
runs sk_attach_filter() in net/core/filter.c: the classic program is checked, converted to eBPF
(bpf_convert_filter()) and JITed; on x86-64 6.x the image goes into a ``bpf_prog_pack`` (2 MiB of
order-0 pages, made read-only + executable once).  No privilege is needed.  Closing the socket
releases the program (after an RCU grace period and a work item).

The sockets are never bound, connected or sent on: no packet ever reaches a filter.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
import socket
import struct
import time

SO_ATTACH_FILTER = 26          # include/uapi/asm-generic/socket.h (x86 uses the generic value)
BPF_MAXINSNS = 4096            # include/uapi/linux/bpf_common.h: the classic program limit
BPF_LD_W_IMM = 0x00            # BPF_LD | BPF_W | BPF_IMM: A = k
BPF_RET_K = 0x06               # BPF_RET | BPF_K: accept k bytes
ACCEPT_BYTES = 0xFFFF
DEFAULT_INSNS = 800            # about one page of x86-64 JIT code (data/measurements/README.md)
ENOTSUPP = 524                 # kernel-internal errno the JIT-always-on path returns

PR_SET_PDEATHSIG = 1           # include/uapi/linux/prctl.h
PR_SET_NAME = 15
CHILD_NAME = b"gpalloc-filter"  # comm of every bpf-procs child, so a test can look for strays
REAP_GRACE_S = 5.0             # how long released children get to exit before SIGKILL


def filter_code(insns: int) -> bytes:
    """A classic program of ``insns`` instructions: ``ld #i`` for i = 0 .. insns-2, ``ret #0xffff``.

    ``struct sock_filter`` is {u16 code; u8 jt; u8 jf; u32 k}.  Each ``ld #imm`` becomes one eBPF
    ``mov32`` (5 bytes of x86 code, 2 for the first, whose immediate is 0), so the JIT image
    grows linearly with ``insns``; the program is valid for bpf_check_classic().
    """
    if not 1 <= insns <= BPF_MAXINSNS:
        raise ValueError(f"--insns: must be 1..{BPF_MAXINSNS} (BPF_MAXINSNS), got {insns}")
    body = b"".join(struct.pack("=HBBI", BPF_LD_W_IMM, 0, 0, i) for i in range(insns - 1))
    return body + struct.pack("=HBBI", BPF_RET_K, 0, 0, ACCEPT_BYTES)


class SockFprog:
    """``struct sock_fprog`` {unsigned short len; struct sock_filter *filter} for setsockopt()."""

    def __init__(self, insns: int):
        code = filter_code(insns)
        self.insns = insns
        # The kernel copies the instructions during setsockopt(); the buffer only has to
        # outlive each call, so one buffer serves every socket.
        self._buffer = ctypes.create_string_buffer(code, len(code))
        self.optval = struct.pack("@HP", insns, ctypes.addressof(self._buffer))


def attach_error(err: OSError, index: int, total: int) -> OSError:
    """One line saying which attach failed and what the errno means here."""
    code = err.errno or 0
    hint = {errno.ENOMEM: "out of memory or net.core.optmem_max too small for the program",
            ENOTSUPP: "the JIT refused the program (CONFIG_BPF_JIT_ALWAYS_ON)",
            errno.EMFILE: "too many open files (RLIMIT_NOFILE)",
            errno.EPERM: "not permitted"}.get(code, os.strerror(code) if code else str(err))
    return OSError(code, f"SO_ATTACH_FILTER failed on program {index + 1} of {total}: "
                         f"{hint} (errno {code})")


def open_filter_socket(fprog: SockFprog) -> socket.socket:
    """A new unbound UDP socket with the filter attached (sk_attach_filter())."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog.optval)
    except BaseException:
        sock.close()
        raise
    return sock


def check_deadline(deadline: float, what: str) -> None:
    """Raise TimeoutError (one line naming --timeout) once ``deadline`` has passed."""
    if time.monotonic() > deadline:
        raise TimeoutError(f"--timeout: reached while {what}; stopped and cleaned up")


class FilterSet:
    """N sockets held by this process, each with its own copy of the filter (bpf-filters)."""

    def __init__(self, fprog: SockFprog):
        self.fprog = fprog
        self.sockets: list[socket.socket] = []

    def load(self, n: int, deadline: float, after_attach=None) -> None:
        """Open and attach ``n`` sockets; ``after_attach(i)`` runs after each one."""
        for i in range(n):
            check_deadline(deadline, f"attaching filter {i + 1} of {n}")
            try:
                self.sockets.append(open_filter_socket(self.fprog))
            except OSError as err:
                raise attach_error(err, i, n) from None
            if after_attach is not None:
                after_attach(i)

    def close(self) -> None:
        """Close every socket, in load order (sk_filter_release() for each)."""
        sockets, self.sockets = self.sockets, []
        for sock in sockets:
            sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _child(fprog: SockFprog, parent: int, ready_w: int, release_r: int, close: tuple,
           mask: set) -> None:
    """A bpf-procs child: attach one filter, report, hold it until the release pipe closes."""
    status = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent handles Ctrl-C for all
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for fd in close:
            os.close(fd)
        libc = _libc()
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)   # die with the parent
        libc.prctl(PR_SET_NAME, ctypes.c_char_p(CHILD_NAME), 0, 0, 0)
        if os.getppid() != parent:     # the parent died before prctl() took effect
            return
        try:
            sock = open_filter_socket(fprog)
            err = 0
        except OSError as exc:
            sock, err = None, exc.errno or -1
        os.write(ready_w, struct.pack("=i", err))
        if sock is not None:
            os.read(release_r, 1)      # blocks until every write end is closed (EOF)
            sock.close()
            status = 0
        else:
            status = 2
    finally:
        os._exit(status)


class FilterProcs:
    """N child processes, each holding one socket with the filter attached (bpf-procs).

    Children are forked, never exec'd.  Each reports on a shared pipe once its filter is
    attached and then blocks reading a second pipe; closing that pipe's write end releases
    them all at once.  They ignore SIGINT (the parent cleans up), die with the parent
    (PR_SET_PDEATHSIG) and are reaped on every path, with SIGKILL after ``REAP_GRACE_S``.
    """

    def __init__(self, fprog: SockFprog):
        self.fprog = fprog
        self.pids: list[int] = []
        self._ready_r = self._ready_w = self._release_r = self._release_w = None

    def load(self, n: int, deadline: float) -> None:
        """Fork ``n`` children and wait until each has attached its filter."""
        self._ready_r, self._ready_w = os.pipe()
        self._release_r, self._release_w = os.pipe()
        parent = os.getpid()
        for i in range(n):
            check_deadline(deadline, f"forking child {i + 1} of {n}")
            # Signals stay blocked across fork(): a child must never raise KeyboardInterrupt
            # into the parent's stack (it would run the parent's clean-up); it unblocks
            # them only after installing its own dispositions.
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            try:
                pid = os.fork()
                if pid == 0:
                    _child(self.fprog, parent, self._ready_w, self._release_r,
                           (self._ready_r, self._release_w), mask)
                self.pids.append(pid)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(self._ready_w)
        self._ready_w = None
        self._collect(n, deadline)

    def _collect(self, n: int, deadline: float) -> None:
        data = b""
        while len(data) < 4 * n:
            left = deadline - time.monotonic()
            if left <= 0:
                check_deadline(deadline, f"waiting for {n - len(data) // 4} children to attach")
            ready, _, _ = select.select([self._ready_r], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(self._ready_r, 4 * n - len(data))
                if not chunk:
                    raise OSError(errno.ECHILD, f"{n - len(data) // 4} bpf-procs children "
                                                "exited before reporting")
                data += chunk
        for i, (err,) in enumerate(struct.iter_unpack("=i", data)):
            if err:
                raise attach_error(OSError(err, os.strerror(err)), i, n)

    def release(self) -> None:
        """Let every child close its socket and exit; reap all (SIGKILL the slow ones)."""
        for name in ("_ready_r", "_ready_w", "_release_r", "_release_w"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)
        until = time.monotonic() + REAP_GRACE_S
        pending = list(self.pids)
        while pending and time.monotonic() < until:
            pending = [pid for pid in pending if not _reaped(pid, os.WNOHANG)]
            if pending:
                time.sleep(0.01)
        for pid in pending:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _reaped(pid, 0)
        self.pids = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _reaped(pid: int, flags: int) -> bool:
    """waitpid(pid, flags): True once the child is gone (reaped now or earlier)."""
    try:
        done, _ = os.waitpid(pid, flags)
    except ChildProcessError:
        return True
    return done == pid
