"""The command line's one error style: ``gpalloc: error: --flag: what is wrong (got VALUE)``.

One line, status 2, for every bad value and every unreadable file, whoever finds it:
argparse (a type or a choice), the CLI, or the model deep down.  The model's errors name
the Python parameter (``node_mem: must be ...``); :data:`PARAM_FLAGS` maps those names to
the flag the user typed, here and nowhere else.  A file's errors name the flag that gave
the file, then ``FILE:LINE:`` as the parsers write it.  argparse's usage block is kept
for a command line it cannot read at all (an unknown option, a missing argument).
"""

from __future__ import annotations

import argparse
import re
import sys

# Model parameter (the prefix of its ValueError) → the flags that set it, first match wins:
# ``node_mem`` is --node-mem for ``experiment`` and --sizes for ``ram-sweep``.
PARAM_FLAGS = {
    "node_mem": ("--node-mem", "--sizes"),
    "size": ("--sizes",),
    "nodes": ("--nodes",),
    "seed": ("--seed",),
    "level": ("--pressure",),
    "design": ("--kernel",),
}

_ARGPARSE_RE = re.compile(r"argument (?:\S+/)?(?P<flag>\S+): (?P<msg>.*)\Z", re.S)
_CHOICE_RE = re.compile(r"invalid choice: (?P<value>.*) \(choose from (?P<choices>.*)\)\Z", re.S)
_TYPE_RE = re.compile(r"invalid (?P<type>\w+) value: (?P<value>.*)\Z", re.S)
_TYPE_WORDS = {"int": "a whole number", "float": "a number"}
_NO_VALUE_RE = re.compile(r"expected (?:one|at least one|at most one|\d+) arguments?\Z")
_MISSING_RE = re.compile(r"the following arguments are required: (?P<names>.*)\Z", re.S)
_PREFIX_RE = re.compile(r"(?P<name>--?[A-Za-z][\w-]*|[a-z_][a-z0-9_]*)(?: (?P<value>[^:\s]+))?: "
                        r"(?P<msg>.*)\Z", re.S)
_GOT_RE = re.compile(r"(?P<msg>.*?),? got (?P<value>[^,;]+)\Z", re.S)


class UsageError(ValueError):
    """A bad command-line value found by the CLI itself: flag, what is wrong, the value."""

    def __init__(self, flag, problem, value):
        super().__init__(line(flag, problem, value))


def line(flag, problem, value):
    """``--flag: problem (got VALUE)``, the one shape of every value error."""
    return f"{flag}: {got(problem, value)}"


def got(problem, value):
    """``problem (got VALUE)``: what an argparse type function raises."""
    return f"{problem} (got {_shown(value)})"


def _shown(value):
    """A value as the user typed it: no Python quotes around a plain string."""
    text = str(value).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    return text if text else "''"


class Parser(argparse.ArgumentParser):
    """argparse with the one-line error for bad values (subparsers inherit it)."""

    def error(self, message):
        """One line and status 2; argparse's usage block for an unknown option only."""
        found = _ARGPARSE_RE.match(message)
        if missing := _MISSING_RE.match(message):
            self.exit(2, f"gpalloc: error: {missing['names'].split(', ')[0]}: required "
                         f"(got nothing; see {self.prog} -h)\n")
        if found is None:
            super().error(message)
        flag, msg = found["flag"], found["msg"]
        if _NO_VALUE_RE.match(msg):   # "--pages" at the end of the line, no value
            text = line(flag, "needs a value", "nothing")
        elif choice := _CHOICE_RE.match(msg):
            choices = choice["choices"].replace("'", "")
            text = line(flag, f"not one of {choices}", choice["value"])
        elif typed := _TYPE_RE.match(msg):
            text = line(flag, f"expected {_TYPE_WORDS.get(typed['type'], typed['type'])}",
                        typed["value"])
        else:
            text = f"{flag}: {msg}"
        self.exit(2, f"gpalloc: error: {text}\n")


def _flag_of(args, dest):
    return "--" + dest.replace("_", "-")


def _file_flag(args, filename):
    """The flag whose value is this file name (e.g. --lsmod), or None."""
    for dest, value in vars(args).items():
        if isinstance(value, str) and value and str(filename) in (value, value.rstrip("/")):
            return _flag_of(args, dest)
    return None


def error_line(err, args):
    """The one line (without ``gpalloc: error: ``) for an error a command raised."""
    if isinstance(err, UsageError):
        return str(err)
    if isinstance(err, OSError) and err.filename is not None:
        flag = _file_flag(args, err.filename)
        problem = (err.strerror or str(err)).lower()
        return line(flag, problem, err.filename) if flag else f"{err.filename}: {problem}"
    text = str(err)
    for dest, value in vars(args).items():   # FILE:LINE: from a parser of a file we were given
        if isinstance(value, str) and value and text.startswith(f"{value}:"):
            return f"{_flag_of(args, dest)}: {text}"
    found = _PREFIX_RE.match(text)
    if found is None:
        return text
    name, value, msg = found["name"], found["value"], found["msg"]
    if name.startswith("-"):
        if value is None:   # already names its flag, and is not about a value (--timeout)
            return text
        flag = name
    else:
        flags = [f for f in PARAM_FLAGS.get(name, ()) if f[2:].replace("-", "_") in vars(args)]
        if not flags:
            return text
        flag = flags[0]
    if value is None and (got := _GOT_RE.match(msg)):
        msg, value = got["msg"], got["value"]
    if value is None:
        typed = getattr(args, flag[2:].replace("-", "_"), None)
        if typed is None:
            return f"{flag}: {msg}"
        value = ",".join(typed) if isinstance(typed, (list, tuple)) else typed
    return line(flag, msg, value)


def report(err, args):
    """Print the one line to stderr; returns the exit status (2)."""
    print(f"gpalloc: error: {error_line(err, args)}", file=sys.stderr)
    return 2
