"""WARN, WARN_ONCE and BUG (include/asm-generic/bug.h): how the model complains.

The kernel prints a WARN splat and carries on; the model appends the message to
``k.warnings`` (shown as ``Machine.warnings``) and carries on too, and the Machine
facade also issues each new one as a Python warning of category :class:`KernelWarning`
(so a notebook shows it, as dmesg would).  A BUG in the kernel stops the machine; the
model raises :class:`KernelBUG`, and a Machine that raised one refuses every later call.
"""


class KernelBUG(RuntimeError):
    """BUG()/BUG_ON(): the kernel would have stopped here (or oopsed)."""


class KernelWarning(UserWarning):
    """A WARN()/WARN_ONCE() splat, surfaced by the Machine facade as a Python warning."""


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
