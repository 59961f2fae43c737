"""Runs inside the dry-run kernel after each step: snapshot the namespace, diff, report.

Strong references to the previous snapshot's values are kept until the next probe, so an id
seen twice is the same object (ids of freed objects get reused). Import-light on purpose: it
lives in the user's kernel.
"""

from __future__ import annotations

import dis
import importlib
import inspect
import json
import math
import os
import sys
import types
from collections.abc import Callable
from typing import Any

from kale_trace.tracer import file_watch, process_state, read_tracking
from kale_trace.tracer.fingerprint import fingerprint

_IPYTHON_NAMES = {
    "_", "__", "___", "_i", "_ii", "_iii", "_oh", "_ih", "_dh", "In", "Out", "get_ipython",
    "exit", "quit", "__builtins__", "__name__", "__doc__", "__package__", "__loader__",
    "__spec__", "__builtin__", "_sh",
}  # fmt: skip
_UNMOVABLE_MODULES = {
    "socket",
    "_socket",
    "_io",
    "io",
    "sqlite3",
    "threading",
    "_thread",
    "multiprocessing",
    "subprocess",
    "asyncio",
}
_JSON_LIMIT = 64 * 1024

_previous: dict[str, tuple[int, str | None, Any]] = {}  # name -> (id, fingerprint, value)
_previous_files: dict[str, list[int]] = {}  # relative path -> [size, mtime_ns]
_previous_rng: dict[str, str | None] = {}  # generator -> state fingerprint at the last probe


def reset(shell: Any = None, backup: str | None = None) -> None:
    """Forget the previous snapshot (a new dry run); with a shell, track reads from now on;
    with a backup folder, keep the originals of files the notebook is about to change."""
    _previous.clear()
    if shell is not None:
        read_tracking.install(shell)
    file_watch.watch(os.getcwd(), backup)
    _previous_files.clear()
    _previous_files.update(file_watch.snapshot(os.getcwd()))
    process_state.patch()
    process_state.watch_environment()
    process_state.remember_builtins()
    _previous_rng.clear()
    _previous_rng.update(process_state.states())


def _user_names(user_ns: dict[str, Any]) -> list[str]:
    names = []
    for name in user_ns:
        if name in _IPYTHON_NAMES:
            continue
        if name.startswith("_i") and name[2:].isdigit():
            continue
        if name.startswith("_") and name[1:].isdigit():
            continue
        names.append(name)
    return names


_plan: dict[int, str] = {}  # number of the cell run -> file to write the probe to
_runs = 0


def arm(shell: Any, plan: dict[int, str]) -> None:
    """Probe after the given cell runs, inside the cells' own execute requests.

    IPython's `post_run_cell` event fires after every non-silent cell, so probing there
    costs no extra kernel round trip per step.
    """
    global _runs
    _plan.clear()
    _plan.update(plan)
    _runs = 0
    if _after_cell not in shell.events.callbacks["post_run_cell"]:
        shell.events.register("post_run_cell", _after_cell)
    if _before_cell not in shell.events.callbacks["pre_run_cell"]:
        shell.events.register("pre_run_cell", _before_cell)


def _before_cell(info: Any) -> None:
    process_state.patch()  # seeding functions of modules imported since the last cell


def _after_cell(result: Any) -> None:
    global _runs
    _runs += 1
    path = _plan.pop(_runs, None)
    if path is not None:
        import IPython

        probe_to_file(IPython.get_ipython().user_ns, path)


def probe_to_file(user_ns: dict[str, Any], out_path: str) -> None:
    """`probe`, with peak memory added; a failure is written to the file, not raised: the
    dry run sends probes without waiting for them and reads every file at the end."""
    try:
        probe(user_ns, out_path)
    except BaseException:
        import traceback

        with open(out_path, "w", encoding="utf-8") as file:
            json.dump({"error": traceback.format_exc()}, file)


