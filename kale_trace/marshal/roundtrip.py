"""Compile-time proof that every value crossing a step survives its trip (DESIGN §4).

`dumps()` succeeding proves nothing, so after the dry run, while the kernel still holds the
values, each one is saved with the emitted save function of its chosen marshaller, loaded
back in a fresh Python process with the emitted load function, and compared by fingerprint
(`tracer.fingerprint`). A value whose fingerprint changes is loaded once more in the kernel
and compared there by type (Arrow may re-chunk a column without changing its content).
Anything that fails to save, load or compare equal is a compile error naming the variable,
its type, the steps and the fix, instead of a pipeline that breaks on the cluster.

The functions below marked "in the kernel" or "in the fresh process" run there, imported by
name; the compiler-side entry point is `check_round_trips`.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import tempfile
import traceback
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kale_trace.errors import KaleTraceError
from kale_trace.marshal import (
    ARROW,
    ARROW_PICKLED,
    ARTIFACT_IO_SOURCE,
    FILE,
    PARAMETER,
    RNG_STATE,
    Marshaller,
    by_name,
    choose_marshaller,
)
from kale_trace.marshal.environment import environment_error, import_problem

# Values above this size are checked once per type (the first one seen), not each of them.
SIZE_LIMIT = 256 * 1024 * 1024
_FRESH_TIMEOUT = 600
# Families without an exact comparison: a changed fingerprint is a warning, not an error.
_OPAQUE_FAMILIES = {"cloudpickle", "joblib", "torch-module"}


def emitted_functions(marshaller: Marshaller) -> dict[str, Any]:
    """The emitted helpers and this marshaller's save/load functions, as a component has them."""
    namespace: dict[str, Any] = {"__name__": "__kale_roundtrip__"}
    exec(compile(ARTIFACT_IO_SOURCE, "<kale artifact io>", "exec"), namespace)
    exec(compile(marshaller.source, f"<kale {marshaller.name}>", "exec"), namespace)
    return namespace


def _artifact(path: str, metadata: dict[str, Any] | None = None) -> Any:
    """Stands in for a KFP artifact: the emitted helpers use only `.path` and `.metadata`."""
    return types.SimpleNamespace(path=path, metadata=dict(metadata or {}))


def _qualified(kind: type) -> str:
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def load_artifact(marshaller: Marshaller, path: str, metadata: dict[str, Any]) -> Any:
    """Check and load one artifact exactly as a consumer component does."""
    functions = emitted_functions(marshaller)
    data = functions["_kale_read_artifact"](_artifact(path, metadata), "value", "producer")
    arguments = {"allow_pickle": True} if marshaller.load_arguments else {}
    return functions[marshaller.load_function](data, **arguments)


def save_values(user_ns: dict[str, Any], request_path: str) -> None:
    """In the kernel: save each requested value; record its fingerprint and metadata."""
    from kale_trace.tracer.fingerprint import fingerprint

    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    results, imported = {}, {}
    for item in request["items"]:
        result: dict[str, Any] = {}
        results[item["id"]] = result
        if item["variable"] not in user_ns:
            result["skipped"] = "no longer bound at the end of the dry run"
            continue
        value = dict.__getitem__(user_ns, item["variable"])  # not a read by the user's code
        if _qualified(type(value)) != item["type"]:
            result["skipped"] = "rebound to another type later in the dry run"
            continue
        marshaller = by_name(item["marshaller"])
        artifact = _artifact(item["path"])
        if problem := import_problem(marshaller.packages, imported):
            result.update(error=problem["traceback"], environment=problem)
            continue
        try:
            result["fingerprint"] = fingerprint(value)
            functions = emitted_functions(marshaller)
            save = functions[marshaller.save_function]
            functions["_kale_write_artifact"](artifact, marshaller.name, value, save)
        except Exception:
            result["error"] = traceback.format_exc()
            continue
        result["metadata"] = artifact.metadata
        if marshaller.save_function == ARROW.save_function:
            result["pickled_parts"] = _arrow_pickled_parts(item["path"])
    Path(request["results"]).write_text(json.dumps(results, default=str), encoding="utf-8")


