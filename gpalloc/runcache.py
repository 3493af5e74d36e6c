"""Heavy experiment runs computed once per parameters, so a notebook's "Run All" stays short.

``cached_run(name, seed, node_mem, **workload)`` returns what
``run_experiment(name, seed, cal=Calibration(node_mem=...), machines={}, **workload)``
gives — the result dict and, per run label, the finished machine — except that each
machine comes back as a :class:`MachineSnapshot`: the views of it the notebooks draw
(``direct_map_regions``, ``grouped_block_regions``, ``pagetypeinfo``, ``meminfo``,
``stats``, ``buddyinfo``, ``config``), taken when the run ended.

Where it comes from, first hit wins:

1. this process's memory (a re-run cell costs nothing);
2. a committed file ``data/results/runs/<key>.json`` written by :func:`write_cached`
   (``python -m gpalloc.runcache``) — used only if its ``model`` fingerprint is the
   fingerprint of the model's source as it is now (:func:`model_fingerprint`), so an
   edited model never shows stale numbers, it recomputes;
3. run_experiment() itself.

``cached_validation(seeds)`` does the same for ``gpalloc.validate.validate()`` (notebook 08's
model-against-kernel table), keyed also by the captures it reads.

tests/test_runcache.py checks that a snapshot shows what its machine shows and that a
committed file is what the model computes.
"""

import copy
import hashlib
import json
import sys
from pathlib import Path

from .experiments import default_jobs, run_experiment
from .snapshot import MachineSnapshot
from .validate import validate
from .workloads import scenario

CACHE_DIR = scenario.DATA / "results" / "runs"
#: the runs the notebooks use (notebook 05): (scenario, seed, node_mem, workload options)
NOTEBOOK_RUNS = (("fedora-bpf", 0, None, {}), ("fedora-bpf", 0, "64G", {}),
                 ("modules", 0, None, {"lsmod": "default"}))
#: the model seeds of the validation report notebook 08 prints (gpalloc.validate)
VALIDATION_SEEDS = (0,)
_memory = {}


def _default_lsmod(kw):
    """lsmod=scenario.DEFAULT_LSMOD (a notebook's spelling) is lsmod="default"."""
    if "lsmod" in kw and str(kw["lsmod"]) == str(scenario.DEFAULT_LSMOD):
        kw = {**kw, "lsmod": "default"}
    return kw


def _workload(kw):
    kw = dict(kw)
    if kw.get("lsmod") == "default":
        kw["lsmod"] = scenario.DEFAULT_LSMOD
    return kw


def cache_key(name, seed=0, node_mem=None, **kw):
    """The file name (without .json) of a run's parameters."""
    parts = [name, f"seed{seed}", node_mem or scenario.Calibration().node_mem]
    parts += [f"{key}={Path(str(v)).name}" for key, v in sorted(kw.items())]
    return "-".join(parts).replace("/", "_")


