"""Where parsers get their text: a file (read as UTF-8, errors as FILE:LINE:) or a string."""

from __future__ import annotations

import os
from pathlib import Path


def read_source(path_or_text: str | os.PathLike, name: str | None) -> tuple[str, str]:
    """Return (text, label): the one reader for every parser of captured text.

    A ``pathlib.Path`` (any ``os.PathLike``) is a file.  A ``str`` is text if it is empty or
    contains a newline, otherwise it is a file name.
    """
    if isinstance(path_or_text, os.PathLike) or (
        isinstance(path_or_text, str) and path_or_text and "\n" not in path_or_text
    ):
        path = Path(path_or_text)
        label = name if name is not None else str(path_or_text)
        data = path.read_bytes()
        try:
            return data.decode("utf-8"), label
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise ValueError(f"{label}:{line}: not UTF-8 text ({exc.reason})") from None
    if isinstance(path_or_text, str):
        return path_or_text, (name if name is not None else "<text>")
    raise TypeError(f"expected a path or text, got {type(path_or_text).__name__}")
