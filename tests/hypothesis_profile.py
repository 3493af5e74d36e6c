"""The hypothesis budgets of the fuzz and stateful tests: CI (make test) or long.

``GPALLOC_TEST_PROFILE=long`` (``make fuzz-long``, ``make stateful-long``) runs the long
budgets, randomised (a new seed each run, failures kept in .hypothesis/); CI runs the
short ones, derandomised, so a CI failure replays exactly.
"""

import os

from hypothesis import HealthCheck, settings

LONG = os.environ.get("GPALLOC_TEST_PROFILE", "ci") == "long"


def budget(ci, long):
    """The CI or the long number, by GPALLOC_TEST_PROFILE."""
    return long if LONG else ci


def profile(**kwargs):
    """hypothesis settings for these tests: no deadline (each case bounds its own time)."""
    base = dict(deadline=None, derandomize=not LONG, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large])
    if not LONG:
        base["database"] = None
    return settings(**{**base, **kwargs})
