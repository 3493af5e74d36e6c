"""A finished Machine's views, frozen and picklable (issue 13).

What crosses a process boundary (gpalloc.experiments' worker processes) or a file
(gpalloc.runcache) instead of a Machine, whose state holds closures and is large.
"""

import copy
import json


class MachineSnapshot:
    """A finished Machine's views, frozen: what viz.direct_map_picture and the notebooks read."""

    def __init__(self, views):
        self._views = views

    @classmethod
    def of(cls, m):
        """Take the views of a Machine now."""
        return cls({"direct_map_regions": [int(c) for c in m.direct_map_regions()],
                    "grouped_block_regions": list(m.grouped_block_regions()),
                    "pagetypeinfo": [[nid, zone, counts]
                                     for (nid, zone), counts in m.pagetypeinfo().items()],
                    "buddyinfo": [[nid, zone, counts]
                                  for (nid, zone), counts in m.buddyinfo().items()],
                    "meminfo": dict(m.meminfo()), "stats": plain(m.stats()),
                    "pools": plain(m.pools()), "config": plain(m.config)})

    def pools(self):
        """Machine.pools() when the run ended: the design's own memory pools."""
        return copy.deepcopy(self._views["pools"])

    def direct_map_regions(self):
        """Machine.direct_map_regions() when the run ended (a numpy uint8 array)."""
        import numpy as np
        return np.asarray(self._views["direct_map_regions"], dtype=np.uint8)

    def grouped_block_regions(self):
        """Machine.grouped_block_regions() when the run ended."""
        return list(self._views["grouped_block_regions"])

    def pagetypeinfo(self):
        """Machine.pagetypeinfo() when the run ended."""
        return {(nid, zone): dict(counts) for nid, zone, counts in self._views["pagetypeinfo"]}

    def buddyinfo(self):
        """Machine.buddyinfo() when the run ended."""
        return {(nid, zone): list(counts) for nid, zone, counts in self._views["buddyinfo"]}

    def meminfo(self):
        """Machine.meminfo() when the run ended."""
        return dict(self._views["meminfo"])

    def stats(self):
        """Machine.stats() when the run ended."""
        return copy.deepcopy(self._views["stats"])

    @property
    def config(self):
        """Machine.config."""
        return copy.deepcopy(self._views["config"])

    def __repr__(self):
        return f"<MachineSnapshot DirectMap4k={self._views['meminfo'].get('DirectMap4k')} kB>"


def plain(value):
    """JSON's view of a value (tuples → lists), so memory and file give the same thing."""
    return json.loads(json.dumps(value))
