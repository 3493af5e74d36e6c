"""Models of kernel/ (module loader, BPF, deferred work) — the callers of module_alloc."""
