"""Models of kernel/bpf/: JIT and interpreter images, trampolines."""