def _arrow_pickled_parts(path: str) -> bool:
    with open(path, "rb") as file:
        head = file.read(24)
        size = int.from_bytes(head[8:16], "little")
        return bool(json.loads(file.read(size))["pickled"])


def load_values(request_path: str) -> None:
    """In the fresh process: load each saved value; record its fingerprint."""
    from kale_trace.tracer.fingerprint import fingerprint

    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    results, imported = {}, {}
    for item in request["items"]:
        marshaller = by_name(item["marshaller"])
        if problem := import_problem(marshaller.packages, imported):
            results[item["id"]] = {"error": problem["traceback"], "environment": problem}
            continue
        try:
            value = load_artifact(marshaller, item["path"], item["metadata"])
            results[item["id"]] = {"fingerprint": fingerprint(value)}
        except Exception:
            results[item["id"]] = {"error": traceback.format_exc()}
    Path(request["results"]).write_text(json.dumps(results), encoding="utf-8")


def compare_values(user_ns: dict[str, Any], request_path: str) -> None:
    """In the kernel: load values whose fingerprint changed and compare them by type."""
    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    results = {}
    for item in request["items"]:
        try:
            back = load_artifact(by_name(item["marshaller"]), item["path"], item["metadata"])
            original = dict.__getitem__(user_ns, item["variable"])
            results[item["id"]] = {
                "equal": same_value(original, back),
                "same_type": type(original) is type(back),
            }
        except Exception:
            results[item["id"]] = {"error": traceback.format_exc()}
    Path(request["results"]).write_text(json.dumps(results), encoding="utf-8")


def same_value(original: Any, back: Any, _seen: dict[tuple[int, int], Any] | None = None) -> bool:
    """Exact equality by type: dtypes, index, names and NaN positions included.

    Other objects are compared by their pickled state, recursively: `==` is identity for
    most classes, and fingerprints see padding bytes in structured arrays that differ
    between two equal copies (scikit-learn's trees have them).
    """
    if type(original) is not type(back):
        return False
    seen = {} if _seen is None else _seen  # holds both objects, so ids are not reused
    if (id(original), id(back)) in seen:
        return True
    if len(seen) > 1_000_000:
        return False  # too big to walk: the caller reports it as not shown equal
    seen[(id(original), id(back))] = (original, back)
    module = type(original).__module__.split(".")[0]
    name = type(original).__name__
    if module == "pandas" and name in ("DataFrame", "Series", "Index", "MultiIndex"):
        import pandas.testing

        check = {
            "DataFrame": pandas.testing.assert_frame_equal,
            "Series": pandas.testing.assert_series_equal,
        }.get(name, pandas.testing.assert_index_equal)
        try:
            check(back, original, check_exact=True)
        except AssertionError:
            return False
        return True
    if module == "numpy" and name == "ndarray":
        import numpy

        if original.dtype != back.dtype or original.shape != back.shape:
            return False
        if original.dtype.hasobject:
            return same_value(original.tolist(), back.tolist(), seen)
        try:
            return bool(numpy.array_equal(original, back, equal_nan=True))
        except TypeError:
            return bool(numpy.array_equal(original, back))
    if module == "pyarrow":
        return bool(original.equals(back, check_metadata=True))
    if module == "scipy" and hasattr(original, "format"):
        return (
            original.format == back.format
            and original.dtype == back.dtype
            and original.shape == back.shape
            and (original != back).nnz == 0
        )
    if module == "numpy" and hasattr(original, "dtype"):  # numpy scalars
        import numpy

        return same_value(numpy.asarray(original), numpy.asarray(back), seen)
    if isinstance(original, float):
        return original == back or (original != original and back != back)
    if isinstance(original, (int, complex, str, bytes, bytearray, type, type(None))):
        return bool(original == back)
    if isinstance(original, (list, tuple)):
        return len(original) == len(back) and all(
            same_value(a, b, seen) for a, b in zip(original, back, strict=True)
        )
    if isinstance(original, dict):
        return list(original) == list(back) and all(
            same_value(original[k], back[k], seen) for k in original
        )
    # No `==` on other types: user methods may compute remotely or have side effects
    # (DESIGN §3); compare what pickle saves of them instead.
    return _same_state(original, back, seen)


