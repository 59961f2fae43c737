"""What changed between two dataflows, for a reviewer reading a pull request.

Edges are matched by (producer, consumer, variable); a variable that moves to another
producer is one edge removed and one added, because that is what changes in the pipeline.
Dry-run times and peak memory are left out: they differ on every run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kale_trace.report import text
from kale_trace.report.model import Edge, Parameter, PipelineWarning, Report


@dataclass(frozen=True)
class Change:
    field: str
    before: str
    after: str


@dataclass(frozen=True)
class EdgeChange:
    old: Edge
    new: Edge
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class ParameterChange:
    name: str
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class Diff:
    old: Report
    new: Report
    old_label: str
    new_label: str
    added: tuple[Edge, ...]
    removed: tuple[Edge, ...]
    changed: tuple[EdgeChange, ...]
    steps_added: tuple[str, ...]
    steps_removed: tuple[str, ...]
    parameters_added: tuple[Parameter, ...]
    parameters_removed: tuple[Parameter, ...]
    parameters_changed: tuple[ParameterChange, ...]
    new_warnings: tuple[PipelineWarning, ...]
    resolved_warnings: tuple[PipelineWarning, ...]

    @property
    def empty(self) -> bool:
        return not any(
            (
                self.added,
                self.removed,
                self.changed,
                self.steps_added,
                self.steps_removed,
                self.parameters_added,
                self.parameters_removed,
                self.parameters_changed,
                self.new_warnings,
                self.resolved_warnings,
            )
        )


def _columns_change(old: Edge, new: Edge) -> Change | None:
    before = dict(old.columns or ())
    after = dict(new.columns or ())
    if list(old.columns or ()) == list(new.columns or ()):
        return None
    notes = [f"+{name}" for name in after if name not in before]
    notes += [f"−{name}" for name in before if name not in after]
    notes += [
        f"{name}: {before[name]} → {after[name]}"
        for name in after
        if name in before and before[name] != after[name]
    ]
    if not notes:
        notes.append("reordered")
    count = f"{len(after)} columns" if new.columns is not None else "none"
    return Change(
        "columns",
        f"{len(before)} columns" if old.columns is not None else "none",
        f"{count} ({', '.join(notes)})",
    )


def edge_changes(old: Edge, new: Edge) -> tuple[Change, ...]:
    """The fields of one edge that differ, each as readable before/after text."""
    changes = []
    if old.type != new.type:
        changes.append(Change("type", old.type, new.type))
    if old.shape != new.shape:
        changes.append(Change("shape", text.dims(old.shape), text.dims(new.shape)))
    if old.dtype != new.dtype:
        changes.append(Change("dtype", old.dtype or "–", new.dtype or "–"))
    column_change = _columns_change(old, new)
    if column_change:
        changes.append(column_change)
    if old.size_bytes != new.size_bytes:
        after = text.size(new.size_bytes)
        if old.size_bytes and new.size_bytes is not None:
            after += f" ({(new.size_bytes - old.size_bytes) / old.size_bytes:+.0%})"
        changes.append(Change("size", text.size(old.size_bytes), after))
    if old.marshaller != new.marshaller:
        changes.append(Change("marshaller", old.marshaller, new.marshaller))
    if old.source != new.source:
        changes.append(Change("source", old.source, new.source))
    return tuple(changes)


def _parameter_changes(old: Parameter, new: Parameter) -> tuple[Change, ...]:
    changes = []
    for field in ("type", "default", "sample"):
        a, b = getattr(old, field), getattr(new, field)
        if a != b or type(a) is not type(b):
            render = str if field == "type" else text.value
            changes.append(Change(field, render(a), render(b)))
    return tuple(changes)


def diff(old: Report, new: Report, old_label: str = "old", new_label: str = "new") -> Diff:
    """Compare two dataflows; `*_label` say where each came from (file names)."""
    old_edges = {e.key: e for e in old.edges}
    new_edges = {e.key: e for e in new.edges}
    changed = []
    for key, edge in new_edges.items():
        if key in old_edges:
            changes = edge_changes(old_edges[key], edge)
            if changes:
                changed.append(EdgeChange(old_edges[key], edge, changes))
    old_steps = [s.name for s in old.steps]
    new_steps = [s.name for s in new.steps]
    old_params = {p.name: p for p in old.parameters}
    new_params = {p.name: p for p in new.parameters}
    parameter_changes = []
    for name, parameter in new_params.items():
        if name in old_params:
            changes = _parameter_changes(old_params[name], parameter)
            if changes:
                parameter_changes.append(ParameterChange(name, changes))
    old_warnings = set(old.warnings)
    new_warnings = set(new.warnings)
    return Diff(
        old=old,
        new=new,
        old_label=old_label,
        new_label=new_label,
        added=tuple(e for k, e in new_edges.items() if k not in old_edges),
        removed=tuple(e for k, e in old_edges.items() if k not in new_edges),
        changed=tuple(changed),
        steps_added=tuple(s for s in new_steps if s not in old_steps),
        steps_removed=tuple(s for s in old_steps if s not in new_steps),
        parameters_added=tuple(p for n, p in new_params.items() if n not in old_params),
        parameters_removed=tuple(p for n, p in old_params.items() if n not in new_params),
        parameters_changed=tuple(parameter_changes),
        new_warnings=tuple(w for w in new.warnings if w not in old_warnings),
        resolved_warnings=tuple(w for w in old.warnings if w not in new_warnings),
    )


def _edge_dict(edge: Edge) -> dict[str, Any]:
    return {
        "name": edge.variable,
        "from": edge.producer,
        "to": edge.consumer,
        "type": edge.type,
        "shape": list(edge.shape) if edge.shape is not None else None,
        "dtype": edge.dtype,
        "columns": [list(c) for c in edge.columns] if edge.columns is not None else None,
        "size_bytes": edge.size_bytes,
        "marshaller": edge.marshaller,
        "source": edge.source,
    }


def to_dict(d: Diff) -> dict[str, Any]:
    """The diff as JSON-ready data, key order fixed."""

    def changes(items: tuple[Change, ...]) -> list[dict[str, str]]:
        return [{"field": c.field, "before": c.before, "after": c.after} for c in items]

    def warning(w: PipelineWarning) -> dict[str, str]:
        return {"step": w.step, "variable": w.variable, "message": w.message}

    return {
        "old": d.old_label,
        "new": d.new_label,
        "pipeline": d.new.pipeline,
        "edges_added": [_edge_dict(e) for e in d.added],
        "edges_removed": [_edge_dict(e) for e in d.removed],
        "edges_changed": [
            {
                "name": c.new.variable,
                "from": c.new.producer,
                "to": c.new.consumer,
                "changes": changes(c.changes),
            }  # fmt: skip
            for c in d.changed
        ],
        "steps_added": list(d.steps_added),
        "steps_removed": list(d.steps_removed),
        "parameters_added": [p.name for p in d.parameters_added],
        "parameters_removed": [p.name for p in d.parameters_removed],
        "parameters_changed": [
            {"name": p.name, "changes": changes(p.changes)} for p in d.parameters_changed
        ],
        "new_warnings": [warning(w) for w in d.new_warnings],
        "resolved_warnings": [warning(w) for w in d.resolved_warnings],
    }
