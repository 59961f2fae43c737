"""The report's view of a `dataflow.json` dict: steps, edges, parameters, warnings.

Everything the reports show comes from the dict alone, so `kale-trace report dataflow.json`
works without the notebook; a malformed dict is a `KaleTraceError` naming the bad field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import networkx as nx

from kale_trace.errors import KaleTraceError

_FIX = "pass the dataflow.json written by `kale-trace compile` (or the notebook itself)"


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    default: Any
    sample: Any


@dataclass(frozen=True)
class Edge:
    """One variable crossing from `producer` to `consumer`, as the dry run saw it."""

    variable: str
    producer: str
    consumer: str
    type: str
    marshaller: str
    source: str  # "trace" or "ast"
    shape: tuple[int, ...] | None = None
    dtype: str | None = None
    columns: tuple[tuple[str, str], ...] | None = None
    size_bytes: int | None = None  # in memory (arrays, frames, scalars)
    saved_bytes: int | None = None  # the file the producer writes (the round-trip check's)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.producer, self.consumer, self.variable)


@dataclass(frozen=True)
class Step:
    name: str
    display_name: str
    cells: tuple[int, ...]
    after: tuple[str, ...]
    parameters: tuple[str, ...]
    outputs: tuple[str, ...]
    metrics: tuple[str, ...]
    seconds: float | None
    peak_rss_bytes: int | None
    settings: tuple[str, ...] = ()  # "pandas display.max_columns = 20", set before its cells


@dataclass(frozen=True)
class PipelineWarning:
    step: str
    variable: str
    message: str


@dataclass(frozen=True)
class Report:
    pipeline: str
    notebook: str
    traced: bool
    parameters: tuple[Parameter, ...]
    steps: tuple[Step, ...]
    edges: tuple[Edge, ...]
    warnings: tuple[PipelineWarning, ...]

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    def links(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """(producer, consumer, variables) per DAG edge; no variables = order only.

        `after` holds the direct dependencies; a data edge from an earlier ancestor (a step
        reading what a grandparent wrote) is a link of its own, so the picture shows it.
        """
        result = []
        for step in self.steps:
            producers = [e.producer for e in self.edges if e.consumer == step.name]
            for before in dict.fromkeys([*step.after, *producers]):
                names = tuple(e.variable for e in self.edges if e.key[:2] == (before, step.name))
                result.append((before, step.name, names))
        return result


def _fail(where: str, problem: str) -> KaleTraceError:
    return KaleTraceError(f"{where} is not a kale-trace dataflow: {problem}", fix=_FIX)


def _get(
    entry: Any, key: str, kind: type | tuple[type, ...], where: str, default: Any = ...
) -> Any:
    if not isinstance(entry, dict):
        raise _fail(where, f"expected an object, found {type(entry).__name__}")
    if key not in entry:
        if default is not ...:
            return default
        raise _fail(where, f"missing '{key}'")
    value = entry[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _fail(where, f"'{key}' has the wrong type ({type(value).__name__})")
    return value


def _columns(raw: Any, where: str) -> tuple[tuple[str, str], ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise _fail(where, "'columns' is not a list")
    pairs = []
    for column in raw:
        if isinstance(column, list) and len(column) == 2:
            pairs.append((str(column[0]), str(column[1])))
        else:  # a bare column name, dtype unknown
            pairs.append((str(column), ""))
    return tuple(pairs)


def _edge(value: dict[str, Any], consumer: str, where: str) -> Edge:
    shape = _get(value, "shape", (list, type(None)), where, None)
    if shape is not None and not all(isinstance(n, int) for n in shape):
        raise _fail(where, "'shape' is not a list of integers")
    size = _get(value, "size_bytes", (int, type(None)), where, None)
    dtype = _get(value, "dtype", (str, type(None)), where, None)
    return Edge(
        variable=_get(value, "name", str, where),
        producer=_get(value, "from", str, where),
        consumer=consumer,
        type=str(_get(value, "type", str, where, "unknown")),
        marshaller=str(_get(value, "marshaller", str, where, "?")),
        source=str(_get(value, "source", str, where, "trace")),
        shape=tuple(shape) if shape is not None else None,
        dtype=dtype,
        columns=_columns(value.get("columns"), where),
        size_bytes=size,
        saved_bytes=_get(value, "saved_bytes", (int, type(None)), where, None),
    )


def from_dict(data: Any, where: str = "the dataflow") -> Report:
    """Check and convert a dataflow dict; `where` names its file in error messages."""
    if not isinstance(data, dict) or "steps" not in data or "pipeline" not in data:
        raise _fail(where, "it has no 'pipeline' and 'steps'")
    steps: list[Step] = []
    edges: list[Edge] = []
    for i, raw in enumerate(_get(data, "steps", list, where)):
        at = f"{where} (steps[{i}])"
        name = _get(raw, "name", str, at)
        for j, value in enumerate(_get(raw, "inputs", list, at, [])):
            edges.append(_edge(value, name, f"{at} inputs[{j}]"))
        seconds = _get(raw, "dry_run_seconds", (int, float, type(None)), at, None)
        steps.append(
            Step(
                name=name,
                display_name=str(_get(raw, "display_name", str, at, name)),
                cells=tuple(_get(raw, "cells", list, at, [])),
                after=tuple(str(a) for a in _get(raw, "after", list, at, [])),
                parameters=tuple(str(p) for p in _get(raw, "parameters", list, at, [])),
                outputs=tuple(
                    _get(o, "name", str, f"{at} outputs")
                    for o in _get(raw, "outputs", list, at, [])
                ),
                metrics=tuple(str(m) for m in _get(raw, "metrics", list, at, [])),
                seconds=float(seconds) if seconds is not None else None,
                peak_rss_bytes=_get(raw, "peak_rss_bytes", (int, type(None)), at, None),
                settings=_settings(_get(raw, "settings", dict, at, {}), at),
            )
        )
    names = {s.name for s in steps}
    if len(names) != len(steps):
        raise _fail(where, "two steps share a name")
    for step in steps:
        for before in step.after:
            if before not in names:
                raise _fail(where, f"step '{step.name}' runs after unknown step '{before}'")
    for edge in edges:
        if edge.producer not in names:
            raise _fail(where, f"'{edge.variable}' comes from unknown step '{edge.producer}'")
    dag = nx.DiGraph((a, s.name) for s in steps for a in s.after)
    dag.add_edges_from((e.producer, e.consumer) for e in edges)
    if not nx.is_directed_acyclic_graph(dag):
        raise _fail(
            where, "its steps form a cycle: " + " → ".join(a for a, _ in nx.find_cycle(dag))
        )
    parameters = tuple(
        Parameter(
            name=_get(p, "name", str, f"{where} (parameters)"),
            type=str(p.get("type", "")),
            default=p.get("default"),
            sample=p.get("sample"),
        )
        for p in _get(data, "parameters", list, where, [])
    )
    warnings = tuple(
        PipelineWarning(
            step=str(w.get("step", "")) if isinstance(w, dict) else "",
            variable=str(w.get("variable", "")) if isinstance(w, dict) else "",
            message=str(w.get("message", w)) if isinstance(w, dict) else str(w),
        )
        for w in _get(data, "warnings", list, where, [])
    )
    return Report(
        pipeline=_get(data, "pipeline", str, where),
        notebook=str(_get(data, "notebook", str, where, "")),
        traced=bool(data.get("traced", True)),
        parameters=parameters,
        steps=tuple(steps),
        edges=tuple(edges),
        warnings=warnings,
    )


def _settings(raw: dict[str, Any], at: str) -> tuple[str, ...]:
    """`module setting = value` lines, sorted (a step's `settings` in dataflow.json)."""
    return tuple(
        f"{module} {name} = {value!r}"
        for module in sorted(raw)
        for name, value in sorted(_get(raw, module, dict, f"{at} settings").items())
    )
