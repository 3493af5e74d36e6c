"""Packaging consistency: pyproject.toml, environment.yml, CI and README agree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Conda-only entries of environment.yml that have no pyproject.toml counterpart.
CONDA_ONLY = {"python", "pip"}


def _strip_comment(line: str) -> str:
    # Good enough for environment.yml: no '#' inside values.
    return line.split("#", 1)[0].rstrip()


def parse_environment_yml(text: str) -> dict:
    """Parse the simple structure of environment.yml without PyYAML.

    Supports top-level ``key: value`` and ``key:`` followed by ``- item`` lists,
    and inside ``dependencies`` a ``- pip:`` entry whose items follow as a more
    deeply indented block list or as an inline ``["a", "b"]`` flow list.
    Returns e.g. ``{"name": "gpalloc", "channels": [...], "dependencies":
    ["numpy=1.0", ..., {"pip": ["-e .[test]"]}]}``.
    """
    result: dict = {}
    key: str | None = None
    pip_list: list[str] | None = None
    pip_indent = -1
    for raw in text.splitlines():
        line = _strip_comment(raw)
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        body = line.strip()
        if indent == 0:
            pip_list = None
            k, sep, v = body.partition(":")
            assert sep, f"unexpected top-level line: {raw!r}"
            key = k.strip()
            result[key] = v.strip() if v.strip() else []
            continue
        assert key is not None and body.startswith("- "), f"unexpected line: {raw!r}"
        item = body[2:].strip()
        if pip_list is not None and indent > pip_indent:
            pip_list.append(_unquote(item))
            continue
        pip_list = None
        m = re.fullmatch(r"pip:\s*(\[.*\])?", item)
        if m:
            if m.group(1):  # inline flow list: complete on this line
                inner = m.group(1)[1:-1]
                result[key].append({"pip": [_unquote(x) for x in inner.split(",") if x.strip()]})
            else:  # block list: items follow, indented deeper than this line
                pip_list, pip_indent = [], indent
                result[key].append({"pip": pip_list})
            continue
        result[key].append(_unquote(item))
    return result


def _unquote(s: str) -> str:
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    return s


def _split_conda(spec: str) -> tuple[str, str | None]:
    m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(?:=\s*([^=\s]+))?", spec)
    assert m, f"environment.yml: cannot parse conda spec {spec!r}"
    return m.group(1).lower(), m.group(2)


def _split_pep508(spec: str) -> tuple[str, str]:
    m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*==\s*([^\s;,]+)", spec)
    assert m, f"pyproject.toml: {spec!r} must be pinned as 'name==version'"
    return m.group(1).lower(), m.group(2)


@pytest.fixture(scope="module")
def pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


@pytest.fixture(scope="module")
def environment() -> dict:
    return parse_environment_yml((ROOT / "environment.yml").read_text())


def test_parser_handles_both_pip_forms() -> None:
    block = "name: x\ndependencies:\n  - a=1\n  - pip:\n      - -e .[test]\n"
    inline = "name: x\ndependencies:\n  - a=1\n  - pip: [\"-e .[test]\"]\n"
    expected = {"name": "x", "dependencies": ["a=1", {"pip": ["-e .[test]"]}]}
    assert parse_environment_yml(block) == expected
    assert parse_environment_yml(inline) == expected


def test_pyproject_and_environment_pin_the_same_versions(pyproject, environment) -> None:
    project = pyproject["project"]
    specs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        specs += extra
    pinned = dict(_split_pep508(s) for s in specs)
    assert len(pinned) == len(specs), "duplicate package in pyproject.toml"

    conda: dict[str, str | None] = {}
    for dep in environment["dependencies"]:
        if isinstance(dep, dict):
            continue
        name, version = _split_conda(dep)
        assert name not in conda, f"duplicate package {name} in environment.yml"
        conda[name] = version

    assert "conda-forge" in environment["channels"]
    assert CONDA_ONLY <= conda.keys(), "environment.yml must list python and pip"
    shared = {k: v for k, v in conda.items() if k not in CONDA_ONLY}
    assert shared == pinned


def test_environment_installs_project_with_every_extra(pyproject, environment) -> None:
    extras = ",".join(pyproject["project"]["optional-dependencies"])
    pip_entries = [d["pip"] for d in environment["dependencies"] if isinstance(d, dict)]
    assert pip_entries == [[f"-e .[{extras}]"]]


def test_extras_are_test_and_workshop(pyproject) -> None:
    """The Makefile's install levels name these extras: a new one must be wired there too."""
    assert list(pyproject["project"]["optional-dependencies"]) == ["test", "workshop"]


def test_environment_python_satisfies_requires_python(pyproject, environment) -> None:
    conda = dict(_split_conda(d) for d in environment["dependencies"] if isinstance(d, str))
    m = re.fullmatch(r">=\s*(\d+)\.(\d+)", pyproject["project"]["requires-python"])
    assert m, "requires-python is expected to be of the form '>=X.Y'"
    env_py = tuple(int(x) for x in conda["python"].split(".")[:2])
    assert env_py >= (int(m.group(1)), int(m.group(2)))


def test_ci_runs_make_test() -> None:
    script = ROOT / ".ci" / "run"
    lines = [_strip_comment(line).strip() for line in script.read_text().splitlines()]
    assert "make test" in lines, ".ci/run must call `make test`"
    assert script.stat().st_mode & 0o111, ".ci/run must be executable"


def test_readme_documents_make_targets() -> None:
    readme = (ROOT / "README.md").read_text()
    for target in ("make lab", "make test", "make dashboard", "make site"):
        assert target in readme, target
