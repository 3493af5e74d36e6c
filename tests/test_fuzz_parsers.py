"""Property-based fuzzing of every parser of text from strangers' machines (issue 15).

Each parser gets real captures (data/machines/, data/measurements/, data/lsmod/) mutated —
truncated, lines dropped, doubled and swapped, tokens replaced by huge numbers, odd Unicode
(NUL, U+2028, BOM, non-ASCII digits, zero-width space), binary bytes and very long lines —
and purely random text, both as text and as a file.  Whatever comes in, a parser returns
or raises the project's parse error: a ``ValueError`` whose message starts with the file's
label and, for a line, its number (``FILE:LINE: what``; ``FILE: what`` for a whole-file
problem such as "no lines found", or a JSON key in the BPF profile).  Never another
exception, never a hang: every case runs under a SIGALRM bound and its time is checked.

Budgets: tests/hypothesis_profile.py (CI here; GPALLOC_TEST_PROFILE=long for make fuzz-long).
Each test prints how many examples it ran (``pytest -rP`` shows them).
"""

import contextlib
import gzip
import json
import re
import shutil
import signal
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis_profile import budget, profile

from gpalloc import procfs
from gpalloc.live.capture import read_capture
from gpalloc.workloads.bpf_profile import parse_bpf_profile
from gpalloc.workloads.lsmod import parse_modules

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
CAPTURE = DATA / "measurements" / "b1-00-idle"
TRACED = DATA / "measurements" / "b1-06-filters-n300-k100"   # has a plain trace.csv
EXAMPLES = budget(ci=300, long=20_000)
CAPTURE_EXAMPLES = budget(ci=100, long=5_000)
SECONDS = 5.0            # a case slower than this fails (typical: a few ms)
ALARM = 20               # … and one that never returns is stopped here
SEED_LINES = 400         # seeds are cut to this many lines: every example parses a whole file


class Hang(BaseException):
    """Raised by SIGALRM inside a parser (a BaseException: no ``except Exception`` eats it)."""


@contextlib.contextmanager
def time_bound():
    """Fail a case that takes longer than SECONDS, and stop one that hangs at ALARM."""
    def alarm(signum, frame):
        raise Hang(f"no result after {ALARM} s")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(ALARM)
    start = time.monotonic()
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert time.monotonic() - start < SECONDS, "parser took too long"


def _read(path):
    data = path.read_bytes()
    text = (gzip.decompress(data) if path.suffix == ".gz" else data).decode()
    return "\n".join(text.split("\n")[:SEED_LINES])


def _seeds(*patterns):
    paths = sorted({p for pattern in patterns for p in DATA.glob(pattern)})
    assert paths, patterns
    return [_read(p) for p in paths]


PROCFS = {   # parser → seeds (real files it reads)
    "meminfo": (procfs.parse_meminfo, ("machines/*/meminfo.txt",
                                       "measurements/b1-0[05]*/phases/*/meminfo.txt")),
    "buddyinfo": (procfs.parse_buddyinfo, ("machines/*/buddyinfo.txt",
                                           "measurements/b1-0[05]*/phases/*/buddyinfo.txt")),
    "pagetypeinfo": (procfs.parse_pagetypeinfo, (
        "machines/*/pagetypeinfo.txt", "measurements/b1-0[05]*/phases/*/pagetypeinfo.txt")),
    "zoneinfo": (procfs.parse_zoneinfo, ("machines/*/zoneinfo.txt",
                                         "measurements/b1-00*/phases/*/zoneinfo.txt")),
    "vmallocinfo": (procfs.parse_vmallocinfo, (
        "machines/*/vmallocinfo.txt", "measurements/b1-00*/phases/*/vmallocinfo*.txt")),
    "vmstat": (procfs.parse_vmstat, ("measurements/b1-0[05]*/phases/*/vmstat.txt",)),
    "slabinfo": (procfs.parse_slabinfo, ("measurements/b1-00*/phases/*/slabinfo.txt.gz",)),
    "modules": (parse_modules, ("machines/*/modules.txt", "lsmod/*-modules.txt")),
    "lsmod": (parse_modules, ("machines/*/lsmod.txt", "lsmod/*-lsmod.txt")),
}

