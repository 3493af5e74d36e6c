"""Shared pytest configuration for the gpalloc test suite."""

import os

# Headless plotting: tests must never try to open a GUI window.
os.environ.setdefault("MPLBACKEND", "Agg")
