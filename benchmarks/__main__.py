"""``python -m benchmarks [NAME ...]`` (``make bench``): run the registered benchmarks."""

import sys

from . import main

sys.exit(main())