ODD = ["\x00", "\r", "\r\n", "\u2028", "\x85", "\x0c", "\ufeff", "\u200b", "٣", "²", "𝟗",
       "é", "\t", " ", "-", "+", "0x", ":", "=", ",", "(", ")", "[", "]", ">", "#", "_", ".",
       "Node 0, zone", "pages free", "per-node stats", "pagesets", "[permanent],",
       "slabinfo - version: 2.1", "Module Size Used by"]
HUGE = ["9" * 5000, "18446744073709551616", "-1", "-0", "0", "00", "99999999999999999999",
        "1e9", "0x" + "f" * 40, "nan", "inf", "1_000", "0x", "-", ">100000", "۱۲۳"]
LONG_LINE = ["A" * 200_000, "1 " * 100_000, "Node 0, zone Normal" + " 1" * 50_000,
             "0xffff-0xffff 4096 " + "vmalloc " * 20_000]
snippets = st.one_of(st.sampled_from(ODD), st.sampled_from(HUGE), st.text(max_size=30),
                     st.sampled_from(LONG_LINE))
_TOKEN_RE = re.compile(r"\S+")


@st.composite
def mutate(draw, text):
    """One mutation of text: truncate, cut, insert, replace a token, or shuffle lines."""
    n = len(text)
    i = draw(st.integers(0, n))
    op = draw(st.sampled_from(["truncate", "cut", "insert", "token", "token", "token",
                               "line_dup", "line_swap", "line_drop", "digits"]))
    if op == "truncate":
        return text[:i]
    if op == "cut":
        return text[:i] + text[draw(st.integers(i, n)):]
    if op == "insert":
        return text[:i] + draw(snippets) + text[i:]
    if op == "digits":   # an ASCII digit → a non-ASCII digit str.isdigit() accepts
        found = [m.start() for m in re.finditer(r"[0-9]", text)]
        if not found:
            return text
        j = draw(st.sampled_from(found))
        return text[:j] + draw(st.sampled_from(["٣", "²", "𝟗", "۱"])) + text[j + 1:]
    if op == "token":
        tokens = list(_TOKEN_RE.finditer(text))
        if not tokens:
            return text + draw(snippets)
        m = draw(st.sampled_from(tokens))
        return text[:m.start()] + draw(snippets) + text[m.end():]
    lines = text.split("\n")
    a, b = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
    if op == "line_dup":
        lines.insert(b, lines[a])
    elif op == "line_swap":
        lines[a], lines[b] = lines[b], lines[a]
    else:
        del lines[a]
    return "\n".join(lines)


@st.composite
def inputs(draw, seeds):
    """A mutated seed (1–4 mutations), or random text, or random lines of seed tokens."""
    kind = draw(st.sampled_from(["mutated"] * 6 + ["random", "tokens"]))
    if kind == "random":
        return draw(st.text(max_size=500))
    if kind == "tokens":
        vocab = sorted({t for s in seeds for t in s.split()[:2000]})
        line = st.lists(st.sampled_from(vocab), min_size=0, max_size=12).map(" ".join)
        return "\n".join(draw(st.lists(line, max_size=20)))
    text = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(1, 4))):
        text = draw(mutate(text))
    return text


def to_bytes(draw, text):
    """The text as a file's bytes: lone surrogates become invalid UTF-8; maybe binary junk."""
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        i = draw(st.integers(0, len(data)))
        data = data[:i] + draw(st.binary(min_size=1, max_size=40)) + data[i:]
    return data


def assert_parse_error(err, label):
    """The project's parse error: ValueError, ``LABEL:LINE: what`` or ``LABEL: what``."""
    assert type(err) is ValueError, f"{type(err).__name__}: {err}"
    message = str(err)
    assert message.startswith(f"{label}:"), message[:300]
    rest = message[len(label) + 1:]
    assert re.match(r"(?:[0-9]+:)? \S", rest), message[:300]
    if re.match(r"[0-9]+:", rest):
        assert int(rest.split(":")[0]) >= 1


def run_parser(parse, source, label):
    """Parse under the time bound; a ValueError must be the project's parse error.

    Returns True when the input parsed (for the counts each test prints).
    """
    with time_bound():
        try:
            parse(source)
        except ValueError as err:
            assert_parse_error(err, label)
            return False
    return True


