"""Where gpalloc's data files are: the wheel's gpalloc/_data, else the checkout's data/.

The repository's top-level data/ is the source of truth; the wheel carries a copy of it as
gpalloc/_data (pyproject.toml, hatch force-include), so an installed gpalloc (pip install of
the wheel, JupyterLite's piplite) reads the same files as a source checkout or editable install.
"""

from importlib.resources import files
from pathlib import Path

PACKAGED = "_data"


def data_root() -> Path:
    """The folder holding lsmod/, machines/, results/, … (packaged copy first)."""
    packaged = files(__package__) / PACKAGED
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "data"
