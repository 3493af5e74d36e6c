"""Shared pytest configuration for the gpalloc test suite."""

import os

import pytest

# Headless plotting: tests must never try to open a GUI window.
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_addoption(parser):
    parser.addoption("--live", action="store_true", default=False,
                     help="run the `live` tests, which load BPF filters into the running "
                          "kernel (Linux; root for tracefs)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--live"):
        return
    skip = pytest.mark.skip(reason="live kernel test: give --live to run it (make live)")
    for item in items:
        if "live" in item.keywords:
            item.add_marker(skip)