def _fuzz(parse, seeds, tmp_path, n):
    """Fuzz one parser with n examples (text and file); returns (examples, inputs parsed)."""
    ran = parsed = 0
    path = tmp_path / "capture.txt"

    @profile(max_examples=n)
    @given(st.data())
    def case(data):
        nonlocal ran, parsed
        ran += 1
        text = data.draw(inputs(seeds))
        # As text: the documented rule is "a str containing a newline is the text".
        parsed += run_parser(parse, text if "\n" in text else text + "\n", "<text>")
        path.write_bytes(to_bytes(data.draw, text))
        parsed += run_parser(parse, path, str(path))

    case()
    return ran, parsed


@pytest.mark.parametrize("name", PROCFS)
def test_fuzz_parser(name, tmp_path):
    parse, patterns = PROCFS[name]
    seeds = _seeds(*patterns)
    for seed in seeds:   # the seeds themselves parse
        parse(seed + "\n")
    ran, parsed = _fuzz(parse, seeds, tmp_path, EXAMPLES)
    print(f"fuzz {name}: {ran} examples ({2 * ran} inputs, {parsed} parsed, the rest "
          "refused with the parse error)")
    assert ran >= EXAMPLES


# ---------------------------------------------------------------- the BPF profile (JSON)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8)
    | st.sampled_from([10**30, "²", "٣", "1", 0, -1, 1.5]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["1", "²", "x", "value", "range", "source"]) | st.text(max_size=4),
        inner, max_size=3),
    max_leaves=8)


@st.composite
def profile_docs(draw, doc):
    """The profile with one value replaced or one key dropped, somewhere in its tree."""
    doc = json.loads(json.dumps(doc))
    node = doc
    while isinstance(node, (dict, list)) and node and draw(st.integers(0, 3)):
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        key = draw(st.sampled_from(keys))
        if not isinstance(node[key], (dict, list)) or not node[key]:
            break
        node = node[key]
    if isinstance(node, (dict, list)) and node:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        key = draw(st.sampled_from(keys))
        if draw(st.booleans()):
            node[key] = draw(json_values)
        elif isinstance(node, dict):
            del node[key]
    return doc


def test_fuzz_bpf_profile(tmp_path):
    real = DATA / "bpf_selftests_v5_11.json"
    parse_bpf_profile(real)
    text, doc = real.read_text(), json.loads(real.read_text())
    path = tmp_path / "profile.json"
    ran = parsed = 0

    @profile(max_examples=EXAMPLES)
    @given(st.data())
    def case(data):
        nonlocal ran, parsed
        ran += 1
        if data.draw(st.booleans()):   # a tree mutation: valid JSON, wrong contents
            body = json.dumps(data.draw(profile_docs(doc)), indent=1)
        else:                          # a text mutation: often not JSON at all
            body = text
            for _ in range(data.draw(st.integers(1, 3))):
                body = data.draw(mutate(body))
        path.write_bytes(to_bytes(data.draw, body))
        parsed += run_parser(parse_bpf_profile, path, str(path))

    case()
    print(f"fuzz bpf_profile: {ran} examples ({parsed} parsed)")
    assert ran >= EXAMPLES


# ---------------------------------------------------------------- measurement captures


def _capture_files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("source", [CAPTURE, TRACED], ids=["b1-00-idle", "b1-06-traced"])
def test_fuzz_read_capture(source, tmp_path):
    """One file of a real capture mutated (gzip files: their text, or the bytes themselves)."""
    folder = tmp_path / source.name
    shutil.copytree(source, folder)
    read_capture(folder)
    files = [f for f in _capture_files(folder) if f.name != "dmesg.txt"]   # never read
    originals = {f: (folder / f).read_bytes() for f in files}
    ran = parsed = 0

    @profile(max_examples=CAPTURE_EXAMPLES)
    @given(st.data())
    def case(data):
        nonlocal ran, parsed
        ran += 1
        rel = data.draw(st.sampled_from(files))
        path, raw = folder / rel, originals[rel]
        gz = rel.suffix == ".gz"
        if gz and data.draw(st.booleans()):
            new = data.draw(st.binary(max_size=64)) + raw[data.draw(st.integers(0, len(raw))):]
        else:
            text = (gzip.decompress(raw) if gz else raw).decode()
            for _ in range(data.draw(st.integers(1, 3))):
                text = data.draw(mutate(text))
            new = to_bytes(data.draw, text)
            new = gzip.compress(new, mtime=0) if gz else new
        path.write_bytes(new)
        try:
            parsed += run_parser(read_capture, folder, str(path))
        finally:
            path.write_bytes(raw)

    case()
    print(f"fuzz read_capture {source.name}: {ran} examples ({parsed} parsed)")
    assert ran >= CAPTURE_EXAMPLES