def model_fingerprint():
    """SHA-256 over the source of the model (every gpalloc/*.py but the views and widgets)
    and the calibration data the runs read: a committed run is current only with it."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    skip = {"runcache.py", "widgets.py", "viz.py", "cli.py", "quiz.py", "tables.py",
            "validate.py"}   # validate.py reads runs, it does not make them: see below
    files = sorted(p for p in root.rglob("*.py") if p.name not in skip and "live" not in p.parts)
    files += [scenario.DEFAULT_LSMOD, scenario.DEFAULT_PROFILE]
    for path in files:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def compute(name, seed=0, node_mem=None, jobs=None, **kw):
    """run_experiment() of these parameters, its machines as snapshots (no cache).

    The kernels run in worker processes (``jobs``, default experiments.default_jobs()),
    which hand back their machines' snapshots; with one job they run here.
    """
    cal = scenario.Calibration() if node_mem is None else scenario.Calibration(node_mem=node_mem)
    machines = {}
    result = run_experiment(name, seed=seed, cal=cal, machines=machines,
                            jobs=default_jobs() if jobs is None else jobs, **_workload(kw))
    return result, {label: m if isinstance(m, MachineSnapshot) else MachineSnapshot.of(m)
                    for label, m in machines.items()}


def _from_file(path, kw):
    data = json.loads(path.read_text())
    if data.get("model") != model_fingerprint():
        return None
    result = data["result"]
    for run in result["runs"].values():   # run_experiment's tuples
        run["timeline"] = [tuple(step) for step in run["timeline"]]
    if "lsmod" in kw:     # this checkout's path, as run_experiment gives it
        result["workload"]["lsmod"] = str(_workload(kw)["lsmod"])
    return result, {label: MachineSnapshot(v) for label, v in data["machines"].items()}


def cached_run(name, seed=0, node_mem=None, **kw):
    """(result, {run label: MachineSnapshot}) of run_experiment with these parameters.

    From memory, else a current committed file, else computed (and kept in memory).
    ``lsmod="default"`` names scenario.DEFAULT_LSMOD.  The result is a fresh copy each
    call, so a notebook may change it.
    """
    kw = _default_lsmod(kw)
    key = cache_key(name, seed, node_mem, **kw)
    if key not in _memory:
        path = CACHE_DIR / f"{key}.json"
        got = _from_file(path, kw) if path.is_file() else None
        _memory[key] = got if got is not None else compute(name, seed, node_mem, **kw)
    result, snapshots = _memory[key]
    return copy.deepcopy(result), dict(snapshots)


def validation_fingerprint():
    """SHA-256 over what `gpalloc validate` reads besides the model: validate.py itself,
    gpalloc/live/ (captures, boot history) and every file under data/measurements/, on top
    of model_fingerprint()."""
    h = hashlib.sha256(model_fingerprint().encode())
    root = Path(__file__).resolve().parent
    files = [root / "validate.py", *sorted((root / "live").rglob("*.py"))] + sorted(
        p for p in (scenario.DATA / "measurements").rglob("*") if p.is_file())
    for path in files:
        h.update(str(path.relative_to(root.parent)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _validation_path(seeds, out=None):
    return Path(out or CACHE_DIR) / f"validate-seeds{'_'.join(map(str, seeds))}.json"


def cached_validation(seeds=VALIDATION_SEEDS):
    """gpalloc.validate.validate(seeds=seeds) of the validation set, JSON-shaped: from
    memory, else a current committed file, else computed (notebook 08 prints it)."""
    key = ("validate", tuple(seeds))
    if key not in _memory:
        path = _validation_path(seeds)
        data = json.loads(path.read_text()) if path.is_file() else {}
        _memory[key] = data["result"] if data.get("model") == validation_fingerprint() else \
            json.loads(json.dumps(validate(seeds=tuple(seeds))))
    return copy.deepcopy(_memory[key])


def write_validation(seeds=VALIDATION_SEEDS, out=CACHE_DIR):
    """Compute the validation report and write data/results/runs/validate-seeds<N>.json."""
    path = _validation_path(seeds, out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"model": validation_fingerprint(),
                                "result": validate(seeds=tuple(seeds))},
                               separators=(",", ":")) + "\n")
    return path


def write_cached(runs=NOTEBOOK_RUNS, out=CACHE_DIR):
    """Compute each run and write data/results/runs/<key>.json (the committed cache)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, seed, node_mem, kw in runs:
        result, snapshots = compute(name, seed, node_mem, **kw)
        path = out / f"{cache_key(name, seed, node_mem, **kw)}.json"
        path.write_text(json.dumps({"model": model_fingerprint(), "result": result,
                                    "machines": {k: s._views for k, s in snapshots.items()}},
                                   separators=(",", ":")) + "\n")
        paths.append(path)
    return paths


if __name__ == "__main__":   # python -m gpalloc.runcache: regenerate the committed runs
    for p in [*write_cached(), write_validation()]:
        print(p, file=sys.stderr)
