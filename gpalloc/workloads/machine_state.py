"""Named machine states: a model machine's background taken from a real machine's /proc.

Each state names one capture in data/machines/ (provenance in data/machines/README.md) and
how its amounts carry over to a model machine of another size
(gpalloc.workloads.background.capture_targets: "absolute" keeps the kB and block counts,
"ram" keeps each as a share of RAM).  ``apply_machine_state(k, name)`` sets the background
with background_from_capture(): fill level, kernel / anon / page-cache split and free blocks
per order from the capture's meminfo and buddyinfo — not from a knob.

The notebooks' ``set_memory_pressure(level)`` stays the teaching knob; the experiments name
a state (``Calibration``).
"""

from ..procfs import read_proc_dir
from ..resources import data_root
from .background import background_from_capture

MACHINE_STATES = {
    "fresh-boot": dict(
        capture="machines/debian11-5.10-qemu", scale="absolute",
        about="a QEMU guest (Debian 11, v5.10.84, 2 vCPU, 2 GB) 102 s after boot: 27 % of "
              "RAM used (page cache 277 MB, anon 207 MB, slab 46 MB), free memory almost all "
              "in order-10 blocks; the same kB and block counts on the model machine"),
    "desktop-uptime": dict(
        capture="machines/ubuntu1404-3.13", scale="ram",
        about="an 8 GB Ubuntu 14.04 desktop (v3.13) up 4.2 days: 32 % used, free memory in "
              "tens of thousands of order-0–3 blocks; as shares of RAM"),
    "openshift-hyperv": dict(
        capture="machines/rhcos418-hyperv", scale="ram",
        about="an 8 GB RHCOS / RHEL 8 (v4.18) Hyper-V VM 35 min into running an OpenShift "
              "master: 10 % free, no order-10 block in ZONE_NORMAL; 5.5 GB not itemised by "
              "meminfo (the balloon driver's, unmovable); as shares of RAM"),
    "small-vm-after-boot": dict(
        capture="machines/centos9-5.14-vm", scale="absolute",
        about="a 0.75 GB CentOS Stream 9 VM (v5.14) 198 s after boot, short of memory: "
              "5,372 free order-0 blocks; the same kB and block counts"),
}


def machine_state_names():
    """The named states, in the order above."""
    return tuple(MACHINE_STATES)


def load_capture(name):
    """The parsed /proc files (meminfo, buddyinfo, …) of a named state's capture."""
    if name not in MACHINE_STATES:
        raise ValueError(f"state: unknown machine state {name!r}; known: "
                         f"{', '.join(MACHINE_STATES)}")
    return read_proc_dir(data_root() / MACHINE_STATES[name]["capture"])


def apply_machine_state(k, name):
    """Set the machine's background to a named state (background_from_capture)."""
    capture = load_capture(name)
    background_from_capture(k, capture, MACHINE_STATES[name]["scale"])
    k.trace("machine_state", name=name)
