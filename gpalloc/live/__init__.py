"""gpalloc.live: bounded experiments on the running Linux kernel, recorded as capture folders.

``python -m gpalloc live bpf-filters|bpf-procs|snapshot`` (see ``gpalloc.live.cli``) loads
classic-BPF socket filters, captures /proc per phase (``gpalloc.live.capture``) and, with
``--trace``, the kmem page events (``gpalloc.live.trace``).  ``read_capture(folder)`` reads a
capture back on any OS.
"""

from .capture import directmap_table, read_capture

__all__ = ["directmap_table", "read_capture"]