def _same_state(original: Any, back: Any, seen: dict[tuple[int, int], Any]) -> bool:
    """Compare what pickle would save of both objects (class, arguments, state)."""
    try:
        first, second = original.__reduce_ex__(4), back.__reduce_ex__(4)
    except Exception:
        return False
    if isinstance(first, str) or isinstance(second, str):  # a global: compared by name
        return first == second
    if len(first) != len(second) or first[0] is not second[0]:
        return False
    parts = [(list(a) if isinstance(a, types.GeneratorType) else a) for a in first[1:]]
    others = [(list(b) if isinstance(b, types.GeneratorType) else b) for b in second[1:]]
    if any(p is original for p in parts):
        return False
    return all(same_value(a, b, seen) for a, b in zip(parts, others, strict=False))


Progress = Callable[[str], None]


def check_round_trips(
    kernel: Any, flow: Any, progress: Progress = lambda _: None, *, size_limit: int = SIZE_LIMIT
) -> None:
    """Save every crossing value in the kernel, load it in a fresh process, compare.

    `kernel` is the dry run's live `executor.kernel.Kernel`, `flow` its `Dataflow`. Raises
    KaleTraceError for the first value that does not come back identical. Values that travel
    as KFP parameters are exact by construction (`marshal.parameter_type`) and skipped.
    """
    groups: dict[tuple[str, str], list[Any]] = {}
    for step in flow.steps:
        for item in step.inputs:
            if item.marshaller in (FILE.name, RNG_STATE.name) or item.alias_of:
                continue  # a file copied byte for byte, a generator state, or a re-bound name
            if not item.optional and choose_marshaller(item.info) is not PARAMETER:
                groups.setdefault((item.producer, item.variable), []).append(item)
    if not groups:
        return
    progress(f"round trip check: {len(groups)} values")
    with tempfile.TemporaryDirectory(prefix="kale-trace-roundtrip-") as tmp:
        items, seen_big = [], set()
        for number, ((producer, variable), flows) in enumerate(sorted(groups.items())):
            info = flows[0].info
            kind = info.get("type", "unknown")
            if int(info.get("size_bytes") or 0) > size_limit:
                if kind in seen_big:
                    continue
                seen_big.add(kind)
            items.append(
                {
                    "id": str(number),
                    "variable": variable,
                    "producer": producer,
                    "type": kind,
                    "marshaller": choose_marshaller(info).name,
                    "path": str(Path(tmp) / f"value-{number}"),
                }
            )
        saved = _in_kernel(kernel, "save_values", items, tmp)
        for item in items:
            result = saved[item["id"]]
            flows = groups[(item["producer"], item["variable"])]
            if "error" in result:
                _fail(flow, item, flows, "saving it failed", result)
            item["metadata"] = result.get("metadata")
            item["fingerprint"] = result.get("fingerprint")
            if result.get("pickled_parts") and item["marshaller"] == ARROW.name:
                # Columns Arrow cannot hold travel pickled: compile the loader to accept them.
                flows[0].info["pickled_parts"] = True
                item["marshaller"] = ARROW_PICKLED.name
            for each in flows:
                each.marshaller = choose_marshaller(each.info).name
                if item["metadata"]:  # the size of what the step writes, for the report
                    each.info["saved_bytes"] = item["metadata"].get("size_bytes")
        items = [item for item in items if item.get("metadata") is not None]
        loaded = _in_fresh_process(kernel, flow, items, tmp) if items else {}
        changed = []
        for item in items:
            result = loaded[item["id"]]
            flows = groups[(item["producer"], item["variable"])]
            if "error" in result:
                _fail(flow, item, flows, "loading it in a fresh process failed", result)
            if result["fingerprint"] is None or result["fingerprint"] != item["fingerprint"]:
                changed.append(item)
        if changed:
            compared = _in_kernel(kernel, "compare_values", changed, tmp)
            for item in changed:
                result = compared[item["id"]]
                flows = groups[(item["producer"], item["variable"])]
                if result.get("equal"):
                    continue
                if result.get("same_type") and item["marshaller"] in _OPAQUE_FAMILIES:
                    # Functions, figures, arbitrary objects: it loads, but nothing can
                    # compare it exactly with the original. Say so instead of failing.
                    flow.warnings.append(_unproven(item, flows))
                    continue
                _fail(flow, item, flows, "it comes back different", result)


