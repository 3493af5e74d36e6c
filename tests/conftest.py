"""Shared pytest configuration for the gpalloc test suite."""

import os

import pytest

# Headless plotting: tests must never try to open a GUI window.
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_addoption(parser):
    parser.addoption("--live", action="store_true", default=False,
                     help="run the `live` tests, which load BPF filters into the running "
                          "kernel (Linux; root for tracefs)")
    parser.addoption("--student-edition", action="store_true", default=False,
                     help="run the `student` tests: the student edition of every notebook, "
                          "top to bottom, and every exercise's Reveal (make student-test)")


def pytest_collection_modifyitems(config, items):
    gated = {"live": ("--live", "live kernel test: give --live to run it (make live)"),
             "student": ("--student-edition", "runs the whole course: give --student-edition "
                                              "(make student-test)")}
    for marker, (option, reason) in gated.items():
        if config.getoption(option):
            continue
        skip = pytest.mark.skip(reason=reason)
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)