def probe(user_ns: dict[str, Any], out_path: str) -> None:
    """Diff the namespace against the last probe and write the report as JSON."""
    reads = read_tracking.take_reads()
    current: dict[str, tuple[int, str | None, Any]] = {}
    for name in _user_names(user_ns):
        value = dict.__getitem__(user_ns, name)  # not a read by the user's code
        current[name] = (id(value), fingerprint(value), value)
    report: dict[str, Any] = {
        "defined": [], "rebound": [], "mutated": [], "possibly_mutated": [], "deleted": [],
    }  # fmt: skip
    for name, (ident, digest, _) in current.items():
        before = _previous.get(name)
        if before is None:
            report["defined"].append(name)
        elif before[0] != ident:
            report["rebound"].append(name)
        elif digest is None or before[1] is None:
            report["possibly_mutated"].append(name)
        elif digest != before[1]:
            report["mutated"].append(name)
    report["deleted"] = [name for name in _previous if name not in current]
    groups = _groups(current, _memory_root)
    written = set(report["mutated"]) | set(report["possibly_mutated"])
    for group in groups:
        if written & set(group):
            for name in group:
                if name not in written and name not in report["defined"] + report["rebound"]:
                    report["mutated"].append(name)
    report["aliases"] = groups
    report["same_object"] = _groups(current, _same_object)
    changed = {
        n for key in ("defined", "rebound", "mutated", "possibly_mutated") for n in report[key]
    }
    # Unchanged values were described by the probe of the step that last wrote them.
    report["values"] = {name: describe(current[name][2]) for name in sorted(changed)}
    report["hidden"] = _hidden_state()
    rng = {k: v for k, v in report["hidden"].items() if k in process_state.GENERATORS}
    report["seeded_first"] = process_state.take_seeded_first(dict(_previous_rng))
    report["env_set_by_imports"] = process_state.take_set_by_imports()
    _previous_rng.clear()
    _previous_rng.update(rng)
    report["reads"] = [name for name in _previous if name in reads]  # existed before the step
    report["peak_rss_bytes"] = peak_rss_bytes()
    files = file_watch.snapshot(file_watch.watched_root())
    report["files_written"] = sorted(p for p, s in files.items() if _previous_files.get(p) != s)
    report["files_sizes"] = {p: files[p][0] for p in report["files_written"]}
    opened = file_watch.take_opened()  # only real files: imports also "open" path hooks
    report["files_read"] = [p for p in opened if p in files or p in _previous_files]
    _previous_files.clear()
    _previous_files.update(files)
    for key in ("defined", "rebound", "mutated", "possibly_mutated", "deleted", "reads"):
        report[key] = sorted(report[key])
    _previous.clear()
    _previous.update(current)
    text = json.dumps(report, default=str)  # one call: the C encoder (dump() streams in Python)
    with open(out_path, "w", encoding="utf-8") as file:
        file.write(text)


def _groups(
    current: dict[str, tuple[int, str | None, Any]], key: Callable[[int, Any], int | None]
) -> list[list[str]]:
    """Names whose values share a key (None: in no group), as sorted groups of two or more."""
    owner: dict[int, list[str]] = {}
    for name, (ident, _, value) in current.items():
        found = key(ident, value)
        if found is not None:
            owner.setdefault(found, []).append(name)
    return sorted(sorted(names) for names in owner.values() if len(names) > 1)


def _memory_root(ident: int, value: Any) -> int:
    """Names bound to one object, and numpy views with their base arrays, share a root."""
    while type(value).__name__ == "ndarray" and getattr(value, "base", None) is not None:
        value = value.base
    return id(value)


def _same_object(ident: int, value: Any) -> int | None:
    """`b = a` binds one object twice: it travels as one value. Equal small ints and strings
    share an id too; that is no alias."""
    return None if type(value) in _IMMUTABLE else ident


_IMMUTABLE = {int, float, complex, str, bytes, bool, type(None), tuple, frozenset, range}


