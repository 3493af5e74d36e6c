"""Models of arch/x86 (x86-64, 4-level paging)."""
