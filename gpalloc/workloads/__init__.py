"""Workloads that drive the model: background memory, real module lists, BPF profiles."""