def _qualified(kind: type) -> str:
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def describe(value: Any) -> dict[str, Any]:
    """What the dataflow needs to know about a value: kind, type, size, shape, JSON form."""
    kind = type(value)
    info: dict[str, Any] = {"type": _qualified(kind), "mro": [_qualified(k) for k in kind.__mro__]}
    if isinstance(value, types.ModuleType):
        info.update(kind="module", module_name=value.__name__)
        return info
    module = (
        getattr(value, "__module__", None)
        if isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType))
        else None
    )
    if module == "__main__":
        info["kind"] = "class" if isinstance(value, type) else "function"
        info["co_names"] = sorted(_global_names(value))
        if getattr(value, "__closure__", None):
            info["closure"] = True  # its state lives in cells, not in its source
        return info
    if module and _importable(value, module):
        info.update(
            kind="importable", **{"import": {"module": module, "qualname": value.__qualname__}}
        )
        return info
    if _unmovable(value, kind):
        info["kind"] = "unmovable"
        return info
    info["kind"] = "data"
    info["size_bytes"] = _size(value)
    for attribute in ("shape", "dtype"):
        found = (
            getattr(value, attribute, None)
            if kind.__module__.split(".")[0] in ("numpy", "pandas", "pyarrow", "scipy", "torch")
            else None
        )
        if found is not None:
            info[attribute] = list(found) if attribute == "shape" else str(found)
    if kind.__module__.startswith("pandas") and kind.__name__ == "DataFrame":
        info["columns"] = [[str(c), str(t)] for c, t in list(value.dtypes.items())[:50]]
    if _json_exact(value, 0):
        info["json_exact"] = True  # a JSON artifact can hold it, even above the limit
        text = json.dumps(value)
        if len(text) <= _JSON_LIMIT:
            info["json"] = value
    return info


def _importable(value: Any, module: str) -> bool:
    try:
        found: Any = importlib.import_module(module)
        for part in value.__qualname__.split("."):
            found = getattr(found, part)
        return found is value
    except Exception:
        return False


def _unmovable(value: Any, kind: type) -> bool:
    if isinstance(value, (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)):
        return True
    if kind.__module__.split(".")[0] in _UNMOVABLE_MODULES:
        return True
    return kind.__module__ == "builtins" and kind.__name__.endswith("iterator")


def _size(value: Any) -> int | None:
    """Bytes in memory where that is cheap and true: arrays, frames, scalars, strings.

    `sys.getsizeof` of other objects counts only their top level (a fitted forest is
    "56 B"), so they have none; the report shows the size the step writes instead.
    """
    try:
        if hasattr(value, "nbytes") and type(value).__module__.split(".")[0] in (
            "numpy",
            "pyarrow",
        ):
            return int(value.nbytes)
        if type(value).__module__.startswith("pandas") and hasattr(value, "memory_usage"):
            usage = value.memory_usage(index=True, deep=False)
            return int(usage.sum()) if hasattr(usage, "sum") else int(usage)
        if isinstance(value, (str, bytes, bytearray, int, float, complex, bool)):
            return sys.getsizeof(value)
    except Exception:
        pass
    return None


def _json_exact(value: Any, depth: int) -> bool:
    kind = type(value)
    if depth > 20:
        return False
    if kind in (bool, int, str) or value is None:
        return True
    if kind is float:
        return math.isfinite(value)
    if kind is list:
        return all(_json_exact(v, depth + 1) for v in value)
    if kind is dict:
        return all(type(k) is str and _json_exact(v, depth + 1) for k, v in value.items())
    return False


def _global_names(value: Any) -> set[str]:
    """Global names read by a function's code (and nested code), or a class's methods."""
    codes = []
    if isinstance(value, type):
        for member in vars(value).values():
            function = getattr(member, "__func__", member)
            if isinstance(function, types.FunctionType):
                codes.append(function.__code__)
    else:
        codes.append(value.__code__)
    names: set[str] = set()
    while codes:
        code = codes.pop()
        names.update(
            instruction.argval
            for instruction in dis.get_instructions(code)
            if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME")
        )
        codes.extend(c for c in code.co_consts if inspect.iscode(c))
    return names


def _hidden_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        **process_state.states(),
        "cwd": os.getcwd(),
        "environ": process_state.environment(),
        "builtins": process_state.builtins_changed(),
        "settings": process_state.settings(),
    }
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        state["pyplot.figures"] = list(pyplot.get_fignums())
    return state


def peak_rss_bytes() -> int:
    """This process's peak resident memory. Linux's VmHWM starts afresh at exec; ru_maxrss
    would include the peak of the process that started the kernel."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
