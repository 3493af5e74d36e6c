"""Where parsers get their text: a file (read as UTF-8, errors as FILE:LINE:) or a string.

Every reader of captured text goes through here, so every parser reports a file it cannot
read the same way: ``ValueError("FILE:LINE: what")`` (``FILE: what`` when no line is to
blame, e.g. a file that is not gzip data).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import zlib
from pathlib import Path

# No /proc number has more digits (2**128 has 39); int() refuses more than 4,300 and is
# quadratic long before that, so a longer run of digits is an error, not a number.
MAX_DIGITS = 40
_LONG_NUMBER_RE = re.compile(f"[0-9]{{{MAX_DIGITS + 1}}}")


def long_number(line: str) -> str | None:
    """What is wrong with a line holding a run of more than MAX_DIGITS digits, else None."""
    if _LONG_NUMBER_RE.search(line):
        return f"a number of more than {MAX_DIGITS} digits"
    return None


def decode(data: bytes, label: str) -> str:
    """UTF-8 text of a file's bytes; ``LABEL:LINE: not UTF-8 text`` naming the first bad line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ValueError(f"{label}:{line}: not UTF-8 text ({exc.reason})") from None


def read_file(path: str | os.PathLike, label: str | None = None) -> str:
    """A capture file's text, gunzipped first when its name ends in ``.gz``."""
    path = Path(path)
    label = str(path) if label is None else label
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:   # BadGzipFile is an OSError
            raise ValueError(f"{label}: not gzip data ({exc})") from None
    return decode(data, label)


def read_json(path: str | os.PathLike) -> object:
    """A JSON file, its errors as ``FILE:LINE:`` (a too-long number, too deep nesting too)."""
    text = read_file(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except ValueError:   # int() refused a number of more than 4,300 digits
        found = _LONG_NUMBER_RE.search(text)
        line = text.count("\n", 0, found.start()) + 1 if found else 1
        raise ValueError(f"{path}:{line}: not valid JSON (a number of more than "
                         f"{MAX_DIGITS} digits)") from None
    except RecursionError:
        raise ValueError(f"{path}:1: not valid JSON (nested too deeply)") from None


def read_source(path_or_text: str | os.PathLike, name: str | None) -> tuple[str, str]:
    """Return (text, label): the one reader for every parser of captured text.

    A ``pathlib.Path`` (any ``os.PathLike``) is a file (gunzipped if it ends in ``.gz``).
    A ``str`` is text if it is empty or contains a newline, otherwise it is a file name.
    """
    if isinstance(path_or_text, os.PathLike) or (
        isinstance(path_or_text, str) and path_or_text and "\n" not in path_or_text
    ):
        label = name if name is not None else str(path_or_text)
        return read_file(path_or_text, label), label
    if isinstance(path_or_text, str):
        return path_or_text, (name if name is not None else "<text>")
    raise TypeError(f"expected a path or text, got {type(path_or_text).__name__}")
