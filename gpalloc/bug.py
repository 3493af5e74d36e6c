"""WARN, WARN_ONCE and BUG (include/asm-generic/bug.h): how the model complains.

The kernel prints a WARN splat and carries on; the model appends the message to
``k.warnings`` (shown as ``Machine.warnings``) and carries on too.  A BUG in the
kernel stops the machine; the model raises :class:`KernelBUG`.
"""


class KernelBUG(RuntimeError):
    """BUG()/BUG_ON(): the kernel would have stopped here (or oopsed)."""


class InvariantError(AssertionError):
    """Raised by Machine.check(): names the invariant that does not hold."""


def WARN(k, msg):
    """WARN(1, msg): record a kernel warning and carry on."""
    k.warnings.append(f"WARNING: {msg}")


def WARN_ONCE(k, key, msg):
    """WARN_ONCE(): like WARN but only the first time for this call site."""
    if key not in k.warned_once:
        k.warned_once.add(key)
        WARN(k, msg)