def _write_request(items: list[dict[str, Any]], tmp: str, name: str) -> tuple[str, str]:
    request, results = str(Path(tmp) / f"{name}.json"), str(Path(tmp) / f"{name}-results.json")
    Path(request).write_text(json.dumps({"items": items, "results": results}), encoding="utf-8")
    return request, results


def _in_kernel(kernel: Any, function: str, items: list[dict[str, Any]], tmp: str) -> Any:
    request, results = _write_request(items, tmp, function)
    module = '__import__("kale_trace.marshal.roundtrip", fromlist=["save_values"])'
    kernel.run_silent(f"{module}.{function}(get_ipython().user_ns, {request!r})")
    return json.loads(Path(results).read_text(encoding="utf-8"))


def _in_fresh_process(kernel: Any, flow: Any, items: list[dict[str, Any]], tmp: str) -> Any:
    request, results = _write_request(items, tmp, "load_values")
    # The kernel's own Python and import path, so the fresh process sees what the kernel saw.
    where = "__import__('json').dumps([__import__('sys').executable, __import__('sys').path])"
    raw = kernel.run_silent("", {"where": where})["where"]
    executable, path = json.loads(ast.literal_eval(raw))
    code = f"import kale_trace.marshal.roundtrip as r; r.load_values({request!r})"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    done = subprocess.run(
        [executable, "-c", code],
        cwd=flow.notebook.path.parent,
        capture_output=True,
        text=True,
        timeout=_FRESH_TIMEOUT,
        env=env,
    )
    if done.returncode != 0:
        raise KaleTraceError(
            "the round-trip check could not start a fresh Python process",
            details=done.stderr,
            fix="this is a bug in kale-trace; please report it with the notebook",
        )
    return json.loads(Path(results).read_text(encoding="utf-8"))


def _unproven(item: dict[str, Any], flows: list[Any]) -> dict[str, str]:
    consumers = ", ".join(f"'{c}'" for c in sorted({f.consumer for f in flows}))
    return {
        "step": item["producer"],
        "variable": item["variable"],
        "message": f"'{item['variable']}' ({item['type']}) loads in a fresh process with "
        f"{item['marshaller']}, but kale-trace cannot show it comes back equal (no exact "
        f"comparison for this type); check it in step {consumers}, or re-create it there",
    }


def _fail(
    flow: Any, item: dict[str, Any], flows: list[Any], what: str, result: dict[str, Any]
) -> None:
    consumers = sorted({f.consumer for f in flows})
    named = ", ".join(f"'{c}'" for c in consumers)
    producer, variable = item["producer"], item["variable"]
    if result.get("environment"):  # a library that does not import: not the notebook's fault
        needed_for = (
            f"the {item['marshaller']} format that carries '{variable}' ({item['type']}) "
            f"from step '{producer}' to step {named} needs it"
        )
        raise environment_error(result["environment"], needed_for, str(flow.notebook.path))
    raise KaleTraceError(
        f"'{variable}' ({item['type']}) cannot cross from step '{producer}' to step {named}: "
        f"{what} with the {item['marshaller']} format",
        notebook=str(flow.notebook.path),
        step=producer,
        fix=f"merge step '{producer}' with {named}, or re-create '{variable}' in "
        f"{named} instead of passing it",
        details=result.get("error"),
    )