# ---------------------------------------------------------------- what the fuzzing found
# Each bug the fuzzing found, as a plain example: the parse error it now gives.


def _one_phase(tmp_path):
    folder = tmp_path / CAPTURE.name
    shutil.copytree(CAPTURE, folder)
    return folder, folder / "phases" / "00-idle"


@pytest.mark.parametrize("parse, text, message", [
    # str.isdigit() takes '²', int() does not
    (procfs.parse_buddyinfo, "Node 0, zone DMA ² 1\n",
     "<text>:1: free count '²' is not a non-negative integer"),
    (procfs.parse_slabinfo, "slabinfo - version: 2.1\nx ² 0 1 1 1 : tunables 0 0 0 : "
                            "slabdata 0 0 0\n", "<text>:2: cache 'x': expected 11"),
    # int() refuses more than 4,300 digits
    (parse_modules, f"snd 1{'0' * 5000} 0\n", "<text>:1: a number of more than 40 digits"),
    (procfs.parse_meminfo, f"MemTotal: {'9' * 5000} kB\n",
     "<text>:1: a number of more than 40 digits"),
], ids=["buddyinfo-digit", "slabinfo-digit", "lsmod-huge", "meminfo-huge"])
def test_found_bad_numbers(parse, text, message):
    with pytest.raises(ValueError) as exc:
        parse(text)
    assert str(exc.value).startswith(message)


def test_found_one_line_capture_file_is_not_a_file_name(tmp_path):
    """A capture file of one line without a newline was read as a file *name*."""
    folder, phase = _one_phase(tmp_path)
    (phase / "vmstat.txt").write_text("nr_free_pages 12")
    assert read_capture(folder)["phases"][0]["vmstat"] == {"nr_free_pages": 12}


@pytest.mark.parametrize("name, data, message", [
    ("slabinfo.txt.gz", b"not gzip", ":"),                     # gzip.BadGzipFile
    ("meminfo.txt", b"MemTotal: 1 kB\n\xff\n", ":2: not UTF-8 text"),
    ("vmallocinfo-callers.csv", b"caller,areas,pages,bytes\n" + b"x" * 200_000 + b",1,1,1\n",
     ":2: field larger than field limit"),
    ("phase.json", b"[1, 2]", ":1: expected a JSON object"),
    ("phase.json", b'{"a": ' + b"9" * 5000 + b"}", ":1: not valid JSON (a number of more"),
    ("sys_vm.txt", b"\xc3", ":1: not UTF-8 text"),
], ids=["gzip", "utf8", "csv-field", "json-list", "json-huge", "sys_vm-utf8"])
def test_found_capture_file_errors(tmp_path, name, data, message):
    folder, phase = _one_phase(tmp_path)
    (phase / name).write_bytes(data)
    with pytest.raises(ValueError) as exc:
        read_capture(folder)
    assert str(exc.value).startswith(f"{phase / name}{message}"), str(exc.value)


@pytest.mark.parametrize("edit, message", [
    (lambda doc: doc["jit_bytes_per_insn"].update(imm=float("nan")),
     "key 'jit_bytes_per_insn.imm': must be a positive number, got nan"),
    (lambda doc: doc["test_tag"]["pages_histogram"].update({"²": 1}),
     "key 'test_tag.pages_histogram.²': keys must be whole numbers"),
], ids=["nan", "key-digit"])
def test_found_bpf_profile_errors(tmp_path, edit, message):
    doc = json.loads((DATA / "bpf_selftests_v5_11.json").read_text())
    edit(doc)
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError) as exc:
        parse_bpf_profile(path)
    assert str(exc.value) == f"{path}: {message}"
