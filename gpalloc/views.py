"""Read-only summaries of kernel state for plots (the data behind gpalloc.viz)."""

from .mm.page import PAGES_PER_2M

REGION_1G, REGION_2M, REGION_BOOT_4K, REGION_SPLIT = 0, 1, 2, 3


def direct_map_regions(k):
    """Per 2 MiB region: inside a 1G entry, a 2M entry, 4K since boot, or split since boot."""
    import numpy as np  # here, not at import: the model runs without numpy (JupyterLite)

    dm = k.dmap
    n = k.max_pfn // PAGES_PER_2M
    out = np.full(n, REGION_2M, dtype=np.uint8)
    for g in dm.gb:
        out[g * 512:(g + 1) * 512] = REGION_1G
    boot = k.boot_4k_regions
    for p in dm.pte:
        out[p] = REGION_BOOT_4K if p in boot else REGION_SPLIT
    return out
